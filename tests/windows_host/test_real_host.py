"""The first real Windows host: the whole story through the real CLI over real WinRM.

facts -> plan -> apply -> apply again (nothing to do) -> audit compliant -> the settings are in the
persistent store (what survives a reboot, read without rebooting) -> rollback -> the host reads
back byte for byte as before. Run only against a disposable VM (docs/windows-host-tests.md); it has
never run in this repository's CI or on the machine it was written on.

The persistent-store read is a small read-only script of this suite sent with arpfix's own WinRM
transport (the CLI has no command to run arbitrary scripts); everything else is `arpfix ...`.
Facts on the wire: Get-NetIPAddress and Get-NetIPInterface take -PolicyStore ActiveStore (the
default: what is in effect now) or PersistentStore (what Windows copies to the active store at
restart), https://learn.microsoft.com/en-us/powershell/module/nettcpip/get-netipinterface
(-PolicyStore) and .../get-netipaddress.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from arpfix.exitcodes import Exit
from arpfix.inventory import load_inventory
from arpfix.quoting import ps_quote
from arpfix.transport.winrm import WinrmTransport
from tests.windows_host.conftest import WindowsHost

pytestmark = pytest.mark.windows_host

# Facts that change on their own between two reads of an untouched host (sockets come and go).
VOLATILE_FACTS = ("listening",)
# The IP-interface settings arpfix changes (weak host model, forwarding): they must be the same in
# the active and the persistent store, or the host is "correct now, lost at reboot".
INTERFACE_SETTINGS = ("WeakHostSend", "WeakHostReceive", "Forwarding")
ADDRESS_SETTINGS = ("PrefixLength", "SkipAsSource")
# What an interface without a persistent entry comes back with: Disabled (the documented default of
# WeakHostSend/WeakHostReceive), however ConvertTo-Json spells the enum.
DISABLED = (0, "Disabled", None)


def canonical(facts: dict[str, Any]) -> bytes:
    """The facts minus volatile fields, as bytes that compare equal only when every value does."""
    stable = {key: value for key, value in facts.items() if key not in VOLATILE_FACTS}
    return json.dumps(stable, sort_keys=True, ensure_ascii=False).encode("utf-8")


def stores_script(vip: str, own: str) -> str:
    """The read-only script: both policy stores for the VIP, the host's own address and their interfaces."""
    return f"""
$ErrorActionPreference = 'Stop'
$vip = {ps_quote(vip)}
$own = {ps_quote(own)}
$addressFields = @('IPAddress', 'InterfaceIndex', 'AddressFamily', 'PrefixLength', 'SkipAsSource')
$interfaceFields = @('InterfaceIndex', 'InterfaceAlias', 'AddressFamily', 'WeakHostSend', 'WeakHostReceive', 'Forwarding')
$active = @(Get-NetIPAddress -ErrorAction SilentlyContinue | Where-Object {{ $_.IPAddress -eq $vip -or $_.IPAddress -eq $own }})
$indexes = @($active | ForEach-Object {{ $_.InterfaceIndex }})
$aliases = @($active | ForEach-Object {{ $_.InterfaceAlias }})
$persistent = @(Get-NetIPAddress -PolicyStore PersistentStore -ErrorAction SilentlyContinue | Where-Object {{ $_.IPAddress -eq $vip -or $_.IPAddress -eq $own }})
$ours = {{ param($i) ($indexes -contains $i.InterfaceIndex) -or ($aliases -contains $i.InterfaceAlias) }}
$activeInterfaces = @(Get-NetIPInterface -ErrorAction SilentlyContinue | Where-Object {{ & $ours $_ }})
$persistentInterfaces = @(Get-NetIPInterface -PolicyStore PersistentStore -ErrorAction SilentlyContinue | Where-Object {{ & $ours $_ }})
$document = [pscustomobject]@{{
    active_addresses = @($active | Select-Object -Property $addressFields)
    persistent_addresses = @($persistent | Select-Object -Property $addressFields)
    active_interfaces = @($activeInterfaces | Select-Object -Property $interfaceFields)
    persistent_interfaces = @($persistentInterfaces | Select-Object -Property $interfaceFields)
}}
$document | ConvertTo-Json -Depth 4 -Compress
"""


def read_stores(host: WindowsHost) -> dict[str, list[dict[str, Any]]]:
    """Run stores_script on the host with arpfix's WinRM transport."""
    inventory = load_inventory(str(host.inventory_path))  # validated values only reach the script
    target = inventory.hosts["win1"]
    script = stores_script(inventory.vips[0].address.compressed, target.address.compressed)
    transport = WinrmTransport(target, insecure=host.insecure)
    try:
        raw = transport.run_script(script)
    finally:
        transport.close()
    return {key: _list(raw.get(key)) for key in
            ("active_addresses", "persistent_addresses", "active_interfaces", "persistent_interfaces")}


