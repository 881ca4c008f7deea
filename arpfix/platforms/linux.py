"""Linux real servers: facts parser, desired state, plan, audit and rollback (all pure), scripts.

The effective value of arp_ignore / arp_announce / rp_filter on an interface is the larger of
`all` and the interface's own value; sysctls are set before the VIP appears; rollback restores the
journaled previous values only where the current value is still the one arpfix set.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any

from arpfix import __version__
from arpfix.model import Change, Finding
from arpfix.platforms import linux_patterns as patterns
from arpfix.settings import Host, Inventory, Vip
from arpfix.templating import render, render_cached

SYSCTL_DROPIN = "/etc/sysctl.d/90-arpfix.conf"
VIP_UP_SCRIPT = "/usr/local/lib/arpfix/arpfix-vip-up"
VIP_UNIT = "/etc/systemd/system/arpfix-vip.service"
VIP_UNIT_LINK = "/etc/systemd/system/multi-user.target.wants/arpfix-vip.service"
NETWORKD_FILE = "/etc/systemd/network/10-arpfix-lo.network"
IFUPDOWN_FILE = "/etc/network/interfaces.d/arpfix"
NM_FILE = "/etc/NetworkManager/system-connections/arpfix-lo.nmconnection"
NM_LOOPBACK_SINCE = (1, 42)
IFCFG_LO = "/etc/sysconfig/network-scripts/ifcfg-lo"
BLOCK_BEGIN = "# BEGIN arpfix: VIPs for Direct Routing (do not edit inside this block)"
BLOCK_END = "# END arpfix"
DUMMY_NAME = "arpfix0"
ARP_KEYS = ("arp_ignore", "arp_announce", "rp_filter")
SYSCTL_DIR_PRIORITY = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d")


@dataclass(frozen=True)
class Step:
    """One primitive of templates/linux/change.sh.j2, with its (validated) arguments."""

    op: str
    args: tuple[str, ...]


# -- facts ------------------------------------------------------------------------------------

def _b64(value: Any) -> str | None:
    if value is None:
        return None
    return base64.b64decode(value).decode("utf-8", "replace")


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def parse_sysctl_files(text: str) -> list[dict[str, Any]]:
    """`grep -H` lines `FILE:net.ipv4.conf.DEV.KEY = V` -> [{file, family, dev, key, value}]."""
    entries = []
    for line in text.splitlines():
        path, _, assignment = line.partition(":")
        name, _, value = assignment.partition("=")
        name = name.strip().lstrip("-").strip()
        if "/" in name and "." not in name.split("/")[0]:
            parts = name.split("/")
        else:
            parts = [p.replace("/", ".") for p in name.split(".")]
        if len(parts) < 5 or parts[0] != "net" or parts[2] != "conf":
            continue
        entries.append({
            "file": path, "family": parts[1], "dev": ".".join(parts[3:-1]), "key": parts[-1],
            "value": _int(value.strip().split()[0]) if value.strip() else None,
        })
    return entries


def persisted_sysctls(entries: list[dict[str, Any]]) -> dict[tuple[str, str, str], tuple[int | None, str]]:
    """What `sysctl --system` would set at boot: (family, dev, key) -> (value, file).

    Files are read in the order systemd-sysctl uses: by file name across the sysctl.d folders
    (a name in /etc hides the same name in /run and /usr/lib), then /etc/sysctl.conf last.
    """
    by_name: dict[str, tuple[int, str]] = {}
    for entry in entries:
        path = entry["file"]
        folder, _, name = path.rpartition("/")
        if path == "/etc/sysctl.conf":
            continue
        rank = SYSCTL_DIR_PRIORITY.index(folder) if folder in SYSCTL_DIR_PRIORITY else 99
        if name not in by_name or rank < by_name[name][0]:
            by_name[name] = (rank, path)
    order = [by_name[name][1] for name in sorted(by_name)] + ["/etc/sysctl.conf"]
    result: dict[tuple[str, str, str], tuple[int | None, str]] = {}
    for path in order:
        for entry in entries:
            if entry["file"] == path:
                result[(entry["family"], entry["dev"], entry["key"])] = (entry["value"], path)
    return result


def parse_sysctl_values(text: str) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """`grep -H .` lines `/proc/sys/net/ipv4/conf/DEV/KEY:VALUE` -> (ipv4 {dev: {key: v}}, ipv6 ...)."""
    tables: dict[str, dict[str, dict[str, Any]]] = {"ipv4": {}, "ipv6": {}}
    for line in text.splitlines():
        path, _, value = line.rpartition(":")
        parts = path.split("/")
        if len(parts) != 8 or parts[:4] != ["", "proc", "sys", "net"] or parts[5] != "conf":
            continue
        family, dev, key = parts[4], parts[6], parts[7]
        if family in tables:
            tables[family].setdefault(dev, {})[key] = value.strip()
    return tables["ipv4"], tables["ipv6"]


# The facts script's grep for rules, split back into its kinds (the texts are the script's own).
FIREWALL_DROP = re.compile(patterns.FIREWALL_DROP)
REDIRECT_RULE = re.compile(patterns.REDIRECT_RULE)
SYSCTL_FILE_LINE = re.compile(patterns.SYSCTL_FILE_LINE)
REDIRECT_FILE_PREFIXES = tuple(path.split("*")[0] for path in patterns.REDIRECT_BOOT_FILES)


def split_combined(raw: dict[str, Any]) -> dict[str, Any]:
    """The facts script's combined reads, back into the keys they stand for: `ip_batch` (addresses,
    IPv4 default route) and `grep_lines` (sysctl values, sysctl files, REDIRECT boot files)."""
    raw = {**raw}
    batch = raw.pop("ip_batch", None)
    if isinstance(batch, list):
        raw["addresses"] = batch[0] if batch and isinstance(batch[0], list) else []
        raw["routes4"] = batch[1] if len(batch) > 1 and isinstance(batch[1], list) else []
    text = raw.pop("grep_lines", None)
    if isinstance(text, str):
        values, files, redirects = [], [], []
        for line in text.splitlines():
            path = line.partition(":")[0]
            if path.startswith("/proc/sys/"):
                values.append(line)
            elif path.startswith(REDIRECT_FILE_PREFIXES):
                if REDIRECT_RULE.search(line):
                    redirects.append(line)
            elif SYSCTL_FILE_LINE.match(line.partition(":")[2]):
                files.append(line)
        raw["sysctl_values"], raw["sysctl_files"], raw["redirect_files"] = (
            "\n".join(values), "\n".join(files), "\n".join(redirects))
    return raw


def parse_facts(raw: dict[str, Any]) -> dict[str, Any]:
    """Normalise the facts script's JSON into the shape plan and audit read."""
    raw = split_combined(raw)
    if "sysctl_values" in raw:
        raw = {**raw}
        raw["sysctl4"], raw["sysctl6"] = parse_sysctl_values(raw["sysctl_values"])
    interfaces: dict[str, dict[str, Any]] = {}
    for link in raw.get("addresses", []) or []:
        addrs = []
        for info in link.get("addr_info", []) or []:
            addrs.append({
                "family": 6 if info.get("family") == "inet6" else 4,
                "address": info.get("local"),
                "prefixlen": info.get("prefixlen"),
                "label": info.get("label"),
                "scope": info.get("scope"),
            })
        interfaces[link.get("ifname", "?")] = {
            "mac": link.get("address"),
            "kind": link.get("link_type"),
            "flags": link.get("flags", []),
            "addresses": addrs,
        }
    sysctl4 = {dev: {k: _int(v.get(k)) for k in ARP_KEYS} for dev, v in (raw.get("sysctl4") or {}).items()}
    all_values = sysctl4.get("all", {})
    effective = {
        dev: {k: max(all_values.get(k) or 0, values.get(k) or 0) for k in ARP_KEYS}
        for dev, values in sysctl4.items() if dev not in ("all", "default")
    }
    journal_text = _b64(raw.get("journal")) or ""
    journal = []
    for line in journal_text.splitlines():
        try:
            journal.append(json.loads(line))
        except ValueError:
            journal.append({"op": "corrupt", "line": line})
    files = {}
    for path, value in (raw.get("files") or {}).items():
        files[path] = value if isinstance(value, dict) else _b64(value)
    listening = []
    # "listening_raw": `ss -Hltnu` lines (protocol is column 1, local address column 5);
    # "listening": the older "PROTOCOL LOCAL" pairs (captured cases keep that shape)
    pairs = [(p[0], p[4]) for p in (line.split() for line in (raw.get("listening_raw") or "").splitlines()) if len(p) >= 5]
    pairs += [(p[0], p[1]) for p in (line.split() for line in (raw.get("listening") or "").splitlines()) if len(p) == 2]
    for proto, local in pairs:
        address, _, port = local.rpartition(":")
        listening.append({"protocol": proto, "address": address.split("%")[0].strip("[]"), "port": _int(port)})
    firewall_text, redirect_text = raw.get("firewall") or "", raw.get("redirect_rules") or ""
    for line in (raw.get("rule_lines") or "").splitlines():
        if FIREWALL_DROP.search(line):
            firewall_text += "\n" + line
        elif REDIRECT_RULE.search(line):
            redirect_text += "\n" + line
    default_route = (raw.get("routes4") or [{}])[0] if raw.get("routes4") else {}
    primary = default_route.get("dev")
    vips_present = [
        f"{a['address']}/{a['prefixlen']} on {name}"
        for name, iface in interfaces.items() for a in iface["addresses"]
        if name == "lo" and a["address"] not in ("127.0.0.1", "::1")
    ]
    return {
        "platform": "linux",
        "os": {"name": (raw.get("os") or {}).get("name"), "id": (raw.get("os") or {}).get("id"),
               "version": (raw.get("os") or {}).get("version"), "kernel": (raw.get("os") or {}).get("kernel")},
        "hostname": raw.get("hostname"),
        "interfaces": interfaces,
        "primary_nic": {"name": primary, "from": "default route"} if primary else {},
        "default_route": {"gateway": default_route.get("gateway"), "dev": default_route.get("dev")},
        "sysctl4": sysctl4,
        "effective4": effective,
        "sysctl6": {dev: {k: _int(v) for k, v in values.items()} for dev, values in (raw.get("sysctl6") or {}).items()},
        "sysctl_files": parse_sysctl_files(raw.get("sysctl_files") or ""),
        "stack": raw.get("stack") or {},
        "listening": listening,
        "firewall": [line for line in firewall_text.splitlines() if line.strip()],
        "redirect_rules": [line.strip() for line in redirect_text.splitlines() if line.strip()],
        "redirect_files": [line.strip() for line in (raw.get("redirect_files") or "").splitlines() if line.strip()],
        "journal": journal,
        "files": files,
        "vips_present": vips_present,
        "applied": raw.get("applied", []),
    }


