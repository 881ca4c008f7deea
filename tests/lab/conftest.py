"""Fixtures for tests that run against the real-kernel lab (arpfix.lab).

Stable API (other lab test modules rely on it):

``lab`` (module scope)
    A lab with 3 real servers, built once per test module and ALWAYS torn down (finalizer,
    also when a test or the build fails).
``lab_factory`` (function scope)
    ``lab_factory(hosts=N)`` builds a fresh lab with N real servers for one test; every lab it
    made is torn down after the test. May be called more than once per test.

Both give a ``LabHandle``:

    .name            unique lab name, "t" + 5 hex digits
    .state_dir       the lab's state dir (under pytest's tmp dir)
    .status          dict: the JSON of `arpfix lab status --format json` (hosts, vip, ssh, ...)
    .inventory_path  path of the arpfix inventory the lab wrote (hosts rs1..rsN + agent, VIP "lab")
    .exec(host, cmd_list, check=True, **kw) -> subprocess.CompletedProcess (text, captured)
                     runs cmd_list inside the host's network + filesystem view
    .exec_argv(host) argv prefix for running something inside a host yourself (Popen ...)
    .hosts_by_role(role) -> list of host dicts; role "real-server" | "agent" | "client"
    .host(name)      -> the host dict of .status["hosts"]

``pristine`` (function scope, with ``lab``)
    An editable copy of the lab's inventory (tests/lab/lifecycle_tools.Inventory); afterwards
    `arpfix rollback` must bring every real server back to its strict snapshot, byte for byte.

Lab tests skip (with the reason) when not root, without `ip netns`, or without sshd; with
ARPFIX_REQUIRE_LAB=1 (CI) the top-level conftest turns that skip into a failure.
Mark lab test modules with ``pytestmark = pytest.mark.lab``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest


def lab_unavailable_reason() -> str | None:
    """Why lab tests cannot run here, or None."""
    if not sys.platform.startswith("linux"):
        return "not Linux"
    if os.geteuid() != 0:
        return "not running as root"
    for tool in ("ip", "nsenter", "unshare", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"`{tool}` not found"
    if not os.access("/usr/sbin/sshd", os.X_OK):
        return "/usr/sbin/sshd missing (apt-get install openssh-server)"
    probe = f"tprobe{secrets.token_hex(3)}"
    try:
        added = subprocess.run(["ip", "netns", "add", probe], check=False, capture_output=True, text=True)
    except OSError as exc:
        return f"`ip netns` unusable: {exc}"
    if added.returncode != 0:
        return f"`ip netns add` failed: {added.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False, capture_output=True)
    return None


_REASON: list[str | None] = []


def _require_lab() -> None:
    if not _REASON:
        _REASON.append(lab_unavailable_reason())
    if _REASON[0]:
        pytest.skip(f"lab tests need root and network namespaces: {_REASON[0]}")


@dataclass
class LabHandle:
    name: str
    state_dir: str
    status: dict[str, Any]
    inventory_path: str
    up_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def exec_argv(self, host: str) -> list[str]:
        from arpfix.lab.core import lab_exec_argv

        return lab_exec_argv(self.name, host)

    def exec(self, host: str, cmd: list[str], check: bool = True,
             **kwargs: Any) -> subprocess.CompletedProcess[str]:
        from arpfix.lab.core import run_in

        kwargs.setdefault("timeout", 60)
        return run_in(self.name, host, cmd, check=check, **kwargs)

    def hosts_by_role(self, role: str) -> list[dict[str, Any]]:
        return [h for h in self.status["hosts"] if h["role"] == role]

    def host(self, name: str) -> dict[str, Any]:
        return next(h for h in self.status["hosts"] if h["name"] == name)

    def refresh(self) -> dict[str, Any]:
        from arpfix.lab.core import lab_status

        self.status = lab_status(self.name)
        return self.status


def _build(tmp_factory: pytest.TempPathFactory, hosts: int,
           finalizers: list[Callable[[], None]]) -> LabHandle:
    import time

    from arpfix.lab.core import lab_down, lab_up

    _require_lab()
    name = "t" + secrets.token_hex(3)[:5]
    state_dir = str(tmp_factory.mktemp(f"lab-{name}", numbered=True) / "state")
    # Registered before building: lab_up cleans up after itself, but a crash or a kill in the
    # middle must not leave namespaces behind.
    finalizers.append(lambda: lab_down(name))
    started = time.monotonic()
    info = lab_up(name, hosts, state_dir)
    return LabHandle(name=info.name, state_dir=info.state_dir, status=info.status,
                     inventory_path=info.inventory_path, up_seconds=time.monotonic() - started)


def _run_finalizers(finalizers: list[Callable[[], None]]) -> None:
    errors = []
    for fin in reversed(finalizers):
        try:
            fin()
        except Exception as exc:  # noqa: BLE001 - tear down the rest first
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    """A 3-server lab shared by the tests of one module; always torn down."""
    finalizers: list[Callable[[], None]] = []
    try:
        yield _build(tmp_path_factory, 3, finalizers)
    finally:
        _run_finalizers(finalizers)


@pytest.fixture
def lab_factory(tmp_path_factory: pytest.TempPathFactory):
    """lab_factory(hosts=N) -> LabHandle; every lab made is torn down after the test."""
    finalizers: list[Callable[[], None]] = []

    def make(hosts: int = 3) -> LabHandle:
        return _build(tmp_path_factory, hosts, finalizers)

    try:
        yield make
    finally:
        _run_finalizers(finalizers)


@pytest.fixture
def pristine(lab, tmp_path):
    """An editable inventory; afterwards rollback must bring every server back byte for byte."""
    import json

    from arpfix.exitcodes import Exit
    from tests.lab.lifecycle_tools import Inventory, arpfix_json, snapshot

    servers = [h["name"] for h in lab.hosts_by_role("real-server")]
    before = {name: snapshot(lab, name) for name in servers}
    inventory = Inventory(lab, str(tmp_path / "inventory.yml"))
    inventory.write()
    yield inventory
    code, document = arpfix_json(inventory.write(), "rollback", "--yes")
    for name in servers:
        assert snapshot(lab, name) == before[name], f"{name} not back to its pristine state after rollback"
    assert code == Exit.OK, json.dumps(document, indent=1)