def _list(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def lost_at_reboot(stores: dict[str, list[dict[str, Any]]], vip: str) -> list[str]:
    """Every setting in effect now that the persistent store would not bring back after a restart."""
    problems = []
    persisted = {str(a["IPAddress"]).lower(): a for a in stores["persistent_addresses"]}
    for address in stores["active_addresses"]:
        if str(address["IPAddress"]).lower() != vip:
            continue  # the NIC's own address may come from DHCP: not arpfix's
        saved = persisted.get(vip)
        if saved is None:
            problems.append(f"VIP {vip} is active but not in the persistent store")
            continue
        for setting in ADDRESS_SETTINGS:
            if saved.get(setting) != address.get(setting):
                problems.append(f"VIP {vip} {setting}: active {address.get(setting)!r}, "
                                f"persistent {saved.get(setting)!r}")
    # matched by alias and family: the persistent store is keyed by interface, not by a live index
    saved_interfaces = {(i["InterfaceAlias"], i["AddressFamily"]): i for i in stores["persistent_interfaces"]}
    for interface in stores["active_interfaces"]:
        key = (interface["InterfaceAlias"], interface["AddressFamily"])
        saved = saved_interfaces.get(key)
        for setting in INTERFACE_SETTINGS:
            now = interface.get(setting)
            if saved is None:
                if now not in DISABLED:
                    problems.append(f"{key[0]} family {key[1]} {setting}: active {now!r}, no persistent entry")
            elif saved.get(setting) != now:
                problems.append(f"{key[0]} family {key[1]} {setting}: active {now!r}, persistent {saved.get(setting)!r}")
    return problems


def test_facts_read_a_clean_host(windows_host: WindowsHost) -> None:
    code, document, err = windows_host.arpfix("facts")
    assert code == Exit.OK, err
    host = windows_host.only_host(document)
    assert host["status"] == "ok", host
    facts = host["facts"]
    assert facts["platform"] == "windows" and not facts.get("legacy"), facts.get("os")
    assert not facts.get("journal"), "the host has an arpfix journal already: use a fresh VM (or roll back first)"
    present = {str(a.get("address")) for a in facts.get("addresses", [])}
    assert windows_host.vip not in present, f"the VIP {windows_host.vip} is already on the host"
    windows_host.state["facts_before"] = canonical(facts)
    windows_host.state["stores_before"] = read_stores(windows_host)


def test_plan_lists_the_changes(windows_host: WindowsHost) -> None:
    code, document, err = windows_host.arpfix("plan")
    assert code == Exit.PENDING, err
    host = windows_host.only_host(document)
    assert host["status"] == "pending" and host["changes"], host
    subjects = [c["subject"] for c in host["changes"]]
    assert any("loopback" in s for s in subjects), subjects


def test_apply_converges(windows_host: WindowsHost) -> None:
    code, document, err = windows_host.arpfix("apply", "--yes")
    windows_host.state["applied"] = True  # even a failed apply may have changed something
    host = windows_host.only_host(document) if document.get("hosts") else {}
    assert code == Exit.OK, f"{err} {host.get('error', '')}"
    assert host["status"] == "changed", host


def test_apply_again_changes_nothing(windows_host: WindowsHost) -> None:
    code, document, err = windows_host.arpfix("apply", "--yes")
    assert code == Exit.OK, err
    host = windows_host.only_host(document)
    assert host["status"] == "ok" and host["changes"] == [], host


def test_audit_is_compliant(windows_host: WindowsHost) -> None:
    code, document, err = windows_host.arpfix("audit")
    host = windows_host.only_host(document) if document.get("hosts") else {}
    failing = [f for f in host.get("findings", []) if not f["ok"] and f["severity"] == "error"]
    assert code == Exit.OK, f"{err} {failing}"
    assert host["status"] == "compliant", failing


def test_what_apply_set_survives_a_restart(windows_host: WindowsHost) -> None:
    """Without rebooting: what is in effect now is also in the persistent store."""
    stores = read_stores(windows_host)
    assert any(str(a["IPAddress"]).lower() == windows_host.vip for a in stores["active_addresses"]), stores
    assert lost_at_reboot(stores, windows_host.vip) == []


def test_rollback_restores(windows_host: WindowsHost) -> None:
    code, document, err = windows_host.arpfix("rollback", "--yes")
    host = windows_host.only_host(document) if document.get("hosts") else {}
    assert code == Exit.OK, f"{err} {host.get('error', '')}"
    assert host["status"] == "changed", host
    windows_host.state["rolled_back"] = True


def test_the_host_reads_back_byte_for_byte_as_before(windows_host: WindowsHost) -> None:
    code, document, err = windows_host.arpfix("facts")
    assert code == Exit.OK, err
    after = canonical(windows_host.only_host(document)["facts"])
    before = windows_host.state["facts_before"]
    assert after == before, _first_difference(before, after)
    stores_after = read_stores(windows_host)
    assert json.dumps(stores_after, sort_keys=True) == json.dumps(windows_host.state["stores_before"], sort_keys=True)


def test_rollback_again_changes_nothing(windows_host: WindowsHost) -> None:
    code, document, err = windows_host.arpfix("rollback", "--yes")
    assert code == Exit.OK, err
    assert windows_host.only_host(document)["status"] == "ok"


def _first_difference(before: bytes, after: bytes) -> str:
    old, new = json.loads(before), json.loads(after)
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            return f"facts[{key!r}] before {old.get(key)!r}, after {new.get(key)!r}"
    return "no difference"
