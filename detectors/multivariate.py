"""Multivariate anomalies over per-service feature vectors (e.g. rate, error ratio, p99 latency,
CPU) with scikit-learn's IsolationForest plus whitened PCA, trained in batch, scored on new vectors.

The score is calibrated (share of training vectors that looked more normal, or the per-feature
robust tail probability if larger), so the committed threshold applies here too; each anomaly names the features that
contributed most (their robust distance from the training median, as shares of the total).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from forewarn.detectors.multiseries import Explanation


class MultivariateDetector:
    """IsolationForest on feature vectors, with calibrated scores and top contributing features.

    >>> rng = np.random.default_rng(0)
    >>> train = rng.normal(0, 1, (2000, 3))
    >>> det = MultivariateDetector(["rate", "errors", "p99"], seed=1).fit(train)
    >>> ex = det.explain(np.array([[0.1, 0.2, 9.0]]))[0]
    >>> ex.score > 0.99, ex.contributors[0][0]
    (True, 'p99')
    """

    def __init__(self, features: Sequence[str], n_estimators: int = 100, seed: int = 0) -> None:
        self.features = list(features)
        self.n_estimators = n_estimators
        self.seed = seed

    def fit(self, x: np.ndarray) -> MultivariateDetector:
        from sklearn.ensemble import IsolationForest

        x = self._check(x)
        self.median = np.nanmedian(x, axis=0)
        mad = np.nanmedian(np.abs(x - self.median), axis=0) * 1.4826
        self.scale = np.where(mad > 0, mad, np.nanstd(x, axis=0) + 1e-12)
        from sklearn.decomposition import PCA

        # whitened principal components: a broken correlation is an extreme value on a minor one
        self.pca = PCA(whiten=True, random_state=self.seed).fit(np.nan_to_num((x - self.median) / self.scale))
        self.forest = IsolationForest(n_estimators=self.n_estimators, random_state=self.seed).fit(
            np.nan_to_num(x - self.median)
        )
        self.train_scores = np.sort(-self.forest.score_samples(np.nan_to_num(x - self.median)))
        return self

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.features):
            raise ValueError(f"expected vectors of {len(self.features)} features {self.features}")
        return x

    def score(self, x: np.ndarray) -> np.ndarray:
        """Calibrated score in [0, 1] per row: the larger of the forest's (share of training vectors
        that looked more normal) and the largest robust z of a feature or whitened principal
        component as a two-sided tail (IsolationForest alone under-rates one extreme feature among
        normal ones, and a broken correlation)."""
        from scipy.special import ndtr

        x = self._check(x)
        raw = -self.forest.score_samples(np.nan_to_num(x - self.median))
        forest = np.searchsorted(self.train_scores, raw, side="right") / (len(self.train_scores) + 1)
        z = (x - self.median) / self.scale
        pcs = self.pca.transform(np.nan_to_num(z))
        zmax = np.fmax(np.nanmax(np.abs(z), axis=1, initial=0.0), np.max(np.abs(pcs), axis=1, initial=0.0))
        return np.maximum(forest, (2 * ndtr(zmax) - 1) ** (2 * x.shape[1]))

    def explain(self, x: np.ndarray) -> list[Explanation]:
        x = self._check(x)
        scores = self.score(x)
        z = np.abs(x - self.median) / self.scale
        out = []
        for row, s, zr in zip(x, scores, z, strict=True):
            share = np.nan_to_num(zr) / max(float(np.nansum(zr)), 1e-12)
            order = np.argsort(-share)[:3]
            contrib = tuple((self.features[i], round(float(share[i]), 3)) for i in order)
            top = int(order[0])
            lo = float(self.median[top] - 3 * self.scale[top])
            hi = float(self.median[top] + 3 * self.scale[top])
            text = "multivariate: unusual combination, mostly " + ", ".join(
                f"{self.features[i]}={row[i]:.4g} (usual ~{self.median[i]:.4g})" for i in order[:2]
            )
            out.append(
                Explanation(
                    "multivariate", float(row[top]), float(self.median[top]), lo, hi, float(s), text, contrib
                )
            )
        return out
