"""Plain data shared by the planner, the engine and the reports. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

HostStatus = Literal[
    "ok", "changed", "pending", "blocked", "partial", "kept", "failed", "error", "unreachable", "compliant",
    "drift", "verified", "unverified", "interrupted", "not started",
]


@dataclass(frozen=True)
class Change:
    """One step of a plan: `subject` goes from `before` to `after`.

    action: set (a value), add / remove (an address, a rule), create / replace / delete (a file,
    a unit, an adapter).
    """

    subject: str
    action: str
    before: Any
    after: Any
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "action": self.action,
            "from": self.before,
            "to": self.after,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Finding:
    """One audit check: expected vs actual (effective), where the value comes from, ok or not.

    severity "warning" findings never make a host drift.
    """

    check: str
    ok: bool
    expected: Any
    actual: Any
    detail: str = ""
    source: str = ""
    severity: Literal["error", "warning"] = "error"
    fix: str = ""  # one line: what the administrator can do about it

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "ok": self.ok,
            "expected": self.expected,
            "actual": self.actual,
            "detail": self.detail,
            "source": self.source,
            "severity": self.severity,
            "fix": self.fix,
        }


@dataclass
class HostResult:
    """What one command did on one host. A failure is data, not an exception."""

    name: str
    platform: str
    status: str
    error: str = ""
    changes: list[Change] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    facts: dict[str, Any] | None = None
    script: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None  # how long the host took (shown under -v; not in the JSON)

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "error", "unreachable")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "platform": self.platform, "status": self.status}
        if self.error:
            out["error"] = self.error
        out["changes"] = [c.to_json() for c in self.changes]
        out["findings"] = [f.to_json() for f in self.findings]
        if self.facts is not None:
            out["facts"] = self.facts
        out.update(self.extra)
        return out
