"""``forewarn report``: every dashboard panel drawn from the store to PNG (matplotlib, headless),
with an ``index.html`` laying them out per dashboard, for people who cannot open Grafana.

The data comes from :func:`forewarn.dashboards.runner.run_dashboard`, the same expansion the
tests prove, so a report shows exactly what Grafana would query. Each visualization type has one
drawer; incidents (shaded) and remediations (vertical lines) from the dashboard's annotation
queries are overlaid on its time series.
"""

from __future__ import annotations

import html
import re
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import markdown
import matplotlib

matplotlib.use("Agg")  # headless: no display on servers and CI

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from clickhouse_connect.driver.client import Client
from forewarn.dashboards.macros import TimeRange
from forewarn.dashboards.runner import TargetResult, iter_panels, run_dashboard

SIZE = (9.0, 3.6)
DPI = 100
TABLE_ROWS = 14
CELL_WIDTH = 44  # characters per line of a table cell in the PNG; longer text wraps
CELL_LINES = 6  # lines per cell in the PNG; the HTML table beside it has every character
HTML_ROWS = 200


def _time_col(df: pd.DataFrame) -> str | None:
    return next((c for c in df.columns if pd.api.types.is_datetime64_any_dtype(df[c])), None)


def _series(df: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    """Long frame -> one series per (label values, numeric column), as the plugin's long-to-wide."""
    t = _time_col(df)
    if t is None:
        return []
    nums = [
        c
        for c in df.columns
        if c != t and pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
    ]
    labels = [c for c in df.columns if c != t and c not in nums]
    out: list[tuple[str, pd.Series]] = []
    groups = df.groupby(labels, sort=True) if labels else [((), df)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        prefix = " ".join(str(k) for k in key)
        for c in nums:
            name = f"{prefix} {c}".strip() if len(nums) > 1 or not prefix else prefix
            out.append((name, pd.Series(g[c].to_numpy(dtype=float), index=pd.to_datetime(g[t]))))
    return out


def _overlay(ax: Any, marks: dict[str, pd.DataFrame], r: TimeRange) -> None:
    inc = marks.get("Incidents")
    if inc is not None and len(inc):
        for row in inc.itertuples(index=False):
            end = row.timeEnd if row.timeEnd > row.time else row.time + pd.Timedelta(seconds=30)
            ax.axvspan(row.time, end, color="tab:orange", alpha=0.12, lw=0)
    rem = marks.get("Remediations")
    if rem is not None and len(rem):
        for t in rem["time"]:
            ax.axvline(t, color="tab:blue", alpha=0.5, lw=0.8, ls=":")
    ax.set_xlim(pd.to_datetime(r.start, unit="s"), pd.to_datetime(r.end, unit="s"))


def _time_axes(ax: Any) -> None:
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    ax.grid(True, alpha=0.25)
    ax.tick_params(labelsize=8)


def draw_timeseries(
    ax: Any, panel: dict, results: list[TargetResult], marks: dict[str, pd.DataFrame], r: TimeRange
) -> None:
    style = (panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {}) or {}).get(
        "drawStyle", "line"
    )
    plotted = 0
    for res in results:
        df = res.frame
        if not len(df):
            continue
        if {"lower", "upper", "value"} <= set(df.columns):  # expected-range band
            t = pd.to_datetime(df[_time_col(df)])
            ax.fill_between(
                t,
                df["lower"].astype(float),
                df["upper"].astype(float),
                color="tab:green",
                alpha=0.18,
                lw=0,
                label="expected range",
            )
            ax.plot(t, df["expected"].astype(float), color="tab:green", ls="--", lw=0.9, label="expected")
            ax.plot(t, df["value"].astype(float), color="tab:blue", lw=1.2, label="value")
            plotted += 1
            continue
        for name, s in _series(df)[:12]:
            if name == "anomaly" or style == "points":
                color = "red" if name == "anomaly" else None
                ax.scatter(
                    s.index,
                    s.to_numpy(),
                    s=14 if name != "anomaly" else 28,
                    color=color,
                    label=name,
                    zorder=3,
                )
            elif style == "bars":
                width = max(r.interval_s, 1) / 86400.0 * 0.8
                ax.bar(s.index, s.to_numpy(), width=width, alpha=0.6, label=name)
            else:
                ax.plot(s.index, s.to_numpy(), lw=1.1, label=name)
            plotted += 1
    _overlay(ax, marks, r)
    _time_axes(ax)
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
    if unit and unit != "short":
        ax.set_ylabel(unit, fontsize=8)
    if plotted:
        ax.legend(fontsize=7, loc="upper left", ncols=3, framealpha=0.6)
    else:
        _empty(ax)


def draw_heatmap(
    ax: Any, panel: dict, results: list[TargetResult], marks: dict[str, pd.DataFrame], r: TimeRange
) -> None:
    df = results[0].frame if results else pd.DataFrame()
    if not len(df):
        _empty(ax)
        return
    t = _time_col(df)
    grid = df.assign(le=df["le"].astype(float)).pivot_table(
        index="le", columns=t, values="spans", aggfunc="sum", fill_value=0
    )
    times = mdates.date2num(pd.to_datetime(grid.columns))
    step = (times[1] - times[0]) if len(times) > 1 else r.interval_s / 86400.0
    x = np.append(times, times[-1] + step)
    edges = np.append(
        grid.index.to_numpy() / 2, grid.index.to_numpy()[-1]
    )  # power-of-two buckets: (le/2, le]
    mesh = ax.pcolormesh(x, edges, grid.to_numpy(), cmap="Oranges", shading="flat")
    ax.set_yscale("log", base=2)
    ax.set_ylabel("span duration (ms)", fontsize=8)
    ax.xaxis_date()
    ax.figure.colorbar(mesh, ax=ax, pad=0.01).set_label("spans", fontsize=8)
    _time_axes(ax)


def draw_stat(
    ax: Any, panel: dict, results: list[TargetResult], marks: dict[str, pd.DataFrame], r: TimeRange
) -> None:
    df = results[0].frame if results else pd.DataFrame()
    ax.axis("off")
    value = df.iloc[0, 0] if len(df) else "—"
    ax.text(
        0.5,
        0.5,
        f"{value:,}" if isinstance(value, int | np.integer) else str(value),
        ha="center",
        va="center",
        fontsize=40,
        weight="bold",
        color="tab:blue",
    )


def draw_table(
    ax: Any, panel: dict, results: list[TargetResult], marks: dict[str, pd.DataFrame], r: TimeRange
) -> None:
    df = _first_frame(ax, results)
    if df is None:
        return
    shown = _display(df.head(TABLE_ROWS))
    cells = [[_wrap(v) for v in row] for row in shown.itertuples(index=False)]
    tab = ax.table(
        cellText=cells, colLabels=[str(c) for c in shown.columns], loc="upper center", cellLoc="left"
    )
    tab.auto_set_font_size(False)
    tab.set_fontsize(6.5)
    tab.auto_set_column_width(list(range(len(shown.columns))))
    base = 1.0 / (len(cells) + 1)
    for (row, _col), cell in tab.get_celld().items():  # a wrapped cell's row grows, nothing is cut
        lines = 1 if row == 0 else max(c.count("\n") + 1 for c in cells[row - 1])
        cell.set_height(base * 0.9 * lines)
    if len(df) > TABLE_ROWS:
        ax.set_xlabel(f"{len(df) - TABLE_ROWS} more rows in the report's table", fontsize=7)


def draw_logs(
    ax: Any, panel: dict, results: list[TargetResult], marks: dict[str, pd.DataFrame], r: TimeRange
) -> None:
    df = _first_frame(ax, results)
    if df is None:
        return
    t = _time_col(df)
    lines = [
        f"{row[t]:%H:%M:%S}  {row.get('service', '')}  {_short(row['body'], 110)}"
        for _, row in df.head(18).iterrows()
    ]
    ax.text(
        0, 1, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=7, transform=ax.transAxes
    )


def _first_frame(ax: Any, results: list[TargetResult]) -> pd.DataFrame | None:
    """The panel's single result on a bare canvas, or None after saying there is nothing."""
    ax.axis("off")
    df = results[0].frame if results else pd.DataFrame()
    if not len(df):
        _empty(ax)
        return None
    return df


def _display(df: pd.DataFrame) -> pd.DataFrame:
    """Times as wall-clock text, as Grafana's table shows them."""
    shown = df.copy()
    for c in shown.columns:
        if pd.api.types.is_datetime64_any_dtype(shown[c]):
            shown[c] = shown[c].dt.strftime("%Y-%m-%d %H:%M:%S")
    return shown


def _text(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _wrap(v: Any) -> str:
    lines = textwrap.wrap(_text(v), CELL_WIDTH, break_long_words=True, break_on_hyphens=False) or [""]
    if len(lines) > CELL_LINES:
        lines = [*lines[: CELL_LINES - 1], lines[CELL_LINES - 1][: CELL_WIDTH - 1] + "…"]
    return "\n".join(lines)


def html_table(df: pd.DataFrame, max_rows: int = HTML_ROWS) -> str:
    """The whole result as an HTML table: every column, every character (long text wraps)."""
    shown = _display(df.head(max_rows))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_text(v))}</td>" for v in row) + "</tr>"
        for row in shown.itertuples(index=False)
    )
    more = f"<p class='more'>{len(df) - max_rows} more rows not shown</p>" if len(df) > max_rows else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def _short(v: Any, n: int = 40) -> str:
    s = f"{v:.4g}" if isinstance(v, float) else str(v)
    return s if len(s) <= n else s[: n - 1] + "…"


