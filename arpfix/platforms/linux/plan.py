"""Linux plan: (facts, desired state, journal) -> the changes still needed, each with its primitive. Pure.

Order on the host: VIPs the inventory no longer wants (or wants in another form) go first, then
the sysctls that hide VIPs from ARP are set, wanted VIPs are added, boot files are written, and what
arpfix created that nothing needs any more is given back last (sysctls after the VIPs they protected).
A change with no primitive is `blocked`: apply cannot reach compliance and says why.
"""

from __future__ import annotations

from typing import Any

from arpfix.model import Change
from arpfix.platforms.linux.common import (
    DUMMY_NAME,
    SAFE_ARP_IGNORE,
    SYSCTL_DROPIN,
    Step,
    address_form,
    b64_of,
    has_address,
    sha,
    sysctl_name,
    sysctl_path,
    where_is,
)
from arpfix.platforms.linux.desired import Desired, desired_state, redirect_present, redirect_rules
from arpfix.platforms.linux.facts import persisted_sysctls
from arpfix.platforms.linux.harm import detect_cloud
from arpfix.platforms.linux.ownership import Owned, give_back, owned, unwanted
from arpfix.settings import Host, Inventory

Planned = list[tuple[Change, Step | None]]


def stale_records(facts: dict[str, Any], want: Desired, records: list[Owned] | None = None) -> list[Owned]:
    """What arpfix owns on the host (`records`, else read from the facts' journal) and the desired
    state no longer has."""
    return unwanted(
        owned(facts) if records is None else records, facts,
        sysctls={sysctl_path(f, d, k) for f, d, k, _ in want.sysctls},
        addresses=set(want.addresses), iface=want.dummy,
        files={path for path, _, _ in want.files}, links={want.link[0]} if want.link else set(),
    )


def boot_overrides(facts: dict[str, Any], want: Desired) -> list[tuple[str, int, int | None, str]]:
    """Persisted sysctls that another file sets differently after arpfix's drop-in is read at boot:
    (name, wanted, what boot sets, file). arpfix never edits those files, so apply cannot fix it."""
    entries = [e for e in facts.get("sysctl_files", []) if e["file"] != SYSCTL_DROPIN]
    entries += [{"file": SYSCTL_DROPIN, "family": f, "dev": d, "key": k, "value": v} for f, d, k, v in want.sysctls]
    persisted = persisted_sysctls(entries)
    out = []
    for family, dev, key, value in want.sysctls:
        if dev in ("all", "lo") or family == "ipv6":
            stored, source = persisted.get((family, dev, key), (None, ""))
            if stored != value and source != SYSCTL_DROPIN:
                out.append((sysctl_name(family, dev, key), value, stored, source))
    return out


def unsafe_interfaces(facts: dict[str, Any], want: Desired) -> list[tuple[str, int]]:
    """Other interfaces whose own arp_ignore still lets them answer ARP for a VIP once `all` is set:
    the kernel uses the larger value, and 3-7 answer for global addresses on lo."""
    if want.method == "redirect" or not any(v.family == 4 for v in want.vips) or \
            not any(d == "all" for _, d, _, _ in want.sysctls):  # arp_scope nic: other interfaces are not arpfix's
        return []
    safe = SAFE_ARP_IGNORE[want.method]
    wanted_all = next((v for f, d, k, v in want.sysctls if d == "all" and k == "arp_ignore"), 0)
    out = []
    for dev, values in facts.get("sysctl4", {}).items():
        if dev in ("all", "default", "lo", want.nic, DUMMY_NAME):
            continue
        effective = max(wanted_all, values.get("arp_ignore") or 0)
        if effective not in safe:
            out.append((dev, effective))
    return out


def _write(path: str, content: str, mode: str, facts: dict[str, Any], records: list[Owned]) -> tuple[Change, Step]:
    current = facts.get("files", {}).get(path)
    # arpfix's own earlier content needs no backup: the journal already knows what came before it
    ours = next((r.arpfix_value for r in records if r.kind == "file" and r.key == path and r.state == "ours"), "")
    return (Change(f"file {path}", "create" if current is None else "replace",
                   "absent" if current is None else "differs", "arpfix content"),
            Step("write_file", (path, b64_of(content), mode, sha(content), ours)))


