"""Lets other processes query an embedded store that a running forewarn process owns.

chDB is the ClickHouse engine inside one process, and it locks its data directory. While
``forewarn collector`` or ``forewarn up`` holds it, ``forewarn query`` on the same directory
sends its SQL here instead: a loopback-only HTTP endpoint whose address and random token are in
an owner file next to the store directory (and in the data directory's discovery file, see
:mod:`forewarn.discovery`), readable only by the same user.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from forewarn.discovery import alive, read_json, start_ticks, write_private_json
from forewarn.storage.client import chdb_path

log = logging.getLogger(__name__)
MAX_SQL_BYTES = 1 << 20


def owner_file(dsn: str) -> Path | None:
    path = chdb_path(dsn)
    if path is None:
        return None
    path = path.resolve()
    return path.parent / f".{path.name}.forewarn-owner.json"


def find_owner(dsn: str) -> dict[str, Any] | None:
    """The live owner of this embedded store, if another process holds it."""
    f = owner_file(dsn)
    if f is None:
        return None
    info = read_json(f)
    if info is None or info.get("pid") == os.getpid() or not alive(info):
        return None
    return info


def query_owner(info: dict[str, Any], sql: str, fmt: str, database: str) -> Iterator[bytes]:
    from forewarn.storage.query import GatewayReader

    yield GatewayReader(info, database).execute(sql, fmt)


class Gateway:
    """Serves SQL for this process's embedded store on 127.0.0.1; ``close()`` removes the owner file."""

    def __init__(self, dsn: str, database: str):
        self.dsn, self.database = dsn, database
        self._token = secrets.token_urlsafe(32)
        self._lock = threading.Lock()
        from forewarn.storage.query import ChdbReader

        self._reader = ChdbReader(chdb_path(dsn), database)
        gw = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                log.debug("gateway: " + format, *args)

            def do_POST(self) -> None:
                auth = self.headers.get("Authorization", "")
                if not hmac.compare_digest(auth.encode(), f"Bearer {gw._token}".encode()):
                    return self._reply(401, b"unauthorized")
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_SQL_BYTES:
                    return self._reply(413, b"query too large")
                sql = self.rfile.read(length).decode()
                fmt = self.headers.get("X-Format", "TabSeparated")
                try:
                    params = json.loads(self.headers.get("X-Params") or "{}")
                    body = gw.run(sql, fmt, self.headers.get("X-Database") or gw.database, params)
                except Exception as e:
                    return self._reply(500, str(e).encode())
                self._reply(200, body)

            def _reply(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="store-gateway", daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/query"
        self._file = owner_file(dsn)
        if self._file is not None:
            write_private_json(self._file, self.record())

    def record(self) -> dict[str, Any]:
        """Where and how to query this store (for the owner file and the discovery file)."""
        path = chdb_path(self.dsn)
        return {
            "pid": os.getpid(),
            "pid_start": start_ticks(os.getpid()),
            "url": self.url,
            "token": self._token,
            "path": str(path.resolve()) if path is not None else None,
            "database": self.database,
        }

    def run(self, sql: str, fmt: str, database: str, params: dict[str, Any] | None = None) -> bytes:
        with self._lock:
            self._reader.database = database
            return self._reader.execute(sql, fmt, params)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._file is not None:
            with contextlib.suppress(FileNotFoundError):
                self._file.unlink()
        self._reader.close()
