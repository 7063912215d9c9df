"""``forewarn detect`` end to end in a subprocess: formats, one row per input row, clear errors."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

FOREWARN = [sys.executable, "-m", "forewarn.cli"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*FOREWARN, *args], capture_output=True, text=True, timeout=120)


def test_the_threshold_is_a_rarity_per_time_whatever_the_sampling_step(tmp_path: Path) -> None:
    """The same values sampled every minute, 5 minutes or hour: the faster series needs rarer
    points to alert (0.5 % of the points would be 7 alerts a day at 1-minute steps), and
    is_anomaly stays exactly the committed threshold applied to the printed anomaly_score."""
    from forewarn.config import DetectorSettings

    rng = np.random.default_rng(3)
    v = 100 + rng.standard_t(3, 4000)
    alerts = {}
    for step in (60, 300, 3600):
        src, dst = tmp_path / f"in{step}.csv", tmp_path / f"out{step}.csv"
        with open(src, "w", newline="") as f:
            csv.writer(f).writerows(
                [("timestamp", "value"), *((1_600_000_000 + step * i, f"{x:.4f}") for i, x in enumerate(v))]
            )
        assert _run("detect", "--input", str(src), "--output", str(dst)).returncode == 0
        with open(dst, newline="") as f:
            out = list(csv.reader(f))[1:]
        score = np.array([float(o[2]) for o in out])
        flag = np.array([o[3] == "1" for o in out])
        assert ((score >= DetectorSettings().threshold) == flag).all()
        alerts[step] = int(flag.sum())
    assert alerts[60] < alerts[300] < alerts[3600], alerts
    # a row number is not a clock: the threshold stays per point, like -p per_s=0 on the 5-minute file
    src, dst = tmp_path / "index.csv", tmp_path / "index-out.csv"
    with open(src, "w", newline="") as f:
        csv.writer(f).writerows([("timestamp", "value"), *((i + 1, f"{x:.4f}") for i, x in enumerate(v))])
    assert _run("detect", "--input", str(src), "--output", str(dst), "--no-seasonal").returncode == 0
    per_point = tmp_path / "per-point.csv"
    assert _run("detect", "--input", str(tmp_path / "in300.csv"), "--output", str(per_point), "--no-seasonal",
                "-p", "per_s=0").returncode == 0  # fmt: skip
    with open(dst, newline="") as f, open(per_point, newline="") as g:
        assert [r[3] for r in csv.reader(f)] == [r[3] for r in csv.reader(g)]


def test_detect_csv_formats_and_alignment(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 3000
    v = 50 + 10 * np.sin(np.arange(n) / 40) + rng.normal(0, 1, n)
    v[2200] += 40
    rows = []
    for i in range(n):
        if i % 3 == 0:
            ts = str(1_600_000_000 + 300 * i)  # unix seconds
        elif i % 3 == 1:
            ts = f"2020-09-13T12:{i % 60:02d}:00Z"  # ISO 8601
        else:
            ts = "2020-09-13 12:00:00"  # duplicates are fine
        val = "" if i == 10 else ("nan" if i == 11 else f"{v[i]:.3f}")
        rows.append((ts, val))
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    with open(src, "w", newline="") as f:
        csv.writer(f).writerows([("timestamp", "value"), *rows])
    r = _run("detect", "--input", str(src), "--output", str(dst))
    assert r.returncode == 0, r.stderr
    with open(dst, newline="") as f:
        out = list(csv.reader(f))
    assert out[0][:4] == ["timestamp", "value", "anomaly_score", "is_anomaly"]
    assert len(out) == n + 1
    assert [(o[0], o[1]) for o in out[1:]] == rows
    score = np.array([float(o[2]) for o in out[1:]])
    flag = np.array([int(o[3]) for o in out[1:]])
    assert ((score >= 0) & (score <= 1)).all()
    assert flag[2200] == 1 and flag[10] == 0 and flag[11] == 0
    assert "spike" in out[2201][9]
    # is_anomaly is exactly the committed threshold applied to anomaly_score
    from forewarn.config import DetectorSettings

    assert ((score >= DetectorSettings().threshold) == flag.astype(bool)).all()
    again = tmp_path / "again.csv"
    assert _run("detect", "--input", str(src), "--output", str(again)).returncode == 0
    assert again.read_bytes() == dst.read_bytes()


def test_detect_options_and_errors(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("timestamp,value\n" + "".join(f"{i},{i % 7}\n" for i in range(500)))
    dst = tmp_path / "out.csv"
    r = _run(
        "detect",
        "-i",
        str(src),
        "-o",
        str(dst),
        "--components",
        "spike,level",
        "-p",
        "window=64",
        "--threshold",
        "0.99",
        "--no-explain",
    )
    assert r.returncode == 0, r.stderr
    assert dst.read_text().splitlines()[0] == "timestamp,value,anomaly_score,is_anomaly,firing"
    bad = tmp_path / "bad.csv"
    bad.write_text("time,val\n1,2\n")
    r = _run("detect", "-i", str(bad), "-o", str(dst))
    assert r.returncode == 2 and "timestamp,value" in r.stderr and "Traceback" not in r.stderr
    r = _run("detect", "-i", str(tmp_path / "missing.csv"), "-o", str(dst))
    assert r.returncode == 2 and "not found" in r.stderr
    r = _run("detect", "-i", str(src), "-o", str(dst), "-p", "window=abc")
    assert r.returncode == 2 and "not a number" in r.stderr
    r = _run("detect", "-i", str(src), "-o", str(dst), "--components", "nope")
    assert r.returncode == 2 and "unknown components" in r.stderr


def test_detect_header_only_bom_crlf_and_extra_columns(tmp_path: Path) -> None:
    cases = {
        "empty.csv": b"timestamp,value\n",
        "bom.csv": b"\xef\xbb\xbftimestamp,value\r\n2020-01-01 00:00:00,1\r\n2020-01-01 00:05:00,2\r\n",
        "extra.csv": b'Timestamp,Value,label\n"2020-01-01T00:00:00+02:00","1.5",0\n1577836800,,1\n',
    }
    rows = {"empty.csv": [], "bom.csv": [("2020-01-01 00:00:00", "1"), ("2020-01-01 00:05:00", "2")],
            "extra.csv": [("2020-01-01T00:00:00+02:00", "1.5"), ("1577836800", "")]}  # fmt: skip
    for name, data in cases.items():
        src, dst = tmp_path / name, tmp_path / f"out-{name}"
        src.write_bytes(data)
        r = _run("detect", "-i", str(src), "-o", str(dst))
        assert r.returncode == 0, (name, r.stderr)
        with open(dst, newline="") as f:
            out = list(csv.reader(f))
        assert [(o[0], o[1]) for o in out[1:]] == rows[name], name
    (tmp_path / "zero.csv").write_bytes(b"")
    r = _run("detect", "-i", str(tmp_path / "zero.csv"), "-o", str(tmp_path / "z.out"))
    assert r.returncode == 2 and "not a readable CSV" in r.stderr


def test_detect_has_no_look_ahead(tmp_path: Path) -> None:
    """The output for the first rows of a file does not change when more rows follow."""
    rng = np.random.default_rng(4)
    n = 3000
    t = np.arange(n)
    v = 100 + 30 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 3, n)
    v[1500:1510] += 60
    lines = ["timestamp,value"] + [f"{1_500_000_000 + 300 * i},{v[i]:.4f}" for i in range(n)]
    full, prefix = tmp_path / "full.csv", tmp_path / "prefix.csv"
    full.write_text("\n".join(lines) + "\n")
    prefix.write_text("\n".join(lines[:1701]) + "\n")
    assert _run("detect", "-i", str(full), "-o", str(tmp_path / "f.out")).returncode == 0
    assert _run("detect", "-i", str(prefix), "-o", str(tmp_path / "p.out")).returncode == 0
    f_rows = (tmp_path / "f.out").read_text().splitlines()
    p_rows = (tmp_path / "p.out").read_text().splitlines()
    assert len(p_rows) == 1701 and p_rows == f_rows[:1701]
    assert any(r.split(",")[3] == "1" for r in p_rows[1501:1511])


def test_labelled_folder_scores_like_the_direct_path(tmp_path: Path) -> None:
    """``evaluate --data-dir/--labels`` runs the CSV command's code on NAB-layout files and scores
    them exactly like the in-memory evaluation of the same series."""
    import json

    import pandas as pd
    from forewarn.detectors.evaluate import ensemble_detector, evaluate, evaluate_dir
    from forewarn.detectors.scenarios import make_corpus, make_realistic_corpus

    # plus realistic files with missing stretches of rows (the gap filling must match too)
    gappy = [s for s in make_realistic_corpus(1, seed=3) if s.metric in ("adexchange", "cloud_network")]
    corpus = make_corpus(4, seed=3, max_len=3000) + gappy
    labels = {}
    (tmp_path / "data" / "synthetic").mkdir(parents=True)
    for s in corpus:
        ts = pd.to_datetime(s.timestamps, unit="s").strftime("%Y-%m-%d %H:%M:%S")
        name = f"synthetic/{s.name}.csv"
        pd.DataFrame({"timestamp": ts, "value": s.values}).to_csv(tmp_path / "data" / name, index=False)
        labels[name] = [ts[i] + ".000000" for i in s.labels]
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    (tmp_path / "work").mkdir()
    via_csv = evaluate_dir(tmp_path / "data", tmp_path / "labels.json", tmp_path / "work")
    direct = evaluate("direct", ensemble_detector(), corpus)
    assert via_csv.nab == pytest.approx(direct.nab, abs=1e-9)  # files summed in another order
    assert via_csv.recall == direct.recall and via_csv.precision == direct.precision


def test_evaluate_corpus_reads_labelled_folders_and_prints_every_metric(tmp_path, capsys) -> None:
    """``evaluate --corpus DIR``: labelled CSVs (plain or gzipped, any header case) in family
    folders, the fixed tune/hold split, and a table with NAB-style, KPI F1 and event columns."""
    import gzip

    from forewarn.detectors.corpus import load_corpus
    from forewarn.detectors.evaluate import main

    rng = np.random.default_rng(4)
    for fam, k in (("web", 3), ("db", 2)):
        (tmp_path / fam).mkdir()
        for i in range(k):
            n = 6000 if (fam, i) == ("db", 0) else 1500
            v = rng.normal(100, 2, n)
            lab = np.zeros(n, int)
            for at in (n // 3, 2 * n // 3):
                v[at : at + 20] += 40
                lab[at : at + 20] = 1
            text = "TimeStamp,Value,Label\n" + "".join(
                f"{1_600_000_000 + 60 * j},{v[j]:.3f},{lab[j]}\n" for j in range(n)
            )
            if i == 1:
                with gzip.open(tmp_path / fam / f"s{i}.csv.gz", "wt") as f:
                    f.write(text)
            else:
                (tmp_path / fam / f"s{i}.csv").write_text(text)
    series = load_corpus(tmp_path)
    parts = {s.name: s.ranges() for s in series}
    assert parts["db/s0.csv"] == {"tune": (0, 3000), "hold": (3000, 6000)}  # long: cut in time
    short = [next(iter(r)) for name, r in sorted(parts.items()) if name != "db/s0.csv"]
    assert set(short) == {"tune", "hold"}  # short ones dealt to both parts
    main(["--corpus", str(tmp_path)])
    out = capsys.readouterr().out
    assert "| NAB standard | low FP | low FN |" in out and "KPI F1 (P / R)" in out
    rows = [line for line in out.splitlines() if line.startswith(f"| **{tmp_path.name} ·")]
    assert len(rows) == 2  # tune and hold
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        found, total = map(int, cells[7].split("/"))
        assert total > 0 and found == total  # 40-sigma bumps: every event found
