#!/usr/bin/env python3
"""Where one arpfix run's time goes: arpfix's CLI run in this process with timing hooks wrapped
around its own functions (arpfix's code is not changed). Run by `bench/fleet.py --breakdown`, or:

    python bench/arpfix_breakdown.py audit -q -i INVENTORY --forks 50

Phases, each exclusive of the phases nested in it, with the wall time (summed over hosts where a
phase runs per host) and the CPU seconds of the threads that ran it:
  start-up         interpreter start and the imports an audit needs (arpfix.cli, paramiko, ...)
  inventory        load_inventory (YAML, validation)
  connect          SshTransport._connect: TCP, key exchange, authentication (paramiko)
  remote shell     _open_shell without the connect: open the session, wait for the ready marker
  facts round trip run_raw without the shell start: send the facts script, wait for its output
  parse            parse_json_output and parse_facts
  evaluate         LinuxPlatform.audit: the checks
  close            SshTransport.close
  report           from the last host's result to the end: the table and its printing
paramiko's own thread per connection (key exchange, packet encryption) runs beside the calling
thread: its CPU is shown as one more line, and "other" is the process's CPU not seen by any hook.
The table goes to stderr; the arpfix output to stdout.
"""

from __future__ import annotations

import importlib.util
import os
import resource
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

STARTED = time.time()
SPAWNED = float(os.environ.get("ARPFIX_BENCH_SPAWNED", STARTED))
if importlib.util.find_spec("arpfix") is None:  # run from the checkout; fleet.py runs it with the installed arpfix
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import arpfix.transport.ssh as ssh  # noqa: E402 - first: it loads paramiko as arpfix does

# isort: split
import paramiko  # noqa: E402

import arpfix.cli  # noqa: E402
import arpfix.engine  # noqa: E402
import arpfix.inventory  # noqa: E402
import arpfix.operations  # noqa: E402
import arpfix.report  # noqa: E402
from arpfix.platforms.linux import LinuxPlatform  # noqa: E402

IMPORTED = time.time()


def process_cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


IMPORTED_CPU = process_cpu_now()
TOTALS: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])  # phase -> [wall, cpu, calls]
LOCK = threading.Lock()
LOCAL = threading.local()


def hook(owner: Any, attribute: str, phase: str) -> None:
    """Wrap owner.attribute: its time, less the time of hooked calls nested in it, goes to PHASE."""
    original = getattr(owner, attribute)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        stack = LOCAL.__dict__.setdefault("stack", [])
        stack.append([0.0, 0.0])
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
            nested_wall, nested_cpu = stack.pop()
            if stack:
                stack[-1][0] += wall
                stack[-1][1] += cpu
            with LOCK:
                total = TOTALS[phase]
                total[0] += wall - nested_wall
                total[1] += cpu - nested_cpu
                total[2] += 1

    setattr(owner, attribute, wrapper)


def transport_thread_cpu() -> None:
    original = paramiko.Transport.run

    def run(self: Any) -> None:
        try:
            original(self)
        finally:
            with LOCK:
                total = TOTALS["paramiko thread"]
                total[1] += time.thread_time()
                total[2] += 1

    paramiko.Transport.run = run  # type: ignore[method-assign]


HOSTS_DONE: list[float] = []


def main() -> None:
    hook(arpfix.inventory, "load_inventory", "inventory")
    hook(ssh.SshTransport, "_connect", "connect")
    hook(ssh.SshTransport, "_open_shell", "remote shell")
    hook(ssh.SshTransport, "run_raw", "facts round trip")
    hook(ssh, "parse_json_output", "parse")
    hook(arpfix.operations, "parse_facts", "parse")
    hook(LinuxPlatform, "audit", "evaluate")
    hook(ssh.SshTransport, "close", "close")
    transport_thread_cpu()
    run_on_hosts = arpfix.engine.run_on_hosts

    def timed_run(*args: Any, **kwargs: Any) -> Any:
        try:
            return run_on_hosts(*args, **kwargs)
        finally:
            HOSTS_DONE.append(time.time())
            HOSTS_DONE.append(process_cpu_now())

    arpfix.engine.run_on_hosts = timed_run
    code = 0
    try:
        arpfix.cli.main(sys.argv[1:])
    except SystemExit as exc:
        code = int(exc.code or 0)
    sys.stdout.flush()
    end = time.time()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    process_cpu = usage.ru_utime + usage.ru_stime
    TOTALS["start-up"] = [IMPORTED - SPAWNED, IMPORTED_CPU, 1]
    if HOSTS_DONE:
        TOTALS["report"] = [end - HOSTS_DONE[-2], process_cpu - HOSTS_DONE[-1], 1]
    seen = sum(v[1] for v in TOTALS.values())
    hosts = max(int(TOTALS["connect"][2]), 1)
    lines = [f"arpfix {' '.join(sys.argv[1:2])}: {hosts} hosts, wall {end - SPAWNED:.3f} s, process CPU {process_cpu:.3f} s "
             f"({1000 * process_cpu / hosts:.1f} ms per host), max RSS {usage.ru_maxrss / 1024:.1f} MiB, exit {code}",
             "| phase | calls | wall s (sum over hosts) | wall ms per host | CPU s | CPU ms per host |",
             "| --- | --- | --- | --- | --- | --- |"]
    order = ["start-up", "inventory", "connect", "remote shell", "facts round trip", "parse", "evaluate", "close",
             "report", "paramiko thread"]
    for phase in order:
        wall, cpu, calls = TOTALS.get(phase, [0.0, 0.0, 0])
        lines.append(f"| {phase} | {int(calls)} | {wall:.3f} | {1000 * wall / hosts:.1f} | {cpu:.3f} | {1000 * cpu / hosts:.2f} |")
    other = process_cpu - seen
    lines.append(f"| other (thread pool, progress, what no hook sees) | | | | {other:.3f} | {1000 * other / hosts:.2f} |")
    print("\n".join(lines), file=sys.stderr, flush=True)
    os._exit(code)


if __name__ == "__main__":
    main()
