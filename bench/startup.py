#!/usr/bin/env python3
"""Time `arpfix --help` and `arpfix inventory check` on a generated inventory (1,000 hosts by default).

Targets: --help under 0.3 s, the check of 1,000 hosts under 2 s (issue 2); 100,000 hosts load
"in seconds, memory bounded" (issue 8: the peak memory of the check is printed too).
Prints figures; asserts nothing.
Usage: python bench/startup.py [--hosts 1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def generate(path: Path, hosts: int) -> None:
    lines = ["defaults:", "  ssh: {user: root}", "hosts:"]
    for index in range(hosts):  # 250^3 distinct addresses, none ending in .0 or .255
        a, b, c = index // 62500 % 250 + 1, index // 250 % 250 + 1, index % 250 + 1
        lines.append(f"  rs{index}: {{platform: linux, address: 10.{a}.{b}.{c}}}")
    lines += ["vips:", "  - {name: v, address: 172.30.0.1, services: [{port: 80}, {port: 443}], real_servers: [" +
              ", ".join(f"rs{i}" for i in range(hosts)) + "]}"]
    path.write_text("\n".join(lines) + "\n")


def timed(command: list[str], rounds: int) -> tuple[list[float], int]:
    """Wall times of each round, and the largest peak RSS (KiB) seen."""
    times, peak = [], 0
    for _ in range(rounds):
        with tempfile.TemporaryFile() as output:
            start = time.perf_counter()
            process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(process.pid, 0)
            times.append(time.perf_counter() - start)
            peak = max(peak, usage.ru_maxrss)
            if os.waitstatus_to_exitcode(status) != 0:
                output.seek(0)
                sys.exit(f"{' '.join(command)} failed: {output.read().decode(errors='replace').strip()[-500:]}")
    return times, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    exe = shutil.which("arpfix") or sys.exit("arpfix is not on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        inventory = Path(tmp) / "inventory.yml"
        generate(inventory, args.hosts)
        size_mib = inventory.stat().st_size / 2**20
        help_times, _ = timed([exe, "--help"], args.rounds)
        check_times, check_peak = timed([exe, "inventory", "check", "-i", str(inventory)], args.rounds)
    print(f"arpfix --help                       median {statistics.median(help_times):.3f}s "
          f"(min {min(help_times):.3f}s, {args.rounds} rounds)  target < 0.300s  ratio {statistics.median(help_times) / 0.3:.2f}")
    print(f"arpfix inventory check ({args.hosts} hosts) median {statistics.median(check_times):.3f}s "
          f"(min {min(check_times):.3f}s, {args.rounds} rounds)  target < 2.000s for 1,000 hosts  "
          f"ratio {statistics.median(check_times) / 2.0:.2f}")
    print(f"  inventory file {size_mib:.1f} MiB, peak memory of the check {check_peak / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
