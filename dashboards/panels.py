"""Building blocks for forewarn's dashboards: the ClickHouse plugin's query model and panel helpers
over grafana-foundation-sdk builders, so each dashboard module only says *what* to chart.

The SDK ships typed query models for many data sources but not for ``grafana-clickhouse-datasource``;
:class:`ClickHouseQuery` fills that gap with the plugin v4 query fields (``rawSql``, ``editorType``,
``format``, ``queryType``) and plugs into the SDK's ``Dataquery`` variant, so panels, variables and
annotations are still assembled and serialised by the SDK.

>>> q = ClickHouseQuery("SELECT 1", fmt=Format.TABLE).to_json()
>>> q["datasource"], q["format"], q["queryType"]
({'type': 'grafana-clickhouse-datasource', 'uid': 'forewarn-clickhouse'}, 1, 'table')
"""

from __future__ import annotations

import enum
from typing import Any

from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import heatmap, logs, stat, table, text, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common, dashboard
from grafana_foundation_sdk.models import heatmap as heatmap_model

PLUGIN = "grafana-clickhouse-datasource"
PLUGIN_VERSION = "4.10.1"
DATASOURCE_UID = "forewarn-clickhouse"
DATASOURCE = dashboard.DataSourceRef(type_val=PLUGIN, uid=DATASOURCE_UID)


class Format(enum.IntEnum):
    """The plugin's result formats (``Format`` in its frontend types)."""

    TIME_SERIES = 0
    TABLE = 1
    LOGS = 2
    TRACE = 3


_QUERY_TYPE = {
    Format.TIME_SERIES: "timeseries",
    Format.TABLE: "table",
    Format.LOGS: "logs",
    Format.TRACE: "traces",
}


class ClickHouseQuery(cogvariants.Dataquery):
    """One SQL target of the ClickHouse plugin (raw SQL editor)."""

    def __init__(self, sql: str, fmt: Format = Format.TIME_SERIES, ref_id: str = "A", hide: bool = False):
        self.sql, self.fmt, self.ref_id, self.hide = sql.strip(), fmt, ref_id, hide

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "refId": self.ref_id,
            "datasource": DATASOURCE.to_json(),
            "editorType": "sql",
            "format": int(self.fmt),
            "queryType": _QUERY_TYPE[self.fmt],
            "pluginVersion": PLUGIN_VERSION,
            "rawSql": self.sql,
        }
        if self.hide:
            out["hide"] = True
        return out


class Built(cogbuilder.Builder[Any]):
    """Hands an already-built object to an SDK builder method that expects a builder."""

    def __init__(self, obj: Any):
        self._obj = obj

    def build(self) -> Any:
        return self._obj


def query(sql: str, fmt: Format = Format.TIME_SERIES, ref_id: str = "A") -> Built:
    return Built(ClickHouseQuery(sql, fmt, ref_id))


def _common(panel: Any, title: str, description: str, w: int, h: int) -> Any:
    return panel.title(title).description(description).datasource(DATASOURCE).span(w).height(h)


def _prop(id_: str, value: object) -> dashboard.DynamicConfigValue:
    return dashboard.DynamicConfigValue(id_val=id_, value=value)


def time_series(
    title: str,
    sql: str | list[str],
    description: str = "",
    unit: str = "short",
    w: int = 12,
    h: int = 8,
    bars: bool = False,
    points: bool = False,
    band: bool = False,
) -> Any:
    """A time series panel; with ``band`` the fields ``lower``/``upper`` are drawn as a shaded
    expected range around ``value`` (upper fills down to lower) and ``anomaly`` as red points."""
    p = _common(timeseries.Panel(), title, description, w, h).unit(unit)
    for i, s in enumerate([sql] if isinstance(sql, str) else sql):
        p = p.with_target(query(s, Format.TIME_SERIES, chr(ord("A") + i)))
    if bars:
        p = p.draw_style(common.GraphDrawStyle.BARS).fill_opacity(60)
    elif points:
        p = p.draw_style(common.GraphDrawStyle.POINTS).point_size(6)
    else:
        p = p.fill_opacity(10).line_width(1)
    if band:
        hidden_line = [
            _prop("custom.lineWidth", 0),
            _prop("custom.hideFrom", {"legend": True, "tooltip": False, "viz": False}),
        ]
        p = (
            p.override_by_name(
                "upper", [*hidden_line, _prop("custom.fillBelowTo", "lower"), _prop("custom.fillOpacity", 20)]
            )
            .override_by_name("lower", [*hidden_line, _prop("custom.fillOpacity", 0)])
            .override_by_name("expected", [_prop("custom.lineStyle", {"fill": "dash", "dash": [6, 4]})])
            .override_by_name(
                "anomaly",
                [
                    _prop("custom.drawStyle", "points"),
                    _prop("custom.pointSize", 9),
                    _prop("color", {"mode": "fixed", "fixedColor": "red"}),
                ],
            )
        )
    return p


