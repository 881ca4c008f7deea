"""Constants and small pure helpers shared by every phase of the Linux platform."""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from typing import Any

SYSCTL_DROPIN = "/etc/sysctl.d/90-arpfix.conf"
VIP_UP_DIR = "/usr/local/lib/arpfix"
VIP_UP_SCRIPT = f"{VIP_UP_DIR}/arpfix-vip-up"
VIP_UNIT = "/etc/systemd/system/arpfix-vip.service"
VIP_UNIT_LINK = "/etc/systemd/system/multi-user.target.wants/arpfix-vip.service"
NETWORKD_FILE = "/etc/systemd/network/10-arpfix-lo.network"
NETWORKD_DUMMY_FILE = "/etc/systemd/network/00-00-arpfix-dummy.network"  # sorts before a site's catch-all
IFUPDOWN_FILE = "/etc/network/interfaces.d/arpfix"
NM_FILE = "/etc/NetworkManager/system-connections/arpfix-lo.nmconnection"
IFCFG_LO = "/etc/sysconfig/network-scripts/ifcfg-lo"
# Every file arpfix may write (the facts script reads exactly these; its list must stay the same).
FILE_PATHS = (SYSCTL_DROPIN, VIP_UNIT, VIP_UNIT_LINK, VIP_UP_SCRIPT, NETWORKD_FILE, NETWORKD_DUMMY_FILE, IFUPDOWN_FILE,
              NM_FILE, IFCFG_LO)
# The folders those files live in, and their parents up to a folder every system has: arpfix
# creates a missing one (journaled) and removes it again when it is empty and no longer needed.
ROOT_DIRS = ("/etc", "/usr/local/lib", "/usr/local")


def _parents(path: str) -> list[str]:
    out = []
    folder = os.path.dirname(path)
    while folder not in ROOT_DIRS and folder not in ("/", ""):
        out.append(folder)
        folder = os.path.dirname(folder)
    return out


FILE_DIRS = tuple(sorted({d for p in FILE_PATHS for d in _parents(p)}))
NM_LOOPBACK_SINCE = (1, 42)
BLOCK_BEGIN = "# BEGIN arpfix: VIPs for Direct Routing (do not edit inside this block)"
BLOCK_END = "# END arpfix"
DUMMY_NAME = "arpfix0"
ARP_KEYS = ("arp_ignore", "arp_announce", "rp_filter")
SYSCTL_DIR_PRIORITY = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d")
# arp_ignore values that keep an interface from answering ARP for a VIP on lo (kernel ip-sysctl):
# 1 and 2 answer only for addresses on the incoming interface, 8 never answers; 3 refuses only
# scope-host addresses, so it protects a VIP only under the host-scope method.
SAFE_ARP_IGNORE = {"loopback": (1, 2, 8), "dummy": (1, 2, 8), "host-scope": (1, 2, 3, 8)}


@dataclass(frozen=True)
class Step:
    """One primitive of templates/linux/change.sh.j2, with its (validated) arguments."""

    op: str
    args: tuple[str, ...]


def b64_text(value: Any) -> str | None:
    if value is None:
        return None
    return base64.b64decode(value).decode("utf-8", "replace")


def b64_of(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def to_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def sysctl_path(family: str, dev: str, key: str) -> str:
    """The path below /proc/sys, with slashes (interface names may hold dots)."""
    return f"net/{family}/conf/{dev}/{key}"


def sysctl_name(family: str, dev: str, key: str) -> str:
    return f"net.{family}.conf.{dev.replace('.', '/')}.{key}"


def sysctl_name_of_path(path: str) -> str:
    return ".".join(part.replace(".", "/") for part in path.split("/"))


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha(facts: dict[str, Any], path: str) -> str:
    """The sha256 of a file arpfix may write, "absent", or "link" for a symbolic link."""
    current = facts.get("files", {}).get(path)
    if current is None:
        return "absent"
    if isinstance(current, dict):
        return "link"
    return sha(current)


def has_address(facts: dict[str, Any], dev: str, cidr: str) -> bool:
    address, prefix = cidr.split("/")
    return any(a["address"] == address and str(a["prefixlen"]) == prefix
               for a in facts.get("interfaces", {}).get(dev, {}).get("addresses", []))


def address_form(facts: dict[str, Any], dev: str, cidr: str) -> tuple[str, str] | None:
    """(label, scope) of cidr on dev, or None when dev does not hold it."""
    address, prefix = cidr.split("/")
    for a in facts.get("interfaces", {}).get(dev, {}).get("addresses", []):
        if a["address"] == address and str(a["prefixlen"]) == prefix:
            return (a.get("label") or "", a.get("scope") or "global")
    return None


def where_is(facts: dict[str, Any], address: Any) -> list[tuple[str, int, str | None, str | None]]:
    """Every (interface, prefix, label, scope) that holds the address."""
    found = []
    for name, iface in facts.get("interfaces", {}).items():
        for a in iface["addresses"]:
            if a["address"] == str(address):
                found.append((name, a["prefixlen"], a.get("label"), a.get("scope")))
    return found


def sysctl_now(facts: dict[str, Any]) -> dict[str, str]:
    """Every sysctl value in the facts by its /proc/sys path, as text (values round-trip as text)."""
    now: dict[str, str] = {}
    for family, table in (("ipv4", facts.get("sysctl4", {})), ("ipv6", facts.get("sysctl6", {}))):
        for dev, values in table.items():
            for key, value in values.items():
                if value is not None:
                    now[sysctl_path(family, dev, key)] = str(value)
    return now
