"""Windows desired state, plan and audit: pure functions of the facts and the inventory.

The loopback adapter arpfix owns is found by the PnP instance id and interface GUID recorded in
the journal, never by name; then by the marker arpfix puts on every device it creates (a run cut
between creating the device and journaling it); without either, an existing KM-TEST loopback
that already holds one of the host's VIPs is adopted (and never removed by rollback).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from arpfix.model import Change, Finding
from arpfix.platforms.cloud import cloud_findings
from arpfix.platforms.windows.facts import (
    FIREWALL_GROUP,
    LOOPBACK_METRIC,
    LOOPBACK_NAME,
    family_name,
    guid,
    interface,
    onoff,
)
from arpfix.settings import Host, Inventory

_STEP_ORDER = {"adapter": 0, "address": 1, "loopback": 2, "nic": 3, "firewall": 4}
# PowerShell outside FullLanguage (AppLocker / WDAC, about_Language_Modes): Add-Type, [IO.File],
# [Convert] and New-Object of most .NET types fail, so no apply or rollback script can run.
LANGUAGE_BLOCK = (
    "PowerShell is in {mode} mode (AppLocker/WDAC): arpfix needs FullLanguage to create the "
    "loopback adapter; its facts and audit still work. Allow arpfix's scripts in the "
    "application control policy (or sign them) and run again"
)


@dataclass(frozen=True)
class DesiredVip:
    name: str
    address: str
    family: int
    prefix: int
    tcp: tuple[int, ...]
    udp: tuple[int, ...]


@dataclass(frozen=True)
class Desired:
    vips: tuple[DesiredVip, ...]
    families: tuple[int, ...]
    keep_bindings: tuple[str, ...]
    required_bindings: tuple[str, ...]
    nic_weak_send: bool
    host_address: str


def desired_state(host: Host, inventory: Inventory) -> Desired:
    """What arpfix wants on this host, from the inventory (VIPs, families, bindings, profile)."""
    vips = []
    for vip in inventory.vips_for(host.name):
        family = vip.address.version
        vips.append(DesiredVip(
            name=vip.name,
            address=vip.address.compressed.lower(),
            family=family,
            prefix=32 if family == 4 else 128,
            tcp=tuple(sorted({s.port for s in vip.services if s.protocol == "tcp"})),
            udp=tuple(sorted({s.port for s in vip.services if s.protocol == "udp"})),
        ))
    families = tuple(sorted({v.family for v in vips}))
    required = {"ms_tcpip"} | ({"ms_tcpip6"} if 6 in families else set())
    keep = required | {b.lower() for b in host.keep_bindings}
    return Desired(
        vips=tuple(vips),
        families=families,
        keep_bindings=tuple(sorted(keep)),
        required_bindings=tuple(sorted(required)),
        nic_weak_send=host.windows_profile.lower() == "microsoft",
        host_address=host.address.compressed.lower(),
    )


def find_loopback(facts: dict[str, Any], want: Desired) -> tuple[dict[str, Any] | None, str]:
    """arpfix's loopback adapter and how it was found: journal, marker, adopted (or none)."""
    journal = facts.get("journal") or {}
    recorded = journal.get("adapter") or {}
    recorded_guid = guid(recorded.get("guid")) if recorded.get("guid") else ""
    instance = str(recorded.get("instance_id") or "").lower()
    if recorded_guid or instance:
        for adapter in facts["adapters"]:
            if (recorded_guid and adapter["guid"] == recorded_guid) or (
                instance and adapter["instance_id"].lower() == instance
            ):
                return adapter, "journal"
        return None, "journal-missing"
    marked = {d["instance_id"].lower() for d in facts.get("devices", []) if d["marker"]}
    for adapter in facts["adapters"]:
        if adapter["instance_id"].lower() in marked:
            return adapter, "marker"
    vip_addresses = {v.address for v in want.vips}
    for adapter in facts["adapters"]:
        if adapter["loopback"] and any(
            a["index"] == adapter["index"] and a["address"] in vip_addresses
            for a in facts["addresses"]
        ):
            return adapter, "adopted"
    return None, "none"


def orphan_devices(facts: dict[str, Any], lo: dict[str, Any] | None) -> list[str]:
    """Devices arpfix created that are not its loopback (a cut run's or a failed driver install's
    leftovers): those with the marker, and the one the journal records as created."""
    mine = lo["instance_id"].lower() if lo else ""
    recorded = (facts.get("journal") or {}).get("adapter") or {}
    created = str(recorded.get("instance_id") or "").lower() if recorded.get("created") else ""
    return sorted(d["instance_id"] for d in facts.get("devices", [])
                  if (d["marker"] or d["instance_id"].lower() == created)
                  and d["instance_id"].lower() != mine)


