"""Listening sockets for forewarn's HTTP servers (the OTLP receiver, the ClickHouse HTTP interface),
and free ports for the servers that tests, benchmarks and the test bed start."""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

_given: set[int] = set()
_walk: list[int] = []


def listen_sockets(host: str, port: int) -> list[socket.socket]:
    """Listening sockets on every address of ``host`` (``localhost`` may be 127.0.0.1 and ::1, and
    clients pick either), all on one port: the first bind picks it when ``port`` is 0."""
    socks: list[socket.socket] = []
    seen = set()
    try:
        for family, kind, proto, _, addr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
            if addr[0] in seen:
                continue
            seen.add(addr[0])
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((addr[0], port, *addr[2:]))
            port = sock.getsockname()[1]
            sock.listen(1024)
            sock.setblocking(False)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, for a server to be started next (on its own command line).

    Why not ``bind(0)``: that hands out a port of the kernel's ephemeral range, the same range every
    outgoing connection takes its source port from, so between this check and the server's bind the
    port can be taken by any client socket on the machine. Ports are taken below that range
    (from 20000), where only explicit binds land; each pytest-xdist worker walks its own slice, from
    a start drawn per process, and never hands out a port twice.

    >>> a, b = free_port(), free_port()
    >>> a != b and 20000 <= min(a, b) and max(a, b) < _ephemeral_low()
    True
    """
    lo, hi = 20000, _ephemeral_low()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ...
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if worker.startswith("gw") and worker[2:].isdigit() and hi - lo >= 1000 * count:
        size = (hi - lo) // count
        lo = lo + size * (int(worker[2:]) % count)
        hi = lo + size
    if not _walk:
        _walk.append(random.Random(os.getpid()).randrange(lo, hi))
    for _ in range(hi - lo):
        port = _walk[0]
        _walk[0] = lo + (port + 1 - lo) % (hi - lo)
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _given.add(port)
        return port
    with socket.socket() as s:  # every port of the slice is busy: let the kernel choose
        s.bind((host, 0))
        return s.getsockname()[1]
