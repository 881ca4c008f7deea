"""`arpfix lab`: build, inspect, enter and remove the built-in lab (see docs/lab.md)."""

from __future__ import annotations

import json
import os
import sys
import time

import click

from arpfix.errors import UsageError
from arpfix.helptext import SentenceGroup
from arpfix.lab import core

NAME_HELP = "Lab name: 1-8 characters [a-z0-9], starting with a letter; prefixes everything the lab creates."


def _name_option(func):  # type: ignore[no-untyped-def]
    return click.option("--name", default=core.DEFAULT_NAME, show_default=True, help=NAME_HELP)(func)


@click.group(cls=SentenceGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def lab() -> None:
    """Real Linux "servers" on this machine, for trying arpfix end to end.

    Each lab host (client, agent, rs1..rsN) is a network namespace plus its own mount
    namespace (overlays on /etc, /var/lib, /run, /usr/local, /var/tmp) on one bridged /24.
    The agent and the real servers run OpenSSH; real servers answer on tcp/80 and tcp/443 with
    "<host> <address>:<port>". Needs root on Linux.
    """


@lab.command("up")
@_name_option
@click.option("--hosts", "hosts", type=click.IntRange(1, core.MAX_HOSTS), default=core.DEFAULT_HOSTS,
              show_default=True, help="Number of real servers (rs1..rsN).")
@click.option("--state-dir", type=click.Path(file_okay=False), default=None,
              help=f"Keys, configs, inventory and the hosts' writable layers [default: {core.STATE_ROOT}/NAME].")
def up(name: str, hosts: int, state_dir: str | None) -> None:
    """Build the lab and write its inventory.

    Not idempotent: if a lab with this name exists (even half-built), this fails with exit
    code 2; run `arpfix lab down --name NAME` first.
    """
    started = time.monotonic()
    info = core.lab_up(name, hosts, state_dir)
    took = time.monotonic() - started
    click.echo(f"lab {info.name}: {hosts} real server(s) on {info.subnet}, VIP {info.vip} ({took:.1f}s)")
    click.echo(f"inventory: {info.inventory_path}")
    click.echo(f"try:       arpfix lab status --name {info.name}; arpfix lab exec --name {info.name} rs1 -- ip addr")


@lab.command("status")
@_name_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="Output format.")
def status(name: str, fmt: str) -> None:
    """Show the lab's hosts, addresses and SSH settings."""
    st = core.lab_status(name)
    if fmt == "json":
        click.echo(json.dumps(st, indent=2))
        return
    from tabulate import tabulate

    click.echo(f"lab {st['name']}  subnet {st['subnet']}  admin {st['admin_address']} ({st['admin_link']})  "
               f"VIP {st['vip']}  services "
               + ", ".join(f"{s['protocol']}/{s['port']}" for s in st["services"]))
    click.echo(f"inventory {st['inventory']}  ssh key {st['ssh']['key']}")
    rows = [
        [h["name"], h["role"], h["netns"], h["address"], h["mac"],
         f"{h['ssh_address']}:{h['ssh_port']}" if h["ssh_address"] else "-",
         "up" if h["running"] else "DOWN"]
        for h in st["hosts"]
    ]
    click.echo(tabulate(rows, headers=["host", "role", "netns", "address", "mac", "ssh", "state"]))


@lab.command("exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@_name_option
@click.argument("host")
@click.argument("cmd", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(name: str, host: str, cmd: tuple[str, ...]) -> None:
    """Run a command inside a lab host (its network and filesystem view).

    \b
    Example: arpfix lab exec --name NAME rs1 -- ip addr show dev eth0
    HOST is client, agent or rsK. The exit code and signals of CMD pass through
    (this process becomes nsenter, which becomes CMD). PATH gets this Python's
    bin directory, so `arpfix` itself runs inside.
    """
    argv = list(cmd)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UsageError("lab exec: missing command (arpfix lab exec HOST -- CMD...)")
    core.check_environment()
    try:
        cwd: str | None = os.getcwd()
    except OSError:
        cwd = None
    prefix = core.lab_exec_argv(name, host, cwd=cwd)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(prefix[0], prefix + argv, core.exec_env())


@lab.command("down")
@_name_option
def down(name: str) -> None:
    """Remove the lab: processes, mounts, namespaces, links, state dir. Safe to repeat."""
    started = time.monotonic()
    removed = core.lab_down(name)
    took = time.monotonic() - started
    if removed:
        click.echo(f"lab {name}: removed ({took:.1f}s)")
    else:
        click.echo(f"lab {name}: nothing to remove")


def _add_demo() -> None:
    from arpfix.demo import demo

    lab.add_command(demo)


_add_demo()
