"""Router configuration: Alertmanager YAML accepted as 0.25 does, bad keys named, check-config CLI."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC
from pathlib import Path

import pytest
from forewarn.alerts.config import AlertsConfigError, parse_config, parse_duration
from forewarn.alerts.labels import MatcherError, parse_matchers
from forewarn.alerts.routing import build_tree, group_key
from typer.testing import CliRunner

from forewarn.cli import app

GOOD = """
global:
  resolve_timeout: 1h30m
route:
  receiver: default
  group_by: ['...']
  group_wait: 10s
  group_interval: 1m
  repeat_interval: 1d
  routes:
    - matchers: ['{team="db", service=~"mysql|postgres"}']
      receiver: db
      group_by: [alertname]
      routes:
        - match: {severity: critical}
          receiver: pager
          mute_time_intervals: [nights]
    - match_re: {service: "web.*"}
      continue: true
inhibit_rules:
  - source_matchers: [severity="critical"]
    target_matchers: [severity="warning"]
    equal: [alertname]
time_intervals:
  - name: nights
    time_intervals:
      - times: [{start_time: "22:00", end_time: "24:00"}]
        location: Europe/Paris
receivers:
  - name: default
    webhook_configs: [{url: "http://127.0.0.1:1/hook", max_alerts: 5, send_resolved: false}]
  - name: db
    slack_configs: [{api_url: "http://127.0.0.1:1/slack"}]
  - name: pager
    pagerduty_configs: [{routing_key: secret}]
