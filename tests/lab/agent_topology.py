"""A private, throw-away DR segment for the agent's tests and benchmark.

Namespaces `agt<hex>-seg` (a bridge), `-client`, `-agent`, `-rs1..N`; each host has `eth0` on
10.77.0.0/24 (agent .2, client .3 plus extra client addresses .31+, servers .11+, VIP .250).
The servers are prepared for DR (arp_ignore=1, arp_announce=2 on all and eth0, VIP/32 on lo) and
run a tiny TCP service on ports 80 and 443 that answers one line `<host> <local addr>:<port>`.
Everything is removed by `Topology.teardown()` (namespaces take their veths and processes' sockets
with them; the processes we started are killed by PID).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field

PREFIX_NET = "10.77.0"
VIP = f"{PREFIX_NET}.250"
VIP6 = "fd77::250"
AGENT_ADDR = f"{PREFIX_NET}.2"
AGENT2_ADDR = f"{PREFIX_NET}.4"  # the second node of a pair (n_agents=2)
CLIENT_ADDR = f"{PREFIX_NET}.3"

SERVICE = r"""
import socket, sys, threading
name = sys.argv[1]
def handle(c):
    try:
        a, p = c.getsockname()[:2]
        a = a[7:] if a.startswith("::ffff:") else a
        c.sendall(f"{name} {a}:{p}\n".encode())
        c.settimeout(30)
        # Stay open while the client keeps writing (for drain tests); echo every line.
        f = c.makefile("rb")
        for line in f:
            c.sendall(f"{name} ".encode() + line)
    except OSError:
        pass
    finally:
        c.close()
def serve(port):
    s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port)); s.listen(512)
    # One thread per connection, as a real service: a connection whose client is gone (its FIN lost
    # while no agent forwarded) must not hold up the connections after it.
    while True:
        c, _ = s.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()
ports = [int(p) for p in sys.argv[2:]]
for p in ports[1:]:
    threading.Thread(target=serve, args=(p,), daemon=True).start()
serve(ports[0])
"""


def run(*args: str, check: bool = True, ns: str | None = None, **kw) -> subprocess.CompletedProcess:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kw)


def can_run() -> str | None:
    """None when this machine can build the topology, else the reason it cannot."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "nft"):
        if not shutil.which(tool):
            return f"needs {tool}"
    name = "agt" + secrets.token_hex(3) + "-chk"
    try:
        run("ip", "netns", "add", name)
    except subprocess.CalledProcessError as exc:
        return f"cannot create a network namespace: {exc.stderr.strip()}"
    run("ip", "netns", "del", name, check=False)
    return None


