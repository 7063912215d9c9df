"""Commands of forewarn.detectors: ``forewarn detect``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from forewarn import cliutil


def register(app: typer.Typer) -> None:
    """Add this component's commands to the ``forewarn`` CLI."""
    app.command("detect")(detect_cmd)


def detect_cmd(
    ctx: typer.Context,
    input: Annotated[Path, typer.Option("--input", "-i", help="CSV with columns timestamp,value.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="CSV to write (one row per input row).")],
    threshold: Annotated[
        float | None,
        typer.Option(help="Alert threshold on the score in (0, 1]; default: detectors.threshold."),
    ] = None,
    components: Annotated[
        str | None, typer.Option(help="Comma-separated tests to combine: spike,level,trend,variance,stuck.")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Ensemble parameter NAME=NUMBER, e.g. window=96 (repeatable)."),
    ] = None,
    explain: Annotated[
        bool, typer.Option(help="Add explanation columns after the four standard ones.")
    ] = True,
    seasonal: Annotated[
        bool, typer.Option(help="Also compare with the same time of day/week (periods from the timestamps).")
    ] = True,
) -> None:
    """Score a series in a CSV file point by point (no look-ahead) and write anomaly scores and flags."""
    from dataclasses import fields, replace

    from forewarn.detectors.csvio import InputError, detect_csv
    from forewarn.detectors.ensemble import EnsembleParams

    s = cliutil.settings(ctx)
    kw: dict[str, object] = {"threshold": s.detectors.threshold if threshold is None else threshold}
    numeric = {f.name: f.type for f in fields(EnsembleParams) if f.name != "components"}
    for item in param or []:
        name, _, val = item.partition("=")
        if name not in numeric or not val:
            cliutil.fail(f"--param {item!r}: expected NAME=NUMBER with NAME one of {', '.join(numeric)}")
        try:
            kw[name] = int(val) if numeric[name] in (int, "int") else float(val)
        except ValueError:
            cliutil.fail(f"--param {item!r}: {val!r} is not a number")
    if components:
        kw["components"] = tuple(c.strip() for c in components.split(",") if c.strip())
    try:
        params = replace(EnsembleParams(), **kw)
    except ValueError as e:
        cliutil.fail(str(e))
    if not input.is_file():
        cliutil.fail(f"input file not found: {input}")
    try:
        stats = detect_csv(input, output, params, explain=explain, seasonal=seasonal)
    except InputError as e:
        cliutil.fail(str(e))
    except OSError as e:
        cliutil.fail(f"cannot write {output}: {e}", 1)
    typer.echo(f"scored {stats['rows']} rows, {stats['anomalies']} anomalies -> {output}", err=True)
