"""One driver for every Windows case in tests/unit/windows_cases/*.json.

Each case: facts JSON shaped like real Windows PowerShell 5.1 / 4.0 output (`raw`), the host and
its VIPs, and what must come out: the ordered plan (subject, action), the audit status and the
failing checks. parse_facts, plan and audit are pure, so no transport is involved.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from arpfix.errors import ArpfixError, TransportError
from arpfix.platforms.windows import WindowsPlatform, desired_state, find_loopback, find_nic
from arpfix.settings import Host, Inventory, Service, Vip

CASES = sorted(Path(__file__).parent.joinpath("windows_cases").glob("*.json"))
PLATFORM = WindowsPlatform()


def build(case: dict) -> tuple[Host, Inventory]:
    spec = case["host"]
    host = Host(
        name=spec["name"], platform="windows", address=ipaddress.ip_address(spec["address"]),
        connect=spec["name"], windows_profile=spec.get("windows_profile", "loadbalancer.org"),
        keep_bindings=tuple(spec.get("keep_bindings", ())),
    )
    vips = tuple(
        Vip(v["name"], ipaddress.ip_address(v["address"]),
            tuple(Service(p, port) for p, port in v["services"]), (host.name,))
        for v in case["vips"]
    )
    return host, Inventory(path="cases", hosts={host.name: host}, groups={}, vips=vips)


def status(findings) -> str:
    return "drift" if any(not f.ok and f.severity == "error" for f in findings) else "compliant"


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_case(path: Path) -> None:
    case = json.loads(path.read_text())
    host, inventory = build(case)
    expect = case["expect"]
    facts = PLATFORM.parse_facts(case["raw"])
    json.dumps(facts)  # normalised facts stay plain JSON

    changes = PLATFORM.plan(facts, host, inventory)
    assert [[c.subject, c.action] for c in changes] == expect["plan"]

    findings = PLATFORM.audit(facts, host, inventory)
    assert status(findings) == expect["audit"]
    failed = [f.check for f in findings if not f.ok and f.severity == "error"]
    assert failed == expect["failed"]
    warnings = [f.check for f in findings if not f.ok and f.severity == "warning"]
    assert warnings == expect.get("warnings", [])
    for f in findings:
        assert f.source, f"finding {f.check} names no source"

    # plan and audit agree: every failing check has a planned change, except reported-only ones
    if expect["plan"] == []:
        assert failed == [] or expect.get("legacy") or expect.get("reported_only")

    for check, text in expect.get("detail_contains", {}).items():
        assert text in next(f.detail for f in findings if f.check == check)
    if "loopback_index" in expect:
        lo, how = find_loopback(facts, desired_state(host, inventory))
        assert lo is not None and lo["index"] == expect["loopback_index"] and how == "journal"
    if "nic_name" in expect:
        assert find_nic(facts, desired_state(host, inventory))["name"] == expect["nic_name"]
    if "rollback" in expect:
        undo = PLATFORM.rollback_plan(facts, host)
        assert [[c.subject, c.action] for c in undo] == expect["rollback"]

    if expect.get("legacy"):
        assert facts["legacy"] is True
        with pytest.raises(ArpfixError):
            PLATFORM.apply_script(facts, host, inventory, changes)
    elif expect.get("blocked"):  # one clear line, the blocker's own reason
        with pytest.raises(TransportError) as raised:
            PLATFORM.apply_script(facts, host, inventory, changes)
        assert "\n" not in str(raised.value) and changes[0].detail in str(raised.value)
    else:
        script = PLATFORM.apply_script(facts, host, inventory, changes)
        assert "$P = @{" in script


def test_all_required_cases_exist() -> None:
    names = {p.stem for p in CASES}
    assert {"fresh_server2019", "compliant", "two_loopbacks", "adapter_removed_by_upgrade",
            "dns_registration_reenabled", "ipv6_vip", "nic_renamed", "server2012r2",
            "server2003"} <= names


def test_enum_normalisation() -> None:
    facts = PLATFORM.parse_facts({
        "adapters": {"Name": "Ethernet", "InterfaceDescription": "x", "ifIndex": 3,
                     "InterfaceGuid": "ABC", "Status": "Up"},
        "addresses": [{"IPAddress": "fe80::1%3", "InterfaceIndex": 3, "PrefixLength": 64,
                       "SkipAsSource": False, "PolicyStore": "ActiveStore", "AddressFamily": 23},
                      {"IPAddress": "192.0.2.5", "InterfaceIndex": 3, "PrefixLength": 24,
                       "SkipAsSource": True, "PolicyStore": "PersistentStore",
                       "AddressFamily": "IPv4"}],
        "interfaces": [{"InterfaceIndex": 3, "AddressFamily": 2, "WeakHostSend": 1,
                        "WeakHostReceive": "Disabled", "InterfaceMetric": 5, "Dhcp": 0}],
        "firewall": {"Name": "arpfix-a-tcp", "Enabled": 1, "LocalAddress": "192.0.2.9",
                     "LocalPort": "443", "Profile": "Any"},
    })
    assert facts["adapters"][0]["guid"] == "{abc}"
    assert [(a["address"], a["family"], a["store"]) for a in facts["addresses"]] == [
        ("fe80::1", 6, "active"), ("192.0.2.5", 4, "persistent")]
    assert facts["interfaces"][0] == {"index": 3, "family": 4, "weak_send": True,
                                      "weak_receive": False, "metric": 5,
                                      "automatic_metric": None, "dhcp": False,
                                      "store": "active"}
    assert facts["firewall"][0]["enabled"] is True
    assert facts["firewall"][0]["local_port"] == ["443"]


def test_rollback_guard_leaves_values_changed_by_someone_else() -> None:
    case = json.loads((Path(__file__).parent / "windows_cases" / "compliant.json").read_text())
    raw = case["raw"]
    raw["interfaces"][0]["WeakHostReceive"] = 0  # an admin turned NIC weak receive off again
    host, _ = build(case)
    undo = PLATFORM.rollback_plan(PLATFORM.parse_facts(raw), host)
    nic = next(c for c in undo if c.subject == "nic ipv4 WeakHostReceive")
    assert nic.action == "keep" and "left as is" in nic.detail


def test_plan_is_pure_and_repeatable() -> None:
    case = json.loads((Path(__file__).parent / "windows_cases" / "fresh_server2019.json").read_text())
    host, inventory = build(case)
    snapshot = json.dumps(case["raw"], sort_keys=True)
    facts = PLATFORM.parse_facts(case["raw"])
    first = PLATFORM.plan(facts, host, inventory)
    assert PLATFORM.plan(facts, host, inventory) == first
    assert json.dumps(case["raw"], sort_keys=True) == snapshot


@pytest.mark.parametrize(("name", "message"), [
    ("run_lock_held", "another arpfix run holds the lock since 2026-12-01T17:02:11"),
    ("constrained_language", "PowerShell is in ConstrainedLanguage mode (AppLocker/WDAC)"),
])
def test_rollback_is_refused_while_blocked(name: str, message: str) -> None:
    case = json.loads((Path(__file__).parent / "windows_cases" / f"{name}.json").read_text())
    host, _ = build(case)
    facts = PLATFORM.parse_facts(case["raw"])
    with pytest.raises(TransportError) as raised:
        PLATFORM.rollback_script(facts, host, PLATFORM.rollback_plan(facts, host))
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_lock_and_language_mode_normalised_as_windows_powershell_writes_them() -> None:
    """[string]$ExecutionContext.SessionState.LanguageMode is the enum name; a raw PSLanguageMode
    serialised by ConvertTo-Json would be its integer (3 = ConstrainedLanguage)."""
    assert PLATFORM.parse_facts({"language_mode": 3})["language_mode"] == "ConstrainedLanguage"
    assert PLATFORM.parse_facts({"language_mode": "FullLanguage"})["language_mode"] == "FullLanguage"
    assert PLATFORM.parse_facts({})["language_mode"] == ""  # older facts: nothing to block on
    lock = PLATFORM.parse_facts({"lock": {"started": "T", "pid": "42", "alive": False}})["lock"]
    assert lock == {"started": "T", "pid": 42, "action": "", "alive": False}
    assert PLATFORM.parse_facts({"lock": None})["lock"] is None
