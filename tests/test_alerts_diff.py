"""Differential tests: the same config and alerts through the real Alertmanager 0.25 and forewarn.

Both post to real HTTP sinks on 127.0.0.1; the webhook notifications must match in count,
order per group, payload (``externalURL`` aside) and timing within a tolerance.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from forewarn.alerts.difftest import Step, assert_same, at, expire, iso, post, silence
from forewarn.alerts.difftest import run_both as _run_both
from forewarn.alerts.testing import Alertmanager, Received, RouterProcess, WebhookSink

pytestmark = pytest.mark.skipif(
    not Alertmanager.available(), reason="prometheus-alertmanager not installed (make system-deps)"
)


def run_both(
    config: str, steps: list[tuple[float, Step]], duration: float
) -> tuple[list[Received], list[Received], float]:
    o = _run_both(config, steps, duration)
    assert not o.failed_steps(), o.failed_steps()
    return o.am, o.fw, o.t0


TIMERS = "group_wait: 1s\n  group_interval: 2s\n  repeat_interval: 5s"


def grouped_config(webhooks: str = '{url: "SINK/r"}', timers: str = "", top: str = "") -> str:
    """One receiver ``r`` grouping by alertname, with short timers (``TIMERS`` unless given)."""
    return f"""{top}
route:
  receiver: r
  group_by: [alertname]
  {timers or TIMERS}
receivers:
  - name: r
    webhook_configs: [{webhooks}]
"""


def test_routing_grouping_continue_max_alerts_and_repeat() -> None:
    config = f"""
route:
  receiver: default
  group_by: [alertname]
  {TIMERS}
  routes:
    - matchers: ['severity="critical"']
      match_re: {{service: "api|db"}}
      receiver: team.ops
      continue: true
    - matchers: ['severity=~"crit.*"']
      receiver: all
      group_by: ['...']
    - match: {{team: frontend}}
      receiver: default
      group_by: [team, env]
receivers:
  - name: default
    webhook_configs: [{{url: "SINK/default"}}]
  - name: team.ops
    webhook_configs: [{{url: "SINK/ops", max_alerts: 2}}]
  - name: all
    webhook_configs: [{{url: "SINK/all"}}]
"""
    crit = [
        {
            "labels": {
                "alertname": "Down",
                "severity": "critical",
                "service": "api",
                "instance": f"i{i}",
                "job": "j",
            },
            "annotations": {"summary": f"down {i}"},
            "startsAt": at(-60),
        }
        for i in (2, 0, 1)
    ]
    fe = [
        {
            "labels": {"alertname": "Slow", "team": "frontend", "env": e},
            "startsAt": at(0),
            "generatorURL": "http://g/",
        }
        for e in ("prod", "dev")
    ]
    # One old alert alone first: its group flushes at once, with exactly that alert. The other
    # two join the flushed group half a second later and wait for its group_interval (+2 s),
    # and the repeat comes 5 s after that, at the +8 s flush. Posting the three old alerts in
    # one request would race Alertmanager against itself: its API hands a request's alerts to
    # the dispatcher one by one over a channel, and the group's goroutine, started by the first
    # alert with its timer at zero, may flush before the others are inserted (+0/1 alert,
    # +2, +8 s) or after (+0/all, +6 s); forewarn inserts a request's alerts atomically.
    steps = [
        (0.0, post(crit[0])),
        (0.1, post(*fe)),
        (0.5, post({"labels": {"alertname": "Other", "x": "1"}})),
        (0.5, post(*crit[1:])),
    ]
    am, fw, t0 = run_both(config, steps, duration=9.5)
    assert len(am) >= 8
    ops = [r for r in am if r.path == "/ops"]
    # The scenario does what it says (its times are compared with forewarn's by assert_same).
    assert [(len(r.body["alerts"]), r.body["truncatedAlerts"]) for r in ops] == [(1, 0), (2, 1), (2, 1)]
    assert_same(am, fw, t0)


def test_resolve_send_resolved_and_partial_resolution() -> None:
    config = """
route:
  receiver: loud
  group_by: [alertname]
  group_wait: 1s
  group_interval: 3s
  repeat_interval: 1h
  routes:
    - receiver: quiet
      continue: true
      matchers: ['alertname=~".+"']
    - receiver: loud
receivers:
  - name: loud
    webhook_configs: [{url: "SINK/loud"}]
  - name: quiet
    webhook_configs: [{url: "SINK/quiet", send_resolved: false}]
