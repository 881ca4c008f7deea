"""Health checks: TCP connect to each real server's own address on the service port.

Every `interval` seconds each target is checked in parallel; a target goes down after `fall`
failures in a row and up after `rise` successes. The first check decides the initial state.
Optional DR-path check (`--dr-check`): a SYN to VIP:port sent to the server's MAC, exactly as
forwarded traffic arrives, must be answered from the VIP (arpfix.probe.segment.dr_probe). It catches
the classic trap: a server that passes the connect check on its own address but drops VIP traffic.
UDP services have no connect check: a server counts as up for them while its MAC resolves.
"""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field


@dataclass
class Target:
    server: str
    address: str
    port: int
    up: bool = False
    checked: bool = False
    streak: int = 0  # consecutive results contradicting the current state
    last_error: str = ""
    last_change: float = field(default_factory=time.time)


def tcp_check(address: str, port: int, timeout: float) -> str:
    """'' on success, else why it failed."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return ""
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def dr_check(interface: str, vip: str, mac: str, address: str, port: int, timeout: float) -> str:
    """'' when a SYN to vip:port sent to `mac` is answered by a SYN-ACK from the VIP, else why not."""
    from arpfix.probe.segment import dr_probe

    try:
        outcome = dr_probe(interface, vip, mac, address, port, timeout)
    except OSError as exc:
        return f"DR-path check: {exc.strerror or exc}"
    return "" if outcome["ok"] else f"DR-path check: {outcome['detail']}"


class Checker:
    def __init__(self, targets: list[tuple[str, str, int]], rise: int = 2, fall: int = 2, timeout: float = 1.0,
                 dr_paths: dict[tuple[str, int], list[tuple[str, str, str]]] | None = None):
        """dr_paths: (server, port) -> [(interface, vip, server MAC)] for the optional DR-path check."""
        self.targets = {(s, a, p): Target(s, a, p) for s, a, p in targets}
        self.rise, self.fall, self.timeout = rise, fall, timeout
        self.dr_paths = dr_paths or {}
        self._pool = ThreadPoolExecutor(max_workers=max(1, min(32, len(self.targets))))

    def _check(self, key: tuple[str, str, int]) -> str:
        server, address, port = key
        error = tcp_check(address, port, self.timeout)
        for interface, vip, mac in self.dr_paths.get((server, port), []):
            if error:
                break
            error = dr_check(interface, vip, mac, address, port, self.timeout)
        return error

    def round(self) -> bool:
        """Check every target once; True when some target changed state."""
        keys = list(self.targets)
        results = list(self._pool.map(self._check, keys))
        changed = False
        for key, error in zip(keys, results):
            target = self.targets[key]
            ok = not error
            target.last_error = error
            if not target.checked:
                target.checked, target.up, changed = True, ok, True
                target.last_change = time.time()
                continue
            if ok == target.up:
                target.streak = 0
                continue
            target.streak += 1
            if target.streak >= (self.rise if ok else self.fall):
                target.up, target.streak, changed = ok, 0, True
                target.last_change = time.time()
        return changed

    def server_up(self, server: str, ports: list[int] | None = None) -> bool:
        """Up when every checked port of the server (restricted to `ports`) is up."""
        mine = [t for t in self.targets.values() if t.server == server and (ports is None or t.port in ports)]
        return all(t.up for t in mine)

    def close(self) -> None:
        self._pool.shutdown(wait=False)