def nic_for(facts: dict[str, Any], host: Host) -> str | None:
    """The interface that holds the host's own address (never assumed by name)."""
    if host.nic:
        return host.nic
    for name, iface in facts.get("interfaces", {}).items():
        for addr in iface["addresses"]:
            try:
                if addr["address"] and ipaddress.ip_address(addr["address"]) == host.address:
                    return name
            except ValueError:
                continue
    return None


# -- desired state ----------------------------------------------------------------------------

def _sysctl_path(family: str, dev: str, key: str) -> str:
    return f"net/{family}/conf/{dev}/{key}"


def _sysctl_name(family: str, dev: str, key: str) -> str:
    return f"net.{family}.conf.{dev.replace('.', '/')}.{key}"


def _vip_target(vip: Vip, method: str) -> tuple[str, str, str, str]:
    """(device, cidr, label, scope) for a VIP under a method."""
    cidr = f"{vip.address}/{32 if vip.family == 4 else 128}"
    if method == "dummy":
        return DUMMY_NAME, cidr, (DUMMY_NAME if vip.family == 4 else ""), "global"
    scope = "host" if method == "host-scope" else "global"
    return "lo", cidr, ("lo:arpfix" if vip.family == 4 else ""), scope


@dataclass(frozen=True)
class Desired:
    nic: str | None
    sysctls: tuple[tuple[str, str, str, int], ...]  # (family, dev, key, value)
    dummy: bool
    addresses: tuple[tuple[str, str, str, str], ...]
    files: tuple[tuple[str, str, str], ...]  # (path, content, mode)
    link: tuple[str, str] | None
    vips: tuple[Vip, ...]
    method: str


