"""Windows facts: the raw JSON of the facts script, normalised into plain data.

Shaped after what Windows PowerShell 5.1 emits through `ConvertTo-Json` (docs/windows.md lists
the evidence): enums as integers (AddressFamily 2 = IPv4, 23 = IPv6; WeakHost*/Dhcp 0 Disabled,
1 Enabled; firewall `Enabled` 1 True / 2 False; `GpoBoolean` 0 False / 1 True / 2 NotConfigured;
`PSLanguageMode` 0 Full / 1 Restricted / 2 No / 3 Constrained), one object instead of a
one-element array, and 4.0's `{"value": [...], "Count": n}` wrappers.
"""

from __future__ import annotations

from typing import Any

LOOPBACK_DESCRIPTION = "Microsoft KM-TEST Loopback Adapter"
LOOPBACK_NAME = "arpfix-loopback"
LOOPBACK_METRIC = 254
FIREWALL_GROUP = "arpfix"
# Set by arpfix as the device's LocationInformation (SPDRP_LOCATION_INFORMATION) BEFORE the device
# is registered: a device that exists and carries it was made by arpfix, journaled or not.
DEVICE_MARKER = "arpfix loopback"

_FAMILY = {2: 4, 23: 6, "2": 4, "23": 6, "ipv4": 4, "ipv6": 6, "internetwork": 4,
           "internetworkv6": 6}
_NETBIOS = {0: "default", 1: "enabled", 2: "disabled"}
_CATEGORY = {0: "Public", 1: "Private", 2: "DomainAuthenticated"}
_LANGUAGE = {0: "FullLanguage", 1: "RestrictedLanguage", 2: "NoLanguage", 3: "ConstrainedLanguage"}
_GPO_BOOLEAN = {0: "False", 1: "True", 2: "NotConfigured"}


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
    """WeakHost*/Dhcp (0/1 or Disabled/Enabled), booleans, firewall `Enabled` (1 True, 2 False)."""
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


def guid(value: Any) -> str:
    """An interface GUID as `{lower-case}`: the form every comparison uses."""
    text = str(value or "").strip().lower()
    if text and not text.startswith("{"):
        text = "{" + text + "}"
    return text


def _store(value: Any) -> str:
    text = str(value or "ActiveStore").lower()
    return "persistent" if text.startswith("persistent") else "active"


def _ports(value: Any) -> list[str]:
    return [str(p) for p in _list(value) if p is not None]


def _enum_name(value: Any, names: dict[int, str]) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return names.get(value, str(value))
    return str(value or "")


def _language_mode(value: Any) -> str:
    """'' when the facts predate the check (read as FullLanguage: nothing to block on)."""
    return _enum_name(value, _LANGUAGE) if value is not None else ""


def _run_lock(value: Any) -> dict[str, Any] | None:
    """The host-side lock file of an apply/rollback: who holds it since when, still alive or not."""
    if not isinstance(value, dict):
        return None
    return {"started": str(value.get("started") or ""), "pid": _int(value.get("pid")),
            "action": str(value.get("action") or ""), "alive": bool(value.get("alive"))}


def parse_facts(raw: dict[str, Any]) -> dict[str, Any]:
    """Normalise one facts document (or the facts an apply/rollback script returns)."""
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
        "language_mode": _language_mode(raw.get("language_mode")),
        # which cloud (arpfix.platforms.cloud): Win32_ComputerSystem and Win32_SystemEnclosure under the
        # names of the Linux DMI files they correspond to
        "dmi": {key: str(value).strip() for key, value in (raw.get("dmi") or {}).items()
                if key in ("sys_vendor", "product_name", "chassis_asset_tag") and value is not None}
               if isinstance(raw.get("dmi"), dict) else {},
        "adapters": [],
        "devices": [],
        "addresses": [],
        "interfaces": [],
        "bindings": [],
        "dns": [],
        "netbios": [],
        "firewall": [],
        "firewall_profiles": [],
        "profiles": [],
        "listening": [],
        "journal": raw.get("journal") or None,
        "lock": _run_lock(raw.get("lock")),
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
            "guid": guid(a.get("InterfaceGuid")),
            "instance_id": str(a.get("PnPDeviceID") or a.get("InstanceId") or ""),
            "status": str(a.get("Status") or ""),
            "mac": str(a.get("MacAddress") or ""),
            "loopback": description.startswith(LOOPBACK_DESCRIPTION),
        })
    for d in _list(raw.get("devices")):  # Get-PnpDevice -Class Net, root-enumerated only
        facts["devices"].append({
            "instance_id": str(d.get("InstanceId") or ""),
            "present": bool(_bool(d.get("Present"))),
            "marker": str(d.get("Marker") or "") == DEVICE_MARKER,
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
            "store": _store(i.get("PolicyStore")),
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
            "guid": guid(n.get("SettingID")),
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
    for p in _list(raw.get("firewall_profiles")):  # Get-NetFirewallProfile -PolicyStore ActiveStore
        facts["firewall_profiles"].append({
            "name": str(p.get("Name") or ""),
            "enabled": _enum_name(p.get("Enabled"), _GPO_BOOLEAN),
            "allow_local_rules": _enum_name(p.get("AllowLocalFirewallRules"), _GPO_BOOLEAN),
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


def family_name(family: int) -> str:
    return "ipv4" if family == 4 else "ipv6"


def interface(facts: dict[str, Any], index: int | None, family: int,
              store: str = "active") -> dict[str, Any] | None:
    """The IP interface of one adapter and family, from the active or the persistent store."""
    for i in facts["interfaces"]:
        if i["index"] == index and i["family"] == family and i.get("store", "active") == store:
            return i
    return None


def onoff(value: bool | None) -> str | None:
    return None if value is None else ("Enabled" if value else "Disabled")
