"""Cut SSH connections during apply and rollback (issue 8): link down, the session's sshd killed,
packets dropped by a firewall rule. Cut servers fail with a reason while the others complete; each
is left in its old, new or a journaled partial state that a new apply completes and rollback undoes;
no server loses its management connectivity once the cut is healed.

ARPFIX_STEP_DELAY (slow motion between remote steps) makes the cut land mid-script reliably.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from arpfix.exitcodes import Exit

pytestmark = pytest.mark.lab

SNAPSHOT = r"""
for f in /proc/sys/net/ipv4/conf/*/arp_ignore /proc/sys/net/ipv4/conf/*/arp_announce; do echo "$f=$(cat $f)"; done
ip -o addr show dev lo | awk '{print $3, $4, $NF}'
for d in /etc/sysctl.d /etc/systemd /usr/local/lib; do find "$d" \( -type f -o -type l \) 2>/dev/null | sort; done
"""


def children(pid: int) -> list[int]:
    """Direct children of the lab's sshd: one `sshd: root@notty` process per session."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(child) for child in handle.read().split()]
    except OSError:
        return []


def journal_entries(lab, host):
    text = lab.exec(host, ["sh", "-c", "cat /var/lib/arpfix/journal.jsonl 2>/dev/null; true"]).stdout
    return [json.loads(line) for line in text.splitlines()]


