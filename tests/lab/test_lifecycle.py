"""Day two on the lab (issue 14): inventory changes, host-side edits, cut runs and Ctrl-C, each the
way an administrator met it, on real servers through the CLI. Every test starts from and returns
to the pristine server: the `pristine` fixture rolls back and compares a strict snapshot
(tests/lab/lifecycle_tools.py), so each test also proves an exact rollback after its history.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from arpfix.exitcodes import Exit
from tests.lab.lifecycle_tools import arpfix, arpfix_json, failing_checks, hosts_of, sh, snapshot

pytestmark = pytest.mark.lab


def converged(path: str, *hosts: str) -> None:
    """After an apply: plan has nothing to do and audit is compliant, for the named hosts."""
    code, plan = arpfix_json(path, "plan")
    for name in hosts:
        assert hosts_of(plan)[name]["status"] == "ok", json.dumps(hosts_of(plan)[name], indent=1)
    code, audit = arpfix_json(path, "audit")
    for name in hosts:
        assert hosts_of(audit)[name]["status"] == "compliant", failing_checks(hosts_of(audit)[name])


def test_two_vips_and_a_method_change_then_rollback_unwinds_every_journal_entry(lab, pristine):
    path = pristine.write()
    assert arpfix_json(path, "apply", "--yes")[0] == Exit.OK
    pristine.add_vip("second", lab.status["vip"].rsplit(".", 1)[0] + ".251", ["rs1"])
    assert arpfix_json(pristine.write(), "apply", "--yes")[0] == Exit.OK
    converged(path, "rs1", "rs2")
    pristine.set_method("rs1", "host-scope")
    assert arpfix_json(pristine.write(), "apply", "--yes")[0] == Exit.OK
    converged(path, "rs1", "rs2")
    journal = sh(lab, "rs1", "cat /var/lib/arpfix/journal.jsonl")
    assert journal.count('"/etc/sysctl.d/90-arpfix.conf"') >= 2  # several entries for one path
    code, document = arpfix_json(path, "rollback", "--yes")
    assert code == Exit.OK and hosts_of(document)["rs1"]["left"] == []
    # the pristine fixture compares every sysctl, address, file, folder and temp file


def test_method_change_host_scope_to_loopback_is_planned_and_applied(lab, pristine):
    vip = lab.status["vip"]
    pristine.set_method("rs1", "host-scope")
    path = pristine.write()
    assert arpfix_json(path, "apply", "--yes")[0] == Exit.OK
    assert "scope host" in sh(lab, "rs1", "ip -o addr show dev lo")
    pristine.set_method("rs1", "loopback")
    code, plan = arpfix_json(pristine.write(), "plan")
    actions = [(c["subject"], c["action"]) for c in hosts_of(plan)["rs1"]["changes"]]
    assert code == Exit.PENDING and (f"address {vip}/32 on lo", "remove") in actions \
        and (f"address {vip}/32 on lo", "add") in actions
    assert arpfix_json(path, "apply", "--yes")[0] == Exit.OK
    converged(path, "rs1")
    assert "scope host" not in sh(lab, "rs1", f"ip -o addr show dev lo | grep {vip}")


def test_a_sysctl_file_that_loads_later_blocks_the_plan_with_its_name(lab, pristine):
    path = pristine.write()
    assert arpfix_json(path, "apply", "--yes")[0] == Exit.OK
    sh(lab, "rs1", "cp -p /etc/sysctl.conf /var/tmp/sysctl.conf.orig; echo 'net.ipv4.conf.all.arp_ignore=8' >> /etc/sysctl.conf")
    try:
        code, plan = arpfix_json(path, "plan")
        rs1 = hosts_of(plan)["rs1"]
        assert code == Exit.PENDING and rs1["status"] == "blocked"
        assert any(c["action"] == "blocked" and "/etc/sysctl.conf" in c["detail"] for c in rs1["changes"])
        code, audit = arpfix_json(path, "audit")
        assert hosts_of(audit)["rs1"]["status"] == "drift"
        code, applied = arpfix_json(path, "apply", "--yes")
        assert code == Exit.PENDING and hosts_of(applied)["rs1"]["status"] == "blocked"
    finally:
        sh(lab, "rs1", "cat /var/tmp/sysctl.conf.orig > /etc/sysctl.conf; rm -f /var/tmp/sysctl.conf.orig")


def test_multi_character_sysctl_values_round_trip_through_the_journal(lab, pristine):
    # dash reads /proc/sys one byte at a time; lo's accept_dad is -1 and dad_transmits 10 here
    sh(lab, "rs1", "echo 10 > /proc/sys/net/ipv6/conf/lo/dad_transmits; echo -1 > /proc/sys/net/ipv6/conf/lo/accept_dad")
    try:
        pristine.add_vip("six", "fd00:77::250", ["rs1"])
        path = pristine.write()
        assert arpfix_json(path, "apply", "--yes")[0] == Exit.OK
        entries = [json.loads(line) for line in sh(lab, "rs1", "cat /var/lib/arpfix/journal.jsonl").splitlines()]
        previous = {e["key"]: e["prev"] for e in entries if e.get("op") == "sysctl"}
        assert previous["net/ipv6/conf/lo/dad_transmits"] == "10"
        assert previous["net/ipv6/conf/lo/accept_dad"] == "-1"
        converged(path, "rs1")
        code, document = arpfix_json(path, "rollback", "--yes")
        assert code == Exit.OK, document
        assert sh(lab, "rs1", "cat /proc/sys/net/ipv6/conf/lo/dad_transmits /proc/sys/net/ipv6/conf/lo/accept_dad").split() \
            == ["10", "-1"]
    finally:
        sh(lab, "rs1", "echo 1 > /proc/sys/net/ipv6/conf/lo/dad_transmits; echo -1 > /proc/sys/net/ipv6/conf/lo/accept_dad")


def test_a_removed_vip_and_a_server_leaving_the_pool_are_given_back(lab, pristine):
    rs2_before = snapshot(lab, "rs2")
    second = lab.status["vip"].rsplit(".", 1)[0] + ".252"
    pristine.add_vip("second", second, ["real_servers"])
    path = pristine.write()
    assert arpfix_json(path, "apply", "--yes")[0] == Exit.OK
    pristine.remove_vip("second")
    code, plan = arpfix_json(pristine.write(), "plan")
    assert (f"address {second}/32 on lo", "remove") in [(c["subject"], c["action"]) for c in hosts_of(plan)["rs1"]["changes"]]
    code, audit = arpfix_json(path, "audit")
    assert f"stale address {second}/32 on lo" in failing_checks(hosts_of(audit)["rs1"])
    assert arpfix_json(path, "apply", "--yes")[0] == Exit.OK
    converged(path, "rs1", "rs2")
    assert second not in sh(lab, "rs1", "ip -o addr show dev lo")
    # rs2 leaves the pool: everything arpfix made there goes, and nothing else
    pristine.vip()["real_servers"] = ["rs1", "rs3"]
    assert arpfix_json(pristine.write(), "apply", "--yes")[0] == Exit.OK
    converged(path, "rs1", "rs2")
    assert snapshot(lab, "rs2") == rs2_before


def test_a_temp_file_from_a_cut_write_is_reported_and_removed(lab, pristine):
    path = pristine.write()
    assert arpfix_json(path, "apply", "--yes")[0] == Exit.OK
    sh(lab, "rs1", "echo half > /etc/sysctl.d/90-arpfix.conf.arpfix-tmp.4242")
    code, audit = arpfix_json(path, "audit")
    warnings = [f for f in hosts_of(audit)["rs1"]["findings"] if f["severity"] == "warning" and not f["ok"]]
    assert any(f["check"] == "temp file" for f in warnings) and code == Exit.OK
    # the pristine fixture's rollback removes it; its snapshot covers temp files


def test_a_run_that_fails_part_way_is_partial_with_what_it_changed(lab, pristine):
    path = pristine.write()
    # read-only /etc/systemd/system: sysctls and the VIP are changed, then the unit cannot be written
    sh(lab, "rs1", "mount --bind /etc/systemd/system /etc/systemd/system && mount -o remount,bind,ro /etc/systemd/system")
    try:
        code, document = arpfix_json(path, "apply", "--yes")
        rs1 = hosts_of(document)["rs1"]
        assert code == Exit.FAILED and rs1["status"] == "partial", rs1
        assert any("address" in text for text in rs1["applied"]) and "arpfix-vip.service" in rs1["error"]
        assert hosts_of(document)["rs2"]["status"] == "changed"
    finally:
        sh(lab, "rs1", "umount /etc/systemd/system")
    assert arpfix_json(path, "apply", "--yes")[0] == Exit.OK
    converged(path, "rs1")


def test_facts_finds_the_primary_nic_by_address_as_plan_does(lab, pristine):
    code, document = arpfix_json(pristine.write(), "facts")
    assert code == Exit.OK
    assert hosts_of(document)["rs1"]["facts"]["primary_nic"] == {"name": "eth0", "from": "address"}


def apply_in_slow_motion(lab, path: str, *, forks: int, step_delay: str) -> subprocess.Popen[str]:
    """`arpfix apply` running with a pause after each remote step, returned once rs1's run began."""
    command = [sys.executable, "-m", "arpfix.cli", "apply", "--yes", "--forks", str(forks), "-i", path, "--format", "json"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "ARPFIX_STEP_DELAY": step_delay})
    deadline = time.monotonic() + 30
    while "begin" not in sh(lab, "rs1", "cat /var/lib/arpfix/journal.jsonl 2>/dev/null; true"):
        assert time.monotonic() < deadline and process.poll() is None, "rs1's apply never began"
        time.sleep(0.1)
    return process


