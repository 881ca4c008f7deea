"""The arpfix command line: parse options, call the engine, render, exit with one documented code.

Exit codes (arpfix.exitcodes.Exit): 0 ok/compliant/nothing to do; 1 a host failed; 2 usage or
inventory error (no host contacted); 3 drift or changes pending; 4 verification failed; 130 interrupted.
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

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class LazyGroup(click.Group):
    """Subcommand groups imported only when used, so `arpfix --help` stays fast."""

    lazy: dict[str, tuple[str, str]] = {
        "lab": ("arpfix.lab.cli:lab", "Build, inspect and remove the built-in lab of real Linux servers."),
        "agent": ("arpfix.agent.cli:agent", "Run the bundled DR-mode forwarding agent."),
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
            if name in self.lazy:
                rows.append((name, self.lazy[name][1]))
            else:
                command = super().get_command(ctx, name)
                if command is not None and not command.hidden:
                    rows.append((name, command.get_short_help_str(80)))
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
    pending, 4 verification failed, 130 interrupted.
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
    from arpfix.inventory import load_inventory, select_hosts

    inventory = load_inventory(inventory_path, allow_plaintext_secrets=allow_plaintext_secrets)
    return inventory, select_hosts(inventory, limit)


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
    """Validate the inventory; list every problem with file, line and field (exit 2)."""
    inv, hosts = _load(inventory_path, limit, allow_plaintext_secrets)
    linux = sum(1 for h in hosts if h.platform == "linux")
    click.echo(
        f"{inventory_path}: ok: {len(hosts)} hosts ({linux} linux, {len(hosts) - linux} windows), "
        f"{len(inv.vips)} VIPs, {len(inv.real_servers)} real servers"
    )


def _host_view(inv: Any, host: Any) -> dict[str, Any]:
    view: dict[str, Any] = {
        "name": host.name,
        "platform": host.platform,
        "address": str(host.address),
        "connect": host.connect,
        "groups": list(host.groups),
        "vips": [
            {"name": v.name, "address": str(v.address), "services": [str(s) for s in v.services]}
            for v in inv.vips_for(host.name)
        ],
    }
    if host.platform == "linux":
        s = host.ssh
        view["method"] = host.method
        view["ssh"] = {"user": s.user, "port": s.port, "key_file": s.key_file, "known_hosts": s.known_hosts,
                       "sudo": s.sudo, "password": str(s.password) if s.password else None,
                       "passphrase": str(s.passphrase) if s.passphrase else None}
    else:
        w = host.winrm
        view["windows_profile"] = host.windows_profile
        view["keep_bindings"] = list(host.keep_bindings)
        view["winrm"] = {"scheme": w.scheme, "port": w.port, "auth": w.auth, "user": w.user,
                         "password": str(w.password) if w.password else None,
                         "ca_bundle": w.ca_bundle, "cert_validation": w.cert_validation}
    if host.nic:
        view["nic"] = host.nic
    if host.name in _agent_hosts(inv):
        view["role"] = "agent"
    return view


@inventory.command("show")
@inventory_options
@format_option("table", "json")
def inventory_show(inventory_path: str, limit: tuple[str, ...], allow_plaintext_secrets: bool, output_format: str) -> None:
    """The resolved per-host view (host > group > defaults). Secrets show only their source."""
    from arpfix.report import as_json, table

    inv, hosts = _load(inventory_path, limit, allow_plaintext_secrets)
    views = [_host_view(inv, h) for h in hosts]
    if output_format == "json":
        _echo(as_json({"inventory": inv.path, "hosts": views}))
        return
    rows = []
    for view in views:
        transport = view.get("ssh") or view.get("winrm") or {}
        via = f"ssh {transport.get('user')}@{view['connect']}:{transport.get('port')}" if "ssh" in view else \
            f"winrm {transport.get('scheme')} {view['connect']}:{transport.get('port')} {transport.get('auth')}"
        rows.append([view["name"], view["platform"], view["address"], via, ",".join(view["groups"]) or "-",
                     ", ".join(v["address"] for v in view["vips"]) or view.get("role", "-")])
    _echo(table(rows, ["host", "platform", "address", "connection", "groups", "VIPs"]))


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


def _status_cell(result: Any, colour: bool) -> str:
    from arpfix.report import paint

    return paint(result.status, result.status, colour)


@cli.command(context_settings=CONTEXT)
@inventory_options
@connection_options
@format_option("table", "json")
@verbosity_options
def facts(inventory_path: str, limit: tuple[str, ...], allow_plaintext_secrets: bool, forks: int,
          trust_on_first_use: bool, insecure: bool, output_format: str, verbose: int, quiet: bool) -> None:
    """Read each host's state (read-only, one round trip per host)."""
    from arpfix import operations
    from arpfix.report import as_json, hosts_document, table, use_colour

    inv, hosts = _load(inventory_path, limit, allow_plaintext_secrets)
    results = _run(hosts, operations.facts, _context(inv, trust_on_first_use, insecure), forks, "facts", quiet)
    if output_format == "json":
        _echo(as_json(hosts_document(results)))
    else:
        colour = use_colour()
        rows = []
        for r in results:
            f = r.facts or {}
            rows.append([r.name, r.platform, _status_cell(r, colour), f.get("os", {}).get("name", "-") if f else "-",
                         f.get("primary_nic", {}).get("name", "-") if f else "-",
                         ", ".join(f.get("vips_present", [])) if f else "-", r.error or ""])
        _echo(table(rows, ["host", "platform", "status", "os", "primary NIC", "VIPs present", "error"]))
    _finish(results, {})


