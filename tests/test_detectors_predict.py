"""Saturation forecasts and the multivariate detector."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from forewarn.detectors import MultivariateDetector, SaturationForecaster


def test_time_to_full_with_band_and_text() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(0, 120 * 60, 60.0)
    filling = 40 + t / 3600 * 10 + rng.normal(0, 0.3, len(t))  # +10 points/hour, 60 now
    flat = 50 + rng.normal(0, 0.3, len(t))
    full = np.full(len(t), 101.0)
    fc = SaturationForecaster(limit=100.0, window=60, warn_within_s=6 * 3600)
    a, b, c = fc.forecast(
        ["disk /data", "disk /var", "disk /tmp"], np.stack([t, t, t]), np.stack([filling, flat, full])
    )
    assert 3.6 * 3600 < a.eta_s < 4.4 * 3600
    assert a.eta_low_s <= a.eta_s <= a.eta_high_s
    assert a.text().startswith("disk /data full in ~") and " h " in a.text()
    assert not math.isfinite(b.eta_s) or b.eta_s > 24 * 3600
    assert c.eta_s == 0 and "at or above" in c.text()
    assert [f.series_id for f in fc.warnings([a, b, c])] == ["disk /data", "disk /tmp"]


def test_forecast_handles_nan_and_short_series() -> None:
    fc = SaturationForecaster(limit=1.0)
    t = np.arange(10.0)[None, :]
    v = np.full((1, 10), np.nan)
    assert not math.isfinite(fc.forecast(["pool"], t, v)[0].eta_s)


def test_multivariate_names_contributing_features() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(0, 1, (3000, 2))
    train = np.column_stack([base[:, 0], base[:, 0] * 2 + rng.normal(0, 0.1, 3000), base[:, 1]])
    det = MultivariateDetector(["rate", "cpu", "errors"], seed=3).fit(train)
    normal = det.score(train[:200])
    assert np.mean(normal > 0.999) < 0.02
    # the correlation between rate and cpu breaks: each alone is ordinary
    odd = np.array([[1.5, -3.0, 0.0]])
    ex = det.explain(odd)[0]
    assert ex.score > 0.99 and ex.component == "multivariate"
    assert {ex.contributors[0][0], ex.contributors[1][0]} == {"rate", "cpu"}
    assert "cpu" in ex.text


def test_forecast_band_is_conformal_and_covers_about_ninety_percent() -> None:
    from forewarn.detectors.forecast import CONFORMAL_Z, backtest, nonconformity

    r = nonconformity(200, seed=3)
    assert 0.75 < float(np.mean(r <= CONFORMAL_Z)) <= 1.0  # ~90 % on a seed it was not fitted on
    assert SaturationForecaster(limit=1.0).z == CONFORMAL_Z
    wide, narrow = backtest(80, seed=4), backtest(80, seed=4, z=1.0)
    assert wide["band_coverage_pct"] > narrow["band_coverage_pct"]
    assert wide["median_abs_pct_error"] == narrow["median_abs_pct_error"]  # the estimate is unchanged
    assert wide["own_errors_band_coverage_pct"] > 75  # z from each series' own past errors


def test_a_disk_reported_once_a_minute_is_warned_at_the_second_report_of_its_fill() -> None:
    """At the SDKs' default metric interval (60 s) a disk filling from 60 % to 100 % in 6 minutes
    was warned 115-122 s before 95 % in test-bed runs: the three points a straight stretch needs
    came at the third report after the fill began. The fill is on its line from the second, when
    the point before the bend lies on or above that line; a single step up is not a fill."""
    from forewarn.detectors.saturation import Saturation

    rng = np.random.default_rng(3)

    def first_warning(values) -> int | None:
        sat = Saturation({"*utilization*": 1.0}, horizon_s=6 * 3600)
        for i, v in enumerate(values):
            pts = pd.DataFrame({"series_id": [5], "ts": [i * 60_000], "value": [v],
                                "name": ["system.filesystem.utilization"]})  # fmt: skip
            if sat.score(pts).onsets:
                return i
        return None

    ts = np.arange(20) * 60.0
    for into in (1, 30, 59):  # seconds after the report at 600 s that the fill begins
        fill = 0.6 + rng.normal(0, 1e-4, 20) + np.clip(ts - 600 - into, 0, None) * 0.4 / 360
        assert first_warning(np.minimum(fill, 1.0)) == 12  # the second report of the fill (720 s)
    flat = 0.6 + rng.normal(0, 1e-4, 20)
    assert first_warning(flat + np.r_[np.zeros(10), np.full(10, 0.08)]) is None  # one step up
    assert first_warning(flat + np.r_[np.zeros(10), 0.08 + np.arange(10) * 1e-3]) is None  # then slow
