"""Segment probes with raw sockets (stdlib only: this file is also shipped to the agent host as-is).

- arp: who-has VIP, every reply collected for a window; each MAC is reported.
- dr:  a TCP SYN to VIP:port sent to one real server's MAC, exactly as a DR load balancer sends it;
       pass when a SYN-ACK comes back whose source is the VIP.

No VIP ownership is needed and a live load balancer is not disturbed: ARP requests carry the
probing host's own address, and SYNs use source ports from 61000-61999. The probing host's kernel
answers the unexpected SYN-ACK with a RST to the VIP, which is harmless (documented in docs/verify.md).

Run as a script: reads one JSON request on stdin, prints one JSON document.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import select
import socket
import struct
import sys
import time
from typing import Any

ETH_P_ALL = 0x0003
ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
SIOCGIFHWADDR = 0x8927
SIOCGIFADDR = 0x8915


def _mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


def _mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def interface_addresses(interface: str) -> tuple[str, str]:
    """(MAC, IPv4 address) of an interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("256s", interface.encode()[:15])
        mac = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, request)[18:24]
        address = socket.inet_ntoa(fcntl.ioctl(sock.fileno(), SIOCGIFADDR, request)[20:24])
    return _mac_text(mac), address


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def arp_probe(interface: str, vip: str, window: float = 1.5, count: int = 3) -> list[dict[str, str]]:
    """Ask who-has VIP `count` times; return every distinct (MAC) that answered within the window."""
    own_mac, own_ip = interface_addresses(interface)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    try:
        sock.bind((interface, ETH_P_ARP))
        request = (
            b"\xff" * 6 + _mac_bytes(own_mac) + struct.pack("!H", ETH_P_ARP)
            + struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, 1)
            + _mac_bytes(own_mac) + socket.inet_aton(own_ip) + b"\0" * 6 + socket.inet_aton(vip)
        )
        answers: dict[str, dict[str, str]] = {}
        deadline = time.monotonic() + window
        next_send = 0.0
        sent = 0
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            if sent < count and now >= next_send:
                sock.send(request)
                sent += 1
                next_send = now + window / (count + 1)
            ready, _, _ = select.select([sock], [], [], min(0.05, max(0.0, deadline - now)))
            if not ready:
                continue
            frame = sock.recv(2048)
            if len(frame) < 42:
                continue
            opcode = struct.unpack("!H", frame[20:22])[0]
            sender_ip = socket.inet_ntoa(frame[28:32])
            if opcode == 2 and sender_ip == vip:
                mac = _mac_text(frame[22:28])
                answers.setdefault(mac, {"mac": mac, "ip": vip})
        return list(answers.values())
    finally:
        sock.close()


def dr_probe(interface: str, vip: str, server_mac: str, server_ip: str, port: int,
             timeout: float = 1.5) -> dict[str, Any]:
    """One SYN to VIP:port addressed to server_mac; classify what comes back."""
    own_mac, own_ip = interface_addresses(interface)
    sport = random.randint(61000, 61999)
    seq = random.getrandbits(32)
    tcp = struct.pack("!HHIIBBHHH", sport, port, seq, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = socket.inet_aton(own_ip) + socket.inet_aton(vip) + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
    ip_header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), random.getrandbits(16), 0x4000, 64, 6, 0,
                            socket.inet_aton(own_ip), socket.inet_aton(vip))
    ip_header = ip_header[:10] + struct.pack("!H", _checksum(ip_header)) + ip_header[12:]
    frame = _mac_bytes(server_mac) + _mac_bytes(own_mac) + struct.pack("!H", ETH_P_IP) + ip_header + tcp
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    result: dict[str, Any] = {"ok": False, "detail": f"no answer within {timeout:g}s"}
    arp_sender_vip = False
    try:
        sock.bind((interface, ETH_P_ALL))
        sock.send(frame)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            packet, address = sock.recvfrom(65535)
            if address[2] == socket.PACKET_OUTGOING:
                continue
            ethertype = struct.unpack("!H", packet[12:14])[0]
            source_mac = _mac_text(packet[6:12])
            if ethertype == ETH_P_ARP and len(packet) >= 42 and socket.inet_ntoa(packet[28:32]) == vip \
                    and struct.unpack("!H", packet[20:22])[0] == 1:
                arp_sender_vip = True  # the server asked who-has with the VIP as sender: arp_announce
                continue
            if ethertype != ETH_P_IP or len(packet) < 34 or packet[23] != 6:
                continue
            header_length = (packet[14] & 0x0F) * 4
            src_ip = socket.inet_ntoa(packet[26:30])
            dst_ip = socket.inet_ntoa(packet[30:34])
            segment = packet[14 + header_length:]
            if len(segment) < 14 or dst_ip != own_ip:
                continue
            src_port, dst_port = struct.unpack("!HH", segment[:4])
            if dst_port != sport or src_port != port:
                continue
            flags = segment[13]
            if src_ip == server_ip and src_ip != vip:
                result = {"ok": False, "detail": f"answered from the server's own address {server_ip}, not the VIP"}
            elif src_ip != vip:
                result = {"ok": False, "detail": f"answered from unexpected address {src_ip}"}
            elif flags & 0x04:
                result = {"ok": False, "detail": f"RST from {vip}:{port}: nothing listens on the VIP"}
            elif flags & 0x12 == 0x12:
                if source_mac != server_mac.lower():
                    result = {"ok": False, "detail": f"SYN-ACK from unexpected MAC {source_mac}"}
                else:
                    result = {"ok": True, "detail": f"SYN-ACK from {vip}:{port} via {source_mac}"}
            else:
                continue
            break
    finally:
        sock.close()
    if arp_sender_vip:
        result["arp_sender_vip"] = True
        if result["ok"]:
            result = {"ok": False, "detail": result["detail"] + "; but the server sent ARP requests with the VIP "
                      "as sender (arp_announce): clients would learn its MAC for the VIP",
                      "arp_sender_vip": True}
    return result


def run(request: dict[str, Any]) -> dict[str, Any]:
    interface = request["interface"]
    out: dict[str, Any] = {"arp": {}, "dr": []}
    for vip in request.get("vips", []):
        out["arp"][vip] = arp_probe(interface, vip, request.get("arp_window", 1.5))
    for target in request.get("dr", []):
        outcome = dr_probe(interface, target["vip"], target["mac"], target["server_ip"], target["port"],
                           request.get("dr_timeout", 1.5))
        out["dr"].append({**target, **outcome})
    return out


if __name__ == "__main__":
    try:
        if os.geteuid() != 0:
            raise PermissionError("raw sockets need root on the probing host")
        print(json.dumps(run(json.loads(sys.stdin.read() if len(sys.argv) < 2 else sys.argv[1]))))
    except (OSError, KeyError, ValueError) as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        sys.exit(1)