def _empty(ax: Any) -> None:
    ax.text(
        0.5,
        0.5,
        "no data in range",
        ha="center",
        va="center",
        fontsize=11,
        color="grey",
        transform=ax.transAxes,
    )


DRAWERS: dict[str, Callable[..., None]] = {
    "timeseries": draw_timeseries,
    "heatmap": draw_heatmap,
    "stat": draw_stat,
    "table": draw_table,
    "logs": draw_logs,
}


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")


def render_report(
    client: Client, dashboards: list[dict], r: TimeRange, out: Path, progress: Any = None
) -> Path:
    """Write ``<dashboard>-<panel>[-<repeat>].png`` for every panel instance and ``index.html``.

    Table and log panels also appear as HTML tables with their full text; text panels are
    rendered from their markdown. ``progress`` is a ``rich.progress.Progress`` to report to.
    """
    out.mkdir(parents=True, exist_ok=True)
    sections = []
    overall = progress.add_task("report: dashboards", total=len(dashboards)) if progress else None
    for dash in dashboards:
        if progress is not None:
            progress.update(overall, description=f"report: querying {dash.get('title', dash['uid'])}")
        run = run_dashboard(client, dash, r)
        marks = {a.title.removeprefix("annotation: "): a.frame for a in run.annotations if not a.error}
        by_instance: dict[tuple[int, str | None], list[TargetResult]] = {}
        for t in run.targets:
            by_instance.setdefault((t.panel_id, t.repeat_value), []).append(t)
        items = []
        drawing = progress.add_task("  panels", total=len(by_instance)) if progress else None
        for panel in iter_panels(dash):
            if panel.get("type") == "text":
                items.append(
                    f"<div class='text'><h3>{html.escape(panel['title'])}</h3>"
                    f"{markdown.markdown(panel['options']['content'])}</div>"
                )
                continue
            for (pid, rep), results in by_instance.items():
                if pid != panel["id"]:
                    continue
                title = panel["title"].replace("$service", rep or "all services")
                for var, val in run.variables.items():
                    title = title.replace(f"${var}", val if isinstance(val, str) else ", ".join(val))
                errors = [t.error for t in results if t.error]
                name = f"{dash['uid']}-{pid:02d}" + (f"-{_slug(rep)}" if rep else "") + ".png"
                fig, ax = plt.subplots(figsize=SIZE, dpi=DPI)
                try:
                    if errors:
                        ax.axis("off")
                        ax.text(
                            0,
                            1,
                            "query failed:\n" + "\n".join(errors),
                            va="top",
                            fontsize=8,
                            color="red",
                            wrap=True,
                        )
                    else:
                        DRAWERS.get(panel["type"], draw_table)(ax, panel, results, marks, r)
                    ax.set_title(title, fontsize=10, loc="left")
                    with warnings.catch_warnings():  # tall wrapped tables: savefig's tight bbox fits them
                        warnings.simplefilter("ignore", UserWarning)
                        fig.tight_layout()
                    fig.savefig(out / name, bbox_inches="tight")  # wide tables grow the image
                finally:
                    plt.close(fig)
                if progress is not None:
                    progress.advance(drawing)
                desc = markdown.markdown(panel.get("description", ""))
                img = f"<img src='{name}' alt='{html.escape(title)}'>"
                frame = results[0].frame if results else pd.DataFrame()
                if panel["type"] in ("table", "logs") and not errors and len(frame):
                    items.append(
                        f"<div class='table'><h3>{html.escape(title)}</h3>{html_table(frame)}"
                        f"<details><summary>as an image</summary>{img}</details>{desc}</div>"
                    )
                else:
                    items.append(f"<figure>{img}<figcaption>{desc}</figcaption></figure>")
        if progress is not None:
            progress.remove_task(drawing)
            progress.advance(overall)
        sections.append(f"<section><h2>{html.escape(run.title)}</h2>{''.join(items)}</section>")
    start, end = (
        pd.to_datetime(x, unit="s", utc=True).strftime("%Y-%m-%d %H:%M UTC") for x in (r.start, r.end)
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>forewarn report</title>
<style>body{{font-family:sans-serif;margin:1.5em;background:#fafafa}}figure{{display:inline-block;margin:.5em;
background:#fff;border:1px solid #ddd;padding:.3em;max-width:920px}}img{{max-width:100%}}figcaption{{font-size:.8em;
color:#555}}.text,.table{{background:#fff;border:1px solid #ddd;padding:.6em;margin:.5em;max-width:1820px}}
table{{border-collapse:collapse;font-size:.8em}}th,td{{border:1px solid #ddd;padding:.2em .4em;text-align:left;
vertical-align:top;overflow-wrap:anywhere}}th{{background:#f0f0f0}}</style>
</head><body><h1>forewarn report</h1><p>{start} to {end}; orange bands: incidents, dotted blue lines:
remediations.</p>{"".join(sections)}</body></html>"""
    index = out / "index.html"
    index.write_text(page)
    return index
