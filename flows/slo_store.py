"""The SQL of the SLO flow: event counts per bucket from the stored telemetry, and the sums of
``forewarn_slo_buckets`` over the alert and SLO windows; every value is a query parameter.

A selector's label matchers follow Prometheus: a label that is absent reads as ``""``. Labels are
compared with the stored attribute keys with dots read as underscores, so ``http_route`` matches
``http.route``; ``service`` (or ``job``, ``service_name``) is the service name, ``code`` also
matches ``http.response.status_code`` / ``http.status_code``, ``route`` also ``http.route``
(and, on spans without it, the span name), ``status`` the span status (``ok``/``error``/``unset``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from forewarn.flows.signals import SignalQueries
from forewarn.flows.slo_spec import Selector

from forewarn.storage.schema import q

SERVICE_LABELS = ("service", "job", "service_name")
ALIASES = {
    "code": ("code", "http_response_status_code", "http_status_code"),
    "route": ("route", "http_route"),
    "method": ("method", "http_request_method", "http_method"),
}
UNIT_SUFFIXES = ("_seconds", "_milliseconds", "_bytes", "_ratio")
# a bucket's replays land in its own (monthly) partition: FINAL need not merge across them
FINAL_BY_PARTITION = "do_not_merge_across_partitions_select_final = 1"
ENTRY = "(SpanKind IN ('Server', 'Consumer') OR ParentSpanId = '')"


def metric_names(metric: str, source: str) -> list[str]:
    """Stored metric names (dots as underscores) a Prometheus-style name may stand for.

    >>> metric_names("http_server_request_duration_seconds_count", "histogram")
    ['http_server_request_duration_seconds', 'http_server_request_duration']
    >>> metric_names("http_requests_total", "counter")
    ['http_requests_total', 'http_requests']
    """
    base = metric.removesuffix("_count").removesuffix("_bucket") if source == "histogram" else metric
    out = [base]
    if source == "counter" and base.endswith("_total"):
        out.append(base.removesuffix("_total"))
    for n in list(out):
        for suf in UNIT_SUFFIXES:
            if n.endswith(suf):
                out.append(n.removesuffix(suf))
    return list(dict.fromkeys(out))


class _Params:
    def __init__(self, base: dict[str, Any]):
        self.values = dict(base)

    def add(self, value: Any, kind: str) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return f"{{{name}:{kind}}}"


def _label_value(label: str, source: str, p: _Params) -> str:
    """The SQL of a label's value on one row (``''`` when absent)."""
    if label in SERVICE_LABELS:
        return "ServiceName"
    if source == "spans":
        if label in ("status", "status_code"):
            return "lower(StatusCode)"
        if label in ("span_name", "operation", "name"):
            return "SpanName"
        if label in ("kind", "span_kind"):
            return "lower(SpanKind)"
        if label == "route":
            return "if(mapContains(SpanAttributes, 'http.route'), SpanAttributes['http.route'], SpanName)"
    col = "SpanAttributes" if source == "spans" else "Attributes"
    keys = p.add(list(ALIASES.get(label, (label,))), "Array(String)")
    return f"arrayFirst((v, k) -> has({keys}, replaceAll(k, '.', '_')), mapValues({col}), mapKeys({col}))"


def matcher_sql(sel: Selector, p: _Params) -> str:
    conds = []
    for label, op, value in sel.matchers:
        lv = _label_value(label, sel.source, p)
        if lv.startswith("lower("):
            value = value.lower()
        if op in ("=", "!="):
            conds.append(f"{lv} {op} {p.add(value, 'String')}")
        else:
            m = f"match({lv}, {p.add(f'^(?:{value})$', 'String')})"
            conds.append(m if op == "=~" else f"NOT {m}")
    return " AND ".join(conds) or "1"


def _bucket(col: str) -> str:
    return f"intDiv(toUnixTimestamp64Milli({col}), {{step:Int64}}) * {{step:Int64}}"


