"""The SSH transport's remote shell, against a real sshd: several scripts, one login, clean failures."""

from __future__ import annotations

import time

import pytest

from arpfix.errors import TransportError
from arpfix.inventory import load_inventory
from arpfix.transport.ssh import SshTransport

pytestmark = pytest.mark.lab
PID = 'printf \'{"shell": %s}\\n\' "$$"'


@pytest.fixture
def transport(lab):
    t = SshTransport(load_inventory(lab.inventory_path).hosts["rs1"])
    yield t
    t.close()


def sh_processes(lab):
    """Remote `sh -s` shells still alive on rs1 (what arpfix's sessions leave behind)."""
    out = lab.exec("rs1", ["sh", "-c", "ps -eo pid=,args= | grep -x '[ 0-9]*sh -s' || true"]).stdout
    return [line.split()[0] for line in out.splitlines()]


def test_scripts_of_one_run_share_one_remote_shell_and_close_leaves_nothing(lab, transport):
    first = transport.run_script(PID)["shell"]
    # state set by one script does not leak into the next (each runs in a subshell)
    assert transport.run_script('X=leaked; cd /tmp; printf \'{"ok": 1}\\n\'') == {"ok": 1}
    assert transport.run_script('printf \'{"x": "%s", "pwd": "%s"}\\n\' "${X:-}" "$PWD"') == {"x": "", "pwd": "/root"}
    assert transport.run_script(PID)["shell"] == first
    assert str(first) in sh_processes(lab)
    transport.close()
    deadline = time.monotonic() + 5
    while str(first) in sh_processes(lab) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert str(first) not in sh_processes(lab)


def test_exit_stdin_and_failures_stay_inside_one_script(transport):
    first = transport.run_script(PID)["shell"]
    # `exit` ends only that script; a script that reads stdin sees end of input, not the next script
    assert transport.run_script('printf \'{"a": 1}\\n\'; exit 0; echo never') == {"a": 1}
    assert transport.run_script('n=$(cat | wc -c); printf \'{"stdin": %s}\\n\' "$n"') == {"stdin": 0}
    with pytest.raises(TransportError, match=r"rs1: remote script failed: boom"):
        transport.run_script('echo "boom" >&2; exit 3')
    # output without a final newline, then a large output, still framed exactly
    assert transport.run_script('printf \'{"nl": false}\'') == {"nl": False}
    big = transport.run_script('printf \'{"big": "\'; head -c 300000 /dev/zero | tr "\\0" x; printf \'"}\\n\'')
    assert big["big"] == "x" * 300000
    assert transport.run_script(PID)["shell"] == first


def test_a_timeout_ends_the_shell_and_the_next_script_gets_a_new_one(transport):
    first = transport.run_script(PID)["shell"]
    started = time.monotonic()
    with pytest.raises(TransportError, match=r"rs1: remote script timed out after 1s"):
        transport.run_script("sleep 30", timeout=1)
    assert time.monotonic() - started < 5
    assert transport.run_script(PID)["shell"] != first


def test_a_shell_killed_mid_script_is_reported_and_replaced(lab, transport):
    first = transport.run_script(PID)["shell"]
    with pytest.raises(TransportError, match=r"rs1: the remote shell ended \(exit \d+\) before the script finished|rs1: connection lost"):
        transport.run_script(f"kill -9 {first}; sleep 2")
    assert transport.run_script(PID)["shell"] != first


RELAY = """
import socket, sys, threading
host, port, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(log, "a") as handle:
    handle.write(f"{host}:{port}\\n")
conn = socket.create_connection((host, port))
def pump():
    while True:
        data = conn.recv(65536)
        if not data:
            break
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    sys.stdout.close()
threading.Thread(target=pump, daemon=True).start()
while True:
    data = sys.stdin.buffer.read1(65536)
    if not data:
        break
    conn.sendall(data)
"""


def test_a_proxy_command_carries_the_session(lab, tmp_path):
    """ssh.proxy_command (what Ansible's ProxyJump / ProxyCommand become): the whole session runs
    through the command, with %h and %p filled in, and the host key is still checked."""
    import dataclasses
    import sys

    relay, log = tmp_path / "relay.py", tmp_path / "relay.log"
    relay.write_text(RELAY)
    host = load_inventory(lab.inventory_path).hosts["rs1"]
    proxied = dataclasses.replace(host, ssh=dataclasses.replace(
        host.ssh, proxy_command=f"{sys.executable} {relay} %h %p {log}"))
    transport = SshTransport(proxied)
    try:
        assert transport.run_script('printf \'{"ok": 1}\\n\'') == {"ok": 1}
    finally:
        transport.close()
    assert log.read_text().splitlines() == [f"{host.connect}:{host.ssh.port}"]
    broken = SshTransport(dataclasses.replace(host, ssh=dataclasses.replace(
        host.ssh, proxy_command="/nonexistent/proxy %h %p")))
    with pytest.raises(TransportError, match="through proxy_command '/nonexistent/proxy %h %p'"):
        broken.run_script("true")
    broken.close()


def test_one_parsed_key_for_every_connection_and_aes_gcm_negotiated(lab, monkeypatch):
    import paramiko

    import arpfix.transport.ssh as ssh

    parsed = []
    real = paramiko.PKey.from_path
    monkeypatch.setattr(paramiko.PKey, "from_path", staticmethod(lambda *a, **k: parsed.append(a) or real(*a, **k)))
    monkeypatch.setattr(ssh, "_key_cache", {})
    hosts = load_inventory(lab.inventory_path).hosts
    transports = [SshTransport(hosts[name]) for name in ("rs1", "rs2", "rs1")]
    try:
        for t in transports:
            assert t.run_script('printf \'{"ok": 1}\\n\'') == {"ok": 1}
            assert t.client.get_transport().remote_cipher == "aes128-gcm@openssh.com"
            assert t.client.get_transport().local_cipher == "aes128-gcm@openssh.com"
    finally:
        for t in transports:
            t.close()
    assert len(parsed) == 1  # paramiko's key_filename parsed the file for every connection, once per key type



def test_the_facts_document_is_written_in_one_go(lab, tmp_path):
    """Every write of the facts script's output crossed SSH as a packet of its own when sshd was
    quick enough to read them apart (about 30 per host in a 50-host audit; fewer on an idle machine),
    so the writes are counted where they happen, with strace, on the real server's shell."""
    from arpfix.platforms.linux import LinuxPlatform

    inventory = load_inventory(lab.inventory_path)
    script = LinuxPlatform().facts_script(inventory.hosts["rs1"], inventory)
    out, log = tmp_path / "facts.out", tmp_path / "writes.log"
    lab.exec("rs1", ["sh", "-c", f"strace -f -y -qq -e trace=write -o {log} sh -s > {out}"], input=script)
    writes = [line for line in log.read_text().splitlines() if f"write(1<{out}>" in line]
    assert '"arpfix_facts": 1' in out.read_text() and out.read_text().endswith("}\n")
    assert len(writes) == 1, f"{len(writes)} writes of the document"
