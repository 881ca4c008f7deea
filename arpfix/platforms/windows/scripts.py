"""The Windows scripts, rendered from templates/windows/*.ps1.j2.

Every inventory value reaches PowerShell only inside the parameter block built by `ps_literal`
(strings through arpfix.quoting.ps_quote, integers from Python ints, booleans as $true/$false).
"""

from __future__ import annotations

from typing import Any

from arpfix.errors import ArpfixError
from arpfix.platforms.windows.facts import DEVICE_MARKER, LOOPBACK_METRIC, LOOPBACK_NAME
from arpfix.platforms.windows.plan import desired_state
from arpfix.quoting import ps_quote
from arpfix.settings import Host, Inventory


def ps_literal(value: Any, indent: int = 0) -> str:
    """A PowerShell literal for plain data: strings only through ps_quote."""
    pad = "    " * (indent + 1)
    if isinstance(value, bool):
        return "$true" if value else "$false"
    if value is None:
        return "$null"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, str):
        return ps_quote(value)
    if isinstance(value, dict):
        if not value:
            return "@{}"
        lines = []
        for key, item in value.items():
            if not key.isidentifier():
                raise ArpfixError(f"internal: bad parameter name {key!r}")
            lines.append(f"{pad}{key} = {ps_literal(item, indent + 1)}")
        return "@{\n" + "\n".join(lines) + "\n" + "    " * indent + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "@()"
        return "@(\n" + ",\n".join(pad + ps_literal(v, indent + 1) for v in value) + "\n" + \
            "    " * indent + ")"
    return ps_quote(str(value))


def _ports(host: Host, inventory: Inventory | None) -> list[str]:
    if inventory is None:
        return []
    want = desired_state(host, inventory)
    return sorted({str(p) for v in want.vips for p in v.tcp + v.udp})


def _params(host: Host, inventory: Inventory | None, steps: list[str]) -> str:
    data: dict[str, Any] = {"HostName": host.name, "Steps": steps, "Marker": DEVICE_MARKER,
                            "LoopbackName": LOOPBACK_NAME, "Metric": LOOPBACK_METRIC,
                            "Ports": _ports(host, inventory)}
    if inventory is not None:
        want = desired_state(host, inventory)
        data.update({
            "HostAddress": want.host_address,
            "Vips": [{
                "Name": v.name, "Address": v.address, "Family": "IPv4" if v.family == 4 else "IPv6",
                "Prefix": v.prefix, "Tcp": [str(p) for p in v.tcp], "Udp": [str(p) for p in v.udp]}
                for v in want.vips],
            "Families": ["IPv4" if f == 4 else "IPv6" for f in want.families],
            "KeepBindings": list(want.keep_bindings),
            "RequiredBindings": list(want.required_bindings),
            "NicWeakSend": want.nic_weak_send,
        })
    else:
        data.update({"HostAddress": host.address.compressed.lower(), "Vips": [], "Families": [],
                     "KeepBindings": [], "RequiredBindings": [], "NicWeakSend": False})
    return ps_literal(data)


def _render(template: str, params: str) -> str:
    from arpfix.templating import render

    return render(template, params=params)


def facts_script(host: Host, inventory: Inventory) -> str:
    """Read-only and short enough for one command line (no chunk loader, whose [IO.File] and
    [Convert] calls fail in ConstrainedLanguage mode); only the VIP ports come from the inventory."""
    return _render("windows/facts.ps1.j2",
                   ps_literal({"Ports": _ports(host, inventory)}))


def apply_script(host: Host, inventory: Inventory, steps: list[str]) -> str:
    return _render("windows/apply.ps1.j2", _params(host, inventory, steps))


def rollback_script(host: Host) -> str:
    return _render("windows/rollback.ps1.j2", _params(host, None, ["rollback"]))
