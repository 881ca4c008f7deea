"""The README and docs/verify.md say what the code does: options that exist, every exit code."""

from __future__ import annotations

import re
from pathlib import Path

import click

import arpfix.cli as cli_module
from arpfix.cli import cli
from arpfix.exitcodes import Exit

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "docs" / "verify.md"]
COMMON = {"--help", "--version"}


def options_of(*path: str) -> set[str]:
    command: click.Command = cli
    for name in path:
        command = command.get_command(click.Context(command), name)  # type: ignore[attr-defined]
    return {opt for p in command.params for opt in getattr(p, "opts", ()) if opt.startswith("--")}


def test_every_option_the_docs_give_a_command_exists():
    commands = {"facts", "plan", "apply", "audit", "rollback", "verify"}
    for doc in DOCS:
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            for command, rest in re.findall(r"arpfix (\w+)\s+([^`#|]*)", line):
                if command not in commands:
                    continue
                for option in re.findall(r"(--[a-z][a-z-]+)", rest):
                    assert option in options_of(command) | COMMON, f"{doc.name}:{number}: {command} has no {option}"


def test_the_verify_synopsis_lists_every_verify_option():
    synopsis = next(line for line in (ROOT / "docs" / "verify.md").read_text().splitlines() if line.startswith("`arpfix verify"))
    for option in options_of("verify") - {"--inventory", "--limit", "--allow-plaintext-secrets", "--forks",
                                          "--trust-on-first-use", "--insecure", "--verbose", "--quiet"}:
        assert option in synopsis, option
    assert "junit" in synopsis


def test_the_readme_exit_code_table_has_every_code_and_the_prompt():
    table = {int(code): meaning for code, meaning in
             re.findall(r"^\| (\d+) \| (.*) \|$", (ROOT / "README.md").read_text(), re.MULTILINE)}
    assert set(table) == {int(code) for code in Exit}
    assert "prompt" in table[Exit.PENDING] and "nothing changed" in table[Exit.PENDING]
    assert "prompt" in (cli.help or "") and "prompt" in (cli_module.__doc__ or "")
