"""Tail probabilities of a non-negative test statistic from two running moments, by table look-up.

The statistic ``|z|`` is modelled as a generalised Gaussian whose shape ``b`` matches the moment
ratio ``sqrt(E z^2) / E|z|`` (1.2533 for Gaussian noise, 1.414 for Laplace, larger for spikier
series) and whose scale matches ``E z^2``. Its upper tail is the regularised incomplete gamma
function ``Q(1/b, (z/s)^b)``; evaluating that with scipy per point is slow, so the shapes are put on
a grid and ``log Q`` is tabulated, with the asymptotic series beyond the table.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gamma, gammaincc, gammainccinv, gammaln

_SHAPES = np.geomspace(4.0, 0.25, 96)  # decreasing shape = heavier tails
_RATIOS = np.sqrt(gamma(3 / _SHAPES) * gamma(1 / _SHAPES)) / gamma(2 / _SHAPES)  # increasing
_A = 1.0 / _SHAPES
_SCALE = np.sqrt(gamma(_A) / gamma(3 * _A))  # s = rms * _SCALE for the generalised Gaussian
_U_MAX, _U_STEP = 40.0, 0.02
_U = np.arange(0.0, _U_MAX + _U_STEP, _U_STEP)
with np.errstate(divide="ignore"):
    _LOGQ = np.log(gammaincc(_A[:, None], _U[None, :]))  # (shapes, u)


class GGTail:
    """Tail probabilities ``P(|Z| >= z)`` for a generalised Gaussian fitted to running moments.

    >>> t = GGTail()
    >>> m1, m2 = np.sqrt(2 / np.pi), 1.0  # moments of |N(0, 1)|
    >>> [float(np.round(t.tail(np.array(v), np.array(m1), np.array(m2)), 3)) for v in (1.0, 2.0, 3.0)]
    [0.317, 0.046, 0.003]
    """

    def shape_index(self, m1: np.ndarray, rms: np.ndarray) -> np.ndarray:
        """Fractional position of the fitted shape on the grid (96 shapes, 3% apart)."""
        ratio = rms / np.maximum(m1, 1e-300)
        return np.interp(ratio, _RATIOS, np.arange(len(_SHAPES), dtype=np.float64))

    def tail(self, z: np.ndarray, m1: np.ndarray, m2: np.ndarray) -> np.ndarray:
        """``P(|Z| >= z)``; 1 where any input is missing."""
        bad = ~(np.isfinite(z) & np.isfinite(m1) & np.isfinite(m2) & (m2 > 0))
        z, m1, m2 = np.where(bad, 0.0, z), np.where(bad, 1.0, m1), np.where(bad, 1.0, m2)
        rms = np.sqrt(m2)
        i = np.rint(self.shape_index(m1, rms)).astype(np.intp)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            u = (z / (rms * _SCALE[i])) ** _SHAPES[i]
            pos = np.minimum(u, _U_MAX) / _U_STEP
            j = np.minimum(pos.astype(np.intp), len(_U) - 2)
            f = pos - j
            lq = (1 - f) * _LOGQ[i, j] + f * _LOGQ[i, j + 1]
            far = np.flatnonzero(u > _U_MAX)
            if len(far):  # beyond the table: Q(a, u) ~ u^(a-1) e^-u / Gamma(a)
                uf, a = u.flat[far], _A[i.flat[far]]
                lq.flat[far] = (a - 1) * np.log(uf) - uf - gammaln(a)
        return np.where(bad, 1.0, np.exp(lq))

    def limit(self, m1: np.ndarray, m2: np.ndarray, p: float) -> np.ndarray:
        """The statistic value whose tail probability is ``p``."""
        bad = ~(np.isfinite(m1) & np.isfinite(m2) & (m2 > 0))
        m1, m2 = np.where(bad, 1.0, m1), np.where(bad, 1.0, m2)
        rms = np.sqrt(m2)
        i = np.rint(self.shape_index(m1, rms)).astype(np.intp)
        return rms * _SCALE[i] * _quantile(p)[i]


_QCACHE: dict[float, np.ndarray] = {}


def _quantile(p: float) -> np.ndarray:
    """Per grid shape, ``(z/s)`` at tail probability ``p``."""
    if p not in _QCACHE:
        _QCACHE[p] = gammainccinv(_A, p) ** (1.0 / _SHAPES)
    return _QCACHE[p]
