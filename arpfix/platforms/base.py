"""What a platform (linux, windows) provides. Facts parsing, plan and audit are pure functions."""

from __future__ import annotations

from typing import Any, Protocol

from arpfix.model import Change, Finding
from arpfix.settings import Host, Inventory


class Platform(Protocol):
    name: str

    def facts_script(self, host: Host, inventory: Inventory) -> str:
        """The read-only script that returns the host's facts as one JSON document."""
        ...

    def parse_facts(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Normalise the raw JSON (single objects vs arrays, enum integers) into facts."""
        ...

    def plan(self, facts: dict[str, Any], host: Host, inventory: Inventory) -> list[Change]:
        """Pure: the changes apply would make, in the order it would make them."""
        ...

    def audit(self, facts: dict[str, Any], host: Host, inventory: Inventory) -> list[Finding]:
        """Pure: one finding per check, with expected, actual (effective) and source."""
        ...

    def apply_script(
        self, facts: dict[str, Any], host: Host, inventory: Inventory, changes: list[Change]
    ) -> str:
        """The one script that re-reads state, journals, applies `changes` and returns new facts."""
        ...

    def rollback_plan(self, facts: dict[str, Any], host: Host) -> list[Change]:
        """Pure: from the journal in the facts, what rollback would restore or remove."""
        ...

    def rollback_script(self, facts: dict[str, Any], host: Host, changes: list[Change]) -> str:
        """The one script that undoes what the journal records, guarded, and returns new facts."""
        ...
