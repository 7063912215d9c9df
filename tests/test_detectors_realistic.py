"""Realistic labelled families, the fixes they motivated, and the conformal forecast band."""

from __future__ import annotations

import numpy as np
from forewarn.detectors import EnsembleCore, EnsembleParams, seasonal_periods, step_of
from forewarn.detectors.evaluate import PROFILES, ensemble_detector, family_table, score_file
from forewarn.detectors.scenarios import FAMILIES, HELD_OUT_SEED, TUNING_SEED, make_realistic_corpus


def test_realistic_corpus_is_seeded_labelled_and_gappy() -> None:
    a = make_realistic_corpus(1, seed=TUNING_SEED)
    b = make_realistic_corpus(1, seed=TUNING_SEED)
    assert TUNING_SEED != HELD_OUT_SEED
    assert [s.metric for s in a] == list(FAMILIES)
    for s, t in zip(a, b, strict=True):
        np.testing.assert_array_equal(s.values, t.values)
        assert s.labels == t.labels and len(s.labels) == len(s.kinds)
        assert all(0 <= i < len(s.values) for i in s.labels)
        assert np.all(np.diff(s.timestamps) > 0)
    # some files lost stretches of rows (exporter down): steps larger than the typical one
    assert any((np.diff(s.timestamps) > 2 * np.median(np.diff(s.timestamps))).any() for s in a)


def test_family_table_scores_every_profile() -> None:
    corpus = make_realistic_corpus(1, seed=3)
    rows = family_table(ensemble_detector(), corpus)
    assert len(rows) == len(FAMILIES) + 1 and rows[-1].startswith("| all |")
    overall = float(rows[-1].split("|")[2])
    assert overall > 0  # better than never alerting
    alerts = np.zeros(1000, bool)
    alerts[500] = True  # one false alert before the window costs A_FP of each profile
    assert [round(score_file(alerts, [800], p).raw + p["fn"], 2) for p in PROFILES.values()] == [
        -0.11,
        -0.22,
        -0.11,
    ]


def test_mostly_zero_counts_do_not_page_but_an_error_storm_does() -> None:
    rng = np.random.default_rng(5)
    x = rng.poisson(0.1, (20, 4000)).astype(float)
    quiet = EnsembleCore(20).update(x).alert[:, 600:]
    # under one false alert per 1,000 points (the variance test alone used to give three)
    assert quiet.sum() / quiet.size * 1000 < 1.0
    storm = x[:1].copy()
    storm[0, 3000:3040] += 6  # sustained non-zero counts
    alerts = np.flatnonzero(EnsembleCore(1).update(storm).alert[0])
    assert any(3000 <= i < 3040 for i in alerts)


def test_a_square_daily_wave_jumping_higher_is_caught_by_the_seasonal_view() -> None:
    rng = np.random.default_rng(1)
    n = 4032
    t = 1_400_000_000 + 300 * np.arange(n)
    x = np.where((np.arange(n) % 288) < 140, 80.0, 20.0) + rng.normal(0, 3, n)
    x[3000:3150] += 40  # a day whose pattern jumps higher
    periods = seasonal_periods(step_of(t))
    alerts = np.flatnonzero(EnsembleCore(1, periods=periods).update(x[None, :]).alert[0])
    assert any(3000 <= i < 3150 for i in alerts)
    # the daily edges are routine: no alert near an edge once the views know the pattern
    assert not any(1000 <= i < 3000 and min(i % 288, abs(i % 288 - 140)) < 5 for i in alerts)


def test_missing_rows_keep_the_seasonal_views_in_phase(tmp_path) -> None:
    import io

    import pandas as pd
    from forewarn.detectors import EnsembleParams
    from forewarn.detectors.csvio import detect_csv

    rng = np.random.default_rng(2)
    n = 4032
    t = 1_400_000_000 + 300 * np.arange(n)
    x = np.where((np.arange(n) % 288) < 140, 80.0, 20.0) + rng.normal(0, 3, n)
    keep = np.ones(n, bool)
    keep[2000:2100] = False  # the exporter was down for 100 slots
    t, x = t[keep], x[keep]
    src = tmp_path / "gap.csv"
    pd.DataFrame({"timestamp": t, "value": x}).to_csv(src, index=False)
    out = io.StringIO()
    detect_csv(src, out, EnsembleParams(), explain=False)
    flags = pd.read_csv(io.StringIO(out.getvalue()))["is_anomaly"].to_numpy()
    assert len(flags) == len(x) and not flags[2000:].any()
    # counted in rows, the daily views would be 100 points out of phase after the gap
    periods = seasonal_periods(step_of(t))
    assert EnsembleCore(1, periods=periods).update(x[None, :]).alert[0, 2000:].any()


