"""The score step: one micro-batch from the watermark to the newest closed bucket, exactly once.

Each batch: signals for ``[watermark, end)`` (:mod:`~forewarn.flows.signals`, log templates),
the cardinality guard, the detectors (:class:`forewarn.detectors.multiseries.MultiSeriesDetector`
plus the saturation forecaster and any trained models), feedback suppression, correlation into
incidents, then the results are written and only after them the checkpoint (new watermark and
the state of the detectors and the template miner). The batch's window is recorded first (an
intent), so a crash before the checkpoint replays exactly that window from the same state: the
inserts carry the same deduplication tokens and ClickHouse drops what had already landed, and the
rows are identical under deterministic keys anyway. Every point is scored and every anomaly stored
exactly once. Alerts are posted after the commit.

Shards: a worker with ``shard=k of shards=n`` handles the services whose ``cityHash64`` is ``k``
mod ``n``, with its own watermark and state; workers never share series.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from clickhouse_connect.driver.client import Client
from forewarn.detectors.ensemble import EnsembleParams
from forewarn.detectors.forecast import SaturationForecaster
from forewarn.detectors.multiseries import MultiSeriesDetector
from forewarn.flows import correlate, models, seasonal
from forewarn.flows.coldstart import ColdStart
from forewarn.flows.guard import CardinalityGuard
from forewarn.flows.logmining import LogMiner, fetch_logs, mine_window
from forewarn.flows.notify import Notifier, forecast_alert, incident_alert
from forewarn.flows.signals import SignalQueries, Window, compute_signals, finish, is_up_only
from forewarn.flows.store import FlowStore, decode_state, encode_state, ms_of, to_dt

from forewarn.config import Settings

log = logging.getLogger(__name__)
FORECAST_POINTS = 60
SILENT_RATES = ("red.rate", "log.rate")
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
        self.db = settings.storage.database
        self.store = FlowStore(client, self.db)
        self.queries = SignalQueries(client, self.db, int(f.counter_lookback_s * 1000))
        self.notifier = notifier
        self.step_ms = int(f.step_s * 1000)
        self.key = f"score/{run}/{self.shard}-of-{self.shards}"
        # One committed threshold for every detector run (`forewarn detect` and the flows alike).
        self.params = EnsembleParams(warmup=f.warmup_points, threshold=settings.detectors.threshold)
        self.models = models.ModelSet()
        self._resolved_sent: set[int] = set()
        self._dirty = False
        self._restore()

    # -- state ---------------------------------------------------------------------------------
    def _restore(self) -> None:
        cp = self.store.load_checkpoint(self.key)
        self.detector = MultiSeriesDetector(self.params)
        self.miner = LogMiner(self.f.max_templates)
        self.history: dict[str, deque] = {}  # saturation series: recent (ts_ms, value)
        self.forecasts: dict[str, dict] = {}  # active capacity forecasts by series id
        self.cold = ColdStart(self.f.cold_start_points)
        self.rates: dict[str, list] = {}  # service-level rate series: [name, service, last bucket]
        self.restored = cp is not None
        if cp is None:
            now = self.clock() * 1000 - self.f.start_lookback_s * 1000
            self.watermark = int(now // self.step_ms * self.step_ms)
            log.info("%s: no checkpoint, starting at %s", self.key, to_dt(self.watermark).isoformat())
        else:
            self.watermark, blob = cp
            meta, arrays = decode_state(blob)
            det = {k[4:]: v for k, v in arrays.items() if k.startswith("det/")}
            self.detector = MultiSeriesDetector.restore(meta["detector"], det)
            self.miner = LogMiner.from_state(meta["miner"].encode(), self.f.max_templates)
            self.history = {
                k: deque(map(tuple, v), maxlen=FORECAST_POINTS) for k, v in meta["history"].items()
            }
            self.forecasts = meta["forecasts"]
            cold = {k[5:]: v for k, v in arrays.items() if k.startswith("cold/")}
            self.cold = ColdStart.restore(meta["cold"], cold, self.f.cold_start_points)
            self.rates = meta.get("rates", {})
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
        meta, arrays = self.detector.snapshot()
        cold_ids, cold = self.cold.snapshot()
        state = {
            "detector": meta,
            "miner": self.miner.state().decode(),
            "history": {k: list(v) for k, v in self.history.items()},
            "forecasts": self.forecasts,
            "cold": cold_ids,
            "rates": self.rates,
        }
        return encode_state(
            state, {**{f"det/{k}": v for k, v in arrays.items()}, **{f"cold/{k}": v for k, v in cold.items()}}
        )

    def start_at(self, ms: int) -> None:
        """Where a fresh engine starts (a restored one keeps its watermark)."""
        if not self.restored:
            self.watermark = int(ms // self.step_ms * self.step_ms)

    # -- the loop ------------------------------------------------------------------------------
    def closed_until(self) -> int:
        """End of the newest bucket that is past the lateness allowance."""
        edge = self.clock() * 1000 - self.f.lateness_s * 1000
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
        w = self.next_window(until_ms)
        return None if w is None else self.process(w, send_alerts)

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
        sig, hist = compute_signals(self.queries, w)
        log_sig, records, first = mine_window(self.miner, fetch_logs(self.queries, w), w)
        sig = finish([sig, log_sig]) if len(log_sig) else sig
        sig = self._fill_silence(sig, w)
        sig, new_series, rejected = self.guard.admit(sig, w.end_ms)
        rep.points, rep.series = len(sig), int(sig["series_id"].nunique()) if len(sig) else 0
        rep.rejected_series = sum(r[3] for r in rejected)
        self.store.write_series(new_series, token)
        self.store.write_cardinality([[to_dt(r[0]), *r[1:]] for r in rejected], token)
        self.store.write_signals(sig, token)
        self.store.write_latency_hist(hist, token)
        self.store.write_log_templates(records, first, token)

        detected_at = to_dt(self.clock() * 1000)
        rows = self._detect(sig, detected_at) + self._forecast(sig, w, detected_at)
        rows += self._models(sig, detected_at)
        rep.suppressed = self._apply_feedback(rows, w)
        since = w.start_ms - int(self.f.correlation_window_s * 1000)
        open_inc = self.store.open_incidents(self.run, since)
        touched = correlate.assign(rows, open_inc, self.run, int(self.f.correlation_window_s * 1000))
        incidents = self._finish_incidents(touched, open_inc, rows, w)
        self.store.write_anomalies(
            [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows], token
        )
        self.store.write_incidents(incidents, token)
        self.store.commit_checkpoint(self.key, w.end_ms, self._state(), self.clock() * 1000)
        self.watermark = w.end_ms
        self.replay_end = None
        rep.anomalies = sum(r["kind"] == "deviation" for r in rows)
        rep.forecasts = sum(r["kind"] == "forecast" for r in rows)
        rep.incidents = sorted(int(i["incident_id"]) for i in incidents)
        if send_alerts and self.notifier is not None:
            rep.alerts_sent = self._alert(w)
        rep.seconds = time.perf_counter() - t_start
        return rep

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

    # -- detectors -----------------------------------------------------------------------------
    def _row(self, sid: int, ts_ms: float, meta: dict, value: float, expected: float, score: float,
             detector: str, kind: str, explanation: str, detected_at, version: int = 0) -> dict:  # fmt: skip
        return {
            "anomaly_id": correlate.stable_id(sid, int(ts_ms), detector),
            "run": self.run,
            "ts": to_dt(ts_ms),
            "_ts_ms": int(ts_ms),
            "detected_at": detected_at,
            "series_id": int(sid),
            "name": meta["name"],
            "service": meta["service"],
            "labels": meta["labels"],
            "value": float(value),
            "expected": float(expected) if math.isfinite(expected) else float("nan"),
            "score": float(score),
            "detector": detector,
            "kind": kind,
            "explanation": explanation,
            "incident_id": 0,
            "model_version": version,
        }

    def _fill_silence(self, sig: pd.DataFrame, w: Window) -> pd.DataFrame:
        """A service that stops sending has no points, which no detector can see: its service-level
        request and log rates read 0 in the buckets without points, for up to ``SILENCE`` buckets
        after its last real point (then a retired service falls quiet for good)."""
        seen: dict[str, set[int]] = {}
        if len(sig):
            sel = sig[sig["name"].isin(SILENT_RATES) & sig["labels"].map(lambda x: not x)]
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
                    fill.append((int(sid), ts, 0.0, name, service, {}))
            if last is None or w.end_ms - last > SILENCE * w.step_ms:
                self.rates.pop(sid)
            else:
                entry[2] = last
        if not fill:
            return sig
        zeros = pd.DataFrame(fill, columns=["series_id", "ts", "value", "name", "service", "labels"])
        out = pd.concat([sig, zeros], ignore_index=True) if len(sig) else zeros
        return out.sort_values(["ts", "series_id"], kind="stable").reset_index(drop=True)

    def _detect(self, sig: pd.DataFrame, detected_at) -> list[dict]:
        if sig.empty:
            return []
        ids = sig["series_id"].astype(str).tolist()
        found = self.detector.update(ids, sig["ts"].to_numpy(float), sig["value"])
        meta = sig.drop_duplicates("series_id").set_index("series_id")[["name", "service", "labels"]]
        rows = self._cold(sig, ids, meta, detected_at)
        for a in found:
            sid = int(a.series_id)
            m = meta.loc[sid]
            ex = a.explanation
            if is_up_only(m["name"]) and ex.observed <= ex.expected:
                continue
            what = f"{m['service']} {m['name']}{_fmt_labels(m['labels'])}"
            rows.append(
                self._row(
                    sid,
                    a.timestamp,
                    m,
                    a.value,
                    ex.expected,
                    a.score,
                    f"ensemble:{ex.component}",
                    "deviation",
                    f"{what}: {ex.text}",
                    detected_at,
                )
            )
        return rows

    def _cold(self, sig: pd.DataFrame, ids: list[str], meta: pd.DataFrame, detected_at) -> list[dict]:
        """Gross deviations of series with fewer than ``warmup`` points (see :mod:`.coldstart`)."""
        seen = self.detector.core.state["seen"]
        rows = np.fromiter((self.detector.index[i] for i in ids), dtype=np.int64, count=len(ids))
        # points each series had before this batch: seen now minus this batch's points, plus rank
        sid = sig["series_id"].to_numpy()
        rank = pd.Series(sid).groupby(sid).cumcount().to_numpy()
        n_batch = pd.Series(sid).groupby(sid).transform("size").to_numpy()
        before = seen[rows] - n_batch + rank
        values = sig["value"].to_numpy(float)
        hits = self.cold.check(ids, sig["name"].tolist(), values, before < self.params.warmup)
        out = []
        ts = sig["ts"].to_numpy()
        names = sig["name"].to_numpy()
        for i, med, thr, score in hits:
            m = meta.loc[int(sid[i])]
            v = values[i]
            text = (
                f"{m['service']} {names[i]}{_fmt_labels(m['labels'])}: cold start: {v:.4g} departs from the "
                f"median {med:.4g} of its first {min(int(before[i]), 30)} points by more than {thr:.4g}"
            )
            out.append(
                self._row(int(sid[i]), ts[i], m, v, med, score, "coldstart", "deviation", text, detected_at)
            )
        return out

    def _limit(self, name: str) -> float | None:
        for pattern, limit in self.f.saturation_limits.items():
            if fnmatch.fnmatchcase(name, pattern):
                return float(limit)
        return None

    def _forecast(self, sig: pd.DataFrame, w: Window, detected_at) -> list[dict]:
        """Time-to-limit for saturation series at the end of the batch; warns within the horizon."""
        rows: list[dict] = []
        if sig.empty:
            return rows
        names = sig["name"].unique()
        limits = {n: lim for n in names if (lim := self._limit(n)) is not None}
        if not limits:
            return rows
        sat = sig[sig["name"].isin(list(limits))]
        meta = sat.drop_duplicates("series_id").set_index("series_id")[["name", "service", "labels"]]
        for sid, g in sat.groupby("series_id", sort=True):
            key = str(sid)
            h = self.history.setdefault(key, deque(maxlen=FORECAST_POINTS))
            m = meta.loc[sid]
            limit = limits[m["name"]]
            fc = SaturationForecaster(limit, window=FORECAST_POINTS, warn_within_s=self.f.forecast_horizon_s)
            what = f"{m['service']} {m['name']}{_fmt_labels(m['labels'])}"
            # one forecast per point, so the result does not depend on how points are batched
            for ts_ms, v in zip(g["ts"].astype(int).tolist(), g["value"].astype(float).tolist(), strict=True):
                h.append((ts_ms, v))
                if len(h) < 6:
                    continue
                arr = np.array(h, dtype=float)
                if np.median(arr[:, 1]) > 1.5 * limit:  # not measured in that unit: no forecast
                    continue
                f = fc.forecast([key], arr[None, :, 0] / 1000.0, arr[None, :, 1])[0]
                if not (f.eta_s <= self.f.forecast_horizon_s and math.isfinite(f.eta_high_s)):
                    self.forecasts.pop(key, None)
                    continue
                text = f.text(what)
                score = 1.0 - min(f.eta_s / self.f.forecast_horizon_s, 1.0) * 1e-3
                rows.append(
                    self._row(
                        int(sid), ts_ms, m, v, limit, score, "saturation", "forecast", text, detected_at
                    )
                )
                prev = self.forecasts.get(key)
                self.forecasts[key] = {
                    "service": m["service"], "name": m["name"], "labels": dict(m["labels"]), "explanation": text,
                    "eta_s": round(f.eta_s), "first_s": prev["first_s"] if prev else ts_ms / 1000.0,
                    "last_s": ts_ms / 1000.0,
                }  # fmt: skip
        return rows

    def _models(self, sig: pd.DataFrame, detected_at) -> list[dict]:
        """Trained models (loaded when ``train`` stores a new version, without a restart)."""
        self.models.refresh(self.store)
        rows = self._seasonal(sig, detected_at)
        for service, ts_ms, score, text, version in self.models.score(sig):
            sid = correlate.stable_id("iforest", service)
            meta = {"name": "red.multivariate", "service": service, "labels": {}}
            rows.append(self._row(sid, ts_ms, meta, score, 0.0, 0.9999, "iforest", "deviation",
                                  f"{service}: {text}", detected_at, version))  # fmt: skip
        return rows

    def _seasonal(self, sig: pd.DataFrame, detected_at) -> list[dict]:
        base = self.models.seasonal
        if base is None or sig.empty:
            return []
        rows = []
        for i, med, z in base.hits(sig):
            r = sig.iloc[i]
            m = {"name": r["name"], "service": r["service"], "labels": r["labels"]}
            text = (
                f"{r['service']} {r['name']}{_fmt_labels(r['labels'])}: {r['value']:.4g} is unusual for this hour "
                f"of the week (usual ~{med:.4g}, {z:+.1f} robust sd)"
            )
            score = 1.0 - 1e-4 * seasonal.K / max(abs(z), seasonal.K)
            rows.append(self._row(int(r["series_id"]), r["ts"], m, r["value"], med, score, "seasonal", "deviation",
                                  text, detected_at, base.version))  # fmt: skip
        return rows

    # -- incidents and alerts ------------------------------------------------------------------
    def _finish_incidents(
        self, touched: dict[int, dict], open_inc: list[dict], rows: list[dict], w: Window
    ) -> list[dict]:
        out = []
        # An incident's effects reach callers and callees in adjacent buckets (exporters batch on
        # their own clocks), so its suspects settle over a few buckets before the labels are fixed.
        hold_ms = self.f.incident_hold_buckets * self.step_ms
        if touched:
            ids = list(touched)
            past = self.store.incident_anomalies(self.run, ids)
            new = pd.DataFrame([r for r in rows if r["incident_id"] in touched])
            allan = pd.concat([past, new], ignore_index=True) if len(past) else new
            services = sorted(set(allan["service"]))
            start = min(ms_of(i["started_at"]) for i in touched.values()) - int(
                self.f.correlation_window_s * 1000
            )
            edges = correlate.call_edges(self.store.client, self.db, services, start, w.end_ms)
            for iid, inc in touched.items():
                sus = correlate.rank_suspects(
                    allan[allan["incident_id"] == iid].drop_duplicates("anomaly_id"), edges
                )
                if sus:  # which attribute values of the top suspect carry the deviation
                    top = sus[0]
                    top["attributes"] = top.get("attributes") or {}
                    top["attribute_values"] = correlate.attribute_suspects(
                        self.store.client, self.db, top["service"], top["operation"],
                        ms_of(inc["started_at"]), w.end_ms, int(self.f.correlation_window_s * 1000) * 5,
                    )  # fmt: skip
                inc["suspects"] = sus
                if not inc.get("alert_labels") and w.end_ms - ms_of(inc["started_at"]) >= hold_ms:
                    inc["alert_labels"] = incident_alert(inc, sus, 0, 0)["labels"]
                out.append(inc)
        for inc in open_inc:  # quiet incidents: fix labels after the hold, resolve after the timeout
            iid = int(inc["incident_id"])
            if iid in touched:
                continue
            changed = False
            if not inc.get("alert_labels") and w.end_ms - ms_of(inc["started_at"]) >= hold_ms:
                inc["alert_labels"] = incident_alert(inc, _json(inc["suspects"]), 0, 0)["labels"]
                changed = True
            if w.end_ms - ms_of(inc["updated_at"]) >= self.f.resolve_after_s * 1000:
                inc["resolved"] = True
                changed = True
            if changed:
                inc["suspects"] = _json(inc["suspects"])
                out.append(inc)
        for inc in out:
            if not isinstance(inc["suspects"], str):
                inc["suspects"] = _dumps(inc["suspects"])
            inc["updated_at"] = inc.get("updated_at") or inc["started_at"]
        return out

    def _alert(self, w: Window) -> int:
        now_s = time.time()  # alerts live in wall time, whatever clock decides which buckets are closed
        hold_s = max(self.f.resolve_after_s, 4 * self.f.interval_s)
        since = w.end_ms - int(self.f.resolve_after_s * 1000) - 2 * self.step_ms
        alerts, resolved = [], []
        for inc in self.store.open_incidents(self.run, since) + self._just_resolved(since):
            if not inc.get("alert_labels"):
                continue
            a = incident_alert(inc, _json(inc["suspects"]), now_s, hold_s)
            (resolved if inc["resolved"] else alerts).append(a)
        for key, fc in list(self.forecasts.items()):
            if (
                now_s - fc["last_s"] > self.f.resolve_after_s
                and w.end_ms / 1000.0 - fc["last_s"] > self.f.resolve_after_s
            ):
                resolved.append(forecast_alert(fc, now_s, hold_s, resolved=True))
                self.forecasts.pop(key)
            else:
                alerts.append(forecast_alert(fc, now_s, hold_s))
        ok = self.notifier.post(alerts, resolved)
        return len(alerts) + len(resolved) if ok else 0

    def _just_resolved(self, since_ms: int) -> list[dict]:
        sql = f"""SELECT * FROM {self.store.t("incidents")} FINAL WHERE run = {{run:String}} AND resolved
                  AND updated_at >= fromUnixTimestamp64Milli({{s:Int64}}) AND length(alert_labels) > 0"""
        res = self.store.client.query(
            sql, parameters={"run": self.run, "s": since_ms - int(self.f.resolve_after_s * 1000)}
        )
        out = [dict(zip(res.column_names, r, strict=True)) for r in res.result_rows]
        sent = self._resolved_sent
        if len(sent) > 10_000:  # bounded: older resolutions are outside the query window anyway
            sent.clear()
        fresh = [i for i in out if int(i["incident_id"]) not in sent]
        sent.update(int(i["incident_id"]) for i in fresh)
        return fresh


def _fmt_labels(labels: dict) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in sorted(dict(labels).items())) + "}" if labels else ""


def _json(v):
    import json

    return json.loads(v) if isinstance(v, str) and v else (v or [])


def _dumps(v) -> str:
    import json

    return json.dumps(v, default=str)
