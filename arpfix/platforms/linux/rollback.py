"""Linux rollback: give back everything the journal says arpfix owns, then archive the journal. Pure.

The same records and primitives as convergence (arpfix.platforms.linux.ownership), with nothing
wanted: VIPs first, then interfaces, links, files, folders, and the sysctls last. A value someone
changed since arpfix set it is kept, and the plan says so (`keep`).
"""

from __future__ import annotations

from typing import Any

from arpfix.model import Change
from arpfix.platforms.linux.common import Step
from arpfix.platforms.linux.ownership import give_back, owned


def rollback_steps(facts: dict[str, Any]) -> list[tuple[Change, Step | None]]:
    """Pure: from the journal, what to restore, remove or keep (a `keep` has no step)."""
    journal = [e for e in facts.get("journal", []) if e.get("op") not in ("begin", "end", "corrupt")]
    out = give_back(owned(facts), facts, keep_changed=True)
    out += [(Change(f"file {path}", "delete", "temp file", None, "left by a cut write"), None)
            for path in facts.get("leftovers", [])]  # removed by the script's lock step
    if facts.get("journal"):
        out.append((Change("journal", "clear", f"{len(journal)} entries", None,
                           "kept as journal.rolled-back.TIME"), None))
    return out
