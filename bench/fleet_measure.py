"""Measuring one tool run for bench/fleet.py: wall time, the CPU of the tool's whole process tree,
its peak memory, and the CPU the servers spent on it (their sshd and everything it ran).

- Tool CPU: wait4's rusage of each process we started (it includes every descendant that was
  waited for). Processes that outlive their parent (Ansible's persistent SSH masters, ControlPersist)
  are re-parented to this process (a child subreaper), closed after the run and waited for, so
  their CPU is counted too.
- Servers' CPU: each lab sshd listener reaps its per-connection children, so the growth of its
  utime+stime+cutime+cstime covers the logins, the sessions and every command they ran. Read
  once the last session has ended. (A session shell that outlives its sshd process goes to init
  and is missed: at most a shell's few milliseconds, for a few servers per run.)
- Memory: the largest single process (ru_maxrss) and the sum over the tool's processes, sampled
  every 0.2 s (Ansible forks one worker per host).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
PR_SET_CHILD_SUBREAPER = 36


def subreaper(on: bool) -> None:
    """Orphans below this process come to it (on) or go to init (off). Off while a lab is built:
    its sshd then belongs to init, so what a server leaves behind (a session shell that outlives its
    sshd) is not taken for the tool's."""
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        raise SystemExit("prctl(PR_SET_CHILD_SUBREAPER) failed")


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def children(parent: int) -> set[int]:
    """PIDs whose parent is PARENT (fields after the command: state, ppid, ...)."""
    found = set()
    for pid in _pids():
        fields = _stat(pid)
        if fields and int(fields[1]) == parent:
            found.add(pid)
    return found


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            command = handle.read().replace(b"\0", b" ").decode(errors="replace")[:80]
        with open(f"/proc/{pid}/stat") as handle:
            return command or handle.read().split(") ")[0].split("(", 1)[1] + " (exited)"
    except OSError:
        return "?"


def cpu_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime of PID (itself and its waited-for descendants)."""
    fields = _stat(pid)
    if not fields:
        return 0.0
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICK


@dataclass
class Measured:
    wall: float
    tool_cpu: float
    server_cpu: float
    peak_rss_kib: int
    tree_rss_kib: int
    exit_codes: list[int]
    output: str = ""
    extra: dict[str, float] = field(default_factory=dict)
    left_behind: list[str] = field(default_factory=list)


class _TreeSampler(threading.Thread):
    """Largest sum of RSS over the processes in the given sessions (start_new_session: sid = pid)."""

    def __init__(self, sessions: set[int]) -> None:
        super().__init__(daemon=True)
        self.sessions = sessions
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            total = 0
            for pid in _pids():
                fields = _stat(pid)
                if fields and int(fields[3]) in self.sessions:
                    total += int(fields[21]) * PAGE // 1024
            self.peak = max(self.peak, total)
            self.stop.wait(0.2)


class ServerCpu:
    """The lab's sshd listeners: CPU before and after a run."""

    def __init__(self, sshd_pids: list[int]) -> None:
        self.pids = sshd_pids

    def total(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)

    def settle(self, limit: float = 10.0) -> None:
        """Wait until no sshd has a session child left (the last sessions' CPU is then reaped)."""
        deadline = time.monotonic() + limit
        pids = set(self.pids)
        while time.monotonic() < deadline:
            if not any(_stat(pid) and int(_stat(pid)[1]) in pids for pid in _pids()):  # type: ignore[index]
                return
            time.sleep(0.05)


def measure(argvs: list[list[str]], servers: ServerCpu, *, env: dict[str, str] | None = None,
            stdin: str | None = None, keep_output: bool = True) -> Measured:
    """Start every argv at once (one for a tool, N for the ssh floor), wait for all, then end
    and wait for what they left behind (ssh masters), and count everything."""
    servers.settle()
    before_servers = servers.total()
    known = children(os.getpid())
    outputs = []
    start = time.perf_counter()
    processes = []
    for argv in argvs:
        out = open(os.devnull, "wb") if not keep_output else subprocess.PIPE  # noqa: SIM115
        processes.append(subprocess.Popen(argv, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                          stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True))
    sampler = _TreeSampler({p.pid for p in processes})
    sampler.start()
    if stdin is not None:
        # feed all first (small scripts: they fit in the pipe), then read outputs one by one
        for process in processes:
            assert process.stdin is not None
            try:
                process.stdin.write(stdin.encode())
                process.stdin.close()
            except BrokenPipeError:
                pass
    readers = []
    for process in processes:
        if keep_output and process.stdout is not None:
            chunks: list[bytes] = []
            reader = threading.Thread(target=lambda s=process.stdout, c=chunks: c.append(s.read()), daemon=True)
            reader.start()
            readers.append((reader, chunks))
    cpu, peak, codes = 0.0, 0, []
    for process in processes:
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        codes.append(process.returncode)
        cpu += usage.ru_utime + usage.ru_stime
        peak = max(peak, usage.ru_maxrss)
    wall = time.perf_counter() - start
    for reader, chunks in readers:
        reader.join(30)
        outputs.append(b"".join(chunks).decode("utf-8", "replace"))
    # orphans: Ansible's ControlPersist masters (ssh -fN style daemons) and anything else left
    leftovers = children(os.getpid()) - known - {p.pid for p in processes}
    names = sorted(_cmdline(pid) for pid in leftovers)
    for pid in leftovers:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    masters = 0.0
    for pid in leftovers:
        try:
            _, _, usage = os.wait4(pid, 0)
        except ChildProcessError:
            continue
        masters += usage.ru_utime + usage.ru_stime
        peak = max(peak, usage.ru_maxrss)
    sampler.stop.set()
    sampler.join()
    servers.settle()
    return Measured(wall=wall, tool_cpu=cpu + masters, server_cpu=servers.total() - before_servers,
                    peak_rss_kib=peak, tree_rss_kib=sampler.peak, exit_codes=codes, output="\n".join(outputs),
                    extra={"left_behind": float(len(leftovers)), "their_cpu": masters}, left_behind=names)


def wait_quiet(limit: float, below: float = 1.0) -> tuple[float, float]:
    """Wait (at most LIMIT s) for the 1-minute load average to fall below BELOW; (load then, waited s)."""
    start = time.monotonic()
    while os.getloadavg()[0] >= below and time.monotonic() - start < limit:
        time.sleep(2)
    return os.getloadavg()[0], time.monotonic() - start