"""


def test_good_config_inherits_and_prints_route_keys() -> None:
    cfg = parse_config(GOOD)
    assert cfg.global_.resolve_timeout == 5400
    tree = build_tree(cfg.route)
    db, web = tree.routes
    pager = db.routes[0]
    assert (pager.receiver, pager.group_wait, pager.repeat_interval) == ("pager", 10, 86400)
    assert pager.group_by == frozenset({"alertname"}) and not pager.group_by_all
    assert web.group_by_all and web.receiver == "default"
    assert pager.mute_time_intervals == ["nights"] and db.mute_time_intervals == []
    assert pager.key == '{}/{service=~"mysql|postgres",team="db"}/{severity="critical"}'
    assert web.key == '{}/{service=~"^(?:web.*)$"}'
    labels = {"team": "db", "service": "mysql", "severity": "critical", "alertname": "Down"}
    assert tree.match(labels) == [pager]
    assert group_key(pager, pager.group_labels(labels)) == f'{pager.key}:{{alertname="Down"}}'
    # continue: true on the last matching child still falls back to nothing else.
    assert tree.match({"service": "web1"}) == [web]
    assert tree.match({"service": "other"}) == [tree]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("route: {receiver: a, foo: 1}\nreceivers: [{name: a}]", "route.foo: unsupported key"),
        (
            "route: {receiver: a, routes: [{receiver: a}, {receiver: a, bar: 2}]}\nreceivers: [{name: a}]",
            "route.routes[1].bar: unsupported key",
        ),
        ("route: {receiver: a}\nreceivers: [{name: a, email_configs: [{}]}]", "receivers[0].email_configs"),
        ("route: {receiver: nope}\nreceivers: [{name: a}]", "undefined receiver 'nope'"),
        ("route: {receiver: a, group_wait: 10}\nreceivers: [{name: a}]", "not a valid duration"),
        ("route: {receiver: a, group_wait: 5x}\nreceivers: [{name: a}]", "not a valid duration"),
        (
            "route: {receiver: a, matchers: ['a=b']}\nreceivers: [{name: a}]",
            "root route must not have any matchers",
        ),
        (
            "route: {receiver: a, routes: [{matchers: ['a=~\"(\"']}]}\nreceivers: [{name: a}]",
            "invalid regular",
        ),
        ("route: {receiver: a, group_by: ['...', x]}\nreceivers: [{name: a}]", "wildcard group_by"),
        (
            "route: {receiver: a, routes: [{mute_time_intervals: [x]}]}\nreceivers: [{name: a}]",
            "undefined time interval 'x'",
        ),
        ("route: {receiver: a}\nreceivers: [{name: a}, {name: a}]", "not unique"),
        ("route: {receiver: a}\nreceivers: [{name: a, webhook_configs: [{}]}]", "url: Field required"),
        ("route: {receiver: a}\nreceivers: [{name: a}]\ntemplates: [x.tmpl]", "templates"),
        ("route: [", "not YAML"),
        (
            "route: {receiver: a}\nreceivers: [{name: a, slack_configs: [{title: '{{ .Status }}'}]}]",
            "receivers[0].slack_configs[0].title: Go notification templates are not supported",
        ),
        (
            "route: {receiver: a}\nreceivers: [{name: a}]\ntime_intervals: [{name: t, time_intervals: [{weekdays: [funday]}]}]",
            "not a valid weekday",
        ),
    ],
)
def test_bad_configs_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(AlertsConfigError) as e:
        parse_config(text)
    assert message in str(e.value)


def test_durations_and_matchers() -> None:
    assert parse_duration("1w1d") == 8 * 86400 and parse_duration("1y") == 365 * 86400
    assert parse_duration("0") == 0 and parse_duration("90ms") == pytest.approx(0.09)
    for bad in ("", "1.5h", "h", "1m1h"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    ms = parse_matchers('{a="x,y", b!~"q.*",c = bare ,d!="say \\"hi\\""}')
    assert [(m.name, m.op, m.value) for m in ms] == [
        ("a", "=", "x,y"),
        ("b", "!~", "q.*"),
        ("c", "=", "bare"),
        ("d", "!=", 'say "hi"'),
    ]
    assert ms[1].matches({}) and not ms[1].matches({"b": "qq"})
    with pytest.raises(MatcherError):
        parse_matchers('a="unterminated')


def test_check_config_cli(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yml", tmp_path / "bad.yml"
    good.write_text(GOOD)
    bad.write_text("route: {receiver: a, routes: [{receiver: a, bogus: 1}]}\nreceivers: [{name: a}]")
    runner = CliRunner()
    r = runner.invoke(app, ["alerts", "check-config", str(good)])
    assert r.exit_code == 0 and "SUCCESS" in r.output and "4 route(s)" in r.output
    r = runner.invoke(app, ["alerts", "check-config", str(bad)])
    assert r.exit_code == 1 and "route.routes[0].bogus: unsupported key" in r.output
    r = runner.invoke(app, ["alerts", "check-config", str(tmp_path / "missing.yml")])
    assert r.exit_code == 1 and "cannot read" in r.output


@pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool not installed")
def test_alertmanager_accepts_what_we_accept(tmp_path: Path) -> None:
    """The oracle agrees that the sample config is valid Alertmanager configuration."""
    f = tmp_path / "am.yml"
    f.write_text(GOOD)
    out = subprocess.run(["amtool", "check-config", str(f)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr


def test_time_interval_fields() -> None:
    from datetime import datetime

    from forewarn.alerts.timeintervals import TimeInterval

    def ti(**kw: object) -> TimeInterval:
        return TimeInterval.model_validate(kw)

    utc = UTC
    sat = datetime(2026, 11, 28, 23, 30, tzinfo=utc)  # a Saturday, last days of November
    assert ti(weekdays=["saturday"]).contains(sat)
    assert not ti(weekdays=["monday:friday"]).contains(sat)
    assert ti(days_of_month=["-3:-1"]).contains(sat)  # 28..30 November
    assert not ti(days_of_month=["1:5", "-1"]).contains(sat)
    assert ti(months=["november"], years=["2026"]).contains(sat)
    assert not ti(months=["1:10"]).contains(sat)
    assert ti(times=[{"start_time": "23:00", "end_time": "24:00"}]).contains(sat)
    assert not ti(times=[{"start_time": "00:00", "end_time": "23:30"}]).contains(sat)  # end is exclusive
    # Europe/Paris is UTC+1 in November: 23:30 UTC is 00:30 on Sunday there.
    paris = ti(
        weekdays=["sunday"], times=[{"start_time": "00:00", "end_time": "01:00"}], location="Europe/Paris"
    )
    assert paris.contains(sat)
    for bad in (
        {"weekdays": ["sunday:monday:tuesday"]},
        {"times": [{"start_time": "10:00", "end_time": "09:00"}]},
        {"months": ["smarch"]},
        {"location": "Mars/Olympus"},
        {"days_of_month": ["0"]},
    ):
        with pytest.raises(ValueError):
            ti(**bad)


@pytest.mark.parametrize(
    ("entry", "firing", "resolved", "send_resolved", "expected"),
    [
        (None, set(), {"a"}, True, False),  # 1. nothing sent yet, nothing firing
        (None, {"a"}, set(), True, True),
        (({"a"}, set()), {"a", "b"}, set(), True, True),  # 2. a new firing alert
        (({"a", "b"}, set()), {"a"}, {"b"}, False, False),  # a resolved alert alone, send_resolved off
        (({"a", "b"}, set()), {"a"}, {"b"}, True, True),  # 4. ... and on
        (({"a"}, set()), set(), {"a"}, False, True),  # 3. all resolved: logged even without send_resolved
        ((set(), {"a"}), set(), {"a", "b"}, True, False),  # last had no firing alerts
        (({"a"}, set()), {"a"}, set(), True, False),  # nothing changed, repeat not due
    ],
)
def test_dedup_rules(entry, firing, resolved, send_resolved, expected) -> None:  # type: ignore[no-untyped-def]
    import time

    from forewarn.alerts.dispatch import Pipeline
    from forewarn.alerts.state import NflogEntry

    e = (
        None
        if entry is None
        else NflogEntry("r", "webhook", 0, "k", frozenset(entry[0]), frozenset(entry[1]), time.time())
    )
    assert Pipeline.needs_update(e, firing, resolved, send_resolved, repeat=3600) is expected
    if e is not None and firing:
        old = NflogEntry("r", "webhook", 0, "k", e.firing, e.resolved, time.time() - 3601)
        assert Pipeline.needs_update(old, firing, resolved, send_resolved, repeat=3600)  # 5. repeat due
