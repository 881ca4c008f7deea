"""Slot tables of the agent: history dependence and disruption, the old table against the new.

    .venv/bin/python bench/agent_slots.py [--histories 200] [--seed 18]

1. Disagreement: for each of N random histories (3-10 servers, 5-30 events: a server fails or
   comes back, is drained or undrained), the share of slots on which a node that lived through the
   history and a node that just started with the same healthy servers disagree. The old table
   (`legacy_assign`, the history-dependent scheduler arpfix shipped before issue 18, 256 slots) is
   reproduced here as the baseline; the new one (arpfix.agent.scheduler) is a pure function.
2. Disruption: share of slots that change owner when one server of N (equal weights) leaves,
   averaged over which one leaves, and the ideal 1/N.
3. Balance: largest slot count over the mean, equal weights, 2-50 servers.
Pure Python, no namespaces: no lab lock needed.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from arpfix.agent import scheduler  # noqa: E402


def legacy_assign(weights: dict[str, int], previous: list[str | None] | None, slots: int = 256) -> list[str | None]:
    """The pre-issue-18 table: keep every slot whose owner is still eligible, take slots back from
    servers above their share, hand the free ones round-robin to servers below it."""
    want = scheduler.shares(weights, slots)
    table = list(previous) if previous and len(previous) == slots else [None] * slots
    owned: dict[str, list[int]] = {n: [] for n in want}
    for index, name in enumerate(table):
        if name in owned:
            owned[name].append(index)
        else:
            table[index] = None
    for name, indexes in owned.items():
        while len(indexes) > want[name]:
            table[indexes.pop()] = None
    order, cursor = sorted(want), 0
    for index in [i for i, n in enumerate(table) if n is None]:
        for _ in range(len(order)):
            name = order[cursor % len(order)]
            cursor += 1
            if len(owned[name]) < want[name]:
                table[index] = name
                owned[name].append(index)
                break
    return table


def disagreement(rng: random.Random, legacy: bool) -> float:
    n = rng.randint(3, 10)
    names = [f"rs{i}" for i in range(1, n + 1)]
    up, drained = set(names), set()

    def compute(previous):
        weights = {name: 1 for name in names if name in up and name not in drained}
        return legacy_assign(weights, previous) if legacy else scheduler.assign(weights)

    table = compute(None)
    for _ in range(rng.randint(5, 30)):
        name = rng.choice(names)
        {"down": up.discard, "up": up.add, "drain": drained.add, "undrain": drained.discard}[
            rng.choice(["down", "up", "drain", "undrain"])](name)
        table = compute(table)
    fresh = compute(None)
    return scheduler.moved(table, fresh) / len(table)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--histories", type=int, default=200)
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args()
    print(f"1. long-lived vs fresh node, {args.histories} random histories, 3-10 servers (share of slots that differ)")
    for label, legacy in (("old table (history-dependent, 256 slots)", True), (f"new table (Maglev, {scheduler.SLOTS} slots)", False)):
        rng = random.Random(args.seed)
        shares = [disagreement(rng, legacy) for _ in range(args.histories)]
        nonzero = [s for s in shares if s]
        print(f"   {label}: differ in {len(nonzero)}/{len(shares)} histories; when they differ "
              f"{min(nonzero, default=0):.0%}-{max(nonzero, default=0):.0%} (median {statistics.median(nonzero or [0]):.0%})")
    print("2. one server of N leaves (equal weights): share of slots moved")
    print("   N    old     new     ideal 1/N")
    for n in (2, 3, 5, 10, 20, 50):
        names = [f"rs{i}" for i in range(1, n + 1)]
        full_new = scheduler.assign(dict.fromkeys(names, 1))
        full_old = legacy_assign(dict.fromkeys(names, 1), None)
        new = statistics.mean(scheduler.moved(full_new, scheduler.assign({x: 1 for x in names if x != gone}))
                              / scheduler.SLOTS for gone in names)
        old = statistics.mean(scheduler.moved(full_old, legacy_assign({x: 1 for x in names if x != gone}, full_old))
                              / 256 for gone in names)
        print(f"   {n:<4} {old:6.1%}  {new:6.1%}  {1 / n:6.1%}")
    print("3. balance, equal weights: largest slot count / mean")
    for n in (2, 3, 5, 10, 20, 50):
        counts = Counter(scheduler.assign({f"rs{i}": 1 for i in range(n)}))
        print(f"   N={n:<3} {max(counts.values()) / (scheduler.SLOTS / n):.4f} "
              f"(min {min(counts.values())}, max {max(counts.values())} slots)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
