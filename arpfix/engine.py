"""Run one step on many hosts in parallel; a failure on one host is a result, not an exception.

Ctrl-C (SIGINT) during a run: the first starts no new host and waits, bounded, for the hosts in
flight to finish (their remote scripts stop only at the end of a step, never mid-way); a second
stops waiting. Hosts that had not started are `not started`, hosts still running are
`interrupted`, and the run's results are returned as usual so the table tells what happened.
"""

from __future__ import annotations

import gc
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from arpfix.errors import ArpfixError
from arpfix.model import HostResult
from arpfix.report import plural
from arpfix.secrets import redact
from arpfix.settings import Host

INTERRUPT_GRACE = 20.0  # seconds the first Ctrl-C waits for hosts in flight
CUT_HINT = ("its remote script may have finished, may still be running, or was stopped part-way; "
            "run `arpfix audit` to see the host's state")


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

    def say(self, text: str) -> None:
        with self.lock:
            sys.stderr.write(("\n" if self.enabled and self.done < self.total else "") + text + "\n")
            sys.stderr.flush()


class Results(list[HostResult]):
    """The results in inventory order; `interrupted` is true when Ctrl-C cut the run short."""

    interrupted: bool = False


class _Interrupt:
    """Counts Ctrl-C presses instead of raising KeyboardInterrupt in the middle of the run."""

    def __init__(self) -> None:
        self.presses = 0

    def __call__(self, signum: int, frame: object) -> None:
        self.presses += 1


def interrupt_guard() -> tuple[_Interrupt, Callable[[], None]]:
    """Install the Ctrl-C counter (main thread only); returns it and a function that removes it."""
    counter = _Interrupt()
    if threading.current_thread() is not threading.main_thread():
        return counter, lambda: None
    previous = signal.signal(signal.SIGINT, counter)
    return counter, lambda: signal.signal(signal.SIGINT, previous)


def _take(finished: queue.SimpleQueue[Future[HostResult]], timeout: float) -> set[Future[HostResult]]:
    """What has finished: waits up to `timeout` for the first, then takes whatever else is there."""
    try:
        done = {finished.get(timeout=timeout)}
    except queue.Empty:
        return set()
    while True:
        try:
            done.add(finished.get_nowait())
        except queue.Empty:
            return done


def quiet_collector() -> None:
    """Fewer, cheaper runs of Python's cyclic garbage collector during a fleet run.

    Every SSH packet allocates a few objects, so a 50-host audit triggered hundreds of collections,
    each walking every object alive: the imported modules and the inventory, which live until the
    process ends anyway (the collector was about 6 % of a 50-host audit's CPU, `perf record`).
    `gc.freeze()` moves what exists now out of the collector's view; the first generation is
    collected after 20,000 allocations instead of 700 (the objects of a host's run are freed by
    reference counting; the few cycles, paramiko's transports and threads, are still collected)."""
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)


def run_on_hosts(
    hosts: list[Host],
    step: Callable[[Host], HostResult],
    *,
    forks: int = 20,
    label: str = "running",
    progress: bool = True,
    grace: float = INTERRUPT_GRACE,
) -> Results:
    """Run step(host) for every host with at most `forks` at once; results in inventory order."""
    results: dict[str, HostResult] = {}
    tracker = Progress(len(hosts), label, progress)
    stopping = threading.Event()

    def guarded(host: Host) -> HostResult:
        if stopping.is_set():
            return HostResult(host.name, host.platform, "not started", error="interrupted before it started")
        started = time.monotonic()
        try:
            result = step(host)
            result.seconds = time.monotonic() - started
            return result
        except ArpfixError as exc:
            return HostResult(host.name, host.platform, "error", error=redact(str(exc)))
        except Exception as exc:  # noqa: BLE001 - a bug on one host must not kill the run
            return HostResult(
                host.name, host.platform, "error", error=redact(f"internal error: {type(exc).__name__}: {exc}")
            )

    out = Results()
    if not hosts:
        return out
    counter, restore = interrupt_guard()
    quiet_collector()
    pool = ThreadPoolExecutor(max_workers=max(1, min(forks, len(hosts))))
    # Finished (or cancelled) futures arrive on one queue: concurrent.futures.wait() adds and removes
    # a waiter on every pending future at each call, O(hosts) per finished host and per 0.1 s tick.
    finished: queue.SimpleQueue[Future[HostResult]] = queue.SimpleQueue()
    futures: dict[Future[HostResult], Host] = {}
    for host in hosts:
        future = pool.submit(guarded, host)
        futures[future] = host
        future.add_done_callback(finished.put)
    pending = set(futures)
    interrupted_at: float | None = None
    try:
        while pending:
            done = _take(finished, 0.1) & pending
            pending -= done
            for future in done:
                host = futures[future]
                result = (HostResult(host.name, host.platform, "not started", error="interrupted before it started")
                          if future.cancelled() else future.result())
                results[result.name] = result
                tracker.advance(result)
            if counter.presses and interrupted_at is None:
                interrupted_at = time.monotonic()
                stopping.set()
                for future in pending:
                    future.cancel()
                running = sum(1 for f in pending if f.running())
                tracker.say(f"{label}: interrupted: starting no new host; waiting up to {grace:g}s for "
                            f"{plural(running, 'host')} in flight (Ctrl-C again to stop waiting)")
            if interrupted_at is not None and pending and (
                    counter.presses > 1 or time.monotonic() - interrupted_at > grace):
                break
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    for future in pending:
        host = futures[future]
        if future.done() and not future.cancelled():
            results[host.name] = future.result()
        elif future.running():
            results[host.name] = HostResult(host.name, host.platform, "interrupted",
                                            error=f"interrupted while it ran: {CUT_HINT}")
        else:
            results[host.name] = HostResult(host.name, host.platform, "not started", error="interrupted before it started")
    out.extend(results[host.name] for host in hosts)
    out.interrupted = interrupted_at is not None
    if out.interrupted:
        in_flight = sum(1 for r in out if r.status == "interrupted")
        if in_flight:
            one = in_flight == 1
            tracker.say(f"{label}: {plural(in_flight, 'host')} {'was' if one else 'were'} still running when arpfix "
                        f"stopped waiting: {'its script' if one else 'their scripts'} may have finished, may still be "
                        f"running or stopped part-way; run `arpfix audit` to see {'its' if one else 'their'} state")
        # further Ctrl-C are counted, not raised, until the process exits with 130 after its report
    else:
        restore()
    return out
