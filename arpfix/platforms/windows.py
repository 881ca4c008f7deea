"""Windows Server real servers (2012 R2 .. 2025) over WinRM.

Facts parsing, desired state, plan, audit and rollback_plan are pure functions. The scripts are
rendered from templates/windows/*.ps1.j2; every inventory value reaches PowerShell only inside the
parameter block built by `ps_literal` (strings through arpfix.quoting.ps_quote, integers from
Python ints, booleans as $true/$false).

The loopback adapter arpfix owns is identified by the PnP instance id and interface GUID recorded
in the journal, never by name. Without a journal, an existing KM-TEST loopback adapter that already
holds one of the host's VIPs is adopted (and never removed by rollback).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from arpfix.errors import ArpfixError
from arpfix.model import Change, Finding
from arpfix.quoting import ps_quote
from arpfix.settings import Host, Inventory

LOOPBACK_DESCRIPTION = "Microsoft KM-TEST Loopback Adapter"
LOOPBACK_NAME = "arpfix-loopback"
LOOPBACK_METRIC = 254
FIREWALL_GROUP = "arpfix"

_FAMILY = {2: 4, 23: 6, "2": 4, "23": 6, "ipv4": 4, "ipv6": 6, "internetwork": 4,
           "internetworkv6": 6}
_NETBIOS = {0: "default", 1: "enabled", 2: "disabled"}
_CATEGORY = {0: "Public", 1: "Private", 2: "DomainAuthenticated"}
_STEP_ORDER = {"adapter": 0, "address": 1, "loopback": 2, "nic": 3, "firewall": 4}


# ---------------------------------------------------------------------------- normalising
def _list(value: Any) -> list[Any]:
    """Windows PowerShell JSON: null, one object, an array, or {"value": [...], "Count": n}."""
    if value is None:
        return []
    if isinstance(value, dict):
        if set(value) == {"value", "Count"}:
            return _list(value["value"])
        return [value]
    if isinstance(value, list):
        return value
    return [value]


def _bool(value: Any) -> bool | None:
    """WeakHost*/Dhcp (0/1 or Disabled/Enabled), booleans, firewall GpoBoolean (1 True, 2 False)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value == 1
    text = str(value).strip().lower()
    if text in ("1", "true", "enabled", "yes"):
        return True
    if text in ("0", "2", "false", "disabled", "no"):
        return False
    return None


def _family(value: Any) -> int | None:
    if isinstance(value, str):
        return _FAMILY.get(value.strip().lower())
    return _FAMILY.get(value) if value is not None else None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _guid(value: Any) -> str:
    text = str(value or "").strip().lower()
    if text and not text.startswith("{"):
        text = "{" + text + "}"
    return text


def _store(value: Any) -> str:
    text = str(value or "ActiveStore").lower()
    return "persistent" if text.startswith("persistent") else "active"


def _ports(value: Any) -> list[str]:
    return [str(p) for p in _list(value) if p is not None]


