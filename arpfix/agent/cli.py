"""`arpfix agent ...`: run the DR forwarding agent, show its status, drain a server."""

from __future__ import annotations

import os
import signal

import click

from arpfix.errors import ArpfixError, UsageError
from arpfix.helptext import SentenceGroup

STATE_DIR = click.option("--state-dir", default=None, envvar="ARPFIX_AGENT_STATE_DIR",
                         help="Where the running agent keeps its state (default /run/arpfix-agent).")


@click.group("agent", cls=SentenceGroup)
def agent() -> None:
    """Run the bundled DR-mode forwarding agent (labs, pre-go-live proofs, probes)."""


@agent.command("run")
@click.option("-i", "--inventory", "inventory", required=True, envvar="ARPFIX_INVENTORY", metavar="FILE",
              help="Inventory file (arpfix YAML or Ansible). Env: ARPFIX_INVENTORY.")
@click.option("--agent", "agent_name", default=None, help="Agent host (default: the inventory's agent.host).")
@click.option("--dataplane", type=click.Choice(["auto", "nft", "afpacket"]), default="auto", show_default=True,
              help="Forwarding: nft (kernel, netdev ingress), afpacket (user-space fallback), auto (nft where the "
                   "kernel accepts the ruleset, else afpacket).")
@click.option("--probe-only", is_flag=True, help="Probe VIPs and servers, report, change nothing.")
@click.option("--force-claim", is_flag=True, help="Claim a VIP even when another MAC already answers for it.")
@click.option("--interval", type=click.FloatRange(0.1, 60), default=1.0, show_default=True,
              help="Seconds between health checks.")
@click.option("--rise", type=click.IntRange(1, 100), default=2, show_default=True,
              help="Health checks in a row that must pass before a server gets traffic again.")
@click.option("--fall", type=click.IntRange(1, 100), default=2, show_default=True,
              help="Health checks in a row that must fail before a server is taken out of the slot table.")
@click.option("--check-port", type=click.IntRange(1, 65535), default=None,
              help="Health-check this TCP port instead of each service port.")
@click.option("--dr-check", is_flag=True,
              help="Also health-check the DR path: a SYN to VIP:port sent to each server's MAC must be "
                   "answered from the VIP (catches servers that pass a check on their own address).")
@STATE_DIR
def run(inventory: str, agent_name: str | None, dataplane: str, probe_only: bool, force_claim: bool,
        interval: float, rise: int, fall: int, check_port: int | None, dr_check: bool, state_dir: str | None) -> None:
    """Forward the inventory's VIPs to their real servers until SIGTERM/SIGINT."""
    from arpfix.agent.runner import Agent

    if os.geteuid() != 0:
        raise UsageError("the agent needs root (nftables, raw sockets, addresses)")
    code = Agent(inventory, agent_name, dataplane, probe_only, force_claim, state_dir, interval, rise, fall,
                 check_port, dr_check=dr_check).run()
    raise SystemExit(code)


@agent.command("status")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="Output format.")
@STATE_DIR
def status(fmt: str, state_dir: str | None) -> None:
    """Health, weight, slots and forwarded packets per VIP and server."""
    from arpfix.agent import status as st
    from arpfix.agent.runner import state_dir as default_dir

    click.echo(st.render(st.collect(st.state_path(default_dir(state_dir))), fmt))


@agent.command("keepalived")
@click.option("-i", "--inventory", "inventory", required=True, help="Inventory file (with `agent.hosts: [a, b]`).")
@click.option("--agent", "agent_name", default=None, help="This node (default: the pair host whose address is local).")
@click.option("--advert-int", type=click.FloatRange(0.05, 255), default=1.0, show_default=True,
              help="VRRP advertisement interval in seconds (below 1 s: VRRPv3).")
@click.option("--garp-refresh", type=click.IntRange(1, 3600), default=10, show_default=True,
              help="Seconds between gratuitous ARP / unsolicited NA refreshes while MASTER.")
@STATE_DIR
def keepalived_config(inventory: str, agent_name: str | None, advert_int: float, garp_refresh: int,
                      state_dir: str | None) -> None:
    """Write this node's keepalived.conf, check.sh and notify.sh into the state directory (a pair)."""
    from arpfix.agent import config as cfg
    from arpfix.agent import keepalived
    from arpfix.agent.runner import state_dir as default_dir

    directory = os.path.abspath(default_dir(state_dir))
    config = cfg.build(cfg.load(inventory), agent_name)
    for path in keepalived.write(config, directory, advert_int=advert_int, garp_refresh=garp_refresh):
        click.echo(path)


@agent.command("drain")
@click.argument("server")
@click.option("--undo", is_flag=True, help="Give the server new flows again.")
@STATE_DIR
def drain(server: str, undo: bool, state_dir: str | None) -> None:
    """No new flows to SERVER; its open flows stay on it."""
    from arpfix.agent.runner import pid_alive, read_json, write_json
    from arpfix.agent.runner import state_dir as default_dir

    directory = default_dir(state_dir)
    state = read_json(os.path.join(directory, "agent.json"))
    if not state or not pid_alive(int(state.get("pid", 0))):
        raise ArpfixError(f"no running agent (state dir {directory})")
    known = {s["name"] for v in state.get("vips", []) for s in v["servers"]}
    if server not in known:
        raise UsageError(f"{server!r} is not a real server of the running agent ({', '.join(sorted(known))})")
    control_file = os.path.join(directory, "control.json")
    drained = set((read_json(control_file) or {}).get("drained", []))
    drained = drained - {server} if undo else drained | {server}
    write_json(control_file, {"drained": sorted(drained)})
    os.kill(int(state["pid"]), signal.SIGUSR1)
    click.echo(f"{'undrained' if undo else 'drained'} {server}")
