#!/usr/bin/env python3
"""Time `arpfix --help` and `arpfix inventory check` on a generated 1,000-host inventory.

Targets (issue 2): --help under 0.3 s; the check under 2 s. Prints figures; asserts nothing.
Usage: python bench/startup.py [--hosts 1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def generate(path: Path, hosts: int) -> None:
    lines = ["defaults:", "  ssh: {user: root}", "hosts:"]
    for index in range(hosts):
        lines.append(f"  rs{index}: {{platform: linux, address: 10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256 + 0}}}"
                     if index % 256 else f"  rs{index}: {{platform: linux, address: 10.200.{index // 256 % 256}.255}}")
    lines += ["vips:", "  - {name: v, address: 172.30.0.1, services: [{port: 80}, {port: 443}], real_servers: [" +
              ", ".join(f"rs{i}" for i in range(hosts)) + "]}"]
    path.write_text("\n".join(lines) + "\n")


def timed(command: list[str], rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if result.returncode != 0:
            sys.exit(f"{' '.join(command)} failed: {result.stderr.strip()}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    exe = shutil.which("arpfix") or sys.exit("arpfix is not on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        inventory = Path(tmp) / "inventory.yml"
        generate(inventory, args.hosts)
        help_times = timed([exe, "--help"], args.rounds)
        check_times = timed([exe, "inventory", "check", "-i", str(inventory)], args.rounds)
    print(f"arpfix --help                       median {statistics.median(help_times):.3f}s "
          f"(min {min(help_times):.3f}s, {args.rounds} rounds)  target < 0.300s  ratio {statistics.median(help_times) / 0.3:.2f}")
    print(f"arpfix inventory check ({args.hosts} hosts) median {statistics.median(check_times):.3f}s "
          f"(min {min(check_times):.3f}s, {args.rounds} rounds)  target < 2.000s  ratio {statistics.median(check_times) / 2.0:.2f}")


if __name__ == "__main__":
    main()
