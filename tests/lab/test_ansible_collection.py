"""The arpfix.dr Ansible collection, for real: built and installed with ansible-galaxy, run by
ansible-playbook over Ansible's own ssh connection against the lab's servers (real sshd, real
kernels) and over Ansible's winrm connection against the WS-Management test server. The playbook
is the docs' example (ansible_collections/arpfix/dr/playbooks/sharescan.yml)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from arpfix.exitcodes import Exit
from tests.lab.lifecycle_tools import arpfix, arpfix_json, hosts_of, snapshot
from tests.winrm.wsman_server import WsmanServer

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "ansible_collections" / "arpfix" / "dr" / "playbooks" / "sharescan.yml"
WINDOWS_CASE = ROOT / "tests" / "unit" / "windows_cases" / "fresh_server2019.json"
BIN = Path(sys.executable).parent
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)
WINRM_PASSWORD = "pw-for-ansible-1"


@pytest.fixture(scope="module")
def collections(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The collection as a user gets it: `ansible-galaxy collection build`, then `install`."""
    work = tmp_path_factory.mktemp("collection")
    for argv in ([str(BIN / "ansible-galaxy"), "collection", "build", str(PLAYBOOK.parents[1]), "--output-path", str(work)],
                 [str(BIN / "ansible-galaxy"), "collection", "install", str(work / "arpfix-dr-0.1.0.tar.gz"),
                  "-p", str(work / "installed")]):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=_env(work))
        assert done.returncode == 0, done.stdout + done.stderr
    installed = work / "installed"
    assert (installed / "ansible_collections" / "arpfix" / "dr" / "plugins" / "action" / "prepare.py").is_file()
    return installed


def _env(home: Path, collections: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "ANSIBLE_HOME": str(home / "ansible-home"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_RETRY_FILES_ENABLED": "False",
           "ANSIBLE_SSH_CONTROL_PATH_DIR": str(home / "cp"),
           # masters end by themselves soon after the play: nothing outlives the test for long
           "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=5s",
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    if collections is not None:
        env["ANSIBLE_COLLECTIONS_PATH"] = str(collections)
    return env


def playbook(collections: Path, inventory: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, dict[str, int]]]:
    """ansible-playbook PLAYBOOK -i inventory ARGS; (the run, the recap per host)."""
    done = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), str(PLAYBOOK), *args],
                          capture_output=True, text=True, timeout=180, env=_env(inventory.parent, collections))
    recap = {m[0]: {"ok": int(m[1]), "changed": int(m[2]), "unreachable": int(m[3]), "failed": int(m[4])}
             for m in RECAP.findall(done.stdout)}
    return done, recap


def linux_inventory(lab: Any, hosts: list[str], **overrides: Any) -> dict[str, Any]:
    """The lab's servers as Ansible sees them: root with the lab's key, its known_hosts, strict."""
    ssh = lab.status["ssh"]
    group_vars = {"ansible_user": "root", "ansible_ssh_private_key_file": ssh["key"],
                  "ansible_ssh_common_args": f"-o UserKnownHostsFile={ssh['known_hosts']} -o StrictHostKeyChecking=yes",
                  **overrides}
    return {"hosts": {h: {"ansible_host": lab.host(h)["address"]} for h in hosts}, "vars": group_vars}


def write_inventory(path: Path, vip: str, children: dict[str, Any], probes: dict[str, Any] | None = None) -> Path:
    groups: dict[str, Any] = {"sharescan": {"children": children}}
    if probes:
        groups["probes"] = probes
    path.write_text(yaml.safe_dump({"all": {"vars": {"sharescan_vip": vip, "sharescan_probe_host": "agent"},
                                            "children": groups}}))
    return path


def cli_inventory(lab: Any, path: Path, hosts: list[str]) -> str:
    """An arpfix inventory that says what the playbook says (its VIP, its profile) for the CLI."""
    play = yaml.safe_load(PLAYBOOK.read_text())[0]["vars"]
    base = yaml.safe_load(open(lab.inventory_path))
    vip = {**play["sharescan_vips"][0], "address": lab.status["vip"], "real_servers": hosts}
    document = {"defaults": base["defaults"], "hosts": {h: base["hosts"][h] for h in hosts},
                "profiles": play["sharescan_profiles"], "vips": [vip]}
    path.write_text(yaml.safe_dump(document))
    return str(path)


