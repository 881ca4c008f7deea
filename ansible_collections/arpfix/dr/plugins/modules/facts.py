# The code is the action plugin of the same name (plugins/action/facts.py); this file documents it.

DOCUMENTATION = r"""
module: facts
short_description: Read a server's state (arpfix facts)
description:
  - The read-only facts arpfix plans from, as C(ansible_facts.arpfix).
  - Also keeps the facts script's document as C(ansible_facts.arpfix_document), which arpfix.dr.verify reads.
version_added: 0.1.0
extends_documentation_fragment: [arpfix.dr.target]

attributes:
  check_mode: {support: full}
  diff_mode: {support: none}
"""

EXAMPLES = r"""
- arpfix.dr.facts:
    inventory: inventory/sharescan.yml
"""

RETURN = r"""
ansible_facts:
  description: arpfix (the parsed facts) and arpfix_document (the raw document).
  returned: success
  type: dict
"""
