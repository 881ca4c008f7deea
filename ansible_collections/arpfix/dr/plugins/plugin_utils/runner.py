"""What every arpfix.dr action plugin shares: the task's host as an arpfix Host, a Transport over
the task's Ansible connection, and arpfix results turned into Ansible results.

Nothing here plans or renders: arpfix.operations does both, exactly as for the CLI. This module
only carries arpfix's scripts over Ansible's connection (ActionBase._low_level_execute_command, so
become, ControlPersist, jump hosts and credentials are Ansible's) and translates the outcome.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
from typing import Any

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.plugins.action import ActionBase

try:
    from arpfix.errors import ArpfixError, TransportError, UsageError
    from arpfix.inventory import load_inventory, validate
    from arpfix.model import HostResult
    from arpfix.operations import RunContext
    from arpfix.settings import Host, Inventory
    from arpfix.transport import TransportOptions
    from arpfix.transport.base import parse_json_output, stdin_safe
    from arpfix.transport.winrm import COMMAND_LINE_LIMIT, encode_command, full_script, parse_output, stdin_loader
    from arpfix.yamlsource import Located

    ARPFIX_IMPORT_ERROR = None
except ImportError as exc:  # the controller (or execution environment) lacks the arpfix package
    ARPFIX_IMPORT_ERROR = exc

# What Ansible's winrm and psrp connections pass through unchanged (they re-encode any other
# command, and their encoder strips every line's indentation): the powershell shell plugin's own
# prefix, `_common_args` + -EncodedCommand in ansible/plugins/shell/powershell.py.
ENCODED_PREFIX = "PowerShell -NoProfile -NonInteractive -ExecutionPolicy Unrestricted -EncodedCommand "

# The task arguments every action takes (the modules' documentation, doc_fragments/arpfix.py, says
# what each means). Values are checked by arpfix's own inventory validator, not here.
TARGET_SPEC: dict[str, Any] = {
    "inventory": {"type": "path"},
    "host": {"type": "str"},
    "vips": {"type": "list", "elements": "dict"},
    "profiles": {"type": "dict"},
    "platform": {"type": "str", "choices": ["linux", "windows"]},
    "address": {"type": "str"},
    "method": {"type": "str"},
    "nic": {"type": "str"},
    "windows_profile": {"type": "str"},
    "keep_bindings": {"type": "list", "elements": "str"},
}
INLINE_HOST_KEYS = ("method", "nic", "windows_profile", "keep_bindings")


class AnsibleTransport:
    """arpfix's Transport over the task's Ansible connection.

    Linux: the script goes on stdin to `sh -s` (as arpfix's SSH transport sends it), through
    Ansible's become. Windows: arpfix's PowerShell text (prelude, script, postlude) as one encoded
    command; where that exceeds cmd.exe's line limit on winrm, arpfix's loader reads it from stdin,
    the way Ansible's own bootstrap_wrapper.ps1 reads its payload ($input).
    """

    def __init__(self, action: ActionBase, host: Host) -> None:
        self.action = action
        self.host = host
        self.unreachable = False

    def _execute(self, command: str, stdin: bytes, sudoable: bool) -> tuple[str, str, int]:
        try:
            result = self.action._low_level_execute_command(command, sudoable=sudoable, in_data=stdin)
        except AnsibleConnectionFailure as exc:
            self.unreachable = True
            raise TransportError(f"{self.host.name}: {_one_line(exc)}") from None
        except AnsibleError as exc:
            raise TransportError(f"{self.host.name}: {_one_line(exc)}") from None
        return result.get("stdout", ""), result.get("stderr", ""), int(result.get("rc", 1))

    def run_script(self, script: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Run the script on the host, return its JSON document (arpfix.transport.base.Transport).

        `timeout` is not applied here: Ansible bounds a task with its own `timeout:` keyword."""
        if self.host.platform == "windows":
            full = full_script(script)
            command = ENCODED_PREFIX + encode_command(full)
            stdin = b""
            psrp = "psrp" in str(getattr(self.action._connection, "transport", ""))
            if not psrp and len(command) > COMMAND_LINE_LIMIT:  # psrp runs it in a runspace: no limit
                command = ENCODED_PREFIX + encode_command(stdin_loader())
                stdin = base64.b64encode(full.encode("utf-8"))
            out, err, code = self._execute(command, stdin, sudoable=False)
            return parse_output(self.host.name, out, err, code)
        out, err, code = self._execute("sh -s", stdin_safe(script).encode("utf-8"), sudoable=True)
        return parse_json_output(self.host.name, out, err, code)

    def close(self) -> None:
        """Nothing to close: the connection is Ansible's, reused by the next task."""


class RecordingTransport:
    """A transport that keeps every document the scripts returned (arpfix.dr.facts keeps the facts
    script's for arpfix.dr.verify)."""

    def __init__(self, transport: Any, documents: list[dict[str, Any]]) -> None:
        self.transport = transport
        self.documents = documents

    def run_script(self, script: str, *, timeout: float | None = None) -> dict[str, Any]:
        self.documents.append(self.transport.run_script(script, timeout=timeout))
        return self.documents[-1]

    def close(self) -> None:
        self.transport.close()


class RecordedTransport:
    """A transport that answers the facts script with a document read earlier (arpfix.dr.facts)."""

    def __init__(self, host: Host, document: dict[str, Any]) -> None:
        self.host = host
        self.document = document

    def run_script(self, script: str, *, timeout: float | None = None) -> dict[str, Any]:
        return self.document

    def close(self) -> None:
        """Nothing to close."""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(getattr(exc, "message", None) or exc).split())
    return text or type(exc).__name__


