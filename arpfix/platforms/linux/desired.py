"""Linux desired state: what a host's VIPs and method ask for (sysctls, addresses, files), pure.

Sysctls are set before the VIP appears. Files are the boot-time copies: a sysctl drop-in, a oneshot
unit with its script, and the network stack's own file where one is in use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from arpfix.platforms.linux.common import (
    BLOCK_BEGIN,
    BLOCK_END,
    DUMMY_NAME,
    IFCFG_LO,
    IFUPDOWN_FILE,
    NETWORKD_DUMMY_FILE,
    NETWORKD_FILE,
    NM_FILE,
    NM_LOOPBACK_SINCE,
    SYSCTL_DROPIN,
    VIP_UNIT,
    VIP_UNIT_LINK,
    VIP_UP_SCRIPT,
    Step,
    sysctl_name,
    sysctl_path,
)
from arpfix.platforms.linux.facts import nic_for
from arpfix.platforms.linux.harm import arp_scope
from arpfix.settings import Host, Inventory, Vip
from arpfix.templating import render, render_cached


def vip_target(vip: Vip, method: str) -> tuple[str, str, str, str]:
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
        scope, _ = arp_scope(facts, host)
        devices = ("all", nic) if scope == "all" else (nic,)
        for dev in (d for d in devices if d):
            sysctls.append(("ipv4", dev, "arp_ignore", ignore))
            sysctls.append(("ipv4", dev, "arp_announce", 2))
    if method != "redirect" and any(v.family == 6 for v in vips):
        sysctls.append(("ipv6", "lo", "accept_dad", 0))
        sysctls.append(("ipv6", "lo", "dad_transmits", 0))
    addresses = tuple(vip_target(v, method) for v in vips) if method != "redirect" else ()
    steps = _runtime_steps(sysctls, method == "dummy", addresses)
    dropin = "# Written by arpfix: ARP behaviour for Direct Routing real servers. Do not edit.\n" + "".join(
        f"{sysctl_name(f, d, k)} = {v}\n" for f, d, k, v in sysctls
    )
    files: list[tuple[str, str, str]] = []
    link = None
    if vips and method != "redirect":
        files.append((SYSCTL_DROPIN, dropin, "644"))
        files.append((VIP_UP_SCRIPT, render("linux/arpfix-vip-up.sh.j2", steps=steps), "755"))
        files.append((VIP_UNIT, render_cached("linux/arpfix-vip.service.j2"), "644"))
        link = (VIP_UNIT_LINK, VIP_UNIT)
        stack = facts.get("stack", {})
        if stack.get("networkd_running") and method == "dummy":
            # networkd leaves arpfix's dummy interface alone, also beside a site's catch-all .network
            files.append((NETWORKD_DUMMY_FILE, f"# Written by arpfix: systemd-networkd must not manage {DUMMY_NAME}.\n"
                          f"[Match]\nName={DUMMY_NAME}\n\n[Link]\nUnmanaged=yes\n", "644"))
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
    steps = [Step("set_sysctl", (sysctl_path(f, d, k), str(v))) for f, d, k, v in sysctls]
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


def redirect_present(lines: list[str], vip: Vip, service: Any) -> bool:
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
