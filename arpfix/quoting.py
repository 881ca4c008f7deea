"""The one quoting helper per shell. Every inventory value reaches a remote script through here.

Values are validated by the inventory first; quoting is the second wall, so a value that slipped
through validation still arrives as one literal word, never as code.
"""

from __future__ import annotations

from typing import Any

from arpfix.errors import ArpfixError


class UnquotableValue(ArpfixError):
    """A value that no quoting can carry safely (NUL bytes)."""


def _text(value: Any) -> str:
    if isinstance(value, bool):
        raise UnquotableValue(f"refusing to quote a boolean as text: {value!r}")
    text = str(value)
    if "\x00" in text:
        raise UnquotableValue("refusing to quote a value containing a NUL byte")
    return text


def sh_quote(value: Any) -> str:
    """Quote for POSIX sh: one single-quoted word; an embedded ' becomes '\\''."""
    text = _text(value)
    return "'" + text.replace("'", "'\\''") + "'"


# PowerShell treats these as single quotes too (U+2018, U+2019, U+201A, U+201B).
_PS_SINGLE_QUOTES = ("'", "\u2018", "\u2019", "\u201a", "\u201b")


def ps_quote(value: Any) -> str:
    """Quote for PowerShell: a single-quoted verbatim string; every kind of ' is doubled."""
    text = _text(value)
    for quote in _PS_SINGLE_QUOTES:
        text = text.replace(quote, quote + quote)
    return "'" + text + "'"
