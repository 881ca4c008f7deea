"""User-space fallback data plane: an AF_PACKET socket that rewrites both MACs and sends back out.

For kernels without nftables `fwd` (or for diagnosis). Same slot scheduling as the nft data plane,
but its own hash (CRC-32 of the flow key), so flows do not keep their server across a switch of
data plane. Flows are pinned like the nft pin sets: a flow key seen before goes to the server it
went to (drain keeps open connections), until PIN_TIMEOUT of silence or until that server fails.
ICMP fragmentation-needed / packet-too-big errors to a VIP go to the server of the embedded flow.
The socket uses PACKET_VNET_HDR, so checksum-offload and GSO frames pass through
intact (the kernel finishes them on send). The agent's own kernel would also see the frames and
answer SYNs for the VIP with RSTs: the ruleset in afpacket mode drops the service traffic at
netdev ingress, which runs after packet taps, so this socket still gets its copy.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
import zlib
from dataclasses import dataclass

from arpfix.agent.scheduler import SLOTS

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
VNET = 10  # sizeof(struct virtio_net_hdr)
PIN_TIMEOUT = 600.0  # seconds, as the nft pin sets
PIN_LIMIT = 65536  # flows per VIP, as the nft pin sets' size


@dataclass(frozen=True)
class Listener:
    vip: int  # index
    address: bytes
    protocol: int  # 6 | 17
    port: int
    affinity: bool


class Forwarder(threading.Thread):
    def __init__(self, ifname: str, agent_mac: str, listeners: list[Listener], servers: dict[str, str]):
        super().__init__(name="arpfix-afpacket", daemon=True)
        self.ifname = ifname
        self.agent_mac = _mac(agent_mac)
        self.match = {(item.address, item.protocol, item.port): item for item in listeners}
        self.icmp = {item.address: item for item in listeners}  # VIP address -> (index, affinity)
        self.names: dict[bytes, str] = {}  # MAC -> server name, for counters
        self.add_servers(servers)
        self.tables: dict[int, list[bytes | None]] = {}
        self.pins: dict[int, dict[bytes, list]] = {}  # VIP index -> flow key -> [server MAC, last seen]
        self.counters: dict[str, list[int]] = {}
        self.stop_event = threading.Event()
        self.error: str = ""

    def set_table(self, vip: int, macs: list[str | None], unpin: list[str] = ()) -> None:
        """New slot table for a VIP; flows pinned to a server in `unpin` (it failed) lose their pin."""
        self.tables[vip] = [_mac(m) if m else None for m in macs]
        gone = {_mac(m) for m in unpin}
        if gone and vip in self.pins:
            # a copy without them replaces the dict the forwarding thread reads (no shared iteration)
            self.pins[vip] = {k: v for k, v in list(self.pins[vip].items()) if v[0] not in gone}

    def add_servers(self, servers: dict[str, str]) -> None:
        """Server name -> MAC (text), for the counters."""
        self.names.update({_mac(mac): name for name, mac in servers.items()})

    def pinned(self, vip: int) -> dict[str, int]:
        """Open (pinned) flows per server MAC (text) of a VIP, counted in one pass."""
        counts: dict[str, int] = {}
        for mac, _ in list(self.pins.get(vip, {}).values()):
            text = mac.hex(":")
            counts[text] = counts.get(text, 0) + 1
        return counts

    def stop(self) -> None:
        self.stop_event.set()

    def run(self) -> None:
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
            try:
                sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            except OSError:
                pass
            sock.bind((self.ifname, ETH_P_ALL))
            sock.settimeout(0.2)
        except OSError as exc:
            self.error = f"cannot open AF_PACKET socket on {self.ifname}: {exc}"
            return
        with sock:
            self._loop(sock)

    def _loop(self, sock: socket.socket) -> None:
        buf = bytearray(65536 + VNET + 64)
        view = memoryview(buf)
        own = self.agent_mac
        match, tables, counters, names, pins = self.match, self.tables, self.counters, self.names, self.pins
        while not self.stop_event.is_set():
            try:
                n = sock.recv_into(buf)
            except TimeoutError:
                continue
            except OSError:
                continue
            e = VNET
            if n < e + 34 or buf[e:e + 6] != own:
                continue
            ethertype = buf[e + 12:e + 14]
            if ethertype == b"\x08\x00":
                ip = e + 14
                ihl = (buf[ip] & 0x0F) * 4
                proto = buf[ip + 9]
                src = bytes(buf[ip + 12:ip + 16])
                dst = bytes(buf[ip + 16:ip + 20])
                l4 = ip + ihl
            elif ethertype == b"\x86\xdd":
                ip = e + 14
                proto = buf[ip + 6]
                src = bytes(buf[ip + 8:ip + 24])
                dst = bytes(buf[ip + 24:ip + 40])
                l4 = ip + 40
            else:
                continue
            if n < l4 + 4:
                continue
            item = match.get((dst, proto, (buf[l4 + 2] << 8) | buf[l4 + 3]))
            if item is None:
                if proto in (1, 58):
                    self._icmp(sock, buf, n, l4, proto, dst)
                continue
            table = tables.get(item.vip)
            if not table:
                continue
            key = src if item.affinity else src + bytes(buf[l4:l4 + 2])
            now = time.monotonic()
            flows = pins.get(item.vip)
            if flows is None:
                flows = pins[item.vip] = {}
            pin = flows.get(key)
            if pin is not None and now - pin[1] < PIN_TIMEOUT:
                mac = pin[0]
                pin[1] = now
            else:
                mac = table[zlib.crc32(key) % SLOTS]
                if mac is None:
                    continue
                if len(flows) >= PIN_LIMIT:
                    flows = pins[item.vip] = _pruned(flows, now)
                flows[key] = [mac, now]
            buf[e:e + 6] = mac
            buf[e + 6:e + 12] = own
            try:
                sock.send(view[:n])
            except OSError:
                continue
            counter = counters.get(names.get(mac, "?") + f"/{item.vip}")
            if counter is None:
                counter = counters[names.get(mac, "?") + f"/{item.vip}"] = [0, 0]
            counter[0] += 1
            counter[1] += n - VNET


    def _icmp(self, sock: socket.socket, buf: bytearray, n: int, l4: int, proto: int, dst: bytes) -> None:
        """Path-MTU errors to a VIP (ICMP fragmentation needed, ICMPv6 packet too big) go to the
        server of the embedded flow: its header is VIP -> client, so the client's address and port
        there are the flow key the client's own packets were hashed (and pinned) by."""
        item = self.icmp.get(dst)
        if item is None or n < l4 + 8:
            return
        inner = l4 + 8
        if proto == 1:
            if buf[l4] != 3 or buf[l4 + 1] != 4 or n < inner + 24 or buf[inner] != 0x45:
                return
            source, client, port = buf[inner + 12:inner + 16], buf[inner + 16:inner + 20], buf[inner + 22:inner + 24]
        else:
            if buf[l4] != 2 or n < inner + 44:
                return
            source, client, port = buf[inner + 8:inner + 24], buf[inner + 24:inner + 40], buf[inner + 42:inner + 44]
        if bytes(source) != dst:
            return
        key = bytes(client) if item.affinity else bytes(client) + bytes(port)
        pin = self.pins.get(item.vip, {}).get(key)
        table = self.tables.get(item.vip)
        mac = pin[0] if pin is not None else (table[zlib.crc32(key) % SLOTS] if table else None)
        if mac is None:
            return
        buf[VNET:VNET + 6] = mac
        buf[VNET + 6:VNET + 12] = self.agent_mac
        try:
            sock.send(memoryview(buf)[:n])
        except OSError:
            return
        counter = self.counters.setdefault(f"icmp/{item.vip}", [0, 0])
        counter[0] += 1
        counter[1] += n - VNET


def _mac(text: str) -> bytes:
    return bytes(int(p, 16) for p in text.split(":"))


def _pruned(flows: dict[bytes, list], now: float) -> dict[bytes, list]:
    """The pins still live; if that is still too many, the newer half (like a full nft set,
    the oldest flows fall back to the hash)."""
    live = {k: v for k, v in flows.items() if now - v[1] < PIN_TIMEOUT}
    if len(live) >= PIN_LIMIT:
        live = dict(sorted(live.items(), key=lambda item: item[1][1])[len(live) // 2:])
    return live


def listeners(vips: list[tuple[int, str, list[tuple[str, int]], str]]) -> list[Listener]:
    """(index, address, [(protocol, port)], affinity) per VIP -> match entries."""
    found = []
    for index, address, services, affinity in vips:
        packed = ipaddress.ip_address(address).packed
        for protocol, port in services:
            found.append(Listener(index, packed, 6 if protocol == "tcp" else 17, port, affinity == "source-ip"))
    return found
