"""Labelled real series from a folder, and the fixed split that keeps tuning honest.

A corpus folder holds CSV files (optionally gzipped) with a timestamp, a value and a 0/1 label per
row; header names are matched case-insensitively (``timestamp``/``TimeStamp``, ``value``,
``label``/``is_anomaly``). Timestamps are Unix seconds or ISO 8601. Files are found recursively;
a file's *family* is its folder relative to the corpus root (the corpus folder's own name for
files at the root), so per-family tables group like series. This reads both public corpora forewarn develops on:
Microsoft's Cloud Monitoring Dataset (one folder per domain) and the AIOps Challenge 2018 KPIs
(``<KPI id>.csv.gz`` at the root).

The split is decided before any tuning and never by results: a long series (at least
``TIME_SPLIT_POINTS`` points, e.g. the KPIs) is cut in time, its first half for tuning and its
second half held back (scored with the first half as history, as a monitor that has been running);
short series are dealt alternately to the two parts by name within their family, so every family is
in both. ``python -m forewarn.detectors.evaluate --corpus DIR --part hold`` scores the held-back
part only.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "a.csv").write_text("timestamp,value,label\\n0,1,0\\n60,2,1\\n120,1,0\\n")
>>> [(s.name, s.family == d.name, s.labels.tolist()) for s in load_corpus(d)]
[('a.csv', True, [False, True, False])]
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

TIME_SPLIT_POINTS = 5000  # series at least this long are split in time, shorter ones by series
PARTS = ("tune", "hold")
_TS = ("timestamp", "time", "ts")
_LABEL = ("label", "is_anomaly", "anomaly")


@dataclass
class LabelledSeries:
    """One labelled series of a corpus."""

    name: str  # path relative to the corpus root
    family: str
    corpus: str
    timestamps: np.ndarray  # Unix seconds
    values: np.ndarray
    labels: np.ndarray  # bool per point
    part: str = "tune"  # the part of a short series (long ones are split in time)

    def ranges(self) -> dict[str, tuple[int, int]]:
        """Index range of each part this series belongs to (see the module docstring)."""
        n = len(self.values)
        if n >= TIME_SPLIT_POINTS:
            return {"tune": (0, n // 2), "hold": (n // 2, n)}
        return {self.part: (0, n)}


class CorpusError(ValueError):
    """A corpus folder that cannot be read; the message names the file."""


def _read(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from forewarn.detectors.csvio import parse_timestamps

    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as e:
        raise CorpusError(f"{path}: not a readable CSV: {e}") from None
    cols = {c.strip().lower(): c for c in df.columns}
    pick = [next((cols[c] for c in names if c in cols), None) for names in (_TS, ("value",), _LABEL)]
    if None in pick:
        raise CorpusError(f"{path}: need columns timestamp, value and label; got {list(df.columns)}")
    ts = parse_timestamps(df[pick[0]])
    v = pd.to_numeric(df[pick[1]].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    lab = pd.to_numeric(df[pick[2]].str.strip(), errors="coerce").fillna(0).to_numpy() > 0
    return ts, v, lab


def files(root: Path) -> Iterator[Path]:
    for p in sorted(root.rglob("*")):
        if p.is_file() and (p.name.endswith(".csv") or p.name.endswith(".csv.gz")):
            yield p


def load_corpus(root: str | Path) -> list[LabelledSeries]:
    """Every labelled CSV under ``root`` (sorted by path), with its family and split order."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"corpus folder not found: {root}")
    out = []
    for p in files(root):
        ts, v, lab = _read(p)
        rel = p.relative_to(root)
        fam = root.name if str(rel.parent) == "." else str(rel.parent)
        out.append(LabelledSeries(str(rel), fam, root.name, ts, v, lab))
    if not out:
        raise CorpusError(f"{root}: no .csv or .csv.gz files")
    by_family: dict[str, list[LabelledSeries]] = {}
    for s in out:
        by_family.setdefault(s.family, []).append(s)
    k = 0  # dealt alternately within each family, continuing across families
    for fam in sorted(by_family):
        for s in sorted(by_family[fam], key=lambda s: s.name):
            if len(s.values) < TIME_SPLIT_POINTS:
                s.part = PARTS[k % 2]
                k += 1
    return out
