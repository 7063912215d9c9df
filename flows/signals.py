"""Signals: the series the detectors watch, computed in ClickHouse from the OTel exporter tables.

Each query aggregates one closed time window ``[start, end)`` into fixed buckets of ``step``
milliseconds, so the score flow computes every point exactly once as its watermark advances.
We use incremental queries rather than materialized views because two of the signals need state
that crosses insert blocks: a cumulative counter's rate needs the previous point of the series
(which sits in an earlier insert), and exact percentiles need every span of the bucket, which
arrive spread over many inserts. A look-back of ``counter_lookback_ms`` before the window gives
the window functions the previous point.

Series naming (``name`` + ``labels``; ``series_id`` is a stable hash of name, service and labels):

* gauges: ``<metric>`` (last value in the bucket); non-monotonic cumulative sums likewise;
* monotonic sums: ``<metric>:rate`` per second (delta or cumulative; counter resets handled);
* histograms: ``<metric>:p50|p95|p99`` (interpolated in the buckets) and ``<metric>:rate``; when
  the points carry an HTTP or gRPC status code, also ``<metric>:error_ratio`` over the other
  attributes (server errors of all the requests: the status-split rates alone are sparse);
* summaries: ``<metric>:q<quantile>``;
* traces: ``red.rate|red.error_ratio|red.p50|red.p95|red.p99`` per service (entry spans: server,
  consumer or root) and per operation (labels ``operation`` = span name and ``span.kind``, all
  spans of the service: a server operation counts what the service receives, a client one what
  it calls);
  ``latency.shift``: distance of a service's latency distribution from its recent past;
* logs (see :mod:`forewarn.flows.logmining`): ``log.rate``, ``log.error_rate``,
  ``log.template_rate`` (label ``template_id``), ``log.new_templates``.

Besides its value each point carries what the value was computed from, so count statistics can
judge it (see :mod:`forewarn.detectors.coldstart`): ``n`` (events, requests, spans or log records
behind it), ``k`` (of those, the errors, for ratios and templates), ``dt`` (seconds of exposure,
for rates), ``family`` (traffic, ratio, latency, quantile, shift, novelty, template, counter,
gauge, and memory: the resident memory of a process or container, ``MEMORY_METRICS``), ``direction`` (+1: only a rise is bad, -1: only a fall, 0: both) and ``unit`` (``ms`` for
the span percentiles, the metric's own unit otherwise: a percentile in a unit of time is latency,
one of bytes is not). A traffic surge is not an incident; lost traffic is.

>>> histogram_quantile([0, 10, 0], [1.0, 2.0], 0.5)
1.5
>>> round(histogram_quantile([5, 5], [10.0], 0.99), 3)
10.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from clickhouse_connect.driver.client import Client
from forewarn.flows.store import FlowStore

QUANTILES = (0.5, 0.95, 0.99)
LAT_BINS = 80  # half-octave bins of span duration in ns: bin k covers [2^(k/2), 2^((k+1)/2))
SIGNAL_COLUMNS = ["series_id", "ts", "value", "name", "service", "labels"]  # what is stored
COUNT_COLUMNS = ["n", "k", "dt", "family", "direction", "unit"]  # what the detectors also get
COLUMNS = [*SIGNAL_COLUMNS, *COUNT_COLUMNS]
USAGE_METRICS = ("system.filesystem.usage", "system.memory.usage", "system.paging.usage")
# a process's (or container's) resident memory: family ``memory``, where cold start looks for a leak
# a process's resident memory (semconv), a container's, and the runtimes' own where the SDK reports
# no process memory: Go's runtime memory (total mapped less released), .NET's working set
MEMORY_METRICS = (
    "process.memory.usage",
    "container.memory.usage",
    "container.memory.working_set",
    "go.memory.used",
    "dotnet.process.memory.working_set",
)
DIRECTION = {
    "traffic": -1,
    "errors": 1,
    "ratio": 1,
    "latency": 1,
    "quantile": 1,
    "shift": 1,
    "novelty": 1,
    "template": 1,
    "memory": 1,
}
# request histograms whose count is the service's traffic (stable and older HTTP/RPC semconv)
REQUEST_METRICS = frozenset(
    {
        "http.server.request.duration",
        "http.server.duration",
        "rpc.server.duration",
        "rpc.server.call.duration",
    }
)
# request-level metrics (durations, body sizes, active requests; server and client) of the
# requests and calls a traced service's spans also show
SPAN_COVERED = ("http.server.", "http.client.", "rpc.server.", "rpc.client.", "db.client.")
LATENCY_PREFIXES = ("http.", "rpc.", "db.", "messaging.", "graphql.", "faas.")  # OTel semconv namespaces
TIME_UNITS = ("ns", "us", "ms", "s", "min", "h")  # UCUM units of durations: their percentiles are latency
# attributes that split a request histogram by outcome, and the values that are server errors
STATUS_KEYS = ("http.response.status_code", "http.status_code", "rpc.grpc.status_code")
GRPC_SERVER_ERRORS = frozenset({"2", "4", "12", "13", "14", "15"})
NAN = float("nan")


@dataclass(frozen=True)
class Window:
    """A closed interval of event time, in epoch milliseconds, cut into ``step_ms`` buckets."""

    start_ms: int
    end_ms: int
    step_ms: int
    shard: int = 0
    shards: int = 1

    @property
    def step_s(self) -> float:
        return self.step_ms / 1000.0

    def params(self, lookback_ms: int = 0) -> dict[str, int]:
        return {
            "t0": self.start_ms,
            "t1": self.end_ms,
            "lb": self.start_ms - lookback_ms,
            "step": self.step_ms,
            "shard": self.shard,
            "shards": self.shards,
        }


def _bucket(col: str) -> str:
    return f"intDiv(toUnixTimestamp64Milli({col}), {{step:Int64}}) * {{step:Int64}}"


def _range(col: str, lower: str = "t0") -> str:
    return (
        f"{col} >= fromUnixTimestamp64Milli({{{lower}:Int64}}) AND {col} < fromUnixTimestamp64Milli({{t1:Int64}})"
        " AND cityHash64(ServiceName) % {shards:UInt64} = {shard:UInt64}"
    )


def histogram_quantile(counts: Sequence[float], bounds: Sequence[float], qq: float) -> float:
    """Quantile from explicit-bucket counts, linear inside the bucket (Prometheus' convention:
    the first bucket starts at 0 when its bound is positive, the overflow bucket yields the
    highest finite bound)."""
    c = np.asarray(counts, dtype=float)
    total = c.sum()
    if total <= 0:
        return float("nan")
    cum = np.cumsum(c)
    rank = qq * total
    i = int(np.searchsorted(cum, rank, side="left"))
    i = min(i, len(c) - 1)
    if i >= len(bounds):  # overflow bucket
        return float(bounds[-1]) if len(bounds) else float("nan")
    upper = float(bounds[i])
    lower = float(bounds[i - 1]) if i > 0 else min(0.0, upper)
    below = cum[i - 1] if i > 0 else 0.0
    inside = c[i]
    if inside <= 0:
        return upper
    return float(lower + (upper - lower) * (rank - below) / inside)


class SignalQueries:
    """The SQL of every signal family for one database, run through its
    :class:`~forewarn.flows.store.FlowStore` (or a client and database); each method returns
    long-format rows."""

    def __init__(
        self, store: FlowStore | Client, database: str | None = None, counter_lookback_ms: int = 900_000
    ):
        self.store = store if isinstance(store, FlowStore) else FlowStore(store, str(database))
        self.lookback_ms = counter_lookback_ms

    def t(self, table: str) -> str:
        return self.store.t(table)

    def _rows(self, sql: str, w: Window, lookback: bool = False) -> pd.DataFrame:
        return self.store.frame(sql, w.params(self.lookback_ms if lookback else 0))

    # -- metrics ---------------------------------------------------------------------------------
    def gauges(self, w: Window) -> pd.DataFrame:
        sql = f"""
            SELECT MetricName AS name, ServiceName AS service, Attributes AS labels,
                   {_bucket("TimeUnix")} AS ts, argMax(Value, TimeUnix) AS value
            FROM {self.t("otel_metrics_gauge")} WHERE {_range("TimeUnix")}
            GROUP BY name, service, labels, ts"""
        return self._rows(sql, w)

    def sums(self, w: Window) -> pd.DataFrame:
        # Monotonic: rate = increase / elapsed over the points ending in the bucket. Cumulative
        # increase is the difference to the previous point, or the value itself after a reset
        # (value went down or the start time changed); a re-sent duplicate point adds 0 over 0 s.
        sql = f"""
            SELECT if(mono, concat(MetricName, ':rate'), MetricName) AS name, service, labels,
                   {_bucket("TimeUnix")} AS ts,
                   multiIf(NOT mono AND temp = 2, argMax(Value, TimeUnix),
                           NOT mono, sum(Value),
                           sum(dt) > 0, sum(inc) / sum(dt), nan) AS value,
                   if(mono, sum(inc), nan) AS n, if(mono, sum(dt), nan) AS exposure,
                   if(mono, 'counter', 'gauge') AS family
            FROM (
                SELECT MetricName, ServiceName AS service, Attributes AS labels, TimeUnix, Value,
                       IsMonotonic AS mono, AggregationTemporality AS temp,
                       lagInFrame(Value, 1, nan) OVER w AS prev_v,
                       lagInFrame(TimeUnix, 1, TimeUnix) OVER w AS prev_t,
                       lagInFrame(StartTimeUnix, 1, StartTimeUnix) OVER w AS prev_start,
                       StartTimeUnix,
                       row_number() OVER w AS rn,
                       if(temp = 1, Value,
                          if(rn = 1, 0, if(Value < prev_v OR StartTimeUnix != prev_start, Value, Value - prev_v)))
                           AS inc,
                       if(temp = 1,
                          (toUnixTimestamp64Nano(TimeUnix) - toUnixTimestamp64Nano(StartTimeUnix)) / 1e9,
                          if(rn = 1, 0, (toUnixTimestamp64Nano(TimeUnix) - toUnixTimestamp64Nano(
                              if(StartTimeUnix != prev_start, greatest(StartTimeUnix, prev_t), prev_t))) / 1e9))
                           AS dt
                FROM {self.t("otel_metrics_sum")} WHERE {_range("TimeUnix", "lb")}
                WINDOW w AS (PARTITION BY ServiceName, MetricName, Attributes ORDER BY TimeUnix
                             ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
            )
            WHERE TimeUnix >= fromUnixTimestamp64Milli({{t0:Int64}})
            GROUP BY MetricName, mono, temp, service, labels, ts
            HAVING NOT isNaN(value)"""
        return self._rows(sql, w, lookback=True).rename(columns={"exposure": "dt"})

    def histogram_sources(self) -> dict[str, str]:
        """Explicit-bucket and exponential histograms as (counts, upper bounds) of one shape.

        An exponential bucket ``i`` covers ``(base^(offset+i), base^(offset+i+1)]`` with
        ``base = 2^(2^-scale)``; the zero bucket becomes a first bucket bounded by 0 (negative
        buckets are ignored: the signals are durations and sizes)."""
        cols = "MetricName, MetricUnit, ServiceName, Attributes, TimeUnix, StartTimeUnix, AggregationTemporality, Count"
        return {
            "explicit": f"SELECT {cols}, BucketCounts, ExplicitBounds FROM {self.t('otel_metrics_histogram')}",
            "exponential": f"""SELECT {cols}, arrayConcat([ZeroCount], PositiveBucketCounts) AS BucketCounts,
                       arrayConcat([0.], arrayMap(i -> pow(2., pow(2., -Scale) * (PositiveOffset + i)),
                                                  range(1, length(PositiveBucketCounts) + 1))) AS ExplicitBounds
                FROM {self.t("otel_metrics_exponential_histogram")}""",
        }

    def histograms(self, w: Window) -> pd.DataFrame:
        return pd.concat(
            [self._histograms(w, src) for src in self.histogram_sources().values()], ignore_index=True
        )

    def _histograms(self, w: Window, source: str) -> pd.DataFrame:
        # Cumulative histograms become per-interval counts by subtracting the previous point
        # (unless it reset or its buckets changed); then buckets are summed per time bucket and
        # quantiles interpolated.
        sql = f"""
            SELECT MetricName AS metric, service, labels, {_bucket("TimeUnix")} AS ts, any(MetricUnit) AS unit,
                   any(ExplicitBounds) AS bounds, sumForEach(d_counts) AS counts, sum(d_n) AS n, sum(dt) AS dt
            FROM (
                SELECT MetricName, MetricUnit, ServiceName AS service, Attributes AS labels, TimeUnix, ExplicitBounds,
                       AggregationTemporality AS temp,
                       lagInFrame(BucketCounts, 1, []) OVER w AS prev_c,
                       lagInFrame(ExplicitBounds, 1, []) OVER w AS prev_b,
                       lagInFrame(Count, 1, 0) OVER w AS prev_n,
                       lagInFrame(TimeUnix, 1, TimeUnix) OVER w AS prev_t,
                       lagInFrame(StartTimeUnix, 1, StartTimeUnix) OVER w AS prev_start,
                       StartTimeUnix, row_number() OVER w AS rn,
                       (temp = 2 AND rn > 1 AND (Count < prev_n OR StartTimeUnix != prev_start
                                      OR length(prev_c) != length(BucketCounts) OR prev_b != ExplicitBounds)) AS reset,
                       multiIf(temp = 1 OR reset, arrayMap(x -> toInt64(x), BucketCounts), rn = 1,
                               arrayMap(x -> toInt64(0), BucketCounts),
                               arrayMap((a, b) -> toInt64(a) - toInt64(b), BucketCounts, prev_c)) AS d_counts,
                       multiIf(temp = 1 OR reset, toInt64(Count), rn = 1, toInt64(0),
                               toInt64(Count) - toInt64(prev_n)) AS d_n,
                       if(temp = 1 OR reset,
                          (toUnixTimestamp64Nano(TimeUnix) - toUnixTimestamp64Nano(
                              if(reset AND rn > 1, greatest(StartTimeUnix, prev_t), StartTimeUnix))) / 1e9,
                          if(rn = 1, 0, (toUnixTimestamp64Nano(TimeUnix) - toUnixTimestamp64Nano(prev_t)) / 1e9))
                           AS dt
                FROM ({source} WHERE {_range("TimeUnix", "lb")})
                WINDOW w AS (PARTITION BY ServiceName, MetricName, Attributes ORDER BY TimeUnix
                             ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
            )
            WHERE TimeUnix >= fromUnixTimestamp64Milli({{t0:Int64}})
            GROUP BY metric, service, labels, ts, ExplicitBounds"""
        df = self._rows(sql, w, lookback=True)
        out: list[tuple] = []
        outcomes: dict[tuple, list[float]] = {}  # (metric, service, other labels, ts) -> [requests, errors]
        for r in df.itertuples(index=False):
            split = status_split(dict(r.labels or {}))
            if r.dt > 0:
                # the rate of failed requests is judged through the error ratio: that it drops is good news
                if split is not None and not split[2]:
                    family = "errors"
                elif r.metric in REQUEST_METRICS:
                    family = "traffic"
                else:  # garbage collections, body sizes, outgoing calls: counts, not the service's traffic
                    family = "counter"
                rate = (
                    f"{r.metric}:rate",
                    r.service,
                    r.labels,
                    r.ts,
                    r.n / r.dt,
                    r.n,
                    NAN,
                    r.dt,
                    family,
                    "1/s",
                )
                out.append(rate)
            if r.n > 0:
                # the latency of work done for someone (requests, calls, queries, messages); a
                # runtime's garbage-collection pauses or a job's durations are not
                latent = r.unit in TIME_UNITS and str(r.metric).startswith(LATENCY_PREFIXES)
                family = "latency" if latent else "quantile"
                for qq in QUANTILES:
                    v = histogram_quantile(r.counts, r.bounds, qq)
                    out.append((f"{r.metric}:p{round(qq * 100)}", r.service, r.labels, r.ts, v, r.n, NAN, NAN,
                                family, r.unit))  # fmt: skip
            if split is not None and r.n > 0:
                rest, is_error, _ = split
                acc = outcomes.setdefault((r.metric, r.service, rest, r.ts), [0.0, 0.0])
                acc[0] += r.n
                acc[1] += r.n if is_error else 0.0
        for (metric, service, rest, ts), (n, errors) in outcomes.items():
            out.append(
                (f"{metric}:error_ratio", service, dict(rest), ts, errors / n, n, errors, NAN, "ratio", "1")
            )
        return pd.DataFrame(
            out, columns=["name", "service", "labels", "ts", "value", "n", "k", "dt", "family", "unit"]
        )

    def usage_utilization(self, w: Window) -> pd.DataFrame:
        """``<metric>.utilization`` derived from usage split by state (``system.filesystem.usage``
        with ``state`` = used/free/reserved, as the hostmetrics receiver sends by default): used
        over the total per device, so a disk filling up can be forecast to its limit of 1."""
        sql = f"""
            SELECT replaceRegexpOne(MetricName, '\\.usage$', '.utilization') AS name, service,
                   mapFilter((k, v) -> k NOT IN ('state', 'system.filesystem.state'), attrs) AS labels, ts,
                   sumIf(v, st = 'used') / sum(v) AS value
            FROM (
                SELECT MetricName, ServiceName AS service, Attributes AS attrs, {_bucket("TimeUnix")} AS ts,
                       if(mapContains(Attributes, 'state'), Attributes['state'], Attributes['system.filesystem.state'])
                           AS st,
                       argMax(Value, TimeUnix) AS v
                FROM {self.t("otel_metrics_sum")}
                WHERE {_range("TimeUnix")} AND MetricName IN {{usage:Array(String)}} AND NOT IsMonotonic
                GROUP BY MetricName, service, attrs, ts, st
            )
            GROUP BY name, service, labels, ts
            HAVING sum(v) > 0 AND countIf(st = 'used') > 0"""
        return self.store.frame(sql, {**w.params(), "usage": list(USAGE_METRICS)})

    def summaries(self, w: Window) -> pd.DataFrame:
        sql = f"""
            SELECT concat(MetricName, ':q', toString(qv.1)) AS name, ServiceName AS service,
                   Attributes AS labels, {_bucket("TimeUnix")} AS ts, argMax(qv.2, TimeUnix) AS value,
                   any(MetricUnit) AS unit, if(unit IN {{time_units:Array(String)}}, 'latency', 'quantile') AS family
            FROM {self.t("otel_metrics_summary")}
            ARRAY JOIN arrayZip(ValueAtQuantiles.Quantile, ValueAtQuantiles.Value) AS qv
            WHERE {_range("TimeUnix")}
            GROUP BY name, service, labels, ts"""
        return self.store.frame(sql, {**w.params(), "time_units": list(TIME_UNITS)})

    # -- traces ----------------------------------------------------------------------------------
    def red(self, w: Window) -> pd.DataFrame:
        """Rate, error ratio and exact latency percentiles (ms), per service and per operation."""
        entry = "(SpanKind IN ('Server', 'Consumer') OR ParentSpanId = '')"
        sql = f"""
            SELECT ServiceName AS service, if(op_level, SpanName, '') AS operation,
                   if(op_level, lower(SpanKind), '') AS kind, {_bucket("Timestamp")} AS ts,
                   count() AS n, countIf(StatusCode = 'Error') AS errors,
                   quantilesExactInclusive({", ".join(map(str, QUANTILES))})(Duration / 1e6) AS qs
            FROM {self.t("otel_traces")}
            ARRAY JOIN if({entry}, [0, 1], [1]) AS op_level
            WHERE {_range("Timestamp")}
            GROUP BY service, operation, kind, op_level, ts"""
        df = self._rows(sql, w)
        out: list[tuple] = []
        step_s = w.step_s
        for r in df.itertuples(index=False):
            labels = {"operation": r.operation, "span.kind": r.kind or "unspecified"} if r.operation else {}
            out.append(("red.rate", r.service, labels, r.ts, r.n / step_s, r.n, NAN, step_s, "traffic"))
            out.append(
                ("red.error_ratio", r.service, labels, r.ts, r.errors / r.n, r.n, r.errors, NAN, "ratio")
            )
            for qq, v in zip(QUANTILES, r.qs, strict=True):
                out.append(
                    (
                        f"red.p{round(qq * 100)}",
                        r.service,
                        labels,
                        r.ts,
                        float(v),
                        r.n,
                        NAN,
                        NAN,
                        "latency",
                        "ms",
                    )
                )
        return pd.DataFrame(
            out, columns=["name", "service", "labels", "ts", "value", "n", "k", "dt", "family", "unit"]
        )

    def latency_hist(self, w: Window) -> pd.DataFrame:
        """Per service and bucket, counts of entry spans in half-octave duration bins."""
        sql = f"""
            SELECT ServiceName AS service, {_bucket("Timestamp")} AS ts,
                   least(toUInt32(floor(log2(greatest(Duration, 1)) * 2)), {LAT_BINS - 1}) AS bin, count() AS c
            FROM {self.t("otel_traces")}
            WHERE {_range("Timestamp")} AND (SpanKind IN ('Server', 'Consumer') OR ParentSpanId = '')
            GROUP BY service, ts, bin"""
        df = self._rows(sql, w)
        rows = []
        if df.empty:
            return pd.DataFrame(rows, columns=["service", "ts", "bins"])
        for (service, ts), g in df.groupby(["service", "ts"], sort=True):
            bins = np.zeros(LAT_BINS, dtype=np.uint64)
            bins[g["bin"].to_numpy(dtype=int)] = g["c"].to_numpy(dtype=np.uint64)
            rows.append((service, int(ts), bins))
        return pd.DataFrame(rows, columns=["service", "ts", "bins"])

    def latency_history(self, w: Window, buckets: int) -> pd.DataFrame:
        """The stored histograms of the ``buckets`` steps before the window (the shift baseline)."""
        sql = f"""
            SELECT service, toUnixTimestamp64Milli(ts) AS ts_ms, bins FROM {self.t("forewarn_latency_hist")} FINAL
            WHERE ts >= fromUnixTimestamp64Milli({{lb:Int64}}) AND ts < fromUnixTimestamp64Milli({{t0:Int64}})
              AND cityHash64(service) % {{shards:UInt64}} = {{shard:UInt64}}
            ORDER BY service, ts_ms"""
        df = self.store.frame(sql, w.params(buckets * w.step_ms))
        return (
            df.rename(columns={"ts_ms": "ts"}) if len(df) else pd.DataFrame(columns=["service", "ts", "bins"])
        )


def latency_shift(
    current: pd.DataFrame, history: pd.DataFrame, baseline_buckets: int = 30, min_spans: int = 20
):
    """How much slower each bucket's duration distribution is than the pooled distribution of the
    service's preceding ``baseline_buckets`` buckets: the slower half of the Wasserstein-1
    distance, in octaves (the area where the bucket's CDF lies below the baseline's).

    It moves when the shape moves (a slow tail growing, a bimodal split) even if the watched
    percentiles do not. Faster is not counted: after a slowdown, while the slow buckets are still
    in the baseline, the normal ones that follow would otherwise read as a second shift (on the
    test bed such echoes joined and prolonged the slowdown's incident).
    """
    out: list[tuple] = []
    if current.empty:
        return pd.DataFrame(out, columns=["name", "service", "labels", "ts", "value", "n", "family"])
    allh = pd.concat([history, current], ignore_index=True) if len(history) else current
    for service, g in allh.groupby("service", sort=True):
        g = g.sort_values("ts")
        ts_list = g["ts"].astype("int64").tolist()
        mats = [np.asarray(b, dtype=float) for b in g["bins"]]
        cur_ts = set(current.loc[current["service"] == service, "ts"].astype("int64"))
        for i, ts in enumerate(ts_list):
            if ts not in cur_ts or i == 0:
                continue
            base = np.sum(mats[max(0, i - baseline_buckets) : i], axis=0)
            cur = mats[i]
            if base.sum() < min_spans or cur.sum() < max(5, min_spans // 4):
                continue
            d = np.clip(np.cumsum(base / base.sum()) - np.cumsum(cur / cur.sum()), 0, None).sum() * 0.5
            out.append(("latency.shift", service, {}, ts, float(d), float(cur.sum()), "shift"))
    return pd.DataFrame(out, columns=["name", "service", "labels", "ts", "value", "n", "family"])


def compute_signals(
    queries: SignalQueries, w: Window, latency_baseline: int = 30
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All signal families of the window in long format, and the latency histograms to store."""
    hist = queries.latency_hist(w)
    parts = [
        queries.gauges(w),
        queries.sums(w),
        queries.histograms(w),
        queries.summaries(w),
        queries.usage_utilization(w),
        queries.red(w),
        latency_shift(hist, queries.latency_history(w, latency_baseline), latency_baseline),
    ]
    return finish(parts), hist


def finish(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate signal frames, drop non-finite values and attach the stable ``series_id``; the
    count columns a family does not have are NaN, and ``direction`` follows from ``family``."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=COLUMNS)
    df = pd.concat(parts, ignore_index=True)
    df["value"] = df["value"].astype(float)
    df = df[np.isfinite(df["value"])].copy()
    df["ts"] = df["ts"].astype("int64")
    df["labels"] = [dict(x) if x is not None else {} for x in df["labels"]]
    for c in ("n", "k", "dt"):
        df[c] = df[c].astype(float) if c in df else NAN
    df["family"] = df["family"].fillna("gauge").astype(str) if "family" in df else "gauge"
    df.loc[(df["family"] == "gauge") & df["name"].isin(MEMORY_METRICS), "family"] = "memory"
    df["unit"] = df["unit"].fillna("").astype(str) if "unit" in df else ""
    df["direction"] = df["family"].map(DIRECTION).fillna(0).astype(np.int8)
    df["series_id"] = [
        series_id(n, s, lab) for n, s, lab in zip(df["name"], df["service"], df["labels"], strict=True)
    ]
    return df[COLUMNS].sort_values(["ts", "series_id"], kind="stable").reset_index(drop=True)


def series_id(name: str, service: str, labels: dict[str, str]) -> int:
    """Stable 63-bit id of a series (blake2b of its identity with sorted labels).

    >>> series_id("red.rate", "cart", {"operation": "GET /"}) == series_id("red.rate", "cart", {"operation": "GET /"})
    True
    """
    import hashlib

    key = "\x1f".join([name, service, *(f"{k}\x1e{v}" for k, v in sorted(labels.items()))])
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") >> 1


def status_split(labels: dict[str, str]) -> tuple[tuple, bool, bool] | None:
    """(the other attributes, whether the status is a server error, whether it is a success) of a
    point split by status.

    >>> status_split({"http.route": "/a", "http.response.status_code": "503"})
    ((('http.route', '/a'),), True, False)
    >>> status_split({"http.route": "/a", "http.response.status_code": "404"})[1:]
    (False, False)
    >>> status_split({"http.route": "/a"}) is None
    True
    """
    for key in STATUS_KEYS:
        if key in labels:
            code = str(labels[key])
            rest = tuple(sorted((k, v) for k, v in labels.items() if k != key))
            if key.startswith("rpc."):
                return rest, code in GRPC_SERVER_ERRORS, code == "0"
            return rest, code[:1] == "5", code[:1] in ("1", "2", "3")
    return None
