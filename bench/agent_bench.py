#!/usr/bin/env python3
"""Benchmark the agent's data planes against the client talking to the server directly.

Builds a private namespace segment (tests/lab/agent_topology.py: client, agent, one prepared real
server), then measures, in the same run, medians of REPEAT runs:
  - TCP throughput (iperf3),
  - 64-byte UDP packets/s received by the server (iperf3 -u -l 64 -b 0),
  - TCP connections/s (Python clients against the server's one-line service),
for: client -> RIP directly, client -> VIP through the nft agent, through the afpacket agent.
Also the CPU the run cost: system-wide busy and softirq share (the nft data plane runs in
softirq), and the agent process's own CPU (the afpacket forwarder runs there).
Prints figures; not a test. Needs root. Everything is removed at the end.

Usage: python bench/agent_bench.py [--repeat 3] [--seconds 3] [--bare] [--bridge-netfilter] [--agent-cpu N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "lab"))
import agent_topology as t

METRICS = ("tcp_bps", "udp_pps", "conn_s")
# The connection-rate target: accept, one line, close, one connection at a time (the lab's own test
# service takes a thread per connection and would be the limit, not the path).
ACCEPTOR = r"""
import socket
s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", 5203)); s.listen(1024)
while True:
    c, _ = s.accept()
    try:
        c.sendall(b"ok\n")
    except OSError:
        pass
    c.close()
"""
CONNS = r"""
import socket, sys, time, os
from multiprocessing import Pool
target, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
def work(k):
    n = 0
    end = time.time() + seconds
    while time.time() < end:
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        s.settimeout(2)
        try:
            s.connect((target, port)); s.recv(100); n += 1
        except OSError:
            pass
        s.close()
    return n
with Pool(4) as p:
    print(sum(p.map(work, range(4))) / seconds)