def find_nic(facts: dict[str, Any], want: Desired) -> dict[str, Any] | None:
    """The primary NIC: the adapter holding the host's own address (never found by name)."""
    for address in facts["addresses"]:
        if address["address"] == want.host_address:
            for adapter in facts["adapters"]:
                if adapter["index"] == address["index"]:
                    return adapter
    return None


@dataclass
class _Item:
    finding: Finding
    change: Change | None = None
    step: str = ""


def _blocking(facts: dict[str, Any], host: Host) -> list[_Item]:
    """What stops any change on this host: PowerShell language mode, a run still going, AWS."""
    items = [_Item(f, Change("cloud", "blocked", f.actual, f.expected, f"{f.detail}; {f.fix}") if f.severity == "error"
                   else None, "block" if f.severity == "error" else "") for f in cloud_findings(facts, host)]
    mode = facts.get("language_mode") or ""
    if mode and mode != "FullLanguage":
        detail = LANGUAGE_BLOCK.format(mode=mode)
        items.append(_Item(
            Finding("powershell language mode", False, "FullLanguage", mode, detail,
                    source="$ExecutionContext.SessionState.LanguageMode"),
            Change("powershell language mode", "blocked", mode, "FullLanguage", detail), "block"))
    lock = facts.get("lock")
    if lock and lock["alive"]:
        detail = (f"another arpfix run holds the lock since {lock['started']} "
                  f"(pid {lock['pid']}, {lock['action'] or 'apply'}): wait for it to finish")
        items.append(_Item(
            Finding("arpfix run lock", False, "free", f"held since {lock['started']}", detail,
                    source=r"%ProgramData%\arpfix\run.lock", severity="warning"),
            Change("arpfix run lock", "blocked", "held", "free", detail), "block"))
    elif lock:
        items.append(_Item(Finding(
            "arpfix run lock", False, "free", f"left by a run started {lock['started']}",
            f"an earlier arpfix {lock['action'] or 'run'} (started {lock['started']}, pid "
            f"{lock['pid']}) did not finish: the connection was lost or it was stopped; the next "
            "apply continues from its journal", source=r"%ProgramData%\arpfix\run.lock",
            severity="warning")))
    return items


def _adapter_items(facts: dict[str, Any], lo: dict[str, Any] | None, how: str) -> list[_Item]:
    items: list[_Item] = []
    journal = facts.get("journal") or {}
    recorded = journal.get("adapter") or {}
    for instance in orphan_devices(facts, lo):
        items.append(_Item(
            Finding(f"loopback device {instance}", False, "none unrecorded", "created by arpfix, "
                    "not in the journal", "a run was cut while creating the adapter",
                    source="Get-PnpDevice / DEVPKEY_Device_LocationInfo"),
            Change(f"loopback device {instance}", "delete", instance, None,
                   "a device arpfix created but never finished: removed by instance id"),
            "adapter"))
    if lo:
        actual = f"{lo['name']} (ifIndex {lo['index']}, {lo['instance_id']}, {lo['guid']})"
        detail = {"adopted": "adopted: an existing loopback holding a VIP",
                  "marker": "created by arpfix (device marker) but not in the journal"}.get(how, "")
        items.append(_Item(
            Finding("loopback adapter", how != "marker", "present", actual, detail,
                    source="Get-NetAdapter"),
            Change("loopback adapter", "adopt", None, lo["instance_id"],
                   "record the adapter arpfix created in the journal") if how == "marker" else None,
            "adapter"))
        if lo["status"] and lo["status"].lower() not in ("up",):
            items.append(_Item(Finding("loopback adapter status", False, "Up", lo["status"],
                                       source="Get-NetAdapter"), None))
        return items
    detail = "no KM-TEST loopback adapter of arpfix's"
    if how == "journal-missing":
        detail = (f"the journal records adapter {recorded.get('instance_id')} "
                  f"{recorded.get('guid')} but it is gone (e.g. removed by an OS upgrade)")
    items.append(_Item(
        Finding("loopback adapter", False, "present", "missing", detail, source="Get-NetAdapter"),
        Change("loopback adapter", "create", None, LOOPBACK_NAME,
               "KM-TEST loopback (*MSLOOP, netloop.inf) via SetupAPI on this one device, renamed "
               f"{LOOPBACK_NAME}, identified by instance id + interface GUID"),
        "adapter"))
    return items


