"""Listening sockets for forewarn's HTTP servers (the OTLP receiver, the ClickHouse HTTP interface)."""

from __future__ import annotations

import socket


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
