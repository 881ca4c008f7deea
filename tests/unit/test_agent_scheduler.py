"""The agent's slot scheduler: stable when servers come and go, proportional to weights."""

from __future__ import annotations

from collections import Counter

from arpfix.agent.scheduler import SLOTS, assign, moved, shares


def test_equal_weights_fill_every_slot_evenly():
    table = assign({"a": 1, "b": 1, "c": 1})
    assert len(table) == SLOTS and None not in table
    counts = Counter(table)
    assert max(counts.values()) - min(counts.values()) <= 1


def test_removing_a_server_frees_its_slots_and_keeps_most_others():
    before = assign({"a": 1, "b": 1, "c": 1})
    after = assign({"a": 1, "b": 1})
    assert "c" not in after
    kept = sum(1 for old, new in zip(before, after) if old != "c" and new == old)
    assert kept >= 0.95 * sum(1 for old in before if old != "c")


def test_adding_a_server_takes_about_its_share():
    before = assign({"a": 1, "b": 1})
    after = assign({"a": 1, "b": 1, "c": 1})
    counts = Counter(after)
    assert abs(counts["c"] - SLOTS / 3) <= 1
    assert moved(before, after) <= 1.1 * counts["c"]


def test_server_back_after_failure_restores_the_table():
    first = assign({"a": 1, "b": 1, "c": 1})
    assign({"a": 1, "b": 1})
    assert assign({"a": 1, "b": 1, "c": 1}) == first


def test_weights_are_proportional():
    counts = Counter(assign({"a": 3, "b": 1}))
    assert counts == {"a": 3070, "b": 1023}
    assert sum(shares({"a": 1, "b": 1, "c": 1}).values()) == SLOTS


def test_weight_zero_and_no_servers():
    assert "b" not in assign({"a": 1, "b": 0})
    assert assign({}) == [None] * SLOTS


def test_deterministic():
    assert assign({"x": 2, "y": 5, "z": 1}) == assign({"z": 1, "y": 5, "x": 2})


def _config():
    import ipaddress

    from arpfix.agent.config import AgentConfig, RealServer, VipConfig
    from arpfix.settings import Service

    servers = {f"rs{i}": RealServer(f"rs{i}", ipaddress.ip_address(f"10.0.0.1{i}"), f"02:00:00:00:00:1{i}")
               for i in (1, 2)}
    servers["rs3"] = RealServer("rs3", ipaddress.ip_address("10.0.0.13"), None)  # did not answer ARP
    vip = VipConfig("web", ipaddress.ip_address("10.0.0.250"), (Service("tcp", 80), Service("udp", 53)),
                    ("rs1", "rs2", "rs3"), "source-ip")
    return AgentConfig("agent", "eth0", ipaddress.ip_address("10.0.0.2"), (vip,), servers)


def test_slot_table_reaches_the_ruleset():
    from arpfix.agent import nft

    config = _config()
    table = assign({"rs1": 1, "rs2": 1})
    text = nft.render(config, "02:00:00:00:00:02", {"web": table})
    assert text.startswith("# arpfix agent") and "delete table netdev arpfix_agent" in text
    assert f"0 : {config.servers[table[0]].mac}" in text
    assert f"seed {nft.SEED}" in text and f"jhash ip saddr mod {SLOTS}" in text  # source-ip affinity
    assert "meta l4proto . th dport { tcp . 80, udp . 53 }" in text
    # only frames addressed to the agent: flooded unicast (a pair's backup) is not forwarded twice
    assert "ether daddr 02:00:00:00:00:02 ip daddr 10.0.0.250 meta l4proto" in text
    # path-MTU errors: the embedded client address (source-ip affinity: alone) hashed like the flow
    assert ("icmp code frag-needed ip hdrlength 5 @nh,224,8 0x45 @nh,320,32 0x0a0000fa jump icmp_0" in text
            and "ether daddr set jhash @nh,352,32 mod 4093 seed" in text)
    assert "02:00:00:00:00:13" not in text and "rs3" not in text  # never forward to an unresolved MAC
    update = nft.render_update(config, {"web": assign({"rs1": 1})}, {"web": ["rs2"]})
    assert update.splitlines()[0] == "flush map netdev arpfix_agent slots_0"
    assert "02:00:00:00:00:12" not in update and "flush set netdev arpfix_agent pin_0_1" in update
