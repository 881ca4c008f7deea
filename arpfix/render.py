"""What each command shows a person: its table, its -v detail, its one-line summary, JUnit.

The commands in arpfix/cli.py stay thin: they load, run, and hand the results to one function
here. Values appear as an administrator writes them (yes/no, `-`), counts with the right plural,
long findings cut in the table and shown whole (wrapped) under -v.
"""

from __future__ import annotations

import base64
import binascii
import shlex
from collections.abc import Iterable
from typing import Any

from arpfix.model import HostResult
from arpfix.report import clip, junit_suite, paint, plural, short, table

WRAP = 60  # -v: long cells wrap at this width instead of being cut


# -- shared ------------------------------------------------------------------------------------

# the summary names states in this order (good news first), whatever order the hosts finished in
STATUS_ORDER = ("ok", "compliant", "verified", "changed", "pending", "drift", "kept", "blocked", "unverified",
                "partial", "failed", "error", "unreachable", "interrupted", "not started")


def summary(results: Iterable[HostResult]) -> str:
    """One line: how many hosts ended in which state ("12 hosts: 9 compliant, 2 drift, 1 unreachable")."""
    results = list(results)
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    rank = {status: index for index, status in enumerate(STATUS_ORDER)}
    ordered = sorted(counts.items(), key=lambda item: rank.get(item[0], len(rank)))
    parts = ", ".join(f"{n} {status}" for status, n in ordered)
    return f"{plural(len(results), 'host')}: {parts}" if parts else "0 hosts"


def nothing_to_do(inventory: Any, hosts: list[Any], action: str, real_servers_only: bool = False) -> str:
    """Why a command has no host to work on, said instead of an empty table."""
    if not inventory.hosts:
        return f"{inventory.path}: the inventory has no host: nothing to {action}"
    if not inventory.vips:
        if real_servers_only:
            return f"{inventory.path}: the inventory has no VIP, so no real server: nothing to {action}"
        return (f"{inventory.path}: the inventory has no VIP and none of the selected hosts is a Linux server "
                f"arpfix could have prepared: nothing to {action}")
    which = f"the selected host '{hosts[0].name}' is not" if len(hosts) == 1 else \
        f"none of the {len(hosts)} selected hosts is"
    return f"{which} a real server of a VIP (check --limit and the VIPs' real_servers): nothing to {action}"


def status_cell(status: str, colour: bool) -> str:
    return paint(status, status, colour)


def _cell(text: Any, verbose: int) -> str:
    """A free-text cell: whole (wrapped by the table) under -v, cut at a readable width otherwise."""
    text = short(text) if not isinstance(text, str) else text
    return " ".join(text.split()) if verbose else clip(text)


def details(results: Iterable[HostResult], verbose: int) -> str:
    """-v: per host, how long it took, each change from -> to, what was journaled, restored or left."""
    if not verbose:
        return ""
    lines = ["", "Details:"]
    for r in results:
        took = f", {r.seconds:.2f}s" if r.seconds is not None else ""
        lines.append(f"  {r.name} ({r.platform}, {r.status}{took})")
        if r.error:
            lines.append(f"    error: {r.error}")
        for c in r.changes:
            note = f"  ({c.detail})" if c.detail else ""
            lines.append(f"    {c.action} {c.subject}: {short(c.before)} -> {short(c.after)}{note}")
        for label, key in (("journaled", "applied"), ("restored", "restored"), ("left as is", "left")):
            for entry in r.extra.get(key, []) or []:
                lines.append(f"    {label}: {short(entry)}")
        if r.facts:
            for name, iface in sorted((r.facts.get("interfaces") or {}).items()):
                addresses = ", ".join(a.get("address", "") for a in iface.get("addresses", []) if isinstance(a, dict))
                lines.append(f"    interface {name}: mac {short(iface.get('mac'))}, addresses {short(addresses)}")
            journal = r.facts.get("journal")
            if isinstance(journal, list):
                lines.append(f"    journal: {plural(len(journal), 'entry', 'entries')}")
    return "\n".join(lines)


# -- facts, plan, apply, rollback, audit -------------------------------------------------------

def facts_table(results: list[HostResult], colour: bool) -> str:
    rows = []
    for r in results:
        f = r.facts or {}
        rows.append([r.name, r.platform, status_cell(r.status, colour), short((f.get("os") or {}).get("name")),
                     short((f.get("primary_nic") or {}).get("name")), short(f.get("vips_present")), short(r.error)])
    return table(rows, ["host", "platform", "status", "os", "primary NIC", "VIPs present", "error"])


