"""The arpfix command line: parse options, call the engine, render, exit with one documented code.

Exit codes (arpfix.exitcodes.Exit): 0 ok/compliant/nothing to do; 1 a host failed (or `partial`);
2 usage or inventory error (no host contacted); 3 drift or changes pending, `blocked`, `kept`, or
"no" answered at apply's or rollback's prompt (nothing changed); 4 verification failed; 130 interrupted.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable
from typing import Any

import click

from arpfix import __version__
from arpfix.errors import ArpfixError
from arpfix.exitcodes import Exit
from arpfix.helptext import SentenceGroup, first_sentence

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class LazyGroup(SentenceGroup):
    """Subcommand groups imported only when used, so `arpfix --help` stays fast."""

    group_class = SentenceGroup  # `inventory` and `probe` list their commands the same way
    lazy: dict[str, tuple[str, str]] = {
        "lab": ("arpfix.lab.cli:lab", "Build, inspect and remove the built-in lab of real Linux servers."),
        "agent": ("arpfix.agent.cli:agent", "Run the bundled DR-mode forwarding agent."),
        "probe": ("arpfix.probe.cli:probe", "Low-level segment probes (raw sockets, root, run on a host of the segment)."),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            target, _ = self.lazy[name]
            module_name, attribute = target.split(":")
            try:
                return getattr(importlib.import_module(module_name), attribute)  # type: ignore[no-any-return]
            except ImportError:
                return None
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in self.lazy:  # its one-line description, without importing it
                rows.append((name, self.lazy[name][1]))
            else:
                command = super().get_command(ctx, name)
                if command is not None and not command.hidden:
                    rows.append((name, command.short_help or first_sentence(command.help)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="arpfix")
def cli() -> None:
    """Prepare, audit, roll back and verify real servers behind a Layer 4 Direct Routing
    (DR) load balancer: VIP on a non-ARPing interface, ARP replies and announcements for the
    VIP suppressed, the Windows weak-host model set, all persistent and reversible.

    \b
    Typical run:
      arpfix inventory check -i site.yml
      arpfix plan   -i site.yml            # what would change (exit 3 if anything)
      arpfix apply  -i site.yml            # change it, journaled on each host
      arpfix audit  -i site.yml --format junit
      arpfix rollback -i site.yml          # restore what arpfix changed

    Exit codes: 0 ok, 1 a host failed, 2 usage/inventory error, 3 drift or changes
    pending (also: "no" at apply's or rollback's prompt), 4 verification failed, 130 interrupted.
    """


# -- shared options ---------------------------------------------------------------------------

def inventory_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("-i", "--inventory", "inventory_path", envvar="ARPFIX_INVENTORY", required=True,
                     metavar="FILE", help="Inventory: arpfix YAML or Ansible (INI/YAML/dir). Env: ARPFIX_INVENTORY."),
        click.option("--limit", "limit", multiple=True, metavar="PATTERN",
                     help="Only these hosts or groups (globs, comma-separated, repeatable)."),
        click.option("--allow-plaintext-secrets", is_flag=True,
                     help="Accept passwords written in the inventory (refused by default)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def connection_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--forks", default=20, show_default=True, type=click.IntRange(1, 500),
                     help="How many hosts at once."),
        click.option("--trust-on-first-use", is_flag=True,
                     help="SSH: record unknown host keys in known_hosts (changed keys are still refused)."),
        click.option("--insecure", is_flag=True,
                     help="WinRM: allow cert_validation: false and Basic auth over HTTP."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def verbosity_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("-q", "--quiet", is_flag=True, help="Only the result table / document, no progress.")(func)
    func = click.option("-v", "--verbose", count=True, help="More detail (repeat for more).")(func)
    return func


def format_option(*choices: str) -> Callable[..., Any]:
    return click.option("--format", "output_format", type=click.Choice(choices), default="table",
                        show_default=True, help="Output format.")


def _load(inventory_path: str, limit: tuple[str, ...], allow_plaintext_secrets: bool) -> tuple[Any, list[Any]]:
    from arpfix.inventory import load_inventory, select_hosts, skipped_notes

    inventory = load_inventory(inventory_path, allow_plaintext_secrets=allow_plaintext_secrets)
    hosts = select_hosts(inventory, limit)
    for note in skipped_notes(inventory, limit):
        click.echo(f"arpfix: note: {note}", err=True)
    return inventory, hosts


def _context(inventory: Any, trust_on_first_use: bool, insecure: bool, show_script: bool = False) -> Any:
    from arpfix.operations import RunContext
    from arpfix.transport import TransportOptions

    return RunContext(inventory, TransportOptions(trust_on_first_use, insecure), show_script)


def _run(hosts: list[Any], step: Callable[..., Any], ctx: Any, forks: int, label: str, quiet: bool) -> list[Any]:
    from arpfix.engine import run_on_hosts

    return run_on_hosts(hosts, lambda host: step(host, ctx), forks=forks, label=label, progress=not quiet)


def _echo(text: str) -> None:
    from arpfix.secrets import redact

    click.echo(redact(text))


# -- inventory --------------------------------------------------------------------------------

@cli.group(context_settings=CONTEXT)
def inventory() -> None:
    """Check an inventory or show how each host resolves (no host is contacted)."""


@inventory.command("check")
@inventory_options
def inventory_check(inventory_path: str, limit: tuple[str, ...], allow_plaintext_secrets: bool) -> None:
    """Validate the inventory; list every problem with file, line and field (exit 2).

    Also checks that the files it names (SSH key, CA bundle, client certificate) can be read here.
    """
    from arpfix.inventory import check_files
    from arpfix.render import inventory_counts

    inv, hosts = _load(inventory_path, limit, allow_plaintext_secrets)
    check_files(inv, hosts)
    click.echo(inventory_counts(inv, hosts))


@inventory.command("show")
@inventory_options
@format_option("table", "json")
def inventory_show(inventory_path: str, limit: tuple[str, ...], allow_plaintext_secrets: bool, output_format: str) -> None:
    """The resolved per-host view (host > group > defaults). Secrets show only their source."""
    from arpfix.render import host_view, inventory_table
    from arpfix.report import as_json

    inv, hosts = _load(inventory_path, limit, allow_plaintext_secrets)
    views = [host_view(inv, h) for h in hosts]
    if output_format == "json":
        _echo(as_json({"inventory": inv.path, "hosts": views}))
        return
    _echo(inventory_table(views))


# -- host commands ----------------------------------------------------------------------------

def _finish(results: list[Any], success_codes: dict[str, Exit]) -> None:
    if getattr(results, "interrupted", False):
        raise SystemExit(Exit.INTERRUPTED)
    if any(r.status in ("error", "unreachable", "failed", "partial") for r in results):
        raise SystemExit(Exit.FAILED)
    for status, code in success_codes.items():
        if any(r.status == status for r in results):
            raise SystemExit(code)
    raise SystemExit(Exit.OK)


def _nothing(note: str, output_format: str, quiet: bool) -> None:
    """No host to work on: say so (instead of an empty table) and exit 0."""
    from arpfix.report import as_json, hosts_document, junit

    if output_format == "table":
        click.echo(note)
    else:
        _echo(as_json(hosts_document([])) if output_format == "json" else junit([], "arpfix"))
        if not quiet:
            click.echo(note, err=True)
    raise SystemExit(Exit.OK)


def _report(results: list[Any], output_format: str, table_text: Callable[[], str], verbose: int, quiet: bool,
            suite: str = "", document: dict[str, Any] | None = None) -> None:
    """Print the results in the chosen format, the -v details, and the one-line summary on stderr."""
    from arpfix.render import details, summary
    from arpfix.report import as_json, hosts_document, junit

    if output_format == "json":
        _echo(as_json(document or hosts_document(results)))
    elif output_format == "junit":
        _echo(junit(results, suite))
    else:
        _echo(table_text())
        for r in results:  # what the host's run wants a person to know (plan notes, values rollback left)
            for note in r.extra.get("notes", []):
                click.echo(f"{r.name}: note: {note}", err=True)
            for left in r.extra.get("left", []):
                click.echo(f"{r.name}: left as is: {left}", err=True)
        if verbose:
            _echo(details(results, verbose))
    if not quiet:
        click.echo(f"\n{summary(results)}", err=True)


@cli.command(context_settings=CONTEXT)
@inventory_options
@connection_options
@format_option("table", "json")
@verbosity_options
def facts(inventory_path: str, limit: tuple[str, ...], allow_plaintext_secrets: bool, forks: int,
          trust_on_first_use: bool, insecure: bool, output_format: str, verbose: int, quiet: bool) -> None:
    """Read each host's state (read-only, one round trip per host)."""
    from arpfix import operations
    from arpfix.render import facts_table, nothing_to_do
    from arpfix.report import use_colour

    inv, hosts = _load(inventory_path, limit, allow_plaintext_secrets)
    if not hosts:
        _nothing(nothing_to_do(inv, hosts, "read"), output_format, quiet)
    results = _run(hosts, operations.facts, _context(inv, trust_on_first_use, insecure), forks, "facts", quiet)
    _report(results, output_format, lambda: facts_table(results, use_colour()), verbose, quiet)
    _finish(results, {})


