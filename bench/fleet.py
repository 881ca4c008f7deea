#!/usr/bin/env python3
"""Fleet speed on lab servers: arpfix against the tools an administrator would pick instead, each
making the same change, proven before it is timed.

Tools: arpfix; the OpenSSH floor (N parallel `ssh` running one guarded script); ansible-core
(pipelining, forks = N); ansible-core with Mitogen; pyinfra 3. Peers run from their own virtual
environments (bench/fleet_tools.py), made on first use under /var/tmp/arpfix-bench-venvs.
Jobs: audit, apply from fresh, apply again (no change), rollback (arpfix only: the others have none).

Equal work, checked: per lab, arpfix applies once on fresh servers; the strict snapshot of every
server (tests/lab/lifecycle_tools.snapshot) is then the reference, and the files arpfix wrote are
what the peers write. Every server is snapshotted when the lab is new ("pristine"), before each
tool's turn (after a reset, it must equal pristine again), after each apply (must equal arpfix's)
and after "apply again" (must equal arpfix's, with every file's inode and times untouched). A tool
whose end state differs is refused and not timed, with the difference printed. A small lab
(--validate-hosts) runs the whole cycle untimed first, so an unequal tool is refused before any
timed run.

Fair timing: tools alternate round by round (the order rotates); each tool's block waits for a quiet
machine (1-minute load below 1, at most --quiet-wait s) and records the load it started at. Every
target address must route through the lab's own link before any tool is pointed at it.

Per tool and job: median and min-max wall time over the rounds, peak memory (largest process, and
the sum over the tool's processes), the tool's CPU seconds (its whole process tree, Ansible's SSH
masters included: they are closed after each run) and the servers' CPU seconds (their sshd and all
it ran), and the ratios to arpfix and to the floor. A benchmark prints figures; it asserts nothing
and is not run by CI.

Usage (root): python bench/fleet.py [--sizes 25,50,150] [--rounds 3] [--tools arpfix,floor,...]
              python bench/fleet.py --summarize RESULTS.jsonl
              python bench/fleet.py --sizes 50 --rounds 3 --breakdown 50    (and where arpfix's audit time goes)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fleet_measure import ServerCpu, measure, subreaper, wait_quiet  # noqa: E402
from fleet_state import LabView, check_routes, differences, identities, inventory_addresses, read_file, reset, snapshots  # noqa: E402
from fleet_tools import Reference, Tools, ensure_venvs, installed_env, versions  # noqa: E402

from arpfix.lab.core import lab_down, lab_status  # noqa: E402
from arpfix.templating import render  # noqa: E402


class Refused(Exception):
    """The tool did not make arpfix's change (or failed): it is not timed."""


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class LabRun:
    """One lab of N servers and every tool's rounds on it."""

    def __init__(self, args: argparse.Namespace, size: int, bins: dict[str, str], refused: dict[str, str]) -> None:
        self.args, self.size, self.bins, self.refused = args, size, bins, refused
        self.records: list[dict[str, Any]] = []

    def start(self) -> None:
        lab_down(self.args.name)
        log(f"lab up: {self.size} servers")
        # built by a process of its own that exits, with orphans going to init meanwhile: the lab's
        # sshd must not be a descendant of this (subreaper) process
        subreaper(False)
        try:
            subprocess.run([sys.executable, "-m", "arpfix.cli", "lab", "up", "--name", self.args.name, "--hosts",
                            str(self.size)], check=True, stdout=subprocess.DEVNULL)
        finally:
            subreaper(True)
        status = lab_status(self.args.name)
        self.status = status
        self.lab = LabView(self.args.name)
        servers = [h for h in status["hosts"] if h["role"] == "real-server"]
        self.names = [h["name"] for h in servers]
        self.targets = [{"name": h["name"], "address": h["ssh_address"]} for h in servers]
        self.inventory = status["inventory"]
        self.vip = status["vip"]
        self.sshd = ServerCpu([h["pids"]["sshd"] for h in servers])
        self.check_routes()
        self.work = Path(tempfile.mkdtemp(prefix="afxbench-", dir="/var/tmp"))
        self.tools = Tools(self.work, self.bins, self.inventory, self.targets, status["ssh"]["key"],
                           status["ssh"]["known_hosts"], render("linux/facts.sh.j2", embedded=False))
        self.pristine = snapshots(self.lab, self.names)
        self.establish_reference()

    def check_routes(self) -> None:
        """Every address any tool is pointed at: arpfix's inventory (all its hosts) and the peers' list."""
        addresses = set(inventory_addresses(self.inventory)) | {t["address"] for t in self.targets}
        check_routes(sorted(addresses), self.status["admin_link"], self.status["subnet"])

    def establish_reference(self) -> None:
        """arpfix's apply on the fresh servers is the reference end state; its rollback must give
        the pristine servers back."""
        self.run_checked("arpfix", "apply")
        self.reference = snapshots(self.lab, self.names)
        first = self.names[0]
        self.ref = Reference.from_server(lambda path: read_file(self.lab, first, path), self.reference[first], self.vip)
        nics = {k.split(".")[3] for k, _ in self.ref.sysctls} - {"all", "default"}
        self.nic = nics.pop() if len(nics) == 1 else "eth0"
        self.run_checked("arpfix", "rollback")
        self.expect(self.pristine, "the fresh server", "arpfix rollback")
        self.tools.prepare(self.ref)

    def run_checked(self, tool: str, job: str) -> Any:
        self.check_routes()
        invocation = self.tools.invocation(tool, job)
        result = measure(invocation.argvs, self.sshd, env=invocation.env, stdin=invocation.stdin)
        bad = [c for c in result.exit_codes if c not in invocation.ok]
        if bad:
            raise Refused(f"{tool} {job}: exit {bad[0]} ({len(bad)} process(es)):\n{result.output[-3000:]}")
        if tool in ("ansible", "mitogen") and job == "apply again":
            changed = [int(n) for n in re.findall(r"\bchanged=(\d+)", result.output)]
            if any(changed):
                raise Refused(f"{tool} apply again reported changes: {sum(changed)}")
        return result

    def expect(self, expected: dict[str, str], what: str, after: str) -> None:
        problem = differences(expected, snapshots(self.lab, self.names), what)
        if problem:
            raise Refused(f"after {after}: {problem}")

    def block(self, tool: str, round_no: int, timed: bool) -> None:
        """One tool's turn: fresh servers, then audit, apply, apply again, rollback, each checked."""
        reset(self.lab, self.names, self.vip, self.nic)
        problem = differences(self.pristine, snapshots(self.lab, self.names), "the fresh server")
        if problem:
            raise SystemExit(f"the reset between rounds did not give fresh servers back (a benchmark bug):\n{problem}")
        load, waited = wait_quiet(self.args.quiet_wait) if timed else (os.getloadavg()[0], 0.0)
        for job in Tools.jobs:
            if not self.tools.has(tool, job):
                continue
            before = identities(self.lab, self.names) if job == "apply again" else None
            result = self.run_checked(tool, job)
            if not timed:
                warnings = sorted({line.strip()[:160] for line in result.output.splitlines()
                                   if re.search(r"deprecat|warning", line, re.I)})
                if warnings:
                    log(f"{tool} {job} warns ({len(warnings)} distinct): " + " / ".join(warnings[:3]))
            if job == "audit" and not timed:
                self.expect(self.pristine, "the fresh server", f"{tool} audit")
            elif job in ("apply", "apply again"):
                self.expect(self.reference, "arpfix's end state", f"{tool} {job}")
            elif job == "rollback":
                self.expect(self.pristine, "the fresh server", f"{tool} rollback")
            if before is not None:
                problem = differences(before, identities(self.lab, self.names), "the files before")
                if problem:
                    raise Refused(f"{tool} apply again rewrote files (inode or times changed): {problem}")
            record = {"N": self.size, "round": round_no, "tool": tool, "job": job, "wall": round(result.wall, 3),
                      "tool_cpu": round(result.tool_cpu, 3), "server_cpu": round(result.server_cpu, 3),
                      "peak_mib": round(result.peak_rss_kib / 1024, 1), "tree_mib": round(result.tree_rss_kib / 1024, 1),
                      "load": round(load, 2), "waited": round(waited, 1), "left_behind": int(result.extra["left_behind"]),
                      "left_behind_cpu": round(result.extra["their_cpu"], 3),
                      "left_behind_what": sorted(set(result.left_behind))[:3]}
            log(json.dumps(record))
            if timed:
                self.records.append(record)

    def rounds(self, count: int) -> None:
        timed = count > 0
        names = [t for t in self.args.tools.split(",") if t in Tools.names]
        for round_no in range(max(count, 1)):
            order = names[round_no % len(names):] + names[:round_no % len(names)]
            for tool in order:
                if tool in self.refused:
                    continue
                try:
                    self.block(tool, round_no, timed)
                except Refused as refusal:
                    self.refused[tool] = str(refusal).splitlines()[0]
                    self.records = [r for r in self.records if r["tool"] != tool]
                    log(f"REFUSED {tool} (not timed): {refusal}")

    def breakdown(self) -> None:
        reset(self.lab, self.names, self.vip, self.nic)
        wait_quiet(self.args.quiet_wait)
        argv = [f"{self.bins['arpfix']}/python", str(ROOT / "bench" / "arpfix_breakdown.py"), "audit", "-q", "-i", self.inventory,
                "--forks", str(self.size)]
        self.check_routes()
        env = {**installed_env(), "ARPFIX_BENCH_SPAWNED": repr(time.time())}
        subprocess.run(argv, check=False, stdout=subprocess.DEVNULL, env=env)

    def stop(self) -> None:
        if getattr(self, "work", None):
            shutil.rmtree(self.work, ignore_errors=True)
        lab_down(self.args.name)


