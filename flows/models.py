"""Batch-trained models: an IsolationForest per service over its RED vector, versioned in
``forewarn_models`` with metadata, and picked up by running score workers without a restart.

The streaming ensemble judges each series alone; the forest judges the combination (a little
more latency *and* a few more errors *and* less traffic), which no single series shows. Models are
pickled, because scikit-learn estimators only round-trip that
way (the blob lives in the operator's own store); ``ModelSet`` only loads models whose metadata
says they came from ``forewarn train`` with the running scikit-learn version.

>>> m = ModelSet()
>>> m.versions
{}
"""

from __future__ import annotations

import base64
import logging
import pickle
import zlib

import numpy as np
import pandas as pd
import sklearn
from forewarn.flows import seasonal
from sklearn.ensemble import IsolationForest

log = logging.getLogger(__name__)
FEATURES = ("red.rate", "red.error_ratio", "red.p95")
PREFIX = "iforest:"
# A forest cannot extrapolate: beyond the training range every point isolates like the most
# extreme training point. So a point also counts as unusual when a feature leaves the training
# distribution by more than Z_LIMIT standard deviations (floored: log-rate, ratio, log-ms).
STD_FLOOR = np.array([0.05, 0.01, 0.05])
Z_LIMIT = 6.0
Z_COMBINED = 3.0  # an isolated combination must also move some feature this far (no in-sample noise)


def red_matrix(sig: pd.DataFrame) -> pd.DataFrame:
    """Service-level RED points pivoted to one row per (service, ts) with the model's features."""
    if sig.empty:
        return pd.DataFrame(columns=["service", "ts", *FEATURES])
    sel = sig[sig["name"].isin(FEATURES) & sig["labels"].map(lambda x: not x)]
    if sel.empty:
        return pd.DataFrame(columns=["service", "ts", *FEATURES])
    wide = sel.pivot_table(
        index=["service", "ts"], columns="name", values="value", aggfunc="last"
    ).reset_index()
    for f in FEATURES:
        if f not in wide:
            wide[f] = np.nan
    return wide.dropna(subset=list(FEATURES))


def features(wide: pd.DataFrame) -> np.ndarray:
    x = wide[list(FEATURES)].to_numpy(float)
    return np.column_stack([np.log1p(x[:, 0]), x[:, 1], np.log1p(x[:, 2])])


def fit_service(wide: pd.DataFrame, seed: int, contamination: float = 0.002) -> tuple[IsolationForest, dict]:
    x = features(wide)
    model = IsolationForest(n_estimators=100, contamination=contamination, random_state=seed).fit(x)
    meta = {
        "features": list(FEATURES),
        "n_samples": len(x),
        "mean": x.mean(axis=0).tolist(),
        "std": np.maximum(x.std(axis=0), STD_FLOOR).tolist(),
        "sklearn": sklearn.__version__,
        "contamination": contamination,
        "trained_from": int(wide["ts"].min()),
        "trained_to": int(wide["ts"].max()),
    }
    return model, meta


def dump(model: IsolationForest) -> str:
    return base64.b64encode(zlib.compress(pickle.dumps(model))).decode()


class ModelSet:
    """The newest version of every trained model, refreshed from the store between batches."""

    def __init__(self) -> None:
        self.versions: dict[str, int] = {}
        self.loaded: dict[str, tuple[IsolationForest, dict, int]] = {}
        self.seasonal: seasonal.SeasonalBaseline | None = None

    def refresh(self, store) -> None:
        latest = store.model_versions()
        for name, version in latest.items():
            if self.versions.get(name) == version or not (name.startswith(PREFIX) or name == seasonal.NAME):
                continue
            got = store.load_model(name, version)
            if got is None:
                continue
            meta, blob = got
            if name == seasonal.NAME:
                self.seasonal = seasonal.load(blob, version)
                self.versions[name] = version
                log.info("loaded seasonal baselines version %d (%s series)", version, meta.get("series"))
                continue
            if meta.get("sklearn") != sklearn.__version__ or meta.get("trainer") != "forewarn":
                log.warning("skipping model %s v%d: trained with %s", name, version, meta.get("sklearn"))
                self.versions[name] = version
                continue
            model = pickle.loads(zlib.decompress(base64.b64decode(blob)))
            self.loaded[name] = (model, meta, version)
            self.versions[name] = version
            log.info("loaded model %s version %d", name, version)

    def score(self, sig: pd.DataFrame) -> list[tuple[str, int, float, str, int]]:
        """(service, ts, decision value, explanation, version) of the points a forest flags."""
        if not self.loaded or sig.empty:
            return []
        wide = red_matrix(sig)
        out = []
        for service, g in wide.groupby("service", sort=True):
            got = self.loaded.get(PREFIX + service)
            if got is None:
                continue
            model, meta, version = got
            x = features(g)
            dec = model.decision_function(x)
            z = (x - np.array(meta["mean"])) / np.array(meta["std"])
            zmax = np.abs(z).max(axis=1)
            for i in np.flatnonzero(((dec < 0) & (zmax > Z_COMBINED)) | (zmax > Z_LIMIT)):
                j = int(np.argmax(np.abs(z[i])))
                what = "RED combination unusual" if dec[i] < 0 else "RED outside the trained range"
                text = (
                    f"{what} (isolation score {dec[i]:.3f}); most deviating: "
                    f"{FEATURES[j]} at {g[FEATURES[j]].iloc[i]:.4g} ({z[i, j]:+.1f} sd from training)"
                )
                out.append((service, int(g["ts"].iloc[i]), float(dec[i]), text, version))
        return out


def train(
    store, seed: int, start_ms: int, end_ms: int, now_ms: float, min_samples: int = 30
) -> dict[str, int]:
    """Fit the seasonal baselines and one forest per service on the stored history; returns the
    new version per model."""
    done = {}
    if (v := seasonal.train_seasonal(store, start_ms, end_ms, now_ms)) is not None:
        done[seasonal.NAME] = v
    hist = store.signal_history(list(FEATURES), start_ms, end_ms)
    if hist.empty:
        return done
    hist["labels"] = [dict(x) for x in hist["labels"]]
    wide = red_matrix(hist)
    for service, g in wide.groupby("service", sort=True):
        if len(g) < min_samples:
            log.info("train: %s has %d samples, need %d", service, len(g), min_samples)
            continue
        model, meta = fit_service(g, seed)
        meta["trainer"] = "forewarn"
        done[PREFIX + service] = store.save_model(PREFIX + service, meta, dump(model), now_ms)
    return done
