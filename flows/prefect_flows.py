"""The Prefect flows: ``forewarn-score``, ``forewarn-slo``, ``forewarn-train``, ``forewarn-backfill``, ``forewarn-backtest``.

Embedded (the default), each call runs against Prefect's temporary local server, started on the
first call; with ``PREFECT_API_URL`` set they run on that server, and a deployment of
``score_flow`` per shard on a work pool scales scoring out (see docs/flows.md). Flow parameters are
plain values; the store and settings come from :func:`configure` (the embedding process) or,
in a Prefect worker, from the worker's own ``FOREWARN_*`` environment / config file.
"""

from __future__ import annotations

import threading

from forewarn.flows.runtime import MAX_BATCHES_PER_TICK, Runtime, score_batches
from prefect import flow

from forewarn.config import Settings, load_settings

_lock = threading.Lock()
_runtime: Runtime | None = None


def configure(settings: Settings, dsn: str | None = None, alerts_url: str | None = None) -> Runtime:
    """Bind the flows of this process to a store and router (the embedding ``forewarn up`` calls this)."""
    global _runtime
    with _lock:
        _runtime = Runtime(settings, dsn or settings.storage_dsn, alerts_url)
        return _runtime


def runtime() -> Runtime:
    global _runtime
    with _lock:
        if _runtime is None:
            s = load_settings()
            _runtime = Runtime(s, s.storage_dsn, s.alerts.url)
        return _runtime


@flow(name="forewarn-score", persist_result=False, log_prints=False)
def score_flow(
    shard: int = 0, shards: int = 1, until_ms: int | None = None, max_batches: int = MAX_BATCHES_PER_TICK
) -> list[dict]:
    """Score every closed bucket past the shard's watermark (at most ``max_batches`` micro-batches)."""
    return score_batches(runtime().engine("live", shard, shards), until_ms, max_batches)


@flow(name="forewarn-slo", persist_result=False, log_prints=False)
def slo_flow(max_batches: int | None = None) -> dict:
    """Count the SLIs of ``slo.dir`` up to the newest closed bucket, evaluate burn rates, alert."""
    return runtime().slo(max_batches)


@flow(name="forewarn-train", persist_result=False, log_prints=False)
def train_flow(history_s: float | None = None) -> dict[str, int]:
    """Fit the batch models on the stored history; running score workers pick them up."""
    return runtime().train(history_s)


@flow(name="forewarn-backfill", persist_result=False, log_prints=False)
def backfill_flow(start_ms: int, end_ms: int, run: str) -> dict:
    """Run the detectors over a past range into ``anomalies``/``incidents`` under ``run``."""
    return runtime().replay(run, start_ms, end_ms)


@flow(name="forewarn-backtest", persist_result=False, log_prints=False)
def backtest_flow(start_ms: int, end_ms: int, run: str, alerts_config: str | None = None) -> dict:
    """What a configuration would have produced over a past range: anomalies, alerts, pages."""
    return runtime().backtest(run, start_ms, end_ms, alerts_config)
