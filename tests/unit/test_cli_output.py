"""What an administrator sees: tables, summaries, -v, JUnit, against fake hosts (tests/unit/fakehosts.py)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from arpfix.exitcodes import Exit
from arpfix.report import short

FAKE = Path(__file__).with_name("fakehosts.py")

INVENTORY = """\
hosts:
  rs1: {platform: linux, address: 10.9.0.11}
  rs2: {platform: linux, address: 10.9.0.12}
  rs3: {platform: linux, address: 10.9.0.13}
  agent: {platform: linux, address: 10.9.0.2}
vips:
  - {name: web, address: 10.9.0.250, services: [{port: 80}], real_servers: [rs1, rs2, rs3]}
agent: {host: agent}
"""
SYSCTL = ["sysctl net.ipv4.conf.all.arp_ignore", "set", 0, 1, ""]
BLOCKED = ["address 10.9.0.250", "blocked", "eth0/24", "absent",
           "the VIP is on eth0 (not arpfix's): remove it there first"]


def run(tmp_path, spec, *args, inventory=INVENTORY, env=None):
    path = tmp_path / "inv.yml"
    path.write_text(inventory)
    full_env = {**os.environ, "ARPFIX_FAKE": json.dumps(spec), "ARPFIX_FAKE_LOG": str(tmp_path / "calls.log"),
                "NO_COLOR": "1", **(env or {})}
    return subprocess.run([sys.executable, str(FAKE), *args, "-i", str(path)], capture_output=True, text=True,
                          env=full_env, timeout=60)


def last_line(text):
    return text.strip().splitlines()[-1]


# -- statuses and summaries ---------------------------------------------------------------------

def test_plan_shows_blocked_with_the_reason_in_the_row_and_a_summary(tmp_path):
    spec = {"plan": {"rs1": {"status": "blocked", "changes": [SYSCTL, BLOCKED]}, "*": {"status": "ok"}}}
    result = run(tmp_path, spec, "plan")
    assert result.returncode == Exit.PENDING
    row = next(line for line in result.stdout.splitlines() if "address 10.9.0.250" in line)
    assert row.split()[:2] == ["rs1", "blocked"]
    assert "blocked: the VIP is on eth0" in row
    assert last_line(result.stderr) == "3 hosts: 2 ok, 1 blocked"


def test_apply_on_a_blocked_host_says_blocked_once_with_its_reason(tmp_path):
    spec = {"apply": {"rs1": {"status": "blocked", "changes": [SYSCTL, BLOCKED],
                              "error": "address 10.9.0.250: the VIP is on eth0 (not arpfix's): remove it there first"},
                      "*": {"status": "changed", "changes": [SYSCTL]}}}
    result = run(tmp_path, spec, "apply", "--yes")
    assert result.returncode == Exit.PENDING
    rs1 = [line for line in result.stdout.splitlines() if line.startswith("rs1")]
    assert all(line.split()[1] == "blocked" for line in rs1)
    assert sum("the VIP is on eth0" in line for line in rs1) == 1  # the reason, in the blocked change's row
    assert "failed" not in result.stdout
    assert last_line(result.stderr) == "3 hosts: 2 changed, 1 blocked"


@pytest.mark.parametrize("command,operation", [
    (["facts"], "facts"), (["plan"], "plan"), (["apply", "--yes"], "apply"), (["audit"], "audit"),
    (["rollback", "--yes"], "rollback"),
])
def test_every_host_command_ends_with_the_one_line_summary_unless_quiet(tmp_path, command, operation):
    spec = {operation: {"rs1": {"status": "compliant"}, "rs2": {"status": "compliant"},
                        "rs3": {"status": "unreachable", "error": "cannot connect to 10.9.0.13:22: timed out"},
                        "agent": {"status": "compliant"}}}
    result = run(tmp_path, spec, *command)
    hosts = 4 if operation == "facts" else 3  # the others leave the agent host out
    assert last_line(result.stderr) == f"{hosts} hosts: {hosts - 1} compliant, 1 unreachable"
    assert result.returncode == Exit.FAILED
    quiet = run(tmp_path, spec, *command, "-q")
    assert "compliant, 1 unreachable" not in quiet.stderr
    as_json = run(tmp_path, spec, *command, "--format", "json")
    json.loads(as_json.stdout)  # the document alone on stdout; the summary on stderr
    assert last_line(as_json.stderr).endswith("1 unreachable")


def test_verify_ends_with_the_summary_too(tmp_path):
    result = run(tmp_path, {"verify": verify_document(unknown=False)}, "verify")
    assert result.returncode == Exit.OK, result.stderr
    assert last_line(result.stderr) == "2 hosts: 2 verified"


def test_singular_summary(tmp_path):
    result = run(tmp_path, {"audit": {"*": {"status": "compliant"}}}, "audit", "--limit", "rs1")
    assert last_line(result.stderr) == "1 host: 1 compliant"


NO_VIP = """\
hosts:
  win1: {platform: windows, address: 10.9.0.21, winrm: {user: admin}}