"""

    def alert(i: int, end: float | None = None) -> dict[str, Any]:
        # Not old (startsAt + group_wait is ahead): both alerts are in the first flush at +1 s.
        # Two old alerts in one request would race Alertmanager's immediate flush against its
        # own insertion of the second one (see test_routing_grouping_continue_max_alerts_and_repeat).
        a: dict[str, Any] = {"labels": {"alertname": "Err", "pod": f"p{i}"}, "startsAt": at(0)}
        if end is not None:
            a["endsAt"] = at(end)
        return a

    steps = [
        (0.0, post(alert(1, 600), alert(2, 600))),
        (2.5, post(alert(1, 2.5))),  # partial resolution (flushes at +1, +4, +7, ...: steps far from them)
        (5.5, post(alert(2, 5.5))),  # all resolved
        (8.5, post(alert(3, 600))),  # re-fire in the same group
    ]
    am, fw, t0 = run_both(config, steps, duration=11.5)
    assert any(r.body["status"] == "resolved" for r in am if r.path == "/loud")
    assert_same(am, fw, t0)


def test_inhibition_then_source_resolves() -> None:
    config = f"""
route:
  receiver: r
  group_by: [alertname, cluster]
  {TIMERS}
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity="warning"']
    equal: [cluster]
  - source_match: {{alertname: Both}}
    target_match_re: {{alertname: "Both|Target"}}
receivers:
  - name: r
    webhook_configs: [{{url: "SINK/r"}}]
"""
    src = {"labels": {"alertname": "Crit", "severity": "critical", "cluster": "eu"}, "startsAt": at(-10)}
    steps = [
        (0.0, post(src, {"labels": {"alertname": "Both"}, "startsAt": at(-10)})),
        (
            0.1,
            post(
                {
                    "labels": {"alertname": "Warn", "severity": "warning", "cluster": "eu"},
                    "startsAt": at(-10),
                },
                {
                    "labels": {"alertname": "Warn", "severity": "warning", "cluster": "us"},
                    "startsAt": at(-10),
                },
                {"labels": {"alertname": "Target"}, "startsAt": at(-10)},
            ),
        ),
        (3.0, post({**src, "endsAt": at(3.0)})),
    ]
    am, fw, t0 = run_both(config, steps, duration=7.0)
    assert_same(am, fw, t0)


def test_silences_mute_release_and_hide_resolution() -> None:
    config = grouped_config()
    a1 = {"labels": {"alertname": "A", "job": "x"}, "startsAt": at(0)}
    a2 = {"labels": {"alertname": "B", "job": "y"}, "startsAt": at(0)}
    steps = [
        (0.0, silence("sx", [{"name": "job", "value": "x", "isRegex": False}])),
        (0.0, silence("sy", [{"name": "job", "value": "y|z", "isRegex": True, "isEqual": True}])),
        (0.1, post(a1, a2)),
        (2.0, post({**a2, "endsAt": at(2.0)})),  # resolves while silenced: never reported
        (3.5, expire("sx")),
    ]
    am, fw, t0 = run_both(config, steps, duration=7.5)
    assert_same(am, fw, t0)


def test_time_intervals_mute_and_active() -> None:
    config = f"""
route:
  receiver: r
  group_by: [alertname]
  {TIMERS}
  routes:
    - matchers: [route=muted]
      mute_time_intervals: [always]
    - matchers: [route=inactive]
      active_time_intervals: [long_ago]
    - matchers: [route=active]
      active_time_intervals: [always]
      mute_time_intervals: [long_ago]
time_intervals:
  - name: always
    time_intervals:
      - weekdays: ['sunday:saturday']
        times: [{{start_time: "00:00", end_time: "24:00"}}]
  - name: long_ago
    time_intervals:
      - years: ['2000:2001']
        months: ['january:march', 12]
        days_of_month: ['1:5', '-3:-1']
receivers:
  - name: r
    webhook_configs: [{{url: "SINK/r"}}]
