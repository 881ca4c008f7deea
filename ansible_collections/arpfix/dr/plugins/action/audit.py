"""arpfix.dr.audit: arpfix audit on the task's host; drift fails the task unless fail_on_drift is false."""

from __future__ import annotations

from typing import Any

from ansible_collections.arpfix.dr.plugins.plugin_utils.runner import ArpfixAction


class ActionModule(ArpfixAction):
    extra_spec = {"fail_on_drift": {"type": "bool", "default": True}}

    def perform(self, host: Any, ctx: Any, args: dict[str, Any], task_vars: dict[str, Any]) -> dict[str, Any]:
        from arpfix import operations

        result = operations.audit(host, ctx)
        drift = [f for f in result.findings if not f.ok and f.severity == "error"]
        out = self.outcome(result, changed=False, fail=bool(drift) and args["fail_on_drift"],
                           msg="drift: " + "; ".join(f"{f.check}: expected {f.expected}, actual {f.actual}" for f in drift)
                           if drift else f"compliant ({len(result.findings)} checks)")
        del out["arpfix"]  # the findings below are its content
        out.update(compliant=not drift, findings=[f.to_json() for f in result.findings], drift=[f.check for f in drift])
        return out
