"""`arpfix lab demo`: the main job on the built-in lab, told as a story a newcomer can follow."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import click

from arpfix.exitcodes import Exit
from arpfix.report import use_colour


class Story:
    def __init__(self, lab_name: str) -> None:
        self.lab_name = lab_name
        self.colour = use_colour()
        self.step = 0
        self.started = time.monotonic()

    def chapter(self, title: str, text: str) -> None:
        self.step += 1
        heading = f"\n== {self.step}. {title}"
        click.echo(click.style(heading, bold=True, fg="cyan") if self.colour else heading)
        for line in text.strip().splitlines():
            click.echo(f"   {line.strip()}")

    def arpfix(self, *args: str, expect: tuple[int, ...] = (0,), show: bool = True) -> subprocess.CompletedProcess[str]:
        command = ["arpfix", *args]
        click.echo(click.style(f"\n$ {' '.join(command)}", fg="yellow") if self.colour else f"\n$ {' '.join(command)}")
        result = subprocess.run([sys.executable, "-m", "arpfix.cli", *args], capture_output=True, text=True,
                                env=_env(self.colour))
        if show:
            output = (result.stdout + result.stderr).rstrip()
            click.echo(output)
        click.echo(f"(exit {result.returncode})")
        if result.returncode not in expect:
            raise click.ClickException(f"the demo stopped: `{' '.join(command)}` exited {result.returncode}, "
                                       f"expected {' or '.join(map(str, expect))}")
        return result

    def ok(self, text: str) -> None:
        click.echo(click.style(f"   -> {text}", fg="green") if self.colour else f"   -> {text}")


def _env(colour: bool) -> dict[str, str]:
    import os

    env = dict(os.environ)
    if not colour:
        env["NO_COLOR"] = "1"
    return env


def _arping(lab_name: str, vip: str) -> set[str]:
    from arpfix.lab.core import run_in

    out = run_in(lab_name, "client", ["arping", "-c", "3", "-w", "4", "-I", "eth0", vip], check=False).stdout
    return {m.lower() for m in re.findall(r"([0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5})", out)}


CLIENT_PROGRAM = """
import socket, sys, collections
seen = collections.Counter()
for attempt in range(int(sys.argv[2])):
    with socket.create_connection((sys.argv[1], 80), timeout=3) as conn:
        line = conn.makefile().readline().strip()
    seen[line] += 1
for line, count in sorted(seen.items()):
    print(f"{count:3d} x  {line}")