def desired_state(facts: dict[str, Any], host: Host, inventory: Inventory) -> Desired:
    vips = inventory.vips_for(host.name)
    nic = nic_for(facts, host)
    method = host.method
    sysctls: list[tuple[str, str, str, int]] = []
    if method != "redirect" and any(v.family == 4 for v in vips):  # redirect: the VIP is never on the host
        ignore = 3 if method == "host-scope" else 1
        for dev in ("all", nic) if nic else ("all",):
            sysctls.append(("ipv4", dev, "arp_ignore", ignore))
            sysctls.append(("ipv4", dev, "arp_announce", 2))
    if method != "redirect" and any(v.family == 6 for v in vips):
        sysctls.append(("ipv6", "lo", "accept_dad", 0))
        sysctls.append(("ipv6", "lo", "dad_transmits", 0))
    addresses = tuple(_vip_target(v, method) for v in vips) if method != "redirect" else ()
    steps = _runtime_steps(sysctls, method == "dummy", addresses)
    dropin = "# Written by arpfix: ARP behaviour for Direct Routing real servers. Do not edit.\n" + "".join(
        f"{_sysctl_name(f, d, k)} = {v}\n" for f, d, k, v in sysctls
    )
    files: list[tuple[str, str, str]] = []
    link = None
    if vips and method != "redirect":
        files.append((SYSCTL_DROPIN, dropin, "644"))
        files.append((VIP_UP_SCRIPT, render("linux/arpfix-vip-up.sh.j2", steps=steps), "755"))
        files.append((VIP_UNIT, render_cached("linux/arpfix-vip.service.j2"), "644"))
        link = (VIP_UNIT_LINK, VIP_UNIT)
        stack = facts.get("stack", {})
        if stack.get("networkd_running") and method != "dummy":
            body = "# Written by arpfix: VIPs on lo for Direct Routing.\n[Match]\nName=lo\n\n"
            for _dev, cidr, label, scope in addresses:
                body += f"[Address]\nAddress={cidr}\nScope={scope}\n" + (f"Label={label}\n" if label else "") + "\n"
            files.append((NETWORKD_FILE, body, "644"))
        if method == "loopback" and nm_profile_problem(facts, addresses) is None:
            files.append((NM_FILE, nm_keyfile(host.name, facts, addresses), "600"))
        if stack.get("ifupdown") and stack.get("ifupdown_sources_d") and method != "dummy":
            body = "# Written by arpfix: VIPs on lo for Direct Routing.\niface lo inet manual\n"
            for _dev, cidr, label, scope in addresses:
                extra = (f" label {label}" if label else "") + f" scope {scope}"
                body += f"    up ip addr add {cidr} dev lo{extra} || true\n    down ip addr del {cidr} dev lo || true\n"
            files.append((IFUPDOWN_FILE, body, "644"))
        if stack.get("network_scripts") and method != "dummy":
            current = facts.get("files", {}).get(IFCFG_LO)
            files.append((IFCFG_LO, ifcfg_lo_with_vips(current if isinstance(current, str) else None,
                                                       [a for a in addresses if ":" not in a[1]]), "644"))
    return Desired(nic, tuple(sysctls), method == "dummy", addresses, tuple(files), link, vips, method)