"""


@pytest.mark.parametrize("command", [["plan"], ["apply", "--yes"], ["audit"], ["verify"]])
def test_no_vip_says_so_instead_of_an_empty_table(tmp_path, command):
    result = run(tmp_path, {}, *command, inventory=NO_VIP)
    assert result.returncode == Exit.OK, result.stderr
    assert "no VIP" in result.stdout and "nothing to" in result.stdout
    assert "host" not in result.stdout.splitlines()[0].split()[:1]  # no table header
    assert not (tmp_path / "calls.log").exists()  # no host contacted


def test_no_real_server_selected_says_so(tmp_path):
    result = run(tmp_path, {}, "audit", "--limit", "agent")
    assert result.returncode == Exit.OK
    assert result.stdout.startswith("the selected host 'agent' is not a real server of a VIP")


# -- verify: JUnit and the load balancer hint ---------------------------------------------------

def verify_document(unknown=True, probe_error=""):
    def server(name):
        probes = [{"probe": "audit", "ok": True, "detail": "12 checks compliant", "findings": []}]
        if probe_error:
            probes.append({"probe": "arp 10.9.0.250", "ok": False, "skipped": True,
                           "detail": f"not probed: {probe_error}"})
        else:
            probes += [{"probe": "arp 10.9.0.250", "ok": True, "detail": "does not answer ARP for the VIP"},
                       {"probe": "dr 10.9.0.250:tcp/80", "ok": True, "detail": "SYN-ACK from the VIP"}]
        return {"name": name, "platform": "linux", "status": "unverified" if probe_error else "verified",
                "probes": probes}

    replies = [{"vip": "10.9.0.250", "mac": "02:00:00:00:00:99", "host": None, "allowed": False}] if unknown else []
    segment = {"arp_replies": replies, "probe_host": "agent", "interface": "eth0", "vips": ["10.9.0.250"],
               "unknown_answers": replies}
    if probe_error:
        segment["error"] = probe_error
    return {"hosts": [server("rs1"), server("rs2")], "segment": segment}


def test_verify_junit_counts_an_unknown_mac_as_a_failure(tmp_path):
    result = run(tmp_path, {"verify": verify_document(unknown=True)}, "verify", "--format", "junit")
    assert result.returncode == Exit.VERIFY_FAILED
    suite = ET.fromstring(result.stdout)
    assert suite.get("failures") == "1", result.stdout
    failure = next(case for case in suite if case.find("failure") is not None)
    assert failure.get("name") == "arp 10.9.0.250"
    assert "02:00:00:00:00:99" in failure.find("failure").get("message")
    assert "load_balancer.macs" in failure.find("failure").get("message")


def test_verify_junit_an_unusable_probe_host_is_one_error_not_a_failure_per_server(tmp_path):
    error = "probing host agent: cannot connect to 10.9.0.2:22: Connection refused"
    result = run(tmp_path, {"verify": verify_document(unknown=False, probe_error=error)}, "verify", "--format", "junit")
    assert result.returncode == Exit.FAILED
    suite = ET.fromstring(result.stdout)
    assert (suite.get("failures"), suite.get("errors")) == ("0", "1"), result.stdout
    errored = [case for case in suite if case.find("error") is not None]
    assert [case.get("classname") for case in errored] == ["segment (agent)"]
    assert suite.get("skipped") == "2"  # each server's ARP probe: not run


def test_verify_table_says_to_list_the_load_balancer_mac(tmp_path):
    result = run(tmp_path, {"verify": verify_document(unknown=True)}, "verify")
    assert result.returncode == Exit.VERIFY_FAILED
    assert "load_balancer.macs" in result.stdout
    header = next(line for line in result.stdout.splitlines() if "MAC" in line and "owner" in line)
    assert len(header.split()) == 4  # every column has a header


# -- values as an administrator writes them -----------------------------------------------------

def test_values_are_written_as_an_administrator_writes_them():
    assert (short(True), short(False), short([]), short(None), short(["a", "b"])) == ("yes", "no", "-", "-", "a, b")


def test_audit_table_shows_yes_no_and_dash_never_python(tmp_path):
    findings = [{"check": "ipv6 disabled on lo", "ok": False, "expected": True, "actual": False},
                {"check": "stale addresses", "ok": False, "expected": [], "actual": ["10.9.0.7"]}]
    result = run(tmp_path, {"audit": {"*": {"status": "drift", "findings": findings}}}, "audit", "--limit", "rs1")
    assert result.returncode == Exit.PENDING
    for python in ("True", "False", "[]"):
        assert python not in result.stdout
    row = next(line for line in result.stdout.splitlines() if "ipv6 disabled" in line)
    assert " yes " in row and " no " in row


def test_facts_table_dash_for_no_vip(tmp_path):
    facts = {"os": {"name": "Debian 12"}, "primary_nic": {"name": "eth0"}, "vips_present": []}
    result = run(tmp_path, {"facts": {"*": {"status": "ok", "facts": facts}}}, "facts", "--limit", "rs1")
    row = next(line for line in result.stdout.splitlines() if line.startswith("rs1"))
    assert "[]" not in row and row.split()[-1] == "-"


def test_inventory_check_counts_in_the_singular(tmp_path):
    path = tmp_path / "one.yml"
    path.write_text("hosts:\n  rs1: {platform: linux, address: 10.9.0.11}\n"
                    "vips:\n  - {name: v, address: 10.9.0.250, services: [{port: 80}], real_servers: [rs1]}\n")
    result = subprocess.run([sys.executable, "-m", "arpfix.cli", "inventory", "check", "-i", str(path)],
                            capture_output=True, text=True)
    assert result.stdout.strip().endswith("ok: 1 host (1 linux, 0 windows), 1 VIP, 1 real server")


LONG = "; ".join(f"sysctl net.ipv4.conf.eth{n}.arp_ignore: expected 1, got 0 (set in /etc/sysctl.d/{n}.conf)"
                 for n in range(8))


def test_a_long_finding_is_cut_in_the_table_and_whole_under_v(tmp_path):
    assert len(LONG) > 600
    findings = [{"check": "arp sysctls", "ok": False, "expected": 1, "actual": 0, "detail": LONG}]
    spec = {"audit": {"*": {"status": "drift", "findings": findings}}}
    result = run(tmp_path, spec, "audit", "--limit", "rs1")
    assert max(len(line) for line in result.stdout.splitlines()) < 160, result.stdout
    assert "(-v: all)" in result.stdout
    verbose = run(tmp_path, spec, "audit", "--limit", "rs1", "-v")
    assert max(len(line) for line in verbose.stdout.splitlines()) < 160, verbose.stdout
    assert "eth7.arp_ignore" in verbose.stdout  # all of it, wrapped


def test_verify_summarises_a_long_audit_probe(tmp_path):
    document = verify_document(unknown=False)
    failing = [{"check": f"check {n}", "detail": "x" * 80} for n in range(6)]
    document["hosts"][0].update(status="failed", probes=[
        {"probe": "audit", "ok": False, "detail": "; ".join(f"{f['check']}: {f['detail']}" for f in failing),
         "findings": failing}])
    result = run(tmp_path, {"verify": document}, "verify")
    assert result.returncode == Exit.VERIFY_FAILED
    row = next(line for line in result.stdout.splitlines() if line.startswith("rs1"))
    assert "6 checks drift: check 0, check 1, check 2 and 3 more" in row and len(row) < 160


# -- -v adds detail to every command ------------------------------------------------------------

def test_verbose_apply_shows_changes_journal_entries_and_timings(tmp_path):
    spec = {"apply": {"*": {"status": "changed", "changes": [SYSCTL],
                            "extra": {"applied": ["sysctl net.ipv4.conf.all.arp_ignore", "file /etc/sysctl.d/90-arpfix.conf"]}}}}
    result = run(tmp_path, spec, "apply", "--yes", "--limit", "rs1", "-v")
    assert result.returncode == Exit.OK
    assert "set sysctl net.ipv4.conf.all.arp_ignore: 0 -> 1" in result.stdout
    assert "journaled: file /etc/sysctl.d/90-arpfix.conf" in result.stdout
    assert "rs1 (linux, changed, " in result.stdout and "s)" in result.stdout
    plain = run(tmp_path, spec, "apply", "--yes", "--limit", "rs1")
    assert "journaled:" not in plain.stdout


@pytest.mark.parametrize("command,operation", [(["facts"], "facts"), (["plan"], "plan"), (["audit"], "audit"),
                                               (["rollback", "--yes"], "rollback")])
def test_verbose_adds_timings_to_every_host_command(tmp_path, command, operation):
    result = run(tmp_path, {operation: {"*": {"status": "ok"}}}, *command, "--limit", "rs1", "-v")
    assert "Details:" in result.stdout and "rs1 (linux, ok, " in result.stdout


# -- plan --show-script -------------------------------------------------------------------------

def test_show_script_prints_the_files_as_text_above_the_verbatim_script(tmp_path):
    from arpfix.quoting import sh_quote

    dropin = "# written by arpfix\nnet.ipv4.conf.all.arp_ignore = 1\nnet.ipv4.conf.all.arp_announce = 2\n"
    script = ("#!/bin/sh\nbegin_run apply\n"
              f"write_file {sh_quote('/etc/sysctl.d/90-arpfix.conf')} {sh_quote(base64.b64encode(dropin.encode()).decode())}"
              " '0644' 'abc' ''\nend_run\n")
    result = run(tmp_path, {"plan": {"*": {"status": "pending", "changes": [SYSCTL], "script": script}}},
                 "plan", "--show-script", "--limit", "rs1")
    out = result.stdout
    assert "# ---- file /etc/sysctl.d/90-arpfix.conf (mode 0644), as the script writes it ----" in out
    assert "#   net.ipv4.conf.all.arp_ignore = 1" in out
    assert out.index("net.ipv4.conf.all.arp_ignore = 1") < out.index("begin_run apply")
    assert script in out  # the script itself, verbatim


def test_show_script_decodes_a_real_linux_apply_script(tmp_path):
    from arpfix.inventory import load_inventory
    from arpfix.platforms.linux import LinuxPlatform
    from arpfix.render import written_files

    data = json.loads((Path(__file__).parent / "linux_cases" / "fresh_kernel_defaults.json").read_text())
    (tmp_path / "inventory.yml").write_text(data["inventory"])
    inventory = load_inventory(str(tmp_path / "inventory.yml"))
    host, platform = inventory.hosts[data["host"]], LinuxPlatform()
    facts = platform.parse_facts(data["raw_facts"])
    script = platform.apply_script(facts, host, inventory, platform.plan(facts, host, inventory))
    files = {path: text for path, _, text in written_files(script)}
    assert "/etc/sysctl.d/90-arpfix.conf" in files
    assert "arp_ignore" in files["/etc/sysctl.d/90-arpfix.conf"]
    assert any(path.endswith("arpfix-vip.service") for path in files)


def test_audit_junit_counts_an_interrupted_host_as_an_error_not_as_nothing():
    from arpfix.model import HostResult
    from arpfix.report import junit

    suite = ET.fromstring(junit([HostResult("rs1", "linux", "interrupted", error="interrupted while it ran"),
                                 HostResult("rs2", "linux", "not started", error="interrupted before it started")],
                                "arpfix audit"))
    assert (suite.get("tests"), suite.get("errors")) == ("2", "2")


def test_a_findings_fix_is_shown_whole_in_the_table_and_a_junit_property(tmp_path):
    from arpfix.model import Finding, HostResult
    from arpfix.report import junit

    fix = "set arp_scope: nic for this host (container networking)"
    findings = [{"check": "arp sysctls", "ok": False, "expected": 1, "actual": 0, "detail": LONG, "fix": fix}]
    result = run(tmp_path, {"audit": {"*": {"status": "drift", "findings": findings}}}, "audit", "--limit", "rs1")
    assert f"(-v: all); fix: {fix}" in result.stdout
    suite = ET.fromstring(junit([HostResult("rs1", "linux", "drift", findings=[Finding(**findings[0])])], "audit"))
    assert suite.find("testcase/properties/property").get("value") == fix