@cli.command(context_settings=CONTEXT)
@inventory_options
@connection_options
@format_option("table", "json")
@click.option("--show-script", is_flag=True,
              help="Print the exact script apply would run on each host, after the text of the files it writes.")
@verbosity_options
def plan(inventory_path: str, limit: tuple[str, ...], allow_plaintext_secrets: bool, forks: int,
         trust_on_first_use: bool, insecure: bool, output_format: str, show_script: bool,
         verbose: int, quiet: bool) -> None:
    """Show what apply would change, per host, `from -> to`. Exit 3 if anything is pending."""
    from arpfix import operations
    from arpfix.render import changes_table, nothing_to_do, script_section
    from arpfix.report import hosts_document, use_colour

    inv, hosts = _load(inventory_path, limit, allow_plaintext_secrets)
    targets = hosts_for_change(inv, hosts)
    if not targets:
        _nothing(nothing_to_do(inv, hosts, "plan"), output_format, quiet)
    ctx = _context(inv, trust_on_first_use, insecure, show_script)
    results = _run(targets, operations.plan, ctx, forks, "plan", quiet)
    document = hosts_document(results)
    for host_json, r in zip(document["hosts"], results):
        if r.script:
            host_json["script"] = r.script

    def text() -> str:
        scripts = [script_section(r, "script") for r in results if r.script]
        return "\n".join([changes_table(results, use_colour(), verbose), *scripts])

    _report(results, output_format, text, verbose, quiet, document=document)
    _finish(results, {"pending": Exit.PENDING, "blocked": Exit.PENDING})


