"""Linux real servers, one module per phase of the data flow:

facts (the facts script's JSON, normalised) -> desired (what the inventory asks for) -> plan
(desired + what arpfix owns -> changes, each with its primitive) -> the one apply script; audit
(the same comparison, as findings); ownership (the journal folded per resource) -> rollback.
"""

from __future__ import annotations

import os
import re
from typing import Any

from arpfix import __version__
from arpfix.model import Change, Finding
from arpfix.platforms.linux.audit import audit
from arpfix.platforms.linux.common import BLOCK_BEGIN, Step
from arpfix.platforms.linux.desired import desired_state, ifcfg_lo_with_vips, nm_keyfile
from arpfix.platforms.linux.facts import nic_for, parse_facts, parse_sysctl_files, persisted_sysctls
from arpfix.platforms.linux.harm import arp_scope, detect_cloud
from arpfix.platforms.linux.plan import plan_steps
from arpfix.platforms.linux.rollback import rollback_steps
from arpfix.settings import Host, Inventory
from arpfix.templating import render, render_cached

__all__ = [
    "BLOCK_BEGIN", "LinuxPlatform", "Step", "audit", "desired_state", "ifcfg_lo_with_vips", "nic_for", "nm_keyfile",
    "parse_facts", "parse_sysctl_files", "persisted_sysctls", "plan_steps", "rollback_steps",
]


def _step_delay() -> str:
    """ARPFIX_STEP_DELAY=SECONDS: pause between remote steps (slow motion, for fault drills)."""
    value = os.environ.get("ARPFIX_STEP_DELAY", "")
    return value if re.fullmatch(r"\d{1,2}(\.\d{1,3})?", value) else ""


class LinuxPlatform:
    name = "linux"

    def facts_script(self, host: Host, inventory: Inventory) -> str:
        lb = inventory.load_balancer if inventory is not None else None
        return render_cached("linux/facts.sh.j2", embedded=False, lb_addresses=lb.addresses if lb else ())

    def parse_facts(self, raw: dict[str, Any]) -> dict[str, Any]:
        return parse_facts(raw)

    def annotate(self, facts: dict[str, Any], host: Host) -> dict[str, Any]:
        """Facts as `arpfix facts` shows them: the primary NIC found by address, as plan finds it."""
        nic = nic_for(facts, host)
        return {**facts, "primary_nic": {"name": nic, "from": "inventory nic" if host.nic else "address"} if nic else {}}

    def notes(self, facts: dict[str, Any], host: Host, inventory: Inventory) -> list[str]:
        """Why the plan looks the way it does, where that is not obvious (shown beside plan and apply)."""
        if not inventory.vips_for(host.name):
            return []
        out = []
        scope, why = arp_scope(facts, host)
        if why and scope == "nic":
            out.append(why)
        cloud, evidence = detect_cloud(facts, host)
        if cloud in ("gcp", "azure"):
            out.append(f"{'Google Cloud' if cloud == 'gcp' else 'Azure'} detected ({evidence}): see the audit's cloud warning")
        return out

    def plan(self, facts: dict[str, Any], host: Host, inventory: Inventory) -> list[Change]:
        return [change for change, _ in plan_steps(facts, host, inventory)]

    def audit(self, facts: dict[str, Any], host: Host, inventory: Inventory) -> list[Finding]:
        return audit(facts, host, inventory)

    def apply_script(self, facts: dict[str, Any], host: Host, inventory: Inventory, changes: list[Change]) -> str:
        pairs = plan_steps(facts, host, inventory)
        blocked = [c for c, step in pairs if step is None]
        if blocked:
            from arpfix.errors import TransportError

            raise TransportError(f"{host.name}: {blocked[0].subject}: {blocked[0].detail}")
        wanted = set(changes)
        steps = [step for change, step in pairs if change in wanted and step is not None]
        return render("linux/apply.sh.j2", steps=steps, version=__version__, lock_wait=30, step_delay=_step_delay())

    def rollback_plan(self, facts: dict[str, Any], host: Host) -> list[Change]:
        return [change for change, _ in rollback_steps(facts)]

    def rollback_script(self, facts: dict[str, Any], host: Host, changes: list[Change]) -> str:
        steps = [step for _, step in rollback_steps(facts) if step is not None]
        return render("linux/rollback.sh.j2", steps=steps, version=__version__, lock_wait=30,
                      step_delay=_step_delay())
