"""Evaluation on labelled real corpora: every metric on-call cares about, per corpus, part and family.

``python -m forewarn.detectors.evaluate --corpus DIR [--corpus DIR2] [--part hold]`` runs the
default detector exactly as ``forewarn detect`` does (same parameters, seasonal views from the
sampling step, gaps as missing points) over every series, then prints one table: NAB-style scores
under its three profiles, the KPI challenge's delay-adjusted F1, event recall / precision and the
median detection delay (:mod:`~forewarn.detectors.metrics`). The split into a tuning part and a
held-back part is :mod:`~forewarn.detectors.corpus`'s; a long series is scored once, over its whole
length, and each part is scored on its own index range, so the held-back half has the first half
as history.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from forewarn.detectors.corpus import PARTS, LabelledSeries, load_corpus
from forewarn.detectors.ensemble import (
    EnsembleCore,
    EnsembleParams,
    clock_step,
    for_step,
    seasonal_periods,
    step_of,
)
from forewarn.detectors.gaps import GapFiller, expand
from forewarn.detectors.metrics import (
    PROFILES,
    EventCounts,
    event_counts,
    event_windows,
    kpi_counts,
    score_file,
    segments,
)

MERGE_GAP = 5  # labelled runs this close are one event (labellers skip points inside one incident)
TOLERANCE = 7  # an alert this many points after an event's end still counts for it

SeriesDetector = Callable[[np.ndarray, np.ndarray], np.ndarray]


def ensemble_alerts(params: EnsembleParams | None = None, seasonal: bool = True) -> SeriesDetector:
    """``forewarn detect``'s computation on in-memory arrays: alerts (episode onsets) per point."""
    p = params or EnsembleParams()

    def run(timestamps: np.ndarray, values: np.ndarray) -> np.ndarray:
        step = step_of(timestamps)
        periods = seasonal_periods(step, p.max_period) if seasonal else ()
        gaps = GapFiller(step if periods else float("nan"))
        x, at = expand(np.asarray(values, dtype=np.float64), gaps.slots(timestamps))
        return EnsembleCore(1, for_step(p, clock_step(timestamps)), periods).update(x[None, :]).alert[0, at]

    return run


@dataclass
class Tally:
    """Sums over the series of one row of the table."""

    nab: dict[str, list[float]] = field(default_factory=lambda: {k: [0.0, 0.0, 0.0] for k in PROFILES})
    windows: int = 0
    windows_found: int = 0
    false_detections: int = 0
    kpi: list[int] = field(default_factory=lambda: [0, 0, 0])
    ev: EventCounts = field(default_factory=EventCounts)
    points: int = 0
    series: int = 0

    def add(self, alerts: np.ndarray, labels: np.ndarray) -> None:
        events = segments(labels, MERGE_GAP)
        wins = event_windows(len(labels), events)
        for name, prof in PROFILES.items():
            fs = score_file(alerts, [a for a, _ in events], prof, wins)
            acc = self.nab[name]
            acc[0] += fs.raw
            acc[1] += fs.perfect
            acc[2] += fs.null
            if name == "standard":
                self.windows += fs.tp + fs.fn
                self.windows_found += fs.tp
                self.false_detections += fs.fp
        for i, v in enumerate(kpi_counts(alerts, labels)):
            self.kpi[i] += v
        self.ev.add(event_counts(alerts, events, TOLERANCE))
        self.points += len(labels)
        self.series += 1

    def nab_score(self, profile: str = "standard") -> float:
        raw, perfect, null = self.nab[profile]
        return 100.0 * (raw - null) / (perfect - null) if perfect != null else float("nan")

    def kpi_f1(self) -> tuple[float, float, float]:
        tp, fp, fn = self.kpi
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        return (2 * p * r / (p + r) if p + r else 0.0), p, r

    def row(self, label: str) -> str:
        f1, p, r = self.kpi_f1()
        ev = self.ev
        prec = ev.true_alerts / ev.alerts if ev.alerts else float("nan")
        delay = float(np.median(ev.delays)) if ev.delays else float("nan")
        return (
            f"| {label} | {self.nab_score():.1f} | {self.nab_score('reward_low_FP_rate'):.1f} | "
            f"{self.nab_score('reward_low_FN_rate'):.1f} | {self.windows_found}/{self.windows} | "
            f"{self.false_detections} | {f1:.3f} ({p:.2f} / {r:.2f}) | {ev.found}/{ev.events} | "
            f"{prec:.2f} | {delay:.0f} |"
        )


HEADER = (
    "| corpus · part · family | NAB standard | low FP | low FN | windows found | false detections | "
    "KPI F1 (P / R) | events found | alert precision | median delay (points) |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def evaluate_series(
    series: Sequence[LabelledSeries], detector: SeriesDetector, parts: Sequence[str] = PARTS
) -> tuple[dict[tuple[str, str, str], Tally], int, float]:
    """Tallies keyed by (corpus, part, family or "all"), points scored and seconds taken."""
    out: dict[tuple[str, str, str], Tally] = {}
    points, seconds = 0, 0.0
    for s in series:
        ranges = {p: r for p, r in s.ranges().items() if p in parts}
        if not ranges:
            continue
        end = max(hi for _, hi in ranges.values())  # a prefix scores like the whole run's prefix
        t = time.perf_counter()
        alerts = detector(s.timestamps[:end], s.values[:end])
        seconds += time.perf_counter() - t
        points += end
        for part, (lo, hi) in ranges.items():
            for fam in (s.family, "all"):
                out.setdefault((s.corpus, part, fam), Tally()).add(alerts[lo:hi], s.labels[lo:hi])
    return out, points, seconds


def report(
    dirs: Sequence[str], detector: SeriesDetector, parts: Sequence[str] = PARTS, families: bool = True
) -> str:
    """The markdown table for the corpora under ``dirs``."""
    lines = [HEADER]
    total_pts, total_s = 0, 0.0
    for d in dirs:
        tallies, pts, secs = evaluate_series(load_corpus(d), detector, parts)
        total_pts += pts
        total_s += secs
        order = {p: i for i, p in enumerate(PARTS)}
        for (corpus, part, fam), t in sorted(
            tallies.items(), key=lambda kv: (order[kv[0][1]], kv[0][2] != "all", kv[0][2])
        ):
            if fam == corpus:
                continue  # a corpus of one family: the total is its row
            if fam == "all":
                lines.append(t.row(f"**{corpus} · {part}** ({t.series} series, {t.points:,} points)"))
            elif families:
                lines.append(t.row(f"{corpus} · {part} · {fam}"))
    lines.append(
        f"\n{total_pts:,} points scored in {total_s:.1f} s ({total_pts / max(total_s, 1e-9):,.0f} points/s)"
    )
    return "\n".join(lines)
