"""Many named series at once: long-format points in, explained anomalies out, state that survives a
restart.

This is the interface the flows call with the points fetched from ClickHouse on each tick.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from forewarn.detectors.ensemble import EnsembleCore, EnsembleParams, ScoreBlock, params_dict

FORMAT = "forewarn.detectors.ensemble"
FORMAT_VERSION = 1
ADDED_STATE = frozenset(
    {"ew_big", "ew_fit", "ew_sparse", "firing", "since_above", "since_end", "since_hot", "hot_from"}
)  # state arrays newer than format version 1: may be absent


# parameters that decide alerts from the scores but shape no state array
POLICY = frozenset({"threshold", "warmup", "handover", "ramp", "refractory"})


@dataclass(frozen=True)
class Explanation:
    """Why a point was flagged, in numbers and in words."""

    component: str  # which test fired: spike, level, trend, variance, stuck, saturation, multivariate
    observed: float
    expected: float
    lower: float
    upper: float
    score: float
    text: str
    contributors: tuple[tuple[str, float], ...] = ()  # multivariate: (feature, share of the score)


@dataclass(frozen=True)
class Anomaly:
    """One alerting point of one series."""

    series_id: str
    timestamp: float
    value: float
    score: float
    explanation: Explanation


def describe(component: str, observed: float, expected: float, lower: float, upper: float) -> str:
    """Plain-words reason, e.g. ``spike: 300 is above the expected 95–105 (usual ~100)``.

    >>> describe("spike", 300.0, 100.0, 95.0, 105.0)
    'spike: 300 is above the expected 95–105 (usual ~100)'
    """
    where = "above" if observed > upper else "below" if observed < lower else "inside"
    what = {
        "spike": "spike: {obs} is {where} the expected {lo}–{hi} (usual ~{exp})",
        "level": "level shift: recent values around {obs} are {where} the expected {lo}–{hi} (was ~{exp})",
        "trend": "trend change: the series drifted to {obs} from ~{exp} (expected {lo}–{hi})",
        "variance": "variance change: {obs} with the usual spread {lo}–{hi} around ~{exp} changed",
        "stuck": "stuck: {obs} has repeated for an unusually long run (usual ~{exp}, {lo}–{hi})",
    }.get(component, component + ": {obs} is {where} the expected {lo}–{hi} (usual ~{exp})")
    g = "{:.4g}".format
    return what.format(obs=g(observed), where=where, lo=g(lower), hi=g(upper), exp=g(expected))


def explain_block(block: ScoreBlock, r: int, c: int) -> Explanation:
    """The explanation of point (r, c) of a scored block, in the series' own units."""
    comp = block.components[int(block.component[r, c])]
    obs, exp = float(block.observed[r, c]), float(block.expected[r, c])
    lo, hi = float(block.lower[r, c]), float(block.upper[r, c])
    text = describe(comp, obs, exp, lo, hi)
    if block.branch is not None and block.branch[r, c] > 0:
        text += f", judged against {block.views[block.branch[r, c]]}"
    return Explanation(comp, obs, exp, lo, hi, float(block.score[r, c]), text)