def _version(text: Any) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", str(text or ""))[:3])


def nm_profile_problem(facts: dict[str, Any], addresses: tuple[tuple[str, str, str, str], ...]) -> str | None:
    """None when arpfix writes its NetworkManager loopback profile, else why it does not.

    Activating a loopback profile makes lo hold exactly the profile's addresses (measured with
    NetworkManager 1.42.4: a foreign address on lo was removed), so arpfix writes one only where lo
    holds nothing but 127.0.0.1/8, ::1 and the VIPs, and no other loopback profile exists."""
    stack = facts.get("stack", {})
    if not stack.get("nm_running"):
        return "NetworkManager is not running"
    if _version(stack.get("nm_version")) < NM_LOOPBACK_SINCE:
        return f"NetworkManager {stack.get('nm_version') or '(version unknown)'} has no loopback profiles (1.42 and later)"
    # profiles under /run are in memory only (NetworkManager generates one for a lo it merely observes)
    others = [f for f in str(stack.get("nm_loopback_files") or "").splitlines()
              if f.strip() and f != NM_FILE and not f.startswith("/run/")]
    if others:
        return f"lo already has a NetworkManager profile ({', '.join(others)}): add the VIPs there"
    wanted = {cidr for _, cidr, _, _ in addresses} | {"127.0.0.1/8", "::1/128"}
    foreign = [f"{a['address']}/{a['prefixlen']}" for a in facts.get("interfaces", {}).get("lo", {}).get("addresses", [])
               if f"{a['address']}/{a['prefixlen']}" not in wanted]
    if foreign:
        return f"lo holds {', '.join(foreign)}: a loopback profile would remove it when NetworkManager activates it"
    return None


