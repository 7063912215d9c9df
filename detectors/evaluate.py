"""NAB-style window scoring and event-level metrics, and the comparison of candidate detectors.

Scoring follows the Numenta Anomaly Benchmark's published rules (standard profile): each label gets
a window of ``0.1 * len / n_labels`` points centred on it; detections in the probationary period
(first 15% of the file, at most 750 points) are ignored; only the first detection in a window counts,
weighted by a scaled sigmoid of its position (early = +1); every detection outside a window costs
``A_FP`` weighted by how far after the previous window it is; each missed window costs ``A_FN``. The
corpus score is ``100 * (raw - null) / (perfect - null)`` summed over files, where *null* never fires.

``python -m forewarn.detectors.evaluate`` prints the synthetic-corpus table of docs/detectors-history.md.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from forewarn.detectors.ensemble import (
    COMPONENTS,
    EnsembleParams,
)
from forewarn.detectors.metrics import PROFILES, STANDARD, FileScore, scaled_sigmoid, score_file, windows
from forewarn.detectors.realdata import ensemble_alerts
from forewarn.detectors.scenarios import Scenario, make_corpus

__all__ = ["PROFILES", "STANDARD", "FileScore", "scaled_sigmoid", "score_file", "windows"]


@dataclass
class Summary:
    name: str
    nab: float
    precision: float
    recall: float
    median_delay: float
    fp_per_10k: float
    points_per_s: float

    def row(self) -> str:
        return (
            f"| {self.name} | {self.nab:.1f} | {self.precision:.2f} | {self.recall:.2f} | "
            f"{self.median_delay:.0f} | {self.fp_per_10k:.1f} | {self.points_per_s:,.0f} |"
        )


def summarise(name: str, scores: list[FileScore], points: int, seconds: float) -> Summary:
    raw = sum(s.raw for s in scores)
    null = sum(s.null for s in scores)
    perfect = sum(s.perfect for s in scores)
    nab = 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0
    tp = sum(s.tp for s in scores)
    fn = sum(s.fn for s in scores)
    fp = sum(s.fp for s in scores)
    delays = [d for s in scores for d in s.delays]
    return Summary(
        name,
        nab,
        tp / (tp + fp) if tp + fp else 0.0,
        tp / (tp + fn) if tp + fn else 0.0,
        float(np.median(delays)) if delays else float("nan"),
        1e4 * fp / max(points, 1),
        points / max(seconds, 1e-9),
    )


Detector = Callable[[Scenario], np.ndarray]


def ensemble_detector(params: EnsembleParams | None = None, seasonal: bool = True) -> Detector:
    """``forewarn detect``'s alerts on a synthetic scenario."""
    run = ensemble_alerts(params, seasonal)
    return lambda s: run(s.timestamps, s.values)


