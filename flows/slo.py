"""The SLO flow: good/total events counted once per short bucket into ``forewarn_slo_buckets``,
then burn rates over the SRE workbook's windows, Sloth-labelled alerts and a budget forecast.

Each SLI advances its own watermark (a new or changed SLO first backfills its window, at most
``slo.max_batch_buckets`` per run); buckets are written with deterministic deduplication tokens
before the checkpoint, so a run cut short is replayed without counting twice. An SLO is evaluated
at its watermark: error ratio ``1 - good/total`` over each window, burn rate = error ratio / budget.

Alerts (Sloth's defaults, the workbook's table): *page* when the burn rate is over 14.4 on both
1 h and 5 min, or over 6 on both 6 h and 30 min; *ticket* when over 3 on both 1 d and 2 h, or
over 1 on both 3 d and 6 h. The short window makes an alert resolve soon after the burn stops.

>>> rules = [r for r in BURN_RULES if r.severity == "page"]
>>> [(r.factor, r.long_s // 60, r.short_s // 60) for r in rules]
[(14.4, 60, 5), (6.0, 360, 30)]
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from forewarn.alerts.model import format_time
from forewarn.detectors.forecast import human_duration
from forewarn.flows.notify import Notifier
from forewarn.flows.slo_forecast import FORECAST_STEP_MS, Forecast, forecast_counts
from forewarn.flows.slo_spec import SLO
from forewarn.flows.slo_store import SLOStore
from forewarn.flows.store import FlowStore

from forewarn.config import Settings

log = logging.getLogger(__name__)
H = 3600
FORECAST_ALERTNAME = "SLOErrorBudgetForecast"


@dataclass(frozen=True)
class BurnRule:
    severity: str
    factor: float
    long_s: int
    short_s: int


BURN_RULES = (
    BurnRule("page", 14.4, 1 * H, 5 * 60),
    BurnRule("page", 6.0, 6 * H, 30 * 60),
    BurnRule("ticket", 3.0, 24 * H, 2 * H),
    BurnRule("ticket", 1.0, 72 * H, 6 * H),
)
# every window a rule reads, shortest first; the SLO window comes after them
ALERT_WINDOWS = tuple(sorted({w for r in BURN_RULES for w in (r.long_s, r.short_s)}))


@dataclass
class SLOStatus:
    """One SLO at one moment: SLI and budget over its window, burn rates, firing severities."""

    slo: SLO
    at_ms: int
    good: float
    total: float
    burn: dict[int, float]  # window seconds -> burn rate (nan: no events)
    firing: list[str] = field(default_factory=list)
    forecast: Forecast | None = None

    @property
    def sli(self) -> float:
        return self.good / self.total if self.total > 0 else float("nan")

    @property
    def budget_remaining(self) -> float:
        """Share of the window's error budget left (negative once overspent)."""
        if self.total <= 0:
            return 1.0
        return 1.0 - (self.total - self.good) / (self.slo.budget * self.total)


def burn_rates(slo: SLO, sums: list[tuple[float, float]]) -> dict[int, float]:
    out = {}
    for w, (g, n) in zip(ALERT_WINDOWS, sums, strict=False):
        out[w] = (n - g) / n / slo.budget if n > 0 else float("nan")
    return out


def firing(burn: dict[int, float]) -> list[str]:
    """Severities whose rule holds (both windows over the factor), page first.

    >>> firing({300: 20.0, 3600: 15.0, 1800: 0.0, 21600: 0.0, 7200: 0.0, 86400: 0.0, 259200: 0.0})
    ['page']
    """
    out = []
    for r in BURN_RULES:
        lo, sh = burn.get(r.long_s, math.nan), burn.get(r.short_s, math.nan)
        if lo > r.factor and sh > r.factor and r.severity not in out:
            out.append(r.severity)
    return out