def _range(col: str, lower: str = "t0") -> str:
    return f"{col} >= fromUnixTimestamp64Milli({{{lower}:Int64}}) AND {col} < fromUnixTimestamp64Milli({{t1:Int64}})"


class SLOStore:
    """Event counts and bucket sums for one database (a clickhouse-connect client, or a
    :class:`forewarn.storage.query.StoreReader` for the read-only parts)."""

    def __init__(self, client: Any, database: str, lookback_ms: int = 900_000):
        self.client, self.db, self.lookback_ms = client, database, lookback_ms

    def t(self, name: str) -> str:
        return f"{q(self.db)}.{q(name)}"

    # -- counting ----------------------------------------------------------------------------------
    def count_sql(self, source: str, sels: list[Selector], p: _Params, table: str | None = None) -> str:
        """SQL of ``(ts, n)``: for each bucket of ``[t0, t1)``, an array with the events of each
        of ``sels`` (all of one source: one scan of its table, however many SLOs count there).
        ``table``: the histograms' rows (explicit-bucket, or exponential ones read as such)."""
        conds = [f"({matcher_sql(sel, p)})" for sel in sels]
        if source == "spans":
            counts = []
            for sel, c in zip(sels, conds, strict=True):
                dur = f" AND Duration <= {p.add(int(sel.le * 1e9), 'UInt64')}" if sel.le is not None else ""
                counts.append(f"toFloat64(countIf({c}{dur}))")
            return f"""SELECT {_bucket("Timestamp")} AS ts, [{", ".join(counts)}] AS n FROM {self.t("otel_traces")}
                       WHERE {_range("Timestamp")} AND {ENTRY} AND ({" OR ".join(conds)}) GROUP BY ts"""
        values = []
        for i, sel in enumerate(sels):
            names = p.add(metric_names(sel.metric, source), "Array(String)")
            conds[i] = f"(replaceAll(MetricName, '.', '_') IN {names} AND {conds[i]})"
            if source == "counter" or sel.le is None:
                v = "toFloat64(Value)" if source == "counter" else "toFloat64(Count)"
            else:
                le = p.add(sel.le * (1 + 1e-9), "Float64")
                v = f"toFloat64(arraySum(arraySlice(BucketCounts, 1, length(arrayFilter(b -> b <= {le}, ExplicitBounds)))))"
            values.append(f"if({conds[i]}, {v}, 0.)")
        if source == "histogram":
            level, shape, mono = "toFloat64(Count)", "ExplicitBounds", "1"
            table = table or self.t("otel_metrics_histogram")
        else:
            table, level, shape, mono = self.t("otel_metrics_sum"), "Value", "[]", "IsMonotonic"
        # Per point: the events since the series' previous point (cumulative), the point itself
        # (delta, a reset, or a series that started inside the look-back), summed per bucket. A
        # series matches a selector or not for good (its labels are its identity), so each
        # selector's value is differenced within the series like a counter of its own.
        return f"""
            SELECT {_bucket("TimeUnix")} AS ts, sumForEach(inc) AS n FROM (
                SELECT TimeUnix,
                       arrayMap((v, pv) -> if(fresh, v, if(rn = 1, 0., v - pv)), vs, prev_vs) AS inc
                FROM (
                    SELECT TimeUnix, [{", ".join(values)}] AS vs, {level} AS level, {shape} AS shape,
                           lagInFrame(vs, 1, vs) OVER w AS prev_vs,
                           lagInFrame(level, 1, level) OVER w AS prev_level,
                           lagInFrame(StartTimeUnix, 1, StartTimeUnix) OVER w AS prev_start,
                           lagInFrame(shape, 1, shape) OVER w AS prev_shape,
                           row_number() OVER w AS rn,
                           AggregationTemporality = 1
                               OR (rn = 1 AND StartTimeUnix >= fromUnixTimestamp64Milli({{lb:Int64}}))
                               OR (rn > 1 AND (level < prev_level OR StartTimeUnix != prev_start
                                               OR shape != prev_shape)) AS fresh
                    FROM {table}
                    WHERE {_range("TimeUnix", "lb")} AND {mono} AND ({" OR ".join(conds)})
                    WINDOW w AS (PARTITION BY ServiceName, MetricName, Attributes ORDER BY TimeUnix
                                 ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
                )
                WHERE TimeUnix >= fromUnixTimestamp64Milli({{t0:Int64}})
            ) GROUP BY ts"""

    def counts_many(
        self, sels: list[Selector], t0_ms: int, t1_ms: int, step_ms: int
    ) -> list[dict[int, float]]:
        """Events of each selector per bucket start (epoch ms) in ``[t0, t1)``: one query per
        source table (spans, histograms, counters). Buckets without events are left out."""
        out: list[dict[int, float]] = [{} for _ in sels]
        # histograms: explicit-bucket ones and exponential ones (as the signals read them: the
        # zero bucket, then base^(offset+i) upper bounds), each a scan of its own table
        hist = [f"({q})" for q in SignalQueries(self.client, self.db).histogram_sources().values()]
        for source, tables in (("spans", [None]), ("histogram", hist), ("counter", [None])):
            idx = [i for i, s in enumerate(sels) if s.source == source]
            for table in tables if idx else []:
                p = _Params({"t0": t0_ms, "t1": t1_ms, "lb": t0_ms - self.lookback_ms, "step": step_ms})
                sql = self.count_sql(source, [sels[i] for i in idx], p, table)
                for ts, ns in self.client.query(sql, parameters=p.values).result_rows:
                    for i, n in zip(idx, ns, strict=True):
                        if n:
                            out[i][int(ts)] = out[i].get(int(ts), 0.0) + float(n)
        return out

    def counts(self, sel: Selector, t0_ms: int, t1_ms: int, step_ms: int) -> dict[int, float]:
        """Events of one selector per bucket start (epoch ms) in ``[t0, t1)``."""
        return self.counts_many([sel], t0_ms, t1_ms, step_ms)[0]

    # -- buckets -----------------------------------------------------------------------------------
    def write_buckets(
        self, key: str, ts: list[int], good: list[float], total: list[float], token: str
    ) -> None:
        """One SLI's buckets (starts in epoch ms), as columns: a day of a hundred SLOs is 144,000 rows."""
        if not ts:
            return
        df = pd.DataFrame({"sli_key": key, "ts": pd.to_datetime(np.asarray(ts, dtype=np.int64), unit="ms", utc=True),
                           "good": good, "total": total})  # fmt: skip
        self.client.insert_df("forewarn_slo_buckets", df, database=self.db,
                              settings={"insert_deduplication_token": token})  # fmt: skip

    STATUS_COLUMNS = ("slo_id", "ts", "service", "sli_key", "objective", "good", "total", "budget_remaining", "burn",
                      "firing", "eta_s", "eta_low_s", "eta_high_s")  # fmt: skip

    def write_status(self, rows: list[list], token: str) -> None:
        if rows:
            self.client.insert("forewarn_slo_status", rows, column_names=list(self.STATUS_COLUMNS),
                               database=self.db, settings={"insert_deduplication_token": token})  # fmt: skip

    def burning(self, services: list[str], since_ms: int) -> dict[str, list[dict[str, Any]]]:
        """Per service, its SLOs whose latest evaluation since ``since_ms`` burns budget faster than
        it accrues (1 h burn rate over 1) or fires: what an incident notification names."""
        if not services:
            return {}
        sql = f"""
            SELECT service, slo_id, b1h, left, firing FROM (
                SELECT service, slo_id, argMax(burn['1h'], ts) AS b1h, argMax(budget_remaining, ts) AS left,
                       argMax(firing, ts) AS firing
                FROM {self.t("forewarn_slo_status")} FINAL
                WHERE service IN {{svc:Array(String)}} AND ts >= fromUnixTimestamp64Milli({{s:Int64}})
                GROUP BY service, slo_id)
            WHERE b1h > 1 OR notEmpty(firing) ORDER BY service, b1h DESC"""
        out: dict[str, list[dict[str, Any]]] = {}
        for svc, sid, b1h, left, firing in self.client.query(
            sql, parameters={"svc": services, "s": since_ms}
        ).result_rows:
            out.setdefault(svc, []).append({"slo": sid, "burn_1h": float(b1h), "budget_left": float(left),
                                            "firing": list(firing)})  # fmt: skip
        return out

    def window_sums(self, starts: dict[str, list[int]], end_ms: int) -> dict[str, list[tuple[float, float]]]:
        """For each SLI, (good, total) summed from each of its start times to ``end_ms``: all the
        alert windows and the SLO window in one pass over the buckets. The distinct start times
        (the alert windows are common, SLO windows few) become plain ``sumIf`` columns."""
        if not starts:
            return {}
        keys = list(starts)
        distinct = sorted({int(x) for v in starts.values() for x in v})
        params: dict[str, Any] = {"keys": keys, "end": end_ms, **{f"s{i}": x for i, x in enumerate(distinct)}}
        cols = ", ".join(
            f"sumIf(good, ts >= fromUnixTimestamp64Milli({{s{i}:Int64}})), "
            f"sumIf(total, ts >= fromUnixTimestamp64Milli({{s{i}:Int64}}))"
            for i in range(len(distinct))
        )
        sql = f"""
            SELECT sli_key, {cols} FROM {self.t("forewarn_slo_buckets")} FINAL
            WHERE sli_key IN {{keys:Array(String)}} AND ts >= fromUnixTimestamp64Milli({{s0:Int64}})
              AND ts < fromUnixTimestamp64Milli({{end:Int64}})
            GROUP BY sli_key SETTINGS {FINAL_BY_PARTITION}"""
        width = len(next(iter(starts.values())))
        out = {k: [(0.0, 0.0)] * width for k in keys}
        index = {x: i for i, x in enumerate(distinct)}
        for key, *sums in self.client.query(sql, parameters=params).result_rows:
            out[key] = [(float(sums[2 * index[x]]), float(sums[2 * index[x] + 1])) for x in starts[key]]
        return out

    def latest(self, keys: list[str], step_ms: int) -> dict[str, int]:
        """End of the newest counted bucket of each SLI (what ``forewarn slo status`` evaluates at)."""
        sql = f"""SELECT sli_key, toUnixTimestamp64Milli(max(ts)) FROM {self.t("forewarn_slo_buckets")}
                  WHERE sli_key IN {{keys:Array(String)}} GROUP BY sli_key"""
        rows = self.client.query(sql, parameters={"keys": keys}).result_rows
        return {k: int(t) + step_ms for k, t in rows}

    def series(self, keys: list[str], start_ms: int, end_ms: int, step_ms: int) -> pd.DataFrame:
        """``sli_key, ts, good, total`` summed into ``step_ms`` buckets (forecasts, dashboards)."""
        sql = f"""
            SELECT sli_key, intDiv(toUnixTimestamp64Milli(ts), {{step:Int64}}) * {{step:Int64}} AS t,
                   sum(good) AS good, sum(total) AS total
            FROM {self.t("forewarn_slo_buckets")} FINAL
            WHERE sli_key IN {{keys:Array(String)}} AND ts >= fromUnixTimestamp64Milli({{a:Int64}})
              AND ts < fromUnixTimestamp64Milli({{b:Int64}})
            GROUP BY sli_key, t ORDER BY sli_key, t SETTINGS {FINAL_BY_PARTITION}"""
        res = self.client.query(sql, parameters={"keys": keys, "a": start_ms, "b": end_ms, "step": step_ms})
        return pd.DataFrame(res.result_rows, columns=["sli_key", "ts", "good", "total"])