def parse_facts(raw: dict[str, Any]) -> dict[str, Any]:
    os_raw = raw.get("os") or {}
    facts: dict[str, Any] = {
        "platform": "windows",
        "legacy": bool(raw.get("legacy")),
        "os": {
            "caption": str(os_raw.get("Caption") or "").strip(),
            "version": str(os_raw.get("Version") or ""),
            "build": _int(os_raw.get("BuildNumber")) or 0,
        },
        "powershell": str(raw.get("powershell") or ""),
        "adapters": [],
        "addresses": [],
        "interfaces": [],
        "bindings": [],
        "dns": [],
        "netbios": [],
        "firewall": [],
        "profiles": [],
        "listening": [],
        "journal": raw.get("journal") or None,
    }
    for key in ("applied", "restored", "left"):  # what an apply / rollback script reports
        if key in raw:
            facts[key] = [str(x) for x in _list(raw[key])]
    for a in _list(raw.get("adapters")):
        description = str(a.get("InterfaceDescription") or "")
        facts["adapters"].append({
            "name": str(a.get("Name") or ""),
            "description": description,
            "index": _int(a.get("ifIndex", a.get("InterfaceIndex"))),
            "guid": _guid(a.get("InterfaceGuid")),
            "instance_id": str(a.get("PnPDeviceID") or a.get("InstanceId") or ""),
            "status": str(a.get("Status") or ""),
            "mac": str(a.get("MacAddress") or ""),
            "loopback": description.startswith(LOOPBACK_DESCRIPTION),
        })
    seen: set[tuple[Any, ...]] = set()
    for ip in _list(raw.get("addresses")):
        entry = {
            "address": str(ip.get("IPAddress") or "").split("%", 1)[0].lower(),
            "index": _int(ip.get("InterfaceIndex")),
            "prefix": _int(ip.get("PrefixLength")),
            "skip_as_source": bool(_bool(ip.get("SkipAsSource"))),
            "family": _family(ip.get("AddressFamily")),
            "store": _store(ip.get("PolicyStore")),
        }
        ident = (entry["address"], entry["index"], entry["store"])
        if ident not in seen:
            seen.add(ident)
            facts["addresses"].append(entry)
    for i in _list(raw.get("interfaces")):
        facts["interfaces"].append({
            "index": _int(i.get("InterfaceIndex")),
            "family": _family(i.get("AddressFamily")),
            "weak_send": _bool(i.get("WeakHostSend")),
            "weak_receive": _bool(i.get("WeakHostReceive")),
            "metric": _int(i.get("InterfaceMetric")),
            "automatic_metric": _bool(i.get("AutomaticMetric")),
            "dhcp": _bool(i.get("Dhcp")),
        })
    for b in _list(raw.get("bindings")):
        facts["bindings"].append({
            "index": _int(b.get("ifIndex", b.get("InterfaceIndex"))),
            "component": str(b.get("ComponentID") or "").lower(),
            "enabled": bool(_bool(b.get("Enabled"))),
        })
    for d in _list(raw.get("dns")):
        facts["dns"].append({
            "index": _int(d.get("InterfaceIndex")),
            "register": bool(_bool(d.get("RegisterThisConnectionsAddress"))),
        })
    for n in _list(raw.get("netbios")):
        option = _int(n.get("TcpipNetbiosOptions"))
        facts["netbios"].append({
            "index": _int(n.get("InterfaceIndex")),
            "guid": _guid(n.get("SettingID")),
            "setting": _NETBIOS.get(option, str(option)) if option is not None else None,
        })
    for r in _list(raw.get("firewall")):
        facts["firewall"].append({
            "name": str(r.get("Name") or ""),
            "enabled": bool(_bool(r.get("Enabled"))),
            "direction": str(r.get("Direction") or ""),
            "action": str(r.get("Action") or ""),
            "profile": str(r.get("Profile") or ""),
            "protocol": str(r.get("Protocol") or "").lower(),
            "local_address": [str(x).lower() for x in _list(r.get("LocalAddress"))],
            "local_port": _ports(r.get("LocalPort")),
        })
    for p in _list(raw.get("profiles")):
        category = p.get("NetworkCategory")
        facts["profiles"].append({
            "index": _int(p.get("InterfaceIndex")),
            "category": _CATEGORY.get(category, str(category)) if isinstance(category, int)
            else str(category),
        })
    for s in _list(raw.get("listening")):
        facts["listening"].append({
            "protocol": str(s.get("Protocol") or "tcp").lower(),
            "address": str(s.get("LocalAddress") or "").lower(),
            "port": _int(s.get("LocalPort")),
        })
    return facts


# ---------------------------------------------------------------------------- desired state
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


def _fam(family: int) -> str:
    return "ipv4" if family == 4 else "ipv6"


