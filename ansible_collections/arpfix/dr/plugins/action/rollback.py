"""arpfix.dr.rollback: arpfix rollback on the task's host (check mode: rollback --dry-run)."""

from __future__ import annotations

from typing import Any

from ansible_collections.arpfix.dr.plugins.plugin_utils.runner import ArpfixAction


class ActionModule(ArpfixAction):
    def perform(self, host: Any, ctx: Any, args: dict[str, Any], task_vars: dict[str, Any]) -> dict[str, Any]:
        from arpfix import operations

        result = operations.rollback(host, ctx, dry_run=self._task.check_mode)
        out = self.outcome(result, changed=result.status in ("pending", "changed", "kept", "partial"),
                           fail=result.status not in ("ok", "pending", "changed", "kept"))
        if result.status == "kept":  # the CLI's exit 3: restored the rest, left these as they are now
            out["warnings"] = [f"left as it is now: {item}" for item in result.extra.get("left", [])]
        return out