def summarize(records: list[dict[str, Any]], refused: dict[str, str]) -> str:
    groups: dict[tuple[int, str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["N"], r["job"], r["tool"]), []).append(r)
    medians = {key: statistics.median(r["wall"] for r in rows) for key, rows in groups.items()}
    lines = ["| N | job | tool | median s | min-max s | rounds | x arpfix | x floor | tool CPU s | servers' CPU s "
             "| peak MiB (largest / sum) | load at start |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    order = {name: i for i, name in enumerate(Tools.names)}
    jobs = {name: i for i, name in enumerate(Tools.jobs)}
    for (size, job, tool), rows in sorted(groups.items(), key=lambda kv: (kv[0][0], jobs[kv[0][1]], order[kv[0][2]])):
        median = medians[(size, job, tool)]
        arpfix, floor = medians.get((size, job, "arpfix")), medians.get((size, job, "floor"))
        walls = [r["wall"] for r in rows]
        loads = [r["load"] for r in rows]
        cells = [str(size), job, tool, f"{median:.2f}", f"{min(walls):.2f}-{max(walls):.2f}", str(len(rows)),
                 f"{median / arpfix:.2f}" if arpfix else "-", f"{median / floor:.2f}" if floor else "-",
                 f"{statistics.median(r['tool_cpu'] for r in rows):.2f}",
                 f"{statistics.median(r['server_cpu'] for r in rows):.2f}",
                 f"{max(r['peak_mib'] for r in rows):.0f} / {max(r['tree_mib'] for r in rows):.0f}",
                 f"{min(loads):.2f}-{max(loads):.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    for tool, reason in refused.items():
        lines.append(f"\nRefused (not timed): {tool}: {reason}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="25,50", help="server counts N, comma-separated (e.g. 25,50,150)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tools", default=",".join(Tools.names))
    parser.add_argument("--validate-hosts", type=int, default=3,
                        help="first run the whole cycle untimed on a lab this size (0: skip)")
    parser.add_argument("--quiet-wait", type=float, default=30.0, help="at most this long per block for load < 1")
    parser.add_argument("--breakdown", type=int, default=0, metavar="N",
                        help="after the rounds on the lab of N servers, one instrumented arpfix audit (where its time goes)")
    parser.add_argument("--out", default="/var/tmp/arpfix-bench-fleet.jsonl", help="every timed run, one JSON line each")
    parser.add_argument("--name", default="afxbench")
    parser.add_argument("--venvs", default="/var/tmp/arpfix-bench-venvs")
    parser.add_argument("--summarize", metavar="JSONL", help="only print the table of an earlier run's --out file")
    args = parser.parse_args()
    if args.summarize:
        with open(args.summarize) as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
        print(summarize([r for r in rows if "tool" in r], next((r["refused"] for r in rows if "refused" in r), {})))
        return
    if os.geteuid() != 0:
        raise SystemExit("the benchmark builds labs: run it as root")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # ends like Ctrl-C: labs removed
    subreaper(True)
    bins = ensure_venvs(args.venvs)
    refused: dict[str, str] = {}
    everything: list[dict[str, Any]] = []
    with open(args.out, "a") as out:
        out.write(json.dumps({"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "versions": versions(bins),
                              "load": os.getloadavg()[0]}) + "\n")
        plan = ([(args.validate_hosts, 0)] if args.validate_hosts else []) + [
            (int(s), args.rounds) for s in args.sizes.split(",") if s]
        for size, rounds in plan:
            run = LabRun(args, size, bins, refused)
            try:
                run.start()
                run.rounds(rounds)
                if args.breakdown == size and rounds == args.rounds:
                    run.breakdown()
            finally:
                run.stop()
            for record in run.records:
                out.write(json.dumps(record) + "\n")
            out.flush()
            everything += run.records
            if everything:
                print(summarize(everything, refused), flush=True)
        out.write(json.dumps({"refused": refused}) + "\n")
    if not everything:
        print(f"nothing timed; refused: {refused or 'none'}")


if __name__ == "__main__":
    main()