def find_loopback(facts: dict[str, Any], want: Desired) -> tuple[dict[str, Any] | None, str]:
    """arpfix's loopback adapter: by journal (GUID / instance id), else adopt one holding a VIP."""
    journal = facts.get("journal") or {}
    recorded = journal.get("adapter") or {}
    guid = _guid(recorded.get("guid")) if recorded.get("guid") else ""
    instance = str(recorded.get("instance_id") or "").lower()
    if guid or instance:
        for adapter in facts["adapters"]:
            if (guid and adapter["guid"] == guid) or (
                instance and adapter["instance_id"].lower() == instance
            ):
                return adapter, "journal"
        return None, "journal-missing"
    vip_addresses = {v.address for v in want.vips}
    for adapter in facts["adapters"]:
        if adapter["loopback"] and any(
            a["index"] == adapter["index"] and a["address"] in vip_addresses
            for a in facts["addresses"]
        ):
            return adapter, "adopted"
    return None, "none"


def find_nic(facts: dict[str, Any], want: Desired) -> dict[str, Any] | None:
    """The primary NIC: the adapter holding the host's own address (never found by name)."""
    for address in facts["addresses"]:
        if address["address"] == want.host_address:
            for adapter in facts["adapters"]:
                if adapter["index"] == address["index"]:
                    return adapter
    return None


def _interface(facts: dict[str, Any], index: int | None, family: int) -> dict[str, Any] | None:
    for i in facts["interfaces"]:
        if i["index"] == index and i["family"] == family:
            return i
    return None


def _onoff(value: bool | None) -> str | None:
    return None if value is None else ("Enabled" if value else "Disabled")


@dataclass
class _Item:
    finding: Finding
    change: Change | None = None
    step: str = ""


