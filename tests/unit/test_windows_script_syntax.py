"""Cheap structural checks on the rendered PowerShell (no PowerShell here to parse it for real).

A small scanner skips comments, single-quoted, double-quoted and here-strings and checks that
(), {} and [] balance and every string is closed, in the facts, apply and rollback scripts and in
the transport's chunk loader. It catches the typos a Windows run would otherwise find first.
"""

from __future__ import annotations

import ipaddress
import re

import pytest

from arpfix.platforms.windows import WindowsPlatform
from arpfix.settings import Host, Inventory, Service, Vip
from arpfix.transport.winrm import POSTLUDE, PRELUDE, WinrmTransport

SINGLE = "'\u2018\u2019\u201a\u201b"
DOUBLE = '"\u201c\u201d\u201e'
PAIRS = {")": "(", "}": "{", "]": "["}


def check_structure(script: str) -> None:
    stack: list[tuple[str, int]] = []
    i, n = 0, len(script)
    line = 1
    while i < n:
        c = script[i]
        if c == "\n":
            line += 1
        if script.startswith("@'", i) or script.startswith('@"', i):
            quote = script[i + 1]
            end = script.find("\n" + quote + "@", i)
            assert end != -1, f"unterminated here-string at line {line}"
            line += script.count("\n", i, end + 3)
            i = end + 3
            continue
        if c == "#":
            end = script.find("\n", i)
            i = n if end == -1 else end
            continue
        if c in SINGLE:
            i += 1
            while True:
                assert i < n, f"unterminated single-quoted string from line {line}"
                if script[i] in SINGLE:
                    if i + 1 < n and script[i + 1] in SINGLE:
                        i += 2
                        continue
                    break
                if script[i] == "\n":
                    line += 1
                i += 1
            i += 1
            continue
        if c in DOUBLE:
            i += 1
            while True:
                assert i < n, f"unterminated double-quoted string from line {line}"
                if script[i] == "`":
                    i += 2
                    continue
                if script[i] in DOUBLE:
                    if i + 1 < n and script[i + 1] in DOUBLE:
                        i += 2
                        continue
                    break
                if script[i] == "\n":
                    line += 1
                i += 1
            i += 1
            continue
        if c == "`":  # escape / line continuation outside strings
            i += 2
            continue
        if c in "({[":
            stack.append((c, line))
        elif c in ")}]":
            assert stack, f"unmatched {c!r} at line {line}"
            opened, where = stack.pop()
            assert opened == PAIRS[c], f"{opened!r} from line {where} closed by {c!r} at line {line}"
        i += 1
    assert not stack, f"unclosed {stack[-1][0]!r} from line {stack[-1][1]}"


def scripts() -> dict[str, str]:
    host = Host(name="ss1", platform="windows", address=ipaddress.ip_address("192.0.2.11"),
                connect="ss1", keep_bindings=("ms_server",))
    vips = (Vip("web", ipaddress.ip_address("192.0.2.100"),
                (Service("tcp", 443), Service("udp", 53)), ("ss1",)),
            Vip("web6", ipaddress.ip_address("2001:db8::100"), (Service("tcp", 443),), ("ss1",)))
    inventory = Inventory(path="x", hosts={"ss1": host}, groups={}, vips=vips)
    platform = WindowsPlatform()
    return {
        "facts": platform.facts_script(host, inventory),
        "apply": platform.apply_script({}, host, inventory, []),
        "rollback": platform.rollback_script({}, host, []),
    }


@pytest.mark.parametrize("name", ["facts", "apply", "rollback"])
def test_rendered_scripts_are_balanced(name: str) -> None:
    script = scripts()[name]
    check_structure(script)
    check_structure(PRELUDE + script + POSTLUDE)


def test_chunk_loader_is_balanced() -> None:
    import base64

    transport = WinrmTransport.__new__(WinrmTransport)  # only commands_for is used
    commands = transport.commands_for("x" * 20000)
    loader = base64.b64decode(commands[-1].split()[-1]).decode("utf-16-le")
    check_structure(loader)


@pytest.mark.parametrize("broken", ["if ($a) { b", "f('x)", "$x = @(1, 2", "g(]", 'w "abc'])
def test_the_checker_catches_typos(broken: str) -> None:
    with pytest.raises(AssertionError):
        check_structure(broken)


def test_no_powershell3_only_syntax_in_the_facts_path() -> None:
    """The facts script must parse on Windows PowerShell 2.0 to reach its legacy branch."""
    script = scripts()["facts"]
    code = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("#"))
    for construct in ("[ordered]", " -in ", " -notin ", "[pscustomobject]", "$PSItem",
                      "::new("):
        assert construct.lower() not in code.lower(), construct
    assert not re.search(r"^\s*(class|enum)\s+\w+", code, re.MULTILINE | re.IGNORECASE)  # PowerShell 5 types


# ---- a real PowerShell grammar (tree-sitter-pwsh, pinned in the test extra) ------------------
# It does not know PowerShell's Unicode quote rules (the scanner above does), and it reads bare
# property names after a calculated property in Select-Object as errors: the scripts quote them.
def grammar_errors(script: str) -> list[str]:
    import tree_sitter_pwsh
    from tree_sitter import Language, Parser

    source = script.encode("utf-8")
    tree = Parser(Language(tree_sitter_pwsh.language())).parse(source)
    found: list[str] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            line = node.start_point[0] + 1
            found.append(f"line {line}: {source[node.start_byte:node.end_byte][:60]!r}")
            continue
        stack.extend(node.children)
    return found


@pytest.mark.parametrize("name", ["facts", "apply", "rollback"])
def test_rendered_scripts_parse_with_the_powershell_grammar(name: str) -> None:
    script = scripts()[name]
    assert grammar_errors(PRELUDE + script + POSTLUDE) == []


@pytest.mark.parametrize("broken", ["if ($a) { b", "function f( { }", "$x = @(1, 2",
                                    "function g { x", "$h = @{ a = 1"])
def test_the_grammar_catches_broken_code(broken: str) -> None:
    assert grammar_errors(broken)
