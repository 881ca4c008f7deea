"""Do no harm (issue 15): what the ARP settings could break on this host, and where DR cannot work. Pure.

* Container and virtual networking: `all.arp_ignore` / `all.arp_announce` change every interface,
  present and future; kube-proxy did exactly this and broke container networking
  (kubernetes#71555, #72779) and made it opt-in (#75295). The kernel uses the larger of `all` and
  the interface's own value, so the NIC's own value is enough for the NIC facing the load balancer.
* Clouds: arpfix.platforms.cloud (shared with Windows).
* Sources: a UDP service bound to the wildcard address replies from the server's own address, not
  the VIP (xinetd#16, netty#13495); connections the server opens itself must not leave from a VIP
  (seesaw#117, keepalived#2183).
* systemd-networkd removes foreign configuration from links it manages (systemd#10660); a catch-all
  `[Match] Name=*` took the addresses off lo (NixOS#71106).
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

from arpfix.model import Finding
from arpfix.platforms.cloud import cloud_findings, detect_cloud  # noqa: F401 - re-exported for the Linux phases
from arpfix.platforms.linux.common import DUMMY_NAME, NETWORKD_DUMMY_FILE, NETWORKD_FILE
from arpfix.settings import Host, Vip

CONTAINER_PREFIXES = ("docker", "cni", "cali", "flannel", "vxlan", "veth", "kube-ipvs", "virbr", "br-", "cilium",
                      "weave", "podman", "lxcbr", "tunl")


def container_interfaces(facts: dict[str, Any]) -> list[str]:
    """Interfaces that belong to container or virtual networking (docker0, cni0, cali*, veth*, ...)."""
    return sorted(name for name in facts.get("interfaces", {}) if name.startswith(CONTAINER_PREFIXES))


def arp_scope(facts: dict[str, Any], host: Host) -> tuple[str, str]:
    """("all" | "nic", why): the inventory's choice, else `nic` where container networking exists."""
    if host.arp_scope:
        return host.arp_scope, f"arp_scope: {host.arp_scope} (inventory)"
    found = container_interfaces(facts)
    if found:
        shown = ", ".join(found[:4]) + (" ..." if len(found) > 4 else "")
        return "nic", (f"container networking detected ({shown}): ARP settings applied to the NIC only, never to "
                       "`all` (set arp_scope: all to change every interface)")
    return "all", ""


def source_findings(facts: dict[str, Any], vips: tuple[Vip, ...]) -> list[Finding]:
    """Warnings where the server itself would send from a VIP: a `src VIP` route, or the kernel's
    choice of source towards the default gateway."""
    addresses = {str(v.address) for v in vips}
    out = []
    for line in facts.get("src_routes", []):
        match = re.search(r"\bsrc (\S+)", line)
        if match and match.group(1) in addresses:
            out.append(Finding("source address", False, "the server's own address", match.group(1),
                               f"route `{line}` makes connections the server opens leave from the VIP: their replies "
                               "go to the load balancer", source="ip route show table all", severity="warning",
                               fix="remove `src VIP` from the route (ip route change ... without src)"))
    if out:
        return out
    targets = [("the default gateway", facts.get("gateway_route", ""))]
    targets += [("the load balancer", line) for line in facts.get("lb_routes", [])]
    for what, route in targets:
        match = re.search(r"\bsrc (\S+)", route)
        if match and match.group(1) in addresses:
            shown = route.split("\\")[0].strip()
            out.append(Finding("source address", False, "the server's own address", match.group(1),
                               f"towards {what} the kernel picks the VIP as source ({shown})",
                               source="ip route get", severity="warning",
                               fix="give the NIC's route a `src` of the server's own address"))
    return out


def udp_wildcard_findings(facts: dict[str, Any], vips: tuple[Vip, ...]) -> list[Finding]:
    """A UDP service listening only on the wildcard address answers from the server's own address."""
    out = []
    listening = facts.get("listening", [])
    for vip in vips:
        wildcards = ("0.0.0.0", "*") if vip.family == 4 else ("::", "*")
        for service in vip.services:
            if service.protocol != "udp":
                continue
            bound = {s["address"] for s in listening if s["protocol"] == "udp" and s["port"] == service.port}
            if bound and str(vip.address) not in bound and bound & set(wildcards + ("::",)):
                out.append(Finding(f"{service} reply source on {vip.address}", False, f"bound to {vip.address}",
                                   sorted(bound), "a UDP service bound to the wildcard address replies from the "
                                   "server's own address, not the VIP: clients drop the reply",
                                   source="ss -lun", severity="warning",
                                   fix=f"bind the service to {vip.address} as well, or have it reply with IP_PKTINFO"))
    return out


def networkd_findings(facts: dict[str, Any], method: str) -> list[Finding]:
    """A site .network file that systemd-networkd would apply to lo (or arpfix0) before arpfix's own."""
    if not facts.get("stack", {}).get("networkd_running"):
        return []
    device = DUMMY_NAME if method == "dummy" else "lo"
    ours = (NETWORKD_DUMMY_FILE if method == "dummy" else NETWORKD_FILE).rsplit("/", 1)[-1]
    out = []
    for path, entry in sorted(facts.get("networkd", {}).items(), key=lambda item: item[0].rsplit("/", 1)[-1]):
        name = path.rsplit("/", 1)[-1]
        if "arpfix" in name:
            continue
        if name > ours:
            break  # networkd applies the first file that matches, in file-name order
        patterns = entry.get("names", [])
        if _networkd_matches(patterns, device) and entry.get("unmanaged", "").lower() not in ("yes", "true", "1"):
            keep = entry.get("keep", "").lower()
            if keep in ("yes", "static", "true", "1"):
                continue
            out.append(Finding("systemd-networkd", False, f"no site .network for {device}", path,
                               f"{path} matches {device} ({' '.join(patterns)}) and comes first: networkd would manage "
                               f"{device} and may remove the VIPs from it", source=path, severity="warning",
                               fix=f"exclude {device} from it (Name=!{device} ...) or set KeepConfiguration=static there"))
    return out


def _networkd_matches(patterns: list[str], device: str) -> bool:
    """systemd.network Name=: shell globs, `!` negates the whole list."""
    if not patterns:
        return False
    if patterns[0].startswith("!"):
        return not any(fnmatch.fnmatchcase(device, p.lstrip("!")) for p in patterns)
    return any(fnmatch.fnmatchcase(device, p) for p in patterns)
