"""Per-service RED combinations: one :class:`.multivariate.MultivariateDetector` (IsolationForest
plus whitened PCA) per service over its request rate, error ratio and p95 latency, trained in batch
(``forewarn flows train``) and scored on the stream.

The streaming ensemble judges each series alone; the forest judges the combination (a little more
latency *and* a few more errors *and* less traffic), which no single series shows. A point counts
when its calibrated score reaches the committed threshold; per-feature spreads are floored (log
rate, ratio, log ms) so a feature that never moved in training does not make every later wobble
infinitely rare. Findings are on a derived series ``red.multivariate`` of the service.

>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> hist = pd.DataFrame([("web", t, n, v) for t in range(300) for n, v in
...     (("red.rate", 50 + rng.normal(0, 2)), ("red.error_ratio", 0.01), ("red.p95", 80 + rng.normal(0, 4)))],
...     columns=["service", "ts", "name", "value"]).assign(labels=[{}] * 900)
>>> forests = RedForests({"web": (fit_service(red_matrix(hist), seed=1), 1)})
>>> now = hist[hist["ts"] == 299].assign(ts=300, series_id=1, direction=0, family="x").reset_index(drop=True)
>>> now.loc[now["name"] == "red.p95", "value"] = 400.0
>>> [(f.name, f.component) for f in forests.score(now).onsets]
[('red.multivariate', 'multivariate')]
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from forewarn.detectors.multivariate import MultivariateDetector
from forewarn.detectors.scoring import EpisodicDetector, Finding, Result

FEATURES = ("red.rate", "red.error_ratio", "red.p95")
SCALE_FLOOR = np.array([0.05, 0.01, 0.05])  # log-rate, ratio, log-ms
NAME = "red.multivariate"


def red_matrix(points: pd.DataFrame) -> pd.DataFrame:
    """Service-level RED points pivoted to one row per (service, ts) with the features."""
    empty = pd.DataFrame(columns=["service", "ts", *FEATURES])
    if points.empty:
        return empty
    sel = points[points["name"].isin(FEATURES) & points["labels"].map(lambda x: not x)]
    if sel.empty:
        return empty
    wide = sel.pivot_table(
        index=["service", "ts"], columns="name", values="value", aggfunc="last"
    ).reset_index()
    for f in FEATURES:
        if f not in wide:
            wide[f] = np.nan
    return wide.dropna(subset=list(FEATURES))


def features(wide: pd.DataFrame) -> np.ndarray:
    x = wide[list(FEATURES)].to_numpy(float)
    return np.column_stack([np.log1p(x[:, 0]), x[:, 1], np.log1p(x[:, 2])])


def fit_service(wide: pd.DataFrame, seed: int) -> MultivariateDetector:
    det = MultivariateDetector(["log1p(red.rate)", "red.error_ratio", "log1p(red.p95)"], seed=seed)
    det.fit(features(wide))
    det.scale = np.maximum(det.scale, SCALE_FLOOR)
    return det


class RedForests(EpisodicDetector):
    """The trained forests by service, with their versions; a :class:`.scoring.Detector`."""

    name = "iforest"

    def __init__(self, models: dict[str, tuple[MultivariateDetector, int]], threshold: float = 0.999):
        super().__init__()
        self.models, self.threshold = models, threshold

    def score(self, points: pd.DataFrame) -> Result:
        out = Result()
        if not self.models or points.empty:
            return out
        rows = points[(points["name"] == "red.rate") & points["labels"].map(lambda x: not x)]
        row_of = {(s, int(t)): i for i, s, t in zip(rows.index, rows["service"], rows["ts"], strict=True)}
        wide = red_matrix(points)
        for service, g in wide.groupby("service", sort=True):
            got = self.models.get(service)
            if got is None:
                continue
            det, version = got
            g = g.sort_values("ts")
            explained = det.explain(features(g))
            sid = service_series(service)
            for ts, ex in zip(g["ts"].astype(int), explained, strict=True):
                onset, firing = self.episodes.step(sid, ex.score >= self.threshold)
                if onset:
                    out.onsets.append(Finding(int(row_of[(service, ts)]), ex.score, float("nan"), "multivariate",
                                              ex.text, detail={"version": version}, name=NAME, series_id=sid))  # fmt: skip
                if firing:
                    out.firing[sid] = ts
        out.onsets.sort(key=lambda f: f.row)
        return out


def service_series(service: str) -> int:
    """Stable id of a service's derived ``red.multivariate`` series."""
    import hashlib

    key = "\x1f".join([NAME, service]).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1
