"""Run a dashboard's queries against a store the way Grafana would, and check each result's shape.

Grafana first resolves the template variables (running their queries in order, each seeing the
ones before it), repeats panels over a repeated variable's selected values, then sends every
target with macros and variables expanded (:mod:`forewarn.dashboards.macros`). The tests, the
report and ``forewarn grafana check`` all go through :func:`run_dashboard`, so the SQL that is
proven is the SQL that is drawn.

>>> shape_error("timeseries", 0, pd.DataFrame({"time": pd.to_datetime([0]), "v": [1.0]}))
>>> shape_error("timeseries", 0, pd.DataFrame({"v": [1.0]}))
'no time column'
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from clickhouse_connect.driver.client import Client
from forewarn.dashboards.macros import ALL, TimeRange, VarValue, expand


@dataclass
class TargetResult:
    """One executed target: where it came from, the SQL ClickHouse ran, and what came back."""

    dashboard: str
    panel_id: int
    title: str
    panel_type: str
    ref_id: str
    fmt: int
    sql: str
    frame: pd.DataFrame
    repeat_value: str | None = None
    error: str | None = None

    @property
    def key(self) -> str:
        suffix = f"[{self.repeat_value}]" if self.repeat_value is not None else ""
        return f"{self.dashboard}/{self.panel_id}{suffix}/{self.ref_id}"


@dataclass
class DashboardRun:
    uid: str
    title: str
    variables: dict[str, VarValue]
    options: dict[str, list[str]]
    targets: list[TargetResult] = field(default_factory=list)
    annotations: list[TargetResult] = field(default_factory=list)


def _query_frame(client: Client, sql: str) -> pd.DataFrame:
    return client.query_df(sql)


def resolve_variables(
    client: Client,
    dash: Mapping[str, Any],
    r: TimeRange,
    selection: Mapping[str, VarValue] | None = None,
) -> tuple[dict[str, VarValue], dict[str, list[str]]]:
    """Each variable's options (its query's first column) and current value (the selection, else
    the dashboard default), in dashboard order, as Grafana refreshes them."""
    selection = dict(selection or {})
    values: dict[str, VarValue] = {}
    options: dict[str, list[str]] = {}
    for v in dash.get("templating", {}).get("list", []):
        name = v["name"]
        if v["type"] == "query":
            sql = v["query"]["rawSql"] if isinstance(v["query"], dict) else v["query"]
            df = _query_frame(client, expand(sql, r, values, options))
            options[name] = [str(x) for x in df.iloc[:, 0].tolist()] if df.shape[1] else []
        elif v["type"] == "custom":
            options[name] = [s.strip() for s in str(v.get("query", "")).split(",") if s.strip()]
        else:
            options[name] = []
        current = v.get("current", {}).get("value", ALL if v.get("includeAll") else "")
        values[name] = selection.get(name, current)
    return values, options


def _selected(value: VarValue, opts: Sequence[str]) -> list[str]:
    vals = [value] if isinstance(value, str) else list(value)
    return list(opts) if vals == [ALL] or ALL in vals else vals


def iter_panels(dash: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for p in dash.get("panels", []):
        if p.get("type") == "row":
            yield from p.get("panels", [])
        else:
            yield p


def run_dashboard(
    client: Client,
    dash: Mapping[str, Any],
    r: TimeRange,
    selection: Mapping[str, VarValue] | None = None,
    raise_errors: bool = False,
) -> DashboardRun:
    """Execute every target (and annotation query) of ``dash``; errors are kept per target."""
    values, options = resolve_variables(client, dash, r, selection)
    run = DashboardRun(dash["uid"], dash.get("title", ""), values, options)

    def execute(
        panel: Mapping[str, Any], target: Mapping[str, Any], local: Mapping[str, VarValue], rv: str | None
    ):
        sql = expand(target["rawSql"], r, local, options)
        res = TargetResult(
            run.uid, int(panel.get("id", 0)), str(panel.get("title", "")), str(panel.get("type", "")),
            str(target.get("refId", "A")), int(target.get("format", 1)), sql, pd.DataFrame(), rv,
        )  # fmt: skip
        try:
            res.frame = _query_frame(client, sql)
        except Exception as e:
            if raise_errors:
                raise
            res.error = str(e).splitlines()[0][:500]
        return res

    for panel in iter_panels(dash):
        rep = panel.get("repeat")
        instances: list[str | None] = [None]
        if rep:
            instances = _selected(values.get(rep, ALL), options.get(rep, [])) or [None]
        for inst in instances:
            local = dict(values)
            if inst is not None:
                local[rep] = inst
            for t in panel.get("targets", []):
                if "rawSql" in t:
                    run.targets.append(execute(panel, t, local, inst))
    for a in dash.get("annotations", {}).get("list", []):
        t = a.get("target") or {}
        if "rawSql" in t:
            pseudo = {"id": 0, "title": f"annotation: {a.get('name', '')}", "type": "annotation"}
            run.annotations.append(execute(pseudo, t, values, None))
    return run


# -- shapes the visualizations expect -----------------------------------------------------------
def _is_time(s: pd.Series) -> bool:
    return pd.api.types.is_datetime64_any_dtype(s)


def _is_num(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def shape_error(panel_type: str, fmt: int, df: pd.DataFrame) -> str | None:
    """Why Grafana could not draw ``df`` in this visualization, or None when it can."""
    cols = list(df.columns)
    if not cols:
        return "no columns"
    if panel_type in ("timeseries", "heatmap"):
        times = [c for c in cols if _is_time(df[c])]
        if not times:
            return "no time column"
        nums = [c for c in cols if c not in times and _is_num(df[c])]
        if not nums:
            return "no numeric column"
        others = [c for c in cols if c not in times and c not in nums]
        bad = [c for c in others if not pd.api.types.is_string_dtype(df[c]) and df[c].dtype != object]
        if bad:
            return f"columns neither time, number nor label: {bad}"
        if panel_type == "heatmap" and (
            others != ["le"] or not pd.to_numeric(df["le"], errors="coerce").notna().all()
        ):
            return "heatmap needs one bucket column 'le' holding numeric upper bounds"
        if len(df) and not df[times[0]].is_monotonic_increasing:
            return "time column not ascending (the plugin's long-to-wide needs sorted time)"
        return None
    if panel_type == "stat":
        if len(df) != 1 or not any(_is_num(df[c]) for c in cols):
            return "stat needs one row with a numeric column"
        return None
    if panel_type == "logs":
        if not any(_is_time(df[c]) for c in cols) or "body" not in cols:
            return "logs need a time column and a 'body' column"
        return None
    if panel_type == "annotation":
        if "time" not in cols or "text" not in cols:
            return "annotations need 'time' and 'text' columns"
        return None
    if panel_type == "table":
        if len(set(cols)) != len(cols):
            return "duplicate column names"
        return None
    return f"unknown panel type {panel_type}"
