"""Always-on behaviour: nothing that grows with history silences a series (issue: alerts that keep coming)."""

from __future__ import annotations

import numpy as np
from forewarn.detectors import EnsembleCore, MultiSeriesDetector


def _noise(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100 + 5 * np.sin(np.arange(n) / 300) + rng.normal(0, 1, n)


def test_an_anomaly_after_200000_points_alerts() -> None:
    x = _noise(210_000, 1)
    x[200_000:200_030] += 25
    core = EnsembleCore(1)
    for i in range(0, len(x), 50_000):  # as a monitor receives it: block after block
        block = core.update(x[None, i : i + 50_000])
        if i == 200_000:
            alerts = np.flatnonzero(block.alert[0])
            assert len(alerts) and alerts[0] <= 3  # within a few points of the onset


def test_a_continuing_anomaly_is_one_alert_and_a_new_one_after_recovery_alerts_again() -> None:
    x = _noise(20_000, 2)
    x[10_000:10_200] += 25  # a long outage: one alert that stays firing
    x[10_400:10_420] += 25  # recovered for 200 points, then a new anomaly
    b = EnsembleCore(1).update(x[None, :])
    alerts = np.flatnonzero(b.alert[0, 9_990:]) + 9_990
    assert alerts[0] in range(10_000, 10_004)
    assert not any(10_004 <= i < 10_200 for i in alerts)  # no second alert inside the first episode
    assert b.firing[0, 10_000:10_200].mean() > 0.9  # ... which keeps firing while it lasts
    assert not b.firing[0, 10_300:10_400].any()  # it recovered
    assert any(10_400 <= i < 10_404 for i in alerts)  # the second anomaly alerts again at once


def test_firing_flags_reach_the_flows_per_series() -> None:
    det = MultiSeriesDetector()
    x = _noise(3_000, 3)
    x[2_500:2_600] += 30
    found = det.update(["a"] * 3_000, np.arange(3_000.0), x)
    assert [a.timestamp for a in found if a.timestamp >= 2_500][:1] == [2_500.0]
    assert det.last_firing["a"][2_500:2_600].all() and not det.last_firing["a"][2_700:].any()