def hosts_for_change(inv: Any, hosts: list[Any]) -> list[Any]:
    """Real servers, and Linux hosts behind no VIP (they may hold arpfix state the inventory no
    longer wants: a server taken out of a pool). The agent host prepares itself."""
    agents = inv.agent_hosts
    return [h for h in hosts if h.name not in agents and (inv.vips_for(h.name) or h.platform == "linux")]


def _preview_and_confirm(action: str, preview: Callable[[], list[Any]], yes: bool) -> None:
    """On a terminal without --yes: show what `action` would do (on stderr), then ask.

    Nothing to do: say so and exit 0. Answer no: "nothing changed", exit 3 (the changes are still
    pending). Not on a terminal: --yes is required (exit 2, before any host is contacted).
    """
    from arpfix.render import changes_table, summary
    from arpfix.report import plural, use_colour

    if yes:
        return
    if not sys.stdin.isatty():
        raise ArpfixError(f"{action} changes hosts: confirm with --yes when not on a terminal", Exit.USAGE)
    results = preview()
    click.echo(changes_table(results, use_colour(sys.stderr)), err=True)
    click.echo(f"\n{summary(results)}", err=True)
    if getattr(results, "interrupted", False):
        raise SystemExit(Exit.INTERRUPTED)
    todo = [r for r in results if r.status == "pending"]
    if not todo:
        click.echo(f"{action}: nothing to do", err=True)
        _finish(results, {"blocked": Exit.PENDING})
    changes = sum(len(r.changes) for r in todo)
    if not click.confirm(f"{action}: make these {plural(changes, 'change')} on {plural(len(todo), 'host')}?",
                         err=True):
        click.echo(f"{action}: answered no: nothing changed", err=True)
        raise SystemExit(Exit.PENDING)