def _evaluate(facts: dict[str, Any], host: Host, inventory: Inventory) -> list[_Item]:
    want = desired_state(host, inventory)
    items: list[_Item] = []
    if facts.get("legacy"):
        caption = facts["os"]["caption"] or "an old Windows"
        items.append(_Item(Finding(
            "windows version", False, "Windows Server 2012 R2 or later (NetTCPIP cmdlets)",
            f"{caption} {facts['os']['version']}".strip(),
            "no Get-NetAdapter: arpfix reports but does not change this host; Server 2003 is "
            "weak-host already: put the VIP on a loopback adapter by hand",
            source="Get-Command Get-NetAdapter")))
        return items
    if not want.vips:
        return items

    lo, how = find_loopback(facts, want)
    lo_index = lo["index"] if lo else None
    journal = facts.get("journal") or {}
    recorded = journal.get("adapter") or {}

    # adapter -------------------------------------------------------------------------------
    if lo:
        actual = f"{lo['name']} (ifIndex {lo['index']}, {lo['instance_id']}, {lo['guid']})"
        detail = "adopted: an existing loopback holding a VIP" if how == "adopted" else ""
        items.append(_Item(Finding("loopback adapter", True, "present", actual, detail,
                                   source="Get-NetAdapter")))
        if lo["status"] and lo["status"].lower() not in ("up",):
            items.append(_Item(Finding("loopback adapter status", False, "Up", lo["status"],
                                       source="Get-NetAdapter"), None))
    else:
        detail = "no KM-TEST loopback adapter of arpfix's"
        if how == "journal-missing":
            detail = (f"the journal records adapter {recorded.get('instance_id')} "
                      f"{recorded.get('guid')} but it is gone (e.g. removed by an OS upgrade)")
        items.append(_Item(
            Finding("loopback adapter", False, "present", "missing", detail,
                    source="Get-NetAdapter"),
            Change("loopback adapter", "create", None, LOOPBACK_NAME,
                   "KM-TEST loopback (*MSLOOP, netloop.inf) via SetupAPI, renamed "
                   f"{LOOPBACK_NAME}, identified by instance id + interface GUID"),
            "adapter"))

    # addresses -----------------------------------------------------------------------------
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

    # loopback interface settings -----------------------------------------------------------
    def setting(check: str, expected: Any, actual: Any, subject: str, source: str,
                detail: str = "") -> None:
        ok = actual == expected
        items.append(_Item(Finding(check, ok, expected, actual, detail, source=source),
                           None if ok else Change(subject, "set", actual, expected, detail),
                           "loopback"))

    for family in want.families:
        iface = _interface(facts, lo_index, family) if lo else None
        f = _fam(family)
        src = "Get-NetIPInterface"
        values: dict[str, Any] = iface or {}
        setting(f"loopback {f} WeakHostReceive", "Enabled", _onoff(values.get("weak_receive")),
                f"loopback {f} WeakHostReceive", src)
        setting(f"loopback {f} WeakHostSend", "Enabled", _onoff(values.get("weak_send")),
                f"loopback {f} WeakHostSend", src)
        setting(f"loopback {f} InterfaceMetric", LOOPBACK_METRIC, values.get("metric"),
                f"loopback {f} InterfaceMetric", src)
        setting(f"loopback {f} Dhcp", "Disabled", _onoff(values.get("dhcp")), f"loopback {f} Dhcp", src)

    dns = next((d for d in facts["dns"] if lo and d["index"] == lo_index), None)
    setting("loopback DNS registration", False, dns["register"] if dns else None,
            "loopback DNS registration", "Get-DnsClient RegisterThisConnectionsAddress")
    nb = next((n for n in facts["netbios"] if lo and (n["index"] == lo_index or
                                                      n["guid"] == lo["guid"])), None)
    if 4 in want.families:
        setting("loopback NetBIOS", "disabled", nb["setting"] if nb else None,
                "loopback NetBIOS", "Win32_NetworkAdapterConfiguration TcpipNetbiosOptions")

    bindings = [b for b in facts["bindings"] if lo and b["index"] == lo_index]
    if lo is None or not bindings:
        items.append(_Item(
            Finding("loopback bindings", False, f"only {', '.join(want.keep_bindings)}",
                    "unknown", source="Get-NetAdapterBinding"),
            Change("loopback bindings", "set", None, list(want.keep_bindings),
                   "disable every binding except these"), "loopback"))
    else:
        extra = sorted(b["component"] for b in bindings
                       if b["enabled"] and b["component"] not in want.keep_bindings)
        # ms_tcpip (+ms_tcpip6) must be on; user keep_bindings are only never turned off
        missing = sorted(c for c in want.required_bindings
                         if any(b["component"] == c and not b["enabled"] for b in bindings))
        ok = not extra and not missing
        enabled = sorted(b["component"] for b in bindings if b["enabled"])
        items.append(_Item(
            Finding("loopback bindings", ok, list(want.keep_bindings), enabled,
                    "" if ok else f"disable {extra}, enable {missing}".replace(", enable []", "")
                    .replace("disable [], ", ""), source="Get-NetAdapterBinding"),
            None if ok else Change("loopback bindings", "set", enabled,
                                   sorted(set(enabled) - set(extra) | set(missing)),
                                   "disable every binding except " +
                                   ", ".join(want.keep_bindings)),
            "loopback"))

    # primary NIC ---------------------------------------------------------------------------
    nic = find_nic(facts, want)
    if nic is None:
        items.append(_Item(Finding("primary NIC", False, f"adapter holding {want.host_address}",
                                   "not found", "no adapter holds the host's address",
                                   source="Get-NetIPAddress")))
    else:
        for family in want.families:
            iface = _interface(facts, nic["index"], family)
            f = _fam(family)
            label = f"nic {nic['name']} (ifIndex {nic['index']})"
            props = [("WeakHostReceive", "weak_receive")]
            if want.nic_weak_send:
                props.append(("WeakHostSend", "weak_send"))
            for prop, key in props:
                state: str | None = _onoff(iface.get(key)) if iface else None
                ok = state == "Enabled"
                items.append(_Item(
                    Finding(f"nic {f} {prop}", ok, "Enabled", state, label,
                            source="Get-NetIPInterface"),
                    None if ok else Change(f"nic {f} {prop}", "set", state, "Enabled", label),
                    "nic"))

    # firewall ------------------------------------------------------------------------------
    rules = {r["name"]: r for r in facts["firewall"]}
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
            ok = not problem
            items.append(_Item(
                Finding(f"firewall rule {name}", ok, expected, "ok" if ok else problem,
                        source=f"Get-NetFirewallRule -Group {FIREWALL_GROUP}"),
                None if ok else Change(f"firewall rule {name}",
                                       "add" if rule is None else "replace",
                                       None if rule is None else problem, expected),
                "firewall"))

    # listening (warning only) -----------------------------------------------------------------
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