def plan_steps(facts: dict[str, Any], host: Host, inventory: Inventory) -> Planned:
    """Pure: the changes still needed, each with the primitive that makes it (None: blocked)."""
    want = desired_state(facts, host, inventory)
    records = owned(facts)
    stale = stale_records(facts, want, records)
    stale_places = {tuple(r.key.split(" ", 1)) for r in stale if r.kind == "addr" and r.state == "ours"}
    runtime_stale = give_back([r for r in stale if r.kind in ("addr", "iface")], facts, keep_changed=False)
    rest_stale = give_back([r for r in stale if r.kind not in ("addr", "iface")], facts, keep_changed=False)
    if not want.vips:
        return runtime_stale + rest_stale
    out: Planned = []

    def foreign_places(address: Any, dev: str = "", cidr: str = "") -> list[tuple[str, int, str | None, str | None]]:
        return [w for w in where_is(facts, address)
                if (w[0], f"{address}/{w[1]}") not in stale_places and not (w[0] == dev and f"{address}/{w[1]}" == cidr)]

    if want.method == "redirect":
        for vip in want.vips:
            for where in foreign_places(vip.address):
                out.append((Change(f"address {vip.address}", "blocked", f"{where[0]}/{where[1]}", "absent",
                                   "the redirect method needs the VIP off the host; remove it by hand"), None))
        for vip, service, rule in redirect_rules(want.vips):
            if not redirect_present(facts.get("redirect_rules", []), vip, service):
                out.append((Change(f"redirect {vip.address} {service}", "blocked", None, rule,
                                   f"apply by hand (arpfix plans and audits the redirect method, it does not apply it):"
                                   f" nft add rule {'ip' if vip.family == 4 else 'ip6'} nat prerouting {rule}"), None))
        return runtime_stale + out + rest_stale
    if want.nic is None:
        return [(Change("primary NIC", "blocked", None, str(host.address),
                        f"no interface holds {host.address}; set `nic` in the inventory"), None)]
    cloud, evidence = detect_cloud(facts, host)
    if cloud == "aws":
        return [(Change("cloud", "blocked", f"AWS ({evidence})", "a Layer 2 segment",
                        "Layer 2 DR does not work in an AWS VPC (no ARP for secondary addresses, source/destination "
                        "check); set `cloud: none` for this host if it is not in a VPC"), None)]
    for name, value, stored, source in boot_overrides(facts, want):
        out.append((Change(f"sysctl {name} at boot", "blocked", stored, value,
                           f"{source} sets {name} = {stored} after arpfix's {SYSCTL_DROPIN}; change or remove it there "
                           "(arpfix does not edit files it did not write)"), None))
    for dev, effective in unsafe_interfaces(facts, want):
        out.append((Change(f"sysctl net.ipv4.conf.{dev}.arp_ignore", "blocked", effective, "1, 2 or 8",
                           f"{dev} has its own arp_ignore={effective}, which answers ARP for the VIP; set it on the host "
                           "(arpfix changes only all and the NIC)"), None))
    # a VIP going away never leaks, so the old forms go before the sysctls change: the window where
    # a global-scope VIP sits on lo while arp_ignore is already 3 (host-scope) never opens
    out += runtime_stale
    sysctl4 = facts.get("sysctl4", {})
    sysctl6 = facts.get("sysctl6", {})
    for family, dev, key, value in want.sysctls:
        current = (sysctl4 if family == "ipv4" else sysctl6).get(dev, {}).get(key)
        if current != value:
            out.append((Change(f"sysctl {sysctl_name(family, dev, key)}", "set", current, value),
                        Step("set_sysctl", (sysctl_path(family, dev, key), str(value)))))
    wanted_files = {path: (content, mode) for path, content, mode in want.files}
    if SYSCTL_DROPIN in wanted_files and facts.get("files", {}).get(SYSCTL_DROPIN) != wanted_files[SYSCTL_DROPIN][0]:
        out.append(_write(SYSCTL_DROPIN, *wanted_files[SYSCTL_DROPIN], facts, records))
    if want.dummy and DUMMY_NAME not in facts.get("interfaces", {}):
        out.append((Change(f"interface {DUMMY_NAME}", "create", "absent", "dummy, arp off"),
                    Step("add_dummy", (DUMMY_NAME,))))
    foreign_forms = _foreign_forms(facts, want, stale_places)
    for dev, cidr, label, scope in want.addresses:
        address = cidr.split("/")[0]
        elsewhere = foreign_places(address, dev, cidr)
        if elsewhere or (dev, cidr) in foreign_forms:
            where = ", ".join(f"{name} /{prefix}" + (f" scope {s}" if s and s != "global" else "")
                              for name, prefix, _, s in (elsewhere or where_is(facts, address)))
            out.append((Change(f"address {address}", "blocked", where, f"{cidr} on {dev}",
                               f"VIP already configured as {where}; remove it by hand "
                               "(arpfix never removes an address it did not create)"), None))
            continue
        if not has_address(facts, dev, cidr) or (dev, cidr) in stale_places:
            out.append((Change(f"address {cidr} on {dev}", "add", None, cidr + (f" label {label}" if label else "")
                               + (" scope host" if scope == "host" else "")),
                        Step("add_addr", (dev, cidr, label, scope))))
    for path, (content, mode) in wanted_files.items():
        if path != SYSCTL_DROPIN and facts.get("files", {}).get(path) != content:
            out.append(_write(path, content, mode, facts, records))
    if want.link:
        path, target = want.link
        current_link = facts.get("files", {}).get(path)
        if not (isinstance(current_link, dict) and current_link.get("link") == target):
            if current_link is not None:
                out.append((Change(f"link {path}", "blocked", "exists", target,
                                   f"{path} exists and is not arpfix's link; remove it by hand"), None))
            else:
                out.append((Change(f"link {path}", "create", "absent", target, "enables arpfix-vip.service at boot"),
                            Step("make_link", (path, target))))
    return out + rest_stale


def _foreign_forms(facts: dict[str, Any], want: Desired, stale_places: set[tuple[str, ...]]) -> set[tuple[str, str]]:
    """Wanted (dev, cidr) that the host holds in another form (scope, label) which arpfix did not
    create: arpfix cannot fix the form without removing someone else's address."""
    out = set()
    for dev, cidr, _label, scope in want.addresses:
        form = address_form(facts, dev, cidr)
        if form is not None and form[1] != scope and (dev, cidr) not in stale_places:
            out.add((dev, cidr))
    return out
