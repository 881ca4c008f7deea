"""What the agent serves, taken from the inventory: its interface, VIPs, services, real servers.

`build` is pure (Inventory in, AgentConfig out). `resolve_macs` asks the segment (ARP from this
host) for each real server's MAC: the agent forwards only to MACs it resolved itself.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
from dataclasses import dataclass, field, replace

from arpfix.errors import UsageError
from arpfix.settings import Inventory, Service

# Full matches (\A...\Z, never `$`, which also matches before a final newline: "eth0\n" would pass).
IFNAME = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}\Z")
MAC = re.compile(r"\A[0-9a-f]{2}(:[0-9a-f]{2}){5}\Z")


@dataclass(frozen=True)
class RealServer:
    name: str
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    mac: str | None = None
    weight: int = 1


@dataclass(frozen=True)
class VipConfig:
    name: str
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    services: tuple[Service, ...]
    servers: tuple[str, ...]
    affinity: str = "none"

    @property
    def family(self) -> int:
        return self.address.version


@dataclass(frozen=True)
class AgentConfig:
    agent: str
    interface: str
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    vips: tuple[VipConfig, ...]
    servers: dict[str, RealServer] = field(default_factory=dict)
    inventory_path: str = ""
    # A keepalived pair (`agent.hosts: [a, b]`): the other node, its address and the VRRP id.
    # In a pair keepalived owns the VIPs; the agent only forwards (arpfix.agent.keepalived).
    peer: str | None = None
    peer_address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    vrrp_id: int = 51
    priority: int = 100  # VRRP priority: the first node of `agent.hosts` 150, the second 100

    def with_macs(self, macs: dict[str, str | None]) -> AgentConfig:
        servers = {n: replace(s, mac=macs.get(n, s.mac)) for n, s in self.servers.items()}
        return replace(self, servers=servers)


def load(path: str) -> Inventory:
    """The one place the agent reads an inventory file (swap here if the loader moves)."""
    from arpfix.inventory import load_inventory

    return load_inventory(path)


def build(inv: Inventory, agent: str | None = None, interface: str | None = None,
          local_interfaces: dict[str, list[str]] | None = None) -> AgentConfig:
    """Inventory -> AgentConfig. `local_interfaces` (name -> addresses) is this host's view, used
    to find the interface that holds the agent's address when none is configured."""
    pair = inv.agent.hosts if inv.agent and len(inv.agent.hosts) == 2 else ()
    name = agent or (_this_node(inv, pair, local_interfaces) if pair else inv.agent.host if inv.agent else None)
    if not name:
        raise UsageError("no agent host: give --agent NAME or an `agent: {host: ...}` section in the inventory")
    host = inv.hosts.get(name)
    if host is None:
        raise UsageError(f"agent host {name!r} is not in the inventory's hosts")
    if host.platform != "linux":
        raise UsageError(f"agent host {name!r} must be a linux host, not {host.platform}")
    ifname = interface or (inv.agent.interface if inv.agent and name in inv.agent.hosts else None) or host.nic
    if ifname is None:
        interfaces = local_interfaces if local_interfaces is not None else local_addresses()
        for dev, addrs in interfaces.items():
            if str(host.address) in addrs:
                ifname = dev
                break
        else:
            raise UsageError(f"no interface on this machine holds {host.address} (the address of agent host "
                             f"{name!r}); run the agent on that host or give its interface")
    if not IFNAME.match(ifname):
        raise UsageError(f"invalid interface name {ifname!r}")
    vips = []
    servers: dict[str, RealServer] = {}
    for vip in inv.vips:
        members = tuple(s for s in vip.real_servers if s != name and s not in pair)
        if not vip.services:
            raise UsageError(f"VIP {vip.name!r} has no services")
        vips.append(VipConfig(vip.name, vip.address, tuple(vip.services), members, vip.affinity))
        for member in members:
            servers[member] = RealServer(member, inv.hosts[member].address)
    if not vips:
        raise UsageError("the inventory has no VIPs for the agent to serve")
    peer = next((h for h in pair if h != name), None) if name in pair else None
    return AgentConfig(name, ifname, host.address, tuple(vips), servers, inv.path, peer,
                       inv.hosts[peer].address if peer else None, inv.agent.vrrp_id if inv.agent else 51,
                       150 if pair and name == pair[0] else 100)


def _this_node(inv: Inventory, pair: tuple[str, ...], local_interfaces: dict[str, list[str]] | None) -> str:
    """Which node of the pair this machine is: the one whose address is on a local interface."""
    interfaces = local_interfaces if local_interfaces is not None else local_addresses()
    local = {a for addrs in interfaces.values() for a in addrs}
    mine = [h for h in pair if str(inv.hosts[h].address) in local]
    if len(mine) != 1:
        raise UsageError(f"cannot tell which node of the pair ({', '.join(pair)}) this machine is; give --agent NAME")
    return mine[0]


def local_addresses() -> dict[str, list[str]]:
    """This network namespace's interfaces and their addresses (`ip -j addr`)."""
    out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True, check=True).stdout
    return {i["ifname"]: [a["local"] for a in i.get("addr_info", [])] for i in json.loads(out)}


def interface_mac(ifname: str) -> str:
    try:
        with open(f"/sys/class/net/{ifname}/address") as handle:
            mac = handle.read().strip().lower()
    except OSError:
        raise UsageError(f"interface {ifname!r} does not exist on this machine") from None
    if not MAC.match(mac):
        raise UsageError(f"interface {ifname!r} has no Ethernet address ({mac!r})")
    return mac


def resolve_macs(config: AgentConfig, timeout: float = 1.0) -> dict[str, str | None]:
    """Each real server's MAC as answered on the segment; None where nobody (or several) answered."""
    from arpfix.agent import arp

    macs: dict[str, str | None] = {}
    v4 = [s for s in config.servers.values() if s.address.version == 4]
    own = interface_mac(config.interface)
    answers = arp.resolve(config.interface, own, str(config.address) if config.address.version == 4 else "0.0.0.0",
                          [str(s.address) for s in v4], timeout=timeout)
    for server in v4:
        found = answers.get(str(server.address), set())
        macs[server.name] = next(iter(found)) if len(found) == 1 else None
    for server in config.servers.values():
        if server.address.version == 6:
            macs[server.name] = arp.resolve_v6(config.interface, str(server.address), timeout)
    return macs
