"""Real parts for router tests and benchmarks: an HTTP sink, the real Alertmanager, an in-thread router.

Nothing here is a fake: the sink is a uvicorn server on 127.0.0.1 that records what it is
sent, the oracle is the ``prometheus-alertmanager`` binary, the router is :class:`AlertRouter`.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import httpx
import orjson
import uvicorn
from forewarn.alerts.server import AlertRouter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from forewarn.net import free_port

ALERTMANAGER_BIN = "/usr/bin/prometheus-alertmanager"


def wait_ready(
    url: str, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None, **client: Any
) -> None:
    """Poll ``/-/ready`` (``client``: httpx options such as ``auth``, ``verify``, ``cert``);
    fail fast if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} was ready")
        try:
            if httpx.get(url + "/-/ready", timeout=1.0, trust_env=False, **client).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready after {timeout}s")


@dataclass
class Received:
    t: float
    path: str
    headers: dict[str, str]
    body: Any


class _ThreadServer:
    """A uvicorn server on its own thread and event loop."""

    def __init__(self, app: Any, port: int) -> None:
        self.port = port
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=port, log_level="error", lifespan="off", access_log=False
            )
        )
        self.server.capture_signals = _no_signals  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("HTTP server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class _NoSignals:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: Any) -> None:
        return None


def _no_signals() -> _NoSignals:
    return _NoSignals()


class WebhookSink:
    """Records every POST (any path); ``fail(path, [503, 503])`` makes the next answers errors."""

    def __init__(self, max_records: int = 100_000) -> None:
        self.records: deque[Received] = deque(maxlen=max_records)
        self.statuses: dict[str, list[int]] = {}
        self.lock = threading.Lock()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

        async def handle(request: Request) -> Response:
            raw = await request.body()
            path = request.url.path
            with self.lock:
                queue = self.statuses.get(path)
                status = queue.pop(0) if queue else 200
                self.records.append(
                    Received(time.time(), path, dict(request.headers), orjson.loads(raw) if raw else None)
                )
            return Response(status_code=status)

        app = Starlette(routes=[Route("/{path:path}", handle, methods=["POST", "PUT"])])
        self._server = _ThreadServer(app, self.port)

    def fail(self, path: str, statuses: list[int]) -> None:
        with self.lock:
            self.statuses[path] = list(statuses)

    def received(self, path: str | None = None) -> list[Received]:
        with self.lock:
            return [r for r in self.records if path is None or r.path == path]

    def __enter__(self) -> WebhookSink:
        self._server.start()
        return self

    def __exit__(self, *a: Any) -> None:
        self._server.stop()


class _ServerProcess:
    """A server binary on a free 127.0.0.1 port with ``config_text`` as its config file;
    stderr goes to a log file that a start-up failure quotes."""

    prefix = "srv-"

    def __init__(
        self,
        config_text: str,
        data_dir: Path | None = None,
        web_config: Path | None = None,
        client: dict[str, Any] | None = None,
    ) -> None:
        """``web_config``: a Prometheus web configuration file (TLS, basic auth); ``client``:
        the httpx options that pass it (``auth``, ``verify``, ``cert``), for the readiness poll."""
        self.dir = Path(tempfile.mkdtemp(prefix=self.prefix))
        self.config = self.dir / "alertmanager.yml"
        self.config.write_text(config_text)
        self.data_dir = data_dir
        self.web_config = web_config
        self.client = client or {}
        self.port = free_port()
        tls = web_config is not None and "tls_server_config" in web_config.read_text()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.log = self.dir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def __enter__(self) -> Self:
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=err)
        try:
            wait_ready(self.url, proc=self.proc, **self.client)
        except (RuntimeError, TimeoutError) as e:
            self.__exit__()
            raise RuntimeError(f"{e}: {self.log.read_text()[-2000:]}") from None
        except BaseException:
            self.__exit__()  # never leave the server running behind a failed start
            raise
        return self

    def __exit__(self, *a: Any) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Alertmanager(_ServerProcess):
    """The real Alertmanager 0.25 binary, clustering disabled."""

    prefix = "am-"

    @staticmethod
    def available() -> bool:
        return shutil.which(ALERTMANAGER_BIN) is not None

    def command(self) -> list[str]:
        return [
            ALERTMANAGER_BIN,
            f"--config.file={self.config}",
            f"--storage.path={self.data_dir or self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
            f"--web.external-url={self.url}",
            "--log.level=warn",
            *([f"--web.config.file={self.web_config}"] if self.web_config else []),
        ]


_ROUTER_MAIN = (
    "import sys; from forewarn.alerts.server import AlertRouter, serve; "
    "serve(AlertRouter(sys.argv[1], data_dir=sys.argv[2] or None, listen=sys.argv[3], "
    "resend_grace=float(sys.argv[4]), web_config_file=sys.argv[5] or None))"
)


class RouterProcess(_ServerProcess):
    """:class:`AlertRouter` in its own process, like the Alertmanager it is compared with (no
    GIL shared with the test's sinks and clients), started without the whole CLI."""

    prefix = "fw-alerts-"

    def __init__(
        self,
        config_text: str,
        data_dir: Path | None = None,
        resend_grace: float = 90.0,
        web_config: Path | None = None,
        client: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(config_text, data_dir, web_config, client)
        self.resend_grace = resend_grace

    def command(self) -> list[str]:
        data, grace, web = str(self.data_dir or ""), str(self.resend_grace), str(self.web_config or "")
        listen = f"127.0.0.1:{self.port}"
        return [sys.executable, "-c", _ROUTER_MAIN, str(self.config), data, listen, grace, web]


class RouterThread:
    """:class:`AlertRouter` on its own event loop thread (in-process, for tests and benchmarks)."""

    def __init__(self, config_text: str, data_dir: Path | None = None, **kw: Any) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="fw-alerts-"))
        (self.dir / "alertmanager.yml").write_text(config_text)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.router = AlertRouter(
            self.dir / "alertmanager.yml", data_dir=data_dir, listen=f"127.0.0.1:{self.port}", **kw
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> RouterThread:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.router.start(), self.loop).result(30)
        self.url = f"{self.router.scheme}://127.0.0.1:{self.port}"
        return self

    def __exit__(self, *a: Any) -> None:
        asyncio.run_coroutine_threadsafe(self.router.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
