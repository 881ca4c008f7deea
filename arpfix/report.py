"""Render per-host results as a table, JSON or JUnit XML. One JSON schema for every command."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from typing import Any

from arpfix.model import HostResult
from arpfix.secrets import redact

_COLOURS = {
    "ok": "32", "compliant": "32", "verified": "32", "changed": "33", "pending": "33",
    "drift": "33", "failed": "31", "error": "31", "unreachable": "31",
}


# XML escaping for JUnit (xml.sax.saxutils would import urllib and email: 20 ms of start-up)
def escape(value: str) -> str:
    # a raw CR would come back as LF (XML line-end normalisation)
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


def quoteattr(value: str) -> str:
    value = escape(value)
    for char, entity in (('"', "&quot;"), ("\n", "&#10;"), ("\t", "&#9;")):
        value = value.replace(char, entity)
    return f'"{value}"'


def use_colour(stream: Any = None) -> bool:
    stream = stream or sys.stdout
    return "NO_COLOR" not in os.environ and hasattr(stream, "isatty") and stream.isatty()


def paint(text: str, status: str, colour: bool) -> str:
    code = _COLOURS.get(status)
    return f"\x1b[{code}m{text}\x1b[0m" if colour and code else text


def short(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(short(v) for v in value) or "[]"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def as_json(document: dict[str, Any]) -> str:
    return redact(json.dumps(document, indent=2, sort_keys=False, default=str))


def hosts_document(results: Iterable[HostResult], **extra: Any) -> dict[str, Any]:
    return {"hosts": [r.to_json() for r in results], **extra}


def table(rows: list[list[Any]], headers: list[str]) -> str:
    from tabulate import tabulate

    return redact(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True))


def junit(results: list[HostResult], suite: str) -> str:
    """One testsuite; a testcase per host and check (audit findings / verify probes)."""
    cases: list[str] = []
    failures = errors = 0
    for result in results:
        checks = result.extra.get("probes") or [f.to_json() for f in result.findings]
        if result.status in ("error", "unreachable"):
            errors += 1
            cases.append(
                f'  <testcase classname={quoteattr(result.name)} name="connect">'
                f"<error message={quoteattr(result.error)}/></testcase>"
            )
            continue
        for check in checks:
            name = check.get("check") or check.get("probe") or "check"
            fix = check.get("fix") or ""
            fix_property = (f"<properties><property name=\"fix\" value={quoteattr(str(fix))}/></properties>"
                            if fix and not check.get("ok") else "")
            if check.get("severity") == "warning":
                text = short(check.get("detail")) + (f"\nfix: {fix}" if fix and not check.get("ok") else "")
                body = f"{fix_property}<system-out>{escape(text)}</system-out>"
            elif not check.get("ok"):
                failures += 1
                message = check.get("detail") or f"expected {short(check.get('expected'))}, got {short(check.get('actual'))}"
                body = f"{fix_property}<failure message={quoteattr(str(message))}/>"
            else:
                body = ""
            cases.append(f"  <testcase classname={quoteattr(result.name)} name={quoteattr(str(name))}>{body}</testcase>")
    header = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name={quoteattr(suite)} '
        f'tests="{len(cases)}" failures="{failures}" errors="{errors}">'
    )
    return redact("\n".join([header, *cases, "</testsuite>"]))
