"""arpfix.dr.verify: arpfix verify, run on the probing (agent) host with delegate_to and run_once.

The probes run over the task's connection (the delegated host, on the servers' segment). Each
server's state is the document arpfix.dr.facts read from it earlier in the play (hostvars), so
every server is still reached only over its own Ansible connection."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ansible_collections.arpfix.dr.plugins.plugin_utils.runner import (
    ArpfixAction,
    RecordedTransport,
    host_entry,
    inline_inventory,
    inventory_file,
)


class ActionModule(ArpfixAction):
    extra_spec = {"servers": {"type": "list", "elements": "str"}, "load_balancer": {"type": "dict"},
                  "end_to_end": {"type": "bool", "default": False}}

    def target(self, args: dict[str, Any], task_vars: dict[str, Any]) -> tuple[Any, Any]:
        from arpfix.errors import UsageError

        hostvars = task_vars.get("hostvars", {})
        probe = self._task.delegate_to
        if args.get("inventory"):
            inventory = inventory_file(self, args)
            if inventory.agent is None:
                raise UsageError(f"{inventory.path}: verify needs `agent: {{host: ...}}`, a Linux host on the servers' segment")
            if probe != inventory.agent.host:
                raise UsageError(f"verify probes from {inventory.agent.host}, the inventory's agent host: "
                                 f"add `delegate_to: {inventory.agent.host}`")
            return inventory, inventory.hosts[inventory.agent.host]
        if not probe:
            raise UsageError("verify probes from a host on the servers' segment: add `delegate_to: <that host>`")
        servers = args.get("servers") or [n for n in task_vars.get("ansible_play_hosts_all", []) if n != probe]
        hosts = {name: host_entry(name, hostvars.get(name, {}), {**args, "address": None, "platform": None},
                                  hostvars.get(name, {}).get("ansible_connection") in ("winrm", "psrp"))
                 for name in servers}
        hosts[probe] = host_entry(probe, hostvars.get(probe, {}), {"platform": "linux"}, False)
        extra: dict[str, Any] = {"agent": {"host": probe}}
        if args.get("load_balancer"):
            extra["load_balancer"] = args["load_balancer"]
        inventory = inline_inventory(hosts, servers, args, **extra)
        return inventory, inventory.hosts[probe]

    def perform(self, host: Any, ctx: Any, args: dict[str, Any], task_vars: dict[str, Any]) -> dict[str, Any]:
        from arpfix.errors import UsageError
        from arpfix.verify import verify

        inventory = ctx.inventory
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
        out: dict[str, Any] = {"changed": False, "verify": document, "probe_host": host.name}
        if failing or document["segment"].get("error"):
            out["failed"] = True
            out["msg"] = "; ".join(
                f"{h['name']}: " + (h.get("error") or ", ".join(p["detail"] for p in h["probes"] if not p["ok"]))
                for h in failing) or document["segment"]["error"]
        else:
            out["msg"] = f"{len(document['hosts'])} servers verified"
        return out