def _address_items(facts: dict[str, Any], want: Desired, lo_index: int | None) -> list[_Item]:
    items: list[_Item] = []
    for vip in want.vips:
        here = [a for a in facts["addresses"] if a["address"] == vip.address]
        on_lo = [a for a in here if lo_index is not None and a["index"] == lo_index]
        elsewhere = sorted({a["index"] for a in here if a["index"] != lo_index})
        if elsewhere:
            names = [a["name"] for a in facts["adapters"] if a["index"] in elsewhere]
            items.append(_Item(Finding(
                f"vip {vip.address} only on the loopback", False, "loopback only",
                ", ".join(names) or str(elsewhere),
                "the VIP on another interface answers ARP/NDP for it: remove it there by hand",
                source="Get-NetIPAddress")))
        want_text = f"{vip.address}/{vip.prefix}"
        if not on_lo:
            items.append(_Item(
                Finding(f"vip {want_text} on loopback", False, want_text, "missing",
                        source="Get-NetIPAddress"),
                Change(f"loopback address {want_text}", "add", None, want_text,
                       "New-NetIPAddress -SkipAsSource $true"),
                "address"))
            continue
        prefixes = sorted({a["prefix"] for a in on_lo if a["prefix"] is not None})
        if prefixes != [vip.prefix]:
            actual = ", ".join(f"{vip.address}/{p}" for p in prefixes)
            items.append(_Item(
                Finding(f"vip {want_text} on loopback", False, want_text, actual,
                        "wrong prefix: a wider prefix makes the whole subnet local",
                        source="Get-NetIPAddress"),
                Change(f"loopback address {want_text}", "replace", actual, want_text,
                       "Remove-NetIPAddress, then New-NetIPAddress -SkipAsSource $true"),
                "address"))
            continue
        items.append(_Item(Finding(f"vip {want_text} on loopback", True, want_text, want_text,
                                   source="Get-NetIPAddress")))
        skip = all(a["skip_as_source"] for a in on_lo)
        stores = sorted({a["store"] for a in on_lo})
        items.append(_Item(
            Finding(f"vip {vip.address} SkipAsSource", skip, True, skip,
                    "" if skip else "the VIP may be used as a source address and registered "
                    "in DNS", source="Get-NetIPAddress " + "/".join(stores)),
            None if skip else Change(f"loopback address {vip.address} SkipAsSource", "set",
                                     False, True, "Set-NetIPAddress -SkipAsSource $true"),
            "address"))
        if "persistent" not in stores:
            items.append(_Item(Finding(
                f"vip {vip.address} persistent", False, "PersistentStore", "ActiveStore only",
                "gone at reboot", source="Get-NetIPAddress -PolicyStore PersistentStore"),
                Change(f"loopback address {want_text}", "replace", "ActiveStore only",
                       want_text, "re-create in both stores"), "address"))
    return items


def _ipinterface_items(facts: dict[str, Any], where: str, index: int | None, family: int,
                       wanted: list[tuple[str, str, Any]], step: str, label: str = "") -> list[_Item]:
    """One finding per IP-interface setting, from the active store and, where the facts have it,
    the persistent store: correct now but lost at reboot is drift (Get-NetIPInterface
    -PolicyStore PersistentStore)."""
    items: list[_Item] = []
    f = family_name(family)
    active = interface(facts, index, family) if index is not None else None
    persistent = interface(facts, index, family, "persistent") if index is not None else None
    for prop, key, expected in wanted:
        now = (onoff(active.get(key)) if key != "metric" else active.get(key)) if active else None
        subject = f"{where} {f} {prop}"
        ok = now == expected
        detail = label
        if ok and persistent is not None:
            stored = onoff(persistent.get(key)) if key != "metric" else persistent.get(key)
            if stored != expected:
                ok = False
                detail = (f"{label}: " if label else "") + \
                    f"correct now, lost at reboot (persistent store: {stored})"
                now = f"{now} (persistent {stored})"
        items.append(_Item(
            Finding(subject, ok, expected, now, detail,
                    source="Get-NetIPInterface -PolicyStore ActiveStore/PersistentStore"),
            None if ok else Change(subject, "set", now, expected, detail), step))
    return items