def changes_table(results: list[HostResult], colour: bool, verbose: int = 0) -> str:
    """plan, apply and rollback: a row per change, `from -> to`; a blocked change says why in its row."""
    rows = []
    for r in results:
        status = status_cell(r.status, colour)
        if not r.changes:
            rows.append([r.name, status, "-", "-", "-", r.error or "nothing to do"])
            continue
        if r.error and r.status != "blocked":  # blocked: the reason is in the blocked change's row
            rows.append([r.name, status, "-", "-", "-", r.error])
        for c in r.changes:
            detail = f"blocked: {c.detail}" if c.action == "blocked" else c.detail
            rows.append([r.name, status, c.subject, short(c.before), short(c.after), _cell(detail or "-", verbose)])
    return table(rows, ["host", "status", "change", "from", "to", "detail"], wrap={5: WRAP} if verbose else None)


def audit_table(results: list[HostResult], colour: bool, verbose: int = 0) -> str:
    rows = []
    for r in results:
        status = status_cell(r.status, colour)
        if r.error:
            rows.append([r.name, status, "-", "-", "-", "-", r.error])
        for f in r.findings:
            if f.ok and not verbose:
                continue
            mark = "ok" if f.ok else ("warning" if f.severity == "warning" else "DRIFT")
            fix = f"; fix: {f.fix}" if f.fix and not f.ok else ""  # the fix is never cut off
            rows.append([r.name, status, f.check, short(f.expected), short(f.actual), mark,
                         _cell(f.detail or f.source or "-", verbose) + fix])
        if not r.error and all(f.ok for f in r.findings) and not verbose:
            rows.append([r.name, status, plural(len(r.findings), "check"), "-", "-", "ok", "-"])
    return table(rows, ["host", "status", "check", "expected", "actual", "result", "detail"],
                 wrap={6: WRAP} if verbose else None)


def script_section(result: HostResult, title: str) -> str:
    """--show-script: the files the script writes, as text with their paths, then the script itself,
    verbatim (the files travel inside it base64-encoded; this header is only for reading)."""
    files = written_files(result.script or "")
    out = [f"\n# ---- {title} for {result.name} ({result.platform}) ----"]
    for path, mode, text in files:
        out.append(f"# ---- file {path} (mode {mode}), as the script writes it ----")
        out.extend(f"#   {line}" if line else "#" for line in text.splitlines())
    if files:
        out.append(f"# ---- the script, exactly as it runs on {result.name} ----")
    out.append(result.script or "")
    return "\n".join(out)


def written_files(script: str) -> list[tuple[str, str, str]]:
    """(path, mode, text) of every `write_file PATH BASE64 MODE ...` step of a Linux script."""
    found = []
    for line in script.splitlines():
        if not line.startswith("write_file "):
            continue
        try:
            words = shlex.split(line)
            text = base64.b64decode(words[2], validate=True).decode("utf-8", "replace")
        except (ValueError, IndexError, binascii.Error):
            continue
        found.append((words[1], words[3] if len(words) > 3 else "?", text))
    return found


# -- inventory show ----------------------------------------------------------------------------

def host_view(inv: Any, host: Any) -> dict[str, Any]:
    """The resolved per-host view of `inventory show` (secrets only by their source)."""
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
        if s.proxy_command:
            view["ssh"]["proxy_command"] = s.proxy_command
    else:
        w = host.winrm
        view["windows_profile"] = host.windows_profile
        view["keep_bindings"] = list(host.keep_bindings)
        view["winrm"] = {"scheme": w.scheme, "port": w.port, "auth": w.auth, "user": w.user,
                         "password": str(w.password) if w.password else None,
                         "ca_bundle": w.ca_bundle, "cert_validation": w.cert_validation}
    if host.nic:
        view["nic"] = host.nic
    if host.name in inv.agent_hosts:
        view["role"] = "agent"
    return view


def inventory_table(views: list[dict[str, Any]]) -> str:
    rows = []
    for view in views:
        transport = view.get("ssh") or view.get("winrm") or {}
        via = f"ssh {transport.get('user')}@{view['connect']}:{transport.get('port')}" if "ssh" in view else \
            f"winrm {transport.get('scheme')} {view['connect']}:{transport.get('port')} {transport.get('auth')}"
        rows.append([view["name"], view["platform"], view["address"], via, ", ".join(view["groups"]) or "-",
                     ", ".join(v["address"] for v in view["vips"]) or view.get("role", "-")])
    return table(rows, ["host", "platform", "address", "connection", "groups", "VIPs"])


def inventory_counts(inv: Any, hosts: list[Any]) -> str:
    linux = sum(1 for h in hosts if h.platform == "linux")
    return (f"{inv.path}: ok: {plural(len(hosts), 'host')} ({linux} linux, {len(hosts) - linux} windows), "
            f"{plural(len(inv.vips), 'VIP')}, {plural(len(inv.real_servers), 'real server')}")


# -- verify ------------------------------------------------------------------------------------

LB_HINT = ("if it is the load balancer, list its MAC under load_balancer.macs in the inventory; "
           "otherwise another machine holds the VIP")


