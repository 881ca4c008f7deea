"""Both nodes of an agent pair are the agent: plan, apply, audit and rollback leave them out, as
they leave out a single agent host (they prepare themselves)."""

from __future__ import annotations

from arpfix.cli import hosts_for_change
from arpfix.inventory import load_inventory

INVENTORY = """
hosts:
  rs1: {platform: linux, address: 10.9.0.11}
  lb1: {platform: linux, address: 10.9.0.2}
  lb2: {platform: linux, address: 10.9.0.3}
vips:
  - {name: web, address: 10.9.0.250, services: [{port: 80}], real_servers: [rs1]}
agent: {hosts: [lb1, lb2], interface: eth0}
"""


def test_both_nodes_of_a_pair_are_left_out(tmp_path):
    path = tmp_path / "inventory.yml"
    path.write_text(INVENTORY)
    inventory = load_inventory(str(path))
    assert [h.name for h in hosts_for_change(inventory, list(inventory.hosts.values()))] == ["rs1"]
