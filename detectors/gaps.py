"""Missing sampling slots become missing points, so that views count time rather than rows.

A file or stream with a stretch of rows missing (exporter down, collector restart) would otherwise
shift the daily / weekly views' phase by the length of the gap: the seasonal branch would compare
each later point with the wrong time of day.
"""

from __future__ import annotations

import numpy as np

MAX_FILL = 2016  # at most this many missing slots are filled per gap (a week of 5-minute points)


def missing_slots(
    timestamps: np.ndarray, step_s: float, previous: float = float("nan")
) -> tuple[np.ndarray, bool]:
    """How many sampling slots are missing before each point (0 almost everywhere), and whether the
    timestamps were in order throughout.

    Filling stops at the first timestamp that goes backwards or cannot be parsed, and the caller stops
    filling for good once ``False`` is returned: rows are then scored as they come, and a prefix of
    a stream is always scored like the start of the whole stream.

    >>> missing_slots(np.array([0, 300, 600, 1500, 1800.0]), 300.0)[0].tolist()
    [0, 0, 0, 2, 0]
    >>> missing_slots(np.array([0, 300, 200, 1500.0]), 300.0)
    (array([0, 0, 0, 0]), False)
    """
    t = np.asarray(timestamps, dtype=np.float64)
    out = np.zeros(len(t), dtype=np.int64)
    if not len(t) or not np.isfinite(step_s) or step_s <= 0:
        return out, False
    d = np.diff(np.concatenate([[previous], t]))
    if np.isnan(previous):
        d[0] = step_s if np.isfinite(t[0]) else np.nan
    bad = np.flatnonzero(~np.isfinite(d) | (d < 0))
    stop = int(bad[0]) if len(bad) else len(t)
    out[:stop] = np.clip(np.rint(d[:stop] / step_s).astype(np.int64) - 1, 0, MAX_FILL)
    return out, stop == len(t)


def expand(values: np.ndarray, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``values`` with ``slots[i]`` NaN points inserted before point ``i``, and where each original
    point landed.

    >>> x, at = expand(np.array([1.0, 2.0, 3.0]), np.array([0, 2, 0]))
    >>> x.tolist(), at.tolist()
    ([1.0, nan, nan, 2.0, 3.0], [0, 3, 4])
    """
    at = np.arange(len(values)) + np.cumsum(slots)
    out = np.full(len(values) + int(slots.sum()), np.nan)
    out[at] = values
    return out, at