def test_check_mode_in_a_mixed_play_plans_both_platforms_and_changes_nothing(lab, collections, tmp_path):
    """--check --diff on fresh servers: changed on Linux (lab, ssh) and Windows (winrm), nothing
    changed anywhere, and the Windows script on the wire is the one the CLI sends."""
    raw = json.loads(WINDOWS_CASE.read_text())["raw"]
    server = WsmanServer(lambda script: (json.dumps(raw) + "\r\n", "", 0), auth="basic",
                         users={"arpfix": WINRM_PASSWORD}).start()
    try:
        before = {h: snapshot(lab, h) for h in ("rs1", "rs2")}
        windows = {"hosts": {"ss01": {"ansible_host": "127.0.0.1", "ansible_port": server.port, "arpfix_address": "192.0.2.11"}},
                   "vars": {"ansible_connection": "winrm", "ansible_winrm_scheme": "http", "ansible_winrm_transport": "basic",
                            "ansible_user": "arpfix", "ansible_password": WINRM_PASSWORD}}
        inventory = write_inventory(tmp_path / "hosts.yml", lab.status["vip"],
                                    {"linux": linux_inventory(lab, ["rs1", "rs2"]), "windows": windows})
        done, recap = playbook(collections, inventory, "--check", "--diff", "-f", "3")
        assert done.returncode == 0, done.stdout + done.stderr
        assert {h: (r["changed"], r["failed"]) for h, r in recap.items()} == {"rs1": (1, 0), "rs2": (1, 0), "ss01": (1, 0)}
        # diff mode: each change from -> to, in the form docs/ansible.md shows
        assert "--- before: sysctl net.ipv4.conf.all.arp_ignore (set)\n+++ after: sysctl net.ipv4.conf.all.arp_ignore (set)\n" \
               "@@ -1 +1 @@\n-0\n+1\n" in done.stdout
        assert {h: snapshot(lab, h) for h in ("rs1", "rs2")} == before, "check mode changed a server"
        # two tasks (prepare in check mode, audit), each only the facts script: nothing applied
        assert len(server.scripts) == 2 and server.scripts[0] == server.scripts[1]
        assert any(a == "Send" for a in server.actions), "the long script went on stdin"

        # the CLI, against the same WS-Man server, sends the same script
        cli = {"hosts": {"ss01": {"platform": "windows", "address": "192.0.2.11", "connect": "127.0.0.1",
                                  "winrm": {"scheme": "http", "port": server.port, "auth": "basic", "user": "arpfix",
                                            "password": {"env": "ARPFIX_TEST_WINRM"}}}},
               "profiles": yaml.safe_load(PLAYBOOK.read_text())[0]["vars"]["sharescan_profiles"],
               "vips": [{**yaml.safe_load(PLAYBOOK.read_text())[0]["vars"]["sharescan_vips"][0],
                         "address": lab.status["vip"], "real_servers": ["ss01"]}]}
        (tmp_path / "cli.yml").write_text(yaml.safe_dump(cli))
        result = arpfix(str(tmp_path / "cli.yml"), "plan", "--insecure", env={"ARPFIX_TEST_WINRM": WINRM_PASSWORD})
        assert result.returncode == Exit.PENDING, result.stdout + result.stderr
        assert len(server.scripts) == 3 and server.scripts[2] == server.scripts[0]
    finally:
        server.stop()


