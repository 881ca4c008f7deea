"""`arpfix agent status`: the running agent's state file joined with the live nft counters."""

from __future__ import annotations

import json
import os
from typing import Any

from arpfix.agent import nft
from arpfix.agent.runner import pid_alive, read_json
from arpfix.errors import ArpfixError


def collect(state_file: str) -> dict[str, Any]:
    state = read_json(state_file)
    if not state or not state.get("vips"):
        raise ArpfixError(f"no running agent (no state in {state_file})")
    pid = int(state.get("pid", 0))
    state["running"] = bool(pid) and pid_alive(pid)
    counters = nft.counters() if state.get("dataplane") == "nft" else {}
    af = state.get("afpacket_counters", {})
    for index, vip in enumerate(state["vips"]):
        vip["replies_seen"] = counters.get(f"replies_{index}", {}).get("packets", 0)
        vip["local"] = counters.get(f"local_{index}", {}).get("packets", 0)
        vip["icmp_forwarded"] = (counters.get(f"icmp_{index}", {}) if state.get("dataplane") == "nft"
                                 else af.get(f"icmp/{index}", {})).get("packets", 0)
        for server in vip["servers"]:
            if state.get("dataplane") == "nft":
                c = counters.get(f"fwd_{index}_{server['index']}", {})
                server["pinned_flows"] = nft.pinned(index, server["index"])
            else:
                c = af.get(f"{server['name']}/{index}", {})
            server["packets"] = c.get("packets", 0)
            server["bytes"] = c.get("bytes", 0)
    return state


def render(state: dict[str, Any], fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps(state, indent=2, sort_keys=True)
    from tabulate import tabulate

    head = (f"agent {state.get('agent')} pid {state.get('pid')} "
            f"({'running' if state.get('running') else 'NOT running'}), {state.get('dataplane')} data plane "
            f"on {state.get('interface')} [{state.get('agent_mac')}]")
    pair = state.get("pair")
    if pair:
        head += (f"\npair: {pair['role']} (keepalived, VRRP id {pair['vrrp_id']}, priority {pair['priority']}),"
                 f" peer {pair['peer']} {pair['peer_address']}")
    parts = [head]
    for vip in state["vips"]:
        rows = []
        for s in vip["servers"]:
            health = "drained" if s["drained"] and s["up"] else ("up" if s["up"] else "down")
            rows.append([s["name"], s["address"], s["mac"] or "-", health, s["weight"], s["slots"],
                         s.get("pinned_flows", "-"), s["packets"], s["bytes"]])
        parts.append(f"\nVIP {vip['name']} {vip['address']} ({', '.join(vip['services'])}; affinity {vip['affinity']})"
                     f"  replies seen by the agent: {vip['replies_seen']}  path-MTU errors forwarded: "
                     f"{vip['icmp_forwarded']}  slot table {vip.get('slot_digest', '-')}")
        parts.append(tabulate(rows, headers=["server", "address", "mac", "health", "weight", "slots", "pinned",
                                             "packets", "bytes"]))
    return "\n".join(parts)


def state_path(state_dir: str) -> str:
    return os.path.join(state_dir, "agent.json")
