# The code is the action plugin of the same name (plugins/action/verify.py); this file documents it.

DOCUMENTATION = r"""
module: verify
short_description: Verify the pool from the servers' segment (arpfix verify)
description:
  - Audits every server from the facts arpfix.dr.facts read earlier in the play and probes ARP and
    the DR path from the inventory's agent host, over that host's connection; run it once with
    C(delegate_to) the agent host and C(run_once).
  - Needs O(inventory), an arpfix inventory file with an C(agent) section.
version_added: 0.1.0
extends_documentation_fragment: [arpfix.dr.target]
options:
  servers:
    description: The servers to verify. Default is every real server of the inventory in the play.
    type: list
    elements: str
  load_balancer:
    description:
      - The load balancer whose MACs may answer ARP for the VIPs, as in an arpfix inventory
        (C(name), C(macs)). With O(inventory), the file's C(load_balancer) is used.
    type: dict
  end_to_end:
    description: Also open TCP connections to each VIP service from the agent host.
    type: bool
    default: false
attributes:
  check_mode: {support: full}
  diff_mode: {support: none}
"""

EXAMPLES = r"""
- arpfix.dr.facts:
    inventory: inventory/sharescan.yml
- arpfix.dr.verify:
    inventory: inventory/sharescan.yml
  delegate_to: probe01
  run_once: true
"""

RETURN = r"""
verify:
  description: arpfix verify's JSON (hosts with their probes, the segment's ARP replies).
  returned: always
  type: dict
"""
