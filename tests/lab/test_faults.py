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
        assert hosts[host]["status"] == "error", hosts[host]
        assert hosts[host]["error"], "a cut server is reported with a reason"

    # management connectivity is back, and the states are recoverable
    time.sleep(1)
    for host in servers:
        assert lab.exec(host, ["true"]).returncode == 0
    if phase == "apply":
        for host in ("rs1", "rs2", "rs3"):
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
