"""What the flows run on: settings, a store DSN and a router URL, with score engines cached per shard.

Each engine owns a clickhouse-connect client of its own (clients are not shared between threads),
all on the same DSN, so ``forewarn up`` keeps one chDB engine per process.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from forewarn.flows.engine import ScoreEngine
from forewarn.flows.notify import Notifier
from forewarn.flows.store import FlowStore

from forewarn.config import Settings
from forewarn.storage.client import connect, open_storage

log = logging.getLogger(__name__)
MAX_BATCHES_PER_TICK = 10  # a catching-up loop still returns (and reports) every this many batches


def score_batches(
    eng: ScoreEngine, until_ms: int | None = None, max_batches: int = MAX_BATCHES_PER_TICK
) -> list[dict]:
    """Score the closed buckets past the engine's watermark, at most ``max_batches`` micro-batches:
    a tick behind by many buckets (a busy machine, a long start) ends and reports, and the next
    one goes on."""
    out = []
    for _ in range(max_batches):
        r = eng.run_once(until_ms)
        if r is None:
            break
        out.append(r.as_dict())
    return out


def prepare_prefect(data_dir: Path) -> None:
    """Quiet, local defaults for the embedded Prefect; call before Prefect is first imported."""
    os.environ.setdefault("PREFECT_HOME", str((Path(data_dir) / "prefect").resolve()))
    os.environ.setdefault("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", "true")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


class Runtime:
    def __init__(self, settings: Settings, dsn: str, alerts_url: str | None = None):
        self.settings, self.dsn, self.alerts_url = settings, dsn, alerts_url
        self._engines: dict[tuple, ScoreEngine] = {}
        self._lock = threading.Lock()
        self._migrated = False
        self._slo = None

    def client(self):
        if not self._migrated:
            open_storage(self.settings, self.dsn).close()  # migrations, once per process
            self._migrated = True
        return connect(self.dsn, database=self.settings.storage.database)

    def notifier(self) -> Notifier | None:
        if not self.alerts_url:
            return None
        tokens = self.settings.alerts.api_tokens
        return Notifier(self.alerts_url, tokens[0].get_secret_value() if tokens else None)

    def engine(self, run: str = "live", shard: int = 0, shards: int = 1) -> ScoreEngine:
        key = (run, shard, shards)
        with self._lock:
            if key not in self._engines:
                notifier = self.notifier() if run == "live" else None
                self._engines[key] = ScoreEngine(
                    self.client(), self.settings, run, notifier, shard=shard, shards=shards
                )
            return self._engines[key]

    def drop(self, run: str = "live", shard: int = 0, shards: int = 1) -> None:
        """Forget a cached engine (the next call restores it from its checkpoint)."""
        with self._lock:
            eng = self._engines.pop((run, shard, shards), None)
        if eng is not None:
            eng.store.client.close()
            if eng.notifier:
                eng.notifier.close()

    def slo(self, max_batches: int | None = None) -> dict:
        """One run of the SLO flow: the files of ``slo.dir`` (re-read each run, so an edit takes
        effect at the next one), every SLI counted up to the newest closed bucket (at most
        ``max_batches`` catch-up batches: a new SLO's backfill then spreads over several runs
        instead of holding up the loop), alerts posted. Raises
        :class:`~forewarn.flows.slo_spec.SLOFileError` when a file is wrong."""
        from forewarn.flows.slo import SLOEngine
        from forewarn.flows.slo_spec import load_dir

        if self.settings.slo.dir is None:
            return {"slos": 0, "runs": 0}
        slos = load_dir(self.settings.slo.dir)
        with self._lock:
            if self._slo is None or self._slo.slos != slos:
                client = self._slo.flow_store.client if self._slo is not None else self.client()
                self._slo = SLOEngine(client, self.settings, slos, self.notifier())
            eng = self._slo
        runs, firing = 0, {}
        while (max_batches is None or runs < max_batches) and (st := eng.run_once()) is not None:
            runs += 1
            firing.update({k: v.firing for k, v in st.items()})
        out = {"slos": len(slos), "runs": runs, "firing": {k: v for k, v in firing.items() if v}}
        if eng.failed:
            out["failed"] = dict(eng.failed)
        return out

    def train(self, history_s: float | None = None) -> dict[str, int]:
        from forewarn.flows.models import train

        client = self.client()
        try:
            now_ms = time.time() * 1000
            hist = (history_s or self.settings.flows.train_history_s) * 1000
            return train(FlowStore(client, self.settings.storage.database), self.settings.detectors.seed,
                         int(now_ms - hist), int(now_ms), now_ms)  # fmt: skip
        finally:
            client.close()

    def replay(self, run: str, start_ms: int, end_ms: int) -> dict:
        """Score ``[start, end)`` from a fresh state under ``run`` (all shards), without alerting."""
        step = int(self.settings.flows.step_s * 1000)
        start_ms, end_ms = start_ms // step * step, end_ms // step * step
        totals = {"run": run, "start_ms": start_ms, "end_ms": end_ms, "batches": 0, "points": 0}
        client = self.client()
        try:
            for shard in range(self.settings.flows.shards):
                eng = ScoreEngine(client, self.settings, run, None, clock=lambda: end_ms / 1000.0,
                                  shard=shard, shards=self.settings.flows.shards)  # fmt: skip
                eng.start_at(start_ms)
                for r in eng.run_until(end_ms):
                    totals["batches"] += 1
                    totals["points"] += r.points
        finally:
            client.close()
        return totals

    def backtest(self, run: str, start_ms: int, end_ms: int, alerts_config: str | None = None) -> dict:
        from forewarn.flows.backtest import report

        totals = self.replay(run, start_ms, end_ms)
        client = self.client()
        try:
            return {**totals, **report(FlowStore(client, self.settings.storage.database), run, alerts_config)}
        finally:
            client.close()
