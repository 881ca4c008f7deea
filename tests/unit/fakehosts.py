"""Run the arpfix CLI against fake hosts, to test what a person sees without SSH or a lab.

Each operation (facts, plan, apply, audit, rollback, rollback_dry, verify) returns what the JSON in
$ARPFIX_FAKE describes for the host (or for "*"); every call is logged to $ARPFIX_FAKE_LOG, so a test
can tell that apply never ran after a "no". Usage: python tests/unit/fakehosts.py ARPFIX-ARGS...
"""

from __future__ import annotations

import json
import os
import sys
import time

from arpfix import operations
from arpfix import verify as verify_module
from arpfix.cli import main
from arpfix.errors import TransportError
from arpfix.model import Change, Finding, HostResult

SPEC = json.loads(os.environ.get("ARPFIX_FAKE", "{}"))


def _log(entry: str) -> None:
    if os.environ.get("ARPFIX_FAKE_LOG"):
        with open(os.environ["ARPFIX_FAKE_LOG"], "a") as handle:
            handle.write(entry + "\n")


def result(operation: str, host) -> HostResult:
    _log(f"{operation} {host.name}")
    table = SPEC.get(operation, {})
    spec = table.get(host.name) or table.get("*") or {"status": "ok"}
    if spec.get("sleep"):
        time.sleep(spec["sleep"])
    if spec.get("raise"):
        raise TransportError(spec["raise"])
    return HostResult(host.name, host.platform, spec["status"], error=spec.get("error", ""),
                      changes=[Change(*c) for c in spec.get("changes", [])],
                      findings=[Finding(**f) for f in spec.get("findings", [])],
                      facts=spec.get("facts"), script=spec.get("script"), extra=spec.get("extra", {}))


def _fake(operation: str):
    def step(host, ctx, dry_run: bool = False):
        return result(f"{operation}_dry" if dry_run else operation, host)
    return step


for _name in ("facts", "plan", "apply", "audit", "rollback"):
    setattr(operations, _name, _fake(_name))
if "verify" in SPEC:
    verify_module.verify = lambda *args, **kwargs: SPEC["verify"]

if __name__ == "__main__":
    main(sys.argv[1:])