def nm_keyfile(host_name: str, facts: dict[str, Any], addresses: tuple[tuple[str, str, str, str], ...]) -> str:
    """arpfix's NetworkManager (>= 1.42) loopback profile: 127.0.0.1/8, ::1 and the VIPs on lo.

    NetworkManager 1.42 refuses a loopback profile without a [loopback] section, without ::1 under
    ipv6 method manual, or with ipv6 method ignore (all measured against the real daemon)."""
    import uuid

    v4 = ["127.0.0.1/8"] + [cidr for _, cidr, _, _ in addresses if ":" not in cidr]
    v6 = ["::1/128"] + [cidr for _, cidr, _, _ in addresses if ":" in cidr]
    has_v6 = any(a["address"] == "::1" for a in facts.get("interfaces", {}).get("lo", {}).get("addresses", []))
    lines = ["# Written by arpfix: VIPs on lo for Direct Routing. Removed by `arpfix rollback`; do not edit.",
             "[connection]", "id=arpfix-lo", f"uuid={uuid.uuid5(uuid.NAMESPACE_URL, 'arpfix-lo:' + host_name)}",
             "type=loopback", "interface-name=lo", "autoconnect=true", "", "[loopback]", "", "[ipv4]", "method=manual"]
    lines += [f"address{i}={cidr}" for i, cidr in enumerate(v4, 1)]
    lines += ["", "[ipv6]"]
    if has_v6 or len(v6) > 1:
        lines += ["method=manual"] + [f"address{i}={cidr}" for i, cidr in enumerate(v6, 1)]
    else:
        lines += ["method=disabled"]
    return "\n".join(lines) + "\n"


def ifcfg_lo_with_vips(current: str | None, addresses: list[tuple[str, str, str, str]]) -> str:
    """RHEL network-scripts: the site's ifcfg-lo with arpfix's block (IPADDRn/PREFIXn, ARPUPDATE=no).

    The block replaces any earlier arpfix block, so the result is the same however often it is
    computed; everything outside the block is the site's and stays as it is.
    """
    base = current if current is not None else "DEVICE=lo\nIPADDR=127.0.0.1\nNETMASK=255.0.0.0\nONBOOT=yes\nNAME=loopback\n"
    kept, inside = [], False
    for line in base.splitlines():
        if line == BLOCK_BEGIN:
            inside = True
        elif line == BLOCK_END and inside:
            inside = False
        elif not inside:
            kept.append(line)
    used = {int(m) for line in kept for m in re.findall(r"^IPADDR(\d+)=", line)}
    block = [BLOCK_BEGIN]
    index = 1
    for _, cidr, _, _ in addresses:
        while index in used:
            index += 1
        address, prefix = cidr.split("/")
        block += [f"IPADDR{index}={address}", f"PREFIX{index}={prefix}"]
        index += 1
    block += ["ARPUPDATE=no", BLOCK_END]
    return "\n".join(kept + block) + "\n"


def _runtime_steps(sysctls: list[tuple[str, str, str, int]], dummy: bool,
                   addresses: tuple[tuple[str, str, str, str], ...]) -> list[Step]:
    steps = [Step("set_sysctl", (_sysctl_path(f, d, k), str(v))) for f, d, k, v in sysctls]
    if dummy:
        steps.append(Step("add_dummy", (DUMMY_NAME,)))
    steps += [Step("add_addr", address) for address in addresses]
    return steps


def redirect_rules(vips: tuple[Vip, ...]) -> list[tuple[Vip, Any, str]]:
    """The NAT REDIRECT rule each VIP service needs under the redirect method (no VIP on the host)."""
    out = []
    for vip in vips:
        l3 = "ip" if vip.family == 4 else "ip6"
        for service in vip.services:
            out.append((vip, service, f"{l3} daddr {vip.address} {service.protocol} dport {service.port} redirect"))
    return out


