"""``FlowsService``: the score loop (and periodic training) embedded in a forewarn process.

``forewarn up`` starts it next to the collector and the router, on the same DSN (one chDB engine
per process) with its own clients. The loop runs in a thread, so ingest never waits for scoring:
every ``flows.interval_s`` it scores the closed buckets as a Prefect flow run of
``forewarn-score`` (embedded temporary server by default), or directly with
``flows.orchestrator: inline``. Prefect's temporary server takes 20 s to a minute or more to start
on a new data directory; until it answers, the loop scores the same engine directly, so the first
buckets are scored within seconds of start, then hands over. If Prefect cannot start, the loop
logs it and goes on scoring inline, so anomalies keep flowing.

>>> from forewarn.config import load_settings
>>> svc = FlowsService(load_settings(), "chdb:///tmp/forewarn-doctest", None)
>>> svc.running
False
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from forewarn.config import Settings

log = logging.getLogger(__name__)
SLO_BATCHES_PER_TICK = 5  # a new SLO's backfill (a day per batch) spreads over ticks: scoring goes on


class FlowsService:
    def __init__(self, settings: Settings, storage_dsn: str, alerts_url: str | None = None):
        self.settings, self.dsn = settings, storage_dsn
        self.alerts_url = alerts_url or settings.alerts.url
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.errors = 0
        self.last_error: str | None = None
        self.orchestrator = settings.flows.orchestrator
        self.started_ms = int(time.time() * 1000)
        self._api = None
        self._api_task: asyncio.Task | None = None
        self.api_port: int | None = None
        self._slo_runtime = None
        self._slo_problem: str | None = None
        self._prefect_up = threading.Event()  # Prefect's server answers: flows run through it
        self.prefect_ticks = 0  # score ticks run as Prefect flow runs

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    async def start(self) -> None:
        self.start_thread()
        if self.settings.flows.api_listen:
            await self._start_api(self.settings.flows.api_listen)

    async def stop(self) -> None:
        if self._api is not None:
            self._api.should_exit = True
            await self._api_task
        await asyncio.get_running_loop().run_in_executor(None, self.stop_thread)

    async def _start_api(self, listen: str) -> None:
        """``GET /api/v1/anomalies``, ``POST /api/v1/anomalies/{id}/feedback`` (see :mod:`.api`)."""
        import uvicorn
        from forewarn.flows.api import routes
        from starlette.applications import Starlette

        host, _, port = listen.rpartition(":")
        tokens = [t.get_secret_value() for t in self.settings.alerts.api_tokens]
        app = Starlette(routes=routes(tokens, self.dsn, self.settings.storage.database))
        cfg = uvicorn.Config(
            app, host=host or "127.0.0.1", port=int(port), log_level="warning", lifespan="off"
        )
        self._api = _QuietServer(cfg)
        self._api_task = asyncio.get_running_loop().create_task(self._api.serve())
        while not self._api.started:
            if self._api_task.done():
                raise OSError(f"flows API cannot listen on {listen}")
            await asyncio.sleep(0.01)
        self.api_port = self._api.servers[0].sockets[0].getsockname()[1]
        log.info("flows API listening on %s:%d", host, self.api_port)

    def start_thread(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self.started_ms = int((time.time() - self.settings.flows.start_lookback_s) * 1000)
        self._thread = threading.Thread(target=self._loop, name="forewarn-flows", daemon=True)
        self._thread.start()

    def stop_thread(self, timeout_s: float = 60.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("flows loop did not stop within %.0f s", timeout_s)

    # -- the loop ------------------------------------------------------------------------------
    def _score_callable(self):
        f = self.settings.flows
        if self.orchestrator == "prefect":
            try:
                from forewarn.flows.runtime import prepare_prefect

                prepare_prefect(self.settings.data_dir)
                from forewarn.flows import prefect_flows
                from forewarn.flows.runtime import score_batches

                rt = prefect_flows.configure(self.settings, self.dsn, self.alerts_url)
                eng = rt.engine("live", f.shard, f.shards)
                eng.start_at(self.started_ms)
                threading.Thread(
                    target=self._start_prefect, name="forewarn-prefect-start", daemon=True
                ).start()

                def score() -> list[dict]:
                    # one engine either way (the flow run calls this runtime's engine), one thread
                    if not self._prefect_up.is_set():
                        return score_batches(eng)
                    self.prefect_ticks += 1
                    return prefect_flows.score_flow(shard=f.shard, shards=f.shards)

                return score
            except Exception as e:  # pragma: no cover - depends on the environment
                log.warning("Prefect unavailable (%s); scoring inline", e)
                self.orchestrator = "inline"
        from forewarn.flows.runtime import Runtime, score_batches

        rt = Runtime(self.settings, self.dsn, self.alerts_url)
        eng = rt.engine("live", f.shard, f.shards)
        eng.start_at(self.started_ms)  # a fresh store starts where the service started, not later
        return lambda: score_batches(eng)

    def _start_prefect(self) -> None:
        """Start (or reach) the Prefect server in the background: in ephemeral mode its client's
        first request starts the temporary server, which then serves this process's flow runs."""
        began = time.time()
        try:
            from prefect import get_client

            with get_client(sync_client=True) as client:
                client.hello()
        except Exception as e:  # pragma: no cover - depends on the environment
            log.warning("Prefect unavailable (%s); scoring inline", e)
            self.orchestrator = "inline"
            return
        log.info("flows: Prefect's server answered %.0f s after start; scoring as Prefect flow runs from now on",
                 time.time() - began)  # fmt: skip
        self._prefect_up.set()

    @property
    def _via_prefect(self) -> bool:
        return self.orchestrator == "prefect" and self._prefect_up.is_set()

    def _loop(self) -> None:
        f = self.settings.flows
        score = None
        last_train = time.time()
        last_slo = 0.0
        summary = Summary(f.summary_interval_s)
        began, ready = time.time(), False
        while not self._stop.is_set():
            t0 = time.time()
            try:
                if score is None:
                    score = self._score_callable()
                reps = score()
                if not ready:
                    ready = True
                    how = "prefect" if self._via_prefect else "inline"
                    if self.orchestrator == "prefect" and how == "inline":
                        how = "directly until Prefect's server is up"
                    log.info(
                        "flows: scoring (%s), first tick done %.0f s after start", how, time.time() - began
                    )
                self.batches += len(reps or [])
                summary.add(reps or [])
                if time.time() - last_train >= f.train_interval_s:
                    last_train = time.time()
                    self._train()
                if (
                    self.settings.slo.dir is not None
                    and time.time() - last_slo >= self.settings.slo.interval_s
                ):
                    last_slo = time.time()
                    self._slo()
            except Exception as e:  # keep running: the watermark did not move, the next tick retries
                self.errors += 1
                self.last_error = str(e)
                log.exception("flows: score tick failed (will retry)")
                if self._via_prefect and _from_prefect(e):
                    # Prefect itself failing must not stop scoring: fall back to direct calls.
                    self.orchestrator, score = "inline", None
            summary.maybe_log(self.errors)
            self._stop.wait(max(0.0, f.interval_s - (time.time() - t0)))

    def _slo(self) -> None:
        """One run of the SLO flow; a wrong SLO file is logged once (the others keep no state
        of it) and retried at the next run."""
        from forewarn.flows.slo_spec import SLOFileError

        try:
            if self._via_prefect:
                from forewarn.flows import prefect_flows

                prefect_flows.slo_flow(SLO_BATCHES_PER_TICK)
            else:
                from forewarn.flows.runtime import Runtime

                if self._slo_runtime is None:
                    self._slo_runtime = Runtime(self.settings, self.dsn, self.alerts_url)
                self._slo_runtime.slo(SLO_BATCHES_PER_TICK)
            self._slo_problem = None
        except SLOFileError as e:
            if str(e) != self._slo_problem:
                log.error("SLOs not evaluated: %s", e)
            self._slo_problem = str(e)

    def _train(self) -> None:
        from forewarn.flows.runtime import Runtime

        if self._via_prefect:
            from forewarn.flows import prefect_flows

            prefect_flows.train_flow()
        else:
            Runtime(self.settings, self.dsn, self.alerts_url).train()


