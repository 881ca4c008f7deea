# The code is the action plugin of the same name (plugins/action/rollback.py); this file documents it.

DOCUMENTATION = r"""
module: rollback
short_description: Roll back what arpfix recorded on a server (arpfix rollback)
description:
  - Restores what the host's arpfix journal records, where it is still arpfix's (arpfix rollback).
  - Check mode is rollback --dry-run. A value changed by someone since arpfix set it is left as it is, with a warning.
version_added: 0.1.0
extends_documentation_fragment: [arpfix.dr.target]

attributes:
  check_mode: {support: full}
  diff_mode: {support: full}
"""

EXAMPLES = r"""
- name: Undo arpfix's changes
  arpfix.dr.rollback:
    inventory: inventory/sharescan.yml
"""

RETURN = r"""
status:
  description: ok (nothing recorded), pending (check mode), changed, kept (something left as it is now).
  returned: always
  type: str
"""
