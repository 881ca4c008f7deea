"""arpfix.dr.verify: arpfix verify, run on the probing (agent) host, usually with delegate_to.

The probes run over the task's connection (the delegated host, on the servers' segment). Each
server's state is the document arpfix.dr.facts read from it earlier in the play (hostvars), so
every server is still reached only over its own Ansible connection."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ansible_collections.arpfix.dr.plugins.plugin_utils.runner import ArpfixAction, RecordedTransport


class ActionModule(ArpfixAction):
    extra_spec = {"servers": {"type": "list", "elements": "str"}, "end_to_end": {"type": "bool", "default": False}}

    def perform(self, host: Any, ctx: Any, args: dict[str, Any], task_vars: dict[str, Any]) -> dict[str, Any]:
        from arpfix.errors import UsageError
        from arpfix.verify import verify

        inventory = ctx.inventory
        if inventory.agent is None or not args.get("inventory"):
            raise UsageError("verify needs `inventory`: an arpfix inventory file with `agent: {host: ...}`")
        agent = inventory.hosts[inventory.agent.host]
        runs_on = self._task.delegate_to or task_vars.get("inventory_hostname")
        if runs_on != agent.name:
            raise UsageError(f"verify probes from {agent.name}, the inventory's agent host: add `delegate_to: {agent.name}`")
        names = args.get("servers") or [n for n in inventory.real_servers if n in task_vars.get("ansible_play_hosts_all", [])]
        hostvars = task_vars.get("hostvars", {})
        documents = {}
        for name in names:
            if name not in inventory.hosts:
                raise UsageError(f"servers: {name!r} is not in {inventory.path}")
            document = (hostvars.get(name, {}).get("ansible_facts") or {}).get("arpfix_document")
            if not document:
                raise UsageError(f"no arpfix facts for {name}: run arpfix.dr.facts on the servers earlier in the play")
            documents[name] = document
        factory = ctx.transport_factory

        def transport(target: Any) -> Any:
            if target.name in documents:
                return RecordedTransport(target, documents[target.name])
            return factory(target)  # the probing host: the task's (delegated) connection

        servers = [inventory.hosts[name] for name in names]
        document = verify(inventory, servers, replace(ctx, transport_factory=transport), forks=1, progress=False,
                          end_to_end=args["end_to_end"])
        failing = [h for h in document["hosts"] if h.get("status") != "verified"]
        out: dict[str, Any] = {"changed": False, "verify": document, "probe_host": agent.name}
        if failing or document["segment"].get("error"):
            out["failed"] = True
            out["msg"] = "; ".join(
                f"{h['name']}: " + (h.get("error") or ", ".join(p["detail"] for p in h["probes"] if not p["ok"]))
                for h in failing) or document["segment"]["error"]
        else:
            out["msg"] = f"{len(document['hosts'])} servers verified"
        return out
