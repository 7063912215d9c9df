"""Every query the flows make: their own tables (migration 250), the OTel exporter tables they read
(signals, logs, spans for the call graph), all through parameterised clickhouse-connect calls.

Every insert carries a deterministic ``insert_deduplication_token`` derived from the batch, and
every table is a ReplacingMergeTree on a deterministic key: a micro-batch replayed after a crash
rewrites identical rows, which readers see once (``FINAL``).

Checkpoints are JSON metadata plus numpy arrays in one ``.npz`` blob (no pickle), stored in
``forewarn_flow_state`` with the watermark they belong to.

>>> meta, arrays = decode_state(encode_state({"a": 1}, {"x": np.arange(3)}))
>>> meta["a"], arrays["x"].tolist()
(1, [0, 1, 2])
"""

from __future__ import annotations

import base64
import io
import json
import zlib
from datetime import UTC, datetime
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from clickhouse_connect.driver.client import Client

from forewarn.storage.schema import q


def to_dt(ms: float) -> datetime:
    return datetime.fromtimestamp(ms / 1000.0, tz=UTC)


def ms_of(v: datetime | float) -> int:
    """Epoch milliseconds of a stored time (clickhouse-connect returns naive UTC datetimes)."""
    if isinstance(v, datetime):
        return int((v if v.tzinfo else v.replace(tzinfo=UTC)).timestamp() * 1000)
    return int(v)


