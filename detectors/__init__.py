"""forewarn.detectors: streaming and predictive anomaly detection, vectorised over series.

Public API (import from ``forewarn.detectors``):

- ``MultiSeriesDetector(params=None)`` — the default ensemble over named series.
  ``update(series_ids, timestamps, values) -> list[Anomaly]`` learns and scores long-format points
  (each series in timestamp order, each score using only that series' past; new series start
  empty). ``last_scores[series_id]`` holds every score of the last call. ``snapshot() -> (meta,
  arrays)`` / ``restore(meta, arrays)`` and ``save(path)`` / ``load(path)`` persist all state as
  versioned JSON + ``.npz`` (never pickle), e.g. under ``<data_dir>/detectors/``.
- ``Anomaly(series_id, timestamp, value, score, explanation)`` and ``Explanation(component,
  observed, expected, lower, upper, score, text, contributors)``: what fired and why, in numbers
  and words.
- ``EnsembleCore(n_series, params)`` — the vectorised engine: ``update(values[series, points])``
  returns a ``ScoreBlock`` (score, raw, alert, component, expected, lower, upper arrays).
- ``EnsembleParams`` — window sizes, calibration memory, warm-up, refractory period, threshold
  (the committed threshold is ``Settings.detectors.threshold``).
- ``SaturationForecaster(limit, window, z, warn_within_s).forecast(ids, t[S, N], v[S, N])`` →
  ``SaturationForecast`` (eta_s with eta_low_s / eta_high_s band, ``text("disk /data")``).
- ``MultivariateDetector`` — scikit-learn IsolationForest on per-service feature vectors, trained
  in batch, with the features that contributed most to each anomaly.
- ``evaluate`` (NAB-style scorer, ``python -m forewarn.detectors.evaluate``) and ``scenarios``
  (labelled synthetic corpus).

The score is calibrated: each test statistic is divided by its own typical size so far, turned
into a two-sided Gaussian tail probability and combined across tests (Šidák), so one threshold
means the same on every series.
"""

from forewarn.detectors.ensemble import COMPONENTS, EnsembleCore, EnsembleParams, ScoreBlock
from forewarn.detectors.forecast import SaturationForecast, SaturationForecaster
from forewarn.detectors.multiseries import Anomaly, Explanation, MultiSeriesDetector
from forewarn.detectors.multivariate import MultivariateDetector

__all__ = [
    "COMPONENTS",
    "Anomaly",
    "EnsembleCore",
    "EnsembleParams",
    "Explanation",
    "MultiSeriesDetector",
    "MultivariateDetector",
    "SaturationForecast",
    "SaturationForecaster",
    "ScoreBlock",
]