@cli.command(context_settings=CONTEXT)
@inventory_options
@connection_options
@format_option("table", "json")
@click.option("-y", "--yes", is_flag=True,
              help="Do not show the plan and ask first (required when not on a terminal).")
@verbosity_options
def apply(inventory_path: str, limit: tuple[str, ...], allow_plaintext_secrets: bool, forks: int,
          trust_on_first_use: bool, insecure: bool, output_format: str, yes: bool, verbose: int,
          quiet: bool) -> None:
    """Prepare the real servers: one journaled round trip per host; a second run changes nothing.

    On a terminal without --yes, the plan is shown first and apply asks; answering no changes
    nothing and exits 3.
    """
    from arpfix import operations
    from arpfix.render import changes_table, nothing_to_do
    from arpfix.report import use_colour

    inv, hosts = _load(inventory_path, limit, allow_plaintext_secrets)
    targets = hosts_for_change(inv, hosts)
    if not targets:
        _nothing(nothing_to_do(inv, hosts, "apply"), output_format, quiet)
    ctx = _context(inv, trust_on_first_use, insecure)
    _preview_and_confirm("apply", lambda: _run(targets, operations.plan, ctx, forks, "plan", quiet), yes)
    results = _run(targets, operations.apply, ctx, forks, "apply", quiet)
    _report(results, output_format, lambda: changes_table(results, use_colour(), verbose), verbose, quiet)
    _finish(results, {"blocked": Exit.PENDING})


@cli.command(context_settings=CONTEXT)
@inventory_options
@connection_options
@format_option("table", "json", "junit")
@verbosity_options
def audit(inventory_path: str, limit: tuple[str, ...], allow_plaintext_secrets: bool, forks: int,
          trust_on_first_use: bool, insecure: bool, output_format: str, verbose: int, quiet: bool) -> None:
    """Check compliance (runtime and on disk); changes nothing. Exit 0 compliant, 3 drift, 1 error."""
    from arpfix import operations
    from arpfix.render import audit_table, nothing_to_do
    from arpfix.report import use_colour

    inv, hosts = _load(inventory_path, limit, allow_plaintext_secrets)
    targets = hosts_for_change(inv, hosts)
    if not targets:
        _nothing(nothing_to_do(inv, hosts, "audit"), output_format, quiet)
    results = _run(targets, operations.audit, _context(inv, trust_on_first_use, insecure), forks, "audit", quiet)
    _report(results, output_format, lambda: audit_table(results, use_colour(), verbose), verbose, quiet,
            suite="arpfix audit")
    _finish(results, {"drift": Exit.PENDING})


@cli.command(context_settings=CONTEXT)
@inventory_options
@connection_options
@format_option("table", "json")
@click.option("-y", "--yes", is_flag=True,
              help="Do not show what would be undone and ask first (required when not on a terminal).")
@click.option("--dry-run", is_flag=True, help="Only show what rollback would restore or remove.")
@click.option("--show-script", is_flag=True, help="With --dry-run: print the rollback script.")
@verbosity_options
def rollback(inventory_path: str, limit: tuple[str, ...], allow_plaintext_secrets: bool, forks: int,
             trust_on_first_use: bool, insecure: bool, output_format: str, yes: bool, dry_run: bool,
             show_script: bool, verbose: int, quiet: bool) -> None:
    """Undo what arpfix changed, from each host's journal, in reverse order.

    A value is restored only where it is still what arpfix set; only what arpfix created is
    removed. Idempotent; works after a partial apply. On a terminal without --yes, what would be
    undone is shown first and rollback asks; answering no changes nothing and exits 3.
    """
    from arpfix import operations
    from arpfix.render import changes_table, script_section
    from arpfix.report import use_colour

    inv, hosts = _load(inventory_path, limit, allow_plaintext_secrets)
    targets = [h for h in hosts if h.name not in inv.agent_hosts]
    if not targets:
        _nothing(f"{inv.path}: no host to roll back (the selected hosts are the agent's)", output_format, quiet)
    ctx = _context(inv, trust_on_first_use, insecure, show_script)
    if not dry_run:
        preview = functools.partial(operations.rollback, dry_run=True)
        _preview_and_confirm("rollback", lambda: _run(targets, preview, ctx, forks, "rollback --dry-run", quiet),
                             yes)
    step = functools.partial(operations.rollback, dry_run=dry_run)
    results = _run(targets, step, ctx, forks, "rollback", quiet)

    def text() -> str:
        lines = [changes_table(results, use_colour(), verbose)]
        lines += [script_section(r, "rollback script") for r in results if r.script]
        return "\n".join(lines)

    _report(results, output_format, text, verbose, quiet)
    _finish(results, {"pending": Exit.PENDING} if dry_run else {"kept": Exit.PENDING})


