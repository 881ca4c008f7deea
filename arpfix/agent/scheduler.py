"""Pure slot scheduling: servers, weights and health in, a fixed table of 256 slots out.

The data plane hashes each flow (or each client address, for source-IP affinity) with a fixed
seed into one of SLOTS slots; the slot names a real server. `assign` keeps every slot whose server
is still eligible where it was, and hands the freed slots (and slots taken from servers above
their weighted share) to the servers below their share. So removing one server moves only that
server's slots, and adding one takes slots evenly from the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

SLOTS = 256


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


def assign(
    weights: Mapping[str, int],
    previous: Sequence[str | None] | None = None,
    slots: int = SLOTS,
) -> list[str | None]:
    """The new slot table. `weights` holds the eligible servers (healthy, not drained) and their
    weights; servers missing or at weight 0 own no slot. `previous` is the current table."""
    want = shares(weights, slots)
    table: list[str | None] = list(previous) if previous and len(previous) == slots else [None] * slots
    owned: dict[str, list[int]] = {name: [] for name in want}
    for index, name in enumerate(table):
        if name in owned:
            owned[name].append(index)
        else:
            table[index] = None
    # Servers above their share give back their highest slots.
    for name, indexes in owned.items():
        while len(indexes) > want[name]:
            table[indexes.pop()] = None
    free = [i for i, name in enumerate(table) if name is None]
    # Fill free slots round-robin among servers still below their share, so new owners are
    # interleaved across the table rather than in one block.
    order = sorted(want, key=lambda n: n)
    cursor = 0
    for index in free:
        for _ in range(len(order)):
            name = order[cursor % len(order)]
            cursor += 1
            if len(owned[name]) < want[name]:
                table[index] = name
                owned[name].append(index)
                break
    return table


def moved(before: Sequence[str | None], after: Sequence[str | None]) -> int:
    """How many slots changed owner."""
    return sum(1 for a, b in zip(before, after) if a != b)
