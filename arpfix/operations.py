"""The per-host steps behind facts, plan, apply, audit and rollback.

Data flows one way: facts (one round trip) -> plan (pure) -> apply (one round trip on the same
session: the script re-reads, journals, applies and returns the new facts) -> report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from arpfix.errors import TransportError
from arpfix.model import HostResult
from arpfix.platforms import get_platform
from arpfix.settings import Host, Inventory
from arpfix.transport import TransportOptions, make_transport


@dataclass(frozen=True)
class RunContext:
    inventory: Inventory
    transport_options: TransportOptions
    show_script: bool = False


def gather_raw(host: Host, ctx: RunContext) -> tuple[Any, Any, dict[str, Any]]:
    """(platform, open transport, the facts script's own JSON): the facts round trip."""
    platform = get_platform(host.platform)
    transport = make_transport(host, ctx.transport_options)
    return platform, transport, transport.run_script(platform.facts_script(host, ctx.inventory))


def parse_facts(platform: Any, host: Host, raw: dict[str, Any]) -> dict[str, Any]:
    """platform.parse_facts; JSON of the wrong shape (a string where an object belongs) is one clear
    per-host line, not `internal error: AttributeError` (the parsers trust the scripts' shapes)."""
    try:
        return platform.parse_facts(raw)
    except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise TransportError(f"unexpected facts from {host.name}: the script's JSON has the wrong shape ({detail})") from None


def gather(host: Host, ctx: RunContext) -> tuple[Any, Any, dict[str, Any]]:
    """(platform, open transport, parsed facts): the one facts round trip every command starts with."""
    platform, transport, raw = gather_raw(host, ctx)
    try:
        return platform, transport, parse_facts(platform, host, raw)
    except TransportError:
        transport.close()
        raise


def facts(host: Host, ctx: RunContext) -> HostResult:
    platform, transport, host_facts = gather(host, ctx)
    transport.close()
    return HostResult(host.name, host.platform, "ok", facts=host_facts)


def plan(host: Host, ctx: RunContext) -> HostResult:
    platform, transport, host_facts = gather(host, ctx)
    transport.close()
    changes = platform.plan(host_facts, host, ctx.inventory)
    result = HostResult(host.name, host.platform, "pending" if changes else "ok", changes=changes)
    if ctx.show_script and changes:
        result.script = platform.apply_script(host_facts, host, ctx.inventory, changes)
    return result


def apply(host: Host, ctx: RunContext) -> HostResult:
    platform, transport, raw_before = gather_raw(host, ctx)
    try:
        host_facts = parse_facts(platform, host, raw_before)
        changes = platform.plan(host_facts, host, ctx.inventory)
        if not changes:
            return HostResult(host.name, host.platform, "ok")
        script = platform.apply_script(host_facts, host, ctx.inventory, changes)
        raw = transport.run_script(script)
        # The apply script re-reads what it can change; the rest (OS, routes, listeners, firewall)
        # comes from the read at the start of this same session.
        new_facts = parse_facts(platform, host, {**raw_before, **raw})
        remaining = platform.plan(new_facts, host, ctx.inventory)
        applied = raw.get("applied", [])
        if remaining:
            subjects = ", ".join(c.subject for c in remaining[:3])
            return HostResult(
                host.name, host.platform, "failed", changes=changes,
                error=f"still pending after apply: {subjects}", extra={"applied": applied},
            )
        return HostResult(host.name, host.platform, "changed", changes=changes, extra={"applied": applied})
    finally:
        transport.close()


def audit(host: Host, ctx: RunContext) -> HostResult:
    platform, transport, host_facts = gather(host, ctx)
    transport.close()
    findings = platform.audit(host_facts, host, ctx.inventory)
    drift = any(not f.ok and f.severity == "error" for f in findings)
    return HostResult(host.name, host.platform, "drift" if drift else "compliant", findings=findings)


def rollback(host: Host, ctx: RunContext, *, dry_run: bool = False) -> HostResult:
    platform, transport, host_facts = gather(host, ctx)
    try:
        changes = platform.rollback_plan(host_facts, host)
        if not changes:
            return HostResult(host.name, host.platform, "ok")
        script = platform.rollback_script(host_facts, host, changes)
        if dry_run:
            result = HostResult(host.name, host.platform, "pending", changes=changes)
            if ctx.show_script:
                result.script = script
            return result
        raw = transport.run_script(script)
        kept = [f"{c.subject}: {c.detail}" for c in changes if c.action == "keep"]
        left = kept + list(raw.get("left", []))
        return HostResult(
            host.name, host.platform, "changed", changes=changes,
            extra={"restored": raw.get("restored", []), "left": left},
        )
    finally:
        transport.close()
