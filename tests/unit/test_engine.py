"""The fleet engine: every host's result in inventory order whatever order they finish in, a bug on
one host is that host's error, and Ctrl-C starts no new host (no SSH: steps are plain functions)."""

from __future__ import annotations

import ipaddress
import os
import random
import signal
import threading
import time

from arpfix.engine import run_on_hosts
from arpfix.model import HostResult
from arpfix.settings import Host


def hosts(count):
    return [Host(f"h{i}", "linux", ipaddress.ip_address(f"192.0.2.{i % 250 + 1}"), f"h{i}") for i in range(count)]


def test_results_come_in_inventory_order_whatever_order_hosts_finish_in():
    rng = random.Random(7)
    delays = {f"h{i}": rng.uniform(0, 0.05) for i in range(200)}

    def step(host):
        time.sleep(delays[host.name])
        if host.name == "h13":
            raise RuntimeError("boom")
        return HostResult(host.name, host.platform, "ok")

    out = run_on_hosts(hosts(200), step, forks=50, progress=False)
    assert [r.name for r in out] == [f"h{i}" for i in range(200)]
    assert out[13].status == "error" and "internal error: RuntimeError: boom" in out[13].error
    assert {r.status for r in out if r.name != "h13"} == {"ok"} and not out.interrupted


def test_ctrl_c_starts_no_new_host_and_waits_for_those_in_flight():
    started, release = [], threading.Event()

    def step(host):
        started.append(host.name)
        if host.name == "h0":
            os.kill(os.getpid(), signal.SIGINT)  # counted by the engine's handler, not raised
            time.sleep(0.3)
        release.wait(0.5)
        return HostResult(host.name, host.platform, "ok")

    out = run_on_hosts(hosts(10), step, forks=2, progress=False, grace=5)
    assert out.interrupted
    statuses = {r.name: r.status for r in out}
    assert statuses["h0"] == "ok" and statuses["h1"] == "ok"  # in flight: finished within the grace
    assert all(statuses[f"h{i}"] == "not started" for i in range(2, 10)), statuses
    assert set(started) == {"h0", "h1"}
    signal.signal(signal.SIGINT, signal.default_int_handler)  # the engine leaves its counter after Ctrl-C
