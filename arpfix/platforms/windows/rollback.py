"""Windows rollback plan: from the journal in the facts, what rollback restores or removes."""

from __future__ import annotations

from typing import Any

from arpfix.model import Change
from arpfix.platforms.windows.facts import _family, _list, family_name, guid, interface, onoff
from arpfix.settings import Host


def _recorded_loopback(facts: dict[str, Any], recorded: dict[str, Any]) -> dict[str, Any] | None:
    recorded_guid = guid(recorded.get("guid")) if recorded.get("guid") else ""
    instance = str(recorded.get("instance_id") or "").lower()
    for adapter in facts.get("adapters", []):
        if (recorded_guid and adapter["guid"] == recorded_guid) or (
                instance and adapter["instance_id"].lower() == instance):
            return adapter
    return None


def devices_to_remove(facts: dict[str, Any]) -> list[str]:
    """Every device rollback removes: the one the journal records as created (whether or not a
    network adapter came up on it), and every device carrying arpfix's marker."""
    recorded = (facts.get("journal") or {}).get("adapter") or {}
    present = {d["instance_id"].lower(): d for d in facts.get("devices", [])}
    out: list[str] = []
    instance = str(recorded.get("instance_id") or "")
    if recorded.get("created") and instance and (
            instance.lower() in present or _recorded_loopback(facts, recorded) is not None):
        out.append(instance)
    for device in facts.get("devices", []):
        if device["marker"] and device["instance_id"].lower() not in {i.lower() for i in out}:
            out.append(device["instance_id"])
    return out


def rollback_plan(facts: dict[str, Any], host: Host) -> list[Change]:
    """Reverse order of the journal. Restores only values still equal to what arpfix set."""
    journal = facts.get("journal") or {}
    entries = _list(journal.get("entries"))
    removing = devices_to_remove(facts)
    if not entries and not journal.get("adapter") and not removing:
        return []
    recorded = journal.get("adapter") or {}
    lo = _recorded_loopback(facts, recorded)
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
            family = _family(entry.get("family")) or 4
            prop = str(entry.get("property"))
            where = "loopback" if entry.get("adapter_guid") and lo and \
                guid(entry.get("adapter_guid")) == lo["guid"] else "nic"
            subject = f"{where} {family_name(family)} {prop}"
            if where == "loopback" and removing_adapter:
                continue  # goes away with the adapter
            iface = interface(facts, index, family) if index is not None else None
            if iface is None:
                continue  # its adapter is gone: nothing to restore (the script says so in "left")
            current = _current_property(iface, prop)
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
    for instance in removing:
        subject = "loopback adapter" if lo is not None and instance.lower() == \
            lo["instance_id"].lower() else f"loopback device {instance}"
        changes.append(Change(subject, "delete", instance, None,
                              "pnputil /remove-device or SetupAPI DIF_REMOVE, by instance id; "
                              "the journal is kept if this fails"))
    changes.append(Change("journal", "delete", "journal.json", None,
                          r"%ProgramData%\arpfix\journal.json"))
    return changes


def _adapter_index(facts: dict[str, Any], adapter_guid: Any) -> int | None:
    g = guid(adapter_guid)
    for adapter in facts.get("adapters", []):
        if adapter["guid"] == g:
            return adapter["index"]
    return None


def _current_property(iface: dict[str, Any] | None, prop: str) -> Any:
    if iface is None:
        return None
    mapping = {"WeakHostSend": onoff(iface.get("weak_send")),
               "WeakHostReceive": onoff(iface.get("weak_receive")),
               "InterfaceMetric": iface.get("metric"),
               "Dhcp": onoff(iface.get("dhcp"))}
    return mapping.get(prop)
