"""Reads and writes of the flows tables (migration 250), all through parameterised clickhouse-connect calls.

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

    def open_incidents(self, run: str, since_ms: int) -> list[dict]:
        sql = f"""SELECT * FROM {self.t("incidents")} FINAL
                  WHERE run = {{run:String}} AND NOT resolved AND updated_at >= fromUnixTimestamp64Milli({{s:Int64}})
                  ORDER BY started_at"""
        res = self.client.query(sql, parameters={"run": run, "s": since_ms})
        return [dict(zip(res.column_names, r, strict=True)) for r in res.result_rows]

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
        res = self.client.query(
            f"SELECT * FROM {self.t('anomalies')} FINAL WHERE anomaly_id = {{id:UInt64}} ORDER BY detected_at LIMIT 1",
            parameters={"id": anomaly_id},
        )
        return dict(zip(res.column_names, res.result_rows[0], strict=True)) if res.result_rows else None

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
