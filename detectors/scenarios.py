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


# -- realistic families ------------------------------------------------------------------------
# Series shaped like public operational data (cloud CPU/network/disk, machine sensors, ad-exchange
# prices, social-media mention counts, taxi demand, artificial square waves), generated here, never
# downloaded. Labels follow NAB's convention: one onset per incident, each scored with a window of
# 10 % of the file / number of incidents centred on it. Tuning uses ``TUNING_SEED``; the
# ``HELD_OUT_SEED`` corpus is only for reporting.

FAMILIES = (
    "cloud_cpu",
    "cloud_network",
    "machine_temp",
    "adexchange",
    "tweets",
    "taxi",
    "intermittent",
    "artificial",
)
TUNING_SEED = 7
HELD_OUT_SEED = 2026


def _season(t: np.ndarray, period: float, phase: float, peaks: int = 1) -> np.ndarray:
    """A smooth periodic pattern in [-1, 1] with ``peaks`` humps per period."""
    w = 2 * np.pi * t / period + phase
    return np.sin(w) if peaks == 1 else 0.6 * np.sin(w) + 0.4 * np.sin(peaks * w + 1.3)


def _quantise(x: np.ndarray, q: float) -> np.ndarray:
    return np.round(x / q) * q


def _gaps(
    rng: np.random.Generator, ts: np.ndarray, x: np.ndarray, labels: list[int], max_gaps: int = 3
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Drop up to ``max_gaps`` stretches of rows (exporter down, collector restart) away from labels
    and jitter some timestamps by a few seconds; label indices are remapped to the kept rows."""
    n = len(x)
    keep = np.ones(n, dtype=bool)
    for _ in range(int(rng.integers(0, max_gaps + 1))):
        a = int(rng.integers(n // 10, n - n // 20))
        length = int(rng.integers(3, max(4, n // 60)))
        if all(abs(a - lab) > n // 20 + length for lab in labels):
            keep[a : a + length] = False
    if rng.random() < 0.3:
        ts = ts + rng.integers(-20, 21, n)
    new_index = np.cumsum(keep) - 1
    return ts[keep], x[keep], [int(new_index[lab]) for lab in labels]


def _onsets(rng: np.random.Generator, n: int, k: int) -> list[int]:
    """``k`` well-separated onsets after the probationary period."""
    if not k:
        return []
    lo, hi = int(0.2 * n), int(0.95 * n)
    span = (hi - lo) / k
    return [int(lo + span * (i + rng.uniform(0.15, 0.85))) for i in range(k)]


def _decay(n: int, at: int, dur: int, height: float) -> np.ndarray:
    """A burst starting at ``at`` that fades over about ``dur`` points."""
    out = np.zeros(n)
    end = min(n, at + 4 * dur)
    out[at:end] = height * np.exp(-np.arange(end - at) / max(dur, 1))
    return out


def _family(rng: np.random.Generator, family: str, n: int) -> tuple[int, np.ndarray, list[int], list[str]]:
    """Step (s), values, onsets and kinds of one series of ``family``."""
    k = int(rng.choice([0, 1, 1, 2, 2, 2, 3, 4]))
    at = _onsets(rng, n, k)
    kinds: list[str] = []
    i = np.arange(n)
    if family == "cloud_cpu":
        step = 300
        t = i * step
        level = float(np.exp(rng.uniform(np.log(0.1), np.log(60))))
        season = rng.choice([0.0, 0.0, 0.2, 0.5]) * level * _season(t, 86400, rng.uniform(0, 6))
        x = level + season + 0.05 * level * _ar1(rng, n, 0.8)
        blips = rng.random(n) < 0.004  # routine short CPU bursts (cron, GC), unlabelled
        x[blips] += level * rng.uniform(0.3, 1.5, int(blips.sum()))
        for a in at:
            kind = str(rng.choice(["spike", "new_normal", "ramp", "drop"]))
            kinds.append(kind)
            if kind == "spike":
                x[a : a + int(rng.integers(2, 12))] += level * rng.uniform(2, 6)
            elif kind == "new_normal":  # a deploy or resize: the level moves and stays there
                x[a:] += level * rng.choice([-0.5, 0.8, 1.5, 3.0])
            elif kind == "ramp":
                d = int(rng.integers(20, 200))
                x[a:] += np.minimum(i[a:] - a, d) / d * level * rng.uniform(1, 3)
            else:
                x[a : a + int(rng.integers(10, 80))] = level * 0.05
        x = _quantise(np.clip(x, 0, 100), float(rng.choice([0.002, 0.01, 0.1, 1.0])))
        return step, x, at, kinds
    if family == "cloud_network":
        step = 300
        t = i * step
        level = float(np.exp(rng.uniform(np.log(1e4), np.log(1e8))))
        day = 1 + rng.choice([0.0, 0.3, 0.6]) * _season(t, 86400, rng.uniform(0, 6))
        x = level * day * np.exp(rng.uniform(0.2, 0.8) * _ar1(rng, n, 0.5))
        bursts = rng.random(n) < 0.01  # heavy-tailed everyday transfers
        x[bursts] *= np.exp(rng.exponential(1.0, int(bursts.sum())))
        for a in at:
            kind = str(rng.choice(["burst", "outage", "new_normal"]))
            kinds.append(kind)
            if kind == "burst":
                x += _decay(n, a, int(rng.integers(3, 30)), level * rng.uniform(8, 30))
            elif kind == "outage":
                x[a : a + int(rng.integers(6, 60))] = level * rng.uniform(0.0, 0.02)
            else:
                x[a:] *= rng.choice([0.2, 3.0, 5.0])
        return step, np.round(x), at, kinds
    if family == "machine_temp":
        step = 300
        t = i * step
        x = rng.uniform(60, 90) + 4 * _ar1(rng, n, 0.995) + 1.5 * _ar1(rng, n, 0.7)
        x += np.cumsum(rng.normal(0, 0.02, n))  # slow drift
        x += rng.choice([0.0, 1.0]) * 2 * _season(t, 86400, rng.uniform(0, 6))
        for a in at:
            kind = str(rng.choice(["shutdown", "overheat", "sensor_dropout"]))
            kinds.append(kind)
            d = int(rng.integers(30, 300))
            if kind == "shutdown":  # cools down to ambient, then restarts
                e = min(n, a + d)
                x[a:e] = x[a] - (x[a] - rng.uniform(10, 30)) * (1 - np.exp(-np.arange(e - a) / 15))
            elif kind == "overheat":
                x[a:] += np.minimum(i[a:] - a, d) / d * rng.uniform(8, 20) * (i[a:] < a + 3 * d)
            else:  # the sensor reads a floor value for a while
                x[a : a + int(rng.integers(5, 40))] = 0.0
        return step, np.round(x, 6), at, kinds
    if family == "adexchange":
        step = 3600
        t = i * step
        level = rng.uniform(0.05, 2.0)
        x = level * (1 + 0.3 * _season(t, 86400, rng.uniform(0, 6))) * rng.lognormal(0, 0.3, n)
        for a in at:
            kind = str(rng.choice(["spike", "new_normal", "drop"]))
            kinds.append(kind)
            if kind == "spike":
                x[a : a + int(rng.integers(1, 6))] *= rng.uniform(3, 8)
            elif kind == "new_normal":
                x[a:] *= rng.choice([0.4, 2.0, 2.5])
            else:
                x[a : a + int(rng.integers(5, 24))] *= 0.1
        return step, _quantise(x, 0.001), at, kinds
    if family == "tweets":
        step = 300
        t = i * step
        level = float(np.exp(rng.uniform(np.log(2), np.log(200))))
        lam = level * (1 + 0.6 * _season(t, 86400, rng.uniform(0, 6)))
        lam *= np.exp(0.3 * _ar1(rng, n, 0.98))
        for _ in range(int(rng.integers(5, 20))):  # everyday news: modest, unlabelled bursts
            lam += _decay(n, int(rng.integers(0, n)), int(rng.integers(2, 20)), level * rng.uniform(1, 3))
        for a in at:
            kind = str(rng.choice(["burst", "burst", "new_normal"]))
            kinds.append(kind)
            if kind == "burst":
                lam += _decay(n, a, int(rng.integers(5, 60)), level * rng.uniform(8, 30))
            else:
                lam[a:] *= rng.uniform(2.5, 4)
        r = rng.uniform(2, 20)  # negative binomial: gamma-mixed Poisson, overdispersed
        x = rng.poisson(rng.gamma(r, np.maximum(lam, 1e-3) / r)).astype(float)
        return step, x, at, kinds
    if family == "taxi":
        step = 1800
        t = i * step + int(rng.integers(0, 7)) * 86400
        wk = (t // 86400) % 7
        day = _season(t, 86400, -2.0, peaks=2)
        level = rng.uniform(5000, 25000)
        x = level * (1 + 0.7 * day) * np.where(wk >= 5, 0.85, 1.0)
        x *= 1 + 0.04 * _ar1(rng, n, 0.9)
        for a in at:
            kind = str(rng.choice(["holiday", "storm", "event"]))
            kinds.append(kind)
            d = 48 if kind == "holiday" else int(rng.integers(8, 40))
            if kind == "holiday":  # the day looks like a quiet Sunday
                x[a : a + d] *= rng.uniform(0.45, 0.7)
            elif kind == "storm":
                x[a : a + d] *= rng.uniform(0.1, 0.4)
            else:  # marathon / concert: a surge at an odd hour
                x[a : a + int(rng.integers(3, 10))] *= rng.uniform(1.6, 2.5)
        return step, np.round(x), at, kinds
    if family == "intermittent":
        step = int(rng.choice([300, 3600]))
        lam = rng.uniform(0.02, 0.4)
        x = rng.poisson(lam, n).astype(float)
        for a in at:
            kind = str(rng.choice(["storm", "big"]))
            kinds.append(kind)
            if kind == "storm":  # an error storm: sustained non-zero counts
                x[a : a + int(rng.integers(10, 60))] += rng.poisson(rng.uniform(3, 10), 1)[0] + 2
            else:
                x[a] += rng.uniform(20, 60) * (1 + lam)
        return step, x, at, kinds
    # artificial: a daily square-ish wave with noise, jumps, flat days and spike-density changes
    step = 300
    t = i * step
    lo, hi = rng.uniform(10, 40), rng.uniform(60, 90)
    phase = rng.uniform(0, 86400)
    on = ((t + phase) % 86400) < 86400 * rng.uniform(0.3, 0.6)
    x = np.where(on, hi, lo) + rng.normal(0, rng.uniform(1, 5), n)
    for a in at:
        kind = str(rng.choice(["jump_up", "jump_down", "flat_middle", "spike_density"]))
        kinds.append(kind)
        d = int(rng.integers(60, 288))
        if kind == "jump_up":
            x[a : a + d] += (hi - lo) * rng.uniform(0.5, 1.0)
        elif kind == "jump_down":
            x[a : a + d] -= (hi - lo) * rng.uniform(0.5, 0.9)
        elif kind == "flat_middle":
            x[a : a + d] = (hi + lo) / 2 + rng.normal(0, 1, len(x[a : a + d]))
        else:
            sp = np.flatnonzero(rng.random(min(d, n - a)) < 0.15) + a
            x[sp] += (hi - lo) * rng.uniform(0.5, 1.5, len(sp))
    return step, np.round(x, 3), at, kinds


_FAMILY_LEN = {
    "cloud_cpu": (3000, 4800),
    "cloud_network": (3000, 4800),
    "machine_temp": (8000, 22000),
    "adexchange": (1000, 1800),
    "tweets": (10000, 16000),
    "taxi": (8000, 11000),
    "intermittent": (1000, 8000),
    "artificial": (3500, 4500),
}


def make_realistic_corpus(n_per_family: int = 6, seed: int = TUNING_SEED) -> list[Scenario]:
    """``n_per_family`` labelled series of each of ``FAMILIES``, reproducible from ``seed``.

    >>> c = make_realistic_corpus(1, seed=3)
    >>> sorted({s.metric for s in c}) == sorted(FAMILIES), all(len(s.values) >= 900 for s in c)
    (True, True)
    """
    rng = np.random.default_rng(seed)
    out = []
    for family in FAMILIES:
        lo, hi = _FAMILY_LEN[family]
        for j in range(n_per_family):
            n = int(rng.integers(lo, hi + 1))
            step, x, labels, kinds = _family(rng, family, n)
            ts = 1_400_000_000 + step * np.arange(n, dtype=np.int64)
            ts, x, labels = _gaps(rng, ts, x, labels)
            out.append(Scenario(f"{family}_{j:02d}", family, ts.astype(np.int64), x, labels, kinds))
    return out
