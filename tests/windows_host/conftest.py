"""The windows_host suite: the real CLI over real WinRM against one disposable Windows Server.

It runs only when the environment names a host and credentials (see docs/windows-host-tests.md):

    ARPFIX_WINDOWS_HOST      what to connect to (name or address)                       required
    ARPFIX_WINDOWS_USER      WinRM user, e.g. 'CORP\\svc-arpfix' or '.\\Administrator'   required
    ARPFIX_WINDOWS_PASSWORD  its password (reaches arpfix only as {env: ...})           required
    ARPFIX_WINDOWS_ADDRESS   the server's own address on its primary NIC       (default: the HOST if it is an address)
    ARPFIX_WINDOWS_VIP       the VIP to configure                                (default 192.0.2.200, TEST-NET-1)
    ARPFIX_WINDOWS_SCHEME / _PORT / _AUTH / _CA_BUNDLE   transport          (default http, 5985/5986, ntlm)
    ARPFIX_WINDOWS_INSECURE=1   pass --insecure (self-signed HTTPS listener on a test VM)

Otherwise every test is skipped with the reason, so a skip is never mistaken for a pass. The tests
carry the `windows_host` marker, not `lab`: CI (ARPFIX_REQUIRE_LAB=1) has no Windows host and must
not fail on this skip. With ARPFIX_REQUIRE_WINDOWS_HOST=1 (a run meant to be real) a skip fails.

The steps are one ordered story on one host (facts, plan, apply, ...): once a step fails, the
later ones are skipped with "an earlier step failed", never run against a half-changed host.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REQUIRED = ("ARPFIX_WINDOWS_HOST", "ARPFIX_WINDOWS_USER", "ARPFIX_WINDOWS_PASSWORD")
DEFAULT_VIP = "192.0.2.200"
COMMAND_TIMEOUT = 900  # seconds per CLI call: creating the loopback adapter can take a while


def missing_settings(env: dict[str, str]) -> str:
    """Why the suite cannot run with this environment ('' when it can)."""
    missing = [name for name in REQUIRED if not env.get(name)]
    if missing:
        return f"windows_host suite not run: set {', '.join(missing)} (see docs/windows-host-tests.md)"
    if not env.get("ARPFIX_WINDOWS_ADDRESS"):
        try:
            ipaddress.ip_address(env["ARPFIX_WINDOWS_HOST"])
        except ValueError:
            return ("windows_host suite not run: ARPFIX_WINDOWS_HOST is a name; set ARPFIX_WINDOWS_ADDRESS "
                    "to the server's own address on its primary NIC")
    return ""


@dataclass
class WindowsHost:
    """One disposable Windows Server, an inventory for it, and the real CLI to run against it."""

    inventory_path: Path
    env: dict[str, str]
    insecure: bool
    vip: str
    address: str
    state: dict[str, Any] = field(default_factory=dict)  # what earlier steps saw (facts before, ...)

    def arpfix(self, *args: str) -> tuple[int, dict[str, Any], str]:
        """Run `arpfix ARGS -i INVENTORY --format json`; return (exit code, JSON document, stderr)."""
        argv = [sys.executable, "-m", "arpfix.cli", *args, "-i", str(self.inventory_path), "--format", "json"]
        if self.insecure:
            argv.append("--insecure")
        done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, env=self.env)
        try:
            document = json.loads(done.stdout) if done.stdout.strip() else {}
        except ValueError:
            document = {"unparsed": done.stdout}
        assert self.env["ARPFIX_WINDOWS_PASSWORD"] not in done.stdout + done.stderr, "the password was printed"
        return done.returncode, document, done.stderr

    def only_host(self, document: dict[str, Any]) -> dict[str, Any]:
        hosts = document.get("hosts", [])
        assert len(hosts) == 1, f"expected one host in {document}"
        return hosts[0]


def write_inventory(path: Path, env: dict[str, str]) -> tuple[str, str]:
    scheme = env.get("ARPFIX_WINDOWS_SCHEME", "http")
    port = int(env.get("ARPFIX_WINDOWS_PORT", "5985" if scheme == "http" else "5986"))
    winrm: dict[str, Any] = {
        "scheme": scheme, "port": port, "auth": env.get("ARPFIX_WINDOWS_AUTH", "ntlm"),
        "user": env["ARPFIX_WINDOWS_USER"], "password": {"env": "ARPFIX_WINDOWS_PASSWORD"},
        "operation_timeout": 600,
    }
    if env.get("ARPFIX_WINDOWS_CA_BUNDLE"):
        winrm["ca_bundle"] = env["ARPFIX_WINDOWS_CA_BUNDLE"]
    if env.get("ARPFIX_WINDOWS_INSECURE") == "1" and scheme == "https":
        winrm["cert_validation"] = False
    address = env.get("ARPFIX_WINDOWS_ADDRESS") or env["ARPFIX_WINDOWS_HOST"]
    vip = ipaddress.ip_address(env.get("ARPFIX_WINDOWS_VIP", DEFAULT_VIP).strip()).compressed.lower()
    document = {
        "hosts": {"win1": {"platform": "windows", "address": address, "connect": env["ARPFIX_WINDOWS_HOST"],
                           "winrm": winrm}},
        "vips": [{"name": "hosttest", "address": vip, "services": [{"protocol": "tcp", "port": 8080}],
                  "real_servers": ["win1"]}],
    }
    path.write_text(json.dumps(document, indent=2))  # JSON is YAML: no quoting surprises in names
    return address, vip


@pytest.fixture(scope="module")
def windows_host(tmp_path_factory) -> Iterator[WindowsHost]:
    reason = missing_settings(dict(os.environ))
    if reason:
        pytest.skip(reason)
    path = tmp_path_factory.mktemp("windows-host") / "inventory.yml"
    address, vip = write_inventory(path, dict(os.environ))
    host = WindowsHost(path, dict(os.environ), os.environ.get("ARPFIX_WINDOWS_INSECURE") == "1", vip, address)
    yield host
    if host.state.get("applied") and not host.state.get("rolled_back"):
        # a step failed between apply and rollback: leave the VM as it was if arpfix still can
        host.arpfix("rollback", "--yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not item.get_closest_marker("windows_host"):
        return
    if report.failed and report.when == "call":
        item.module.__dict__.setdefault("_windows_host_failed", item.name)
    if report.skipped and os.environ.get("ARPFIX_REQUIRE_WINDOWS_HOST") == "1":
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"windows_host test skipped but ARPFIX_REQUIRE_WINDOWS_HOST=1: {reason}"


def pytest_runtest_setup(item):
    failed = item.module.__dict__.get("_windows_host_failed")
    if item.get_closest_marker("windows_host") and failed:
        pytest.skip(f"an earlier step failed ({failed}): not run against a half-changed host")
