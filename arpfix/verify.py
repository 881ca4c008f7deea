"""`arpfix verify`: host state (the audit) plus probes from the segment, merged per real server.

Design: the probes need raw sockets on a host of the servers' segment, the inventory's agent host.
arpfix ships arpfix/probe/segment.py (stdlib only) to it over SSH in the same one-script round trip
as every other remote action and runs it with python3 as root; `--probe-here` runs it in-process
instead, when arpfix itself runs on the agent host (e.g. `arpfix lab exec agent -- arpfix verify`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from arpfix import operations
from arpfix.engine import run_on_hosts
from arpfix.errors import ArpfixError, UsageError
from arpfix.model import HostResult
from arpfix.platforms.linux.facts import nic_for
from arpfix.quoting import sh_quote
from arpfix.report import plural
from arpfix.settings import Host, Inventory

PROBE_SOURCE = Path(__file__).parent / "probe" / "segment.py"


def probe_script(request: dict[str, Any]) -> str:
    """A shell script that runs the probe program with python3; the request is one quoted argument."""
    source = PROBE_SOURCE.read_text()
    marker = "ARPFIX_PROBE_PROGRAM_END"
    assert marker not in source
    return (
        "set -u\ncommand -v python3 >/dev/null 2>&1 || "
        "{ echo '{\"error\": \"python3 is missing on the probing host\"}'; exit 1; }\n"
        f"program=$(mktemp) || exit 1\ncat > \"$program\" <<'{marker}'\n{source}\n{marker}\n"
        f"python3 \"$program\" {sh_quote(json.dumps(request))}\nstatus=$?\nrm -f \"$program\"\nexit $status\n"
    )


def service_probe(address: str, port: int, attempts: int = 3, timeout: float = 3.0) -> dict[str, Any]:
    """End to end from the client side: TCP connections to VIP:port from this host."""
    import socket

    failures = []
    for _ in range(attempts):
        try:
            with socket.create_connection((address, port), timeout=timeout):
                pass
        except OSError as exc:
            failures.append(exc.strerror or str(exc))
    if failures:
        return {"ok": False, "detail": f"{len(failures)}/{attempts} connections failed: {failures[0]}"}
    return {"ok": True, "detail": f"{attempts}/{attempts} connections accepted through the VIP"}


def verify(inventory: Inventory, hosts: list[Host], ctx: operations.RunContext, *, forks: int, progress: bool,
           probe_here: bool = False, end_to_end: bool = False) -> dict[str, Any]:
    if inventory.agent is None:
        raise UsageError(f"{inventory.path}: verify needs `agent: {{host: ...}}`, a Linux host on the servers' segment")
    agent = inventory.hosts[inventory.agent.host]
    targets = [h for h in hosts if inventory.vips_for(h.name)]

    # facts are needed for the MACs, so verify reads facts and audits in the same round trip
    results = run_on_hosts(targets + [agent], lambda h: _facts_and_audit(h, ctx, inventory), forks=forks,
                           label="verify", progress=progress)
    by_name = {r.name: r for r in results}
    agent_result = by_name.pop(agent.name)
    server_results = [by_name[h.name] for h in targets]

    mac_owner: dict[str, str] = {}
    for result in results:
        for name, iface in (result.facts or {}).get("interfaces", {}).items():
            if iface.get("mac") and name != "lo" and iface["mac"] != "00:00:00:00:00:00":
                mac_owner.setdefault(iface["mac"].lower(), result.name)
    allowed = set(inventory.load_balancer.macs if inventory.load_balancer else ())
    interface = inventory.agent.interface
    if agent_result.facts:
        interface = interface or nic_for(agent_result.facts, agent)
        nic = agent_result.facts.get("interfaces", {}).get(interface or "", {})
        if nic.get("mac"):
            allowed.add(nic["mac"].lower())
    if inventory.load_balancer:
        for mac in inventory.load_balancer.macs:
            mac_owner.setdefault(mac, inventory.load_balancer.name)

    vips4 = [v for v in inventory.vips if v.family == 4]
    request: dict[str, Any] = {"interface": interface or "eth0", "vips": [str(v.address) for v in vips4], "dr": []}
    for host, result in zip(targets, server_results):
        if result.failed or not result.facts or host.platform != "linux":
            continue
        nic = nic_for(result.facts, host)
        mac = result.facts["interfaces"].get(nic or "", {}).get("mac") if nic else None
        if not mac:
            continue
        for vip in inventory.vips_for(host.name):
            if vip.family != 4:
                continue
            for service in vip.services:
                if service.protocol == "tcp":
                    request["dr"].append({"host": host.name, "vip": str(vip.address), "port": service.port,
                                          "mac": mac, "server_ip": str(host.address)})

    probe_error = ""
    probes: dict[str, Any] = {"arp": {}, "dr": []}
    if agent_result.failed:
        probe_error = f"probing host {agent.name}: {agent_result.error}"
    elif request["vips"]:
        try:
            if probe_here:
                from arpfix.probe import segment

                probes = segment.run(request)
            else:
                transport = operations.open_transport(agent, ctx)
                try:
                    probes = transport.run_script(probe_script(request), timeout=60 + 3 * len(request["dr"]))
                finally:
                    transport.close()
        except (ArpfixError, OSError) as exc:
            probe_error = f"probing host {agent.name}: {exc}"

    arp_replies = []
    for vip, replies in probes.get("arp", {}).items():
        for reply in replies:
            mac = reply["mac"].lower()
            arp_replies.append({"vip": vip, "mac": mac, "host": mac_owner.get(mac),
                                "allowed": mac in allowed})
    hosts_out = []
    for host, result in zip(targets, server_results):
        entry: dict[str, Any] = {"name": host.name, "platform": host.platform, "probes": []}
        if result.failed:
            entry.update(status="error", error=result.error)
            hosts_out.append(entry)
            continue
        failing = [f for f in result.findings if not f.ok and f.severity == "error"]
        entry["probes"].append({
            "probe": "audit", "ok": not failing,
            "detail": "; ".join(f"{f.check}: {f.detail or f'expected {f.expected}, got {f.actual}'}" for f in failing)
            or f"{plural(len(result.findings), 'check')} compliant",
            "findings": [{"check": f.check, "detail": f.detail} for f in failing],
        })
        own_macs = {iface["mac"].lower() for name, iface in (result.facts or {}).get("interfaces", {}).items()
                    if iface.get("mac") and name != "lo"}
        for vip in inventory.vips_for(host.name):
            if vip.family != 4:
                continue
            if probe_error:  # one error of the probing host (segment.error), not a failure of this server
                entry["probes"].append({"probe": f"arp {vip.address}", "ok": False, "skipped": True,
                                        "detail": f"not probed: {probe_error}"})
                continue
            leaked = [r["mac"] for r in arp_replies if r["vip"] == str(vip.address) and r["mac"] in own_macs]
            entry["probes"].append({
                "probe": f"arp {vip.address}", "ok": not leaked,
                "detail": f"{host.name} answers ARP for the VIP from {', '.join(leaked)}" if leaked
                else "does not answer ARP for the VIP"})
        for outcome in probes.get("dr", []):
            if outcome["host"] == host.name:
                entry["probes"].append({"probe": f"dr {outcome['vip']}:tcp/{outcome['port']}", "ok": outcome["ok"],
                                        "detail": outcome["detail"]})
        run = [p for p in entry["probes"] if not p.get("skipped")]
        entry["status"] = "failed" if not all(p["ok"] for p in run) else (
            "unverified" if len(run) < len(entry["probes"]) else "verified")
        hosts_out.append(entry)
    unknown = [r for r in arp_replies if not r["allowed"] and r["host"] not in {h.name for h in targets}]
    segment = {"arp_replies": arp_replies, "probe_host": agent.name, "interface": request["interface"],
               "vips": request["vips"], "unknown_answers": unknown}
    if probe_error:
        segment["error"] = probe_error
    if end_to_end:
        segment["service"] = [
            {"vip": str(vip.address), "port": svc.port, **service_probe(str(vip.address), svc.port)}
            for vip in inventory.vips if any(h.name in vip.real_servers for h in targets)
            for svc in vip.services if svc.protocol == "tcp"
        ]
    return {"hosts": hosts_out, "segment": segment}


def _facts_and_audit(host: Host, ctx: operations.RunContext, inventory: Inventory) -> HostResult:
    platform, transport, facts = operations.gather(host, ctx)
    transport.close()
    findings = platform.audit(facts, host, inventory) if inventory.vips_for(host.name) else []
    return HostResult(host.name, host.platform, "ok", findings=findings, facts=facts)
