"""The nftables data plane: render the agent's one netdev table, load it atomically, read it back.

Everything the agent installs lives in `table netdev arpfix_agent`; no other table is read or
written. A full load is `add table` + `delete table` + the new table in one `nft -f -` batch, so
the kernel holds either the old ruleset or the new one, never a mix. Health and drain changes
only rewrite the slot maps (and empty the pin set of a failed server) in one batch, so the pin
sets (open flows) survive them. nft 1.0.6's JSON output does not round-trip: we load text and
only read JSON.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
from collections.abc import Sequence

from arpfix.agent.config import IFNAME, MAC, AgentConfig, VipConfig
from arpfix.agent.scheduler import SLOTS
from arpfix.errors import ArpfixError

TABLE = "arpfix_agent"
SEED = "0x61727066"  # fixed: the same flow hashes to the same slot across reloads
PIN_TIMEOUT = 600


def _slot_elements(table: Sequence[str | None], macs: dict[str, str]) -> list[str]:
    return [f"{i} : {macs[name]}" for i, name in enumerate(table) if name is not None and name in macs]


def render(config: AgentConfig, agent_mac: str, tables: dict[str, list[str | None]], mode: str = "nft") -> str:
    """The full ruleset text. `tables` maps VIP name -> its slot table (server names)."""
    from arpfix.templating import render as render_template

    if not IFNAME.match(config.interface) or not MAC.match(agent_mac):
        raise ArpfixError(f"refusing to render: bad interface {config.interface!r} or MAC {agent_mac!r}")
    vips = []
    for index, vip in enumerate(config.vips):
        ipaddress.ip_address(vip.address)
        servers = []
        macs = {}
        for sindex, name in enumerate(vip.servers):
            mac = config.servers[name].mac
            if mac is None or not MAC.match(mac):
                continue  # never forward to a MAC we did not resolve
            macs[name] = mac
            servers.append({"id": sindex, "name": name, "mac": mac})
        v4 = vip.family == 4
        l3 = "ip" if v4 else "ip6"
        addr_type = "ipv4_addr" if v4 else "ipv6_addr"
        if vip.affinity == "source-ip":
            key, pin_type, hashed = f"{l3} saddr", addr_type, f"{l3} saddr"
        else:
            key = f"{l3} saddr . th sport . th dport"
            pin_type = f"{addr_type} . inet_service . inet_service"
            hashed = f"{l3} saddr . th sport"
        icmp_match, icmp_hash = _icmp(vip)
        services = [{"label": str(s), "element": f"{s.protocol} . {int(s.port)}"} for s in vip.services
                    if s.protocol in ("tcp", "udp")]
        vips.append({
            "id": index, "name": vip.name, "address": str(vip.address), "l3": l3, "affinity": vip.affinity,
            "services": services, "servers": servers, "key": key, "pin_type": pin_type, "hash": hashed,
            "slots": _slot_elements(tables.get(vip.name, []), macs), "icmp_match": icmp_match, "icmp_hash": icmp_hash,
        })
    return render_template("agent/dataplane.nft.j2", table=TABLE, device=config.interface, agent_mac=agent_mac,
                           seed=SEED, slots=SLOTS, vips=vips, mode=mode, pin_timeout=PIN_TIMEOUT)


def _icmp(vip: VipConfig) -> tuple[str, str]:
    """(match, hash key) for the path-MTU errors about this VIP's flows, as raw payload offsets from
    the outer network header (bits): outer IPv4 header without options (20 bytes) or IPv6 without
    extension headers (40), the ICMP header (8), then the embedded header of the server's packet
    VIP -> client. The key is the client's address and port there, i.e. `saddr . th sport` (or
    `saddr`) of the client's own packets, hashed with the same seed into the same slot."""
    packed = "0x" + ipaddress.ip_address(vip.address).packed.hex()
    if vip.family == 4:
        # inner: version/IHL at byte 28 (a plain 20-byte header), saddr 40, daddr 44, dport 50
        match = (f"ip protocol icmp icmp type destination-unreachable icmp code frag-needed ip hdrlength 5 "
                 f"@nh,224,8 0x45 @nh,320,32 {packed}")
        client, port = "@nh,352,32", "@nh,400,16"
    else:
        # inner IPv6 at byte 48: saddr 56, daddr 72, L4 at 88 (dport 90)
        match = f"ip6 nexthdr ipv6-icmp icmpv6 type packet-too-big @nh,448,128 {packed}"
        client, port = "@nh,576,128", "@nh,720,16"
    return match, client if vip.affinity == "source-ip" else f"{client} . {port}"


def render_update(config: AgentConfig, tables: dict[str, list[str | None]], flush: dict[str, list[str]]) -> str:
    """A batch that swaps the slot maps and empties the pin sets of servers in `flush`."""
    lines = []
    for index, vip in enumerate(config.vips):
        macs = {n: config.servers[n].mac for n in vip.servers if config.servers[n].mac}
        lines.append(f"flush map netdev {TABLE} slots_{index}")
        elements = _slot_elements(tables.get(vip.name, []), macs)  # type: ignore[arg-type]
        if elements:
            lines.append(f"add element netdev {TABLE} slots_{index} {{ {', '.join(elements)} }}")
        for name in flush.get(vip.name, []):
            if name in macs:
                lines.append(f"flush set netdev {TABLE} pin_{index}_{vip.servers.index(name)}")
    return "\n".join(lines) + "\n"


def load(text: str, *, check_only: bool = False) -> None:
    """Apply a batch in one transaction (check_only: the kernel validates it and nothing changes)."""
    result = subprocess.run(["nft", *(["--check"] if check_only else []), "-f", "-"], input=text,
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        first = (result.stderr.strip().splitlines() or ["nft failed"])[0]
        raise ArpfixError(f"nft refused the agent's ruleset: {first}")


def exists() -> bool:
    return subprocess.run(["nft", "list", "table", "netdev", TABLE], capture_output=True, check=False).returncode == 0


def delete() -> bool:
    """Remove the agent's table if present; True when something was removed."""
    if not exists():
        return False
    subprocess.run(["nft", "delete", "table", "netdev", TABLE], capture_output=True, check=False)
    return True


def counters() -> dict[str, dict[str, int]]:
    """Named counters of the agent's table: {name: {packets, bytes}} ({} when not loaded)."""
    result = subprocess.run(["nft", "-j", "list", "table", "netdev", TABLE], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return {}
    found = {}
    for item in json.loads(result.stdout).get("nftables", []):
        counter = item.get("counter")
        if counter and "name" in counter:
            found[counter["name"]] = {"packets": int(counter.get("packets", 0)), "bytes": int(counter.get("bytes", 0))}
    return found


def pinned(vip_index: int, server_index: int) -> int:
    """How many flows are pinned to a server (elements of its pin set)."""
    result = subprocess.run(["nft", "-j", "list", "set", "netdev", TABLE, f"pin_{vip_index}_{server_index}"],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return 0
    for item in json.loads(result.stdout).get("nftables", []):
        if "set" in item:
            return len(item["set"].get("elem", []))
    return 0


COUNTER_NAME = re.compile(r"\Afwd_(\d+)_(\d+)\Z")
