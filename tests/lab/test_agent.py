"""The DR forwarding agent on a private namespace segment (real kernel, real nftables).

Topology: tests/lab/agent_topology.py (servers prepared for DR by the fixture). The agent runs as
`python -m arpfix.cli agent run` inside the agent namespace, as a user would run it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import agent_topology as topo_mod

from arpfix.agent.scheduler import SLOTS

pytestmark = pytest.mark.lab
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REASON = topo_mod.can_run()
if REASON:
    pytestmark = [pytest.mark.lab, pytest.mark.skip(reason=f"agent lab: {REASON}")]

CLIENT = r"""
import json, socket, sys
addrs, n, port = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
out = []
for a in addrs:
    for _ in range(n):
        s = socket.socket(socket.AF_INET6 if ":" in a else socket.AF_INET); s.bind((a, 0)); s.settimeout(3)
        try:
            s.connect((sys.argv[4], port)); out.append([a, s.recv(200).decode().split()[0]])
        except OSError as e:
            out.append([a, "ERR " + str(e)])
        finally:
            s.close()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def topo():
    topology = topo_mod.Topology(n_servers=3, n_client_addrs=8).build()
    try:
        yield topology
    finally:
        topology.teardown()


class AgentProc:
    def __init__(self, topo, tmp_path, affinity="none", extra=(), ipv6=False, ns=None):
        self.topo = topo
        self.ns = ns or topo.agent  # a pair has two agent namespaces
        self.inv = str(tmp_path / "inventory.yaml")
        with open(self.inv, "w") as handle:
            handle.write(topo.inventory_yaml(affinity=affinity, ipv6=ipv6))
        self.state_dir = str(tmp_path / "state")
        self.extra = list(extra)
        self.proc = None
        self.log = str(tmp_path / "agent.log")

    def start(self, wait=True):
        argv = [sys.executable, "-m", "arpfix.cli", "agent", "run", "-i", self.inv, "--state-dir", self.state_dir,
                "--interval", "0.3", "--rise", "2", "--fall", "2", *self.extra]
        with open(self.log, "a") as log:
            self.proc = self.topo.start(self.ns, argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        if wait:
            end = time.time() + 15
            while time.time() < end:
                state = self.state()
                if state and state.get("dataplane") and state.get("pid") == self.proc.pid:  # full state, not partial
                    return self
                assert self.proc.poll() is None, f"agent exited: {self.output()}"
                time.sleep(0.1)
            raise AssertionError(f"agent did not come up: {self.output()}")
        return self

    def output(self):
        with open(self.log) as handle:
            return handle.read()

    def state(self):
        try:
            with open(os.path.join(self.state_dir, "agent.json")) as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None

    def cli(self, *args, check=True):
        return topo_mod.run(sys.executable, "-m", "arpfix.cli", "agent", *args, "--state-dir", self.state_dir,
                            ns=self.ns, cwd=REPO, check=check)

    def status(self):
        return json.loads(self.cli("status", "--format", "json").stdout)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(timeout=10)
        return self.proc.returncode if self.proc else None

    def wait_health(self, server, up, timeout=8):
        end = time.time() + timeout
        while time.time() < end:
            state = self.state()
            if state and state.get("vips"):
                s = next(s for s in state["vips"][0]["servers"] if s["name"] == server)
                if s["up"] == up:
                    return
            time.sleep(0.1)
        raise AssertionError(f"{server} never became {'up' if up else 'down'}: {self.output()}")


@pytest.fixture
def agent(topo, tmp_path):
    procs = []

    def make(**kw):
        os.makedirs(tmp_path / f"a{len(procs)}", exist_ok=True)
        a = AgentProc(topo, tmp_path / f"a{len(procs)}", **kw)
        procs.append(a)
        return a

    yield make
    for a in procs:
        if a.proc and a.proc.poll() is None:
            a.stop()
    # Whatever happened, leave the agent namespace clean for the next test.
    topo_mod.run("nft", "delete", "table", "netdev", "arpfix_agent", ns=topo.agent, check=False)
    topo_mod.run("ip", "addr", "del", f"{topo_mod.VIP}/32", "dev", "eth0", ns=topo.agent, check=False)
    topo_mod.run("ip", "addr", "del", f"{topo_mod.VIP6}/128", "dev", "eth0", ns=topo.agent, check=False)


def connect(topo, addrs, n=4, port=80, vip=topo_mod.VIP):
    out = topo_mod.run(sys.executable, "-c", CLIENT, json.dumps(addrs), str(n), str(port), vip,
                       ns=topo.client).stdout
    return [tuple(x) for x in json.loads(out)]


def agent_has_table(topo):
    return topo_mod.run("nft", "list", "table", "netdev", "arpfix_agent", ns=topo.agent, check=False).returncode == 0


def agent_has_vip(topo):
    return topo_mod.VIP in topo_mod.run("ip", "-o", "addr", "show", "dev", "eth0", ns=topo.agent).stdout


# The traffic tests run on both data planes: the kernel one and the user-space fallback.
DATAPLANES = pytest.mark.parametrize("dataplane", ["nft", "afpacket"])


@DATAPLANES
def test_spreads_connections_and_replies_bypass_the_agent(topo, agent, dataplane):
    a = agent(extra=("--dataplane", dataplane)).start()
    results = connect(topo, topo.client_addrs, n=4)
    assert all(not server.startswith("ERR") for _, server in results), results
    seen = Counter(server for _, server in results)
    assert set(seen) == {"rs1", "rs2", "rs3"}, seen
    # afpacket's counters reach the state file on the agent's next round: wait for them
    end = time.time() + 5
    while True:
        status = a.status()
        vip = status["vips"][0]
        if sum(s["packets"] for s in vip["servers"]) >= len(results) * 3 or time.time() > end:
            break
        time.sleep(0.2)
    assert status["dataplane"] == dataplane
    assert sum(s["packets"] for s in vip["servers"]) >= len(results) * 3  # SYN, ACK, FIN... per connection
    assert vip["replies_seen"] == 0  # the servers' answers never came through the agent
    assert a.stop() == 0
    assert not agent_has_table(topo) and not agent_has_vip(topo)


@DATAPLANES
def test_source_ip_affinity(topo, agent, dataplane):
    agent(affinity="source-ip", extra=("--dataplane", dataplane)).start()
    results = connect(topo, topo.client_addrs, n=5)
    per_client = {}
    for addr, server in results:
        per_client.setdefault(addr, set()).add(server)
    assert all(len(servers) == 1 for servers in per_client.values()), per_client
    assert len({next(iter(s)) for s in per_client.values()}) >= 2


def test_ipv6_vip(topo, agent):
    a = agent(ipv6=True).start()
    clients = [f"fd77::{addr.rsplit('.', 1)[1]}" for addr in topo.client_addrs]
    results = connect(topo, clients, n=3, vip=topo_mod.VIP6)
    assert all(not s.startswith("ERR") for _, s in results), results
    assert len({s for _, s in results}) >= 2
    status = a.status()
    v6 = next(v for v in status["vips"] if v["name"] == "web6")
    assert sum(s["packets"] for s in v6["servers"]) > 0 and v6["replies_seen"] == 0
    assert topo_mod.VIP6 in topo_mod.run("ip", "-o", "addr", "show", "dev", "eth0", ns=topo.agent).stdout
    assert a.stop() == 0
    assert topo_mod.VIP6 not in topo_mod.run("ip", "-o", "addr", "show", "dev", "eth0", ns=topo.agent).stdout


def test_sighup_applies_the_new_inventory(topo, agent):
    a = agent().start()
    with open(a.inv, "w") as handle:
        handle.write(topo.inventory_yaml(servers=[1, 2]))
    a.proc.send_signal(signal.SIGHUP)
    end = time.time() + 8
    while time.time() < end and len((a.state() or {"vips": [{"servers": [0, 0, 0]}]})["vips"][0]["servers"]) != 2:
        time.sleep(0.1)
    results = connect(topo, topo.client_addrs, n=4)
    assert {s for _, s in results} == {"rs1", "rs2"}, results
    assert agent_has_vip(topo) and a.proc.poll() is None


def assert_out_of_rotation(topo, a, server):
    """Once the agent marks `server` down, every connection still succeeds and none reaches it."""
    a.wait_health(server, up=False)
    results = connect(topo, topo.client_addrs, n=4)
    assert all(not s.startswith("ERR") for _, s in results), results
    assert server not in {s for _, s in results}


@DATAPLANES
def test_failed_server_is_skipped_then_returns(topo, agent, dataplane):
    a = agent(extra=("--dataplane", dataplane)).start()
    rs2 = topo.server(2)
    drop = "table inet agtdrop {\n chain c {\n  type filter hook input priority 0;\n  tcp dport 80 drop\n }\n}\n"
    topo_mod.run("nft", "-f", "-", ns=rs2, input=drop)
    try:
        assert_out_of_rotation(topo, a, "rs2")
    finally:
        topo_mod.run("nft", "delete", "table", "inet", "agtdrop", ns=rs2, check=False)
    a.wait_health("rs2", up=True)
    assert "rs2" in {s for _, s in connect(topo, topo.client_addrs, n=4)}


def test_dr_check_removes_a_server_that_only_answers_on_its_own_address(topo, agent):
    """The classic trap: the VIP is gone from rs2's lo, so a connect check to its own address still
    passes, but forwarded traffic would die. With --dr-check the agent takes rs2 out."""
    a = agent(extra=("--dr-check",)).start()
    rs2 = topo.server(2)
    a.wait_health("rs2", up=True)
    topo_mod.run("ip", "addr", "del", f"{topo_mod.VIP}/32", "dev", "lo", ns=rs2)
    try:
        assert_out_of_rotation(topo, a, "rs2")
    finally:
        topo_mod.run("ip", "addr", "add", f"{topo_mod.VIP}/32", "dev", "lo", ns=rs2, check=False)
    a.wait_health("rs2", up=True)


@DATAPLANES
def test_drain_keeps_open_connection(topo, agent, dataplane):
    a = agent(extra=("--dataplane", dataplane)).start()
    holder = r"""
import socket, sys, time
s = socket.socket(); s.bind(("10.77.0.3", 0)); s.settimeout(5); s.connect((sys.argv[1], 80))
f = s.makefile("rwb")
print(f.readline().decode().split()[0], flush=True)
sys.stdin.readline()                 # wait until the test drained that server
f.write(b"still-here\n"); f.flush()
print(f.readline().decode().split()[0], flush=True)
"""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", topo.client, sys.executable, "-c", holder, topo_mod.VIP],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline().strip()
        assert first.startswith("rs"), first
        # the open flow is pinned to its server, whichever data plane forwards it
        time.sleep(0.6)  # afpacket: the state file is rewritten on the next health round
        pinned = {s["name"]: s["pinned_flows"] for s in a.status()["vips"][0]["servers"]}
        assert pinned[first] >= 1, pinned
        a.cli("drain", first)
        end = time.time() + 5
        while time.time() < end and not next(s for s in a.state()["vips"][0]["servers"] if s["name"] == first)["drained"]:
            time.sleep(0.1)
        new = {s for _, s in connect(topo, topo.client_addrs, n=3)}
        assert first not in new and not any(s.startswith("ERR") for s in new), new
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == first  # the open flow stayed on its server
        a.cli("drain", first, "--undo")
    finally:
        proc.kill()
        proc.wait()


def test_refuses_vip_answered_by_another_mac(topo, agent):
    topo_mod.run("ip", "addr", "add", f"{topo_mod.VIP}/32", "dev", "eth0", ns=topo.client)
    try:
        a = agent().start(wait=False)
        assert a.proc.wait(timeout=15) != 0
        assert "refusing to claim" in a.output()
        assert not agent_has_table(topo) and not agent_has_vip(topo)
    finally:
        topo_mod.run("ip", "addr", "del", f"{topo_mod.VIP}/32", "dev", "eth0", ns=topo.client)


def test_probe_only_changes_nothing(topo, agent):
    a = agent(extra=["--probe-only"]).start(wait=False)
    assert a.proc.wait(timeout=15) == 0, a.output()
    assert "free" in a.output()
    assert not agent_has_table(topo) and not agent_has_vip(topo)


def test_sigterm_leaves_nothing_and_touches_no_other_table(topo, agent):
    foreign = "table inet agtforeign {\n chain c {\n  type filter hook input priority 0;\n  counter\n }\n}\n"
    topo_mod.run("nft", "-f", "-", ns=topo.agent, input=foreign)
    a = agent().start()
    assert agent_has_table(topo) and agent_has_vip(topo)
    second = agent().start(wait=False)  # one agent per namespace
    assert second.proc.wait(timeout=10) != 0 and "already running" in second.output()
    assert agent_has_table(topo) and a.proc.poll() is None
    pid = a.proc.pid
    assert a.stop() == 0
    assert not agent_has_table(topo) and not agent_has_vip(topo)
    assert topo_mod.run("nft", "list", "table", "inet", "agtforeign", ns=topo.agent, check=False).returncode == 0
    topo_mod.run("nft", "delete", "table", "inet", "agtforeign", ns=topo.agent)
    assert not os.path.exists(os.path.join(a.state_dir, "agent.json"))
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def slot_map(topo) -> dict[int, str]:
    listed = topo_mod.run("nft", "-j", "list", "map", "netdev", "arpfix_agent", "slots_0", ns=topo.agent)
    elements = next(x["map"] for x in json.loads(listed.stdout)["nftables"] if "map" in x).get("elem", [])
    return {slot: mac for slot, mac in elements}


def test_sigkill_then_start_recovers(topo, agent):
    a = agent().start()
    # a drain moves slots away from the table a fresh start would compute: the restart must keep them
    a.cli("drain", "rs2")
    end = time.time() + 5
    while time.time() < end and not next(s for s in a.state()["vips"][0]["servers"] if s["name"] == "rs2")["drained"]:
        time.sleep(0.1)
    before = slot_map(topo)
    assert topo.mac(topo.server(2)) not in before.values() and len(before) == SLOTS
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(timeout=5)
    assert agent_has_table(topo) and agent_has_vip(topo)  # the stale state a crash leaves
    a.start()
    assert "adopted stale VIP" in a.output() and "adopted stale nft table" in a.output()
    assert "slot table of VIP web: the same as the previous agent's" in a.output()
    assert slot_map(topo) == before  # no flow changes server across the crash and restart
    results = connect(topo, topo.client_addrs[:4], n=2)
    assert all(not s.startswith("ERR") and s != "rs2" for _, s in results), results
    a.cli("drain", "rs2", "--undo")
    assert a.stop() == 0
    assert not agent_has_table(topo) and not agent_has_vip(topo)


LOAD = r"""
import json, os, socket, sys, time
addrs, vip, stop = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
i = 0
while not os.path.exists(stop):
    a = addrs[i % len(addrs)]; i += 1
    s = socket.socket(); s.bind((a, 0)); s.settimeout(timeout)
    t = time.time()
    try:
        s.connect((vip, 80)); r = s.recv(200).decode().split()[0]
    except OSError as e:
        r = "ERR " + type(e).__name__
    finally:
        s.close()
    print(json.dumps([t, time.time(), a, r]), flush=True)
    time.sleep(0.01)
"""


def ruleset_problem(topo, macs):
    """None when the agent namespace holds exactly one complete agent table (or none), else what is wrong."""
    tables = topo_mod.run("nft", "list", "tables", "netdev", ns=topo.agent).stdout.split()
    ours = [t for t in tables if t.startswith("arpfix")]
    if not ours:
        return None
    if ours != ["arpfix_agent"]:
        return f"tables {ours}"
    listed = topo_mod.run("nft", "-j", "list", "table", "netdev", "arpfix_agent", ns=topo.agent, check=False)
    if listed.returncode != 0:
        # Removed between the two listings (the agent stopping): consistent, just gone.
        return None if "arpfix_agent" not in topo_mod.run("nft", "list", "tables", "netdev", ns=topo.agent).stdout \
            else f"table listed but unreadable: {listed.stderr.strip()}"
    listing = json.loads(listed.stdout)
    items = [next(iter(x.items())) for x in listing["nftables"] if "metainfo" not in x]
    chains = {v["name"] for k, v in items if k == "chain"}
    if not {"ingress", "vip_0", "out"} <= chains:
        return f"chains {sorted(chains)}"
    slots = next((v for k, v in items if k == "map" and v["name"] == "slots_0"), None)
    if slots is None:
        return "no slot map"
    targets = {e[1] for e in slots.get("elem", [])}
    if len(slots.get("elem", [])) != SLOTS or not targets <= macs:
        return f"slot map: {len(slots.get('elem', []))} slots to {sorted(targets)}"
    return None


def test_continuous_load_through_server_death_reload_and_restarts(topo, agent, tmp_path):
    """Issue 8's drill: connections run all the time while a server dies, the agent reloads a new
    inventory, is SIGKILLed and started again, and is stopped (SIGTERM) and started again."""
    a = agent().start()
    macs = {topo.mac(ns) for ns in topo.servers}
    stop = tmp_path / "stop"
    load = subprocess.Popen(["ip", "netns", "exec", topo.client, sys.executable, "-c", LOAD,
                             json.dumps(topo.client_addrs), topo_mod.VIP, str(stop)], stdout=subprocess.PIPE, text=True)
    samples, sampling = [], [True]

    def sample():
        # (start, end) of each observation: the agent may act between the two nft calls
        while sampling[0]:
            started = time.time()
            problem, present = ruleset_problem(topo, macs), agent_has_table(topo)
            samples.append(((started, time.time()), problem, present))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    events = {}
    rs3 = topo.server(3)
    try:
        time.sleep(1.5)
        events["rs3 dies"] = time.time()
        topo_mod.run("ip", "link", "set", "eth0", "down", ns=rs3)
        a.wait_health("rs3", up=False)
        events["rs3 marked down"] = time.time()
        time.sleep(1.5)
        with open(a.inv, "w") as handle:
            handle.write(topo.inventory_yaml(servers=[1, 2]))
        events["SIGHUP"] = time.time()
        a.proc.send_signal(signal.SIGHUP)
        end = time.time() + 8
        while time.time() < end and len(a.state()["vips"][0]["servers"]) != 2:
            time.sleep(0.05)
        time.sleep(1.5)
        events["SIGKILL"] = time.time()
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(timeout=5)
        time.sleep(1.0)
        a.start()
        events["restarted after SIGKILL"] = time.time()
        time.sleep(1.5)
        events["SIGTERM"] = time.time()
        assert a.stop() == 0
        a.start()
        events["restarted after SIGTERM"] = time.time()
        time.sleep(1.5)
    finally:
        stop.touch()
        out, _ = load.communicate(timeout=10)
        sampling[0] = False
        sampler.join()
        topo_mod.run("ip", "link", "set", "eth0", "up", ns=rs3)
    results = [json.loads(line) for line in out.splitlines()]
    dead_window = (events["rs3 dies"], events["rs3 marked down"] + 0.3)
    gap = (events["SIGTERM"], events["restarted after SIGTERM"] + 0.3)

    def inside(window, started, ended):
        return started < window[1] and ended > window[0]

    failures = [r for r in results if r[3].startswith("ERR")]
    unexplained = [r for r in failures if not inside(dead_window, r[0], r[1]) and not inside(gap, r[0], r[1])]
    in_dead = sum(1 for r in failures if inside(dead_window, r[0], r[1]))
    summary = (f"{len(results)} connections, {len(failures)} failed ({in_dead} while rs3 was dead and not yet "
               f"detected, {len(failures) - in_dead} in the SIGTERM restart gap); events "
               + ", ".join(f"{k} +{v - results[0][0]:.2f}s" for k, v in events.items()))
    print(summary)
    assert len(results) > 200, summary
    assert not unexplained, (summary, [(f"+{r[0] - results[0][0]:.2f}s", *r[1:]) for r in unexplained[:5]], a.output())
    assert not [r for r in results if r[3] == "rs3" and r[0] > events["rs3 marked down"] + 0.3], summary
    # SIGHUP and SIGKILL + start did not interrupt anything: successes on both sides of each event
    for event in ("SIGHUP", "SIGKILL", "restarted after SIGKILL"):
        around = [r for r in results if abs(r[0] - events[event]) < 1.0]
        assert around and all(not r[3].startswith("ERR") for r in around), (event, around)
    problems = [(t, p) for t, p, _ in samples if p]
    assert len(samples) > 50 and not problems, problems[:3]
    absent = [t for t, _, present in samples if not present]
    outside = [t for t in absent if not inside(gap, *t)]
    assert not outside, ("the table was missing outside the SIGTERM restart",
                         [f"+{t[0] - results[0][0]:.2f}s..+{t[1] - results[0][0]:.2f}s" for t in outside[:5]], summary)


def test_agent_on_the_shared_lab(lab, tmp_path):
    """The same agent against `arpfix lab` (tests/lab/conftest.py), servers prepared by hand here."""
    vip = lab.status["vip"]
    servers = [h["name"] for h in lab.hosts_by_role("real-server")]
    prepare = [["sysctl", "-qw", f"net.ipv4.conf.{dev}.{key}={value}"]
               for key, value in (("arp_ignore", 1), ("arp_announce", 2)) for dev in ("all", "eth0")]
    state = str(tmp_path / "agent-state")
    proc = None
    try:
        for name in servers:
            for cmd in prepare:
                lab.exec(name, cmd)
            lab.exec(name, ["ip", "addr", "add", f"{vip}/32", "dev", "lo"])
        argv = [sys.executable, "-m", "arpfix.cli", "agent", "run", "-i", lab.inventory_path, "--state-dir", state,
                "--interval", "0.3"]
        proc = subprocess.Popen(lab.exec_argv("agent") + argv, cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        end = time.time() + 20
        while time.time() < end:
            out = lab.exec("agent", [sys.executable, "-m", "arpfix.cli", "agent", "status", "--format", "json",
                                     "--state-dir", state], check=False, cwd=REPO)
            if out.returncode == 0 and all(s["up"] for s in json.loads(out.stdout)["vips"][0]["servers"]):
                break
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.2)
        client = lab.host("client")["address"]
        out = lab.exec("client", [sys.executable, "-c", CLIENT, json.dumps([client]), "12", "80", vip]).stdout
        answered = [server for _, server in json.loads(out)]
        assert all(not s.startswith("ERR") for s in answered), answered
        assert len(set(answered)) >= 2 and set(answered) <= set(servers)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert lab.exec("agent", ["nft", "list", "table", "netdev", "arpfix_agent"], check=False).returncode != 0
    finally:
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()
        for name in servers:
            lab.exec(name, ["ip", "addr", "del", f"{vip}/32", "dev", "lo"], check=False)
            for cmd in prepare:
                lab.exec(name, cmd[:-1] + [cmd[-1].rsplit("=", 1)[0] + "=0"], check=False)
