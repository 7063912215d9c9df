"""The error-budget forecast: arithmetic of the consumed budget, the backtest on generated
good/bad streams (seeded: the same figures on every machine), and the warning alert from
stored telemetry when the budget is projected to run out."""

from __future__ import annotations

import math
import time
from dataclasses import replace

import numpy as np
from forewarn.flows.slo import FORECAST_ALERTNAME, SLOEngine, slo_alert
from forewarn.flows.slo_forecast import backtest, budget_series, forecast_budget, forecast_calendar
from forewarn.flows.slo_spec import SLO, TimeWindow, parse_selector
from test_slo_alerts import SLO_999, stream

HOUR = 3_600_000


def test_a_constant_burn_of_two_spends_a_calendar_month_in_half_of_it():
    slo = SLO("svc", "x", 0.999, total=parse_selector("spans"),
              window=TimeWindow(30, rolling=False, start="2026-01-01T00:00:00+00:00"))  # fmt: skip
    start = slo.window.start_ms(1767225600000 + 1)
    ts = start + (np.arange(24 * 6) + 1) * HOUR
    total = np.full(len(ts), 10_000.0)
    good = total - 20.0  # 0.2 % errors: burn rate 2
    consumed = budget_series(slo, ts, good, total, int(ts[-1]))
    # after 6 of 30 days at burn 2: 2 x 6 / 30 of the month's budget
    assert abs(consumed[-1] - 0.4) < 1e-12
    f = forecast_budget(slo, ts, consumed, int(ts[-1]), 0.0)
    assert abs(f.eta_s - 9 * 86400) < 60  # 15 days in, 9 more
    assert f.warns  # before the window ends (day 30)
    assert f.low_s <= f.eta_s <= f.high_s


def test_calendar_forecast_follows_the_weekly_traffic_cycle():
    """A steady 0.2 % error ratio (burn 2) and traffic that halves on weekends: the month's budget
    is spent when half of the month's traffic is served, which the weekends push later than day
    15; the forecast in event time finds that hour from three weeks of history."""
    slo = SLO("svc", "x", 0.999, total=parse_selector("spans"), window=TimeWindow(28, rolling=False,
              start="2026-01-05T00:00:00+00:00"))  # a Monday; 28-day periods  # fmt: skip
    w0 = 1767571200000  # 2026-01-05
    hours = np.arange(-21 * 24, 28 * 24)
    ts = w0 + (hours + 1) * HOUR
    day = (hours // 24) % 7  # 0 = Monday
    total = np.where(day >= 5, 5_000.0, 10_000.0) * (1 + 0.5 * np.sin(2 * np.pi * hours / 24))
    good = total * (1 - 0.002)
    inside = hours >= 0
    spent = np.cumsum((total - good)[inside]) >= slo.budget * total[inside].sum()
    truth_ms = ts[inside][np.flatnonzero(spent)[0]]
    at = w0 + 6 * 24 * HOUR  # a Sunday, six days into the window
    past = ts <= at
    f = forecast_calendar(slo, ts[past], good[past], total[past], at)
    assert abs((at + f.eta_s * 1000) - truth_ms) <= HOUR, (f.eta_s / 3600, (truth_ms - at) / HOUR)
    assert f.low_s <= f.eta_s <= f.high_s and f.warns
    assert abs(f.horizon_s - 22 * 86400) < 1


def test_a_service_that_started_recently_is_not_read_as_quiet_before():
    """Ten days into the window a new service starts at a steady 1,000 requests an hour and 0.2 %
    errors; eight hours later the budget is projected to run out when half of the window's
    traffic from then on is served: 208 hours ahead, not sooner for the empty days before."""
    slo = SLO("svc", "x", 0.999, total=parse_selector("spans"), window=TimeWindow(28, rolling=False,
              start="2026-01-05T00:00:00+00:00"))  # fmt: skip
    w0 = 1767571200000
    hours = np.arange(-14 * 24, 10 * 24 + 8)
    ts = w0 + (hours + 1) * HOUR
    total = np.where(hours >= 10 * 24, 1000.0, 0.0)
    good = total * (1 - 0.002)
    f = forecast_calendar(slo, ts, good, total, int(ts[-1]))
    assert abs(f.eta_s / 3600 - 208) < 1, f.eta_s / 3600


def test_backtest_on_generated_streams():
    r = backtest(n_streams=60, seed=3)
    assert r["forecasts"] > 500 and r["exhausted_cases"] > 200
    assert r["warn_precision_pct"] > 90 and r["warn_recall_pct"] > 90
    assert r["median_abs_pct_error"] < 15
    assert r["band_coverage_pct"] > 75


def test_a_rising_burn_raises_the_forecast_warning(settings, store):
    s = settings.model_copy(deep=True)
    t0 = int(time.time() - 9 * 3600) // 60 * 60_000
    # errors rising from 0 to 3 of 2000 a minute over 8 hours: the rolling burn heads past 1
    stream(store, s.storage.database, t0, 480, lambda i: int(i / 160))
    slo = replace(SLO_999, window=TimeWindow(7))
    eng = SLOEngine(store, s, [slo], clock=lambda: 0.0)
    eng.start_at(t0)
    st = eng.run_until(t0 + 480 * 60_000)[-1][slo.id]
    f = st.forecast
    assert f is not None and 0 < f.eta_s < math.inf and f.warns, f
    a = slo_alert(st, "forecast", t0 / 1000, t0 / 1000 + 300)
    assert a["labels"]["alertname"] == FORECAST_ALERTNAME and a["labels"]["sloth_id"] == slo.id
    assert a["labels"]["sloth_severity"] == "warning" and "runs out in ~" in a["annotations"]["summary"]