def _redirect_present(lines: list[str], vip: Vip, service: Any) -> bool:
    """An nft (`daddr VIP ... dport PORT ... redirect`) or iptables (`-d VIP/32 ... --dport PORT -j REDIRECT`) rule."""
    address, port, proto = str(vip.address), str(service.port), service.protocol
    for line in lines:
        words = line.replace("/32", "").replace("/128", "").split()
        if address not in words or proto not in words:
            continue
        nft_ok = "redirect" in words and port in words and "dport" in words
        ipt_ok = "REDIRECT" in words and "--dport" in words and port in words
        if nft_ok or ipt_ok:
            return True
    return False


def _has_address(facts: dict[str, Any], dev: str, cidr: str) -> bool:
    address, prefix = cidr.split("/")
    for a in facts.get("interfaces", {}).get(dev, {}).get("addresses", []):
        if a["address"] == address and str(a["prefixlen"]) == prefix:
            return True
    return False


def _where_is(facts: dict[str, Any], address: Any) -> list[tuple[str, int, str | None, str | None]]:
    found = []
    for name, iface in facts.get("interfaces", {}).items():
        for a in iface["addresses"]:
            if a["address"] == str(address):
                found.append((name, a["prefixlen"], a.get("label"), a.get("scope")))
    return found


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- plan -------------------------------------------------------------------------------------

def plan_steps(facts: dict[str, Any], host: Host, inventory: Inventory) -> list[tuple[Change, Step | None]]:
    """Pure: the changes still needed, each with the primitive that makes it (None: blocked)."""
    want = desired_state(facts, host, inventory)
    out: list[tuple[Change, Step | None]] = []
    if not want.vips:
        return out
    if want.method == "redirect":
        for vip in want.vips:
            for where in _where_is(facts, vip.address):
                out.append((Change(f"address {vip.address}", "blocked", f"{where[0]}/{where[1]}", "absent",
                                   "the redirect method needs the VIP off the host; remove it by hand"), None))
        for vip, service, rule in redirect_rules(want.vips):
            if not _redirect_present(facts.get("redirect_rules", []), vip, service):
                out.append((Change(f"redirect {vip.address} {service}", "blocked", None, rule,
                                   f"apply by hand (arpfix plans and audits the redirect method, it does not apply it):"
                                   f" nft add rule {'ip' if vip.family == 4 else 'ip6'} nat prerouting {rule}"), None))
        return out
    if want.nic is None:
        out.append((Change("primary NIC", "blocked", None, str(host.address),
                           f"no interface holds {host.address}; set `nic` in the inventory"), None))
        return out
    sysctl4 = facts.get("sysctl4", {})
    sysctl6 = facts.get("sysctl6", {})
    for family, dev, key, value in want.sysctls:
        current = (sysctl4 if family == "ipv4" else sysctl6).get(dev, {}).get(key)
        if current != value:
            out.append((Change(f"sysctl {_sysctl_name(family, dev, key)}", "set", current, value),
                        Step("set_sysctl", (_sysctl_path(family, dev, key), str(value)))))
    files = facts.get("files", {})
    for path, content, mode in want.files:
        if path == SYSCTL_DROPIN:
            current = files.get(path)
            if current != content:
                out.append((Change(f"file {path}", "create" if current is None else "replace",
                                   "absent" if current is None else "differs", "arpfix content"),
                            Step("write_file", (path, base64.b64encode(content.encode()).decode(), mode, _sha(content)))))
    if want.dummy and DUMMY_NAME not in facts.get("interfaces", {}):
        out.append((Change(f"interface {DUMMY_NAME}", "create", "absent", "dummy, arp off"),
                    Step("add_dummy", (DUMMY_NAME,))))
    for dev, cidr, label, scope in want.addresses:
        address = cidr.split("/")[0]
        elsewhere = [w for w in _where_is(facts, address) if not (w[0] == dev and str(w[1]) == cidr.split("/")[1])]
        if elsewhere:
            where = ", ".join(f"{name} /{prefix}" for name, prefix, _, _ in elsewhere)
            out.append((Change(f"address {address}", "blocked", where, f"{cidr} on {dev}",
                               f"VIP already configured as {where}; remove it by hand "
                               "(arpfix never removes an address it did not create)"), None))
            continue
        if not _has_address(facts, dev, cidr):
            out.append((Change(f"address {cidr} on {dev}", "add", None, cidr + (f" label {label}" if label else "")
                               + (" scope host" if scope == "host" else "")),
                        Step("add_addr", (dev, cidr, label, scope))))
    for path, content, mode in want.files:
        if path == SYSCTL_DROPIN:
            continue
        current = files.get(path)
        if current != content:
            out.append((Change(f"file {path}", "create" if current is None else "replace",
                               "absent" if current is None else "differs", "arpfix content"),
                        Step("write_file", (path, base64.b64encode(content.encode()).decode(), mode, _sha(content)))))
    if want.link:
        path, target = want.link
        current_link = files.get(path)
        if not (isinstance(current_link, dict) and current_link.get("link") == target):
            out.append((Change(f"link {path}", "create", "absent", target, "enables arpfix-vip.service at boot"),
                        Step("make_link", (path, target))))
    return out


