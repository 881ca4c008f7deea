"""Render per-host results as a table, JSON or JUnit XML. One JSON schema for every command."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable
from typing import Any

from arpfix.model import HostResult
from arpfix.secrets import redact

_COLOURS = {
    "ok": "32", "compliant": "32", "verified": "32", "changed": "33", "pending": "33",
    "drift": "33", "kept": "33", "not started": "33", "unverified": "33",
    "failed": "31", "error": "31", "unreachable": "31", "blocked": "31", "partial": "31", "interrupted": "31",
}
CELL_WIDTH = 70  # a longer finding is cut here in a table cell; -v shows it whole, wrapped


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
    """A value as an administrator writes it: yes/no, `-` for nothing, lists comma-separated."""
    if value is None or value == "" or value == [] or value == () or value == {}:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(short(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={short(v)}" for k, v in sorted(value.items(), key=lambda kv: str(kv[0])))
    return str(value)


def plural(count: int, word: str, many: str | None = None) -> str:
    """"1 host", "2 hosts", "1 VIP", "3 VIPs"."""
    return f"{count} {word if count == 1 else (many or word + 's')}"


def clip(text: str, width: int = CELL_WIDTH) -> str:
    """One table cell: text longer than `width` is cut, and says where the rest is."""
    text = " ".join(str(text).split())
    if len(text) <= width:
        return text
    return text[: width - 12].rstrip() + " ... (-v: all)"


def as_json(document: dict[str, Any]) -> str:
    return redact(json.dumps(document, indent=2, sort_keys=False, default=str))


def hosts_document(results: Iterable[HostResult], **extra: Any) -> dict[str, Any]:
    return {"hosts": [r.to_json() for r in results], **extra}


def table(rows: list[list[Any]], headers: list[str], wrap: dict[int, int] | None = None) -> str:
    """A plain table; `wrap` maps a column index to the width its cells wrap at (for -v)."""
    assert all(headers), "every column has a header"
    text = None if wrap else simple_table(rows, headers)
    if text is None:
        from tabulate import tabulate

        widths = [wrap.get(i) for i in range(len(headers))] if wrap else None
        text = tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True, maxcolwidths=widths)
    return redact(text)


_COLOUR_CODE = re.compile(r"\x1b\[[0-9]+m")


def simple_table(rows: list[list[Any]], headers: list[str]) -> str | None:
    """tabulate's "simple" format (disable_numparse), byte for byte, for the tables arpfix prints:
    one-line ASCII text cells, colour codes allowed. None for anything else (tabulate renders those).

    tabulate infers a type per column and measures every cell through its ANSI-stripping width
    function: for a 50-host audit of fresh servers (550 rows) that was 36 ms, more than the run's
    own audit checks. Its rules, kept here: each cell stripped of surrounding whitespace, a column
    as wide as its widest cell and at least its header plus 2, left-aligned, columns joined by two
    spaces, a dashed line under the headers, trailing spaces removed from every line."""
    count = len(headers)
    if not rows or any(not isinstance(h, str) or h != h.strip() or not h.isascii() for h in headers):
        return None
    cells: list[list[tuple[str, int]]] = []
    widths = [len(h) + 2 for h in headers]
    for row in rows:
        if len(row) != count:
            return None
        line = []
        for index, cell in enumerate(row):
            if not isinstance(cell, str) or "\n" in cell:
                return None
            cell = cell.strip()
            visible = _COLOUR_CODE.sub("", cell) if "\x1b" in cell else cell
            if not visible.isascii() or "\x1b" in visible or not visible.isprintable():
                return None
            line.append((cell, len(visible)))
            if len(visible) > widths[index]:
                widths[index] = len(visible)
        cells.append(line)
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip(),
           "  ".join("-" * w for w in widths).rstrip()]
    for line in cells:
        out.append("  ".join(cell + " " * (w - n) for (cell, n), w in zip(line, widths)).rstrip())
    return "\n".join(out)


def junit(results: list[HostResult], suite: str) -> str:
    """The audit's JUnit: a testcase per host and check; an unreachable host is one error. A failing
    check's fix is a `fix` property of its case (and a line of a warning's system-out)."""
    cases: list[tuple[str, str, str, str, str]] = []
    for result in results:
        if result.status in ("error", "unreachable", "interrupted", "not started"):
            cases.append((result.name, "connect", "error", result.error or result.status, ""))
            continue
        for check in (f.to_json() for f in result.findings):
            name = str(check.get("check") or "check")
            fix = str(check.get("fix") or "") if not check.get("ok") else ""
            if check.get("severity") == "warning":
                text = short(check.get("detail")) + (f"\nfix: {fix}" if fix else "")
                cases.append((result.name, name, "out", text, fix))
            elif not check.get("ok"):
                message = check.get("detail") or f"expected {short(check.get('expected'))}, got {short(check.get('actual'))}"
                cases.append((result.name, name, "failure", str(message), fix))
            else:
                cases.append((result.name, name, "pass", "", ""))
    return junit_suite(suite, cases)


def junit_suite(suite: str, cases: list[tuple[str, str, str, str, str]]) -> str:
    """One testsuite from (classname, name, kind, message, fix); kind: pass, failure, error,
    skipped, out (a passing case with system-out); a fix becomes the case's `fix` property."""
    lines = []
    for classname, name, kind, message, fix in cases:
        body = f'<properties><property name="fix" value={quoteattr(fix)}/></properties>' if fix else ""
        if kind in ("failure", "error", "skipped"):
            body += f"<{kind} message={quoteattr(message)}/>"
        elif kind == "out":
            body += f"<system-out>{escape(message)}</system-out>"
        lines.append(f"  <testcase classname={quoteattr(classname)} name={quoteattr(name)}>{body}</testcase>")
    counts = {kind: sum(1 for case in cases if case[2] == kind) for kind in ("failure", "error", "skipped")}
    header = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name={quoteattr(suite)} tests="{len(cases)}" '
        f'failures="{counts["failure"]}" errors="{counts["error"]}" skipped="{counts["skipped"]}">'
    )
    return redact("\n".join([header, *lines, "</testsuite>"]))