"""
    steps = [
        (
            0.0,
            post(
                *(
                    {"labels": {"alertname": n, "route": n}, "startsAt": at(0)}
                    for n in ("muted", "inactive", "active")
                )
            ),
        )
    ]
    am, fw, t0 = run_both(config, steps, duration=3.5)
    assert len(am) == 1
    assert_same(am, fw, t0)


def test_repost_dedup_merge_and_resolve_timeout() -> None:
    # 3.5 s keeps every resolution half a second from a flush (group_wait 1 s, group_interval 2 s):
    # with 3 s the Timeout alert (posted at +2) resolved at +5.0, on its group's second flush, and
    # which side of that instant each router landed on decided when the resolution was sent
    config = grouped_config(top="global:\n  resolve_timeout: 3500ms")
    a = {"labels": {"alertname": "Flappy", "host": "h1"}, "annotations": {"v": "1"}, "startsAt": at(-2)}
    steps = [
        (0.0, post(a)),
        (1.5, post({**a, "annotations": {"v": "2"}, "startsAt": at(0.0)})),  # merge: earlier startsAt kept
        (2.0, post({"labels": {"alertname": "Timeout", "host": "h2"}})),  # no endsAt: resolve_timeout
        (3.1, post({**a, "annotations": {"v": "3"}})),  # annotation change only
    ]
    am, fw, t0 = run_both(config, steps, duration=9.5)
    assert_same(am, fw, t0)


def test_failing_receiver_is_retried_and_nothing_logged_until_success() -> None:
    config = grouped_config('{url: "SINK/flaky"}, {url: "SINK/bad"}')
    a = {"labels": {"alertname": "X"}, "startsAt": at(0)}
    with WebhookSink() as am_sink, WebhookSink() as fw_sink:
        for s in (am_sink, fw_sink):
            s.fail("/flaky", [503, 500])
            s.fail("/bad", [400])
        with (
            Alertmanager(config.replace("SINK", am_sink.url)) as am,
            RouterProcess(config.replace("SINK", fw_sink.url)) as fw,
        ):
            t0 = time.time()
            for url in (am.url, fw.url):
                httpx.post(url + "/api/v2/alerts", json=[{**a, "startsAt": iso(t0)}], trust_env=False)
            time.sleep(5.5)
        for s in (am_sink, fw_sink):
            flaky = s.received("/flaky")
            bad = s.received("/bad")
            # 2 failures then success inside the first flush; /bad fails once (no retry on 4xx),
            # then succeeds at the next flush because nothing was logged for it.
            assert len(flaky) == 3, [r.t - t0 for r in flaky]
            assert len(bad) == 2, [r.t - t0 for r in bad]
        assert [r.body["alerts"] for r in am_sink.received("/bad")][1:] != []


def test_slack_and_pagerduty_payloads() -> None:
    config = f"""
route:
  receiver: team.x
  group_by: [alertname]
  {TIMERS}
receivers:
  - name: team.x
    slack_configs: [{{api_url: "SINK/slack", channel: "#ops", send_resolved: true}}]
    pagerduty_configs: [{{routing_key: "key-1", url: "SINK/pd"}}]
"""
    alerts = [
        {
            "labels": {"alertname": "Down", "severity": "critical", "instance": f"i{i}"},
            "annotations": {"summary": "gone"},
            "startsAt": at(0),  # not old: both are in the first flush (+1 s), no race with the insert
            "generatorURL": "http://prom/graph",
        }
        for i in range(2)
    ]
    steps = [(0.0, post(*alerts)), (1.5, post(*({**a, "endsAt": at(1.5)} for a in alerts)))]
    am, fw, t0 = run_both(config, steps, duration=4.0)
    assert {r.path for r in am} == {"/slack", "/pd"} and len(am) == 4
    assert_same(am, fw, t0)


def test_quoting_empty_group_by_and_identical_sibling_routes() -> None:
    # Identical sibling matchers give identical groupKeys; with continue both routes notify.
    config = f"""
route:
  receiver: r
  {TIMERS}
  routes:
    - matchers: ['team="a\\"b"']
      receiver: r
      continue: true
    - matchers: ['team="a\\"b"']
      receiver: r
      group_by: [msg]
    - matchers: ['team=~"x|y"', 'team!="z"']
      receiver: r
      group_by: [msg, team]
receivers:
  - name: r
    webhook_configs: [{{url: "SINK/r", send_resolved: false}}]
