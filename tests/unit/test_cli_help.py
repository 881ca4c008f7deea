"""Help a person can rely on: every option of every command (the lazy lab and agent groups too)
says what it does; a group's listing never cuts a sentence in half; documented exit codes exist."""

from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner

from arpfix.cli import cli


def walk(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, click.Command]]:
    found = [(" ".join(path), command)]
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, f"{' '.join(path + (name,))} cannot be loaded"
            found += walk(sub, path + (name,))
    return found


COMMANDS = walk(cli)
OPTIONS = [(f"{path} {max(option.opts, key=len)}".strip(), option) for path, command in COMMANDS
           for option in command.params if isinstance(option, click.Option) and not option.hidden]


def test_the_walk_reaches_every_group():
    paths = {path for path, _ in COMMANDS}
    assert {"agent run", "agent status", "lab up", "lab demo", "probe dr", "inventory check", "verify"} <= paths


@pytest.mark.parametrize("name,option", OPTIONS, ids=[name for name, _ in OPTIONS])
def test_every_option_has_help_text(name, option):
    assert option.help and option.help.strip(), f"`arpfix {name}` has no help text"


GROUPS = [(path, command) for path, command in COMMANDS if isinstance(command, click.Group)]


@pytest.mark.parametrize("path,group", GROUPS, ids=[path or "arpfix" for path, _ in GROUPS])
def test_a_group_listing_never_cuts_a_sentence_in_half(path, group):
    result = CliRunner().invoke(cli, [*path.split(), "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    listing = result.output.split("Commands:", 1)[1]
    assert "..." not in listing, listing


def test_probe_arp_documents_only_exit_codes_it_gives(monkeypatch):
    from arpfix.probe import segment

    result = CliRunner().invoke(cli, ["probe", "arp", "--help"])
    said = re.search(r"exit (.*?)\.", " ".join(result.output.split()), re.IGNORECASE)
    documented = set(re.findall(r"\b(\d+)\b", said.group(1))) if said else set()
    given = set()
    for replies in ([], [{"mac": "02:00:00:00:00:01"}], [{"mac": "02:00:00:00:00:01"}, {"mac": "02:00:00:00:00:02"}]):
        monkeypatch.setattr(segment, "arp_probe", lambda interface, vip, window, replies=replies: replies)
        run = CliRunner().invoke(cli, ["probe", "arp", "-I", "eth0", "192.0.2.250"])
        given.add(str(run.exit_code))
        assert all(f"192.0.2.250 is-at {r['mac']}" in run.output for r in replies)

    def refused(interface, vip, window):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(segment, "arp_probe", refused)
    given.add(str(CliRunner().invoke(cli, ["probe", "arp", "-I", "eth0", "192.0.2.250"]).exit_code))
    given.add(str(CliRunner().invoke(cli, ["probe", "arp", "-I", "eth0", "not-an-ip"]).exit_code))
    assert documented == given == {"0", "1", "2"}, (documented, given)


def test_agent_run_honours_arpfix_inventory_like_every_other_command():
    run = cli.get_command(click.Context(cli), "agent").get_command(click.Context(cli), "run")
    inventory = next(p for p in run.params if "--inventory" in getattr(p, "opts", ()))
    assert inventory.envvar == "ARPFIX_INVENTORY"


def test_every_other_command_honours_arpfix_inventory():
    for path, command in COMMANDS:
        for param in command.params:
            if "--inventory" in getattr(param, "opts", ()) and not path.startswith("agent"):
                assert param.envvar == "ARPFIX_INVENTORY", path