def verify_failed(document: dict[str, Any]) -> bool:
    """Anything that makes verify exit 4: a failed server, an unknown MAC answering, a failed service probe."""
    segment = document["segment"]
    return (any(h["status"] == "failed" for h in document["hosts"]) or bool(segment["unknown_answers"])
            or not all(p["ok"] for p in segment.get("service", [])))


def _probe_result(probe: dict[str, Any]) -> str:
    if probe.get("skipped"):
        return "not run"
    return "ok" if probe["ok"] else "FAIL"


def _probe_detail(probe: dict[str, Any], verbose: int) -> str:
    failing = probe.get("findings") or []
    if failing and not verbose and len(probe["detail"]) > 70:
        names = [f["check"] for f in failing]
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        return clip(f"{plural(len(names), 'check')} drift: {shown}", 200)
    return _cell(probe["detail"], verbose)


def verify_table(document: dict[str, Any], colour: bool, verbose: int = 0) -> str:
    rows = []
    for h in document["hosts"]:
        status = status_cell(h["status"], colour)
        if h.get("error"):
            rows.append([h["name"], status, "-", "-", h["error"]])
        for p in h["probes"]:
            rows.append([h["name"], status, p["probe"], _probe_result(p), _probe_detail(p, verbose)])
    out = [table(rows, ["host", "status", "probe", "result", "detail"], wrap={4: WRAP} if verbose else None)]
    segment = document["segment"]
    replies = segment["arp_replies"]
    if replies:
        out.append("\nARP replies for the VIPs on the segment:")
        out.append(table([[r["vip"], r["mac"], r["host"] or "unknown", _reply_verdict(r)] for r in replies],
                         ["VIP", "MAC", "owner", "verdict"]))
    unknown = [r for r in segment["unknown_answers"] if not r["host"]]
    if unknown:
        macs = ", ".join(sorted({r["mac"] for r in unknown}))
        out.append(f"\nA MAC no inventory host has answers ARP for a VIP ({macs}): {LB_HINT}.")
    if segment.get("error"):
        out.append(f"\nprobes: {segment['error']}")
    for probe in segment.get("service", []):
        out.append(f"service {probe['vip']}:tcp/{probe['port']}: {'ok' if probe['ok'] else 'FAIL'}: {probe['detail']}")
    return "\n".join(out)


def _reply_verdict(reply: dict[str, Any]) -> str:
    if reply["allowed"]:
        return "expected"
    if reply["host"]:
        return "LEAK: a real server answers"
    return "unknown MAC: see below"


def verify_summary(document: dict[str, Any]) -> str:
    hosts = [HostResult(h["name"], h["platform"], h["status"]) for h in document["hosts"]]
    line = summary(hosts)
    segment = document["segment"]
    if segment.get("error"):
        line += "; segment not probed"
    elif segment["unknown_answers"]:
        line += f"; segment: {plural(len(segment['unknown_answers']), 'unexpected ARP answer')}"
    service = segment.get("service", [])
    if service:
        line += f"; service: {sum(1 for p in service if p['ok'])}/{len(service)} ok"
    return line


def verify_junit(document: dict[str, Any]) -> str:
    """A testcase per server probe; the segment's own findings (who answers ARP for each VIP, the
    service probes) are test cases of the probing host, and a probing host that cannot be used is
    one error of that host, not a failure of every server."""
    cases: list[tuple[str, str, str, str, str]] = []
    for h in document["hosts"]:
        if h.get("error"):
            cases.append((h["name"], "connect", "error", h["error"], ""))
            continue
        for p in h["probes"]:
            kind = "skipped" if p.get("skipped") else ("pass" if p["ok"] else "failure")
            cases.append((h["name"], p["probe"], kind, p["detail"], ""))
    segment = document["segment"]
    where = f"segment ({segment.get('probe_host', 'agent')})"
    if segment.get("error"):
        cases.append((where, "probes", "error", segment["error"], ""))
    else:
        for vip in segment.get("vips", []):
            strangers = [r for r in segment["unknown_answers"] if r["vip"] == vip]
            if strangers:
                owners = ", ".join(f"{r['mac']} ({r['host'] or 'unknown'})" for r in strangers)
                hint = f"; {LB_HINT}" if any(not r["host"] for r in strangers) else ""
                cases.append((where, f"arp {vip}", "failure", f"unexpected ARP answers for {vip}: {owners}{hint}",
                              "list the load balancer's MACs under load_balancer.macs" if hint else ""))
            else:
                cases.append((where, f"arp {vip}", "pass", "", ""))
    for probe in segment.get("service", []):
        cases.append((where, f"service {probe['vip']}:tcp/{probe['port']}", "pass" if probe["ok"] else "failure",
                      probe["detail"], ""))
    return junit_suite("arpfix verify", cases)
