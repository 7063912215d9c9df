"""Labelled synthetic scenarios: realistic operational series with injected incidents.

Detectors are tuned on these only (never on public benchmark data). Each scenario is a plausible
metric (request rate, latency, CPU, queue depth, byte counter, disk usage) with daily/weekly
seasonality, autocorrelated and heavy-tailed noise, a random start phase (series start mid-stream),
5-minute or 1-hour sampling, and 0–4 injected incidents whose onset index is the label.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

KINDS = (
    "spike",
    "level_shift",
    "leak",
    "variance",
    "seasonality_break",
    "stuck",
    "counter_reset",
    "saturation",
)
METRICS = ("traffic", "latency", "cpu", "queue", "counter", "disk", "batch", "bursty")


@dataclass
class Scenario:
    """One labelled series: unix-second timestamps, values, and the onset index of each incident.

    >>> s = make_corpus(1, seed=1, min_len=1000, max_len=1200)[0]
    >>> len(s.timestamps) == len(s.values), all(0 <= i < len(s.values) for i in s.labels)
    (True, True)
    """

    name: str
    metric: str
    timestamps: np.ndarray
    values: np.ndarray
    labels: list[int] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)


def _ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    from scipy.signal import lfilter

    e = rng.standard_t(5, n) * np.sqrt(3 / 5)
    return lfilter([np.sqrt(1 - phi**2)], [1, -phi], e)


def _base(rng: np.random.Generator, metric: str, n: int, step: int) -> tuple[np.ndarray, float]:
    """A clean seasonal series for ``metric`` and its noise scale."""
    t0 = rng.uniform(0, 7 * 86400)
    t = t0 + step * np.arange(n)
    day = np.sin(2 * np.pi * t / 86400 - rng.uniform(0, 2 * np.pi))
    week = np.where(((t // 86400) % 7) >= 5, -1.0, 0.3)
    season_amp = rng.choice([0.0, 0.2, 0.6, 1.0])
    noise = _ar1(rng, n, rng.choice([0.0, 0.5, 0.9]))
    if metric == "traffic":
        level = rng.uniform(50, 5000)
        lam = level * (1 + season_amp * 0.8 * (0.8 * day + 0.2 * week))
        return rng.poisson(np.maximum(lam, 1)).astype(float) + 0.05 * level * noise, 0.05 * level
    if metric == "latency":
        level = rng.uniform(20, 400)
        x = level * (1 + 0.3 * season_amp * day) * np.exp(0.12 * noise)
        return x, 0.12 * level
    if metric == "cpu":
        level = rng.uniform(10, 60)
        x = np.clip(level + 15 * season_amp * day + 3 * noise, 0, 100)
        return x, 3.0
    if metric == "queue":
        level = rng.uniform(5, 200)
        return np.maximum(level + 0.3 * level * season_amp * day + 0.15 * level * noise, 0), 0.15 * level
    if metric == "counter":
        rate = rng.uniform(10, 1000) * (1 + 0.5 * season_amp * day) * np.exp(0.1 * noise)
        return np.cumsum(rate), 0.1 * float(np.mean(rate))
    if metric == "batch":
        # scheduled jobs: load steps up for a fixed slot every few hours (cron), little noise
        every = float(rng.choice([4, 6, 12, 24])) * 3600
        slot = every * rng.uniform(0.1, 0.4)
        on = ((t + rng.uniform(0, every)) % every) < slot
        level, high = rng.uniform(5, 20), rng.uniform(30, 80)
        sd = rng.uniform(0.2, 1.0)
        return np.where(on, high, level) + sd * noise, sd
    if metric == "bursty":
        # everyday bursts (cache misses, GC, retries): skewed, heavy-tailed, none of them an incident
        level = rng.uniform(1, 50)
        shape = rng.uniform(0.3, 1.5)
        x = level * (1 + 0.3 * season_amp * day) * rng.gamma(shape, 1 / shape, n)
        return x, level
    # disk usage percent: slow daily churn around a level
    level = rng.uniform(20, 70)
    return level + 2 * season_amp * day + 0.5 * noise, 0.5


def _inject(
    rng: np.random.Generator, x: np.ndarray, metric: str, sigma: float, at: int, kind: str, step: int
) -> None:
    n = len(x)
    sign = rng.choice([-1.0, 1.0]) if metric not in ("disk", "counter") else 1.0
    dur = int(rng.integers(max(3, n // 200), max(4, n // 40)))
    end = min(n, at + dur)
    if kind == "spike":
        x[at : at + int(rng.integers(1, 4))] += sign * rng.uniform(6, 15) * sigma
    elif kind == "level_shift":
        x[at:] += sign * rng.uniform(3, 8) * sigma
    elif kind == "leak":
        x[at:end] += np.linspace(0, rng.uniform(5, 12) * sigma, end - at)
        x[end:] += x[end - 1] - x[end - 2] if end < n else 0.0
    elif kind == "variance":
        x[at:end] += rng.normal(0, rng.uniform(3, 6) * sigma, end - at)
    elif kind == "seasonality_break":
        # the daily pattern stops: the series freezes at its mean with ordinary noise
        x[at:end] = np.mean(x[max(0, at - 86400 // step) : at]) + rng.normal(0, sigma, end - at)
        x[at:end] += rng.choice([-1.0, 1.0]) * 2 * sigma
    elif kind == "stuck":
        x[at:end] = x[at - 1]
    elif kind == "counter_reset":
        x[at:] -= x[at - 1]
    elif kind == "saturation":
        top = 100.0 if metric in ("cpu", "disk") else float(np.max(x[:at]) * 1.5)
        ramp = np.linspace(x[at - 1], top, end - at)
        x[at:end] = np.maximum(x[at:end], ramp)
        x[end:] = np.maximum(x[end:], top * 0.98)


_KINDS_FOR = {
    "traffic": ("spike", "level_shift", "variance", "seasonality_break", "stuck"),
    "latency": ("spike", "level_shift", "leak", "variance", "stuck"),
    "cpu": ("spike", "level_shift", "variance", "saturation", "stuck"),
    "queue": ("spike", "leak", "saturation", "level_shift"),
    "counter": ("counter_reset", "stuck"),
    "disk": ("leak", "saturation", "level_shift"),
    "batch": ("spike", "level_shift", "seasonality_break", "stuck", "variance"),
    "bursty": ("level_shift", "stuck", "spike"),
}


def make_scenario(rng: np.random.Generator, idx: int, min_len: int, max_len: int) -> Scenario:
    metric = str(rng.choice(METRICS, p=[0.2, 0.2, 0.14, 0.08, 0.08, 0.1, 0.1, 0.1]))
    n = int(np.exp(rng.uniform(np.log(min_len), np.log(max_len))))
    step = int(rng.choice([300, 3600], p=[0.75, 0.25]))
    x, sigma = _base(rng, metric, n, step)
    if metric in ("traffic", "latency", "cpu") and rng.random() < 0.5:
        # everyday blips nobody would page for (retries, crawlers, GC): short, 2-5 sigma, unlabelled
        blips = np.flatnonzero(rng.random(n) < 0.002)
        x[blips] += rng.uniform(2, 5, len(blips)) * sigma
    n_anom = int(rng.choice([0, 1, 1, 2, 2, 3, 4]))
    labels: list[int] = []
    kinds: list[str] = []
    if n_anom:
        # incidents fall after the first 15% and are well separated
        slots = np.sort(rng.choice(np.arange(n_anom * 3), n_anom, replace=False))
        span = n - int(0.18 * n) - n // 20
        for s in slots:
            at = int(0.18 * n) + int(span * (s + rng.uniform(0.1, 0.9)) / (n_anom * 3))
            kind = str(rng.choice(_KINDS_FOR[metric]))
            _inject(rng, x, metric, sigma, at, kind, step)
            labels.append(at)
            kinds.append(kind)
    ts = (1_600_000_000 + step * np.arange(n)).astype(np.int64)
    return Scenario(f"synthetic_{idx:03d}_{metric}", metric, ts, x, labels, kinds)


def make_corpus(n: int, seed: int = 0, min_len: int = 1000, max_len: int = 20000) -> list[Scenario]:
    """``n`` labelled scenarios, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    return [make_scenario(rng, i, min_len, max_len) for i in range(n)]