class Summary:
    """The periodic one-line INFO summary of what the score loop did since the last one.

    >>> s = Summary(60.0, clock=lambda: 100.0)
    >>> s.add([{"points": 30, "series": 3, "anomalies": 1, "forecasts": 0, "alerts_sent": 2,
    ...         "open_incidents": 1, "end_ms": 95_000}])
    >>> s.line(errors=0)
    'flows: 1 batches scored 30 points of 3 series; 1 anomalies, 0 saturation warnings, 1 open incidents, 2 alerts posted to the router; lag 5 s'
    """

    def __init__(self, every_s: float, clock=time.time):
        self.every_s, self.clock = every_s, clock
        self.last = clock()
        self.open = 0
        self.watermark_ms: int | None = None
        self._reset()

    def _reset(self) -> None:
        self.batches = self.points = self.series = self.anomalies = self.forecasts = self.alerts = 0

    def add(self, reports: list[dict]) -> None:
        for r in reports:
            self.batches += 1
            self.points += r["points"]
            self.series = max(self.series, r["series"])
            self.anomalies += r["anomalies"]
            self.forecasts += r["forecasts"]
            self.alerts += r["alerts_sent"]
            self.open = r["open_incidents"]
            self.watermark_ms = r["end_ms"]

    def line(self, errors: int) -> str:
        lag = f"{self.clock() - self.watermark_ms / 1000:.0f} s" if self.watermark_ms else "no batch yet"
        return (
            f"flows: {self.batches} batches scored {self.points} points of {self.series} series; "
            f"{self.anomalies} anomalies, {self.forecasts} saturation warnings, {self.open} open incidents, "
            f"{self.alerts} alerts posted to the router; lag {lag}"
            + (f"; {errors} failed ticks so far" if errors else "")
        )

    def maybe_log(self, errors: int) -> None:
        if self.clock() - self.last >= self.every_s:
            log.info("%s", self.line(errors))
            self.last = self.clock()
            self._reset()


def _from_prefect(e: BaseException) -> bool:
    """Whether the orchestration itself failed (then score inline), not the scoring."""
    return type(e).__module__.split(".")[0] in (
        "prefect",
        "httpx",
        "httpcore",
        "sqlalchemy",
        "uvicorn",
        "anyio",
    )


def _quiet_server_class():
    import contextlib

    import uvicorn

    class QuietServer(uvicorn.Server):
        """uvicorn that leaves signal handling to the embedding process."""

        def capture_signals(self):  # type: ignore[override]
            return contextlib.nullcontext()

    return QuietServer


def _QuietServer(cfg):
    return _quiet_server_class()(cfg)
