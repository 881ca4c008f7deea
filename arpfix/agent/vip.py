"""VIP ownership: probe the segment, claim the VIP on the agent's interface, announce, release.

Before claiming, the agent asks the segment who has the VIP (IPv4: an RFC 5227 ARP probe;
IPv6: the kernel's own duplicate address detection). If another MAC answers, the agent refuses
unless forced: two owners of a VIP split the clients between them. Every address the agent adds
is recorded (state file) and only those are removed again.
"""

from __future__ import annotations

import ipaddress
import subprocess
import time
from dataclasses import dataclass

from arpfix.agent import arp
from arpfix.errors import ArpfixError


@dataclass(frozen=True)
class Claim:
    address: str
    interface: str
    prefix: int

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefix}"


def label(ifname: str) -> str | None:
    """IPv4 address label marking our address (`eth0:afx`), when it fits the 15-character limit."""
    text = f"{ifname}:afx"
    return text if len(text) <= 15 else None


def present(address: str, ifname: str) -> bool:
    out = subprocess.run(["ip", "-o", "addr", "show", "dev", ifname, "to", address], capture_output=True,
                         text=True, check=False).stdout
    return bool(out.strip())


def probe(ifname: str, own_mac: str, address: str, window: float = 1.0) -> set[str]:
    """Other MACs that answer for `address` (IPv4 only; IPv6 is checked by DAD at claim time)."""
    if ipaddress.ip_address(address).version != 4:
        return set()
    return arp.probe(ifname, own_mac, address, window)


def claim(ifname: str, own_mac: str, address: str, force: bool = False) -> Claim:
    ip = ipaddress.ip_address(address)
    result = Claim(address, ifname, 32 if ip.version == 4 else 128)
    if present(address, ifname):
        return result  # already ours (e.g. a stale claim being replaced): keep it
    cmd = ["ip", "addr", "add", result.cidr, "dev", ifname]
    if ip.version == 4 and label(ifname):
        cmd += ["label", label(ifname) or ""]
    if ip.version == 6 and force:
        cmd.append("nodad")
    run = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise ArpfixError(f"cannot add VIP {result.cidr} to {ifname}: {run.stderr.strip()}")
    if ip.version == 6 and not force:
        _await_dad(result)
    else:
        arp.announce(ifname, own_mac, address)
    return result


def _await_dad(claim_: Claim, timeout: float = 3.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = subprocess.run(["ip", "-o", "-6", "addr", "show", "dev", claim_.interface, "to", claim_.cidr],
                             capture_output=True, text=True, check=False).stdout
        if "dadfailed" in out:
            release(claim_)
            raise ArpfixError(f"VIP {claim_.address} is already in use on the segment (IPv6 DAD failed); "
                              "use --force-claim to take it anyway")
        if out and "tentative" not in out:
            return
        time.sleep(0.1)


def release(claim_: Claim) -> bool:
    if not present(claim_.address, claim_.interface):
        return False
    subprocess.run(["ip", "addr", "del", claim_.cidr, "dev", claim_.interface], capture_output=True, check=False)
    return True
