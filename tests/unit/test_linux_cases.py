"""Data-driven planner cases: real facts captured from a kernel in, plan / audit / rollback out.

One JSON file per case under linux_cases/ (raw facts as the facts script printed them on a real
kernel, the inventory, and what the pure functions must return). Regenerate by hand, review by eye.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arpfix.inventory import load_inventory
from arpfix.platforms.linux import LinuxPlatform

CASES = sorted((Path(__file__).parent / "linux_cases").glob("*.json"))


@pytest.fixture(params=CASES, ids=[c.stem for c in CASES])
def case(request, tmp_path):
    data = json.loads(request.param.read_text())
    inventory_file = tmp_path / "inventory.yml"
    inventory_file.write_text(data["inventory"])
    inventory = load_inventory(str(inventory_file))
    return data, inventory, inventory.hosts[data["host"]]


def test_plan(case):
    data, inventory, host = case
    platform = LinuxPlatform()
    facts = platform.parse_facts(data["raw_facts"])
    plan = [[c.subject, c.action, c.before, c.after] for c in platform.plan(facts, host, inventory)]
    assert plan == data["expect"]["plan"]


def test_audit(case):
    data, inventory, host = case
    platform = LinuxPlatform()
    findings = platform.audit(platform.parse_facts(data["raw_facts"]), host, inventory)
    failing = sorted(f.check for f in findings if not f.ok and f.severity == "error")
    assert failing == data["expect"]["failing_checks"]
    status = "drift" if failing else "compliant"
    assert status == data["expect"]["audit_status"]
    if "warnings" in data["expect"]:
        assert sorted(f.check for f in findings if not f.ok and f.severity == "warning") == data["expect"]["warnings"]


def test_rollback_plan(case):
    data, inventory, host = case
    platform = LinuxPlatform()
    facts = platform.parse_facts(data["raw_facts"])
    assert [[c.subject, c.action] for c in platform.rollback_plan(facts, host)] == data["expect"]["rollback"]


def test_sysctls_come_before_the_vip_in_every_plan(case):
    data, inventory, host = case
    changes = LinuxPlatform().plan(LinuxPlatform().parse_facts(data["raw_facts"]), host, inventory)
    sysctl_positions = [i for i, c in enumerate(changes) if c.subject.startswith("sysctl") and c.action == "set"]
    address_positions = [i for i, c in enumerate(changes) if c.subject.startswith("address") and c.action == "add"]
    if sysctl_positions and address_positions:
        assert max(sysctl_positions) < min(address_positions)


def test_the_cases_cover_what_the_issue_names():
    names = {c.stem for c in CASES}
    assert {"fresh_kernel_defaults", "site_values", "compliant_after_apply", "vip_on_nic",
            "vip_slash24_on_lo", "runtime_drift_after_apply", "disk_drift_after_apply",
            "vip_removed_after_apply", "ipv6_vip", "networkmanager_142", "networkmanager_foreign_on_lo",
            "networkmanager_140"} <= names
