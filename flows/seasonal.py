"""Seasonal baselines from history: per series and hour of the day (UTC), the median and a robust
spread (IQR) of its stored signal values, fitted by ``train`` in ClickHouse and used by ``score``.

A point is unusual for *its hour* when it departs from that hour's median by more than ``K``
robust sigmas (and a floor), even if the value is ordinary at other hours (a nightly batch load
at noon, a busy-hour traffic level at 4 a.m.). Only series with history over at least
``MIN_DAYS`` days and ``MIN_POINTS`` points per hour get a baseline. Weekly cycles are left to the
detectors' own seasonal branches. Stored as a versioned ``seasonal`` model: arrays in an npz
blob (no pickle).

>>> b = SeasonalBaseline.from_arrays({"series_id": np.array([7], dtype=np.uint64), "slot": np.array([3]),
...                                   "median": np.array([100.0]), "sigma": np.array([5.0])}, version=1)
>>> import pandas as pd
>>> ts = 3 * 3600 * 1000 + 4 * 86400 * 1000  # 1970-01-05 03:00 UTC -> slot 3
>>> sig = pd.DataFrame({"series_id": [7, 7], "ts": [ts, ts], "value": [103.0, 190.0], "name": ["x", "x"]})
>>> [(i, round(z, 1)) for i, med, z in b.hits(sig)]
[(1, 18.0)]
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from forewarn.flows.coldstart import floor
from forewarn.flows.signals import is_up_only
from forewarn.flows.store import decode_state, encode_state

log = logging.getLogger(__name__)
NAME = "seasonal"
K = 8.0
MIN_DAYS = 2
MIN_POINTS = 3
SLOTS = 24


def slot_of(ts_ms: np.ndarray) -> np.ndarray:
    """Hour of the day, UTC."""
    return (np.asarray(ts_ms, dtype=np.int64) // 3_600_000 % SLOTS).astype(np.int64)


class SeasonalBaseline:
    def __init__(self, table: pd.DataFrame, version: int):
        self.table, self.version = table, version

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], version: int) -> SeasonalBaseline:
        t = pd.DataFrame({k: arrays[k] for k in ("series_id", "slot", "median", "sigma")})
        t["series_id"] = t["series_id"].astype(np.uint64).astype(np.int64)
        return cls(t.set_index(["series_id", "slot"]), version)

    def hits(self, sig: pd.DataFrame) -> list[tuple[int, float, float]]:
        """(row position in ``sig``, hour median, z) of points unusual for their hour."""
        if sig.empty or self.table.empty:
            return []
        key = pd.MultiIndex.from_arrays(
            [sig["series_id"].to_numpy(np.int64), slot_of(sig["ts"].to_numpy())], names=["series_id", "slot"]
        )
        ref = self.table.reindex(key)
        med, sigma = ref["median"].to_numpy(), ref["sigma"].to_numpy()
        v = sig["value"].to_numpy(float)
        names = sig["name"].tolist()
        flo = np.fromiter((floor(n) for n in names), float, len(names))
        up = np.fromiter((is_up_only(n) for n in names), bool, len(names))
        scale = np.maximum.reduce([sigma, 0.05 * np.abs(med), flo / K, np.full(len(v), 1e-9)])
        with np.errstate(invalid="ignore"):
            z = (v - med) / scale
            bad = np.where(up, z, np.abs(z)) > K
        return [(int(i), float(med[i]), float(z[i])) for i in np.flatnonzero(bad & np.isfinite(med))]


def train_seasonal(store, start_ms: int, end_ms: int, now_ms: float) -> int | None:
    """Fit hour-of-week baselines in ClickHouse over the stored signals; the new version or None."""
    sql = f"""
        SELECT series_id, toHour(ts, 'UTC') AS slot,
               median(value) AS med,
               (quantile(0.75)(value) - quantile(0.25)(value)) / 1.349 AS sigma, count() AS n
        FROM {store.t("forewarn_signals")} FINAL
        WHERE ts >= fromUnixTimestamp64Milli({{a:Int64}}) AND ts < fromUnixTimestamp64Milli({{b:Int64}})
          AND series_id IN (
              SELECT series_id FROM {store.t("forewarn_signals")}
              WHERE ts >= fromUnixTimestamp64Milli({{a:Int64}}) AND ts < fromUnixTimestamp64Milli({{b:Int64}})
              GROUP BY series_id HAVING max(ts) - min(ts) >= {{days:UInt32}} * 86400)
        GROUP BY series_id, slot HAVING n >= {{min_n:UInt32}}"""
    params = {"a": start_ms, "b": end_ms, "days": MIN_DAYS, "min_n": MIN_POINTS}
    df = store.client.query_df(sql, parameters=params)
    if df.empty:
        return None
    arrays = {
        "series_id": df["series_id"].to_numpy(np.uint64),
        "slot": df["slot"].to_numpy(np.int64),
        "median": df["med"].to_numpy(float),
        "sigma": df["sigma"].to_numpy(float),
    }
    meta = {"trainer": "forewarn", "series": int(df["series_id"].nunique()), "slots": len(df),
            "trained_from": start_ms, "trained_to": end_ms, "k": K}  # fmt: skip
    return store.save_model(NAME, meta, encode_state(meta, arrays), now_ms)


def load(blob: str, version: int) -> SeasonalBaseline:
    _, arrays = decode_state(blob)
    return SeasonalBaseline.from_arrays(arrays, version)
