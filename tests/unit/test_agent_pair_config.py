"""The pair's inventory section and the keepalived files arpfix renders for each node."""

from __future__ import annotations

import subprocess

import pytest

from arpfix.agent import config as cfg
from arpfix.agent import keepalived
from arpfix.errors import UsageError
from arpfix.inventory import load_inventory

PAIR = """
hosts:
  lb1: {platform: linux, address: 10.9.0.2}
  lb2: {platform: linux, address: 10.9.0.3}
  rs1: {platform: linux, address: 10.9.0.11}
  rs2: {platform: linux, address: 10.9.0.12}
vips:
  - {name: web, address: 10.9.0.250, services: [{protocol: tcp, port: 80}], real_servers: [rs1, rs2]}
  - {name: web6, address: 'fd09::250', services: [{protocol: tcp, port: 80}], real_servers: [rs1, rs2]}
agent: AGENT
"""


def inventory(tmp_path, agent="{hosts: [lb1, lb2], interface: eth0, vrrp_id: 42}"):
    path = tmp_path / "inv.yaml"
    path.write_text(PAIR.replace("AGENT", agent))
    return load_inventory(str(path))


def test_pair_section(tmp_path):
    inv = inventory(tmp_path)
    assert inv.agent.host == "lb1" and inv.agent.hosts == ("lb1", "lb2") and inv.agent.vrrp_id == 42
    one = cfg.build(inv, "lb1")
    two = cfg.build(inv, local_interfaces={"eth0": ["10.9.0.3"]})  # which node: the local address says
    assert (one.agent, one.peer, str(one.peer_address), one.priority) == ("lb1", "lb2", "10.9.0.3", 150)
    assert (two.agent, two.peer, str(two.peer_address), two.priority) == ("lb2", "lb1", "10.9.0.2", 100)
    assert set(one.servers) == {"rs1", "rs2"}
    single = cfg.build(inventory(tmp_path, "{host: lb1, interface: eth0}"))
    assert single.peer is None and inventory(tmp_path, "{host: lb1}").agent.hosts == ("lb1",)


@pytest.mark.parametrize("agent, message", [
    ("{hosts: [lb1]}", "exactly two"),
    ("{hosts: [lb1, lb1]}", "two different"),
    ("{hosts: [lb1, nope]}", "unknown host"),
    ("{host: lb1, hosts: [lb1, lb2]}", "not both"),
    ("{hosts: [lb1, lb2], vrrp_id: 300}", "255"),
    ("{hosts: [lb1, lb2], vrrp_id: 1.5}", "whole number"),
])
def test_pair_section_errors(tmp_path, agent, message):
    from arpfix.inventory import InventoryError

    with pytest.raises(InventoryError) as caught:
        inventory(tmp_path, agent)
    assert message in str(caught.value)


def test_which_node_cannot_be_guessed(tmp_path):
    with pytest.raises(UsageError, match="give --agent"):
        cfg.build(inventory(tmp_path), local_interfaces={"eth0": ["10.9.0.99"]})


def test_keepalived_files(tmp_path):
    config = cfg.build(inventory(tmp_path), "lb2")
    files = keepalived.files(config, "/run/arpfix-agent", advert_int=0.3, garp_refresh=5)
    conf = files["keepalived.conf"]
    assert "virtual_router_id 42" in conf and "priority 100" in conf and "version 3" in conf
    assert "unicast_src_ip 10.9.0.3" in conf and "\t\t10.9.0.2\n" in conf  # the peer
    assert "10.9.0.250/32 dev eth0 label eth0:afx" in conf.split("virtual_ipaddress {")[1].split("}")[0]
    assert "fd09::250/128 dev eth0" in conf.split("virtual_ipaddress_excluded {")[1]  # other family
    assert "vrrp_garp_master_refresh 5" in conf and "nopreempt" in conf and "enable_script_security" in conf
    assert 'script "/bin/sh /run/arpfix-agent/check.sh"' in conf
    assert "dir='/run/arpfix-agent'" in files["check.sh"] and "nft list chain netdev arpfix_agent" in files["check.sh"]
    for name in ("check.sh", "notify.sh"):
        assert subprocess.run(["sh", "-n"], input=files[name], text=True).returncode == 0
    for bad in ("/tmp/with space", "/run/x\n", "run/relative", "/run/../etc"):
        with pytest.raises(UsageError, match="absolute path"):
            keepalived.files(config, bad)
    from dataclasses import replace

    with pytest.raises(UsageError, match="interface"):
        keepalived.files(replace(config, interface="eth0\n"), "/run/x")
    with pytest.raises(UsageError, match="not a pair"):
        keepalived.files(cfg.build(inventory(tmp_path, "{host: lb1, interface: eth0}")), "/run/x")


def test_notify_and_check_scripts(tmp_path):
    """The scripts as keepalived runs them: notify records the role; check passes only for a live
    agent with a fresh heartbeat (the nft part fails here: no agent table in this namespace)."""
    config = cfg.build(inventory(tmp_path), "lb1")
    keepalived.write(config, str(tmp_path))
    subprocess.run(["sh", str(tmp_path / "notify.sh"), "INSTANCE", "arpfix_42", "MASTER", "150"], check=True)
    assert keepalived.role(str(tmp_path))[0] == "MASTER"
    assert subprocess.run(["sh", str(tmp_path / "check.sh")]).returncode == 1  # no heartbeat
    (tmp_path / "ready").write_text("999999999 0 nft\n")
    assert subprocess.run(["sh", str(tmp_path / "check.sh")]).returncode == 1  # dead pid, stale


def test_systemd_drop_in_runs_keepalived_on_the_files_of_the_default_state_dir():
    from arpfix.agent.runner import DEFAULT_STATE_DIR
    from arpfix.templating import data_dir

    text = (data_dir("templates") / "agent" / "keepalived-arpfix.conf").read_text()
    assert f"-f {DEFAULT_STATE_DIR}/keepalived.conf" in text and "ConditionFileNotEmpty=\n" in text
    assert "ExecStartPre=/usr/bin/env arpfix agent keepalived -i /etc/arpfix/inventory.yaml" in text
