"""Help listings that never cut a sentence in half (click's default short help cuts at ~45 columns)."""

from __future__ import annotations

import re

import click


def first_sentence(text: str | None) -> str:
    """The first sentence of a command's help: its first paragraph up to the first full stop."""
    paragraph = re.split(r"\n\s*\n", (text or "").strip(), maxsplit=1)[0]
    paragraph = " ".join(line.strip() for line in paragraph.splitlines() if line.strip() != "\b")
    match = re.search(r"[.!?](\s|$)", paragraph)
    return paragraph[: match.start() + 1] if match else paragraph


class SentenceGroup(click.Group):
    """A group whose command listing shows each command's whole first sentence, wrapped."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.short_help or first_sentence(command.help)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