def _loopback_items(facts: dict[str, Any], want: Desired, lo: dict[str, Any] | None) -> list[_Item]:
    items: list[_Item] = []
    lo_index = lo["index"] if lo else None
    for family in want.families:
        wanted: list[tuple[str, str, Any]] = [
            ("WeakHostReceive", "weak_receive", "Enabled"),
            ("WeakHostSend", "weak_send", "Enabled"),
            ("InterfaceMetric", "metric", LOOPBACK_METRIC),
        ]
        if family == 4:
            # IPv4 only: Windows reports Dhcp Enabled on an IPv6 interface that has only static
            # addresses, so the flag says nothing there (NetworkingDsc stopped testing it for
            # IPv6: xNetworking commit 5c338be, MSFT_xIPAddress). Setting it would never converge.
            wanted.append(("Dhcp", "dhcp", "Disabled"))
        items += _ipinterface_items(facts, "loopback", lo_index, family, wanted, "loopback")

    def setting(check: str, expected: Any, actual: Any, source: str) -> None:
        ok = actual == expected
        items.append(_Item(Finding(check, ok, expected, actual, source=source),
                           None if ok else Change(check, "set", actual, expected), "loopback"))

    dns = next((d for d in facts["dns"] if lo and d["index"] == lo_index), None)
    setting("loopback DNS registration", False, dns["register"] if dns else None,
            "Get-DnsClient RegisterThisConnectionsAddress")
    nb = next((n for n in facts["netbios"] if lo and (n["index"] == lo_index or
                                                      n["guid"] == lo["guid"])), None)
    if 4 in want.families:
        setting("loopback NetBIOS", "disabled", nb["setting"] if nb else None,
                "Win32_NetworkAdapterConfiguration TcpipNetbiosOptions")

    bindings = [b for b in facts["bindings"] if lo and b["index"] == lo_index]
    if lo is None or not bindings:
        items.append(_Item(
            Finding("loopback bindings", False, f"only {', '.join(want.keep_bindings)}",
                    "unknown", source="Get-NetAdapterBinding"),
            Change("loopback bindings", "set", None, list(want.keep_bindings),
                   "disable every binding except these"), "loopback"))
        return items
    extra = sorted(b["component"] for b in bindings
                   if b["enabled"] and b["component"] not in want.keep_bindings)
    # ms_tcpip (+ms_tcpip6) must be on; user keep_bindings are only never turned off
    missing = sorted(c for c in want.required_bindings
                     if any(b["component"] == c and not b["enabled"] for b in bindings))
    ok = not extra and not missing
    enabled = sorted(b["component"] for b in bindings if b["enabled"])
    problems = ([f"disable {extra}"] if extra else []) + ([f"enable {missing}"] if missing else [])
    items.append(_Item(
        Finding("loopback bindings", ok, list(want.keep_bindings), enabled, ", ".join(problems),
                source="Get-NetAdapterBinding"),
        None if ok else Change("loopback bindings", "set", enabled,
                               sorted(set(enabled) - set(extra) | set(missing)),
                               "disable every binding except " + ", ".join(want.keep_bindings)),
        "loopback"))
    return items


def _nic_items(facts: dict[str, Any], want: Desired) -> list[_Item]:
    nic = find_nic(facts, want)
    if nic is None:
        return [_Item(Finding("primary NIC", False, f"adapter holding {want.host_address}",
                              "not found", "no adapter holds the host's address",
                              source="Get-NetIPAddress"))]
    items: list[_Item] = []
    wanted: list[tuple[str, str, Any]] = [("WeakHostReceive", "weak_receive", "Enabled")]
    if want.nic_weak_send:
        wanted.append(("WeakHostSend", "weak_send", "Enabled"))
    for family in want.families:
        items += _ipinterface_items(facts, "nic", nic["index"], family, wanted, "nic",
                                    f"nic {nic['name']} (ifIndex {nic['index']})")
    return items


def _local_rules_ignored(facts: dict[str, Any]) -> list[str]:
    """Profiles whose Group Policy does not merge local rules: a local allow rule has no effect
    there (Get-NetFirewallProfile -PolicyStore ActiveStore, AllowLocalFirewallRules False;
    MS-GPFAS 2.2.3.13 AllowLocalPolicyMerge). NotConfigured is the default: merged."""
    return sorted(p["name"] for p in facts.get("firewall_profiles", [])
                  if p["allow_local_rules"].lower() == "false")


