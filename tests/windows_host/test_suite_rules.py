"""The windows_host suite's own rules, checked here (no Windows host needed, no marker).

Without a host the suite is skipped with its reason and CI (ARPFIX_REQUIRE_LAB=1) passes; with
ARPFIX_REQUIRE_WINDOWS_HOST=1 the same skip fails; its persistence and byte-for-byte checks can fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.unit.test_windows_script_syntax import check_structure
from tests.windows_host.conftest import missing_settings
from tests.windows_host.test_real_host import canonical, lost_at_reboot, stores_script

SUITE = Path(__file__).resolve().parent / "test_real_host.py"
ROOT = Path(__file__).resolve().parents[2]


def run_suite(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ARPFIX_WINDOWS_", "ARPFIX_REQUIRE_"))}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(SUITE)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, env={**clean, **env})


def test_without_a_host_every_step_is_skipped_with_its_reason_and_ci_passes():
    result = run_suite(ARPFIX_REQUIRE_LAB="1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "9 skipped" in result.stdout and "passed" not in result.stdout
    assert "set ARPFIX_WINDOWS_HOST, ARPFIX_WINDOWS_USER, ARPFIX_WINDOWS_PASSWORD" in result.stdout


def test_a_run_that_must_be_real_fails_on_the_skip():
    result = run_suite(ARPFIX_REQUIRE_WINDOWS_HOST="1")
    assert result.returncode == 1, result.stdout
    # the skip happens in the fixture (setup), so pytest counts each as an error: none passes or skips
    assert result.stdout.rstrip().splitlines()[-1].startswith("9 errors in ")
    assert "ARPFIX_REQUIRE_WINDOWS_HOST=1" in result.stdout


def test_the_suite_is_not_a_lab_suite():
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only", "-m", "lab", "-p",
                             "no:cacheprovider", str(SUITE)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert "no tests collected" in result.stdout or "9 deselected" in result.stdout, result.stdout


def test_missing_settings_names_what_is_missing():
    assert "ARPFIX_WINDOWS_PASSWORD" in missing_settings({"ARPFIX_WINDOWS_HOST": "10.0.0.5", "ARPFIX_WINDOWS_USER": "u"})
    full = {"ARPFIX_WINDOWS_HOST": "win1.corp.example", "ARPFIX_WINDOWS_USER": "u", "ARPFIX_WINDOWS_PASSWORD": "p"}
    assert "ARPFIX_WINDOWS_ADDRESS" in missing_settings(full)
    assert missing_settings({**full, "ARPFIX_WINDOWS_ADDRESS": "10.0.0.5"}) == ""
    assert missing_settings({**full, "ARPFIX_WINDOWS_HOST": "10.0.0.5"}) == ""


VIP = "192.0.2.200"
NOW = {
    "active_addresses": [{"IPAddress": VIP, "InterfaceIndex": 17, "AddressFamily": 2, "PrefixLength": 32,
                          "SkipAsSource": True},
                         {"IPAddress": "10.0.0.5", "InterfaceIndex": 4, "AddressFamily": 2, "PrefixLength": 24,
                          "SkipAsSource": False}],
    "persistent_addresses": [{"IPAddress": VIP, "InterfaceIndex": 17, "AddressFamily": 2, "PrefixLength": 32,
                              "SkipAsSource": True}],
    "active_interfaces": [{"InterfaceIndex": 17, "InterfaceAlias": "Loopback", "AddressFamily": 2,
                           "WeakHostSend": 1, "WeakHostReceive": 1, "Forwarding": 0},
                          {"InterfaceIndex": 4, "InterfaceAlias": "Ethernet", "AddressFamily": 2,
                           "WeakHostSend": 0, "WeakHostReceive": 1, "Forwarding": 0}],
    "persistent_interfaces": [{"InterfaceIndex": 17, "InterfaceAlias": "Loopback", "AddressFamily": 2,
                               "WeakHostSend": 1, "WeakHostReceive": 1, "Forwarding": 0},
                              {"InterfaceIndex": 4, "InterfaceAlias": "Ethernet", "AddressFamily": 2,
                               "WeakHostSend": 0, "WeakHostReceive": 1, "Forwarding": 0}],
}


def test_the_persistence_check_passes_when_both_stores_agree():
    assert lost_at_reboot(NOW, VIP) == []


def test_the_persistence_check_finds_what_a_restart_would_lose():
    no_vip = {**NOW, "persistent_addresses": []}
    assert lost_at_reboot(no_vip, VIP) == [f"VIP {VIP} is active but not in the persistent store"]
    only_active = {**NOW, "persistent_interfaces": NOW["persistent_interfaces"][:1]}  # NIC setting not saved
    assert lost_at_reboot(only_active, VIP) == ["Ethernet family 2 WeakHostReceive: active 1, no persistent entry"]
    differs = {**NOW, "persistent_interfaces": [NOW["persistent_interfaces"][0],
                                                {**NOW["persistent_interfaces"][1], "WeakHostReceive": "Disabled"}]}
    assert lost_at_reboot(differs, VIP) == ["Ethernet family 2 WeakHostReceive: active 1, persistent 'Disabled'"]
    off = {**NOW, "active_interfaces": [NOW["active_interfaces"][0], {**NOW["active_interfaces"][1], "WeakHostReceive": 0}],
           "persistent_interfaces": NOW["persistent_interfaces"][:1]}
    assert lost_at_reboot(off, VIP) == []  # nothing saved and nothing on: a restart changes nothing
    prefix = {**NOW, "persistent_addresses": [{**NOW["persistent_addresses"][0], "PrefixLength": 24}]}
    assert lost_at_reboot(prefix, VIP) == [f"VIP {VIP} PrefixLength: active 32, persistent 24"]


def test_the_byte_for_byte_comparison_ignores_only_volatile_facts():
    facts = {"adapters": [{"name": "Ethernet"}], "listening": [{"port": 5985}], "journal": None}
    assert canonical(facts) == canonical({**facts, "listening": []})
    assert canonical(facts) != canonical({**facts, "adapters": [{"name": "Ethernet 2"}]})
    assert canonical(facts) != canonical({**facts, "journal": {"adapter": {}}})


def test_the_persistent_store_script_is_balanced_and_takes_values_only_quoted():
    script = stores_script("192.0.2.200", "fd00::5")
    check_structure(script)
    assert "$vip = '192.0.2.200'" in script and "$own = 'fd00::5'" in script
    assert "-PolicyStore PersistentStore" in script and "Set-" not in script  # read-only
