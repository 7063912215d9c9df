"""Helpers of the remediation tests: a real HTTP receiver on 127.0.0.1 and engine set-up."""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from forewarn.alerts.remediation.config import RemediationsConfig, parse_remediations
from forewarn.alerts.remediation.engine import RemediationEngine

from forewarn.config import Settings

SECRET = "test-signing-key-0123456789"


@dataclass
class Received:
    path: str
    method: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float


@dataclass
class Receiver:
    """A threading HTTP server answering from a script of status codes (then ``default``)."""

    script: list[int | tuple[int, dict[str, str]]] = field(default_factory=list)
    default: int = 200
    delay_s: float = 0.0
    requests: list[Received] = field(default_factory=list)
    tls: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                if outer.delay_s:
                    time.sleep(outer.delay_s)
                with outer._lock:
                    step = outer.script.pop(0) if outer.script else outer.default
                    status, extra = step if isinstance(step, tuple) else (step, {})
                    outer.requests.append(
                        Received(self.path, self.command, dict(self.headers), body, status, time.time())
                    )
                try:
                    self.send_response(status)
                    for k, v in extra.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:  # the client gave up (a timeout under test)
                    pass

            do_POST = do_PUT = do_GET = do_DELETE = do_PATCH = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        scheme = "http"
        if self.tls is not None:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def count(self, status: int | None = None, path: str | None = None) -> int:
        with self._lock:
            return sum(
                1
                for r in self.requests
                if (status is None or r.status == status) and (path is None or r.path == path)
            )


def config(
    receiver_url: str, tmp_path: Path, allow: list[str] | None = None, **hook: Any
) -> RemediationsConfig:
    """One hook ``fix`` matching alertname=Boom that calls ``<receiver>/fix``."""
    secret = tmp_path / "remediation.key"
    secret.write_text(SECRET + "\n")
    top = {
        k: hook.pop(k)
        for k in ("dry_run", "max_executions", "window", "approval_timeout", "max_concurrency")
        if k in hook
    }
    h = {
        "name": "fix",
        "matchers": ['alertname="Boom"'],
        "url": f"{receiver_url}/fix",
        "retries": 0,
        "cooldown": "0s",
        "backoff": {"initial": "50ms", "max": "200ms"},
        **hook,
    }
    return parse_remediations(
        {
            "allowlist": allow if allow is not None else [receiver_url + "/"],
            "secret_file": str(secret),
            "max_executions": top.pop("max_executions", 1000),
            **top,
            "hooks": [h],
        }
    )


def alert(
    n: int = 0, status: str = "firing", starts: str = "2026-01-01T00:00:00Z", **labels: str
) -> dict[str, Any]:
    lab = {"alertname": "Boom", "service": "checkout", "instance": f"i{n}", **labels}
    return {
        "status": status,
        "labels": lab,
        "annotations": {"summary": "boom"},
        "startsAt": starts,
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-01-01T01:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": f"{n:016x}",
    }


@asynccontextmanager
async def running(cfg: RemediationsConfig, settings: Settings) -> AsyncIterator[RemediationEngine]:
    eng = RemediationEngine(cfg, settings.data_dir, settings.storage_dsn, settings.storage.database)
    await eng.start()
    try:
        yield eng
    finally:
        await eng.stop()


async def until(cond: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    """Poll ``cond`` (bounded); fail with ``what`` when it does not hold in time. The bound is a
    deadline for a hung engine, not a speed check: a loaded machine once took over 20 s for a
    first attempt that idle takes milliseconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def settled(eng: RemediationEngine, timeout: float = 60.0) -> None:
    """Wait until every submitted batch is decided, no action is queued, and audit is flushed."""

    def idle() -> bool:
        return eng.state.inbox_size() == 0 and not eng.state.actions_in(("queued",))

    await until(idle, timeout, "remediation engine to settle")
    assert await eng.audit_flushed(timeout)


def audit_rows(store: Any, where: str = "1") -> list[dict[str, Any]]:
    res = store.query(f"SELECT * FROM forewarn_remediation_audit WHERE {where} ORDER BY event_time, seq")
    return [dict(zip(res.column_names, r, strict=True)) for r in res.result_rows]