def rule_name(vip_name: str, protocol: str) -> str:
    return f"arpfix-{vip_name}-{protocol}"


def plan(facts: dict[str, Any], host: Host, inventory: Inventory) -> list[Change]:
    items = [i for i in _evaluate(facts, host, inventory) if i.change is not None]
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
    return [i.finding for i in _evaluate(facts, host, inventory)]


def steps_of(changes: list[Change]) -> list[str]:
    steps = []
    for change in changes:
        subject = change.subject
        if subject == "loopback adapter":
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


# ---------------------------------------------------------------------------- rollback plan
def rollback_plan(facts: dict[str, Any], host: Host) -> list[Change]:
    """Reverse order of the journal. Restores only values still equal to what arpfix set."""
    journal = facts.get("journal") or {}
    entries = _list(journal.get("entries"))
    if not entries and not journal.get("adapter"):
        return []
    recorded = journal.get("adapter") or {}
    lo = None
    guid = _guid(recorded.get("guid")) if recorded.get("guid") else ""
    for adapter in facts.get("adapters", []):
        if guid and adapter["guid"] == guid:
            lo = adapter
    removing_adapter = bool(recorded.get("created")) and lo is not None
    changes: list[Change] = []
    for entry in reversed(entries):
        kind = entry.get("kind")
        if kind == "firewall":
            present = any(r["name"] == entry.get("name") for r in facts.get("firewall", []))
            if present:
                changes.append(Change(f"firewall rule {entry.get('name')}", "remove",
                                      "present", None))
        elif kind == "ipinterface":
            index = _adapter_index(facts, entry.get("adapter_guid"))
            family = _family(entry.get("family"))
            prop = str(entry.get("property"))
            where = "loopback" if entry.get("adapter_guid") and lo and \
                _guid(entry.get("adapter_guid")) == lo["guid"] else "nic"
            subject = f"{where} {_fam(family or 4)} {prop}"
            if where == "loopback" and removing_adapter:
                continue  # goes away with the adapter
            iface = _interface(facts, index, family or 4) if index is not None else None
            current = _current_property(iface, prop)
            if iface is None:
                continue
            if str(current) == str(entry.get("after")):
                changes.append(Change(subject, "set", current, entry.get("before"),
                                      "restore the value from before arpfix"))
            else:
                changes.append(Change(subject, "keep", current, current,
                                      f"changed since arpfix set {entry.get('after')}: left "
                                      "as is"))
        elif kind in ("dns", "netbios", "binding", "skipassource"):
            if removing_adapter or lo is None:
                continue  # goes away with the adapter, or the adapter is already gone
            changes.append(Change(f"loopback {kind} {entry.get('component', '')}".strip(), "set",
                                  entry.get("after"), entry.get("before"),
                                  "restored only if still as arpfix set it"))
        elif kind == "address":
            address = str(entry.get("address") or "").lower()
            if lo is None or not any(a["address"] == address and a["index"] == lo["index"]
                                     for a in facts.get("addresses", [])):
                continue  # only ever removed from arpfix's own adapter
            changes.append(Change(f"loopback address {entry.get('address')}/"
                                  f"{entry.get('prefix')}", "remove", entry.get("address"), None))
    if removing_adapter:
        changes.append(Change("loopback adapter", "delete", recorded.get("instance_id"), None,
                              "pnputil /remove-device or SetupAPI DIF_REMOVE, by instance id"))
    changes.append(Change("journal", "delete", "journal.json", None,
                          r"%ProgramData%\arpfix\journal.json"))
    return changes


def _adapter_index(facts: dict[str, Any], guid: Any) -> int | None:
    g = _guid(guid)
    for adapter in facts.get("adapters", []):
        if adapter["guid"] == g:
            return adapter["index"]
    return None


def _current_property(iface: dict[str, Any] | None, prop: str) -> Any:
    if iface is None:
        return None
    mapping = {"WeakHostSend": _onoff(iface.get("weak_send")),
               "WeakHostReceive": _onoff(iface.get("weak_receive")),
               "InterfaceMetric": iface.get("metric"),
               "Dhcp": _onoff(iface.get("dhcp"))}
    return mapping.get(prop)


