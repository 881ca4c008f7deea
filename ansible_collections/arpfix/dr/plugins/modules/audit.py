# The code is the action plugin of the same name (plugins/action/audit.py); this file documents it.

DOCUMENTATION = r"""
module: audit
short_description: Audit a real server (arpfix audit)
description:
  - Checks runtime and on-disk state against the VIPs (arpfix audit); changes nothing.
  - Fails the task on drift unless O(fail_on_drift=false).
version_added: 0.1.0
extends_documentation_fragment: [arpfix.dr.target]
options:
  fail_on_drift:
    description: Fail the task when a check finds error-level drift.
    type: bool
    default: true
attributes:
  check_mode: {support: full}
  diff_mode: {support: none}
"""

EXAMPLES = r"""
- name: Audit; report drift without failing
  arpfix.dr.audit:
    inventory: inventory/sharescan.yml
    fail_on_drift: false
  register: audit

- ansible.builtin.debug:
    var: audit.drift
"""

RETURN = r"""
compliant:
  description: True when no error-level check failed.
  returned: success
  type: bool
findings:
  description: Every check, with check, ok, expected, actual, detail, source and severity.
  returned: success
  type: list
  elements: dict
drift:
  description: The names of the failing checks.
  returned: success
  type: list
  elements: str
"""