# -- audit ------------------------------------------------------------------------------------

def audit(facts: dict[str, Any], host: Host, inventory: Inventory) -> list[Finding]:
    want = desired_state(facts, host, inventory)
    findings: list[Finding] = []
    if not want.vips:
        return findings
    if want.nic is None:
        findings.append(Finding("primary NIC", False, str(host.address), None,
                                f"no interface holds {host.address}"))
    persisted = persisted_sysctls(facts.get("sysctl_files", []))
    sysctl4 = facts.get("sysctl4", {})
    effective = facts.get("effective4", {})
    for family, dev, key, value in want.sysctls:
        name = _sysctl_name(family, dev, key)
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
        ignore = 3 if want.method == "host-scope" else 1
        for dev, values in effective.items():
            if dev in ("lo", want.nic, DUMMY_NAME):
                continue
            ok = values.get("arp_ignore") == ignore and values.get("arp_announce") == 2
            findings.append(Finding(
                f"arp effective on {dev}", ok, {"arp_ignore": ignore, "arp_announce": 2},
                {"arp_ignore": values.get("arp_ignore"), "arp_announce": values.get("arp_announce")},
                "" if ok else "another interface on this host could answer ARP for the VIP", source="runtime"))
    for dev, cidr, _label, scope in want.addresses:
        address, prefix = cidr.split("/")
        places = _where_is(facts, address)
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
            places = [f"{name}/{p}" for name, p, _, _ in _where_is(facts, vip.address)]
            findings.append(Finding(f"vip {vip.address} off the host", not places, None, places or None,
                                    "" if not places else "with the redirect method the host must not hold the VIP",
                                    source="runtime"))
        for vip, service, rule in redirect_rules(want.vips):
            live = _redirect_present(facts.get("redirect_rules", []), vip, service)
            findings.append(Finding(f"redirect {vip.address} {service}", live, rule, "present" if live else None,
                                    "" if live else "no NAT REDIRECT rule: DR traffic for the VIP is dropped",
                                    source="nft list ruleset / iptables -t nat"))
            kept = _redirect_present(files_text, vip, service)
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
                                "strict rp_filter on a multi-homed host can drop DR traffic", severity="warning"))
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
                source="ss -ltnu", severity="warning"))
    for rule in facts.get("firewall", []):
        findings.append(Finding("firewall", False, "no ct invalid drop", rule,
                                "stateful firewalls dropping invalid packets can break DR replies",
                                severity="warning"))
    if any(entry.get("op") == "corrupt" for entry in facts.get("journal", [])):
        findings.append(Finding("journal", False, "valid", "corrupt lines",
                                "the arpfix journal has unreadable lines", severity="warning"))
    return findings


# -- rollback ---------------------------------------------------------------------------------

