"""ARP on the segment from user space (AF_PACKET): resolve, probe for a VIP, announce a VIP.

Linux only, root only. Frames are built by hand: no arping flavour differences (iputils vs
Habets), and the replies are collected for a fixed window so that every MAC that answers is seen.
"""

from __future__ import annotations

import ipaddress
import json
import select
import socket
import struct
import subprocess
import time

ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6


def mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def frame(src_mac: str, op: int, sender_ip: str, target_ip: str, target_mac: bytes = b"\0" * 6,
          dst: bytes = BROADCAST) -> bytes:
    src = mac_bytes(src_mac)
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, src, socket.inet_aton(sender_ip), target_mac,
                      socket.inet_aton(target_ip))
    return dst + src + struct.pack("!H", ETH_P_ARP) + arp + b"\0" * 18


def parse(data: bytes) -> tuple[int, str, str, str] | None:
    """(op, sender MAC, sender IP, target IP) of an ARP frame, else None."""
    if len(data) < 42 or data[12:14] != b"\x08\x06":
        return None
    _ht, pt, hl, pl, op, sha, spa, _tha, tpa = struct.unpack("!HHBBH6s4s6s4s", data[14:42])
    if pt != 0x0800 or hl != 6 or pl != 4:
        return None
    return op, mac_text(sha), socket.inet_ntoa(spa), socket.inet_ntoa(tpa)


def _socket(ifname: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    sock.bind((ifname, ETH_P_ARP))
    return sock


def exchange(ifname: str, own_mac: str, frames: list[bytes], window: float,
             repeat: int = 2) -> list[tuple[int, str, str, str]]:
    """Send `frames` (`repeat` times, spread over the window) and return every ARP frame heard
    from another MAC during the window."""
    heard = []
    with _socket(ifname) as sock:
        end = time.monotonic() + window
        sends = [time.monotonic() + k * window / (repeat + 1) for k in range(repeat)]
        while True:
            now = time.monotonic()
            while sends and sends[0] <= now:
                sends.pop(0)
                for data in frames:
                    sock.send(data)
            if now >= end:
                break
            wait = min([end - now] + [max(0.0, s - now) for s in sends])
            ready, _, _ = select.select([sock], [], [], wait)
            if ready:
                data, addr = sock.recvfrom(2048)
                if addr[2] == socket.PACKET_OUTGOING:
                    continue
                parsed = parse(data)
                if parsed and parsed[1] != own_mac:
                    heard.append(parsed)
    return heard


def resolve(ifname: str, own_mac: str, own_ip: str, targets: list[str], timeout: float = 1.0) -> dict[str, set[str]]:
    """Who answers `who-has target` for each target: {target: {mac, ...}}."""
    if not targets:
        return {}
    frames = [frame(own_mac, 1, own_ip, t) for t in targets]
    answers: dict[str, set[str]] = {t: set() for t in targets}
    for op, sha, spa, _tpa in exchange(ifname, own_mac, frames, timeout):
        if op == 2 and spa in answers:
            answers[spa].add(sha)
    return answers


def probe(ifname: str, own_mac: str, vip: str, window: float = 1.0) -> set[str]:
    """RFC 5227 probe (sender 0.0.0.0) for the VIP: every other MAC that answers for it or that
    itself announces or probes it. Empty = nobody else owns the VIP."""
    others = set()
    for op, sha, spa, _tpa in exchange(ifname, own_mac, [frame(own_mac, 1, "0.0.0.0", vip)], window, repeat=3):
        if (op == 2 and spa == vip) or (op == 1 and spa == vip):
            others.add(sha)
    return others


def announce(ifname: str, own_mac: str, vip: str, count: int = 2) -> None:
    """Gratuitous ARP for the VIP: a request and a reply form, broadcast."""
    frames = [frame(own_mac, 1, vip, vip), frame(own_mac, 2, vip, vip, target_mac=BROADCAST)]
    with _socket(ifname) as sock:
        for k in range(count):
            for data in frames:
                sock.send(data)
            if k + 1 < count:
                time.sleep(0.05)


def resolve_v6(ifname: str, address: str, timeout: float = 1.0) -> str | None:
    """IPv6 neighbour MAC: nudge the kernel with a datagram, then read its neighbour table."""
    ipaddress.IPv6Address(address)
    end = time.monotonic() + timeout
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(b"", (address, 9))
        except OSError:
            pass
    while time.monotonic() < end:
        out = subprocess.run(["ip", "-j", "-6", "neigh", "show", "to", address, "dev", ifname],
                             capture_output=True, text=True, check=False).stdout
        for entry in json.loads(out or "[]"):
            if entry.get("lladdr") and "FAILED" not in entry.get("state", []):
                return str(entry["lladdr"]).lower()
        time.sleep(0.05)
    return None
