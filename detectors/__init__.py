"""forewarn.detectors: streaming and predictive anomaly detection, vectorised over series.

Public API (import from ``forewarn.detectors``):

- ``MultiSeriesDetector(params=None, periods=())`` — the default ensemble over named series
  (``periods`` from ``seasonal_periods(step_s)`` add daily / weekly views).
  ``update(series_ids, timestamps, values) -> list[Anomaly]`` learns and scores long-format points
  (each series in timestamp order, each score using only that series' past; new series start
  empty). ``last_scores[series_id]`` holds every score of the last call. ``snapshot() -> (meta,
  arrays)`` / ``restore(meta, arrays)`` and ``save(path)`` / ``load(path)`` persist all state as
  versioned JSON + ``.npz`` (never pickle), e.g. under ``<data_dir>/detectors/``.
- ``Anomaly(series_id, timestamp, value, score, explanation)`` and ``Explanation(component,
  observed, expected, lower, upper, score, text, contributors)``: what fired and why, in numbers
  and words.
- ``EnsembleCore(n_series, params, periods)`` — the vectorised engine: ``update(values[series,
  points])`` returns a ``ScoreBlock`` (score, raw, alert, component, expected, observed, lower,
  upper, branch arrays).
- ``EnsembleParams`` — window sizes, calibration memory, warm-up, refractory period, threshold
  (the committed threshold is ``Settings.detectors.threshold``).
- ``SaturationForecaster(limit, window, z, warn_within_s).forecast(ids, t[S, N], v[S, N])`` →
  ``SaturationForecast`` (eta_s with eta_low_s / eta_high_s band, ``text("disk /data")``); the
  default ``z`` is a split-conformal 90 % band, ``own_z(t, v)`` calibrates one per series online.
- ``MultivariateDetector`` — scikit-learn IsolationForest on per-service feature vectors, trained
  in batch, with the features that contributed most to each anomaly.
- ``evaluate`` (NAB-style scorer under NAB's three profiles, ``python -m
  forewarn.detectors.evaluate [--realistic N]``) and ``scenarios`` (labelled synthetic corpora:
  operational metrics, and realistic families shaped like public cloud / sensor / social series).
- ``gaps`` — missing sampling slots as missing points, so seasonal views count time, not rows.

The score is calibrated: each test's statistic (spike, level, trend, variance, stuck) gets a tail
probability under a generalised Gaussian fitted to that series' own history of it (so spiky series
get heavy tails), the tests are combined Šidák-style and the views must agree, so one threshold
means the same on every series. Imports point one way: this package needs only numpy, scipy,
bottleneck and scikit-learn (and ``forewarn.cliutil`` for its command); flows and alerts call it.
"""

# The names load on first use (PEP 562): the CLI registers ``forewarn detect`` through this package,
# and importing the ensemble (scipy.signal) up front cost every ``forewarn`` command about a second.
_WHERE = {
    "COMPONENTS": "ensemble",
    "EnsembleCore": "ensemble",
    "EnsembleParams": "ensemble",
    "ScoreBlock": "ensemble",
    "seasonal_periods": "ensemble",
    "step_of": "ensemble",
    "SaturationForecast": "forecast",
    "SaturationForecaster": "forecast",
    "Anomaly": "multiseries",
    "Explanation": "multiseries",
    "MultiSeriesDetector": "multiseries",
    "MultivariateDetector": "multivariate",
}


def __getattr__(name: str) -> object:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


__all__ = list(_WHERE)  # the same names, in one place
