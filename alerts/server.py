"""The router process: config, state, dispatcher, remediation engine and HTTP server wired together.

:class:`AlertRouter` embeds in any asyncio program (``forewarn up`` runs it beside the other
components); :func:`serve` is the blocking ``forewarn alerts`` command with signal handling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn
from forewarn.alerts.api import build_app
from forewarn.alerts.config import AlertsConfig, load_config
from forewarn.alerts.dispatch import Dispatcher
from forewarn.alerts.model import Alert, format_api_time
from forewarn.alerts.notifiers import HTTPClients
from forewarn.alerts.provider import AlertProvider
from forewarn.alerts.silences import Silences
from forewarn.alerts.state import StateStore
from forewarn.alerts.webconfig import WebAuth, WebConfigFile

log = logging.getLogger(__name__)

GC_INTERVAL = 1800.0  # Alertmanager's --alerts.gc-interval: resolved alerts are forgotten this often
NFLOG_RETENTION = 120 * 3600.0


class RestartNeeded(ValueError):
    """A valid configuration change that a reload cannot apply (the router must be restarted)."""


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9093`` for IPv6) into its parts, with a clear error.

    >>> parse_listen("127.0.0.1:9093"), parse_listen(":9093")
    (('127.0.0.1', 9093), ('0.0.0.0', 9093))
    """
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"--listen must be HOST:PORT, got {listen!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class _Server(uvicorn.Server):
    """uvicorn without its own signal capture: the embedding program owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class AlertRouter:
    """An Alertmanager-compatible router.

    >>> r = AlertRouter("alertmanager.yml", data_dir=None, listen="127.0.0.1:0")
    >>> r.listen
    '127.0.0.1:0'
    """

    def __init__(
        self,
        config_path: str | Path,
        data_dir: str | Path | None = None,
        storage_dsn: str | None = None,
        database: str = "otel",
        listen: str = "127.0.0.1:9093",
        external_url: str | None = None,
        api_tokens: list[str] | None = None,
        max_alerts: int = 1_000_000,
        resend_grace: float = 90.0,
        web_config_file: str | Path | None = None,
        internal_tokens: list[str] | None = None,
    ) -> None:
        self.config_path = Path(config_path)
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.storage_dsn = storage_dsn or (f"chdb://{self.data_dir / 'chdb'}" if self.data_dir else None)
        self.database, self.listen = database, listen
        self.external_url = external_url
        self.api_tokens = api_tokens or []
        self.max_alerts = max_alerts
        self.resend_grace = resend_grace
        # Prometheus' web configuration file (TLS, basic auth); internal tokens are accepted
        # as credentials but never required (forewarn up's own flows post with one).
        self.web_config_file = Path(web_config_file) if web_config_file is not None else None
        self.internal_tokens = internal_tokens or []
        self.web: WebConfigFile | None = None
        self.ready = False
        self.started_at = 0.0
        self.engine: Any = None
        self._server: _Server | None = None
        self._serve_task: asyncio.Task[None] | None = None
        self._gc_task: asyncio.Task[None] | None = None

    # lifecycle
    async def start(self) -> None:
        """Load config and state, start routing, then listen; raises on a bad config or busy port."""
        self.config_text = self.config_path.read_text() if self.config_path.exists() else ""
        self.config: AlertsConfig = load_config(self.config_path, startup_checks=True)
        host, port = parse_listen(self.listen)
        tls: ssl.SSLContext | None = None
        if self.web_config_file is not None:
            self.web = WebConfigFile(self.web_config_file)  # WebConfigError (a ValueError) if bad
            tls = self.web.ssl_context()
        self.scheme = "https" if tls is not None else "http"
        # Bind here, not in uvicorn: a busy port must be an OSError for the caller, and uvicorn
        # would sys.exit() inside the embedding program's event loop.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            sock.close()
            raise OSError(e.errno, f"cannot listen on {self.listen}: {e.strerror}") from None
        sock.listen(1024)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        if self.external_url is None:
            # Like Alertmanager: the machine's hostname when listening on every interface.
            shown = socket.gethostname() if host in ("0.0.0.0", "::") else host
            shown = f"[{shown}]" if ":" in shown else shown
            self.external_url = f"{self.scheme}://{shown}:{self.port}"
        try:
            self.started_at = time.time()
            self.store = StateStore(self.data_dir)
            self.silences = Silences(self.store)
            self.provider = AlertProvider(self.store, self.max_alerts)
            self.clients = HTTPClients()
            extra_routes: list[Any] = []
            if self.config.remediations is not None:
                from forewarn.alerts.remediation.api import routes as remediation_routes
                from forewarn.alerts.remediation.engine import RemediationEngine

                if self.data_dir is None or self.storage_dsn is None:
                    raise ValueError("remediations: need --data-dir (state) and a storage DSN (audit table)")
                self.engine = RemediationEngine(
                    self.config.remediations,
                    data_dir=self.data_dir,
                    storage_dsn=self.storage_dsn,
                    database=self.database,
                )
                await self.engine.start()
                extra_routes = remediation_routes(self.engine)
            self.dispatcher = self._dispatcher()
            self.dispatcher.start()
            self._gc_task = asyncio.get_running_loop().create_task(self._gc_loop())
            app = build_app(self, extra_routes, self.api_tokens)
            if self.web is not None:
                app = WebAuth(app, self.web, self.api_tokens + self.internal_tokens)
            self._server = _Server(
                uvicorn.Config(
                    app,
                    host=host,
                    port=port,
                    log_level="warning",
                    lifespan="off",
                    access_log=False,
                    timeout_graceful_shutdown=5,
                    ssl_context_factory=(lambda _cfg, _default: tls) if tls is not None else None,
                )
            )
            self._serve_task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[sock]))
            while not self._server.started:
                if self._serve_task.done():
                    raise OSError(f"cannot serve on {self.listen}")
                await asyncio.sleep(0.01)
        except BaseException:
            sock.close()
            await self.stop()
            raise
        self.ready = True
        log.info("alert router listening on %s:%d", host, self.port)

    def _dispatcher(self, config: AlertsConfig | None = None) -> Dispatcher:
        submit = self.engine.submit if self.engine is not None else None
        url = self.external_url or f"http://{self.listen}"
        return Dispatcher(
            config or self.config,
            self.provider,
            self.silences,
            self.store,
            self.clients,
            url,
            submit,
            resend_grace=self.resend_grace,
        )

    async def reload(self) -> None:
        """Re-read the config file; on error the running config stays (the error is raised)."""
        new = load_config(self.config_path, startup_checks=True)
        if (new.remediations is None) != (self.config.remediations is None):
            change = "adding" if self.config.remediations is None else "removing"
            raise RestartNeeded(
                f"{change} the remediations: section needs a restart of the router; the running "
                "configuration is kept until then"
            )
        # Built before the running one stops: a config that loads but cannot be built (a TLS
        # file it names is missing) leaves the router routing with the old one.
        dispatcher = self._dispatcher(new)
        if self.engine is not None:
            try:
                await self.engine.reload(new.remediations)
            except BaseException:
                await dispatcher.stop()
                raise
        await self.dispatcher.stop()
        self.config, self.config_text = new, self.config_path.read_text()
        self.dispatcher = dispatcher
        self.dispatcher.start(restored=False)  # Alertmanager re-routes its alerts on reload

    async def stop(self) -> None:
        """Stop listening, stop timers, close clients and state (idempotent)."""
        self.ready = False
        if self._server is not None and self._serve_task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await self._serve_task
            log.debug("HTTP server stopped")
        for t in (self._gc_task,):
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t
        if getattr(self, "dispatcher", None) is not None:
            await self.dispatcher.stop()
            log.debug("dispatcher stopped")
        if self.engine is not None:
            await self.engine.stop()
            self.engine = None
        if getattr(self, "clients", None) is not None:
            await self.clients.aclose()
        if getattr(self, "store", None) is not None:
            self.store.close()
            del self.store

    async def _gc_loop(self) -> None:
        while True:
            await asyncio.sleep(GC_INTERVAL)
            now = time.time()
            self.provider.gc(now)
            self.store.gc_nflog(now - NFLOG_RETENTION)
            self.silences.gc(now)

    # API helpers
    def status(self, a: Alert, now: float) -> dict[str, Any]:
        """The alert's ``status`` as the API shows it: what silences or inhibits it right now."""
        silenced = self.silences.mutes(a.labels, now)
        inhibitor = self.dispatcher.inhibitor.mutes(a.labels, now)
        inhibited = [inhibitor] if inhibitor else []
        return {
            "inhibitedBy": inhibited,
            "silencedBy": silenced,
            "state": "suppressed" if silenced or inhibited else "active",
        }

    def gettable(self, a: Alert, receivers: list[str], status: dict[str, Any]) -> dict[str, Any]:
        """The ``gettableAlert`` JSON; ``receivers`` as Alertmanager lists them (repeats kept)."""
        return {
            "annotations": a.annotations,
            "endsAt": format_api_time(a.ends_at),
            "fingerprint": a.fp,
            "receivers": [{"name": n} for n in receivers],
            "startsAt": format_api_time(a.starts_at),
            "status": status,
            "updatedAt": format_api_time(a.updated_at),
            # go-swagger omits an empty URI (``omitempty``).
            **({"generatorURL": a.generator_url} if a.generator_url else {}),
            "labels": a.labels,
        }


def serve(router: AlertRouter) -> None:
    """Run until SIGINT/SIGTERM, then drain; SIGHUP reloads the config like Alertmanager."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        pending: set[asyncio.Task[None]] = set()
        from forewarn.shutdown import on_stop_signals

        on_stop_signals(loop, stop)  # a second Ctrl-C exits at once

        def hup() -> None:
            async def do() -> None:
                try:
                    await router.reload()
                    log.info("configuration reloaded")
                except RestartNeeded as e:
                    log.warning("reload: %s", e)
                except Exception as e:
                    log.error("reload failed, keeping the running configuration: %s", e)

            pending.add(t := loop.create_task(do()))
            t.add_done_callback(pending.discard)

        loop.add_signal_handler(signal.SIGHUP, hup)
        await router.start()
        try:
            await stop.wait()
        finally:
            log.info("shutting down")
            await router.stop()

    # uvloop when installed: the same asyncio semantics, several times less loop overhead.
    try:
        import uvloop

        factory: Any = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