"""
    odd = 'quote " back \\ tab \t newline \n é ✓'
    steps = [
        (
            0.0,
            post(
                {"labels": {"alertname": "Q", "team": 'a"b', "msg": odd}, "startsAt": at(-10)},
                {"labels": {"alertname": "Q", "team": "x", "msg": odd, "empty": ""}, "startsAt": at(-10)},
                {"labels": {"alertname": "Root"}, "startsAt": at(-10)},
            ),
        )
    ]
    am, fw, t0 = run_both(config, steps, duration=2.5)
    assert len(am) == 4
    assert_same(am, fw, t0)


def test_group_created_by_resolved_alert_and_late_old_alert() -> None:
    # A group whose first alert is already resolved still flushes (nothing to send) and then
    # waits group_interval; an old alert joining a fresh group flushes it at once.
    config = grouped_config(timers="group_wait: 1s\n  group_interval: 3s\n  repeat_interval: 1h")
    steps = [
        (0.0, post({"labels": {"alertname": "G", "i": "old"}, "startsAt": at(-100), "endsAt": at(-50)})),
        (0.5, post({"labels": {"alertname": "G", "i": "new"}, "startsAt": at(0.5)})),
        (0.5, post({"labels": {"alertname": "H", "i": "new"}, "startsAt": at(0.5)})),
        (1.0, post({"labels": {"alertname": "H", "i": "old"}, "startsAt": at(-100)})),
    ]
    am, fw, t0 = run_both(config, steps, duration=4.5)
    assert len(am) == 2
    assert_same(am, fw, t0)


def test_refire_merge_and_max_alerts_without_send_resolved() -> None:
    config = grouped_config(
        '{url: "SINK/r", max_alerts: 2, send_resolved: false}, {url: "SINK/s"}',
        timers="group_wait: 1s\n  group_interval: 2s\n  repeat_interval: 1h",
    )

    def a(i: int, start: float, end: float) -> dict[str, Any]:
        labels = {"alertname": "G", "instance": f"i{i}", "job": "z" if i % 2 else "a"}
        return {"labels": labels, "startsAt": at(start), "endsAt": at(end)}

    steps = [
        (0.0, post(a(1, 0, 60), a(2, 0, 60), a(3, 0, 60))),
        (1.5, post(a(1, 0, 1.5))),
        (3.5, post(a(1, 3.5, 60))),  # re-fire: a new range replaces the resolved alert
        (5.5, post(a(2, 0, 30))),  # an earlier explicit end merges into the later one
    ]
    am, fw, t0 = run_both(config, steps, duration=7.0)
    assert [r.body["truncatedAlerts"] for r in am if r.path == "/r"] == [1]
    assert_same(am, fw, t0)


TIME_INPUTS = [
    "2026-11-23T09:00:00.5+02:00",
    "2026-11-23T07:00:00.123456789+00:00",
    "2026-11-23 07:00:00Z",
    "2026-11-23 07:00:00",
    "2026-11-23T07:00:00",
    "2026-11-23T07:00Z",
    "2026-11-23T07:00",
    "2026-11-23t07:00:00z",
    "2026-11-23T07:00:00.123+0100",
    "2026-11-23T07:00:00+0100",
    "2026-11-23T07:00:00,5Z",
    "2026-11-23T07:00:00.5",
]


def test_time_layouts_and_offsets_like_alertmanager() -> None:
    """go-openapi's date-time layouts are accepted or refused alike, and webhooks print each
    time as Go does: in the offset it was sent with, with all its fractional digits."""
    config = grouped_config(timers="group_wait: 500ms\n  group_interval: 1s")
    with (
        WebhookSink() as am_sink,
        WebhookSink() as fw_sink,
        Alertmanager(config.replace("SINK", am_sink.url)) as am,
        RouterProcess(config.replace("SINK", fw_sink.url)) as fw,
    ):
        accepted: set[str] = set()
        for i, s in enumerate(TIME_INPUTS):
            alerts = [{"labels": {"alertname": "T", "i": str(i)}, "startsAt": s}]
            if i == 0:  # a resolved alert keeps its endsAt's offset too
                alerts.append(
                    {
                        "labels": {"alertname": "T", "i": "r"},
                        "startsAt": s,
                        "endsAt": "2026-11-23T08:00:00-01:00",
                    }
                )
            codes = [
                httpx.post(u + "/api/v2/alerts", json=alerts, trust_env=False).status_code
                for u in (am.url, fw.url)
            ]
            assert codes[0] == codes[1], (s, codes)
            if codes[0] == 200:
                accepted.update(a["labels"]["i"] for a in alerts)

        def shown() -> list[dict[str, tuple[str, str]]]:
            return [
                {
                    a["labels"]["i"]: (a["startsAt"], a["endsAt"])
                    for r in sink.received()
                    for a in r.body["alerts"]
                }
                for sink in (am_sink, fw_sink)
            ]

        # Until both have notified every accepted alert (a flush every second), not a fixed sleep.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(s.keys() != accepted for s in shown()):
            time.sleep(0.05)
        am_shown, fw_shown = shown()
    assert len(am_shown) > 5 and am_shown == fw_shown
