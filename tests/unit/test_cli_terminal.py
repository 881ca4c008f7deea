"""What a person at a terminal sees: apply and rollback show what they would do, then ask; Ctrl-C
says what may have happened on the hosts. Through a pseudo-terminal (pexpect), against fake hosts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pexpect
import pytest

from arpfix.exitcodes import Exit
from tests.unit.test_cli_output import FAKE, INVENTORY, SYSCTL

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")


def spawn(tmp_path, spec, *args):
    path = tmp_path / "inv.yml"
    path.write_text(INVENTORY)
    env = {**os.environ, "ARPFIX_FAKE": json.dumps(spec), "ARPFIX_FAKE_LOG": str(tmp_path / "calls.log"),
           "NO_COLOR": "1"}
    return pexpect.spawn(sys.executable, [str(FAKE), *args, "-i", str(path)], env=env, encoding="utf-8",
                         timeout=30, dimensions=(50, 200))


def finish(child) -> int:
    """Wait for the end of the run; its exit code."""
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus


def calls(tmp_path):
    log = tmp_path / "calls.log"
    return log.read_text().split("\n") if log.exists() else []


PENDING = {"plan": {"rs1": {"status": "pending", "changes": [SYSCTL]}, "*": {"status": "ok"}},
           "apply": {"*": {"status": "changed", "changes": [SYSCTL]}}}


def test_apply_shows_the_plan_then_asks_and_no_changes_nothing(tmp_path):
    child = spawn(tmp_path, PENDING, "apply")
    child.expect("sysctl net.ipv4.conf.all.arp_ignore")  # the plan first
    child.expect(r"3 hosts: 2 ok, 1 pending")
    child.expect(r"apply: make these 1 change on 1 host\? \[y/N\]")
    child.sendline("n")
    child.expect("apply: answered no: nothing changed")
    assert finish(child) == Exit.PENDING
    assert not any(call.startswith("apply ") for call in calls(tmp_path))


def test_apply_answered_yes_applies(tmp_path):
    child = spawn(tmp_path, PENDING, "apply")
    child.expect(r"\[y/N\]")
    child.sendline("y")
    child.expect(r"3 hosts: 3 changed")
    assert finish(child) == Exit.OK
    assert "apply rs1" in calls(tmp_path)


def test_apply_with_nothing_to_do_does_not_ask(tmp_path):
    child = spawn(tmp_path, {"plan": {"*": {"status": "ok"}}}, "apply")
    child.expect("apply: nothing to do")
    assert finish(child) == Exit.OK
    assert not any(call.startswith("apply ") for call in calls(tmp_path))


def test_rollback_shows_what_it_would_undo_then_asks(tmp_path):
    spec = {"rollback_dry": {"rs2": {"status": "pending", "changes": [["address 10.9.0.250", "remove", "on lo", None, ""]]},
                             "*": {"status": "ok"}}}
    child = spawn(tmp_path, spec, "rollback")
    child.expect("address 10.9.0.250")
    child.expect(r"rollback: make these 1 change on 1 host\? \[y/N\]")
    child.sendline("")  # the default is no
    child.expect("nothing changed")
    assert finish(child) == Exit.PENDING
    assert "rollback_dry rs2" in calls(tmp_path) and "rollback rs2" not in calls(tmp_path)


def test_ctrl_c_says_what_may_have_happened_on_the_hosts(tmp_path):
    """Two Ctrl-C during an apply: the host in flight is `interrupted`, and the message says its
    script may have finished and to run audit (the lab tests cover real hosts; this is the wording)."""
    path = tmp_path / "inv.yml"
    path.write_text(INVENTORY)
    spec = {"apply": {"rs1": {"status": "changed", "sleep": 30}, "*": {"status": "changed"}}}
    env = {**os.environ, "ARPFIX_FAKE": json.dumps(spec), "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, str(FAKE), "apply", "--yes", "--forks", "1", "-i", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        time.sleep(2.0)  # rs1 is running (30 s); rs2 and rs3 wait for the one fork
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == Exit.INTERRUPTED, err
    assert "waiting up to 20s for 1 host in flight" in err
    assert ("1 host was still running when arpfix stopped waiting: its script may have finished, may still be "
            "running or stopped part-way; run `arpfix audit` to see its state") in err
    assert "3 hosts: 1 interrupted, 2 not started" in err
    statuses = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.startswith("rs")}
    assert statuses == {"rs1": "interrupted", "rs2": "not", "rs3": "not"}
