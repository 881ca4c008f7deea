# The code is the action plugin of the same name (plugins/action/prepare.py); this file documents it.

DOCUMENTATION = r"""
module: prepare
short_description: Prepare a real server for Layer 4 Direct Routing (arpfix apply)
description:
  - Runs arpfix's planner on the host's facts and applies the plan in one journaled script
    (arpfix apply), over the task's Ansible connection.
  - Check mode is arpfix plan, which reports C(changed) when apply would change something, and changes nothing.
  - Diff mode shows each change from -> to.
  - C(changed) only when something changed; a second run reports C(changed=false).
  - Fails with arpfix's one-line reason when the plan is blocked, a script fails or the host cannot be reached.
version_added: 0.1.0
extends_documentation_fragment: [arpfix.dr.target]

attributes:
  check_mode: {support: full}
  diff_mode: {support: full}
"""

EXAMPLES = r"""
- name: Prepare the ShareScan servers (arguments in the task)
  arpfix.dr.prepare:
    vips:
      - name: sharescan
        address: 192.0.2.100
        services:
          - {protocol: tcp, port: 443}
          - {protocol: tcp, port: 80}
    method: loopback

- name: Prepare from an arpfix inventory file
  arpfix.dr.prepare:
    inventory: inventory/sharescan.yml
"""

RETURN = r"""
status:
  description: arpfix's status for the host (ok, changed, pending, blocked, failed, partial, error).
  returned: always
  type: str
arpfix:
  description: arpfix's JSON for the host (changes with from/to, applied journal entries, error).
  returned: always
  type: dict
"""
