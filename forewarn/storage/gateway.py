"""Lets other processes query an embedded store that a running forewarn process owns.

chDB is the ClickHouse engine inside one process, and it locks its data directory. While
``forewarn collector`` or ``forewarn up`` holds it, ``forewarn query`` on the same directory
sends its SQL here instead: a loopback-only HTTP endpoint whose address and random token are in
an owner file next to the data directory, readable only by the same user.
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

import httpx

from forewarn.storage.client import chdb_path, connect

log = logging.getLogger(__name__)
MAX_SQL_BYTES = 1 << 20


def owner_file(dsn: str) -> Path | None:
    path = chdb_path(dsn)
    if path is None:
        return None
    path = path.resolve()
    return path.parent / f".{path.name}.forewarn-owner.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_owner(dsn: str) -> dict[str, Any] | None:
    """The live owner of this embedded store, if another process holds it."""
    f = owner_file(dsn)
    if f is None or not f.is_file():
        return None
    try:
        info = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    if info.get("pid") == os.getpid() or not _alive(int(info.get("pid", 0))):
        return None
    return info


def query_owner(info: dict[str, Any], sql: str, fmt: str, database: str) -> Iterator[bytes]:
    with httpx.stream(
        "POST",
        info["url"],
        content=sql.encode(),
        headers={"Authorization": f"Bearer {info['token']}", "X-Format": fmt, "X-Database": database},
        timeout=httpx.Timeout(10.0, read=None),
    ) as r:
        if r.status_code != 200:
            raise RuntimeError(r.read().decode(errors="replace").strip())
        yield from r.iter_bytes()


class Gateway:
    """Serves SQL for this process's embedded store on 127.0.0.1; ``close()`` removes the owner file."""

    def __init__(self, dsn: str, database: str):
        self.dsn, self.database = dsn, database
        self._token = secrets.token_urlsafe(32)
        self._lock = threading.Lock()
        self._client = connect(dsn)
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
                    body = gw.run(sql, fmt, self.headers.get("X-Database") or gw.database)
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
        self._file = owner_file(dsn)
        if self._file is not None:
            url = f"http://127.0.0.1:{self._server.server_address[1]}/query"
            tmp = self._file.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump({"pid": os.getpid(), "url": url, "token": self._token}, fh)
            os.replace(tmp, self._file)

    def run(self, sql: str, fmt: str, database: str) -> bytes:
        with self._lock:
            self._client.database = database
            return self._client.raw_query(sql, fmt=fmt, settings=output_settings(fmt))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._file is not None:
            with contextlib.suppress(FileNotFoundError):
                self._file.unlink()
        self._client.close()


def output_settings(fmt: str) -> dict[str, Any]:
    """Same output whichever process runs the query: 64-bit integers as JSON numbers."""
    return {"output_format_json_quote_64bit_integers": 0} if fmt.startswith("JSON") else {}