@dataclass
class Topology:
    n_servers: int = 3
    n_client_addrs: int = 8
    n_agents: int = 1  # 2: a keepalived pair, namespaces -agent and -agent2
    services: tuple[int, ...] = (80, 443)
    # The segment stands in for a switch. A Linux bridge with br_netfilter loaded also runs every
    # bridged IP frame through the netfilter hooks of its namespace (bridge-nf-call-*, on by default):
    # a cost per bridge pass that no switch has, and the path through the agent crosses the bridge
    # twice. Off unless asked for (bench/agent_bench.py --bridge-netfilter measures it).
    bridge_netfilter: bool = False
    prefix: str = field(default_factory=lambda: "agt" + secrets.token_hex(3))
    procs: list[subprocess.Popen] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)

    @property
    def seg(self) -> str:
        return f"{self.prefix}-seg"

    @property
    def client(self) -> str:
        return f"{self.prefix}-client"

    @property
    def agent(self) -> str:
        return f"{self.prefix}-agent"

    @property
    def agent2(self) -> str:
        return f"{self.prefix}-agent2"

    @property
    def agents(self) -> list[str]:
        return [self.agent, self.agent2][:self.n_agents]

    def server(self, i: int) -> str:
        return f"{self.prefix}-rs{i}"

    @property
    def servers(self) -> list[str]:
        return [self.server(i) for i in range(1, self.n_servers + 1)]

    def server_addr(self, i: int) -> str:
        return f"{PREFIX_NET}.{10 + i}"

    @property
    def client_addrs(self) -> list[str]:
        return [CLIENT_ADDR] + [f"{PREFIX_NET}.{31 + k}" for k in range(self.n_client_addrs - 1)]

    def mac(self, ns: str) -> str:
        return open_sysfs(ns, "eth0")

    # -- build / teardown ------------------------------------------------------------------
    def _ns(self, name: str) -> None:
        run("ip", "netns", "add", name)
        self.namespaces.append(name)
        run("ip", "-n", name, "link", "set", "lo", "up")

    def _host(self, ns: str, port: str, addrs: list[str]) -> None:
        self._ns(ns)
        run("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", self.seg)
        run("ip", "-n", self.seg, "link", "set", port, "master", "br0", "up")
        for _k, addr in enumerate(addrs):
            run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            last = addr.rsplit(".", 1)[1]
            run("ip", "-n", ns, "addr", "add", f"fd77::{last}/64", "dev", "eth0", "nodad")
        run("ip", "-n", ns, "link", "set", "eth0", "up")

    def build(self) -> Topology:
        try:
            self._ns(self.seg)
            run("ip", "-n", self.seg, "link", "add", "br0", "type", "bridge")
            run("ip", "-n", self.seg, "link", "set", "br0", "up")
            if not self.bridge_netfilter:
                self.switch_like_bridge()
            self._host(self.agent, "p-agent", [AGENT_ADDR])
            if self.n_agents == 2:
                self._host(self.agent2, "p-agent2", [AGENT2_ADDR])
            self._host(self.client, "p-client", self.client_addrs)
            for i, ns in enumerate(self.servers, 1):
                self._host(ns, f"p-rs{i}", [self.server_addr(i)])
                self.prepare_server(ns)
                self.start(ns, [sys.executable, "-c", SERVICE, f"rs{i}", *map(str, self.services)])
            for ns in self.servers:
                wait_port(ns, "127.0.0.1", self.services[0])
        except BaseException:
            self.teardown()
            raise
        return self

    def add_routed_client(self, mtu: int) -> str:
        """A client behind a router: `-router` (10.77.0.1 on the segment) forwards to `-far`
        (10.78.0.2) through a route with a smaller MTU, so the router answers the servers' full-size
        replies with ICMP "fragmentation needed" (ICMPv6 "packet too big" for fd78::2 behind
        fd77::1), addressed to the VIP they came from. The servers and the agent route the far
        networks via the router. Returns the far client's namespace."""
        router, far = f"{self.prefix}-router", f"{self.prefix}-far"
        self._host(router, "p-router", [f"{PREFIX_NET}.1"])
        self._ns(far)
        run("ip", "-n", far, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1", "netns", router)
        run("ip", "-n", far, "addr", "add", "10.78.0.2/24", "dev", "eth0")
        run("ip", "-n", router, "addr", "add", "10.78.0.1/24", "dev", "eth1")
        run("ip", "-n", far, "addr", "add", "fd78::2/64", "dev", "eth0", "nodad")
        run("ip", "-n", router, "addr", "add", "fd78::1/64", "dev", "eth1", "nodad")
        for ns, dev in ((far, "eth0"), (router, "eth1")):
            run("ip", "-n", ns, "link", "set", dev, "up")
        run("ip", "-n", far, "route", "add", "default", "via", "10.78.0.1")
        run("ip", "-n", far, "-6", "route", "add", "default", "via", "fd78::1")
        run("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=router)
        run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", ns=router)
        # Both links stay at 1500 (the client's MSS says 1460); only the route through the router
        # is narrower, as a tunnel or a WAN link in the middle of the path would be.
        run("ip", "-n", router, "route", "replace", "10.78.0.0/24", "dev", "eth1", "mtu", str(mtu))
        # IPv6 forwarding checks the egress device's IPv6 MTU (ip6_dst_mtu_maybe_forward), not the
        # route's: lower that one (net.ipv6.conf.eth1.mtu), the link itself stays at 1500.
        run("sysctl", "-qw", f"net.ipv6.conf.eth1.mtu={mtu}", ns=router)
        for ns in [self.agent, *self.servers]:
            run("ip", "-n", ns, "route", "add", "10.78.0.0/24", "via", f"{PREFIX_NET}.1")
            run("ip", "-n", ns, "-6", "route", "add", "fd78::/64", "via", "fd77::1")
        return far

    def switch_like_bridge(self) -> None:
        """bridge-nf-call-{ip,ip6,arp}tables = 0 in the segment's namespace (where br_netfilter exists)."""
        for family in ("ip", "ip6", "arp"):
            key = f"net.bridge.bridge-nf-call-{family}tables"
            if os.path.exists("/proc/sys/" + key.replace(".", "/")):
                run("sysctl", "-qw", f"{key}=0", ns=self.seg)

    def prepare_server(self, ns: str) -> None:
        for key, value in (("arp_ignore", 1), ("arp_announce", 2)):
            for dev in ("all", "eth0"):
                run("sysctl", "-qw", f"net.ipv4.conf.{dev}.{key}={value}", ns=ns)
        run("ip", "-n", ns, "addr", "add", f"{VIP}/32", "dev", "lo")
        run("ip", "-n", ns, "addr", "add", f"{VIP6}/128", "dev", "lo")

    def start(self, ns: str, argv: list[str], **kw) -> subprocess.Popen:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdin=subprocess.DEVNULL,
                                start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def teardown(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=5)
        self.procs.clear()
        for ns in reversed(self.namespaces):
            run("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()

    def __enter__(self) -> Topology:  # noqa: PYI034
        return self.build()

    def __exit__(self, *exc) -> None:
        self.teardown()

    def inventory_yaml(self, services: tuple[str, ...] = ("tcp/80", "tcp/443"), affinity: str = "none",
                       servers: list[int] | None = None, ipv6: bool = False) -> str:
        lines = ["hosts:", f"  agent: {{platform: linux, address: {AGENT_ADDR}}}"]
        if self.n_agents == 2:
            lines.append(f"  agent2: {{platform: linux, address: {AGENT2_ADDR}}}")
        for i in range(1, self.n_servers + 1):
            lines.append(f"  rs{i}: {{platform: linux, address: {self.server_addr(i)}}}")
        svc = ", ".join(f"{{protocol: {s.split('/')[0]}, port: {s.split('/')[1]}}}" for s in services)
        members = ", ".join(f"rs{i}" for i in (servers or range(1, self.n_servers + 1)))
        lines += ["vips:", (f"  - {{name: web, address: {VIP}, services: [{svc}], real_servers: [{members}],"
                            f" affinity: {affinity}}}")]
        if ipv6:
            lines += [(f"  - {{name: web6, address: '{VIP6}', services: [{svc}], real_servers: [{members}],"
                       f" affinity: {affinity}}}")]
        lines += ["agent: {hosts: [agent, agent2], interface: eth0, vrrp_id: 77}" if self.n_agents == 2
                  else "agent: {host: agent, interface: eth0}", ""]
        return "\n".join(lines)


def open_sysfs(ns: str, dev: str) -> str:
    return run("cat", f"/sys/class/net/{dev}/address", ns=ns).stdout.strip()


def wait_port(ns: str, addr: str, port: int, timeout: float = 10.0) -> None:
    code = (f"import socket,sys,time\nend=time.time()+{timeout}\nwhile True:\n try:\n"
            f"  socket.create_connection(({addr!r},{port}),1).close(); break\n"
            " except OSError:\n  time.sleep(0.05)\n  if time.time()>end: sys.exit(1)\n")
    run(sys.executable, "-c", code, ns=ns)
