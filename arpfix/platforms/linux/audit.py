"""Linux audit: runtime and on-disk state against the desired state, and what arpfix still owns. Pure.

Every error-level finding has a planned change that fixes it, or a `blocked` one that says why
apply cannot: `plan` has nothing to do if and only if the audit finds no error-level drift.
"""

from __future__ import annotations

from typing import Any

from arpfix.model import Finding
from arpfix.platforms.linux.common import DUMMY_NAME, NM_FILE, SAFE_ARP_IGNORE, sysctl_name, where_is
from arpfix.platforms.linux.desired import Desired, desired_state, nm_profile_problem, redirect_present, redirect_rules
from arpfix.platforms.linux.facts import persisted_sysctls
from arpfix.platforms.linux.harm import (
    arp_scope,
    cloud_findings,
    container_interfaces,
    networkd_findings,
    source_findings,
    udp_wildcard_findings,
)
from arpfix.platforms.linux.ownership import give_back
from arpfix.platforms.linux.plan import stale_records
from arpfix.settings import Host, Inventory


def stale_findings(facts: dict[str, Any], want: Desired) -> list[Finding]:
    """One error per piece of arpfix's own state that the inventory no longer wants (plan removes it)."""
    out = []
    for change, step in give_back(stale_records(facts, want), facts, keep_changed=False):
        if step is None:
            continue
        out.append(Finding(f"stale {change.subject}", False, change.after, change.before,
                           f"arpfix's own, no longer wanted by the inventory: apply will {change.action} it",
                           source="journal"))
    return out


def run_findings(facts: dict[str, Any]) -> list[Finding]:
    """Warnings about arpfix's own runs: one that did not finish, temp files a killed write left."""
    out = []
    last = facts.get("last_run")
    if last and not last.get("finished"):
        out.append(Finding("last arpfix run", False, "finished", f"{last.get('action')} at {last.get('time')} did not finish",
                           "it was cut part-way (connection lost or killed); what it changed is journaled, and the "
                           "next apply or rollback takes it from there", source="journal", severity="warning"))
    for path in facts.get("leftovers", []):
        out.append(Finding("temp file", False, None, path, "left by a write that was cut; the next apply or rollback "
                           "removes it", source=path, severity="warning"))
    return out