def test_prepare_limit_forks_second_run_cli_audit_and_rollback(lab, collections, tmp_path):
    """apply --limit rs1 touches only rs1; apply with forks does the rest; a second run changes
    nothing; the CLI's audit (same journal) is compliant; verify from the agent passes; rollback
    through the collection leaves the servers as they were."""
    hosts = ["rs1", "rs2"]
    before = {h: snapshot(lab, h) for h in hosts}
    inventory = write_inventory(tmp_path / "hosts.yml", lab.status["vip"], {"linux": linux_inventory(lab, hosts)},
                                probes=linux_inventory(lab, ["agent"]))

    done, recap = playbook(collections, inventory, "--limit", "rs1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(recap) == {"rs1"} and recap["rs1"]["changed"] == 1
    assert snapshot(lab, "rs2") == before["rs2"], "--limit rs1 changed rs2"

    done, recap = playbook(collections, inventory, "-f", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert {h: r["changed"] for h, r in recap.items()} == {"rs1": 0, "rs2": 1}
    done, recap = playbook(collections, inventory, "-f", "2")
    assert {h: r["changed"] for h, r in recap.items()} == {"rs1": 0, "rs2": 0}, done.stdout

    cli = cli_inventory(lab, tmp_path / "cli.yml", hosts)
    code, document = arpfix_json(cli, "audit")
    assert code == Exit.OK, document
    assert {h["status"] for h in hosts_of(document).values()} == {"compliant"}

    # verify: facts over each server's connection, probes from the agent (delegate_to); the lab
    # serves 80 and 443, and the playbook's profile has 8080 too: verify finds it closed ...
    done, recap = playbook(collections, inventory, "--tags", "verify")
    assert done.returncode != 0 and "rs1: RST from" in done.stdout and ":8080: nothing listens on the VIP" in done.stdout
    # ... and passes once something listens there
    listeners = [subprocess.Popen([*lab.exec_argv(h), "python3", "-m", "http.server", "8080"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for h in hosts]
    try:
        for h in hosts:
            lab.exec(h, ["sh", "-c", "for i in $(seq 50); do ss -ltn | grep -q ':8080 ' && exit 0; sleep 0.1; done; exit 1"])
        done, recap = playbook(collections, inventory, "--tags", "verify", "-v")
    finally:
        for listener in listeners:
            listener.terminate()
            listener.wait(timeout=10)
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"msg": "2 servers verified"' in done.stdout and "ok: [rs1 -> agent" in done.stdout

    done, recap = playbook(collections, inventory, "--tags", "rollback")
    assert done.returncode == 0, done.stdout + done.stderr
    assert {h: r["changed"] for h, r in recap.items()} == {"rs1": 1, "rs2": 1}
    assert {h: snapshot(lab, h) for h in hosts} == before, "rollback did not restore the servers"


def add_sudo_user(lab: Any, host: str, user: str) -> None:
    """A non-root login on `host` that may sudo without a password, on that lab host only.

    The user and its sudoers rule go to the host's own /etc (an overlay). sshd reads the lab's
    authorized_keys as the logging-in user, and that file lies under pytest's 0700 temp folder:
    in this host's mount namespace alone (private, nothing propagates) a tmpfs over that folder
    holds copies of the two things sshd reads per connection, the keys and the host key."""
    state = lab.state_dir
    top = "/".join(state.split("/")[:3])  # /tmp/pytest-of-root: the first folder a user cannot enter
    assert top.startswith("/tmp/") and state.startswith(top + "/")
    hostdir = f"{state}/hosts/{host}"
    lab.exec(host, ["sh", "-c", f"""set -e
keys=$(cat {state}/authorized_keys); mkdir -p /run/arpfix-test; cp -a {hostdir} /run/arpfix-test/
mount -t tmpfs -o mode=0755 arpfix-test-keys {top}
mkdir -p {state}/hosts; cp -a /run/arpfix-test/{host} {state}/hosts/
printf '%s\\n' "$keys" > {state}/authorized_keys; chmod 0644 {state}/authorized_keys
useradd -M -d /nonexistent -s /bin/sh -p '*' {user}
echo '{user} ALL=(root) NOPASSWD: ALL' > /etc/sudoers.d/{user}; chmod 0440 /etc/sudoers.d/{user}
"""])


def test_become_with_sudo_for_a_non_root_user_and_the_cli_rolls_back(lab, collections, tmp_path):
    """A non-root login with Ansible's become (sudo): the apply works, the audit task through the
    collection passes and fails on drift, and the CLI rolls back what the collection applied."""
    before = snapshot(lab, "rs3")
    # password "*": none, but not locked (sshd without PAM refuses a locked account's key too)
    add_sudo_user(lab, "rs3", "deploy")
    try:
        inventory = write_inventory(tmp_path / "hosts.yml", lab.status["vip"], {"linux": linux_inventory(
            lab, ["rs3"], ansible_user="deploy", ansible_become=True, ansible_become_method="sudo")})
        done, recap = playbook(collections, inventory)
        assert done.returncode == 0, done.stdout + done.stderr
        assert recap["rs3"]["changed"] == 1
        lab.exec("rs3", ["sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=0"])  # drift
        done, recap = playbook(collections, inventory, "--tags", "audit")
        assert done.returncode != 0 and recap["rs3"]["failed"] == 1
        assert "arp_ignore" in done.stdout and "expected 1, actual 0" in done.stdout
        lab.exec("rs3", ["sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1"])
        cli = cli_inventory(lab, tmp_path / "cli.yml", ["rs3"])
        result = arpfix(cli, "rollback", "--yes")
        assert result.returncode == Exit.OK, result.stdout + result.stderr
        assert snapshot(lab, "rs3") == before
    finally:
        lab.exec("rs3", ["sh", "-c", "rm -f /etc/sudoers.d/deploy; userdel deploy"], check=False)
        lab.exec("rs3", ["umount", "/".join(lab.state_dir.split("/")[:3])], check=False)


def test_windows_apply_over_winrm_sends_the_scripts_the_cli_sends(collections, tmp_path):
    """An apply through Ansible's winrm connection sends, byte for byte, the facts and apply
    scripts `arpfix apply` sends."""
    case = json.loads((ROOT / "tests" / "unit" / "windows_cases" / "compliant.json").read_text())
    fresh = json.loads(WINDOWS_CASE.read_text())["raw"]
    seen: list[str] = []

    def handler(script: str) -> tuple[str, str, int]:
        # the first script of a run is the facts script; what follows it is the apply script,
        # answered with the state the apply leaves (the compliant case's facts)
        first = not seen or script == seen[0]
        seen.append(script)
        return json.dumps(fresh if first else case["raw"]) + "\r\n", "", 0

    server = WsmanServer(handler, auth="basic", users={"arpfix": WINRM_PASSWORD}).start()
    vip = case["vips"][0]
    vips = [{"name": vip["name"], "address": vip["address"], "services": [{"protocol": p, "port": n} for p, n in vip["services"]]}]
    try:
        (tmp_path / "play.yml").write_text(yaml.safe_dump([{"hosts": "ss01", "gather_facts": False, "tasks": [
            {"arpfix.dr.prepare": {"vips": vips}}]}]))
        (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {"ss01": {
            "ansible_host": "127.0.0.1", "ansible_port": server.port, "arpfix_address": case["host"]["address"],
            "ansible_connection": "winrm", "ansible_winrm_scheme": "http", "ansible_winrm_transport": "basic",
            "ansible_user": "arpfix", "ansible_password": WINRM_PASSWORD}}}}))
        done = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"), str(tmp_path / "play.yml")],
                              capture_output=True, text=True, timeout=120, env=_env(tmp_path, collections))
        assert done.returncode == 0 and "changed: [ss01]" in done.stdout, done.stdout + done.stderr
        through_ansible = list(server.scripts)
        assert len(through_ansible) == 2 and through_ansible[0] != through_ansible[1]

        cli = {"hosts": {"ss01": {"platform": "windows", "address": case["host"]["address"], "connect": "127.0.0.1",
                                  "winrm": {"scheme": "http", "port": server.port, "auth": "basic", "user": "arpfix",
                                            "password": {"env": "ARPFIX_TEST_WINRM"}}}},
               "vips": [{**vips[0], "real_servers": ["ss01"]}]}
        (tmp_path / "cli.yml").write_text(yaml.safe_dump(cli))
        result = arpfix(str(tmp_path / "cli.yml"), "apply", "--yes", "--insecure", env={"ARPFIX_TEST_WINRM": WINRM_PASSWORD})
        assert result.returncode == Exit.OK, result.stdout + result.stderr
        assert server.scripts[2:] == through_ansible
    finally:
        server.stop()
