"""Missing sampling slots become missing points, so that views count time rather than rows.

A file or stream with a stretch of rows missing (exporter down, collector restart) would otherwise
shift the daily / weekly views' phase by the length of the gap: the seasonal branch would compare
each later point with the wrong time of day.
"""

from __future__ import annotations

import numpy as np

MAX_FILL = 2016  # at most this many missing slots are filled per gap (a week of 5-minute points)
FILL_RATIO = 4  # and at most this many per row on average (plus MAX_FILL), so memory stays bounded


class GapFiller:
    """Counts the sampling slots missing before each point of one stream, chunk after chunk.

    Filling stops for good at the first timestamp that goes backwards or cannot be parsed, or once
    the stream would need more than ``FILL_RATIO`` filled slots per row (plus ``MAX_FILL``): such
    timestamps are not a regular grid with holes, and rows are then scored as they come. Every
    decision depends only on the rows before, so a prefix of a stream is scored like the start of
    the whole stream.

    >>> g = GapFiller(300.0)
    >>> g.slots(np.array([0, 300, 600, 1500.0])).tolist(), g.slots(np.array([1800, 2700.0])).tolist()
    ([0, 0, 0, 2], [0, 2])
    >>> g.slots(np.array([2400, 3000.0])).tolist(), g.active
    ([0, 0], False)
    """

    def __init__(self, step_s: float) -> None:
        self.step = float(step_s)
        self.active = bool(np.isfinite(self.step) and self.step > 0)
        self.previous = float("nan")
        self.rows = 0
        self.filled = 0

    def slots(self, timestamps: np.ndarray) -> np.ndarray:
        """Missing slots before each of ``timestamps`` (0 almost everywhere)."""
        t = np.asarray(timestamps, dtype=np.float64)
        out = np.zeros(len(t), dtype=np.int64)
        if not self.active or not len(t):
            self.rows += len(t)
            return out
        d = np.diff(np.concatenate([[self.previous], t]))
        if np.isnan(self.previous):
            d[0] = self.step if np.isfinite(t[0]) else np.nan
        bad = ~np.isfinite(d) | (d < 0)
        gap = np.where(bad, 0, np.clip(np.rint(np.where(bad, 0.0, d) / self.step) - 1, 0, MAX_FILL))
        total = self.filled + np.cumsum(gap)
        allowed = MAX_FILL + FILL_RATIO * (self.rows + np.arange(1, len(t) + 1))
        stop_at = np.flatnonzero(bad | (total > allowed))
        stop = int(stop_at[0]) if len(stop_at) else len(t)
        out[:stop] = gap[:stop]
        self.active = stop == len(t)
        self.previous = float(t[-1])
        self.rows += len(t)
        self.filled += int(out.sum())
        return out


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
