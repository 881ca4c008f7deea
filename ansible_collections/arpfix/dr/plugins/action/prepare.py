"""arpfix.dr.prepare: arpfix apply on the task's host (check mode: arpfix plan)."""

from __future__ import annotations

from typing import Any

from ansible_collections.arpfix.dr.plugins.plugin_utils.runner import ArpfixAction


class ActionModule(ArpfixAction):
    def perform(self, host: Any, ctx: Any, args: dict[str, Any], task_vars: dict[str, Any]) -> dict[str, Any]:
        from arpfix import operations

        if self._task.check_mode:
            planned = operations.plan(host, ctx)
            blocked = planned.status == "blocked"
            first = next((c for c in planned.changes if c.action == "blocked"), None)
            return self.outcome(planned, changed=planned.status == "pending", fail=blocked,
                                msg=f"{first.subject}: {first.detail}" if first else "")
        result = operations.apply(host, ctx)
        return self.outcome(result, changed=result.status in ("changed", "partial"),
                            fail=result.status not in ("ok", "changed"))