class MultiSeriesDetector:
    """The default ensemble over any number of named series that may appear at any time.

    ``periods`` (points, e.g. ``seasonal_periods(step_s)``) adds seasonal branches: each point is
    also compared with the same phase of the last periods. ``update`` takes long-format points (one
    array each of series ids, timestamps, values), scores each series' points in timestamp order against that series' own past, and returns the
    anomalies with explanations. Series seen for the first time start from empty state.

    >>> det = MultiSeriesDetector()
    >>> t = np.arange(400.0)
    >>> v = 10 + np.sin(t / 50) + np.random.default_rng(1).normal(0, 0.1, 400)
    >>> v[350] = 13
    >>> found = det.update(["a"] * 400, t, v)
    >>> [(a.series_id, a.timestamp, a.explanation.component) for a in found]
    [('a', 350.0, 'spike')]
    """

    def __init__(self, params: EnsembleParams | None = None, periods: tuple[int, ...] = ()) -> None:
        self.params = params or EnsembleParams()
        self.core = EnsembleCore(0, self.params, periods)
        self.index: dict[str, int] = {}
        self.last_scores: dict[str, np.ndarray] = {}
        self.last_firing: dict[str, np.ndarray] = {}
        self.last_active: dict[str, np.ndarray] = {}  # firing points that still deviate
        self.last_times: dict[str, np.ndarray] = {}  # the timestamps those flags belong to

    @property
    def series_ids(self) -> list[str]:
        return list(self.index)

    def _rows(self, ids: Sequence[str]) -> np.ndarray:
        fresh = [s for s in dict.fromkeys(ids) if s not in self.index]
        for s in fresh:
            self.index[s] = len(self.index)
        if fresh:
            self.core.add_series(len(fresh))
        return np.array([self.index[s] for s in ids], dtype=np.int64)

    def update(
        self, series_ids: Sequence[str], timestamps: Sequence[float], values: Sequence[float]
    ) -> list[Anomaly]:
        ids = np.asarray(series_ids, dtype=object)
        ts = np.asarray(timestamps, dtype=np.float64)
        vs = np.asarray(values, dtype=np.float64)
        if not len(ids) == len(ts) == len(vs):
            raise ValueError("series_ids, timestamps and values must have the same length")
        if not len(ids):
            return []
        order = np.lexsort((ts, ids.astype(str)))  # per series, in timestamp order (stable)
        ids, ts, vs = ids[order], ts[order], vs[order]
        uniq, start, count = np.unique(ids.astype(str), return_index=True, return_counts=True)
        rows = self._rows(list(uniq))
        found: list[Anomaly] = []
        self.last_scores = {}
        self.last_firing = {}
        self.last_active = {}
        self.last_times = {}
        # Series with the same number of new points are scored together as one matrix.
        for k in np.unique(count):
            sel = np.flatnonzero(count == k)
            idx = start[sel][:, None] + np.arange(k)[None, :]
            block = self.core.update(vs[idx], rows=rows[sel])
            times = ts[idx]
            for j, sid in enumerate(uniq[sel]):
                self.last_scores[str(sid)] = block.score[j]
                self.last_firing[str(sid)] = block.firing[j]
                self.last_active[str(sid)] = block.active[j]
                self.last_times[str(sid)] = times[j]
            for r, c in zip(*np.nonzero(block.alert), strict=True):
                ex = explain_block(block, r, c)
                found.append(
                    Anomaly(str(uniq[sel][r]), float(ts[idx][r, c]), float(vs[idx][r, c]), ex.score, ex)
                )
        found.sort(key=lambda a: (a.timestamp, a.series_id))
        return found

    # -- state ---------------------------------------------------------------------------------
    def snapshot(self) -> tuple[dict, dict[str, np.ndarray]]:
        """Versioned metadata (JSON-able) and the state arrays."""
        meta = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "params": params_dict(self.params),
            "series_ids": self.series_ids,
            "periods": list(self.core.periods),
        }
        return meta, dict(self.core.state)

    @classmethod
    def restore(
        cls, meta: dict, arrays: dict[str, np.ndarray], policy: dict | None = None
    ) -> MultiSeriesDetector:
        """The snapshotted detector; ``policy`` overrides parameters that shape no state (the
        threshold, the warm-up, the hand-over), so a changed configuration applies after a restart."""
        if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"not a {FORMAT} v{FORMAT_VERSION} snapshot: {meta.get('format')} v{meta.get('version')}"
            )
        known = {f.name for f in fields(EnsembleParams)}
        p = {k: v for k, v in meta["params"].items() if k in known}
        p["components"] = tuple(p["components"])
        bad = set(policy or {}) - POLICY
        if bad:
            raise ValueError(f"not policy parameters (they shape the state): {sorted(bad)}")
        p.update(policy or {})
        det = cls(EnsembleParams(**p), tuple(meta.get("periods", ())))
        ids = list(meta["series_ids"])
        det.core.add_series(len(ids))
        det.index = {s: i for i, s in enumerate(ids)}
        for key, ref in det.core.state.items():
            if key not in arrays and key in ADDED_STATE:
                continue  # a snapshot from before this array existed: it starts empty
            if key not in arrays:
                raise ValueError(f"snapshot lacks state array {key!r}")
            arr = np.asarray(arrays[key])
            if arr.shape != ref.shape or arr.dtype != ref.dtype:
                raise ValueError(
                    f"snapshot array {key} has shape {arr.shape} {arr.dtype}, expected {ref.shape}"
                )
            det.core.state[key] = arr.copy()
        return det

    def save(self, path: str | Path) -> Path:
        """Write ``<path>.json`` + ``<path>.npz`` (no pickle), atomically replacing older ones."""
        meta, arrays = self.snapshot()
        return save_state(path, meta, arrays)

    @classmethod
    def load(cls, path: str | Path) -> MultiSeriesDetector:
        return cls.restore(*load_state(path))


def save_state(path: str | Path, meta: dict, arrays: dict[str, np.ndarray]) -> Path:
    base = Path(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    tmp_npz = base.with_name(base.name + ".npz.tmp")
    with open(tmp_npz, "wb") as f:
        np.savez_compressed(f, **arrays)
    tmp_json = base.with_name(base.name + ".json.tmp")
    tmp_json.write_text(json.dumps(meta))
    tmp_npz.replace(base.with_name(base.name + ".npz"))
    tmp_json.replace(base.with_name(base.name + ".json"))
    return base


def load_state(path: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    base = Path(path)
    meta = json.loads(base.with_name(base.name + ".json").read_text())
    with np.load(base.with_name(base.name + ".npz"), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return meta, arrays
