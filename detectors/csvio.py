"""Score a ``timestamp,value`` CSV into ``timestamp,value,anomaly_score,is_anomaly,...,firing`` in chunks.

``is_anomaly`` marks where an alert starts (an episode's onset); ``firing`` marks every row of an
episode, from its alert until the series is back to its normal band.

Rows are echoed as given (timestamp and value text untouched), one output row per input row in
input order, so the output lines up with the input whatever the timestamps look like.
"""

from __future__ import annotations

import contextlib
import csv
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd
from forewarn.detectors.ensemble import (
    EnsembleCore,
    EnsembleParams,
    clock_step,
    for_step,
    per_time_score,
    seasonal_periods,
    step_of,
)
from forewarn.detectors.gaps import GapFiller, expand
from forewarn.detectors.multiseries import explain_block

OUTPUT_COLUMNS = ["timestamp", "value", "anomaly_score", "is_anomaly"]
EXPLAIN_COLUMNS = ["raw_score", "component", "expected", "lower", "upper", "explanation"]


class InputError(ValueError):
    """The input file is not a readable ``timestamp,value`` CSV."""


def parse_timestamps(text: pd.Series) -> np.ndarray:
    """Unix seconds (float, NaN where unparseable) from ISO 8601, ``YYYY-MM-DD HH:MM:SS``, Unix
    seconds or Unix milliseconds (numbers from 1e11: seconds would be after the year 5000).

    >>> parse_timestamps(pd.Series(["1700000000", "2023-11-14T22:13:20Z", "2023-11-14 22:13:21", "x"])).tolist()
    [1700000000.0, 1700000000.0, 1700000001.0, nan]
    >>> parse_timestamps(pd.Series(["1700000000500"])).tolist()
    [1700000000.5]
    """
    num = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, copy=True)
    num = np.where((num >= 1e11) & (num < 1e14), num / 1000.0, num)
    need = np.isnan(num) & text.str.strip().ne("").to_numpy()
    if need.any():
        dt = pd.to_datetime(text[need], format="ISO8601", utc=True, errors="coerce")
        secs = (dt - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
        num[need] = secs.to_numpy(dtype=np.float64, na_value=np.nan)
    return num


def _chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    try:
        reader = pd.read_csv(
            path, dtype=str, keep_default_na=False, chunksize=chunk_rows, skipinitialspace=True
        )
        first = True
        for chunk in reader:
            if first:
                cols = {c.strip().lower(): c for c in chunk.columns}
                if "timestamp" not in cols or "value" not in cols:
                    raise InputError(
                        f"{path}: need a header with columns timestamp,value; got {list(chunk.columns)}"
                    )
                tcol, vcol = cols["timestamp"], cols["value"]
                first = False
            yield chunk[[tcol, vcol]].set_axis(["timestamp", "value"], axis=1)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a readable CSV: {e}") from None


def detect_csv(
    src: Path,
    dst: Path | TextIO,
    params: EnsembleParams,
    explain: bool = True,
    seasonal: bool = True,
    chunk_rows: int = 65536,
) -> dict[str, int]:
    """Stream ``src`` through one detector into ``dst``; returns row / alert / bad-timestamp counts."""
    core: EnsembleCore | None = None
    step = clock = float("nan")
    rows = alerts = bad_ts = 0
    gaps = GapFiller(float("nan"))
    with contextlib.ExitStack() as stack:
        out: TextIO = dst if hasattr(dst, "write") else stack.enter_context(open(dst, "w", newline=""))  # type: ignore[arg-type]
        w = csv.writer(out, lineterminator="\n")
        w.writerow(OUTPUT_COLUMNS + (EXPLAIN_COLUMNS if explain else []) + ["firing"])
        for chunk in _chunks(Path(src), chunk_rows):
            ts = parse_timestamps(chunk["timestamp"])
            bad_ts += int(np.isnan(ts).sum())
            x = pd.to_numeric(chunk["value"].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
            if core is None:  # daily / weekly periods from the sampling step of the first rows
                step = step_of(ts)
                periods = seasonal_periods(step, params.max_period) if seasonal else ()
                clock = clock_step(ts)  # NaN for a row number: then the threshold is per point
                core = EnsembleCore(1, for_step(params, clock), periods)
                # seasonal views count time: missing sampling slots become NaN points
                gaps = GapFiller(step if core.periods else float("nan"))
            xe, at = expand(x, gaps.slots(ts))
            block = core.update(xe[None, :])
            # rounded down, so the printed score compares with the threshold like the real one
            # (and kept on its side of it where rescaling to the step rounds across)
            alert = block.alert[0, at]
            score = per_time_score(np.clip(block.score[0, at], 0.0, 1.0), params, clock)
            thr = params.threshold
            score = np.where(alert, np.maximum(score, thr), np.minimum(score, max(thr - 1e-9, 0.0)))
            score = np.floor(score * 1e9) / 1e9
            cols = [chunk["timestamp"], chunk["value"], np.char.mod("%.9f", score), alert.astype(np.int8)]
            if explain:
                extra = np.full((len(x), 5), "", dtype=object)
                for i in np.flatnonzero(alert):
                    ex = explain_block(block, 0, int(at[i]))
                    extra[i] = [
                        ex.component,
                        *(f"{v:.6g}" for v in (ex.expected, ex.lower, ex.upper)),
                        ex.text,
                    ]
                raw = per_time_score(np.clip(block.raw[0, at], 0.0, 1.0), params, clock)
                cols += [np.char.mod("%.9f", np.floor(raw * 1e9) / 1e9), *extra.T]
            cols.append(block.firing[0, at].astype(np.int8))
            w.writerows(zip(*cols, strict=True))
            rows += len(x)
            alerts += int(alert.sum())
    if rows and bad_ts == rows:
        print(f"forewarn: warning: no timestamp in {src} could be parsed", file=sys.stderr)
    return {"rows": rows, "anomalies": alerts, "unparsed_timestamps": bad_ts}