def rollback_steps(facts: dict[str, Any]) -> list[tuple[Change, Step | None]]:
    """Pure: from the journal, newest first, what to restore or remove (None: left as is)."""
    out: list[tuple[Change, Step | None]] = []
    journal = [e for e in facts.get("journal", []) if e.get("op") not in ("begin", "corrupt")]
    if not facts.get("journal"):
        return out
    sysctl_now: dict[str, Any] = {}
    for dev, values in facts.get("sysctl4", {}).items():
        for key, value in values.items():
            sysctl_now[_sysctl_path("ipv4", dev, key)] = value
    for dev, values in facts.get("sysctl6", {}).items():
        for key, value in values.items():
            sysctl_now[_sysctl_path("ipv6", dev, key)] = value
    files = facts.get("files", {})
    for entry in reversed(journal):
        op = entry.get("op")
        if op == "sysctl":
            key, prev, new = entry["key"], entry["prev"], entry["new"]
            current = sysctl_now.get(key)
            name = "sysctl " + key.replace("/", ".")
            if str(current) == str(prev):
                continue
            if str(current) != str(new):
                out.append((Change(name, "keep", current, current, f"changed since arpfix set {new}"), None))
                continue
            out.append((Change(name, "restore", current, _int(prev)), Step("restore_sysctl", (key, new, prev))))
            sysctl_now[key] = prev
        elif op == "addr":
            dev, cidr = entry["dev"], entry["addr"]
            if _has_address(facts, dev, cidr):
                out.append((Change(f"address {cidr} on {dev}", "remove", cidr, None), Step("del_addr", (dev, cidr))))
        elif op == "link" and entry.get("dev"):
            if entry["dev"] in facts.get("interfaces", {}):
                out.append((Change(f"interface {entry['dev']}", "delete", "present", None),
                            Step("del_dummy", (entry["dev"],))))
        elif op == "file":
            path = entry["path"]
            current = files.get(path)
            current_sha = _sha(current) if isinstance(current, str) else "absent"
            if current_sha != entry["new_sha"]:
                if current is not None and current_sha != entry.get("prev_sha"):
                    out.append((Change(f"file {path}", "keep", "changed", "changed", "changed since arpfix wrote it"), None))
                continue
            action = "restore" if entry.get("backup") else "delete"
            out.append((Change(f"file {path}", action, "arpfix content", "previous" if entry.get("backup") else "absent"),
                        Step("restore_file", (path, entry["new_sha"], entry.get("backup") or ""))))
        elif op == "symlink":
            current = files.get(entry["path"])
            if isinstance(current, dict) and current.get("link") == entry["target"]:
                out.append((Change(f"link {entry['path']}", "delete", entry["target"], None),
                            Step("del_link", (entry["path"], entry["target"]))))
    out.append((Change("journal", "clear", f"{len(journal)} entries", None), None))
    return out


def _step_delay() -> str:
    """ARPFIX_STEP_DELAY=SECONDS: pause between remote steps (slow motion, for fault drills)."""
    import os
    import re

    value = os.environ.get("ARPFIX_STEP_DELAY", "")
    return value if re.fullmatch(r"\d{1,2}(\.\d{1,3})?", value) else ""


class LinuxPlatform:
    name = "linux"

    def facts_script(self, host: Host, inventory: Inventory) -> str:
        return render_cached("linux/facts.sh.j2", embedded=False)

    def parse_facts(self, raw: dict[str, Any]) -> dict[str, Any]:
        return parse_facts(raw)

    def plan(self, facts: dict[str, Any], host: Host, inventory: Inventory) -> list[Change]:
        return [change for change, _ in plan_steps(facts, host, inventory)]

    def audit(self, facts: dict[str, Any], host: Host, inventory: Inventory) -> list[Finding]:
        return audit(facts, host, inventory)

    def apply_script(self, facts: dict[str, Any], host: Host, inventory: Inventory, changes: list[Change]) -> str:
        pairs = plan_steps(facts, host, inventory)
        blocked = [c for c, step in pairs if step is None]
        if blocked:
            from arpfix.errors import TransportError

            raise TransportError(f"{host.name}: {blocked[0].subject}: {blocked[0].detail}")
        wanted = set(changes)
        steps = [step for change, step in pairs if change in wanted and step is not None]
        return render("linux/apply.sh.j2", steps=steps, version=__version__, lock_wait=30, step_delay=_step_delay())

    def rollback_plan(self, facts: dict[str, Any], host: Host) -> list[Change]:
        return [change for change, _ in rollback_steps(facts)]

    def rollback_script(self, facts: dict[str, Any], host: Host, changes: list[Change]) -> str:
        steps = [step for _, step in rollback_steps(facts) if step is not None]
        return render("linux/rollback.sh.j2", steps=steps, version=__version__, lock_wait=30,
                      step_delay=_step_delay())
