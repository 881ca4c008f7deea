"""Path MTU through the agent (issue 18): a router with a smaller MTU between the segment and the
client sends "fragmentation needed" to the VIP; the agent forwards it to the server that owns the
embedded flow, and a large response completes. Without that forwarding it stalls (shown by emptying
the agent's ICMP chain in the running table: the error then dies in the agent's own kernel)."""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import agent_topology as topo_mod
from test_agent import AgentProc

pytestmark = pytest.mark.lab
REASON = topo_mod.can_run()
if REASON:
    pytestmark = [pytest.mark.lab, pytest.mark.skip(reason=f"agent lab: {REASON}")]

# n connections from the far client, each sends a 40 kB line and waits for the echo (40 kB back
# from the server, in full-size segments); prints [server or ERR, bytes received] per connection.
BIG = r"""
import json, socket, sys
vip, n, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
line = b"x" * 40000 + b"\n"
out = []
for _ in range(n):
    s = socket.socket(socket.AF_INET6 if ":" in vip else socket.AF_INET); s.settimeout(timeout)
    got = b""
    try:
        s.connect((vip, 80)); f = s.makefile("rwb")
        name = f.readline().decode().split()[0]
        f.write(line); f.flush()
        while not got.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        out.append([name if got.endswith(b"\n") else "ERR short", len(got)])
    except OSError as e:
        out.append(["ERR " + type(e).__name__, len(got)])
    finally:
        s.close()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def routed(tmp_path_factory):
    topo = topo_mod.Topology(n_servers=3, n_client_addrs=1).build()
    try:
        far = topo.add_routed_client(mtu=1400)
        yield topo, far
    finally:
        topo.teardown()


def big_transfers(topo, far, n, timeout, vip=topo_mod.VIP):
    for ns in topo.servers:  # forget path MTUs learnt by an earlier run
        topo_mod.run("ip", "route", "flush", "cache", ns=ns, check=False)
        topo_mod.run("ip", "-6", "route", "flush", "cache", ns=ns, check=False)
    out = topo_mod.run(sys.executable, "-c", BIG, vip, str(n), str(timeout), ns=far).stdout
    return json.loads(out)


@pytest.mark.parametrize("dataplane", ["nft", "afpacket"])
def test_large_responses_complete_behind_a_smaller_mtu(routed, tmp_path, dataplane):
    topo, far = routed
    agent = AgentProc(topo, tmp_path, extra=("--dataplane", dataplane), ipv6=True).start()
    try:
        # 12 flows over 3 servers: all on one server by chance is 3 * (1/3)**12, about 6 in a million
        # (with 6 flows it was 0.4 % per check, and CI met it once)
        results = big_transfers(topo, far, 12, 5.0)
        print(f"{dataplane}, with ICMP forwarding: {results}")
        assert all(not r[0].startswith("ERR") and r[1] > 40000 for r in results), results
        assert len({r[0] for r in results}) >= 2  # several servers: each got its own flows' errors
        results6 = big_transfers(topo, far, 12, 5.0, vip=topo_mod.VIP6)
        print(f"{dataplane}, IPv6 with packet-too-big forwarding: {results6}")
        assert all(not r[0].startswith("ERR") and r[1] > 40000 for r in results6), results6
        assert len({r[0] for r in results6}) >= 2
        # At least one error per server reached (a server then knows the path MTU to the client)
        need = [len({r[0] for r in results}), len({r[0] for r in results6})]
        end = time.time() + 3  # afpacket's counters reach the state file on the next round
        while [v["icmp_forwarded"] for v in agent.status()["vips"]] < need and time.time() < end:
            time.sleep(0.2)
        status = agent.status()
        got = [v["icmp_forwarded"] for v in status["vips"]]
        assert got[0] >= need[0] and got[1] >= need[1], (got, need)
        assert status["vips"][0]["replies_seen"] == 0
        if dataplane == "nft":
            # The same data plane without the ICMP forwarding: the errors die in the agent's kernel
            topo_mod.run("nft", "flush", "chain", "netdev", "arpfix_agent", "icmp_0", ns=topo.agent)
            topo_mod.run("nft", "flush", "chain", "netdev", "arpfix_agent", "icmp_1", ns=topo.agent)
            stalled = big_transfers(topo, far, 2, 3.0) + big_transfers(topo, far, 2, 3.0, vip=topo_mod.VIP6)
            print(f"nft, without: {stalled}")
            assert all(r[0].startswith("ERR") for r in stalled), stalled
    finally:
        assert agent.stop() == 0
    assert topo_mod.run("nft", "list", "table", "netdev", "arpfix_agent", ns=topo.agent, check=False).returncode != 0
