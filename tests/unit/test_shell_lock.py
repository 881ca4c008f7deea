"""The host lock of the Linux scripts, run by the real /bin/sh (issue 14): the fallback lock for
hosts without flock records its owner, clears a lock whose owner is gone, and names a live owner
(PID and start) when it gives up; the flock path names the owner too."""

from __future__ import annotations

import subprocess
import time

import pytest

from arpfix.templating import render


def script(state, body, *, flock=False, wait=2):
    library = render("linux/change.sh.j2", version="test", lock_wait=wait)
    library = library.replace("ARPFIX_STATE=/var/lib/arpfix", f"ARPFIX_STATE={state}")
    hide = "" if flock else 'have() { [ "$1" != flock ] && command -v "$1" >/dev/null 2>&1; }\n'
    return library + hide + body


def run(state, body, **kw):
    return subprocess.run(["sh", "-c", script(state, body, **kw)], capture_output=True, text=True, timeout=30)


def start_time(pid):
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()[19]


def test_fallback_lock_records_its_owner_and_is_released(tmp_path):
    result = run(tmp_path, 'take_lock; cat "$ARPFIX_STATE/lock.d/owner"; echo "pid=$$"')
    assert result.returncode == 0, result.stdout + result.stderr
    owner, pid_line = result.stdout.splitlines()[-2:]
    pid, start, since = owner.split()
    assert pid_line == f"pid={pid}" and start.isdigit() and since.endswith("Z")
    assert not (tmp_path / "lock.d").exists()  # released when the script ends


def test_a_lock_whose_owner_is_gone_is_cleared(tmp_path):
    (tmp_path / "lock.d").mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / "lock.d" / "owner").write_text(f"{dead.pid} 12345 2026-11-30T10:00:00Z\n")
    result = run(tmp_path, "take_lock; echo locked")
    assert result.returncode == 0 and result.stdout.strip().endswith("locked"), result.stdout


def test_a_lock_whose_pid_was_reused_is_cleared(tmp_path):
    # the PID lives, but it is another process than the one that took the lock (other start time)
    live = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "lock.d").mkdir()
        (tmp_path / "lock.d" / "owner").write_text(f"{live.pid} 1 2026-11-30T10:00:00Z\n")
        result = run(tmp_path, "take_lock; echo locked")
        assert result.stdout.strip().endswith("locked"), result.stdout
    finally:
        live.kill()


def test_a_live_owner_is_waited_for_and_named(tmp_path):
    live = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "lock.d").mkdir()
        (tmp_path / "lock.d" / "owner").write_text(f"{live.pid} {start_time(live.pid)} 2026-11-30T10:00:00Z\n")
        started = time.monotonic()
        result = run(tmp_path, "take_lock; echo locked", wait=1)
        assert result.returncode == 1 and "locked" not in result.stdout
        assert f"another arpfix run holds the lock on this host (pid {live.pid} since 2026-11-30T10:00:00Z)" in result.stdout
        assert time.monotonic() - started < 10
        assert (tmp_path / "lock.d").exists()  # a live owner's lock is never taken away
    finally:
        live.kill()


def test_a_lock_dir_without_owner_is_cleared_after_two_seconds(tmp_path):
    (tmp_path / "lock.d").mkdir()  # a run killed between mkdir and writing its owner
    result = run(tmp_path, "take_lock; echo locked", wait=5)
    assert result.stdout.strip().endswith("locked"), result.stdout


@pytest.mark.skipif(subprocess.run(["sh", "-c", "command -v flock"], capture_output=True).returncode != 0,
                    reason="flock (util-linux) not installed")
def test_flock_holder_is_named_when_waiting_gives_up(tmp_path):
    first = subprocess.Popen(["sh", "-c", script(tmp_path, "take_lock; echo held; sleep 20", flock=True)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "held"
        result = run(tmp_path, "take_lock; echo locked", flock=True, wait=1)
        assert result.returncode == 1 and f"(pid {first.pid} since " in result.stdout, result.stdout
    finally:
        first.kill()
