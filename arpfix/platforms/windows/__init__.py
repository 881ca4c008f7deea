"""Windows Server real servers (2012 R2 .. 2025) over WinRM.

Split by phase: `facts` (normalising Windows PowerShell 5.1 JSON), `plan` (desired state, plan,
audit), `rollback` (the rollback plan from the journal) and `scripts` (rendering
templates/windows/*.ps1.j2). Facts parsing, plan, audit and rollback_plan are pure functions.
Every claim about what Windows does rests on evidence listed in docs/windows.md.
"""

from __future__ import annotations

from typing import Any

from arpfix.errors import ArpfixError, TransportError
from arpfix.model import Change, Finding
from arpfix.platforms.windows import scripts
from arpfix.platforms.windows.facts import (
    DEVICE_MARKER,
    FIREWALL_GROUP,
    LOOPBACK_DESCRIPTION,
    LOOPBACK_METRIC,
    LOOPBACK_NAME,
    parse_facts,
)
from arpfix.platforms.windows.plan import (
    audit,
    desired_state,
    find_loopback,
    find_nic,
    plan,
    rule_name,
    steps_of,
)
from arpfix.platforms.windows.rollback import rollback_plan
from arpfix.platforms.windows.scripts import ps_literal
from arpfix.settings import Host, Inventory

__all__ = ["DEVICE_MARKER", "FIREWALL_GROUP", "LOOPBACK_DESCRIPTION", "LOOPBACK_METRIC",
           "LOOPBACK_NAME", "WindowsPlatform", "audit", "desired_state", "find_loopback",
           "find_nic", "parse_facts", "plan", "platform", "ps_literal", "rollback_plan",
           "rule_name", "steps_of"]


class WindowsPlatform:
    name = "windows"

    def facts_script(self, host: Host, inventory: Inventory) -> str:
        return scripts.facts_script(host, inventory)

    def parse_facts(self, raw: dict[str, Any]) -> dict[str, Any]:
        return parse_facts(raw)

    def plan(self, facts: dict[str, Any], host: Host, inventory: Inventory) -> list[Change]:
        return plan(facts, host, inventory)

    def audit(self, facts: dict[str, Any], host: Host, inventory: Inventory) -> list[Finding]:
        return audit(facts, host, inventory)

    def apply_script(self, facts: dict[str, Any], host: Host, inventory: Inventory,
                     changes: list[Change]) -> str:
        if facts.get("legacy"):
            raise ArpfixError(f"{host.name}: Windows without the NetTCPIP cmdlets (2008 R2 or "
                              "older) is reported only, never changed")
        blocked = [c for c in changes if c.action == "blocked"]
        if blocked:
            raise TransportError(f"{host.name}: {blocked[0].detail}")
        return scripts.apply_script(host, inventory, steps_of(changes))

    def rollback_plan(self, facts: dict[str, Any], host: Host) -> list[Change]:
        return rollback_plan(facts, host)

    def rollback_script(self, facts: dict[str, Any], host: Host, changes: list[Change]) -> str:
        if facts.get("legacy"):
            raise ArpfixError(f"{host.name}: nothing arpfix can roll back on this Windows version")
        mode = facts.get("language_mode") or ""
        if mode and mode != "FullLanguage":
            raise TransportError(f"{host.name}: PowerShell is in {mode} mode (AppLocker/WDAC): "
                                 "arpfix needs FullLanguage to roll back")
        lock = facts.get("lock")
        if lock and lock["alive"]:
            raise TransportError(f"{host.name}: another arpfix run holds the lock since "
                                 f"{lock['started']} (pid {lock['pid']})")
        return scripts.rollback_script(host)


platform = WindowsPlatform()
