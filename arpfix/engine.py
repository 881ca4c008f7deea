"""Run one step on many hosts in parallel; a failure on one host is a result, not an exception."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed

from arpfix.errors import ArpfixError
from arpfix.model import HostResult
from arpfix.secrets import redact
from arpfix.settings import Host


class Progress:
    """One status line on stderr while hosts finish (only on a terminal, never with -q)."""

    def __init__(self, total: int, label: str, enabled: bool) -> None:
        self.total = total
        self.label = label
        self.enabled = enabled and sys.stderr.isatty()
        self.done = 0
        self.started = time.monotonic()
        self.lock = threading.Lock()

    def advance(self, result: HostResult) -> None:
        with self.lock:
            self.done += 1
            if self.enabled:
                elapsed = time.monotonic() - self.started
                sys.stderr.write(
                    f"\r{self.label}: {self.done}/{self.total} hosts ({elapsed:.1f}s) {result.name}: {result.status}\x1b[K"
                )
                if self.done == self.total:
                    sys.stderr.write("\n")
                sys.stderr.flush()


def run_on_hosts(
    hosts: list[Host],
    step: Callable[[Host], HostResult],
    *,
    forks: int = 20,
    label: str = "running",
    progress: bool = True,
) -> list[HostResult]:
    """Run step(host) for every host with at most `forks` at once; results in inventory order."""
    results: dict[str, HostResult] = {}
    tracker = Progress(len(hosts), label, progress)

    def guarded(host: Host) -> HostResult:
        try:
            return step(host)
        except ArpfixError as exc:
            return HostResult(host.name, host.platform, "error", error=redact(str(exc)))
        except Exception as exc:  # noqa: BLE001 - a bug on one host must not kill the run
            return HostResult(
                host.name, host.platform, "error", error=redact(f"internal error: {type(exc).__name__}: {exc}")
            )

    if not hosts:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(forks, len(hosts)))) as pool:
        futures = {pool.submit(guarded, host): host for host in hosts}
        for future in as_completed(futures):
            result = future.result()
            results[result.name] = result
            tracker.advance(result)
    return [results[host.name] for host in hosts]