"""


def cpu_sample() -> tuple[int, int, int]:
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    total = sum(fields[:8])
    idle = fields[3] + fields[4]
    return total, total - idle, fields[6]  # total, busy, softirq


def proc_cpu(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            parts = handle.read().rsplit(")", 1)[1].split()
        return int(parts[11]) + int(parts[12])
    except OSError:
        return 0


class Bench:
    def __init__(self, topo: t.Topology, seconds: float, repeat: int, agent_cpu: int | None = None):
        self.topo, self.seconds, self.repeat = topo, seconds, repeat
        self.agent_pid = 0
        # --agent-cpu: the forwarder as if on a host of its own. The endpoints (client, server, their
        # kernels' receive work) keep the other CPUs in every run, direct or not; the agent's
        # interface steers its receive work (RPS) to its CPU, and the afpacket process runs there.
        self.agent_cpu = agent_cpu
        self.endpoint_cpus = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)) if c != agent_cpu)

    def on_endpoints(self, argv: list[str]) -> list[str]:
        return ["taskset", "-c", self.endpoint_cpus, *argv] if self.agent_cpu is not None else argv

    def isolate(self) -> None:
        """RPS: agent's eth0 -> the agent CPU; client's and servers' eth0 -> the endpoint CPUs; the
        services already running in the servers moved to the endpoint CPUs."""
        def mask(cpus: list[int]) -> str:
            return format(sum(1 << c for c in cpus), "x")
        endpoints = [int(c) for c in self.endpoint_cpus.split(",")]
        for ns, cpus in [(self.topo.agent, [self.agent_cpu]), (self.topo.client, endpoints),
                         *[(ns, endpoints) for ns in self.topo.servers]]:
            t.run("sh", "-c", f"echo {mask(cpus)} > /sys/class/net/eth0/queues/rx-0/rps_cpus", ns=ns)
        for proc in self.topo.procs:
            subprocess.run(["taskset", "-a", "-p", "-c", self.endpoint_cpus, str(proc.pid)],
                           check=True, capture_output=True)

    def iperf(self, target: str, port: int, udp: bool) -> float:
        args = self.on_endpoints(["iperf3", "-c", target, "-p", str(port), "-t", str(self.seconds), "-J"])
        if udp:
            args += ["-u", "-l", "64", "-b", "0"]
        out = t.run(*args, ns=self.topo.client, check=False, timeout=self.seconds + 20)
        data = json.loads(out.stdout or "{}")
        end = data.get("end", {})
        if udp:
            s = end.get("sum", {})
            return (s.get("packets", 0) - s.get("lost_packets", 0)) / max(s.get("seconds", self.seconds), 1e-9)
        return end.get("sum_received", {}).get("bits_per_second", 0.0)

    def conns(self, target: str) -> float:
        out = t.run(*self.on_endpoints([sys.executable, "-c", CONNS, target, "5203", str(self.seconds)]), ns=self.topo.client,
                    timeout=self.seconds + 30)
        return float(out.stdout.strip())

    def one(self, metric: str, target: str, port: int) -> tuple[float, float, float, float]:
        """(value, busy %, softirq %, agent process CPU % of one core) for one run."""
        c0, a0, tic = cpu_sample(), proc_cpu(self.agent_pid), time.time()
        if metric == "conn_s":
            value = self.conns(target)
        else:
            value = self.iperf(target, port, metric == "udp_pps")
        c1, a1, elapsed = cpu_sample(), proc_cpu(self.agent_pid), time.time() - tic
        total = max(c1[0] - c0[0], 1)
        agent = 100.0 * (a1 - a0) / os.sysconf("SC_CLK_TCK") / elapsed if self.agent_pid else 0.0
        return value, 100.0 * (c1[1] - c0[1]) / total, 100.0 * (c1[2] - c0[2]) / total, agent

    def compare(self, label: str, results: dict[str, dict[str, list[tuple[float, ...]]]], rs_addr: str) -> None:
        """Alternate direct and through-the-agent runs, so drift hits both alike."""
        for metric in METRICS:
            for _ in range(self.repeat):
                direct = self.one(metric, rs_addr, 5202)
                results["direct"].setdefault(metric, []).append(direct)
                results[f"direct/{label}"].setdefault(metric, []).append(direct)  # the runs paired with this path
                results[label].setdefault(metric, []).append(self.one(metric, t.VIP, 5201))
            print(f"  {metric:8} direct={[round(v[0]) for v in results['direct'][metric][-self.repeat:]]} "
                  f"{label}={[round(v[0]) for v in results[label][metric]]}", flush=True)

    def bare_compare(self, results: dict[str, dict[str, list[tuple[float, ...]]]]) -> None:
        """The nft agent's VIP chain swapped, run by run, for the least a DR forwarder can do (rewrite
        the destination MAC, then the agent's `out` chain: source MAC and fwd): what arpfix's rules
        (pin sets, hash, counters) cost on top of the extra hop itself."""
        agent = self.topo.agent
        full = t.run("nft", "list", "chain", "netdev", "arpfix_agent", "vip_0", ns=agent).stdout
        bare = ("flush chain netdev arpfix_agent vip_0\n"
                f"add rule netdev arpfix_agent vip_0 ether daddr set {self.topo.mac(self.topo.server(1))} goto out\n")
        for metric in METRICS:
            for _ in range(self.repeat):
                t.run("nft", "-f", "-", ns=agent, input="flush chain netdev arpfix_agent vip_0\n" + full)
                results["nft-rules"].setdefault(metric, []).append(self.one(metric, t.VIP, 5201))
                t.run("nft", "-f", "-", ns=agent, input=bare)
                results["nft-bare"].setdefault(metric, []).append(self.one(metric, t.VIP, 5201))
            print(f"  {metric:8} arpfix rules={[round(v[0]) for v in results['nft-rules'][metric]]} "
                  f"bare={[round(v[0]) for v in results['nft-bare'][metric]]}", flush=True)
        t.run("nft", "-f", "-", ns=agent, input="flush chain netdev arpfix_agent vip_0\n" + full)

    def start_agent(self, inventory: str, dataplane: str, state: str) -> subprocess.Popen:
        argv = [sys.executable, "-m", "arpfix.cli", "agent", "run", "-i", inventory,
                "--dataplane", dataplane, "--state-dir", state, "--check-port", "80"]
        if self.agent_cpu is not None:
            argv = ["taskset", "-c", str(self.agent_cpu), *argv]
        proc = self.topo.start(self.topo.agent, argv,
                               cwd=REPO, stderr=subprocess.DEVNULL)
        end = time.time() + 20
        while time.time() < end:
            try:
                with open(os.path.join(state, "agent.json")) as handle:
                    if json.load(handle).get("vips"):
                        break
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        else:
            raise SystemExit(f"agent ({dataplane}) did not start")
        self.agent_pid = proc.pid
        return proc


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--bare", action="store_true",
                        help="only compare the nft agent's rules with a bare MAC-rewrite rule (same hop)")
    parser.add_argument("--bridge-netfilter", action="store_true",
                        help="leave br_netfilter's bridge-nf-call-* on in the segment (the kernel default; "
                             "off by default so the bridge acts like a switch)")
    parser.add_argument("--agent-cpu", type=int, default=None, metavar="N",
                        help="give the agent CPU N to itself, the endpoints the others (in every run, direct too): "
                             "the forwarder as if on its own host; default: all paths share every CPU")
    args = parser.parse_args()
    if args.agent_cpu is not None and (args.agent_cpu not in os.sched_getaffinity(0) or len(os.sched_getaffinity(0)) < 2):
        print(f"cannot run: --agent-cpu {args.agent_cpu} needs that CPU and at least one other", file=sys.stderr)
        return 2
    reason = t.can_run()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    topo = t.Topology(n_servers=1, n_client_addrs=1, services=(80,), bridge_netfilter=args.bridge_netfilter)
    print(f"segment bridge: bridge-nf-call-* {'on (kernel default)' if args.bridge_netfilter else 'off (switch-like)'}",
          flush=True)
    with topo:
        rs = topo.server(1)
        bench = Bench(topo, args.seconds, args.repeat, args.agent_cpu)
        topo.start(rs, ["iperf3", "-s", "-B", t.VIP, "-p", "5201"], stdout=subprocess.DEVNULL)
        topo.start(rs, ["iperf3", "-s", "-B", topo.server_addr(1), "-p", "5202"], stdout=subprocess.DEVNULL)
        topo.start(rs, [sys.executable, "-c", ACCEPTOR])
        if args.agent_cpu is not None:
            bench.isolate()
            print(f"agent on CPU {args.agent_cpu} (RPS + affinity), endpoints on CPU {bench.endpoint_cpus}", flush=True)
        time.sleep(0.5)
        inventory = f"/tmp/{topo.prefix}-bench.yaml"
        with open(inventory, "w") as handle:
            handle.write(topo.inventory_yaml(services=("tcp/80", "tcp/5201", "udp/5201", "tcp/5203")))
        results: dict[str, dict[str, list[tuple[float, ...]]]] = {
            "direct": {}, "nft": {}, "afpacket": {}, "direct/nft": {}, "direct/afpacket": {}}
        try:
            if args.bare:
                print("nft agent: its rules vs a bare MAC rewrite, alternating", flush=True)
                bare_results: dict[str, dict[str, list[tuple[float, ...]]]] = {"nft-rules": {}, "nft-bare": {}}
                proc = bench.start_agent(inventory, "nft", f"/tmp/{topo.prefix}-state-bare")
                try:
                    bench.bare_compare(bare_results)
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=10)
                    shutil.rmtree(f"/tmp/{topo.prefix}-state-bare", ignore_errors=True)
                for metric in METRICS:
                    rules = statistics.median(v[0] for v in bare_results["nft-rules"][metric])
                    plain = statistics.median(v[0] for v in bare_results["nft-bare"][metric])
                    print(f"{metric:8} arpfix rules / bare rewrite = {rules / plain:.2f}")
                return 0
            for dataplane in ("nft", "afpacket"):
                print(f"direct client -> RIP vs through the agent ({dataplane})", flush=True)
                proc = bench.start_agent(inventory, dataplane, f"/tmp/{topo.prefix}-state-{dataplane}")
                try:
                    bench.compare(dataplane, results, topo.server_addr(1))
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=10)
                    bench.agent_pid = 0
                    shutil.rmtree(f"/tmp/{topo.prefix}-state-{dataplane}", ignore_errors=True)
        finally:
            os.unlink(inventory)

    def med(path: str, metric: str, index: int = 0) -> float:
        return statistics.median(v[index] for v in results[path][metric])

    print(f"\nmedians ({args.repeat} runs per path and data plane, direct runs pooled: {2 * args.repeat}), "
          f"{args.seconds:g}s each, {os.cpu_count()} CPUs, one machine: all paths share the cores")
    print(f"{'path':10} {'TCP Gbit/s':>10} {'ratio':>6} {'UDP64 kpps':>10} {'ratio':>6} {'conn/s':>7} {'ratio':>6}"
          "   CPU during UDP: busy% softirq% agent-process%")
    # each data plane is divided by the direct runs that alternated with it (same minutes, same load)
    for path in ("direct", "nft", "afpacket"):
        base = "direct" if path == "direct" else f"direct/{path}"
        tcp, udp, conn = (med(path, m) for m in METRICS)
        print(f"{path:10} {tcp / 1e9:10.2f} {tcp / med(base, 'tcp_bps'):6.2f} {udp / 1e3:10.1f} "
              f"{udp / med(base, 'udp_pps'):6.2f} {conn:7.0f} {conn / med(base, 'conn_s'):6.2f}"
              f"   {med(path, 'udp_pps', 1):5.0f} {med(path, 'udp_pps', 2):8.0f} {med(path, 'udp_pps', 3):14.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
