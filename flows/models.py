"""Batch-trained models: the seasonal baselines and a RED forest per service, versioned in
``forewarn_models`` and picked up by running score workers without a restart.

``train`` fits them on the stored signals (:mod:`forewarn.detectors.seasonal`,
:mod:`forewarn.detectors.forest`); :class:`ModelSet` loads the newest versions between batches and
hands them to the engine as detectors like any other. The seasonal table is an npz blob; the
forests are pickled, because scikit-learn estimators only round-trip that way (the blob lives in
the operator's own store), and are only loaded when their metadata says they came from
``forewarn train`` with the running scikit-learn version.

>>> m = ModelSet()
>>> m.versions, m.detectors()
({}, [])
"""

from __future__ import annotations

import base64
import logging
import pickle
import zlib

import sklearn
from forewarn.detectors import forest, seasonal
from forewarn.detectors.scoring import prefixed
from forewarn.flows.store import decode_state, encode_state

log = logging.getLogger(__name__)
SEASONAL = "seasonal"
PREFIX = "iforest:"


class ModelSet:
    """The newest version of every trained model, refreshed from the store between batches."""

    def __init__(self, threshold: float = 0.999) -> None:
        self.versions: dict[str, int] = {}
        self.seasonal: seasonal.SeasonalDetector | None = None
        self.forests = forest.RedForests({}, threshold)

    def detectors(self) -> list:
        return [d for d in (self.seasonal, self.forests if self.forests.models else None) if d is not None]

    def state(self) -> tuple[dict, dict]:
        arrays = {}
        for d in self.detectors():
            arrays.update({f"{d.name}/{k}": v for k, v in d.state()[1].items()})
        return {}, arrays

    def load(self, arrays: dict) -> None:
        for d in (self.seasonal, self.forests):
            if d is not None:
                d.load({}, prefixed(arrays, d.name))

    def refresh(self, store) -> None:
        for name, version in store.model_versions().items():
            if self.versions.get(name) == version or not (name.startswith(PREFIX) or name == SEASONAL):
                continue
            got = store.load_model(name, version)
            if got is None:
                continue
            meta, blob = got
            self.versions[name] = version
            if name == SEASONAL:
                episodes = self.seasonal.episodes if self.seasonal else None
                self.seasonal = seasonal.SeasonalDetector(
                    seasonal.SeasonalBaseline.from_arrays(decode_state(blob)[1]), version
                )
                if episodes is not None:
                    self.seasonal.episodes = episodes
                log.info("loaded seasonal baselines version %d (%s series)", version, meta.get("series"))
            elif meta.get("sklearn") != sklearn.__version__ or meta.get("trainer") != "forewarn":
                log.warning("skipping model %s v%d: trained with %s", name, version, meta.get("sklearn"))
            else:
                det = pickle.loads(zlib.decompress(base64.b64decode(blob)))
                self.forests.models[name[len(PREFIX) :]] = (det, version)
                log.info("loaded model %s version %d", name, version)


def train(
    store, seed: int, start_ms: int, end_ms: int, now_ms: float, min_samples: int = 30
) -> dict[str, int]:
    """Fit the seasonal baselines and one forest per service on the stored history; returns the
    new version per model."""
    done = {}
    stats = store.seasonal_stats(start_ms, end_ms, seasonal.MIN_DAYS, seasonal.MIN_POINTS)
    if len(stats):
        base = seasonal.SeasonalBaseline.fit(stats)
        meta = {"trainer": "forewarn", "series": int(stats["series_id"].nunique()), "slots": len(stats),
                "trained_from": start_ms, "trained_to": end_ms, "k": seasonal.K}  # fmt: skip
        done[SEASONAL] = store.save_model(SEASONAL, meta, encode_state(meta, base.arrays()), now_ms)
    hist = store.signal_history(list(forest.FEATURES), start_ms, end_ms)
    if hist.empty:
        return done
    hist["labels"] = [dict(x) for x in hist["labels"]]
    wide = forest.red_matrix(hist)
    for service, g in wide.groupby("service", sort=True):
        if len(g) < min_samples:
            log.info("train: %s has %d samples, need %d", service, len(g), min_samples)
            continue
        det = forest.fit_service(g, seed)
        meta = {"trainer": "forewarn", "sklearn": sklearn.__version__, "features": list(forest.FEATURES),
                "n_samples": len(g), "trained_from": int(g["ts"].min()), "trained_to": int(g["ts"].max())}  # fmt: skip
        blob = base64.b64encode(zlib.compress(pickle.dumps(det))).decode()
        done[PREFIX + service] = store.save_model(PREFIX + service, meta, blob, now_ms)
    return done