def _firewall_items(facts: dict[str, Any], want: Desired) -> list[_Item]:
    items: list[_Item] = []
    rules = {r["name"]: r for r in facts["firewall"]}
    ignored = _local_rules_ignored(facts)
    for vip in want.vips:
        for proto, ports in (("tcp", vip.tcp), ("udp", vip.udp)):
            if not ports:
                continue
            name = rule_name(vip.name, proto)
            rule = rules.get(name)
            expected = f"allow {proto} {','.join(map(str, ports))} to {vip.address}, all profiles"
            problem = ""
            if rule is None:
                problem = "missing"
            elif not rule["enabled"]:
                problem = "disabled"
            elif vip.address not in rule["local_address"]:
                problem = f"LocalAddress {rule['local_address']}"
            elif sorted(rule["local_port"]) != sorted(str(p) for p in ports):
                problem = f"LocalPort {rule['local_port']}"
            elif rule["profile"] and rule["profile"].lower() != "any":
                problem = f"profile {rule['profile']}"
            change = None if not problem else Change(
                f"firewall rule {name}", "add" if rule is None else "replace",
                None if rule is None else problem, expected)
            detail = ""
            if not problem and ignored:
                # present and right, and still no effect: reported, arpfix cannot change a GPO
                problem = "no effect"
                detail = (f"Group Policy does not merge local firewall rules "
                          f"(AllowLocalFirewallRules False on {', '.join(ignored)}): put the rule "
                          "in the GPO or allow local rule merge")
            items.append(_Item(
                Finding(f"firewall rule {name}", not problem, expected, problem or "ok", detail,
                        source=f"Get-NetFirewallRule -Group {FIREWALL_GROUP}; "
                        "Get-NetFirewallProfile -PolicyStore ActiveStore"),
                change, "firewall"))
    return items


def _listening_items(facts: dict[str, Any], want: Desired) -> list[_Item]:
    items: list[_Item] = []
    for vip in want.vips:
        wildcard = "0.0.0.0" if vip.family == 4 else "::"
        for proto, ports in (("tcp", vip.tcp), ("udp", vip.udp)):
            for port in ports:
                ok = any(s["protocol"] == proto and s["port"] == port and
                         s["address"] in (vip.address, wildcard) for s in facts["listening"])
                items.append(_Item(Finding(
                    f"service {proto}/{port} listening on {vip.address}", ok,
                    f"{vip.address} or {wildcard}", "listening" if ok else "not listening",
                    "" if ok else "the service must listen on the VIP or on all addresses",
                    source="Get-NetTCPConnection -State Listen" if proto == "tcp"
                    else "Get-NetUDPEndpoint", severity="warning")))
    return items


def _evaluate(facts: dict[str, Any], host: Host, inventory: Inventory) -> list[_Item]:
    want = desired_state(host, inventory)
    if facts.get("legacy"):
        caption = facts["os"]["caption"] or "an old Windows"
        return [_Item(Finding(
            "windows version", False, "Windows Server 2012 R2 or later (NetTCPIP cmdlets)",
            f"{caption} {facts['os']['version']}".strip(),
            "no Get-NetAdapter: arpfix reports but does not change this host; Server 2003 is "
            "weak-host already: put the VIP on a loopback adapter by hand",
            source="Get-Command Get-NetAdapter"))]
    if not want.vips:
        return []
    lo, how = find_loopback(facts, want)
    return (_blocking(facts, host) + _adapter_items(facts, lo, how) +
            _address_items(facts, want, lo["index"] if lo else None) +
            _loopback_items(facts, want, lo) + _nic_items(facts, want) +
            _firewall_items(facts, want) + _listening_items(facts, want))


def rule_name(vip_name: str, protocol: str) -> str:
    return f"arpfix-{vip_name}-{protocol}"


def plan(facts: dict[str, Any], host: Host, inventory: Inventory) -> list[Change]:
    """The changes in apply order; a host that cannot be changed plans only its blockers."""
    items = [i for i in _evaluate(facts, host, inventory) if i.change is not None]
    blockers = [i.change for i in items if i.step == "block" and i.change is not None]
    if blockers:
        return blockers
    items.sort(key=lambda i: _STEP_ORDER[i.step])  # stable: keeps order inside a step
    seen: set[str] = set()
    changes = []
    for item in items:
        assert item.change is not None
        if item.change.subject not in seen:
            seen.add(item.change.subject)
            changes.append(item.change)
    return changes


def audit(facts: dict[str, Any], host: Host, inventory: Inventory) -> list[Finding]:
    """One finding per check (expected, actual, source)."""
    return [i.finding for i in _evaluate(facts, host, inventory)]


def steps_of(changes: list[Change]) -> list[str]:
    """The apply script's steps (adapter, address, loopback, nic, firewall) the changes need."""
    steps = []
    for change in changes:
        subject = change.subject
        if subject == "loopback adapter" or subject.startswith("loopback device"):
            step = "adapter"
        elif subject.startswith("loopback address"):
            step = "address"
        elif subject.startswith("loopback"):
            step = "loopback"
        elif subject.startswith("nic"):
            step = "nic"
        elif subject.startswith("firewall"):
            step = "firewall"
        else:
            continue
        if step not in steps:
            steps.append(step)
    return sorted(steps, key=_STEP_ORDER.__getitem__)