class SLOEngine:
    """Counts, evaluates and alerts the SLOs of one store. ``clock`` (seconds) decides which
    buckets are closed and stamps the alerts; tests pass their own."""

    def __init__(
        self, client, settings: Settings, slos: list[SLO], notifier: Notifier | None = None,
        clock=time.time, run: str = "live", forecast: bool = True,
    ):  # fmt: skip
        self.settings, self.cfg, self.slos = settings, settings.slo, slos
        self.notifier, self.clock = notifier, clock
        self.db = settings.storage.database
        self.flow_store = FlowStore(client, self.db)
        self.store = SLOStore(client, self.db, int(settings.flows.counter_lookback_s * 1000))
        self.step_ms = int(self.cfg.step_s * 1000)
        self.key = f"slo/{run}"
        self.forecast = forecast
        self.status: dict[str, SLOStatus] = {}
        self.failed: dict[str, str] = {}  # SLO id -> why the store refused its query (retried every run)
        cp = self.flow_store.load_checkpoint(self.key)
        state = json.loads(cp[1]) if cp else {}
        self.watermarks: dict[str, int] = {k: int(v) for k, v in state.get("wm", {}).items()}
        self.active: dict[str, dict] = state.get("alerts", {})

    def closed_until(self) -> int:
        edge = self.clock() * 1000 - self.cfg.lateness_s * 1000
        return int(edge // self.step_ms * self.step_ms)

    def start_at(self, ms: int) -> None:
        """Where SLIs without a watermark start (default: one window back)."""
        for s in self.slos:
            self.watermarks.setdefault(s.sli_key, int(ms // self.step_ms * self.step_ms))

    # -- counting --------------------------------------------------------------------------------
    def _window(self, s: SLO, until_ms: int) -> tuple[int, int]:
        """The buckets ``[watermark, end)`` this run counts for ``s`` (empty when caught up)."""
        wm = self.watermarks.get(s.sli_key)
        if wm is None:  # a new SLO: its whole window first (a calendar month may have 31 days)
            first = min(until_ms - s.window.days * 86_400_000, s.window.start_ms(until_ms))
            wm = first // self.step_ms * self.step_ms
            self.watermarks[s.sli_key] = wm
        return wm, min(until_ms, wm + self.cfg.max_batch_buckets * self.step_ms)

    def _count(self, sels: list, t0: int, t1: int) -> dict:
        """Events of the selectors in ``[t0, t1)``: one query per source table for all of them;
        if the store refuses it, one selector at a time, so a refused one is found and the others
        are still counted (a refused selector maps to its exception)."""
        try:
            return dict(zip(sels, self.store.counts_many(sels, t0, t1, self.step_ms), strict=True))
        except Exception:
            if len(sels) == 1:
                raise
        out: dict = {}
        for sel in sels:
            try:
                out[sel] = self.store.counts(sel, t0, t1, self.step_ms)
            except Exception as e:
                out[sel] = e
        return out

    def _fail(self, s: SLO, e: BaseException) -> None:
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if self.failed.get(s.id) != msg:
            log.error("SLO %s (%s) not counted: %s", s.id, s.file or "-", msg)
        self.failed[s.id] = msg

    def run_once(self, until_ms: int | None = None, send_alerts: bool = True) -> dict[str, SLOStatus] | None:
        """Count every SLI up to ``until_ms`` (default: the newest closed bucket), at most one
        batch each (SLOs with the same batch share one query per source table); then evaluate
        and alert. None when nothing moved. An SLO whose query the store refuses is logged and
        retried next run; the others go on."""
        until = self.closed_until() if until_ms is None else until_ms // self.step_ms * self.step_ms
        groups: dict[tuple[int, int], list[SLO]] = {}
        for s in self.slos:
            wm, end = self._window(s, until)
            if end > wm:
                groups.setdefault((wm, end), []).append(s)
        moved = []
        for (wm, end), group in groups.items():
            sels = list(dict.fromkeys(x for s in group for x in (s.total, s.good or s.bad)))
            try:
                counts = self._count(sels, wm, end)
            except Exception as e:
                for s in group:
                    self._fail(s, e)
                continue
            for s in group:
                total, other = counts[s.total], counts[s.good or s.bad]
                if isinstance(total, Exception) or isinstance(other, Exception):
                    self._fail(s, total if isinstance(total, Exception) else other)
                    continue
                ts = sorted(set(total) | set(other))
                n = [total.get(t, 0.0) for t in ts]
                o = [other.get(t, 0.0) for t in ts]
                g = o if s.good is not None else [a - b for a, b in zip(n, o, strict=True)]
                good = [max(0.0, min(a, b)) for a, b in zip(g, n, strict=True)]
                self.store.write_buckets(s.sli_key, ts, good, n, f"slo/{s.sli_key}/{wm}-{end}")
                self.watermarks[s.sli_key] = end
                self.failed.pop(s.id, None)
                moved.append(s)
        if not moved:
            return None
        keys, ids = {s.sli_key for s in self.slos}, {s.id for s in self.slos}
        self.watermarks = {
            k: v for k, v in self.watermarks.items() if k in keys
        }  # SLOs removed from the files
        self.active = {
            k: v for k, v in self.active.items() if k.rsplit("/", 1)[0] in ids
        }  # expire at the router
        state = {"wm": self.watermarks, "alerts": self.active}
        now_ms = int(self.clock() * 1000)
        self.flow_store.commit_checkpoint(self.key, max(self.watermarks.values()), json.dumps(state), now_ms)
        statuses = self.evaluate(moved)
        self.store.write_status([status_row(st) for st in statuses.values()],
                                f"slo-status/{self.key}/{json.dumps(self.watermarks, sort_keys=True)}")  # fmt: skip
        if send_alerts:
            self._alert(statuses)
        return statuses

    def run_until(self, end_ms: int, send_alerts: bool = False) -> list[dict[str, SLOStatus]]:
        out = []
        while (r := self.run_once(end_ms, send_alerts)) is not None:
            out.append(r)
        return out

    # -- evaluating ------------------------------------------------------------------------------
    def evaluate(self, slos: list[SLO] | None = None) -> dict[str, SLOStatus]:
        """Status of each SLO at its watermark (one query for all of them, one for the forecasts)."""
        slos = self.slos if slos is None else slos
        out = evaluate(self.store, slos, self.watermarks, self.cfg.forecast_horizon_s, self.forecast)
        self.status.update(out)
        return out

    def _alert(self, statuses: dict[str, SLOStatus]) -> None:
        live_edge = self.closed_until() - 2 * self.step_ms
        now_s = self.clock()
        alerts, resolved = [], []
        for st in statuses.values():
            if st.at_ms < live_edge or not st.slo.alerting:
                continue  # catching up: history does not page
            want = {f"{st.slo.id}/{sev}": sev for sev in st.firing}
            if st.forecast is not None and st.forecast.warns and st.forecast.eta_s > 0:
                want[f"{st.slo.id}/forecast"] = "forecast"
            for key, sev in want.items():
                first = self.active.setdefault(key, {"since_s": st.at_ms / 1000.0})["since_s"]
                alerts.append(slo_alert(st, sev, first, now_s + self.cfg.hold_s))
            for key in [k for k in self.active if k.startswith(st.slo.id + "/") and k not in want]:
                sev = key.rsplit("/", 1)[1]
                resolved.append(slo_alert(st, sev, self.active.pop(key)["since_s"], now_s))
        if self.notifier is not None and (alerts or resolved):
            self.notifier.post(alerts, resolved)


def evaluate(
    store: SLOStore, slos: list[SLO], at: dict[str, int], horizon_s: float, forecast: bool = True
) -> dict[str, SLOStatus]:
    """Status of each SLO at ``at[sli_key]`` (epoch ms); SLOs without a time are skipped."""
    slos = [s for s in slos if s.sli_key in at]
    if not slos:
        return {}
    ends = {s.sli_key: at[s.sli_key] for s in slos}
    # one end per query: SLOs at different watermarks are grouped by it
    out: dict[str, SLOStatus] = {}
    for end in sorted(set(ends.values())):
        group = [s for s in slos if ends[s.sli_key] == end]
        starts = {
            s.sli_key: [end - w * 1000 for w in ALERT_WINDOWS] + [s.window.start_ms(end)] for s in group
        }
        sums = store.window_sums(starts, end)
        for s in group:
            per = sums[s.sli_key]
            burn = burn_rates(s, per[:-1])
            g, n = per[-1]
            out[s.id] = SLOStatus(s, end, g, n, burn, firing(burn))
        if forecast:
            _forecasts(store, group, end, horizon_s, out)
    return out


def _forecasts(
    store: SLOStore, group: list[SLO], end: int, horizon_s: float, out: dict[str, SLOStatus]
) -> None:
    """Hourly points of each SLO over its window, the forecaster's two days and (for the traffic
    profile of calendar windows) up to two weeks before: one query for the group."""
    span = max(s.window.days + 14 for s in group) * 86_400_000
    start = (end - span) // FORECAST_STEP_MS * FORECAST_STEP_MS
    df = store.series([s.sli_key for s in group], start, end, FORECAST_STEP_MS)
    grid = np.arange(start, end, FORECAST_STEP_MS, dtype=np.int64)
    ends = np.minimum(grid + FORECAST_STEP_MS, end)  # the last hour may be partial
    for s in group:
        d = df[df["sli_key"] == s.sli_key]
        good, total = np.zeros(len(grid)), np.zeros(len(grid))
        idx = ((d["ts"].to_numpy(dtype=np.int64) - start) // FORECAST_STEP_MS).astype(int)
        good[idx], total[idx] = d["good"].to_numpy(float), d["total"].to_numpy(float)
        out[s.id].forecast = forecast_counts(s, ends, good, total, end, horizon_s)


def status_row(st: SLOStatus) -> list:
    """A row of ``forewarn_slo_status``."""
    f = st.forecast
    eta = (f.eta_s, f.low_s, f.high_s) if f is not None else (math.nan,) * 3
    return [st.slo.id, datetime.fromtimestamp(st.at_ms / 1000, tz=UTC), st.slo.service, st.slo.sli_key, st.slo.objective,
            st.good, st.total, st.budget_remaining, {window_name(w): b for w, b in st.burn.items()},
            st.firing, *eta]  # fmt: skip


def window_name(seconds: int) -> str:
    """``5m``, ``1h``, ``3d``: the alert windows' names in stored rows and dashboards.

    >>> [window_name(w) for w in ALERT_WINDOWS]
    ['5m', '30m', '1h', '2h', '6h', '1d', '3d']
    """
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % n == 0:
            return f"{seconds // n}{unit}"
    return f"{seconds}s"


def slo_alert(st: SLOStatus, severity: str, starts_s: float, ends_s: float) -> dict:
    """An Alertmanager v2 alert with Sloth's labels (``sloth_id``, ``sloth_service``,
    ``sloth_slo``, ``sloth_severity``), so routing trees written for Sloth route it unchanged."""
    s = st.slo
    labels = {
        **s.labels,
        "sloth_id": s.id,
        "sloth_service": s.service,
        "sloth_slo": s.name,
        "source": "forewarn",
    }
    burn = ", ".join(f"{human_duration(w)} {b:.1f}x" for w, b in st.burn.items() if math.isfinite(b))
    if severity == "forecast":
        labels.update(alertname=FORECAST_ALERTNAME, sloth_severity="warning", severity="warning")
        f = st.forecast
        summary = f"{s.service} {s.name} SLO error budget runs out {f.text() if f else ''}"
        desc = f"{st.budget_remaining:.1%} of the budget is left; at the present burn it runs out before the window ends."
    else:
        extra = s.page_labels if severity == "page" else s.ticket_labels
        labels.update({"alertname": s.alertname, "severity": "critical" if severity == "page" else "warning",
                       **extra, "sloth_severity": severity})  # fmt: skip
        summary = f"{s.service} {s.name} SLO error budget burn rate is over expected."
        desc = f"({severity}) burn rates: {burn}; {st.budget_remaining:.1%} of the {s.window.label()} budget left."
    ann = {"summary": summary, "description": desc, "title": f"({severity}) {summary}",
           "objective": f"{s.objective * 100:g}%", **s.annotations}  # fmt: skip
    return {
        "labels": {k: str(v) for k, v in labels.items()},
        "annotations": ann,
        "startsAt": format_time(starts_s),
        "endsAt": format_time(max(ends_s, starts_s + 0.001)),
    }