def is_windows_connection(action: ActionBase) -> bool:
    shell = getattr(action._connection, "_shell", None)
    return getattr(shell, "SHELL_FAMILY", "") == "powershell"


def inventory_file(action: ActionBase, args: dict[str, Any]) -> Inventory:
    """The arpfix inventory file `inventory` names (relative: to the playbook's folder)."""
    inline = [key for key in ("vips", "profiles", "platform", "address", *INLINE_HOST_KEYS) if args.get(key) is not None]
    if inline:
        raise UsageError(f"give either inventory or {', '.join(inline)}, not both")
    path = args["inventory"]
    if not os.path.isabs(path):
        path = os.path.join(action._loader.get_basedir(), path)
    return load_inventory(path)


def host_entry(name: str, host_vars: dict[str, Any], args: dict[str, Any], windows: bool) -> dict[str, Any]:
    """An arpfix inventory host for an Ansible host: its address as arpfix reads an Ansible
    inventory (arpfix_address where ansible_host is a name), the rest from the task's arguments."""
    address = args.get("address") or host_vars.get("arpfix_address") or host_vars.get("ansible_host") or name
    try:
        address = str(ipaddress.ip_address(address))
    except ValueError:
        raise UsageError(f"{name}: address: give the server's own IP address ({address!r} is not one; "
                         "set arpfix_address)") from None
    body: dict[str, Any] = {"platform": args.get("platform") or ("windows" if windows else "linux"), "address": address}
    body.update({key: args[key] for key in INLINE_HOST_KEYS if args.get(key) is not None})
    return body


def inline_inventory(hosts: dict[str, dict[str, Any]], servers: list[str], args: dict[str, Any],
                     **extra: Any) -> Inventory:
    """The inventory the task's arguments describe (`servers` are the VIPs' real servers),
    validated by arpfix's own validator."""
    if not args.get("vips"):
        raise UsageError("give `vips` (the VIPs the servers serve) or `inventory` (an arpfix inventory file)")
    vips = []
    for vip in args["vips"]:
        if "real_servers" in vip:
            raise UsageError("vips: real_servers is not a task argument (the play's hosts are the real servers)")
        vips.append({**vip, "real_servers": servers})
    document = {"hosts": hosts, "vips": vips, "profiles": args.get("profiles") or {}, **extra}
    return validate(Located(document, {}, "task arguments"))


def load_target(action: ActionBase, args: dict[str, Any], task_vars: dict[str, Any]) -> tuple[Inventory, Host]:
    """The arpfix inventory and the task's host in it: from `inventory` (a file) or from the task's
    own arguments, validated by arpfix's inventory validator either way."""
    name = args.get("host") or task_vars.get("inventory_hostname")
    if args.get("inventory"):
        inventory = inventory_file(action, args)
        if name not in inventory.hosts:
            raise UsageError(f"host {name!r} is not in {inventory.path} (set `host:` to its name there)")
        return inventory, inventory.hosts[name]
    inventory = inline_inventory({name: host_entry(name, task_vars, args, is_windows_connection(action))}, [name], args)
    return inventory, inventory.hosts[name]


def diff_of(result: HostResult) -> list[dict[str, str]]:
    """Ansible's diff: one entry per change, from -> to."""
    return [{"before_header": f"{c.subject} ({c.action})", "after_header": f"{c.subject} ({c.action})",
             "before": _shown(c.before), "after": _shown(c.after)} for c in result.changes]


def _shown(value: Any) -> str:
    if value is None:
        return ""
    return (value if isinstance(value, str) else json.dumps(value, sort_keys=True)) + "\n"


class ArpfixAction(ActionBase):
    """The frame of every arpfix.dr action: validate, build the context, run, translate."""

    TRANSFERS_FILES = False
    _requires_connection = True
    _supports_check_mode = True
    _supports_async = False
    extra_spec: dict[str, Any] = {}

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        if ARPFIX_IMPORT_ERROR is not None:
            return {"failed": True, "msg": f"the arpfix Python package is needed on the controller: {ARPFIX_IMPORT_ERROR}"}
        _, args = self.validate_argument_spec(argument_spec={**TARGET_SPEC, **self.extra_spec})
        transports: list[AnsibleTransport] = []

        def factory(host: Host) -> AnsibleTransport:
            transports.append(AnsibleTransport(self, host))
            return transports[-1]

        try:
            inventory, host = self.target(args, task_vars or {})
            ctx = RunContext(inventory, TransportOptions(), transport_factory=factory)
            result.update(self.perform(host, ctx, args, task_vars or {}))
        except ArpfixError as exc:
            result.update(failed=True, msg=" ".join(str(exc).split("\n")))
        if any(t.unreachable for t in transports):  # as Ansible reports a host it cannot reach
            result.pop("failed", None)
            result["unreachable"] = True
        return result

    def target(self, args: dict[str, Any], task_vars: dict[str, Any]) -> tuple[Inventory, Host]:
        """The inventory and the host this task works on."""
        return load_target(self, args, task_vars)

    def perform(self, host: Host, ctx: RunContext, args: dict[str, Any], task_vars: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def outcome(result: HostResult, *, changed: bool, fail: bool, msg: str = "") -> dict[str, Any]:
        """The Ansible result of one arpfix HostResult: arpfix's JSON plus changed/failed/msg."""
        out = {"changed": changed, "arpfix": result.to_json(), "status": result.status}
        if result.changes:
            out["diff"] = diff_of(result)
        if fail:
            out["failed"] = True
            out["msg"] = result.error or msg or result.status
        elif msg:
            out["msg"] = msg
        return out
