"""`arpfix probe arp|dr`: the segment probes by hand, for troubleshooting (root, raw sockets)."""

from __future__ import annotations

import click

from arpfix.errors import ArpfixError
from arpfix.exitcodes import Exit
from arpfix.helptext import SentenceGroup

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=SentenceGroup, context_settings=CONTEXT)
def probe() -> None:
    """Low-level segment probes (raw sockets, root, run on a host of the segment)."""


@probe.command("arp")
@click.option("--interface", "-I", required=True, help="Segment interface to probe from.")
@click.option("--window", default=1.5, show_default=True, type=click.FloatRange(0.1, 30), help="Seconds to listen.")
@click.argument("vip")
def probe_arp(interface: str, window: float, vip: str) -> None:
    """List every MAC that answers who-has VIP on the segment.

    Exit 0 whatever answers, 1 if the probe cannot run (no root, no such interface), 2 on a
    bad argument. Read the list: more than one MAC, or a real server's, is the ARP problem.
    """
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
@click.option("--timeout", default=1.5, show_default=True, type=click.FloatRange(0.1, 30),
              help="Seconds to wait for the server's answer.")
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
