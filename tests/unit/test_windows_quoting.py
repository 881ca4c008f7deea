"""ps_quote and the Windows parameter block: hostile values stay one literal.

The checks use a small tokenizer for PowerShell single-quoted strings written here after the
PowerShell language rules: a string opens with any single-quote character (' U+2018 U+2019
U+201A U+201B), two quote characters in a row stand for one (the second is kept), and any other
quote character closes it. Nothing is expanded inside: $(...), backticks, newlines and
semicolons are plain text.
"""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arpfix.platforms.windows import WindowsPlatform, ps_literal
from arpfix.quoting import UnquotableValue, ps_quote
from arpfix.settings import Host, Inventory, Service, Vip

QUOTES = "'\u2018\u2019\u201a\u201b"
HOSTILE = [
    "x'; Remove-Item C:\\ -Recurse; '",
    "x\u2019; calc.exe; \u2018",
    "$(Invoke-Expression 'calc')",
    "`$env:USERNAME`n",
    "a\nb\r\nc; d",
    "\u201a\u201b'\u2018\u2019",
    "'''",
    "@{ injected = 1 }",
    "#comment",
    "ends with quote'",
]


def read_single_quoted(text: str, pos: int = 0) -> tuple[str, int]:
    """Read one single-quoted PowerShell string at text[pos]; return (value, position after)."""
    if pos >= len(text) or text[pos] not in QUOTES:
        raise ValueError(f"no single-quoted string at {pos}")
    out = []
    i = pos + 1
    while True:
        if i >= len(text):
            raise ValueError("unterminated string")
        c = text[i]
        if c in QUOTES:
            if i + 1 < len(text) and text[i + 1] in QUOTES:
                out.append(text[i + 1])  # a doubled quote: the second one is the character
                i += 2
                continue
            return "".join(out), i + 1
        out.append(c)
        i += 1


class LiteralParser:
    """Parses the subset ps_literal emits: @{ k = v }, @( v, v ), 'str', int, $true/$false/$null."""

    def __init__(self, text: str, pos: int = 0) -> None:
        self.text, self.pos = text, pos

    def ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
            self.pos += 1

    def value(self):
        self.ws()
        t = self.text
        if t.startswith("@{", self.pos):
            self.pos += 2
            result = {}
            while True:
                self.ws()
                if t[self.pos] == "}":
                    self.pos += 1
                    return result
                key = re.compile(r"[A-Za-z_][A-Za-z0-9_]*").match(t, self.pos)
                assert key, t[self.pos:self.pos + 40]
                self.pos = key.end()
                self.ws()
                assert t[self.pos] == "="
                self.pos += 1
                result[key.group(0)] = self.value()
        if t.startswith("@(", self.pos):
            self.pos += 2
            items = []
            while True:
                self.ws()
                if t[self.pos] == ")":
                    self.pos += 1
                    return items
                items.append(self.value())
                self.ws()
                if t[self.pos] == ",":
                    self.pos += 1
        if t[self.pos] in QUOTES:
            value, self.pos = read_single_quoted(t, self.pos)
            return value
        for word, value in (("$true", True), ("$false", False), ("$null", None)):
            if t.startswith(word, self.pos):
                self.pos += len(word)
                return value
        number = re.compile(r"\d+").match(t, self.pos)
        assert number, t[self.pos:self.pos + 40]
        self.pos = number.end()
        return int(number.group(0))


text_values = st.text(
    alphabet=st.one_of(
        st.sampled_from(list(QUOTES + "$`;\n\r\"(){}@#| \t&<>\\")),
        st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)),
    ),
    max_size=60,
)


@settings(max_examples=400, deadline=None)
@given(text_values)
def test_ps_quote_round_trips_through_the_tokenizer(value: str) -> None:
    quoted = ps_quote(value)
    parsed, end = read_single_quoted(quoted)
    assert parsed == value
    assert end == len(quoted)  # the literal ends exactly where ps_quote's output ends


@settings(max_examples=200, deadline=None)
@given(text_values, text_values)
def test_quoted_value_cannot_swallow_or_break_the_following_code(a: str, b: str) -> None:
    code = f"$x = {ps_quote(a)}; $y = {ps_quote(b)}"
    first, end = read_single_quoted(code, 5)
    assert first == a and code[end:end + 7] == "; $y = "
    second, end = read_single_quoted(code, end + 7)
    assert second == b and end == len(code)


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_examples(value: str) -> None:
    assert read_single_quoted(ps_quote(value)) == (value, len(ps_quote(value)))


def test_nul_is_refused() -> None:
    with pytest.raises(UnquotableValue):
        ps_quote("a\x00b")


@settings(max_examples=150, deadline=None)
@given(st.recursive(
    st.one_of(text_values, st.integers(0, 65535), st.booleans(), st.none()),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,8}", fullmatch=True), children,
                        max_size=4)),
    max_leaves=12))
def test_ps_literal_parses_back_to_the_same_data(data) -> None:
    text = ps_literal(data)
    parser = LiteralParser(text)
    assert parser.value() == (list(data) if isinstance(data, tuple) else data)
    parser.ws()
    assert parser.pos == len(text)


def hostile_inventory(value: str) -> tuple[Host, Inventory]:
    host = Host(name="ss1" + value, platform="windows", address=ipaddress.ip_address("192.0.2.11"),
                connect="ss1", keep_bindings=("ms_server" + value,))
    vip = Vip("vip" + value, ipaddress.ip_address("192.0.2.100"), (Service("tcp", 443),),
              (host.name,))
    return host, Inventory(path="x", hosts={host.name: host}, groups={}, vips=(vip,))


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("kind", ["facts", "apply", "rollback"])
def test_hostile_values_stay_inside_the_parameter_block(value: str, kind: str) -> None:
    host, inventory = hostile_inventory(value)
    platform = WindowsPlatform()
    if kind == "facts":
        script = platform.facts_script(host, inventory)
    elif kind == "apply":
        script = platform.apply_script({}, host, inventory, [])
    else:
        script = platform.rollback_script({}, host, [])
    start = script.index("$P = ") + len("$P = ")
    parser = LiteralParser(script, start)
    params = parser.value()
    if kind != "facts":  # the facts script gets only the VIP ports (integers)
        assert params["HostName"] == host.name  # exactly the value, nothing more, nothing less
    if kind == "apply":
        assert params["Vips"][0]["Name"] == "vip" + value
        assert "ms_server" + value.lower() in params["KeepBindings"]
    rest = script[:start] + script[parser.pos:]
    for needle in ("ss1" + value, "vip" + value, "Invoke-Expression", "calc", "injected"):
        assert needle not in rest, f"{needle!r} outside the parameter block"