def test_routine_huge_blips_stop_paging_but_a_first_one_pages() -> None:
    rng = np.random.default_rng(3)
    n = 6000
    x = rng.normal(0, 1, (2, n))
    blips = np.flatnonzero(rng.random(n) < 0.005)
    x[0, blips] += rng.uniform(15, 40, len(blips))  # routine 15-40 sigma blips (cron, GC)
    x[1, 4000] += 30  # the same size once: news
    alerts = EnsembleCore(2).update(x).alert
    assert alerts[1, 4000]
    # the committed threshold is chosen on real labelled data, where operators mark repeated big
    # spikes too, so at it routine blips keep alerting; at a stricter threshold they stop
    strict = EnsembleCore(2, EnsembleParams(threshold=0.999)).update(x).alert
    assert strict[0, 3000:].sum() <= 3 and strict[1, 4000]


def test_snapshot_from_before_the_blip_counter_still_loads(tmp_path) -> None:
    import json

    from forewarn.detectors import MultiSeriesDetector

    det = MultiSeriesDetector()
    det.update(["a"] * 300, np.arange(300.0), np.random.default_rng(0).normal(0, 1, 300))
    meta, arrays = det.snapshot()
    arrays = {k: v for k, v in arrays.items() if k != "ew_big"}
    (tmp_path / "old.json").write_text(json.dumps(meta))
    np.savez(tmp_path / "old.npz", **arrays)
    back = MultiSeriesDetector.load(tmp_path / "old")
    assert back.series_ids == ["a"] and not back.core.state["ew_big"].any()


def test_gap_filling_is_bounded_on_timestamps_that_are_not_a_grid() -> None:
    from forewarn.detectors.gaps import FILL_RATIO, MAX_FILL, GapFiller

    # five-minute rows at first (the step is taken from them), then one row a day
    ts = np.concatenate([300.0 * np.arange(64), 300.0 * 63 + 86400.0 * np.arange(1, 5000)])
    g = GapFiller(300.0)
    slots = np.concatenate([g.slots(ts[:3000]), g.slots(ts[3000:])])
    assert slots.sum() <= MAX_FILL + FILL_RATIO * len(ts) and not g.active


def test_seasonal_fit_gate_is_stream_causal_and_keeps_the_square_wave() -> None:
    """Opt-in ``seasonal_fit``: scores do not depend on block size, a square daily wave (explained
    by its seasonal view) still pages on a jump, and the default leaves scores unchanged."""
    from dataclasses import replace

    rng = np.random.default_rng(1)
    n = 4032
    x = np.where((np.arange(n) % 288) < 140, 80.0, 20.0) + rng.normal(0, 3, n)
    x[3000:3150] += 40
    p = replace(EnsembleParams(), seasonal_fit=0.3)
    full = EnsembleCore(1, p, (288, 2016)).update(x[None, :])
    core = EnsembleCore(1, p, (288, 2016))
    parts = [core.update(x[None, i : i + k]).score[0] for i, k in ((0, 1), (1, 999), (1000, 3032))]
    np.testing.assert_allclose(np.concatenate(parts), full.score[0], rtol=1e-9, atol=1e-12)
    alerts = np.flatnonzero(full.alert[0])
    assert any(3000 <= i < 3150 for i in alerts)
    assert not any(1000 <= i < 3000 and min(i % 288, abs(i % 288 - 140)) < 5 for i in alerts)
    # a slowly drifting sensor with no daily pattern: its "same time yesterday" explains nothing
    drift = 70 + np.cumsum(rng.normal(0, 0.3, n)) + rng.normal(0, 0.5, n)
    gated = EnsembleCore(1, p, (288, 2016)).update(drift[None, :]).alert[0].sum()
    plain = EnsembleCore(1, None, (288, 2016)).update(drift[None, :]).alert[0].sum()
    assert gated <= plain
