"""The per-host steps behind facts, plan, apply, audit and rollback.

Data flows one way: facts (one round trip) -> plan (pure) -> apply (one round trip on the same
session: the script re-reads, journals, applies and returns the new facts) -> report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from arpfix.engine import CUT_HINT
from arpfix.errors import ArpfixError, TransportError
from arpfix.model import HostResult
from arpfix.platforms import get_platform
from arpfix.settings import Host, Inventory
from arpfix.transport import Transport, TransportOptions, make_transport


@dataclass(frozen=True)
class RunContext:
    inventory: Inventory
    transport_options: TransportOptions
    show_script: bool = False
    # Who carries the scripts: None is arpfix's own SSH/WinRM (make_transport); the Ansible
    # collection passes one that sends them over the task's Ansible connection instead.
    transport_factory: Callable[[Host], Transport] | None = None


def open_transport(host: Host, ctx: RunContext) -> Transport:
    """A transport to `host`: the context's factory where it has one, else arpfix's own."""
    if ctx.transport_factory is not None:
        return ctx.transport_factory(host)
    return make_transport(host, ctx.transport_options)


def gather_raw(host: Host, ctx: RunContext) -> tuple[Any, Any, dict[str, Any]]:
    """(platform, open transport, the facts script's own JSON): the facts round trip."""
    platform = get_platform(host.platform)
    transport = open_transport(host, ctx)
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
    annotate = getattr(platform, "annotate", None)
    return HostResult(host.name, host.platform, "ok", facts=annotate(host_facts, host) if annotate else host_facts)


def _journaled_since(host: Host, ctx: RunContext, platform: Any, count: int) -> list[str] | None:
    """What a run that was cut wrote to the host's journal after its first `count` entries, read
    over a new connection (None: the host cannot be read now)."""
    transport = None
    try:
        transport = open_transport(host, ctx)
        journal = parse_facts(platform, host, transport.run_script(platform.facts_script(host, ctx.inventory))).get("journal", [])
    except ArpfixError:
        return None
    finally:
        if transport is not None:
            transport.close()
    if not isinstance(journal, list):  # a platform whose journal is not a list of entries
        return None
    return [_entry_text(e) for e in journal[count:] if isinstance(e, dict) and e.get("op") not in ("begin", "end")]


def _journal_length(host_facts: dict[str, Any]) -> int:
    journal = host_facts.get("journal")
    return len(journal) if isinstance(journal, list) else 0


def _entry_text(entry: dict[str, Any]) -> str:
    subject = entry.get("key") or entry.get("addr") or entry.get("path") or entry.get("dev") or ""
    return f"{'undo ' if entry.get('undo') else ''}{entry.get('op')} {subject}".strip()


def _cut(host: Host, ctx: RunContext, platform: Any, exc: TransportError, journal_before: int,
         changes: list[Any]) -> HostResult:
    """The result of a run that failed part-way: `partial` with what it did where that is known."""
    message = str(exc)
    done = list((exc.document or {}).get("applied", []) or [])
    if exc.document is None:
        if "may still be running" not in message:
            message = f"{message}; {CUT_HINT}"
        journaled = _journaled_since(host, ctx, platform, journal_before)
        if journaled:
            done = [f"journaled: {text}" for text in journaled]
    status = "partial" if done else "error"
    return HostResult(host.name, host.platform, status, changes=changes, error=message, extra={"applied": done})


def _notes(platform: Any, host_facts: dict[str, Any], host: Host, ctx: RunContext) -> dict[str, Any]:
    """{"notes": [...]}: why the plan looks as it does (container networking, a cloud), where the platform says."""
    notes = getattr(platform, "notes", None)
    found = notes(host_facts, host, ctx.inventory) if notes else []
    return {"notes": found} if found else {}


def plan_status(changes: list[Any]) -> str:
    """ok (nothing to do), pending (apply would make the changes) or blocked (apply cannot)."""
    if any(c.action == "blocked" for c in changes):
        return "blocked"
    return "pending" if changes else "ok"


def plan(host: Host, ctx: RunContext) -> HostResult:
    platform, transport, host_facts = gather(host, ctx)
    transport.close()
    changes = platform.plan(host_facts, host, ctx.inventory)
    result = HostResult(host.name, host.platform, plan_status(changes), changes=changes,
                        extra=_notes(platform, host_facts, host, ctx))
    if ctx.show_script and changes and result.status != "blocked":
        result.script = platform.apply_script(host_facts, host, ctx.inventory, changes)
    return result


def apply(host: Host, ctx: RunContext) -> HostResult:
    platform, transport, raw_before = gather_raw(host, ctx)
    try:
        host_facts = parse_facts(platform, host, raw_before)
        changes = platform.plan(host_facts, host, ctx.inventory)
        if not changes:
            return HostResult(host.name, host.platform, "ok")
        if plan_status(changes) == "blocked":  # nothing is half-applied: the host is left as it is
            first = next(c for c in changes if c.action == "blocked")
            return HostResult(host.name, host.platform, "blocked", changes=changes,
                              error=f"{first.subject}: {first.detail}")
        script = platform.apply_script(host_facts, host, ctx.inventory, changes)
        try:
            raw = transport.run_script(script)
        except TransportError as exc:
            return _cut(host, ctx, platform, exc, _journal_length(host_facts), changes)
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
        try:
            raw = transport.run_script(script)
        except TransportError as exc:
            return _cut(host, ctx, platform, exc, _journal_length(host_facts), changes)
        kept = [f"{c.subject}: {c.detail}" for c in changes if c.action == "keep"]
        left = kept + list(raw.get("left", []))
        # "kept": something arpfix set was changed since, and stays as it is now (exit 3)
        return HostResult(
            host.name, host.platform, "kept" if left else "changed", changes=changes,
            extra={"restored": raw.get("restored", []), "left": left},
        )
    finally:
        transport.close()