@cli.command(context_settings=CONTEXT)
@inventory_options
@connection_options
@format_option("table", "json", "junit")
@click.option("--probe-here", is_flag=True,
              help="Run the probes in this process (arpfix runs on the agent host) instead of over SSH.")
@click.option("--service", is_flag=True,
              help="Also connect to each VIP:port from this host, end to end through whatever forwards "
                   "the VIP (the load balancer or arpfix's agent).")
@verbosity_options
def verify(inventory_path: str, limit: tuple[str, ...], allow_plaintext_secrets: bool, forks: int,
           trust_on_first_use: bool, insecure: bool, output_format: str, probe_here: bool, service: bool,
           verbose: int, quiet: bool) -> None:
    """Prove from the segment that every real server is DR-ready.

    The audit of each server, plus probes from the inventory's agent host: who answers ARP for
    each VIP, and a TCP SYN to VIP:port sent to each server's MAC exactly as the load balancer
    sends it (must be answered by a SYN-ACK from the VIP). Exit 0 all verified, 4 any failed,
    1 error.
    """
    from arpfix.render import nothing_to_do, verify_failed, verify_junit, verify_summary, verify_table
    from arpfix.report import as_json, use_colour
    from arpfix.verify import verify as run_verify

    inv, hosts = _load(inventory_path, limit, allow_plaintext_secrets)
    if not any(inv.vips_for(h.name) for h in hosts):
        _nothing(nothing_to_do(inv, hosts, "verify", real_servers_only=True), output_format, quiet)
    document = run_verify(inv, hosts, _context(inv, trust_on_first_use, insecure), forks=forks,
                          progress=not quiet, probe_here=probe_here, end_to_end=service)
    if output_format == "json":
        _echo(as_json(document))
    elif output_format == "junit":
        _echo(verify_junit(document))
    else:
        _echo(verify_table(document, use_colour(), verbose))
    if not quiet:
        click.echo(f"\n{verify_summary(document)}", err=True)
    if any(h["status"] == "error" for h in document["hosts"]) or document["segment"].get("error"):
        raise SystemExit(Exit.FAILED)
    raise SystemExit(Exit.VERIFY_FAILED if verify_failed(document) else Exit.OK)


# -- entry point ------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    """Console entry point: every user-caused error ends in one line and its exit code."""
    from arpfix.secrets import redact

    try:
        try:
            cli.main(args=argv, prog_name="arpfix", standalone_mode=False)
        except SystemExit as exc:
            if exc.code == Exit.INTERRUPTED:
                _exit_now(Exit.INTERRUPTED)
            raise
    except click.exceptions.Abort:
        click.echo("arpfix: interrupted", err=True)
        sys.exit(Exit.INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(Exit.USAGE)
    except ArpfixError as exc:
        for line in redact(str(exc)).splitlines() or ["error"]:
            click.echo(f"arpfix: error: {line}", err=True)
        sys.exit(int(exc.exit_code))
    except KeyboardInterrupt:
        click.echo("arpfix: interrupted", err=True)
        sys.exit(Exit.INTERRUPTED)
    except BrokenPipeError:
        sys.exit(Exit.OK)
    sys.exit(Exit.OK)


def _exit_now(code: int) -> None:
    """Exit after an interrupted run without waiting for hosts still in flight (their worker
    threads would otherwise hold the process until their scripts end)."""
    import os
    import threading

    sys.stdout.flush()
    sys.stderr.flush()
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        os._exit(int(code))
    sys.exit(int(code))


if __name__ == "__main__":  # pragma: no cover
    main()
