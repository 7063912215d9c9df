"""The score step: one micro-batch from the watermark to the newest closed bucket, exactly once.

Each batch: the signals of ``[watermark, end)`` (:mod:`.signals`, log templates from
:mod:`.logmining`) pass the cardinality guard and are stored; then every detector scores them
through the one interface of :mod:`forewarn.detectors.scoring` (the streaming ensemble, cold
start, new log templates, saturation forecasts and any trained models), false-positive feedback
is applied, and :mod:`.incidents` groups the onsets into incidents, follows which are still
firing, names their likely cause (:mod:`.correlate`) and resolves the quiet ones. The results
are written and only after them the checkpoint (new watermark and every detector's state). The
batch's window is recorded first (an intent), so a crash before the checkpoint replays exactly
that window from the same state: the inserts carry the same deduplication tokens and ClickHouse
drops what had already landed, and the rows are identical under deterministic keys anyway. Every
point is scored and every anomaly stored exactly once. Alerts (:mod:`.notify`) are posted after
the commit.

Shards: a worker with ``shard=k of shards=n`` handles the services whose ``cityHash64`` is ``k``
mod ``n``, with its own watermark and state; workers never share series.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from clickhouse_connect.driver.client import Client
from forewarn.detectors.coldstart import ColdStart, ColdStartParams
from forewarn.detectors.ensemble import EnsembleParams
from forewarn.detectors.novelty import NewTemplates
from forewarn.detectors.saturation import Saturation
from forewarn.detectors.scoring import Finding, Result, prefixed
from forewarn.detectors.streaming import Streaming
from forewarn.flows import correlate, models
from forewarn.flows.guard import CardinalityGuard
from forewarn.flows.incidents import Incident, IncidentBook
from forewarn.flows.lateness import Lateness
from forewarn.flows.logmining import LogMiner, fetch_logs, mine_window
from forewarn.flows.notify import Notifier, forecast_alert, incident_alert, incident_labels
from forewarn.flows.signals import (
    COLUMNS,
    DIRECTION,
    SPAN_COVERED,
    USAGE_METRICS,
    SignalQueries,
    Window,
    compute_signals,
    finish,
)
from forewarn.flows.slo_store import SLOStore
from forewarn.flows.store import FlowStore, decode_state, encode_state, ms_of, to_dt

from forewarn.config import Settings

log = logging.getLogger(__name__)
# service-level series that read 0 in a bucket without points, and their family
SILENT_RATES = {"red.rate": "traffic", "log.rate": "volume", "log.error_rate": "ratio"}
SILENCE = 60  # buckets a quiet service's rates read 0 before it counts as gone
FP_MARGIN = 2.0  # a deviation this many times the one marked false-positive alerts again


@dataclass
class BatchReport:
    """What one micro-batch did (also the Prefect flow run's return value)."""

    start_ms: int
    end_ms: int
    points: int = 0
    series: int = 0
    rejected_series: int = 0
    anomalies: int = 0
    suppressed: int = 0
    forecasts: int = 0
    incidents: list[int] = field(default_factory=list)
    open_incidents: int = 0
    alerts_sent: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class ScoreEngine:
    """One shard of the score flow over one store; ``run`` separates live scoring from backfills.

    ``clock`` (seconds) decides which buckets are closed; tests and backfills pass their own.
    """

    def __init__(
        self,
        client: Client,
        settings: Settings,
        run: str = "live",
        notifier: Notifier | None = None,
        clock=time.time,
        shard: int | None = None,
        shards: int | None = None,
    ):
        f = settings.flows
        self.settings, self.f, self.run, self.clock = settings, f, run, clock
        self.shard = f.shard if shard is None else shard
        self.shards = f.shards if shards is None else shards
        if not 0 <= self.shard < self.shards:
            raise ValueError(f"shard {self.shard} is not in 0..{self.shards - 1}")
        self.store = FlowStore(client, settings.storage.database)
        self.queries = SignalQueries(self.store, counter_lookback_ms=int(f.counter_lookback_s * 1000))
        self.notifier = notifier
        self.step_ms = int(f.step_s * 1000)
        self.key = f"score/{run}/{self.shard}-of-{self.shards}"
        # One committed threshold for every detector run (`forewarn detect` and the flows alike).
        self.params = EnsembleParams(
            warmup=f.warmup_points, threshold=settings.detectors.threshold, handover=True
        )
        self.unsent: deque[dict] = deque(maxlen=10_000)  # resolved alerts not posted yet
        self.lateness = Lateness(f.lateness_s, f.max_lateness_s, f.step_s)
        self._scored: tuple[int, int, int] | None = None  # the last live window and its items then
        self._dirty = False
        self._restore()

    # -- state ---------------------------------------------------------------------------------
    def _fresh(self) -> None:
        f = self.f
        self.detectors = [
            Streaming(self.params, unjudged=tuple(f.unjudged_prefixes)),
            ColdStart(
                ColdStartParams(
                    f.warmup_points, f.cold_start_points, persist=max(2, math.ceil(f.persist_s / f.step_s))
                )
            ),
            NewTemplates(),
            Saturation(f.saturation_limits, f.forecast_horizon_s),
        ]
        self.models = models.ModelSet(self.settings.detectors.threshold)
        self.miner = LogMiner(f.max_templates)
        self.rates: dict[str, list] = {}  # service-level rate series: [name, service, last bucket]
        self.book = IncidentBook(self.run, int(f.correlation_window_s * 1000), int(f.resolve_after_s * 1000),
                                 int(f.incident_max_s * 1000), f.incident_hold_buckets * self.step_ms,
                                 self.step_ms)  # fmt: skip

    def _restore(self) -> None:
        cp = self.store.load_checkpoint(self.key)
        self._fresh()
        self.restored = cp is not None
        if cp is None:
            now = self.clock() * 1000 - self.f.start_lookback_s * 1000
            self.watermark = int(now // self.step_ms * self.step_ms)
            log.info("%s: no checkpoint, starting at %s", self.key, to_dt(self.watermark).isoformat())
        else:
            self.watermark, blob = cp
            meta, arrays = decode_state(blob)
            for d in self.detectors:
                d.load(meta.get(d.name, {}), prefixed(arrays, d.name))
            self.models.refresh(self.store)
            self.models.load(prefixed(arrays, "models"))
            self.miner = LogMiner.from_state(meta["miner"].encode(), self.f.max_templates)
            self.rates = meta.get("rates", {})
            self.book.load(meta.get("book", {}))
            log.info("%s: resuming at %s", self.key, to_dt(self.watermark).isoformat())
        # A batch that was cut short is replayed over exactly the same window, so its inserts carry
        # the same deduplication tokens and ClickHouse drops the rows that did land.
        self.replay_end: int | None = None
        intent = self.store.load_checkpoint(self.key + "/intent")
        if intent is not None and cp is None:  # killed during the very first batch
            self.watermark, self.restored = int(intent[1]), True
        if intent is not None and intent[1] == str(self.watermark) and intent[0] > self.watermark:
            self.replay_end = intent[0]
            log.info(
                "%s: replaying the interrupted batch up to %s", self.key, to_dt(self.replay_end).isoformat()
            )
        known = self.store.known_series(self.shard, self.shards)
        budget = max(1, self.f.max_series // self.shards)
        self.guard = CardinalityGuard(
            budget, set(int(s) for s in known["series_id"]) if len(known) else set()
        )

    def _state(self) -> str:
        meta: dict = {"miner": self.miner.state().decode(), "rates": self.rates, "book": self.book.state()}
        arrays: dict[str, np.ndarray] = {}
        for d in self.detectors:
            m, a = d.state()
            meta[d.name] = m
            arrays.update({f"{d.name}/{k}": v for k, v in a.items()})
        arrays.update({f"models/{k}": v for k, v in self.models.state()[1].items()})
        return encode_state(meta, arrays)

    def start_at(self, ms: int) -> None:
        """Where a fresh engine starts (a restored one keeps its watermark)."""
        if not self.restored:
            self.watermark = int(ms // self.step_ms * self.step_ms)

    # -- the loop ------------------------------------------------------------------------------
    def closed_until(self) -> int:
        """End of the newest bucket that is past the lateness allowance."""
        edge = self.clock() * 1000 - self.lateness.wait_s * 1000
        return int(edge // self.step_ms * self.step_ms)

    def next_window(self, until_ms: int | None = None) -> Window | None:
        if self.replay_end is not None:
            return Window(self.watermark, self.replay_end, self.step_ms, self.shard, self.shards)
        end = self.closed_until() if until_ms is None else until_ms
        # bounded memory: at most max_batch_buckets, and about max_batch_points points
        buckets = min(
            self.f.max_batch_buckets, max(1, self.f.max_batch_points // max(1, len(self.guard.known)))
        )
        end = min(end, self.watermark + buckets * self.step_ms)
        if end <= self.watermark:
            return None
        return Window(self.watermark, end, self.step_ms, self.shard, self.shards)

    def run_once(self, until_ms: int | None = None, send_alerts: bool = True) -> BatchReport | None:
        if self._dirty:
            self._restore()
            self._dirty = False
        live = until_ms is None and self.replay_end is None
        if live:
            self._learn_lateness()
        w = self.next_window(until_ms)
        if w is None:
            return None
        rep = self.process(w, send_alerts)
        # what the window held when scored, counted again before the next live batch
        then = self._arrived(w.start_ms, w.end_ms) if live else None
        self._scored = None if then is None else (w.start_ms, w.end_ms, then)
        return rep

    def _arrived(self, start_ms: int, end_ms: int) -> int | None:
        try:
            return self.store.arrived(start_ms, end_ms)
        except Exception as e:  # learning the wait is not worth failing a batch that committed
            log.debug("%s: counting the window's items failed: %s", self.key, e)
            return None

    def _learn_lateness(self) -> None:
        """Items that reached the last scored window after it was scored make the wait longer."""
        if self._scored is None:
            return
        start, end, then = self._scored
        self._scored = None
        now = self._arrived(start, end)
        if now is not None and self.lateness.observe(now - then, now):
            log.warning(
                "%s: %d of %d spans and log records of the last window arrived after it was scored: "
                "waiting %.0f s after a bucket ends before scoring it (flows.max_lateness_s caps this)",
                self.key, now - then, now, self.lateness.wait_s,
            )  # fmt: skip

    def run_until(self, end_ms: int, send_alerts: bool = False) -> list[BatchReport]:
        reports = []
        while (r := self.run_once(end_ms, send_alerts)) is not None:
            reports.append(r)
        return reports

    def process(self, w: Window, send_alerts: bool = True) -> BatchReport:
        """One micro-batch; on any failure the in-memory state is reloaded from the checkpoint, so
        the retry replays the same window from the same state (the process keeps running)."""
        try:
            return self._process(w, send_alerts)
        except Exception:
            self._dirty = True
            with contextlib.suppress(Exception):  # the store may be down: retried before the next batch
                self._restore()
                self._dirty = False
            raise

    def _process(self, w: Window, send_alerts: bool) -> BatchReport:
        t_start = time.perf_counter()
        token = f"{self.key}/{w.start_ms}-{w.end_ms}"
        rep = BatchReport(w.start_ms, w.end_ms)
        self.store.commit_checkpoint(self.key + "/intent", w.end_ms, str(w.start_ms), self.clock() * 1000)
        sig = self._judged(self._signals(w, token, rep))
        self.book.observe_edges(self.store.service_edges(w.start_ms, w.end_ms), w.end_ms)
        found, firing = self._score(sig)
        saturation = next(d for d in self.detectors if isinstance(d, Saturation))
        # series that do not keep an incident open by firing: a change score stays high while its
        # own past holds the change, and a resource that goes on filling is its saturation
        # warning's to follow (a disk filling for six minutes kept a latency blip's incident open),
        # its usage by state included (the bytes used and free of the disk whose share is forecast);
        # nor does load, which lasts as long as the traffic that causes it
        resource = {n for n in sig["name"].unique() if n in USAGE_METRICS or saturation.limit(n) is not None}
        load = {n for n in sig["name"].unique() if correlate.is_load(n)}  # busier is not a fault
        lasting = sig["family"].eq("shift") | sig["name"].isin(resource | load)
        for sid in set(sig.loc[lasting, "series_id"].astype(int)) & set(firing):
            del firing[sid]
        detected_at = to_dt(self.clock() * 1000)
        rows = [self._row(sig, name, f, detected_at) for name, f in found]
        rep.suppressed = self._apply_feedback(rows, w)
        rows.sort(key=lambda r: (r["_ts_ms"], r["anomaly_id"]))
        for r in rows:
            r["_drop"] = correlate.is_drop(r["name"], r["value"], r["expected"])
            r["_inbound"] = r["_drop"] and correlate.is_inbound(r["name"], r["labels"] or {})
            r["_resource"] = r["name"] in resource
        touched = self.book.assign(rows, firing, w.end_ms)
        for r in rows:
            if r["kind"] == "forecast":
                self.book.warn(str(r["series_id"]), r["_warning"], r["_ts_ms"])
        incidents = self._settle(touched, rows, w)
        self.store.write_anomalies(
            [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows], token
        )
        self.store.write_incidents([_incident_row(self.run, i) for i in incidents], token)
        self.store.commit_checkpoint(self.key, w.end_ms, self._state(), self.clock() * 1000)
        self.watermark = w.end_ms
        self.replay_end = None
        rep.anomalies = sum(r["kind"] == "deviation" for r in rows)
        rep.forecasts = sum(r["kind"] == "forecast" for r in rows)
        rep.incidents = sorted(i.incident_id for i in incidents)
        rep.open_incidents = len(self.book.open)
        if send_alerts and self.notifier is not None:
            rep.alerts_sent = self._alert(w)
        rep.seconds = time.perf_counter() - t_start
        return rep

    def _signals(self, w: Window, token: str, rep: BatchReport) -> pd.DataFrame:
        """The window's signals (metrics, traces, logs, silence), admitted by the guard and stored."""
        sig, hist = compute_signals(self.queries, w)
        log_sig, records, first = mine_window(self.miner, fetch_logs(self.queries, w), w)
        sig = finish([sig, log_sig]) if len(log_sig) else sig
        sig = self._fill_silence(sig, w)
        sig, new_series, rejected = self.guard.admit(sig, w.end_ms)
        sig = sig.reset_index(drop=True)
        rep.points, rep.series = len(sig), int(sig["series_id"].nunique()) if len(sig) else 0
        rep.rejected_series = sum(r[3] for r in rejected)
        self.store.write_series(new_series, token)
        self.store.write_cardinality([[to_dt(r[0]), *r[1:]] for r in rejected], token)
        self.store.write_signals(sig, token)
        self.store.write_latency_hist(hist, token)
        self.store.write_log_templates(records, first, token)
        return sig

    def _judged(self, sig: pd.DataFrame) -> pd.DataFrame:
        """The signals the detectors judge: all but the request-level metrics (``SPAN_COVERED``:
        durations, body sizes, active requests) of a service whose spans give the same requests'
        rate, errors and latency (``red.*``). Both measure the same requests, and a metric
        exported once a minute (the SDKs' default) reports them up to a minute late, as one
        point: in test-bed runs such echoes (the duration's, then with Python's old semantic
        conventions the request and response sizes' error shares) joined and prolonged an
        incident minutes after its fault had ended. They are stored and shown all the same."""
        traced = {svc for name, svc, _ in self.rates.values() if name == "red.rate"}
        if not len(sig) or not traced:
            return sig
        metric = sig["name"].str.split(":", n=1).str[0]
        echo = metric.str.startswith(SPAN_COVERED) & sig["service"].isin(traced)
        return sig[~echo].reset_index(drop=True) if echo.any() else sig

    def _score(self, sig: pd.DataFrame) -> tuple[list[tuple[str, Finding]], dict[int, int]]:
        """Every detector, called the same way on the same points: (detector, finding) pairs and
        the newest firing point of every firing series."""
        self.models.refresh(self.store)
        found, firing = [], Result()
        for d in [*self.detectors, *self.models.detectors()]:
            res = d.score(sig)
            found += [(d.name, f) for f in res.onsets]
            firing.merge(Result(firing=res.firing))
        return found, firing.firing

    def _apply_feedback(self, rows: list[dict], w: Window) -> int:
        """A false-positive mark suppresses the same pattern: the same series and detector family
        with a deviation up to ``FP_MARGIN`` times the marked one. Larger ones still alert."""
        fp = self.store.feedback(w.end_ms, int(self.f.feedback_suppress_s * 1000))
        n = 0
        for r in rows:
            marks = fp.get(r["series_id"])
            if not marks or r["kind"] != "deviation":
                continue
            fam = r["detector"].split(":")[0]
            dev = abs(r["value"] - r["expected"]) if math.isfinite(r["expected"]) else math.inf
            if any(f == fam and dev <= FP_MARGIN * d and r["_ts_ms"] > t for f, d, t in marks):
                r["kind"] = "suppressed"
                n += 1
        return n

    def _row(self, sig: pd.DataFrame, source: str, f: Finding, detected_at) -> dict:
        """The stored anomaly (or forecast) row of a finding of detector ``source``."""
        p = sig.iloc[f.row]
        name, labels = (f.name, {}) if f.name else (p["name"], dict(p["labels"]))
        sid = int(f.series_id if f.series_id is not None else p["series_id"])
        what = f"{p['service']} {name}{_fmt_labels(labels)}"
        detector = f"{source}:{f.component}" if source == "ensemble" else source
        ts = int(p["ts"])
        row = {
            "anomaly_id": correlate.stable_id(sid, ts, detector),
            "run": self.run,
            "ts": to_dt(ts),
            "_ts_ms": ts,
            "detected_at": detected_at,
            "series_id": sid,
            "name": name,
            "service": p["service"],
            "labels": labels,
            "value": float(p["value"]),
            "expected": float(f.expected) if math.isfinite(f.expected) else float("nan"),
            "score": float(f.score),
            "detector": detector,
            "kind": f.kind,
            "explanation": f"{what}: {f.text}",
            "incident_id": 0,
            "model_version": int(f.detail.get("version", 0)),
        }
        if f.kind == "forecast":
            row["_warning"] = {"service": p["service"], "name": name, "labels": labels, "explanation": row["explanation"],
                               "eta_s": round(f.detail["eta_s"]),
                               "every_s": f.detail.get("every_s", 0.0)}  # fmt: skip
        return row

    def _fill_silence(self, sig: pd.DataFrame, w: Window) -> pd.DataFrame:
        """A service that stops sending has no points, which no detector can see: its service-level
        request and log rates read 0 (0 events over the bucket) in the buckets without points, for
        up to ``SILENCE`` buckets after its last real point (then a retired service falls quiet).
        So does its rate of error logs (0 errors of 0 records): a service that logs once a minute
        or two had its error-log episode kept firing for minutes after a burst, for lack of the
        normal points that end it."""
        seen: dict[str, set[int]] = {}
        if len(sig):
            sel = sig[sig["name"].isin(list(SILENT_RATES)) & sig["labels"].map(lambda x: not x)]
            for sid, name, service, ts in zip(
                sel["series_id"], sel["name"], sel["service"], sel["ts"], strict=True
            ):
                seen.setdefault(str(sid), set()).add(int(ts))
                if str(sid) not in self.rates:
                    self.rates[str(sid)] = [name, service, None]
        fill = []
        for sid, entry in list(self.rates.items()):
            name, service, last = entry
            present = seen.get(sid, set())
            for ts in range(w.start_ms, w.end_ms, w.step_ms):
                if ts in present:
                    last = ts
                elif last is not None and ts - last <= SILENCE * w.step_ms:
                    family = SILENT_RATES[name]
                    k = 0.0 if family == "ratio" else math.nan
                    fill.append(
                        (int(sid), ts, 0.0, name, service, {}, 0.0, k, w.step_s, family,
                         DIRECTION.get(family, 0), "1/s")
                    )  # fmt: skip
            if last is None or w.end_ms - last > SILENCE * w.step_ms:
                self.rates.pop(sid)
            else:
                entry[2] = last
        if not fill:
            return sig
        zeros = pd.DataFrame(fill, columns=COLUMNS).astype({"direction": np.int8})
        out = pd.concat([sig, zeros], ignore_index=True) if len(sig) else zeros
        return out.sort_values(["ts", "series_id"], kind="stable").reset_index(drop=True)

    # -- incidents and alerts ------------------------------------------------------------------
    def _settle(self, touched: dict[int, Incident], rows: list[dict], w: Window) -> list[Incident]:
        """Rank the suspects of the incidents that changed, fix the labels of those whose hold is
        over, resolve the quiet ones; returns every incident to write."""
        # lost traffic waits for what may still arrive late: the learnt wait, at least a bucket
        drop_wait = max(1, math.ceil(self.lateness.wait_s * 1000 / w.step_ms)) * w.step_ms
        due = {i.incident_id: i for i in self.book.due_labels(w.end_ms, drop_wait)}
        rank = {**touched, **due}
        retracted = []
        if rank:
            past = self.store.incident_anomalies(self.run, list(rank))
            new = pd.DataFrame([r for r in rows if r["incident_id"] in rank])
            allan = pd.concat([past, new], ignore_index=True) if len(past) else new
            for iid in [i for i, inc in due.items() if inc.kinds == ["drop"]]:
                if self._arrived_late(allan[allan["incident_id"] == iid], w):
                    retracted.append(self.book.retract(iid, w.end_ms))
                    del due[iid], rank[iid]
            services = sorted(set(allan["service"]))
            start = min(i.started_ms for i in rank.values()) - int(self.f.correlation_window_s * 1000)
            op_edges, steps = self.store.call_edges(services, start, w.end_ms)
            for iid, inc in rank.items():
                mine = allan[allan["incident_id"] == iid].drop_duplicates("anomaly_id")
                sus = correlate.rank_suspects(mine, op_edges, set(self.book.edges), steps)
                if sus and iid in due:  # which attribute values of the named suspect carry the deviation
                    top = sus[0]
                    rows_ = self.store.attribute_values(top["service"], top["operation"], inc.started_ms, w.end_ms,
                                                        int(self.f.correlation_window_s * 1000) * 5)  # fmt: skip
                    top["attribute_values"] = correlate.attribute_suspects(rows_)
                if (
                    sus
                    and iid not in due
                    and inc.suspects
                    and inc.suspects[0]["service"] == sus[0]["service"]
                ):
                    sus[0]["attribute_values"] = inc.suspects[0].get("attribute_values", [])
                inc.suspects = sus
                if iid in due:
                    inc.labels = incident_labels(inc, sus)
        closed = self.book.close(w.end_ms)
        for inc in closed:
            if inc.notified:
                self.unsent.append(self._incident_alert(inc))
        return [*self.book.open.values(), *closed, *retracted]

    def _arrived_late(self, drops: pd.DataFrame, w: Window) -> bool:
        """Whether the lost traffic of an incident made only of drops was late telemetry: counted
        again now, at least half of what each drop was missing has arrived since it was scored
        (an exporter that stalled or was told to back off and retry, not users who went away).
        Series that cannot be counted again here (log volume) keep their drop."""
        if not len(drops):
            return False
        at = [ms_of(t) for t in drops["ts"]]
        win = Window(min(at), max(at) + w.step_ms, w.step_ms, w.shard, w.shards)
        now = finish([self.queries.red(win), self.queries.histograms(win)])
        got = {
            (int(s), int(t)): float(v)
            for s, t, v in zip(now["series_id"], now["ts"], now["value"], strict=True)
        }
        late = []
        for sid, ts, value, expected, name in zip(
            drops["series_id"], at, drops["value"], drops["expected"], drops["name"], strict=True
        ):
            if name == "log.rate" or not expected > value:
                return False
            late.append(got.get((int(sid), ts), 0.0) - value >= 0.5 * (expected - value))
        if all(late):
            log.info(
                "%s: lost traffic of %s was late telemetry (counted again, it is there): not an incident",
                self.key, ", ".join(sorted(set(drops["service"]))),
            )  # fmt: skip
        return all(late)

    def _incident_alert(self, inc: Incident, slos: list[dict] | None = None) -> dict:
        return incident_alert(inc, time.time(), self._hold_s(), self.f.dashboards_url or "", slos)

    def _burning_slos(self, incidents: list[Incident], w: Window) -> dict[str, list[dict]]:
        """The SLOs the incidents' services are burning, from the SLO flow's latest evaluations
        (none when no SLO is defined or evaluated lately)."""
        services = sorted({s for i in incidents for s in i.services})
        if not services or self.settings.slo.dir is None:
            return {}
        slo = self.settings.slo
        since = w.end_ms - 3 * int(slo.interval_s * 1000) - 2 * int(slo.step_s * 1000)
        return SLOStore(self.store.client, self.store.db).burning(services, since)

    def _hold_s(self) -> float:
        return max(self.f.resolve_after_s, 4 * self.f.interval_s)

    def _alert(self, w: Window) -> int:
        now_s = time.time()  # alerts live in wall time, whatever clock decides which buckets are closed
        links = self.f.dashboards_url or ""
        notified = [i for i in self.book.open.values() if i.notified]
        burning = self._burning_slos(notified, w)
        alerts = [
            self._incident_alert(i, [x for s in i.services for x in burning.get(s, [])]) for i in notified
        ]
        # expired first: a warning resolved in this batch must not also be re-posted as firing (the
        # later post won, and the warning stayed up until its endsAt ran out)
        for x in self.book.expired_warnings(w.end_ms):
            self.unsent.append(forecast_alert(x, now_s, self._hold_s(), resolved=True, dashboards=links))
        alerts += [
            forecast_alert(x, now_s, self._hold_s(), dashboards=links) for x in self.book.warnings.values()
        ]
        resolved = list(self.unsent)
        self.unsent.clear()
        ok = self.notifier.post(alerts, resolved)
        return len(alerts) + len(resolved) if ok else 0


def _incident_row(run: str, inc: Incident) -> dict:
    end = inc.resolved_ms if inc.resolved_ms is not None else inc.last_active_ms
    return {"incident_id": inc.incident_id, "run": run, "started_at": to_dt(inc.started_ms),
            "updated_at": to_dt(max(end, inc.started_ms)), "services": inc.services, "anomalies": inc.anomalies,
            "suspects": json.dumps(inc.suspects, default=str), "alert_labels": inc.labels,
            "resolved": inc.resolved_ms is not None}  # fmt: skip


def _fmt_labels(labels: dict) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in sorted(dict(labels).items())) + "}" if labels else ""


__all__ = ["BatchReport", "ScoreEngine", "ms_of"]
