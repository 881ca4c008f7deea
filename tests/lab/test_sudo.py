"""A non-root SSH login (issue 14), with the real sudo: without sudo every command says in one line
that arpfix needs root (no false drift, no "nothing to do"); sudo's refusals are told apart (a
password is needed; only other commands are allowed); with NOPASSWD the whole cycle works and
rollback returns the server to its start.

The lab's own sshd reads every user's keys from a root-only folder, so rs1 gets a second sshd on
port 2222 (same host key) that reads a user's keys from rs1's own /etc.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml

from arpfix.exitcodes import Exit
from tests.lab.lifecycle_tools import arpfix_json, hosts_of, sh, snapshot

pytestmark = pytest.mark.lab

USER = "arpfixer"
PORT = 2222


@pytest.fixture
def login(lab, tmp_path):
    if shutil.which("sudo") is None:
        pytest.skip("sudo is not installed (dev.sh installs it)")
    state = lab.state_dir
    address = lab.host("rs1")["address"]
    hdir = os.path.join(state, "hosts", "rs1")
    config = "\n".join([f"Port {PORT}", f"ListenAddress {address}", f"HostKey {hdir}/ssh_host_ed25519_key",
                        "PidFile /run/arpfix-test-sshd.pid", "PubkeyAuthentication yes", "PasswordAuthentication no",
                        "KbdInteractiveAuthentication no", "UsePAM no", "AuthorizedKeysFile /etc/ssh/arpfix-test-keys/%u",
                        "StrictModes no", "UseDNS no", ""])
    keys = open(os.path.join(state, "authorized_keys")).read()
    sh(lab, "rs1", f"useradd -M -d /var/tmp/{USER} -s /bin/sh {USER} && usermod -p '*' {USER} && mkdir -p /var/tmp/{USER}"
                   f" && chown {USER} /var/tmp/{USER} && mkdir -p /etc/ssh/arpfix-test-keys")
    with open(tmp_path / "keys", "w") as handle:
        handle.write(keys)
    sh(lab, "rs1", f"cat > /etc/ssh/arpfix-test-keys/{USER} <<'EOF'\n{keys}EOF\nchmod 644 /etc/ssh/arpfix-test-keys/{USER}")
    sh(lab, "rs1", f"cat > /etc/ssh/arpfix-test-sshd_config <<'EOF'\n{config}EOF")
    sshd = subprocess.Popen(lab.exec_argv("rs1") + ["/usr/sbin/sshd", "-D", "-e", "-f", "/etc/ssh/arpfix-test-sshd_config"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    known = [line.split(" ", 1)[1] for line in open(os.path.join(state, "known_hosts")) if line.split(" ", 1)[0] == address]
    with open(tmp_path / "known_hosts", "w") as handle:
        handle.write("".join(f"[{address}]:{PORT} {key}" for key in known))
    with open(lab.inventory_path) as handle:
        data = yaml.safe_load(handle)
    data["hosts"] = {"rs1": data["hosts"]["rs1"]}
    data["groups"] = {"real_servers": {"hosts": ["rs1"]}}
    data.pop("agent", None)
    data["hosts"]["rs1"]["ssh"] = {"user": USER, "port": PORT, "known_hosts": str(tmp_path / "known_hosts")}

    def inventory(sudo: bool) -> str:
        data["hosts"]["rs1"]["ssh"]["sudo"] = sudo
        path = str(tmp_path / "inventory.yml")
        with open(path, "w") as handle:
            yaml.safe_dump(data, handle)
        return path

    for _ in range(50):
        if sh(lab, "rs1", f"ss -Hltn 'sport = :{PORT}'").strip():
            break
        import time
        time.sleep(0.1)
    try:
        yield inventory
    finally:
        sshd.terminate()
        sshd.wait()
        sh(lab, "rs1", f"userdel {USER}; rm -rf /var/tmp/{USER} /etc/ssh/arpfix-test-keys /etc/ssh/arpfix-test-sshd_config"
                       " /etc/sudoers.d/arpfix-test; true")


def sudoers(lab, line):
    sh(lab, "rs1", f"printf '%s\\n' {line!r} > /etc/sudoers.d/arpfix-test && chmod 440 /etc/sudoers.d/arpfix-test")


def error_of(document):
    return hosts_of(document)["rs1"].get("error", "")


def test_without_root_every_command_says_so_in_one_line(lab, login):
    path = login(sudo=False)
    for command in (["facts"], ["audit"], ["plan"], ["apply", "--yes"], ["rollback", "--yes"]):
        code, document = arpfix_json(path, *command)
        assert code == Exit.FAILED, (command, document)
        assert f"arpfix needs root on this host, and runs as {USER}" in error_of(document), (command, document)
        assert "\n" not in error_of(document)


def test_sudo_refusals_are_told_apart(lab, login):
    path = login(sudo=True)
    sudoers(lab, f"{USER} ALL=(root) ALL")  # allowed, but with a password: `sudo -n` cannot ask
    code, document = arpfix_json(path, "audit")
    assert code == Exit.FAILED and f"sudo needs a password for {USER}" in error_of(document), document
    sudoers(lab, f"{USER} ALL=(root) NOPASSWD: /usr/bin/true")  # only another command
    code, document = arpfix_json(path, "audit")
    assert code == Exit.FAILED and "sudo allows arpfixer only some commands" in error_of(document), document


def test_with_passwordless_sudo_the_whole_cycle_works(lab, login):
    before = snapshot(lab, "rs1")
    path = login(sudo=True)
    sudoers(lab, f"{USER} ALL=(root) NOPASSWD: ALL")
    assert arpfix_json(path, "apply", "--yes")[0] == Exit.OK
    code, document = arpfix_json(path, "audit")
    assert code == Exit.OK and hosts_of(document)["rs1"]["status"] == "compliant"
    assert arpfix_json(path, "plan")[0] == Exit.OK
    assert arpfix_json(path, "rollback", "--yes")[0] == Exit.OK
    assert snapshot(lab, "rs1") == before
