"""Pure slot scheduling: servers, weights and health in, a fixed table of SLOTS slots out.

The data plane hashes each flow (or each client address, for source-IP affinity) with a fixed
seed into one of SLOTS slots; the slot names a real server. The table is Maglev's consistent-hash
table (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load Balancer", NSDI 2016,
section 3.4): every server has its own permutation of the slots, derived from its name alone, and
the servers take turns claiming the next free slot of their permutation until the table is full.

The table is a pure function of the eligible servers and their weights, never of history: two
agents of a pair (or one agent before and after a restart) that see the same healthy servers map
every flow to the same server, so a failover or a restart moves no flow. A server leaving frees
its slots and moves only a few others (measured in docs/agent.md); weights are honoured by giving
each server a turn only while it owns fewer slots than its weighted share (largest remainder), so
equal weights differ by at most one slot.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

# A prime, so every skip (1..SLOTS-1) is coprime with it and each permutation visits every slot;
# about 80 slots per server at 50 servers (Maglev wants the table much larger than the server count).
SLOTS = 4093


def shares(weights: Mapping[str, int], slots: int = SLOTS) -> dict[str, int]:
    """How many slots each server with a positive weight should own (largest remainder)."""
    live = {name: w for name, w in weights.items() if w > 0}
    total = sum(live.values())
    if not total:
        return {}
    exact = {name: slots * w / total for name, w in live.items()}
    result = {name: int(value) for name, value in exact.items()}
    left = slots - sum(result.values())
    # Hand the remainder to the largest fractional parts; ties by name, so the result is stable.
    for name in sorted(live, key=lambda n: (-(exact[n] - result[n]), n))[:left]:
        result[name] += 1
    return result


def _permutation(name: str, slots: int) -> tuple[int, int]:
    """(offset, skip) of a server's slot permutation: slot j of its preference list is
    (offset + j * skip) mod slots. From the name alone (a fixed hash, not Python's salted hash()),
    so every process on every node derives the same one."""
    digest = hashlib.sha256(name.encode()).digest()
    offset = int.from_bytes(digest[:8], "big") % slots
    skip = int.from_bytes(digest[8:16], "big") % (slots - 1) + 1
    return offset, skip


def assign(weights: Mapping[str, int], slots: int = SLOTS) -> list[str | None]:
    """The slot table for the eligible servers (healthy, not drained) and their weights; servers
    missing or at weight 0 own no slot. Equal input, equal table, whatever came before."""
    want = shares(weights, slots)
    table: list[str | None] = [None] * slots
    if not want:
        return table
    order = sorted(want)
    perms = {name: _permutation(name, slots) for name in order}
    nexts = dict.fromkeys(order, 0)
    owned = dict.fromkeys(order, 0)
    filled = 0
    while filled < slots:
        for name in order:
            if owned[name] >= want[name]:
                continue
            offset, skip = perms[name]
            j = nexts[name]
            slot = (offset + j * skip) % slots
            while table[slot] is not None:
                j += 1
                slot = (offset + j * skip) % slots
            table[slot] = name
            nexts[name] = j + 1
            owned[name] += 1
            filled += 1
    return table


def moved(before: Sequence[str | None], after: Sequence[str | None]) -> int:
    """How many slots changed owner."""
    return sum(1 for a, b in zip(before, after) if a != b)


def digest(table: Sequence[str | None]) -> str:
    """A short fingerprint of a slot table: equal on two nodes exactly when they map every slot
    to the same server (shown by `arpfix agent status` on both nodes of a pair)."""
    text = "\n".join(name or "" for name in table)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