def test_ctrl_c_starts_no_new_host_reports_every_host_and_exits_130(lab, pristine):
    path = pristine.write()
    process = apply_in_slow_motion(lab, path, forks=1, step_delay="0.4")  # each host about 4 s, one at a time
    process.send_signal(signal.SIGINT)
    pressed = time.monotonic()
    out, err = process.communicate(timeout=60)
    assert process.returncode == Exit.INTERRUPTED, err
    assert time.monotonic() - pressed < 25
    statuses = {h["name"]: h["status"] for h in json.loads(out)["hosts"]}
    assert statuses["rs1"] == "changed"  # the host in flight finished its run
    assert statuses["rs2"] == "not started" and statuses["rs3"] == "not started"
    assert "Traceback" not in err and "starting no new host" in err
    time.sleep(2)  # nothing is started later either
    for name in ("rs2", "rs3"):
        assert sh(lab, name, "ls /var/lib/arpfix/journal.jsonl 2>/dev/null; true") == ""


def test_three_ctrl_c_stop_waiting_without_a_traceback(lab, pristine):
    path = pristine.write()
    process = apply_in_slow_motion(lab, path, forks=2, step_delay="1")
    for _ in range(3):
        process.send_signal(signal.SIGINT)
        time.sleep(0.3)
    out, err = process.communicate(timeout=30)
    assert process.returncode == Exit.INTERRUPTED and "Traceback" not in err
    statuses = {h["name"]: h["status"] for h in json.loads(out)["hosts"]}
    assert statuses["rs3"] == "not started"
    assert statuses["rs1"] in ("interrupted", "changed") and "run `arpfix audit`" in err + out
    # the scripts that were cut are taken from their journal by the next apply
    deadline = time.monotonic() + 30
    while sh(lab, "rs1", "flock -n /var/lib/arpfix/lock true || echo busy").strip():
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert arpfix_json(path, "apply", "--yes")[0] == Exit.OK
    converged(path, "rs1", "rs2", "rs3")


def test_every_script_refuses_to_run_without_root(lab, pristine):
    # the facts script run by a user without root (as with `sudo: false` and a non-root login)
    from arpfix.platforms import get_platform
    from arpfix.settings import Host  # noqa: F401 - the script needs no host values

    script = get_platform("linux").facts_script(None, None)  # type: ignore[arg-type]
    result = lab.exec("rs1", ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", script],
                      check=False)
    document = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.returncode == 1 and "arpfix needs root on this host" in document["error"]
    assert arpfix(pristine.write(), "audit").returncode == Exit.PENDING  # root itself still works