"""


def _traffic_through_agent(story: Story, name: str, inventory: str, vip: str) -> None:
    import os
    import signal

    from arpfix.lab.core import lab_exec_argv, run_in

    click.echo(click.style(f"\n$ arpfix agent run -i {inventory}   (on the agent host)", fg="yellow")
               if story.colour else f"\n$ arpfix agent run -i {inventory}   (on the agent host)")
    agent = subprocess.Popen(lab_exec_argv(name, "agent") + [sys.executable, "-m", "arpfix.cli", "agent", "run",
                                                             "-i", inventory, "--interval", "0.5"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        ready = False
        while time.monotonic() < deadline and agent.poll() is None:
            probe = run_in(name, "client", [sys.executable, "-c", CLIENT_PROGRAM, vip, "1"], check=False)
            if probe.returncode == 0:
                ready = True
                break
            time.sleep(0.5)
        if not ready:
            output = agent.stdout.read() if agent.poll() is not None and agent.stdout else ""
            raise click.ClickException(f"the agent did not start forwarding: {output.strip()[-500:]}")
        click.echo(f"\n$ (on the client) 30 connections to {vip}:80")
        result = run_in(name, "client", [sys.executable, "-c", CLIENT_PROGRAM, vip, "30"], check=False)
        click.echo(result.stdout.rstrip())
        if result.returncode != 0:
            raise click.ClickException(f"connections through the agent failed: {result.stderr.strip()[-300:]}")
        servers = {line.split()[2] for line in result.stdout.splitlines() if len(line.split()) > 3}
        status = run_in(name, "agent", [sys.executable, "-m", "arpfix.cli", "agent", "status"], check=False)
        click.echo("\n$ arpfix agent status   (on the agent host)\n" + status.stdout.rstrip())
        story.ok(f"every connection answered from the VIP, spread over {len(servers)} servers; "
                 "replies went straight to the client")
        click.echo("\n   verify --service adds end-to-end connections from this machine (on the segment):")
        story.arpfix("verify", "-i", inventory, "--service", "-q")
    finally:
        if agent.poll() is None:
            os.kill(agent.pid, signal.SIGTERM)
            try:
                agent.wait(timeout=20)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        click.echo(f"   (agent stopped: exit {agent.returncode}; its nft table and VIP are removed)")


def run_demo(name: str, hosts: int, keep: bool) -> None:
    from arpfix.lab.core import lab_down, lab_exists, lab_status, lab_up, run_in

    story = Story(name)
    if lab_exists(name):
        raise click.UsageError(f"a lab named {name!r} exists already: `arpfix lab down --name {name}` first, "
                               "or use --name")
    story.chapter("Build the lab", f"""
        {hosts} real Linux servers, an agent host and a client, each in its own network namespace on one
        bridge; every server runs a real OpenSSH sshd and a small TCP service on ports 80 and 443.""")
    lab_up(name, hosts)
    try:
        status = lab_status(name)
        inventory = status["inventory"]
        vip = status["vip"]
        macs = {h["mac"].lower(): h["name"] for h in status["hosts"]}
        story.arpfix("lab", "status", "--name", name)

        story.chapter("Audit the unprepared servers", """
            Kernel defaults: every server would answer ARP for the VIP if it carried it.
            The audit reads each server over SSH (strict host keys) and reports drift (exit 3).""")
        story.arpfix("audit", "-i", inventory, expect=(3,))
        story.ok("each server drifts: arp_ignore/arp_announce at the kernel's defaults, no VIP, nothing persistent")

        story.chapter("The ARP problem, live", f"""
            Give rs1 the VIP {vip} on lo the naive way (no sysctls) and ask the segment who has it.""")
        run_in(name, "rs1", ["ip", "addr", "add", f"{vip}/32", "dev", "lo"])
        answered = _arping(name, vip)
        for mac in sorted(answered):
            click.echo(f"   {vip} is-at {mac}  ({macs.get(mac, 'unknown')})")
        story.ok("a real server answers ARP for the VIP: clients would bypass the load balancer")

        story.chapter("Plan", """
            What apply would change on rs1, from -> to (exit 3: changes pending). There is no
            `address` line for the VIP: rs1 already carries it (the naive step above), so only the
            sysctls and the persistence are planned; the other servers would also get the VIP.""")
        story.arpfix("plan", "-i", inventory, "--limit", "rs1", expect=(3,))
        story.ok("the plan changes the sysctls before anything else, so no server answers ARP for the VIP at any moment")

        story.chapter("Apply", "One journaled round trip per server: sysctls first, then the VIP, then persistence.")
        story.arpfix("apply", "-i", inventory, "--yes")
        answered = _arping(name, vip)
        leaking = sorted(macs[m] for m in answered if m in macs)
        if leaking:
            raise click.ClickException(f"servers still answer ARP for the VIP: {', '.join(leaking)}")
        story.ok("no real server answers ARP for the VIP any more")

        story.chapter("Verify from the segment", """
            From the agent host, over SSH: who answers ARP for the VIP, and a TCP SYN to VIP:port sent
            to each server's MAC exactly as a DR load balancer sends it: each must answer from the VIP.""")
        story.arpfix("verify", "-i", inventory)
        story.ok("every server passed the audit, stays silent on ARP for the VIP, and answers a DR-forwarded SYN from the VIP")

        story.chapter("Real traffic through the bundled DR agent", """
            The agent host claims the VIP (after checking nobody else answers for it) and forwards each
            flow by rewriting MAC addresses only (nftables netdev ingress). Each server answers the
            client directly, from the VIP: the reply line names the server and its local address.""")
        _traffic_through_agent(story, name, inventory, vip)

        story.chapter("Apply again", "Idempotent: the second run changes nothing and says so.")
        story.arpfix("apply", "-i", inventory, "--yes")

        story.chapter("Audit", """
            Runtime and on-disk state (what survives a reboot) both compliant: exit 0. The table
            counts each server's checks; `-v` lists every one with its expected and actual value.""")
        story.arpfix("audit", "-i", inventory)

        story.chapter("Roll back", """
            From each server's journal, newest first: restore the previous values where they are still
            what arpfix set, remove only what arpfix created. rs1's VIP was there before: it stays.
            This brings the ARP problem back on purpose: rs1 is again as we left it in step 3.""")
        story.arpfix("rollback", "-i", inventory, "--yes")
        story.chapter("Audit after the rollback", """
            Every server drifts again (exit 3), exactly as in step 2; rs1 also still has the VIP.""")
        story.arpfix("audit", "-i", inventory, expect=(3,))
        answered = _arping(name, vip)
        for mac in sorted(answered):
            click.echo(f"   {vip} is-at {mac}  ({macs.get(mac, 'unknown')})")
        if not any(m in macs for m in answered):
            raise click.ClickException("after the rollback rs1 should answer ARP for the VIP again")
        story.ok("back to the starting state, ARP problem included: rollback undoes arpfix exactly")
    finally:
        if keep:
            click.echo(f"\nThe lab stays up (--keep). Remove it with: arpfix lab down --name {name}")
        else:
            story.chapter("Tear down", "Namespaces, bridge, sshd processes, mounts and state removed.")
            lab_down(name)
    elapsed = time.monotonic() - story.started
    click.echo(f"\nDemo complete in {elapsed:.1f}s.")


@click.command("demo")
@click.option("--name", default="arpfixdm", show_default=True, help="Lab name (prefix of everything it creates).")
@click.option("--hosts", default=3, show_default=True, type=click.IntRange(1, 50), help="Real servers.")
@click.option("--keep", is_flag=True, help="Leave the lab up at the end.")
def demo(name: str, hosts: int, keep: bool) -> None:
    """Run the whole story on a fresh lab: audit, the ARP problem, plan, apply, audit, rollback."""
    run_demo(name, hosts, keep)
    sys.exit(Exit.OK)