def table_panel(title: str, sql: str, description: str = "", w: int = 24, h: int = 9) -> Any:
    return _common(table.Panel(), title, description, w, h).with_target(query(sql, Format.TABLE))


def stat_panel(
    title: str, sql: str, description: str = "", w: int = 6, h: int = 5, unit: str = "short"
) -> Any:
    return _common(stat.Panel(), title, description, w, h).unit(unit).with_target(query(sql, Format.TABLE))


def logs_panel(title: str, sql: str, description: str = "", w: int = 24, h: int = 10) -> Any:
    return (
        _common(logs.Panel(), title, description, w, h).show_time(True).with_target(query(sql, Format.LOGS))
    )


def heatmap_panel(
    title: str, sql: str, description: str = "", w: int = 12, h: int = 9, unit: str = "ms"
) -> Any:
    """Pre-bucketed heatmap: the query returns one count per (time, upper bound ``le``); the plugin
    turns the long frame wide, one field per bucket, which Grafana reads as heatmap rows."""
    return (
        _common(heatmap.Panel(), title, description, w, h)
        .calculate(False)
        .rows_frame(heatmap.RowsHeatmapOptions().layout(common.HeatmapCellLayout.LE).value("spans"))
        .y_axis(heatmap.YAxisConfig().unit(unit))
        .color(
            heatmap.HeatmapColorOptions()
            .mode(heatmap_model.HeatmapColorMode.SCHEME)
            .scheme("Oranges")
            .steps(64)
        )
        .with_target(query(sql, Format.TIME_SERIES))
    )


def text_panel(title: str, content: str, w: int = 24, h: int = 4) -> Any:
    return text.Panel().title(title).span(w).height(h).content(content)


def query_variable(name: str, label: str, sql: str, multi: bool = True) -> Any:
    return (
        gd.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query({"rawSql": sql.strip(), "editorType": "sql", "format": int(Format.TABLE), "refId": name})
        .refresh(dashboard.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard.VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
        .include_all(True)
        .current(dashboard.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


def custom_variable(name: str, label: str, values: list[str]) -> Any:
    first = values[0]
    return (
        gd.CustomVariable(name)
        .label(label)
        .values(",".join(values))
        .current(dashboard.VariableOption(selected=True, text=first, value=first))
    )


def annotation(name: str, sql: str, color: str) -> Any:
    """A ClickHouse annotation query: rows of ``time`` (ms), optional ``timeEnd``, ``text``, ``tags``."""
    return (
        gd.AnnotationQuery()
        .name(name)
        .datasource(DATASOURCE)
        .enable(True)
        .icon_color(color)
        .target(Built(ClickHouseQuery(sql, Format.TABLE, "Anno")))
    )


def pushed_annotations() -> Any:
    """Grafana's own annotations tagged ``forewarn`` (what ``forewarn grafana push`` writes), off by
    default here because the ClickHouse queries above show the same events; the same query on any
    other dashboard overlays forewarn's events there."""
    return (
        gd.AnnotationQuery()
        .name("forewarn (pushed)")
        .datasource(dashboard.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
        .enable(False)
        .icon_color("purple")
        .target(gd.AnnotationTarget().type("tags").tags(["forewarn"]).match_any(False).limit(500))
    )