def encode_state(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    buf = io.BytesIO()
    np.savez(buf, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    return base64.b64encode(zlib.compress(buf.getvalue(), 1)).decode()


def decode_state(blob: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    raw = zlib.decompress(base64.b64decode(blob))
    with np.load(io.BytesIO(raw), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop("__meta__").tobytes().decode())
    return meta, arrays


class FlowStore:
    """The flows' tables in one database, for one client (one per thread)."""

    def __init__(self, client: Client, database: str):
        self.client, self.db = client, database

    def t(self, name: str) -> str:
        return f"{q(self.db)}.{q(name)}"

    def frame(self, sql: str, parameters: dict[str, Any]) -> pd.DataFrame:
        """A query's result as a data frame (the signal and log readers build their SQL with
        :meth:`t`)."""
        return self.client.query_df(sql, parameters=parameters)

    def _dicts(self, sql: str, parameters: dict[str, Any]) -> list[dict]:
        res = self.client.query(sql, parameters=parameters)
        return [dict(zip(res.column_names, r, strict=True)) for r in res.result_rows]

    def _insert(self, table: str, rows: list[list], columns: list[str], token: str | None) -> None:
        if not rows:
            return
        settings = {"insert_deduplication_token": token} if token else None
        self.client.insert(table, rows, column_names=columns, database=self.db, settings=settings)

    # -- signals and their side tables ---------------------------------------------------------
    def write_signals(self, sig: pd.DataFrame, token: str) -> None:
        rows = [
            [int(r.series_id), to_dt(r.ts), float(r.value), r.name, r.service, r.labels]
            for r in sig.itertuples(index=False)
        ]
        self._insert(
            "forewarn_signals",
            rows,
            ["series_id", "ts", "value", "name", "service", "labels"],
            token + "/signals",
        )

    def write_latency_hist(self, hist: pd.DataFrame, token: str) -> None:
        rows = [[r.service, to_dt(r.ts), [int(x) for x in r.bins]] for r in hist.itertuples(index=False)]
        self._insert("forewarn_latency_hist", rows, ["service", "ts", "bins"], token + "/lat")

    def write_log_templates(self, records: pd.DataFrame, first: pd.DataFrame, token: str) -> None:
        if len(records):
            rows = [
                [r.Timestamp, r.service, int(r.log_key), int(r.template_id), int(r.sev)]
                for r in records.itertuples(index=False)
            ]
            cols = ["Timestamp", "ServiceName", "log_key", "template_id", "SeverityNumber"]
            self._insert("forewarn_log_templates", rows, cols, token + "/logtpl")
        if len(first):
            rows = [
                [int(r.template_id), r.service, r.template, r.first_seen]
                for r in first.itertuples(index=False)
            ]
            self._insert(
                "forewarn_templates",
                rows,
                ["template_id", "service", "template", "first_seen"],
                token + "/tpl",
            )

    def write_series(self, rows: list[list], token: str) -> None:
        self._insert(
            "forewarn_series",
            rows,
            ["series_id", "name", "service", "labels", "first_seen"],
            token + "/series",
        )

    def write_cardinality(self, rows: list[list], token: str) -> None:
        cols = ["window_end", "name", "service", "rejected_series", "rejected_points", "budget"]
        self._insert("forewarn_cardinality", rows, cols, token + "/card")

    def known_series(self, shard: int, shards: int) -> pd.DataFrame:
        sql = f"""SELECT series_id, name, service FROM {self.t("forewarn_series")} FINAL
                  WHERE cityHash64(service) % {{n:UInt64}} = {{k:UInt64}}"""
        return self.client.query_df(sql, parameters={"n": shards, "k": shard})

    # -- anomalies and incidents ---------------------------------------------------------------
    ANOMALY_COLUMNS: ClassVar[list[str]] = [
        "anomaly_id", "run", "ts", "detected_at", "series_id", "name", "service", "labels", "value",
        "expected", "score", "detector", "kind", "explanation", "incident_id", "model_version",
    ]  # fmt: skip

    def write_anomalies(self, rows: list[dict], token: str) -> None:
        data = [[r[c] for c in self.ANOMALY_COLUMNS] for r in rows]
        self._insert("anomalies", data, self.ANOMALY_COLUMNS, token + "/anomalies")

    INCIDENT_COLUMNS: ClassVar[list[str]] = [
        "incident_id", "run", "started_at", "updated_at", "services", "anomalies", "suspects",
        "alert_labels", "resolved",
    ]  # fmt: skip

    def write_incidents(self, rows: list[dict], token: str) -> None:
        data = [[r[c] for c in self.INCIDENT_COLUMNS] for r in rows]
        self._insert("incidents", data, self.INCIDENT_COLUMNS, token + "/incidents")

    def incidents(self, run: str) -> list[dict]:
        return self._dicts(
            f"SELECT * FROM {self.t('incidents')} FINAL WHERE run = {{run:String}}", {"run": run}
        )

    def incident_anomalies(self, run: str, incident_ids: list[int]) -> pd.DataFrame:
        if not incident_ids:
            return pd.DataFrame(columns=self.ANOMALY_COLUMNS)
        sql = f"""SELECT * FROM {self.t("anomalies")} FINAL
                  WHERE run = {{run:String}} AND incident_id IN {{ids:Array(UInt64)}} AND kind = 'deviation'"""
        df = self.client.query_df(sql, parameters={"run": run, "ids": incident_ids})
        return df if len(df) else pd.DataFrame(columns=self.ANOMALY_COLUMNS)

    def anomalies(self, run: str = "live", limit: int = 100, since_ms: int | None = None) -> pd.DataFrame:
        sql = f"""SELECT * FROM {self.t("anomalies")} FINAL WHERE run = {{run:String}}
                  AND ts >= fromUnixTimestamp64Milli({{s:Int64}}) ORDER BY ts DESC, anomaly_id LIMIT {{lim:UInt32}}"""
        return self.client.query_df(sql, parameters={"run": run, "s": since_ms or 0, "lim": limit})

    def anomaly(self, anomaly_id: int) -> dict | None:
        sql = f"""SELECT anomaly_id, series_id, detector, service, name, kind FROM {self.t("anomalies")} FINAL
                  WHERE anomaly_id = {{id:UInt64}} ORDER BY detected_at LIMIT 1"""
        found = self._dicts(sql, {"id": anomaly_id})
        return found[0] if found else None

    def anomaly_list(self, run: str, limit: int) -> list[dict]:
        """The newest anomalies of ``run``, as ``forewarn anomaly list`` prints them."""
        sql = f"""SELECT toString(anomaly_id) AS id, toString(ts) AS ts, service, name, labels, value, expected,
                         score, detector, kind, explanation, toString(incident_id) AS incident
                  FROM {self.t("anomalies")} FINAL WHERE run = {{run:String}} ORDER BY ts DESC LIMIT {{lim:UInt32}}"""
        return self._dicts(sql, {"run": run, "lim": limit})

    def status(self) -> dict[str, list[dict]]:
        """Watermarks, series, cardinality overflow, models and anomaly counts (``forewarn flows status``)."""
        return {
            "checkpoints": self._dicts(f"SELECT key, toString(argMax(watermark, committed_at)) AS watermark, "
                                       f"toString(max(committed_at)) AS last_commit FROM {self.t('forewarn_flow_state')} "
                                       "GROUP BY key ORDER BY key", {}),
            "series": self._dicts(f"SELECT count() AS series FROM {self.t('forewarn_series')} FINAL", {}),
            "cardinality_overflow": self._dicts(
                f"SELECT name, service, sum(rejected_series) AS series_not_admitted, sum(rejected_points) AS "
                f"points_not_scored, max(budget) AS budget FROM {self.t('forewarn_cardinality')} FINAL "
                "GROUP BY name, service ORDER BY 3 DESC LIMIT 50", {}),
            "models": self._dicts(f"SELECT name, max(version) AS version FROM {self.t('forewarn_models')} "
                                  "GROUP BY name ORDER BY name", {}),
            "anomalies": self._dicts(f"SELECT run, kind, count() AS n FROM {self.t('anomalies')} FINAL "
                                     "GROUP BY run, kind ORDER BY run, kind", {}),
        }  # fmt: skip

    def run_counts(self, run: str) -> dict[str, int]:
        """Anomaly rows by kind, and how many of them someone marked as false positives (anomaly
        ids do not depend on the run, so marks made in the live run count in a backtest)."""
        p = {"run": run}
        kinds = {k: int(n) for k, n in self.client.query(
            f"SELECT kind, count() FROM {self.t('anomalies')} FINAL WHERE run = {{run:String}} GROUP BY kind",
            parameters=p).result_rows}  # fmt: skip
        sql = f"""SELECT count() FROM {self.t("anomalies")} FINAL WHERE run = {{run:String}} AND anomaly_id IN
                  (SELECT anomaly_id FROM {self.t("forewarn_feedback")} WHERE label = 'false_positive')"""
        kinds["marked_false_positive"] = int(self.client.query(sql, parameters=p).result_rows[0][0])
        return kinds

    def forecast_series(self, run: str) -> list[dict]:
        """One row per series that had saturation forecasts in ``run``, with its first one."""
        sql = f"""SELECT service, name, any(labels) AS labels, any(explanation) AS explanation,
                         min(ts) AS first FROM {self.t("anomalies")} FINAL
                  WHERE run = {{run:String}} AND kind = 'forecast' GROUP BY series_id, service, name"""
        return self._dicts(sql, {"run": run})

    # -- feedback ------------------------------------------------------------------------------
    def write_feedback(
        self, anomaly_id: int, series_id: int, detector: str, label: str, note: str, at_ms: float
    ) -> None:
        self._insert(
            "forewarn_feedback",
            [[anomaly_id, series_id, detector, label, to_dt(at_ms), note]],
            ["anomaly_id", "series_id", "detector", "label", "at", "note"],
            None,
        )

    def feedback(self, until_ms: int, window_ms: int) -> dict[int, list[tuple[str, float, int]]]:
        """False-positive patterns per series: (detector family, deviation of the marked anomaly,
        its time). A mark counts from the marked anomaly's own time on (for ``window_ms``), so a
        backfill over the past honours marks made later in the live run."""
        sql = f"""SELECT f.series_id, splitByChar(':', a.detector)[1], abs(a.value - a.expected),
                         toUnixTimestamp64Milli(a.ts)
                  FROM {self.t("forewarn_feedback")} AS f FINAL
                  INNER JOIN (SELECT anomaly_id, any(detector) AS detector, any(value) AS value,
                                     any(expected) AS expected, min(ts) AS ts
                              FROM {self.t("anomalies")} GROUP BY anomaly_id) AS a
                  ON a.anomaly_id = f.anomaly_id
                  WHERE f.label = 'false_positive' AND a.ts < fromUnixTimestamp64Milli({{u:Int64}})
                    AND a.ts >= fromUnixTimestamp64Milli({{s:Int64}})"""
        out: dict[int, list[tuple[str, float, int]]] = {}
        params = {"u": until_ms, "s": until_ms - window_ms}
        for sid, fam, dev, ts in self.client.query(sql, parameters=params).result_rows:
            out.setdefault(int(sid), []).append((fam, float(dev) if dev == dev else float("inf"), int(ts)))
        return out

    # -- checkpoints and models ----------------------------------------------------------------
    def load_checkpoint(self, key: str) -> tuple[int, str] | None:
        sql = f"""SELECT toUnixTimestamp64Milli(argMax(watermark, committed_at)), argMax(state, committed_at)
                  FROM {self.t("forewarn_flow_state")} WHERE key = {{k:String}} HAVING count() > 0"""
        rows = self.client.query(sql, parameters={"k": key}).result_rows
        return (int(rows[0][0]), rows[0][1]) if rows else None

    def commit_checkpoint(self, key: str, watermark_ms: int, state: str, now_ms: float) -> None:
        self._insert(
            "forewarn_flow_state",
            [[key, to_dt(watermark_ms), datetime.fromtimestamp(now_ms / 1000.0, tz=UTC), state]],
            ["key", "watermark", "committed_at", "state"],
            None,
        )

    def checkpoints(self) -> list[tuple[str, int, datetime]]:
        sql = f"""SELECT key, toUnixTimestamp64Milli(argMax(watermark, committed_at)), max(committed_at)
                  FROM {self.t("forewarn_flow_state")} GROUP BY key ORDER BY key"""
        return [(k, int(w), c) for k, w, c in self.client.query(sql).result_rows]

    def model_versions(self) -> dict[str, int]:
        sql = f"SELECT name, max(version) FROM {self.t('forewarn_models')} GROUP BY name"
        return {n: int(v) for n, v in self.client.query(sql).result_rows}

    def load_model(self, name: str, version: int) -> tuple[dict, str] | None:
        sql = f"""SELECT metadata, blob FROM {self.t("forewarn_models")} FINAL
                  WHERE name = {{n:String}} AND version = {{v:UInt32}} LIMIT 1"""
        rows = self.client.query(sql, parameters={"n": name, "v": version}).result_rows
        return (json.loads(rows[0][0]), rows[0][1]) if rows else None

    def save_model(self, name: str, metadata: dict, blob: str, now_ms: float) -> int:
        version = self.model_versions().get(name, 0) + 1
        self._insert(
            "forewarn_models",
            [[name, version, to_dt(now_ms), json.dumps(metadata), blob]],
            ["name", "version", "created_at", "metadata", "blob"],
            None,
        )
        return version

    def signal_history(self, names: list[str], start_ms: int, end_ms: int) -> pd.DataFrame:
        sql = f"""SELECT series_id, toUnixTimestamp64Milli(ts) AS ts_ms, value, name, service, labels
                  FROM {self.t("forewarn_signals")} FINAL
                  WHERE name IN {{names:Array(String)}} AND ts >= fromUnixTimestamp64Milli({{a:Int64}})
                    AND ts < fromUnixTimestamp64Milli({{b:Int64}}) ORDER BY ts_ms"""
        df = self.client.query_df(sql, parameters={"names": names, "a": start_ms, "b": end_ms})
        return df.rename(columns={"ts_ms": "ts"})

    # -- spans: the call graph -----------------------------------------------------------------
    def arrived(self, start_ms: int, end_ms: int) -> int:
        """Spans and log records stored so far with a timestamp in [start, end): counted again
        later, the difference is what arrived after the window was scored."""
        sql = f"""
            SELECT (SELECT count() FROM {self.t("otel_traces")} WHERE Timestamp >= fromUnixTimestamp64Milli({{a:Int64}})
                        AND Timestamp < fromUnixTimestamp64Milli({{b:Int64}}))
                 + (SELECT count() FROM {self.t("otel_logs")} WHERE Timestamp >= fromUnixTimestamp64Milli({{a:Int64}})
                        AND Timestamp < fromUnixTimestamp64Milli({{b:Int64}}))"""
        return int(self.client.query(sql, parameters={"a": start_ms, "b": end_ms}).result_rows[0][0])

    def service_edges(self, start_ms: int, end_ms: int, limit: int = 200_000) -> set[tuple[str, str]]:
        """(caller, callee) service pairs from parent/child spans of the window (a bounded sample)."""
        t = self.t("otel_traces")
        sql = f"""
            WITH spans AS (
                SELECT TraceId, SpanId, ParentSpanId, ServiceName FROM {t}
                WHERE Timestamp >= fromUnixTimestamp64Milli({{a:Int64}}) AND Timestamp < fromUnixTimestamp64Milli({{b:Int64}})
                LIMIT {{lim:UInt64}})
            SELECT DISTINCT p.ServiceName, c.ServiceName
            FROM spans AS c INNER JOIN spans AS p ON c.TraceId = p.TraceId AND c.ParentSpanId = p.SpanId
            WHERE c.ServiceName != p.ServiceName"""
        rows = self.client.query(sql, parameters={"a": start_ms, "b": end_ms, "lim": limit}).result_rows
        return {(str(a), str(b)) for a, b in rows}

    def call_edges(
        self, services: list[str], start_ms: int, end_ms: int, limit: int = 200_000
    ) -> tuple[set[tuple[tuple[str, str], tuple[str, str]]], set[tuple[tuple[str, str], tuple[str, str]]]]:
        """((caller service, operation), (callee service, operation)) pairs from parent/child spans
        of these services in the window (a bounded sample), and apart from them the *steps*: pairs
        whose child is an internal span that an instrumentation library made inside its parent's
        service (Express's ``request handler``, ASGI's ``<route> http send``), which wrap a part of
        the operation rather than call anything (see :func:`.correlate.rank_suspects`)."""
        if not services:
            return set(), set()
        t = self.t("otel_traces")
        sql = f"""
            WITH spans AS (
                SELECT TraceId, SpanId, ParentSpanId, ServiceName, SpanName, SpanKind, ScopeName FROM {t}
                WHERE Timestamp >= fromUnixTimestamp64Milli({{a:Int64}}) AND Timestamp < fromUnixTimestamp64Milli({{b:Int64}})
                  AND ServiceName IN {{svcs:Array(String)}}
                LIMIT {{lim:UInt64}})
            SELECT DISTINCT p.ServiceName, p.SpanName, c.ServiceName, c.SpanName,
                c.ServiceName = p.ServiceName AND c.SpanKind IN ('Internal', 'SPAN_KIND_INTERNAL')
                    AND positionCaseInsensitive(c.ScopeName, 'opentelemetry') > 0
            FROM spans AS c INNER JOIN spans AS p ON c.TraceId = p.TraceId AND c.ParentSpanId = p.SpanId
            WHERE (c.ServiceName, c.SpanName) != (p.ServiceName, p.SpanName)"""
        params = {"a": start_ms, "b": end_ms, "svcs": services, "lim": limit}
        rows = self.client.query(sql, parameters=params).result_rows
        edges, steps = set(), set()
        for ps, po, cs, co, step in rows:
            (steps if step else edges).add(((str(ps), str(po)), (str(cs), str(co))))
        return edges, steps

    def attribute_values(
        self,
        service: str,
        operation: str,
        start_ms: int,
        end_ms: int,
        baseline_ms: int,
        max_spans: int = 200_000,
    ) -> list[tuple]:
        """Per span/resource attribute value of ``service`` (``operation``) in the window: (key,
        value, spans, excess latency over the baseline window's median, errors, and the window's
        totals of those three). Values seen on fewer than 5 spans are left out (ids)."""
        t = self.t("otel_traces")
        op = "AND SpanName = {op:String}" if operation else ""
        sql = f"""
            WITH (SELECT quantileExact(0.5)(Duration) FROM {t}
                  WHERE ServiceName = {{svc:String}} {op}
                    AND Timestamp >= fromUnixTimestamp64Milli({{b:Int64}}) AND Timestamp < fromUnixTimestamp64Milli({{a:Int64}})
                 ) AS base_median,
            spans AS (
                SELECT greatest(toFloat64(Duration) - base_median, 0) AS excess, StatusCode = 'Error' AS err,
                       arrayConcat(arrayMap((k, v) -> (k, v), mapKeys(SpanAttributes), mapValues(SpanAttributes)),
                                   arrayMap((k, v) -> (k, v), mapKeys(ResourceAttributes), mapValues(ResourceAttributes)))
                           AS kv
                FROM {t}
                WHERE ServiceName = {{svc:String}} {op}
                  AND Timestamp >= fromUnixTimestamp64Milli({{a:Int64}}) AND Timestamp < fromUnixTimestamp64Milli({{e:Int64}})
                LIMIT {{lim:UInt64}})
            SELECT pair.1 AS key, pair.2 AS value, count() AS n, sum(excess) AS ex, sum(err) AS errs,
                   (SELECT count() FROM spans) AS total_n, (SELECT sum(excess) FROM spans) AS total_ex,
                   (SELECT sum(err) FROM spans) AS total_err
            FROM spans ARRAY JOIN kv AS pair
            WHERE pair.1 NOT IN ('service.name', 'telemetry.sdk.name', 'telemetry.sdk.language', 'telemetry.sdk.version')
            GROUP BY key, value HAVING n >= 5"""
        params = {"svc": service, "op": operation, "a": start_ms, "e": end_ms, "b": start_ms - baseline_ms,
                  "lim": max_spans}  # fmt: skip
        return list(self.client.query(sql, parameters=params).result_rows)

    # -- training ------------------------------------------------------------------------------
    def seasonal_stats(self, start_ms: int, end_ms: int, min_days: int, min_points: int) -> pd.DataFrame:
        """Per series and hour of the day (UTC): median and IQR-based sigma of the stored signals,
        for series with history over at least ``min_days`` days and ``min_points`` points an hour."""
        sql = f"""
            SELECT series_id, toHour(ts, 'UTC') AS slot,
                   median(value) AS med,
                   (quantile(0.75)(value) - quantile(0.25)(value)) / 1.349 AS sigma, count() AS n
            FROM {self.t("forewarn_signals")} FINAL
            WHERE ts >= fromUnixTimestamp64Milli({{a:Int64}}) AND ts < fromUnixTimestamp64Milli({{b:Int64}})
              AND series_id IN (
                  SELECT series_id FROM {self.t("forewarn_signals")}
                  WHERE ts >= fromUnixTimestamp64Milli({{a:Int64}}) AND ts < fromUnixTimestamp64Milli({{b:Int64}})
                  GROUP BY series_id HAVING max(ts) - min(ts) >= {{days:UInt32}} * 86400)
            GROUP BY series_id, slot HAVING n >= {{min_n:UInt32}}"""
        return self.frame(sql, {"a": start_ms, "b": end_ms, "days": min_days, "min_n": min_points})


def cli_store(settings) -> FlowStore:
    """The store for a CLI command: its own client, or, when a running forewarn holds the embedded
    store, a :class:`GatewayClient` through that process."""
    from forewarn.storage.client import is_embedded, open_storage
    from forewarn.storage.gateway import find_owner

    dsn, db = settings.storage_dsn, settings.storage.database
    if is_embedded(dsn) and (owner := find_owner(dsn)):
        return FlowStore(GatewayClient(owner, db), db)
    return FlowStore(open_storage(settings, dsn), db)


class GatewayClient:
    """The two calls :class:`FlowStore` makes (``query``, ``insert``) through the gateway of the
    process that holds an embedded store; parameters are bound here as SQL literals
    (``format_query_value``)."""

    def __init__(self, owner: dict, database: str):
        self.owner, self.database = owner, database

    def _run(self, sql: str, fmt: str) -> bytes:
        from forewarn.storage.gateway import query_owner

        return b"".join(query_owner(self.owner, sql, fmt, self.database))

    def query(self, sql: str, parameters: dict[str, Any] | None = None):
        from types import SimpleNamespace

        from clickhouse_connect.driver.binding import external_bind_re, format_query_value

        bound = external_bind_re.sub(lambda m: str(format_query_value((parameters or {})[m.group(1)])), sql)
        out = json.loads(self._run(bound, "JSONCompact") or b"{}")
        names = [c["name"] for c in out.get("meta", [])]
        return SimpleNamespace(column_names=names, result_rows=[tuple(r) for r in out.get("data", [])])

    def insert(
        self, table: str, rows: list[list], column_names: list[str], database: str, settings=None
    ) -> None:
        from clickhouse_connect.driver.binding import format_query_value

        # INSERT ... SELECT: the gateway appends an output FORMAT, which a VALUES insert would parse as data
        values = " UNION ALL ".join(
            "SELECT " + ", ".join(str(format_query_value(v)) for v in r) for r in rows
        )
        self._run(
            f"INSERT INTO {q(database)}.{q(table)} ({', '.join(map(q, column_names))}) {values}",
            "TabSeparated",
        )