def run(lab_inventory, *args, env=None):
    return subprocess.Popen([sys.executable, "-m", "arpfix.cli", *args, "-i", lab_inventory, "--format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def wait_for_journal(lab, host, entries, limit=20.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if len(journal_entries(lab, host)) >= entries:
            return
        time.sleep(0.1)
    raise AssertionError(f"{host}: journal never reached {entries} entries")


@pytest.mark.parametrize("phase", ["apply", "rollback"])
def test_cut_connections_leave_recoverable_states(lab_factory, tmp_path, phase):
    lab = lab_factory(hosts=4)
    inventory = yaml.safe_load(open(lab.inventory_path))
    inventory["defaults"]["ssh"]["command_timeout"] = 6
    inventory["defaults"]["ssh"]["connect_timeout"] = 4
    path = str(tmp_path / "inventory.yml")
    yaml.safe_dump(inventory, open(path, "w"))
    servers = ["rs1", "rs2", "rs3", "rs4"]
    before = {h: lab.exec(h, ["sh", "-c", SNAPSHOT]).stdout for h in servers}
    if phase == "rollback":
        applied = subprocess.run([sys.executable, "-m", "arpfix.cli", "apply", "--yes", "-i", path],
                                 capture_output=True, text=True, timeout=120)
        assert applied.returncode == Exit.OK, applied.stdout + applied.stderr
    slow = {"ARPFIX_STEP_DELAY": "0.4"}
    process = run(path, phase, "--yes", env=slow)
    try:
        # wait until each victim is mid-script (journal growing / entries left), then cut it
        target = 4 if phase == "apply" else 0
        for host in ("rs1", "rs2", "rs3"):
            if phase == "apply":
                wait_for_journal(lab, host, target)
            else:
                time.sleep(0.3)
        lab.exec("rs1", ["ip", "link", "set", "eth0", "down"])  # the link
        sshd = lab.host("rs2")["pids"]["sshd"]
        for pid in children(sshd):  # the session's sshd process
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        lab.exec("rs3", ["sh", "-c", "nft add table inet afxcut; nft add chain inet afxcut out "
                                     "'{ type filter hook output priority 0; }'; nft add rule inet afxcut out tcp sport 22 drop"])
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        lab.exec("rs1", ["ip", "link", "set", "eth0", "up"], check=False)
        lab.exec("rs3", ["nft", "delete", "table", "inet", "afxcut"], check=False)
    assert process.returncode == Exit.FAILED, out + err
    hosts = {h["name"]: h for h in json.loads(out)["hosts"]}
    assert hosts["rs4"]["status"] == "changed", hosts["rs4"]
    for host in ("rs1", "rs2", "rs3"):
        # partial where the journal could be read again over a new connection, else error
        assert hosts[host]["status"] in ("error", "partial"), hosts[host]
        assert hosts[host]["error"], "a cut server is reported with a reason"
        assert "run `arpfix audit`" in hosts[host]["error"]
        assert (hosts[host]["status"] == "partial") == bool(hosts[host].get("applied")), hosts[host]
    assert hosts["rs2"]["status"] == "partial", hosts["rs2"]  # its sshd was killed: the listener still answers

    time.sleep(1)
    assert_recoverable(lab, path, phase, servers, ["rs1", "rs2", "rs3"], before)


def assert_recoverable(lab, path, phase, servers, cut, before):
    """Management connectivity is back; a cut apply was journaled and a new apply completes it
    (audit compliant); rollback returns every server to its exact starting state."""
    for host in servers:
        assert lab.exec(host, ["true"]).returncode == 0
    if phase == "apply":
        for host in cut:
            assert journal_entries(lab, host), f"{host}: the partial apply was journaled"
        again = subprocess.run([sys.executable, "-m", "arpfix.cli", "apply", "--yes", "-i", path],
                               capture_output=True, text=True, timeout=120)
        assert again.returncode == Exit.OK, again.stdout + again.stderr
        audit = subprocess.run([sys.executable, "-m", "arpfix.cli", "audit", "-i", path],
                               capture_output=True, text=True, timeout=120)
        assert audit.returncode == Exit.OK, audit.stdout
    rollback = subprocess.run([sys.executable, "-m", "arpfix.cli", "rollback", "--yes", "-i", path],
                              capture_output=True, text=True, timeout=120)
    assert rollback.returncode == Exit.OK, rollback.stdout + rollback.stderr
    for host in servers:
        assert lab.exec(host, ["sh", "-c", SNAPSHOT]).stdout == before[host], f"{host} not back to its old state"


def session_tree(sshd: int) -> list[int]:
    """Every process of the lab server's SSH sessions (sshd children and their descendants)."""
    found, todo = [], children(sshd)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children(pid))
    return found


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return handle.read().strip()
    except OSError:
        return ""


@pytest.mark.parametrize("phase", ["apply", "rollback"])
def test_cut_after_each_step_leaves_a_recoverable_state(lab_factory, tmp_path, phase):
    """The cut-point sweep: server rsK loses its session right after remote step K (K = 1..8 of 9).
    Odd K: only the session's sshd dies (the remote script may run on); even K: the whole session
    dies with it (the script stops mid-way, as in a crash). Every cut server is reported failed; a
    new run completes it and rollback returns every server to its exact starting state."""
    count = 8
    lab = lab_factory(hosts=count)
    inventory = yaml.safe_load(open(lab.inventory_path))
    inventory["defaults"]["ssh"]["command_timeout"] = 8
    path = str(tmp_path / "inventory.yml")
    yaml.safe_dump(inventory, open(path, "w"))
    servers = [f"rs{k}" for k in range(1, count + 1)]
    before = {h: lab.exec(h, ["sh", "-c", SNAPSHOT]).stdout for h in servers}
    if phase == "rollback":
        applied = subprocess.run([sys.executable, "-m", "arpfix.cli", "apply", "--yes", "-i", path],
                                 capture_output=True, text=True, timeout=120)
        assert applied.returncode == Exit.OK, applied.stdout + applied.stderr
    sshd = {h: lab.host(h)["pids"]["sshd"] for h in servers}
    steps_seen: dict[str, set[int]] = {h: set() for h in servers}
    pending = {h: k for k, h in enumerate(servers, start=1)}
    process = run(path, phase, "--yes", env={"ARPFIX_STEP_DELAY": "0.3"})
    try:
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline and process.poll() is None:
            for host, k in list(pending.items()):
                tree = session_tree(sshd[host])
                # each remote step ends with `sleep 0.3`: a new sleep process is one more step done
                steps_seen[host].update(pid for pid in tree if comm(pid) == "sleep")
                if len(steps_seen[host]) >= k:
                    victims = tree if k % 2 == 0 else children(sshd[host])
                    for pid in victims:
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                    del pending[host]
            time.sleep(0.02)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not pending, f"never reached their cut point: {pending}"
    assert process.returncode == Exit.FAILED, out + err
    hosts = {h["name"]: h for h in json.loads(out)["hosts"]}
    for host in servers:
        # each was cut after at least one step: what it had done is read back from its journal
        assert hosts[host]["status"] == "partial" and hosts[host]["error"], hosts[host]
        assert any(text.startswith("journaled: ") for text in hosts[host]["applied"]), hosts[host]

    assert_recoverable(lab, path, phase, servers, servers, before)
