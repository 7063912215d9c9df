"""How detections are scored: NAB's window rules, the AIOps KPI challenge's delay rule, and events.

- **NAB-style** (the Numenta Anomaly Benchmark's published rules, three profiles): each label gets
  a window of ``0.1 * len / n_labels`` points centred on it; detections in the probationary period
  (first 15 % of the file, at most 750 points) are ignored; only the first detection in a window
  counts, weighted by a scaled sigmoid of its position (early = +1); every detection outside a
  window costs ``A_FP`` weighted by how far after the previous window it is; each missed window
  costs ``A_FN``. A corpus scores ``100 * (raw - null) / (perfect - null)`` over its files, where
  *null* never fires. On corpora labelled by segments, each event's window is centred on its start
  and reaches at least to its end (:func:`event_windows`).
- **KPI challenge** (AIOps Challenge 2018): a labelled segment counts as found, all its points,
  when an alert falls within ``delay`` points of its start (delay 7: its first 8 points, as the
  challenge's published evaluation code slices them); every alert outside segments
  is a false positive point; F1 over all points of the corpus (:func:`kpi_counts`).
- **Events** (what on-call feels): an event is a labelled segment, segments closer than
  ``merge_gap`` points merged; it is found when an alert falls inside it or ``tolerance`` points
  after; precision is the share of alerts that land on an event; delay is the first alert's
  distance from the event's start (:func:`event_counts`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

STANDARD = {"tp": 1.0, "fp": 0.11, "fn": 1.0}
# NAB's three application profiles (A_TP, A_FP, A_FN)
PROFILES = {
    "standard": STANDARD,
    "reward_low_FP_rate": {"tp": 1.0, "fp": 0.22, "fn": 1.0},
    "reward_low_FN_rate": {"tp": 1.0, "fp": 0.11, "fn": 2.0},
}


def scaled_sigmoid(pos: float) -> float:
    """NAB's weight of a detection at relative position ``pos`` (-1 = window start, 0 = end).

    >>> round(scaled_sigmoid(-1.0), 4), round(scaled_sigmoid(0.0), 4), scaled_sigmoid(5.0)
    (0.9866, 0.0, -1.0)
    """
    if pos > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * pos)) - 1.0


def windows(n: int, labels: Sequence[int]) -> list[tuple[int, int]]:
    """NAB windows (inclusive index ranges), overlapping ones merged."""
    if not labels:
        return []
    half = int(0.1 * n / len(labels)) // 2
    out: list[tuple[int, int]] = []
    for i in sorted(labels):
        a, b = max(0, i - half), min(n - 1, i + half)
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


@dataclass
class FileScore:
    raw: float
    perfect: float
    null: float
    tp: int  # windows detected
    fn: int  # windows missed
    fp: int  # detections outside windows (after probation)
    delays: list[int]  # first detection minus label, per detected window (points)


def score_file(
    alerts: np.ndarray,
    labels: Sequence[int],
    profile: dict[str, float] = STANDARD,
    wins: list[tuple[int, int]] | None = None,
) -> FileScore:
    """Score boolean ``alerts`` of one file against its labelled onsets (or given ``wins``).

    >>> a = np.zeros(1000, bool); a[700] = True
    >>> fs = score_file(a, [700]); (fs.tp, fs.fp, fs.fn, round(fs.raw, 3))
    (1, 0, 0, 0.852)
    """
    n = len(alerts)
    wins = windows(n, labels) if wins is None else wins
    probation = min(math.floor(0.15 * n), 0.15 * 5000)
    detected = [False] * len(wins)
    raw = 0.0
    fp = 0
    delays: list[int] = []
    label_of = [min((lab for lab in labels if a <= lab <= b), default=a) for a, b in wins]
    for i in np.flatnonzero(alerts):
        if i < probation:
            continue
        hit = next((j for j, (a, b) in enumerate(wins) if a <= i <= b), None)
        if hit is not None:
            if not detected[hit]:
                a, b = wins[hit]
                raw += profile["tp"] * scaled_sigmoid(-(b - i + 1) / (b - a + 1))
                detected[hit] = True
                delays.append(int(i) - label_of[hit])
            continue
        fp += 1
        prev = [(a, b) for a, b in wins if b < i]
        if prev:
            a, b = prev[-1]
            raw += profile["fp"] * scaled_sigmoid((i - b) / (b - a + 1))
        else:
            raw -= profile["fp"]
    fn = detected.count(False)
    raw -= profile["fn"] * fn
    perfect = profile["tp"] * scaled_sigmoid(-1.0) * len(wins)
    return FileScore(raw, perfect, -profile["fn"] * len(wins), len(wins) - fn, fn, fp, delays)


def segments(labels: np.ndarray, merge_gap: int = 0) -> list[tuple[int, int]]:
    """Inclusive (start, end) of each run of labelled points; runs separated by at most
    ``merge_gap`` unlabelled points are one event.

    >>> segments(np.array([0, 1, 1, 0, 0, 1, 0, 1], bool)), segments(np.array([0, 1, 0, 0, 1], bool), 2)
    ([(1, 2), (5, 5), (7, 7)], [(1, 4)])
    """
    y = np.asarray(labels, dtype=bool)
    d = np.diff(np.concatenate([[0], y.astype(np.int8), [0]]))
    runs = list(zip(np.flatnonzero(d == 1).tolist(), (np.flatnonzero(d == -1) - 1).tolist(), strict=True))
    out: list[tuple[int, int]] = []
    for a, b in runs:
        if out and a - out[-1][1] - 1 <= merge_gap:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def event_windows(n: int, events: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """NAB windows for labelled segments: centred on each start, reaching at least to its end."""
    if not events:
        return []
    half = int(0.1 * n / len(events)) // 2
    out: list[tuple[int, int]] = []
    for a, b in events:
        lo, hi = max(0, a - half), min(n - 1, max(b, a + half))
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def kpi_counts(alerts: np.ndarray, labels: np.ndarray, delay: int = 7) -> tuple[int, int, int]:
    """(true positive, false positive, false negative) points under the KPI challenge's rule.

    >>> y = np.zeros(20, bool); y[5:15] = True
    >>> a = np.zeros(20, bool); a[13] = True; a[18] = True  # 8 points after the start
    >>> kpi_counts(a, y), kpi_counts(a, y, delay=8)
    ((0, 1, 10), (10, 1, 0))
    """
    pred = np.asarray(alerts, dtype=bool).copy()
    y = np.asarray(labels, dtype=bool)
    for a, b in segments(y):
        pred[a : b + 1] = pred[a : min(b, a + delay) + 1].any()
    return int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())


@dataclass
class EventCounts:
    events: int = 0
    found: int = 0
    alerts: int = 0
    true_alerts: int = 0  # alerts that land on an event (or within the tolerance after it)
    delays: list[int] | None = None

    def add(self, other: EventCounts) -> None:
        self.events += other.events
        self.found += other.found
        self.alerts += other.alerts
        self.true_alerts += other.true_alerts
        self.delays = (self.delays or []) + (other.delays or [])


def event_counts(alerts: np.ndarray, events: list[tuple[int, int]], tolerance: int = 7) -> EventCounts:
    """Events found, alerts on events, and the delay (points) of each found event's first alert.

    >>> a = np.zeros(50, bool); a[[12, 30]] = True
    >>> c = event_counts(a, [(10, 20), (40, 45)])
    >>> (c.events, c.found, c.alerts, c.true_alerts, c.delays)
    (2, 1, 2, 1, [2])
    """
    a = np.asarray(alerts, dtype=bool)
    on = np.zeros(len(a), dtype=bool)
    delays = []
    for s, e in events:
        end = min(len(a) - 1, e + tolerance)
        on[s : end + 1] = True
        hit = np.flatnonzero(a[s : end + 1])
        if len(hit):
            delays.append(int(hit[0]))
    return EventCounts(len(events), len(delays), int(a.sum()), int((a & on).sum()), delays)