def audit(facts: dict[str, Any], host: Host, inventory: Inventory) -> list[Finding]:
    """Pure: one finding per check, with expected, actual (effective) and where the value comes from."""
    want = desired_state(facts, host, inventory)
    findings = stale_findings(facts, want) + run_findings(facts)
    if not want.vips:
        return findings
    findings += cloud_findings(facts, host)
    scope, why = arp_scope(facts, host)
    if why and scope == "nic" and want.method != "redirect":
        findings.append(Finding("arp scope", False, "all", "nic", why, source="interfaces", severity="warning",
                                fix="set arp_scope: all for this host to protect every interface"))
    if want.nic is None:
        findings.append(Finding("primary NIC", False, str(host.address), None,
                                f"no interface holds {host.address}"))
    persisted = persisted_sysctls(facts.get("sysctl_files", []))
    sysctl4 = facts.get("sysctl4", {})
    effective = facts.get("effective4", {})
    for family, dev, key, value in want.sysctls:
        name = sysctl_name(family, dev, key)
        if family == "ipv4" and dev != "all":
            actual = effective.get(dev, {}).get(key)
            own = sysctl4.get(dev, {}).get(key)
            all_value = sysctl4.get("all", {}).get(key)
            findings.append(Finding(
                f"{key} effective on {dev}", actual == value, value, actual,
                "" if actual == value else f"max(all={all_value}, {dev}={own}) = {actual}",
                source=f"runtime: all={all_value}, {dev}={own}"))
        else:
            table = sysctl4 if family == "ipv4" else facts.get("sysctl6", {})
            actual = table.get(dev, {}).get(key)
            findings.append(Finding(name, actual == value, value, actual, source="runtime"))
        stored, source = persisted.get((family, dev, key), (None, ""))
        if dev in ("all", "lo") or family == "ipv6":
            ok = stored == value
            findings.append(Finding(
                f"{name} persisted", ok, value, stored,
                "" if ok else ("lost at reboot: no sysctl file sets it" if stored is None
                               else f"at boot {source} sets {stored}"),
                source=source or "none"))
    # every other interface must not answer ARP for the VIP either (effective covers it)
    if want.method != "redirect" and any(v.family == 4 for v in want.vips):
        safe = SAFE_ARP_IGNORE[want.method]
        containers = set(container_interfaces(facts)) if scope == "nic" else set()
        for dev, values in effective.items():
            if dev in ("lo", want.nic, DUMMY_NAME) or dev in containers:
                continue
            ok = values.get("arp_ignore") in safe and values.get("arp_announce") == 2
            findings.append(Finding(
                f"arp effective on {dev}", ok, {"arp_ignore": " or ".join(map(str, safe)), "arp_announce": 2},
                {"arp_ignore": values.get("arp_ignore"), "arp_announce": values.get("arp_announce")},
                "" if ok else ("another interface on this host could answer ARP for the VIP" if scope == "all"
                               else "arp_scope nic: this interface is not protected; it could answer ARP for the VIP"),
                source="runtime", severity="error" if scope == "all" else "warning",
                fix="" if ok else f"set net.ipv4.conf.{dev}.arp_ignore to 1 (or arp_scope: all)"))
    for dev, cidr, _label, scope in want.addresses:
        address, prefix = cidr.split("/")
        places = where_is(facts, address)
        actual = [f"{name}/{p}" + (f" scope {s}" if s and s != "global" else "") for name, p, _, s in places]
        expected = f"{dev}/{prefix}" + (" scope host" if scope == "host" else "")
        correct = any(name == dev and str(p) == prefix and (s or "global") == scope for name, p, _, s in places)
        detail = ""
        if not places:
            detail = "VIP missing"
        elif any(name == want.nic for name, _, _, _ in places):
            detail = f"VIP on the NIC {want.nic}: this server answers ARP for it"
        elif not correct:
            detail = f"VIP present as {', '.join(actual)}, expected {expected}"
        ok = correct and len(places) == 1
        findings.append(Finding(f"vip {address}", ok, expected, actual, detail, source="runtime"))
    files = facts.get("files", {})
    for path, content, _ in want.files:
        current = files.get(path)
        ok = current == content
        findings.append(Finding(
            f"persisted {path}", ok, "arpfix content", "absent" if current is None else ("ok" if ok else "differs"),
            "" if ok else "lost at reboot", source=path))
    if want.link:
        current_link = files.get(want.link[0])
        ok = isinstance(current_link, dict) and current_link.get("link") == want.link[1]
        findings.append(Finding("arpfix-vip.service enabled", ok, True, ok, "" if ok else "lost at reboot",
                                source=want.link[0]))
    if want.method == "redirect":
        files_text = facts.get("redirect_files", [])
        for vip in want.vips:
            places = [f"{name}/{p}" for name, p, _, _ in where_is(facts, vip.address)]
            findings.append(Finding(f"vip {vip.address} off the host", not places, None, places or None,
                                    "" if not places else "with the redirect method the host must not hold the VIP",
                                    source="runtime"))
        for vip, service, rule in redirect_rules(want.vips):
            live = redirect_present(facts.get("redirect_rules", []), vip, service)
            findings.append(Finding(f"redirect {vip.address} {service}", live, rule, "present" if live else None,
                                    "" if live else "no NAT REDIRECT rule: DR traffic for the VIP is dropped",
                                    source="nft list ruleset / iptables -t nat"))
            kept = redirect_present(files_text, vip, service)
            findings.append(Finding(f"redirect {vip.address} {service} persisted", kept, rule,
                                    "present" if kept else None, "" if kept else "lost at reboot: no nftables/iptables "
                                    "file loads it", source="/etc/nftables.conf, /etc/nftables.d, /etc/iptables"))
    # warnings: never drift
    stack = facts.get("stack", {})
    if stack.get("nm_running") and want.method != "dummy" and not any(p == NM_FILE for p, _, _ in want.files):
        reason = ("the host-scope method needs scope host, which a NetworkManager profile cannot set"
                  if want.method == "host-scope" else nm_profile_problem(facts, want.addresses))
        findings.append(Finding("NetworkManager profile", False, NM_FILE, None,
                                f"not written: {reason}; arpfix-vip.service restores the VIPs at boot",
                                source="nmcli", severity="warning"))
    multi_homed = sum(
        1 for name, iface in facts.get("interfaces", {}).items()
        if name != "lo" and any(a["family"] == 4 and a["scope"] == "global" for a in iface["addresses"])
    ) > 1
    strict = [dev for dev, values in effective.items() if values.get("rp_filter") == 1 and dev != "lo"]
    if multi_homed and strict:
        findings.append(Finding("rp_filter", False, "0 or 2 (loose)", {d: 1 for d in strict},
                                "strict rp_filter on a multi-homed host can drop DR traffic", severity="warning",
                                fix="set net.ipv4.conf.all.rp_filter = 2 (loose) in a sysctl file"))
    listening = facts.get("listening", [])
    for vip in want.vips:
        wildcard = "0.0.0.0" if vip.family == 4 else "::"
        for service in vip.services:
            bound = [s for s in listening if s["port"] == service.port and s["protocol"] == service.protocol]
            ok = any(s["address"] in (str(vip.address), wildcard, "*", "::") for s in bound)
            findings.append(Finding(
                f"{service} listening on {vip.address}", ok, f"{vip.address} or {wildcard}",
                [s["address"] for s in bound] or None,
                "" if ok else "the service does not listen on the VIP: DR traffic will be refused",
                source="ss -ltnu", severity="warning",
                fix="" if ok else f"bind the service to {vip.address} or to {wildcard}"))
    for rule in facts.get("firewall", []):
        findings.append(Finding("firewall", False, "no ct invalid drop", rule,
                                "stateful firewalls dropping invalid packets can break DR replies",
                                severity="warning", fix="accept the VIP's service ports before the `ct state invalid drop` rule"))
    findings += udp_wildcard_findings(facts, want.vips) + source_findings(facts, want.vips)
    findings += networkd_findings(facts, want.method)
    if any(entry.get("op") == "corrupt" for entry in facts.get("journal", [])):
        findings.append(Finding("journal", False, "valid", "corrupt lines",
                                "the arpfix journal has unreadable lines", severity="warning"))
    return findings