def _changes_table(results: list[Any], colour: bool) -> str:
    from arpfix.report import short, table

    rows = []
    for r in results:
        if r.error or not r.changes:
            rows.append([r.name, _status_cell(r, colour), "-", "", "", r.error or "nothing to do"])
        for c in r.changes:
            rows.append([r.name, _status_cell(r, colour), c.subject, short(c.before), short(c.after), c.detail])
    return table(rows, ["host", "status", "change", "from", "to", "detail"])


@cli.command(context_settings=CONTEXT)
@inventory_options
@connection_options
@format_option("table", "json")
@click.option("--show-script", is_flag=True, help="Print the exact script apply would run on each host.")
@verbosity_options
def plan(inventory_path: str, limit: tuple[str, ...], allow_plaintext_secrets: bool, forks: int,
         trust_on_first_use: bool, insecure: bool, output_format: str, show_script: bool,
         verbose: int, quiet: bool) -> None:
    """Show what apply would change, per host, `from -> to`. Exit 3 if anything is pending."""
    from arpfix import operations
    from arpfix.report import as_json, hosts_document, use_colour

    inv, hosts = _load(inventory_path, limit, allow_plaintext_secrets)
    ctx = _context(inv, trust_on_first_use, insecure, show_script)
    results = _run(hosts_for_change(inv, hosts), operations.plan, ctx, forks, "plan", quiet)
    if output_format == "json":
        document = hosts_document(results)
        for host_json, r in zip(document["hosts"], results):
            if r.script:
                host_json["script"] = r.script
        _echo(as_json(document))
    else:
        _echo(_changes_table(results, use_colour()))
        for r in results:
            for note in r.extra.get("notes", []):
                click.echo(f"{r.name}: note: {note}", err=True)
        for r in results:
            if r.script:
                _echo(f"\n# ---- script for {r.name} ({r.platform}) ----\n{r.script}")
    _finish(results, {"pending": Exit.PENDING, "blocked": Exit.PENDING})


def hosts_for_change(inv: Any, hosts: list[Any]) -> list[Any]:
    """Real servers, and Linux hosts behind no VIP (they may hold arpfix state the inventory no
    longer wants: a server taken out of a pool). The agent host prepares itself."""
    agents = _agent_hosts(inv)
    return [h for h in hosts if h.name not in agents and (inv.vips_for(h.name) or h.platform == "linux")]


def _agent_hosts(inv: Any) -> set[str]:
    """The agent host, or both nodes of a keepalived pair."""
    if not inv.agent:
        return set()
    return {inv.agent.host, *inv.agent.hosts}


