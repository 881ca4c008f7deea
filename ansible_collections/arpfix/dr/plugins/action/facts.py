"""arpfix.dr.facts: arpfix facts of the task's host, as ansible_facts.arpfix.

The facts script's own document is kept too (ansible_facts.arpfix_document): arpfix.dr.verify,
run later on the probing host, audits each server from it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ansible_collections.arpfix.dr.plugins.plugin_utils.runner import ArpfixAction, RecordingTransport


class ActionModule(ArpfixAction):
    def perform(self, host: Any, ctx: Any, args: dict[str, Any], task_vars: dict[str, Any]) -> dict[str, Any]:
        from arpfix import operations

        documents: list[dict[str, Any]] = []
        factory = ctx.transport_factory
        result = operations.facts(host, replace(ctx, transport_factory=lambda h: RecordingTransport(factory(h), documents)))
        out = self.outcome(result, changed=False, fail=result.failed)
        out["ansible_facts"] = {"arpfix": result.facts, "arpfix_document": documents[0]}
        return out
