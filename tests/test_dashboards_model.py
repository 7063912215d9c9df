"""The committed dashboards are what the code builds, are valid Grafana dashboard models (they
round-trip through grafana-foundation-sdk's generated schema types unchanged), and expand macros
exactly as the grafana-clickhouse-datasource plugin prints them."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from forewarn.dashboards.build import load_dashboards, render_files
from forewarn.dashboards.macros import (
    ALL,
    MacroError,
    TimeRange,
    apply_conditional_all,
    expand,
    expand_macros,
)
from forewarn.dashboards.panels import DATASOURCE_UID, PLUGIN
from forewarn.dashboards.runner import iter_panels
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

DASHBOARDS = load_dashboards()
IDS = [d["uid"] for d in DASHBOARDS]


def test_committed_files_are_what_the_code_builds():
    stale = [str(p) for p, content in render_files().items() if not p.exists() or p.read_text() != content]
    assert not stale, f"run `python -m forewarn.dashboards.build`: {stale}"
    assert len(DASHBOARDS) == 5


def test_provisioning_yaml():
    files = {p.parent.name: yaml.safe_load(c) for p, c in render_files().items() if p.suffix == ".yaml"}
    ds = {d["uid"]: d for d in files["datasources"]["datasources"]}
    ch = ds[DATASOURCE_UID]
    assert (
        ch["type"] == PLUGIN
        and ch["jsonData"]["logs"]["otelEnabled"]
        and ch["jsonData"]["traces"]["otelEnabled"]
    )
    assert ch["secureJsonData"]["password"].startswith("${")  # never a literal secret
    assert ds["forewarn-router"]["type"] == "alertmanager"
    (prov,) = files["dashboards"]["providers"]
    assert prov["type"] == "file" and prov["options"]["path"]


@pytest.mark.parametrize("dash", DASHBOARDS, ids=IDS)
def test_round_trips_through_the_sdk_schema(dash):
    back = json.loads(json.dumps(Dashboard.from_json(dash), cls=JSONEncoder))

    # The SDK types annotation targets as the built-in Grafana ones; data source annotation
    # queries carry the data source's own query there, so those are compared separately below.
    def strip(d: dict) -> dict:
        return {
            **d,
            "annotations": [{k: v for k, v in a.items() if k != "target"} for a in d["annotations"]["list"]],
        }

    assert strip(back) == strip(dash)


@pytest.mark.parametrize("dash", DASHBOARDS, ids=IDS)
def test_structure(dash):
    assert re.fullmatch(r"[a-z0-9-]{8,40}", dash["uid"]) and dash["title"].startswith("forewarn")
    assert isinstance(dash["schemaVersion"], int) and dash["time"] == {"from": "now-6h", "to": "now"}
    variables = [v["name"] for v in dash["templating"]["list"]]
    assert {"service", "operation", "environment"} <= set(variables) and len(set(variables)) == len(variables)
    panels = list(iter_panels(dash))
    ids = [p["id"] for p in panels]
    assert len(set(ids)) == len(ids) and all(isinstance(i, int) and i > 0 for i in ids)
    cells = set()
    for p in panels:
        g = p["gridPos"]
        assert (
            all(isinstance(g[k], int) for k in "xywh")
            and g["x"] >= 0
            and g["x"] + g["w"] <= 24
            and g["h"] > 0
        )
        cell = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cell & cells, f"panel {p['title']} overlaps another"
        cells |= cell
        if p["type"] == "text":
            assert p["options"]["content"]
            continue
        assert p["datasource"] == {"type": PLUGIN, "uid": DATASOURCE_UID}
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(set(refs)) == len(refs)
        for t in p["targets"]:
            assert t["datasource"] == {"type": PLUGIN, "uid": DATASOURCE_UID}
            assert (
                t["editorType"] == "sql"
                and t["format"] in (0, 1, 2)
                and t["rawSql"].lstrip().upper().startswith("SELECT")
            )
            used = set(re.findall(r"\$\{?(\w+)", t["rawSql"])) - {"__" + m for m in ()}
            assert {u for u in used if not u.startswith("__")} <= set(variables), p["title"]
        if rep := p.get("repeat"):
            assert rep in variables
    sql_annotations = [a for a in dash["annotations"]["list"] if a["datasource"]["type"] == PLUGIN]
    assert len(sql_annotations) == 3 and all(a["target"]["rawSql"] for a in sql_annotations)
    (pushed,) = [a for a in dash["annotations"]["list"] if a["datasource"]["type"] == "grafana"]
    assert pushed["target"]["tags"] == ["forewarn"] and not pushed["enable"]


# -- macros, against the plugin's printed forms (pkg/macros and CHDatasource.applyConditionalAll) --
R = TimeRange(1415792726.371, 1447328726.779, interval_s=20)


@pytest.mark.parametrize(
    ("sql", "want"),
    [
        ("$__timeFilter(time)", "time >= toDateTime(1415792726) AND time <= toDateTime(1447328726)"),
        (
            "$__timeFilter_ms(time)",
            "time >= fromUnixTimestamp64Milli(1415792726371) AND time <= fromUnixTimestamp64Milli(1447328726779)",
        ),
        ("$__dateFilter(d)", "d >= toDate('2014-11-12') AND d <= toDate('2015-11-12')"),
        (
            "$__dateTimeFilter(d, t)",
            "(d >= toDate('2014-11-12') AND d <= toDate('2015-11-12')) AND "
            "(t >= toDateTime(1415792726) AND t <= toDateTime(1447328726))",
        ),
        ("$__fromTime", "toDateTime(1415792726)"),
        ("$__toTime_ms", "fromUnixTimestamp64Milli(1447328726779)"),
        ("$__timeInterval(ts)", "toStartOfInterval(toDateTime(ts), INTERVAL 20 second)"),
        ("$__timeInterval_ms(ts)", "toStartOfInterval(toDateTime64(ts, 3), INTERVAL 20000 millisecond)"),
        ("count() / $__interval_s", "count() / 20"),
        (
            "$__timeInterval(toDateTime(a, 'UTC'))",
            "toStartOfInterval(toDateTime(toDateTime(a, 'UTC')), INTERVAL 20 second)",
        ),
    ],
)
def test_backend_macros(sql, want):
    assert expand_macros(sql, R) == want


def test_interval_has_a_floor_of_one():
    assert expand_macros("$__interval_s", TimeRange(0, 10, interval_s=0.2)) == "1"


@pytest.mark.parametrize(
    "sql", ["$__timeFilter()", "$__timeFilter(a, b)", "$__dateTimeFilter(a)", "$__nope(x)", "$__timeFilter(a"]
)
def test_bad_macro_calls_are_refused(sql):
    with pytest.raises(MacroError):
        expand_macros(sql, R)


def test_conditional_all_like_the_plugin():
    sql = "WHERE $__conditionalAll(a IN (${a:singlequote}), $a) AND $__conditionalAll(b IN ($b), $b)"
    assert apply_conditional_all(sql, {"a": ALL, "b": ["x"]}) == "WHERE 1=1 AND b IN ($b)"
    assert apply_conditional_all(sql, {"a": "", "b": [ALL]}) == "WHERE 1=1 AND 1=1"
    assert apply_conditional_all(sql, {}) == "WHERE 1=1 AND 1=1"  # unknown variable: empty


def test_variable_formats():
    opts = {"s": ["a", "b'c"]}
    assert expand("x IN (${s:singlequote})", R, {"s": ALL}, opts) == "x IN ('a','b\\'c')"
    assert expand("x = $s", R, {"s": "one"}, opts) == "x = one"  # the plugin leaves one value bare
    assert expand("x IN ($s)", R, {"s": ["a", "b"]}, opts) == "x IN ('a','b')"
    assert expand("x = '[[s]]' AND ${s:csv}", R, {"s": ["a"]}, opts) == "x = 'a' AND a"
    with pytest.raises(MacroError):
        expand("${s:nosuch}", R, {"s": "a"}, opts)
