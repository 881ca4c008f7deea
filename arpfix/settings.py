"""Typed, frozen inventory data: what the loader produces and everything else consumes."""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field

from arpfix.secrets import SecretRef

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class SshSettings:
    user: str = "root"
    port: int = 22
    key_file: str | None = None
    known_hosts: str = "~/.ssh/known_hosts"
    sudo: bool = False
    password: SecretRef | None = None
    passphrase: SecretRef | None = None
    connect_timeout: float = 10.0
    command_timeout: float = 120.0
    proxy_command: str | None = None  # OpenSSH ProxyCommand (from Ansible's ProxyJump / ProxyCommand)


@dataclass(frozen=True)
class WinrmSettings:
    scheme: str = "https"
    port: int = 5986
    auth: str = "ntlm"
    user: str | None = None
    password: SecretRef | None = None
    ca_bundle: str | None = None
    cert_validation: bool = True
    cert_pem: str | None = None
    cert_key_pem: str | None = None
    connect_timeout: float = 10.0
    operation_timeout: float = 120.0


@dataclass(frozen=True)
class Service:
    protocol: str  # "tcp" | "udp"
    port: int

    def __str__(self) -> str:
        return f"{self.protocol}/{self.port}"


@dataclass(frozen=True)
class Vip:
    name: str
    address: IPAddress
    services: tuple[Service, ...]
    real_servers: tuple[str, ...]  # resolved host names, in inventory order
    affinity: str = "none"  # none | source-ip

    @property
    def family(self) -> int:
        return self.address.version


@dataclass(frozen=True)
class Host:
    name: str
    platform: str  # "linux" | "windows"
    address: IPAddress
    connect: str  # what we connect to (name or address)
    groups: tuple[str, ...] = ()
    ssh: SshSettings = field(default_factory=SshSettings)
    winrm: WinrmSettings = field(default_factory=WinrmSettings)
    method: str = "loopback"  # linux: loopback | host-scope | dummy | redirect
    nic: str | None = None  # linux interface / windows adapter name override
    windows_profile: str = "loadbalancer.org"  # or "microsoft"
    keep_bindings: tuple[str, ...] = ()
    arp_scope: str | None = None  # linux: "all" | "nic"; None: all, or nic where containers are detected
    cloud: str = "auto"  # auto (detect from DMI) | none | aws | gcp | azure
    line: int = 0  # where the host is defined (for messages)
    # the local files the host's settings name: (field, path, line of the inventory that sets it)
    files: tuple[tuple[str, str, int], ...] = ()


@dataclass(frozen=True)
class LoadBalancer:
    name: str
    macs: tuple[str, ...]
    addresses: tuple[str, ...] = ()  # its own IP addresses (validated): servers' routes to them are audited


@dataclass(frozen=True)
class AgentSettings:
    host: str  # the agent host; in a pair, the first of `hosts`
    interface: str | None = None
    hosts: tuple[str, ...] = ()  # a keepalived pair (`agent.hosts: [a, b]`), else just (host,)
    vrrp_id: int = 51  # the pair's VRRP virtual_router_id (1-255), unique on the segment


@dataclass(frozen=True)
class Inventory:
    path: str
    hosts: dict[str, Host]
    groups: dict[str, tuple[str, ...]]  # group -> member host names (children expanded)
    vips: tuple[Vip, ...]
    load_balancer: LoadBalancer | None = None
    agent: AgentSettings | None = None
    # hosts the loader left out on purpose (an Ansible host with ansible_connection=local): (name, groups)
    skipped: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def agent_hosts(self) -> frozenset[str]:
        """The agent host, or both nodes of a keepalived pair (none without `agent:`)."""
        if self.agent is None:
            return frozenset()
        return frozenset((self.agent.host, *self.agent.hosts))

    def vips_for(self, host_name: str) -> tuple[Vip, ...]:
        """The VIPs this host is a real server for (its desired state)."""
        return self._vips_by_host.get(host_name, ())

    @functools.cached_property
    def _vips_by_host(self) -> dict[str, tuple[Vip, ...]]:
        # one pass over the VIPs: per-host lookups stay O(1) on inventories of 100,000 hosts
        found: dict[str, list[Vip]] = {}
        for vip in self.vips:
            for name in vip.real_servers:
                found.setdefault(name, []).append(vip)
        return {name: tuple(vips) for name, vips in found.items()}

    @property
    def real_servers(self) -> list[str]:
        return [name for name in self.hosts if self.vips_for(name)]
