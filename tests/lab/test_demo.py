"""The README's first command: the demo completes on a fresh lab and leaves nothing behind."""

from __future__ import annotations

import secrets
import subprocess
import sys

import pytest

pytestmark = pytest.mark.lab


def test_demo_tells_the_whole_story_and_cleans_up(lab_factory):
    lab_factory  # noqa: B018 - the fixture's skip logic applies (root, namespaces, sshd)
    name = "d" + secrets.token_hex(3)
    try:
        result = subprocess.run([sys.executable, "-m", "arpfix.cli", "lab", "demo", "--name", name],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr
        out = result.stdout
        for chapter in ("Audit the unprepared servers", "The ARP problem, live", "Plan", "Apply",
                        "Verify from the segment", "Real traffic through the bundled DR agent", "Roll back", "Tear down", "Demo complete"):
            assert chapter in out
        assert "a real server answers ARP for the VIP" in out
        assert "no real server answers ARP for the VIP any more" in out
        assert "verified" in out and "FAIL" not in out
        assert "every connection answered from the VIP" in out
        assert "agent stopped: exit 0" in out
        assert "service " in out and ": ok: 3/3 connections accepted" in out
        # each step says what it shows (issue 16): why rs1's plan has no VIP line, the summaries,
        # the audit table at the end, and that rollback brings the ARP problem back on purpose
        assert "rs1 already carries it" in out
        plan_section = out.split("$ arpfix plan", 1)[1].split("== ", 1)[0]
        assert "address " not in plan_section and "sysctl" in plan_section
        assert "3 hosts: 3 compliant" in out
        final = out.split("Audit after the rollback", 1)[1]
        assert "DRIFT" in final and "3 hosts: 3 drift" in final and "(exit 3)" in final
        assert "brings the ARP problem back on purpose" in out
        assert "back to the starting state, ARP problem included" in out
    finally:
        subprocess.run([sys.executable, "-m", "arpfix.cli", "lab", "down", "--name", name], capture_output=True)
    assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
