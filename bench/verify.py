#!/usr/bin/env python3
"""Verify time for N prepared lab servers (issue 6: 20). Prints figures; asserts nothing.

Usage (root): python bench/verify.py [--hosts 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arpfix.lab.core import lab_down, lab_status, lab_up  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--name", default="afxbver")
    args = parser.parse_args()
    arpfix = [sys.executable, "-m", "arpfix.cli"]
    lab_down(args.name)
    lab_up(args.name, args.hosts)
    try:
        inventory = lab_status(args.name)["inventory"]
        subprocess.run(arpfix + ["apply", "--yes", "-q", "-i", inventory], check=True, capture_output=True)
        times = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            result = subprocess.run(arpfix + ["verify", "-q", "-i", inventory], capture_output=True, text=True)
            times.append(time.perf_counter() - start)
            if result.returncode != 0:
                sys.exit(f"verify exited {result.returncode}:\n{result.stdout[-2000:]}")
        probes = 2 * args.hosts  # two TCP services per server in the lab
        print(f"verify of {args.hosts} prepared servers ({args.hosts} audits over SSH, 1 ARP probe, "
              f"{probes} DR probes): median {statistics.median(times):.2f}s, min {min(times):.2f}s, "
              f"max {max(times):.2f}s over {args.rounds} rounds")
    finally:
        lab_down(args.name)


if __name__ == "__main__":
    main()