def zscore_detector(window: int = 96, z: float = 6.0, refractory: int = 150) -> Detector:
    """Floor: a plain rolling z-score with the same refractory period."""

    def run(s: Scenario) -> np.ndarray:
        import pandas as pd

        x = pd.Series(s.values)
        mu = x.rolling(window, min_periods=window // 4).mean().shift(1)
        sd = x.rolling(window, min_periods=window // 4).std().shift(1)
        cand = ((x - mu).abs() > z * (sd + 1e-9)).to_numpy()
        return _refract(cand, refractory)

    return run


def hst_detector(threshold: float = 0.95, refractory: int = 150) -> Detector:
    """river's HalfSpaceTrees on (value, change) features, min-max scaled online, with a
    ThresholdFilter keeping flagged points out of learning."""

    def run(s: Scenario) -> np.ndarray:
        from river import anomaly, compose, preprocessing

        model = compose.Pipeline(
            preprocessing.MinMaxScaler(),
            anomaly.HalfSpaceTrees(n_trees=10, height=8, window_size=250, seed=0),
        )
        filt = anomaly.ThresholdFilter(model, threshold=threshold)
        out = np.zeros(len(s.values), dtype=bool)
        prev = float(s.values[0])
        for i, v in enumerate(s.values.tolist()):
            if not math.isfinite(v):
                continue
            feats = {"v": v, "d": v - prev}
            prev = v
            out[i] = filt.classify(filt.score_one(feats))
            filt.learn_one(feats)
        return _refract(out, refractory)

    return run


def holt_winters_detector(z: float = 5.0, refractory: int = 150) -> Detector:
    """river's Holt (level + trend) forecaster; alert when the one-step error leaves a robust band."""

    def run(s: Scenario) -> np.ndarray:
        from river import time_series

        model = time_series.HoltWinters(alpha=0.3, beta=0.05)
        out = np.zeros(len(s.values), dtype=bool)
        errs: list[float] = []
        for i, v in enumerate(s.values.tolist()):
            if not math.isfinite(v):
                continue
            if i > 10:
                pred = model.forecast(horizon=1)[0]
                e = abs(v - pred)
                if len(errs) > 50:
                    recent = errs[-500:]
                    scale = float(np.median(recent)) * 1.4826 + 1e-9
                    out[i] = e > z * scale
                errs.append(e)
            model.learn_one(v)
        return _refract(out, refractory)

    return run


def isolation_forest_detector(threshold: float = 0.999, refractory: int = 150) -> Detector:
    """scikit-learn IsolationForest (via ``MultivariateDetector``) on (value, change, deviation from
    the recent median) vectors, trained in batch on the first 15% of the series, then frozen."""

    def run(s: Scenario) -> np.ndarray:
        import pandas as pd
        from forewarn.detectors.multivariate import MultivariateDetector

        x = pd.Series(s.values)
        feats = np.column_stack([x, x.diff(), x - x.rolling(8, min_periods=2).median().shift(1)])
        cut = max(50, int(0.15 * len(x)))
        train = feats[:cut][np.isfinite(feats[:cut]).all(axis=1)]
        det = MultivariateDetector(["value", "change", "deviation"], seed=0).fit(train)
        score = np.zeros(len(x))
        score[cut:] = det.score(feats[cut:])
        return _refract(score >= threshold, refractory)

    return run


def page_hinkley_detector(threshold: float = 50.0, refractory: int = 150) -> Detector:
    """river's Page–Hinkley change detector on the series standardised by its expanding median/MAD
    (computed from the points before each one)."""

    def run(s: Scenario) -> np.ndarray:
        import pandas as pd
        from river import drift

        x = pd.Series(s.values)
        med = x.expanding(min_periods=20).median().shift(1)
        mad = (x - med).abs().expanding(min_periods=20).median().shift(1) * 1.4826 + 1e-9
        z = ((x - med) / mad).to_numpy()
        ph = drift.PageHinkley(threshold=threshold)
        out = np.zeros(len(z), dtype=bool)
        for i, v in enumerate(z.tolist()):
            if math.isfinite(v):
                ph.update(v)
                out[i] = ph.drift_detected
        return _refract(out, refractory)

    return run


def _refract(cand: np.ndarray, refractory: int, warmup: int = 120) -> np.ndarray:
    out = np.zeros_like(cand, dtype=bool)
    last = -(10**9)
    for i in np.flatnonzero(cand):
        if i > warmup and i - last > refractory:
            out[i] = True
            last = i
    return out


def evaluate(name: str, detector: Detector, corpus: list[Scenario]) -> Summary:
    t = time.perf_counter()
    alerts = [detector(s) for s in corpus]
    seconds = time.perf_counter() - t
    scores = [score_file(a, s.labels) for a, s in zip(alerts, corpus, strict=True)]
    return summarise(name, scores, sum(len(s.values) for s in corpus), seconds)


def family_table(detector: Detector, corpus: list[Scenario]) -> list[str]:
    """Markdown rows: the NAB-style score under each profile, per family of a realistic corpus and
    over all of it, with event precision / recall and false alerts per 10k points (standard)."""
    alerts = {id(s): detector(s) for s in corpus}
    families = list(dict.fromkeys(s.metric for s in corpus))
    rows = []
    for fam in [*families, "all"]:
        part = [s for s in corpus if fam in ("all", s.metric)]
        pts = sum(len(s.values) for s in part)
        by = {
            name: summarise(fam, [score_file(alerts[id(s)], s.labels, prof) for s in part], pts, 1.0)
            for name, prof in PROFILES.items()
        }
        st = by["standard"]
        rows.append(
            f"| {fam} | {st.nab:.1f} | {by['reward_low_FP_rate'].nab:.1f} | "
            f"{by['reward_low_FN_rate'].nab:.1f} | {st.precision:.2f} | {st.recall:.2f} | {st.fp_per_10k:.1f} |"
        )
    return rows


FAMILY_HEADER = (
    "| family | standard | low FP | low FN | event precision | event recall | false alerts / 10k |\n"
    "|---|---|---|---|---|---|---|"
)


def candidates(slow: bool) -> dict[str, Detector]:
    base = EnsembleParams()
    out: dict[str, Detector] = {
        "ensemble (default)": ensemble_detector(base),
        "ensemble without seasonal views": ensemble_detector(base, seasonal=False),
        "ensemble + rate view": ensemble_detector(replace(base, rate_view=True)),
        "ensemble, threshold 0.9999": ensemble_detector(replace(base, threshold=0.9999)),
        "ensemble, threshold 0.995": ensemble_detector(replace(base, threshold=0.995)),
    }
    for c in COMPONENTS:
        out[f"{c} only"] = ensemble_detector(replace(base, components=(c,)))
    out["rolling z-score (floor)"] = zscore_detector()
    out["IsolationForest on the first 15%"] = isolation_forest_detector()
    if slow:
        out["river HalfSpaceTrees + ThresholdFilter"] = hst_detector()
        out["river Holt forecaster band"] = holt_winters_detector()
        out["river Page-Hinkley on robust z"] = page_hinkley_detector()
    return out


HEADER = (
    "| detector | NAB-style score | event precision | event recall | median delay (points) | "
    "false alerts / 10k points | points/s |\n|---|---|---|---|---|---|---|"
)


def score_outputs(outputs: dict[str, Path], labels: dict[str, list[str]], seconds: float = 1.0) -> Summary:
    """NAB-style score of ``forewarn detect`` output files against label timestamps per file (the
    layout of NAB's ``combined_labels.json``: file name -> list of label timestamps)."""
    import pandas as pd
    from forewarn.detectors.csvio import parse_timestamps

    scores = []
    points = 0
    for name, path in outputs.items():
        out = pd.read_csv(path, dtype=str, keep_default_na=False)
        ts = parse_timestamps(out["timestamp"])
        wanted = parse_timestamps(pd.Series(labels.get(name, []), dtype=str))
        idx = [int(np.argmin(np.abs(ts - w))) for w in wanted if np.isfinite(w)]
        scores.append(score_file(out["is_anomaly"].astype(int).to_numpy(bool), idx))
        points += len(out)
    return summarise("forewarn detect", scores, points, seconds)


def evaluate_dir(data_dir: Path, labels_file: Path, work: Path) -> Summary:
    """Run the CSV command's code path on every labelled file under ``data_dir`` and score it."""
    import json

    from forewarn.detectors.csvio import detect_csv

    from forewarn.config import DetectorSettings

    labels = json.loads(labels_file.read_text())
    params = replace(EnsembleParams(), threshold=DetectorSettings().threshold)
    outputs = {}
    t = time.perf_counter()
    for name in sorted(labels):
        src = data_dir / name
        dst = work / (name.replace("/", "__") + ".out.csv")
        detect_csv(src, dst, params, explain=False)
        outputs[name] = dst
    return score_outputs(outputs, labels, time.perf_counter() - t)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, default=120, help="scenarios in the corpus")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--max-len", type=int, default=20000)
    ap.add_argument("--slow", action="store_true", help="also run the per-point river candidates")
    ap.add_argument("--forecast", action="store_true", help="backtest the saturation forecaster instead")
    ap.add_argument(
        "--realistic",
        type=int,
        metavar="N",
        help="score the default ensemble per family on N realistic series per family instead",
    )
    ap.add_argument(
        "--corpus",
        action="append",
        metavar="DIR",
        help="score the default detector on labelled real CSVs under DIR (repeatable; see corpus.py)",
    )
    ap.add_argument(
        "--part", choices=["tune", "hold", "all"], default="all", help="with --corpus: which part"
    )
    ap.add_argument("--no-families", action="store_true", help="with --corpus: totals only")
    ap.add_argument(
        "--threshold", type=float, help="with --corpus: alert threshold (default: the committed one)"
    )
    ap.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="NAME=NUMBER",
        help="with --corpus: an ensemble parameter",
    )
    ap.add_argument("--data-dir", type=Path, help="score your own labelled CSVs under this folder ...")
    ap.add_argument("--labels", type=Path, help="... labelled by this JSON (file -> label timestamps)")
    args = ap.parse_args(argv)
    if args.corpus:
        from forewarn.detectors.corpus import PARTS, CorpusError
        from forewarn.detectors.realdata import report

        from forewarn.config import DetectorSettings

        kw: dict[str, float | int] = {"threshold": args.threshold or DetectorSettings().threshold}
        for item in args.param:
            name, _, val = item.partition("=")
            kw[name] = float(val) if "." in val or "e" in val else int(val)
        try:
            params = replace(EnsembleParams(), **kw)
            print(
                report(
                    args.corpus,
                    ensemble_alerts(params),
                    PARTS if args.part == "all" else (args.part,),
                    not args.no_families,
                )
            )
        except (CorpusError, TypeError, ValueError) as e:
            ap.error(str(e))
        return
    if args.data_dir or args.labels:
        import tempfile

        if not (args.data_dir and args.labels):
            ap.error("--data-dir and --labels go together")
        with tempfile.TemporaryDirectory() as work:
            print(HEADER)
            print(evaluate_dir(args.data_dir, args.labels, Path(work)).row())
        return
    if args.realistic:
        from forewarn.detectors.scenarios import make_realistic_corpus

        corpus = make_realistic_corpus(args.realistic, seed=args.seed)
        n_points = sum(len(s.values) for s in corpus)
        n_labels = sum(len(s.labels) for s in corpus)
        print(
            f"realistic corpus: {len(corpus)} series, {n_points} points, {n_labels} incidents, seed {args.seed}"
        )
        print(FAMILY_HEADER)
        print("\n".join(family_table(ensemble_detector(), corpus)))
        return
    if args.forecast:
        from forewarn.detectors.forecast import backtest

        for key, val in backtest(args.series, args.seed).items():
            print(f"{key}: {val:.1f}" if isinstance(val, float) else f"{key}: {val}")
        return
    corpus = make_corpus(args.series, seed=args.seed, max_len=args.max_len)
    n_points = sum(len(s.values) for s in corpus)
    n_labels = sum(len(s.labels) for s in corpus)
    print(f"corpus: {len(corpus)} series, {n_points} points, {n_labels} labelled incidents, seed {args.seed}")
    print(HEADER)
    for name, det in candidates(args.slow).items():
        print(evaluate(name, det, corpus).row(), flush=True)


if __name__ == "__main__":
    main()
