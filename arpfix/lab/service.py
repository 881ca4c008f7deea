"""The lab's tiny TCP service (stdlib only; run as a script inside a lab host).

On every accepted connection it writes exactly one line and closes:

    <host name> <local address>:<local port>\\n

The local address is the address the client connected to (a VIP on a prepared real server),
so tests can see which server answered and on which address. IPv6 addresses are written in
brackets. It listens on the IPv4 wildcard and, when the kernel has IPv6, on the IPv6 wildcard
(IPV6_V6ONLY) for each port given.

Usage: python service.py HOST PORT [PORT...]
"""

from __future__ import annotations

import selectors
import signal
import socket
import sys


def _listeners(ports: list[int]) -> list[socket.socket]:
    socks = []
    for port in ports:
        s4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s4.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s4.bind(("0.0.0.0", port))
        s4.listen(128)
        socks.append(s4)
        try:
            s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            s6.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s6.bind(("::", port))
            s6.listen(128)
            socks.append(s6)
        except OSError:  # no IPv6 in this kernel / namespace
            pass
    return socks


def _answer(conn: socket.socket, host: str) -> None:
    try:
        local = conn.getsockname()
        address = f"[{local[0]}]" if conn.family == socket.AF_INET6 else local[0]
        conn.sendall(f"{host} {address}:{local[1]}\n".encode())
    except OSError:
        pass
    finally:
        conn.close()


def serve(host: str, ports: list[int]) -> None:
    selector = selectors.DefaultSelector()
    for sock in _listeners(ports):
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            listener: socket.socket = key.fileobj  # type: ignore[assignment]
            try:
                conn, _peer = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue
            conn.setblocking(True)
            conn.settimeout(2.0)
            _answer(conn, host)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: service.py HOST PORT [PORT...]", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        serve(argv[0], [int(p) for p in argv[1:]])
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