# ---------------------------------------------------------------------------- scripts
def ps_literal(value: Any, indent: int = 0) -> str:
    """A PowerShell literal for plain data: strings only through ps_quote."""
    pad = "    " * (indent + 1)
    if isinstance(value, bool):
        return "$true" if value else "$false"
    if value is None:
        return "$null"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, str):
        return ps_quote(value)
    if isinstance(value, dict):
        if not value:
            return "@{}"
        lines = []
        for key, item in value.items():
            if not key.isidentifier():
                raise ArpfixError(f"internal: bad parameter name {key!r}")
            lines.append(f"{pad}{key} = {ps_literal(item, indent + 1)}")
        return "@{\n" + "\n".join(lines) + "\n" + "    " * indent + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "@()"
        return "@(\n" + ",\n".join(pad + ps_literal(v, indent + 1) for v in value) + "\n" + \
            "    " * indent + ")"
    return ps_quote(str(value))


def _params(host: Host, inventory: Inventory | None, steps: list[str]) -> str:
    data: dict[str, Any] = {"HostName": host.name, "Steps": steps}
    if inventory is not None:
        want = desired_state(host, inventory)
        data.update({
            "HostAddress": want.host_address,
            "Vips": [{
                "Name": v.name, "Address": v.address, "Family": "IPv4" if v.family == 4 else "IPv6", "Prefix": v.prefix,
                "Tcp": [str(p) for p in v.tcp], "Udp": [str(p) for p in v.udp]}
                for v in want.vips],
            "Families": ["IPv4" if f == 4 else "IPv6" for f in want.families],
            "KeepBindings": list(want.keep_bindings),
            "RequiredBindings": list(want.required_bindings),
            "NicWeakSend": want.nic_weak_send,
            "LoopbackName": LOOPBACK_NAME,
            "Metric": LOOPBACK_METRIC,
            "Ports": sorted({str(p) for v in want.vips for p in v.tcp + v.udp}),
        })
    else:
        data.update({"HostAddress": host.address.compressed.lower(), "Vips": [], "Families": [],
                     "KeepBindings": [], "RequiredBindings": [], "NicWeakSend": False, "LoopbackName": LOOPBACK_NAME,
                     "Metric": LOOPBACK_METRIC, "Ports": []})
    return ps_literal(data)


def _render(template: str, params: str) -> str:
    from arpfix.templating import render

    return render(template, params=params)


class WindowsPlatform:
    name = "windows"

    def facts_script(self, host: Host, inventory: Inventory) -> str:
        return _render("windows/facts.ps1.j2", _params(host, inventory, []))

    def parse_facts(self, raw: dict[str, Any]) -> dict[str, Any]:
        return parse_facts(raw)

    def plan(self, facts: dict[str, Any], host: Host, inventory: Inventory) -> list[Change]:
        return plan(facts, host, inventory)

    def audit(self, facts: dict[str, Any], host: Host, inventory: Inventory) -> list[Finding]:
        return audit(facts, host, inventory)

    def apply_script(self, facts: dict[str, Any], host: Host, inventory: Inventory,
                     changes: list[Change]) -> str:
        if facts.get("legacy"):
            raise ArpfixError(f"{host.name}: Windows without the NetTCPIP cmdlets (2008 R2 or "
                              "older) is reported only, never changed")
        return _render("windows/apply.ps1.j2", _params(host, inventory, steps_of(changes)))

    def rollback_plan(self, facts: dict[str, Any], host: Host) -> list[Change]:
        return rollback_plan(facts, host)

    def rollback_script(self, facts: dict[str, Any], host: Host, changes: list[Change]) -> str:
        if facts.get("legacy"):
            raise ArpfixError(f"{host.name}: nothing arpfix can roll back on this Windows version")
        return _render("windows/rollback.ps1.j2", _params(host, None, ["rollback"]))


platform = WindowsPlatform()