def _summary(results: list[Any]) -> str:
    """One line: how many hosts ended in which state ("6 hosts: 2 changed, 4 not started")."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    parts = ", ".join(f"{n} {status}" for status, n in counts.items())
    return f"{len(results)} host{'s' if len(results) != 1 else ''}: {parts}"


def _confirm(action: str, hosts: list[Any], yes: bool) -> None:
    if yes or not hosts:
        return
    if not sys.stdin.isatty():
        raise ArpfixError(f"{action} changes hosts: confirm with --yes when not on a terminal", Exit.USAGE)
    names = ", ".join(h.name for h in hosts[:10]) + (" ..." if len(hosts) > 10 else "")
    if not click.confirm(f"{action} on {len(hosts)} host(s): {names}?", err=True):
        raise SystemExit(Exit.OK)


@cli.command(context_settings=CONTEXT)
@inventory_options
@connection_options
@format_option("table", "json")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@verbosity_options
def apply(inventory_path: str, limit: tuple[str, ...], allow_plaintext_secrets: bool, forks: int,
          trust_on_first_use: bool, insecure: bool, output_format: str, yes: bool, verbose: int,
          quiet: bool) -> None:
    """Prepare the real servers: one journaled round trip per host; a second run changes nothing."""
    from arpfix import operations
    from arpfix.report import as_json, hosts_document, use_colour

    inv, hosts = _load(inventory_path, limit, allow_plaintext_secrets)
    targets = hosts_for_change(inv, hosts)
    _confirm("apply", targets, yes)
    results = _run(targets, operations.apply, _context(inv, trust_on_first_use, insecure), forks, "apply", quiet)
    if output_format == "json":
        _echo(as_json(hosts_document(results)))
    else:
        _echo(_changes_table(results, use_colour()))
        if not quiet:
            click.echo(f"\n{_summary(results)}", err=True)
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
    from arpfix.report import as_json, hosts_document, junit, short, table, use_colour

    inv, hosts = _load(inventory_path, limit, allow_plaintext_secrets)
    results = _run(hosts_for_change(inv, hosts), operations.audit, _context(inv, trust_on_first_use, insecure),
                   forks, "audit", quiet)
    if output_format == "json":
        _echo(as_json(hosts_document(results)))
    elif output_format == "junit":
        _echo(junit(results, "arpfix audit"))
    else:
        colour = use_colour()
        rows = []
        for r in results:
            if r.error:
                rows.append([r.name, _status_cell(r, colour), "-", "", "", "", r.error])
            for f in r.findings:
                if f.ok and not verbose:
                    continue
                mark = "ok" if f.ok else ("warning" if f.severity == "warning" else "DRIFT")
                detail = (f.detail or f.source) + (f"; fix: {f.fix}" if f.fix and not f.ok else "")
                rows.append([r.name, _status_cell(r, colour), f.check, short(f.expected), short(f.actual),
                             mark, detail])
            if not r.error and all(f.ok for f in r.findings) and not verbose:
                rows.append([r.name, _status_cell(r, colour), f"{len(r.findings)} checks", "", "", "ok", ""])
        _echo(table(rows, ["host", "status", "check", "expected", "actual", "result", "detail"]))
    _finish(results, {"drift": Exit.PENDING})


@cli.command(context_settings=CONTEXT)
@inventory_options
@connection_options
@format_option("table", "json")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Only show what rollback would restore or remove.")
@click.option("--show-script", is_flag=True, help="With --dry-run: print the rollback script.")
@verbosity_options
def rollback(inventory_path: str, limit: tuple[str, ...], allow_plaintext_secrets: bool, forks: int,
             trust_on_first_use: bool, insecure: bool, output_format: str, yes: bool, dry_run: bool,
             show_script: bool, verbose: int, quiet: bool) -> None:
    """Undo what arpfix changed, from each host's journal, in reverse order.

    A value is restored only where it is still what arpfix set; only what arpfix created is
    removed. Idempotent; works after a partial apply.
    """
    from arpfix import operations
    from arpfix.report import as_json, hosts_document, use_colour

    inv, hosts = _load(inventory_path, limit, allow_plaintext_secrets)
    if not dry_run:
        _confirm("rollback", hosts, yes)
    ctx = _context(inv, trust_on_first_use, insecure, show_script)
    step = functools.partial(operations.rollback, dry_run=dry_run)
    results = _run([h for h in hosts if h.name not in _agent_hosts(inv)], step, ctx, forks,
                   "rollback", quiet)
    if output_format == "json":
        _echo(as_json(hosts_document(results)))
    else:
        _echo(_changes_table(results, use_colour()))
        for r in results:
            for left in r.extra.get("left", []):
                click.echo(f"{r.name}: left as is: {left}", err=True)
            if r.script:
                _echo(f"\n# ---- rollback script for {r.name} ----\n{r.script}")
        if not quiet:
            click.echo(f"\n{_summary(results)}", err=True)
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
    from arpfix.model import HostResult
    from arpfix.report import as_json, junit, paint, table, use_colour
    from arpfix.verify import verify as run_verify

    inv, hosts = _load(inventory_path, limit, allow_plaintext_secrets)
    document = run_verify(inv, hosts, _context(inv, trust_on_first_use, insecure), forks=forks,
                          progress=not quiet, probe_here=probe_here, end_to_end=service)
    if output_format == "json":
        _echo(as_json(document))
    elif output_format == "junit":
        results = [HostResult(h["name"], h["platform"], h["status"], error=h.get("error", ""),
                              extra={"probes": h["probes"]}) for h in document["hosts"]]
        _echo(junit(results, "arpfix verify"))
    else:
        colour = use_colour()
        rows = []
        for h in document["hosts"]:
            if h.get("error"):
                rows.append([h["name"], paint(h["status"], h["status"], colour), "-", "", h["error"]])
            for p in h["probes"]:
                rows.append([h["name"], paint(h["status"], h["status"], colour), p["probe"],
                             "ok" if p["ok"] else "FAIL", p["detail"]])
        _echo(table(rows, ["host", "status", "probe", "result", "detail"]))
        replies = document["segment"]["arp_replies"]
        if replies:
            _echo("\nARP replies for the VIPs on the segment:\n" + table(
                [[r["vip"], r["mac"], r["host"] or "unknown", "expected" if r["allowed"] else "LEAK"] for r in replies],
                ["vip", "mac", "owner", ""]))
        if document["segment"].get("error"):
            _echo(f"probes: {document['segment']['error']}")
        for probe_result in document["segment"].get("service", []):
            _echo(f"service {probe_result['vip']}:tcp/{probe_result['port']}: "
                  f"{'ok' if probe_result['ok'] else 'FAIL'}: {probe_result['detail']}")
    statuses = {h["status"] for h in document["hosts"]}
    if "error" in statuses or document["segment"].get("error"):
        raise SystemExit(Exit.FAILED)
    if "failed" in statuses or document["segment"]["unknown_answers"] or \
            not all(p["ok"] for p in document["segment"].get("service", [])):
        raise SystemExit(Exit.VERIFY_FAILED)
    raise SystemExit(Exit.OK)


@cli.group(context_settings=CONTEXT)
def probe() -> None:
    """Low-level segment probes (raw sockets, root, run on a host of the segment)."""


@probe.command("arp")
@click.option("--interface", "-I", required=True, help="Segment interface to probe from.")
@click.option("--window", default=1.5, show_default=True, type=click.FloatRange(0.1, 30), help="Seconds to listen.")
@click.argument("vip")
def probe_arp(interface: str, window: float, vip: str) -> None:
    """Ask who-has VIP and list every MAC that answers (exit 0 if none or all listed)."""
    from arpfix.probe.segment import arp_probe

    _require_ipv4(vip)
    try:
        replies = arp_probe(interface, vip, window)
    except OSError as exc:
        raise ArpfixError(f"arp probe on {interface}: {exc.strerror or exc}") from None
    for reply in replies:
        click.echo(f"{vip} is-at {reply['mac']}")
    if not replies:
        click.echo(f"{vip}: no ARP reply within {window:g}s")


@probe.command("dr")
@click.option("--interface", "-I", required=True, help="Segment interface to probe from.")
@click.option("--mac", required=True, help="The real server's MAC (where the load balancer sends).")
@click.option("--server-ip", required=True, help="The real server's own address (to spot replies from it).")
@click.option("--port", required=True, type=click.IntRange(1, 65535), help="Service port (TCP).")
@click.option("--timeout", default=1.5, show_default=True, type=click.FloatRange(0.1, 30))
@click.argument("vip")
def probe_dr(interface: str, mac: str, server_ip: str, port: int, timeout: float, vip: str) -> None:
    """Send a SYN to VIP:PORT to the server's MAC; pass on a SYN-ACK from the VIP (exit 4 otherwise)."""
    from arpfix.inventory import MAC
    from arpfix.probe.segment import dr_probe

    _require_ipv4(vip)
    _require_ipv4(server_ip)
    if not MAC.match(mac):
        raise click.BadParameter(f"invalid MAC {mac!r}", param_hint="--mac")
    try:
        outcome = dr_probe(interface, vip, mac.lower(), server_ip, port, timeout)
    except OSError as exc:
        raise ArpfixError(f"dr probe on {interface}: {exc.strerror or exc}") from None
    click.echo(("ok: " if outcome["ok"] else "FAIL: ") + outcome["detail"])
    raise SystemExit(Exit.OK if outcome["ok"] else Exit.VERIFY_FAILED)


def _require_ipv4(text: str) -> None:
    import ipaddress

    try:
        if ipaddress.ip_address(text).version == 4:
            return
    except ValueError:
        pass
    raise click.BadParameter(f"{text!r} is not an IPv4 address (the probes speak IPv4)")


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
