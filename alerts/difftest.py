"""Differential testing against the real Alertmanager 0.25: run one scenario through both, diff.

A scenario is a config (``SINK`` stands for the webhook sink's URL) and timed steps. Both
systems get the same steps at the same wall times on their own threads, post to their own
:class:`~forewarn.alerts.testing.WebhookSink`, and the notifications and API answers are
compared: the real Alertmanager is the oracle. :func:`generate` builds seeded random scenarios
whose steps keep clear of flush instants (see its docstring), so a difference is a divergence,
not a race. ``python -m forewarn.alerts.difftest --seeds 0:50`` runs many and prints every
divergence found.

>>> s = generate(3)
>>> s.seed, s.duration > 0, "route:" in s.config
(3, True, True)
>>> generate(3).config == s.config
True
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from forewarn.alerts.model import parse_time
from forewarn.alerts.testing import Alertmanager, Received, RouterProcess, WebhookSink

_LOCAL = re.compile(r"http://127\.0\.0\.1:\d+")
TIME_TOLERANCE = 0.8  # seconds between the two systems' notification times and generated timestamps


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Target:
    """One system under test: its base URL, the silence IDs it returned by name, its answers."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.silences: dict[str, str] = {}
        self.answers: list[tuple[str, Any]] = []
        self.http = httpx.Client(base_url=url, timeout=10, trust_env=False)

    def post(self, alerts: list[dict[str, Any]]) -> httpx.Response:
        return self.http.post("/api/v2/alerts", json=alerts)

    def silence_names(self) -> dict[str, str]:
        return {v: k for k, v in self.silences.items()}


Step = Callable[[Target, float], Any]


def post(*alerts: dict[str, Any]) -> Step:
    """POST alerts; a callable field value is called with t0 (see :func:`at`)."""

    def run(t: Target, t0: float) -> None:
        body = [{k: (v(t0) if callable(v) else v) for k, v in a.items()} for a in alerts]
        r = t.post(body)
        assert r.status_code == 200, r.text

    return run


def silence(name: str, matchers: list[dict[str, Any]], seconds: float = 3600, start: float = 0.0) -> Step:
    """Create a silence starting ``start`` s from now and ending ``seconds`` s from now."""

    def run(t: Target, t0: float) -> None:
        now = time.time()
        r = t.http.post(
            "/api/v2/silences",
            json={
                "matchers": matchers,
                "startsAt": iso(now + start),
                "endsAt": iso(now + seconds),
                "createdBy": "test",
                "comment": name,
            },
        )
        assert r.status_code == 200, r.text
        t.silences[name] = r.json()["silenceID"]

    return run


def expire(name: str, check: bool = True) -> Step:
    """Expire a silence; unchecked, the status is kept as an answer (expiring twice is an error)."""

    def run(t: Target, t0: float) -> None:
        r = t.http.delete(f"/api/v2/silence/{t.silences[name]}")
        if check:
            assert r.status_code == 200, r.text
        else:
            t.answers.append((f"DELETE silence {name}", r.status_code))

    return run


def query(path: str, params: list[tuple[str, str]] | None = None) -> Step:
    """GET an API path; the answer is kept on the target for :func:`compare_answers`."""

    def run(t: Target, t0: float) -> None:
        r = t.http.get(path, params=params or [])
        t.answers.append((f"{path}?{params or ''}", (r.status_code, canonical_api(r, t.silence_names()))))

    return run


def at(offset: float) -> Callable[[float], str]:
    """A timestamp ``offset`` seconds after the scenario start (negative: in the past)."""
    return lambda t0: iso(t0 + offset)


def _run_side(target: Target, steps: list[tuple[float, Step]], t0: float) -> None:
    for offset, step in steps:
        delay = t0 + offset - time.time()
        if delay > 0:
            time.sleep(delay)
        try:
            step(target, t0)
        except Exception as e:
            # An answer like any other: a refusal both systems make is agreement.
            target.answers.append((f"step at +{offset}", f"{type(e).__name__}: {e}"))


@dataclass
class Outcome:
    """What each side was sent and answered during one scenario."""

    am: list[Received]
    fw: list[Received]
    am_answers: list[tuple[str, Any]]
    fw_answers: list[tuple[str, Any]]
    t0: float

    def failed_steps(self) -> list[str]:
        """Steps that raised, on either side."""
        return [f"{q}: {a}" for q, a in self.am_answers + self.fw_answers if q.startswith("step at")]


def run_both(config: str, steps: list[tuple[float, Step]], duration: float) -> Outcome:
    """Run the scenario on both systems at once."""
    with (
        WebhookSink() as am_sink,
        WebhookSink() as fw_sink,
        Alertmanager(config.replace("SINK", am_sink.url)) as am,
        RouterProcess(config.replace("SINK", fw_sink.url)) as fw,
    ):
        t0 = time.time() + 0.3
        sides = [Target(am.url), Target(fw.url)]
        threads = [threading.Thread(target=_run_side, args=(s, steps, t0)) for s in sides]
        for th in threads:
            th.start()
        for th in threads:
            th.join(duration + 30)
        time.sleep(max(0.0, t0 + duration - time.time()))
        return Outcome(am_sink.received(), fw_sink.received(), sides[0].answers, sides[1].answers, t0)


def diff_value(a: Any, b: Any, path: str, out: list[str]) -> None:
    """Append to ``out`` where ``b`` differs from ``a`` (times within the tolerance, local URLs aside)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            out.append(f"{path}: keys {sorted(a)} != {sorted(b)}")
            return
        for k in a:
            diff_value(a[k], b[k], f"{path}.{k}", out)
    elif isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if len(a) != len(b):
            out.append(f"{path}: {len(a)} items != {len(b)}: {_brief(a)} vs {_brief(b)}")
            return
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            diff_value(x, y, f"{path}[{i}]", out)
    elif isinstance(a, str) and isinstance(b, str) and path.endswith(("startsAt", "endsAt")):
        ta, tb = parse_time(a, path), parse_time(b, path)
        if abs(ta - tb) > TIME_TOLERANCE:
            out.append(f"{path}: {a} vs {b}")
    elif isinstance(a, str) and isinstance(b, str):
        # Each system's own externalURL differs (its port); everything else must be equal.
        if _LOCAL.sub("EXTERNAL", a) != _LOCAL.sub("EXTERNAL", b):
            out.append(f"{path}: {a!r} != {b!r}")
    elif a != b:
        out.append(f"{path}: {a!r} != {b!r}")


def _brief(items: Any) -> str:
    """Alerts by labels and groups by labels, not whole objects, in a length mismatch."""
    out = []
    for x in items:
        if isinstance(x, dict) and "alerts" in x:
            out.append(f"group{x.get('labels')}->{x.get('receiver')}:{len(x['alerts'])}")
        elif isinstance(x, dict) and "labels" in x:
            out.append(f"{x.get('status')}{x['labels']}")
        else:
            out.append(repr(x)[:200])
    return "[" + ", ".join(out) + "]"


def diff_notifications(am: list[Received], fw: list[Received], t0: float) -> list[str]:
    """Differences per (sink path, groupKey): count, order, payloads (``externalURL`` aside), times."""

    def by_group(records: list[Received]) -> dict[tuple[str, str], list[Received]]:
        out: dict[tuple[str, str], list[Received]] = {}
        for r in records:
            out.setdefault((r.path, r.body.get("groupKey", "")), []).append(r)
        return out

    def times(rs: list[Received]) -> str:
        return ",".join(f"+{r.t - t0:.1f}:{r.body.get('status')}/{len(r.body.get('alerts', []))}" for r in rs)

    ga, gf = by_group(am), by_group(fw)
    out: list[str] = []
    for key in sorted(ga.keys() | gf.keys()):
        a, f = ga.get(key, []), gf.get(key, [])
        if len(a) != len(f):
            out.append(f"{key}: alertmanager sent {len(a)} [{times(a)}], forewarn {len(f)} [{times(f)}]")
            continue
        for i, (ra, rf) in enumerate(zip(a, f, strict=True)):
            ba = {k: v for k, v in ra.body.items() if k != "externalURL"}
            bf = {k: v for k, v in rf.body.items() if k != "externalURL"}
            diff_value(ba, bf, f"{key}#{i}", out)
            if abs(ra.t - rf.t) > TIME_TOLERANCE:
                out.append(f"{key}#{i}: alertmanager at +{ra.t - t0:.2f}s, forewarn at +{rf.t - t0:.2f}s")
    return out


def assert_same(am: list[Received], fw: list[Received], t0: float) -> None:
    diffs = diff_notifications(am, fw, t0)
    assert not diffs, "\n".join(diffs)


def canonical_api(r: httpx.Response, silence_names: dict[str, str]) -> Any:
    """An API answer with per-system details removed: update times, silence IDs (by name)."""
    try:
        body = r.json()
    except ValueError:
        return r.text

    def alert(a: dict[str, Any]) -> dict[str, Any]:
        a = {k: v for k, v in a.items() if k != "updatedAt"}
        st = dict(a.get("status") or {})
        st["silencedBy"] = sorted(silence_names.get(s, s) for s in st.get("silencedBy") or [])
        # With several firing sources Alertmanager names one in map order: compare only whether.
        st["inhibitedBy"] = ["some source" for _ in st.get("inhibitedBy") or []]
        a["status"] = st
        return a

    if isinstance(body, list) and body and isinstance(body[0], dict) and "createdBy" in body[0]:
        # Silences: by name (the comment), IDs and update times are each system's own.
        return [{**{k: v for k, v in s.items() if k != "updatedAt"}, "id": s["comment"]} for s in body]

    if isinstance(body, list) and body and isinstance(body[0], dict) and "fingerprint" in body[0]:
        return sorted((alert(a) for a in body), key=lambda a: a["fingerprint"])
    if isinstance(body, list) and body and isinstance(body[0], dict) and "alerts" in body[0]:
        groups = [
            {**g, "alerts": sorted((alert(a) for a in g["alerts"]), key=lambda a: a["fingerprint"])}
            for g in body
        ]
        # Groups of different routes may share labels and receiver; Alertmanager lists those in
        # map order, so their alerts break the tie.
        return sorted(
            groups,
            key=lambda g: (
                sorted(g["labels"].items()),
                g["receiver"]["name"],
                [a["fingerprint"] for a in g["alerts"]],
            ),
        )
    return body


def diff_answers(o: Outcome) -> list[str]:
    out: list[str] = []
    if len(o.am_answers) != len(o.fw_answers):
        return [f"answers: {len(o.am_answers)} vs {len(o.fw_answers)}"]
    for i, ((qa, a), (_, f)) in enumerate(zip(o.am_answers, o.fw_answers, strict=True)):
        diff_value(a, f, f"answer {i} {qa}", out)
    return out


# ---------------------------------------------------------------------------------------------
# The scenario generator


@dataclass
class Scenario:
    """A config with ``SINK`` placeholders, timed steps, and a readable description of them."""

    seed: int
    config: str
    steps: list[tuple[float, Step]]
    duration: float
    script: list[str]


_VALUES = {
    "severity": ["critical", "warning", "info"],
    "team": ["db", "web", 'a"b', "é\\n✓"],
    "instance": ["i1", "i2", "i3"],
    "job": ["x", "y"],
    "env": ["prod", "dev"],
}
_ALERTNAMES = ["A", "B", "C"]


def _ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms" if seconds % 1 else f"{int(seconds)}s"


def _route_matchers(rng: random.Random) -> dict[str, Any]:
    """One route's matchers in one of Alertmanager's spellings (new, quoted, legacy)."""
    name = rng.choice(["severity", "team", "alertname", "job", "env"])
    vals = _ALERTNAMES if name == "alertname" else _VALUES[name]
    v = rng.choice(vals)
    kind = rng.randrange(7)
    if kind == 0:
        return {"match": {name: v}}
    if kind == 1:
        return {"match_re": {name: "|".join(rng.sample(vals, 2))}}
    if kind == 2:
        return {"matchers": [f"{name}={v}" if '"' not in v else f'{name}="a\\"b"']}
    if kind == 3:
        q = v.replace('"', '\\"')
        return {"matchers": [f'{name}!="{q}"']}
    if kind == 4:
        return {"matchers": [f'{name}=~"{rng.choice(vals)[:1]}.*"']}
    if kind == 5:
        return {"matchers": [f'{name}!~"{"|".join(x.replace(chr(34), "") for x in rng.sample(vals, 2))}"']}
    other = rng.choice(["job", "env"])
    return {"matchers": [f'{{{name}=~".+", {other}!="{rng.choice(_VALUES[other])}"}}']}


def _timers(rng: random.Random, root: bool) -> dict[str, str]:
    """group_wait ∈ {0.5, 1.5} s and an integer group_interval: flushes fall on half seconds
    after a group's creation, steps on whole seconds; repeat_interval is a whole number of
    seconds plus a half, so whatever group_interval a route inherits, the time since the last
    notification at a flush (whole seconds) never ties with it."""
    out: dict[str, str] = {}
    gi = rng.choice([1, 2, 3])
    if root or rng.random() < 0.4:
        out["group_wait"] = _ms(rng.choice([0.5, 1.5]))
    if root or rng.random() < 0.4:
        out["group_interval"] = _ms(gi)
    if root or rng.random() < 0.4:
        out["repeat_interval"] = rng.choice(["1h", _ms(rng.randint(1, 5) + 0.5)])
    return out


def _group_by(rng: random.Random) -> list[str] | None:
    return rng.choice([None, None, [], ["alertname"], ["alertname", "team"], ["..."], ["job", "instance"]])


def _route(rng: random.Random, depth: int, receivers: list[str], intervals: list[str]) -> dict[str, Any]:
    r: dict[str, Any] = _route_matchers(rng)
    if rng.random() < 0.3:
        r = {**r, **{k: v for k, v in _route_matchers(rng).items() if k not in r}}
    if rng.random() < 0.6:
        r["receiver"] = rng.choice(receivers)
    gb = _group_by(rng)
    if gb is not None:
        r["group_by"] = gb
    r.update(_timers(rng, root=False))
    if rng.random() < 0.4:
        r["continue"] = True
    if rng.random() < 0.15:
        r["mute_time_intervals"] = [rng.choice(intervals)]
    if rng.random() < 0.15:
        r["active_time_intervals"] = [rng.choice(intervals)]
    if depth < 2 and rng.random() < 0.3:
        r["routes"] = [_route(rng, depth + 1, receivers, intervals) for _ in range(rng.randint(1, 2))]
    return r


_INTERVALS = {
    "always": [{"weekdays": ["sunday:saturday"], "times": [{"start_time": "00:00", "end_time": "24:00"}]}],
    "never": [{"years": ["2000:2001"], "months": ["january:march", 12]}],
    "always2": [{"days_of_month": ["1:31"]}, {"years": ["2000"]}],
    "never2": [{"months": ["january"], "years": ["1999"]}],
}


def _config(rng: random.Random) -> dict[str, Any]:
    receivers = [f"r{i}" for i in range(rng.randint(1, 3))]
    if rng.random() < 0.3:
        receivers[-1] = "team.ops"
    intervals = list(_INTERVALS)
    root: dict[str, Any] = {"receiver": receivers[0], **_timers(rng, root=True)}
    gb = _group_by(rng)
    if gb is not None:
        root["group_by"] = gb
    root["routes"] = [_route(rng, 1, receivers, intervals) for _ in range(rng.randint(0, 3))]
    cfg: dict[str, Any] = {}
    if rng.random() < 0.5:
        # A quarter second off the whole seconds: an alert's timeout end (its receive time plus
        # this) must not tie with a later step, whose merge or replace would then be a race.
        cfg["global"] = {"resolve_timeout": rng.choice(["2250ms", "3250ms", "5m"])}
    cfg["route"] = root
    cfg["receivers"] = [
        {
            "name": name,
            "webhook_configs": [
                {
                    "url": f"SINK/{name}/{i}",
                    **({"send_resolved": rng.random() < 0.6} if rng.random() < 0.7 else {}),
                    **({"max_alerts": rng.choice([1, 2])} if rng.random() < 0.25 else {}),
                }
                for i in range(rng.randint(1, 2))
            ],
        }
        for name in receivers
    ]
    rules = []
    for _ in range(rng.choice([0, 0, 1, 2])):
        equal = rng.choice([[], ["alertname"], ["team"], ["job", "instance"]])
        kind = rng.randrange(3)
        if kind == 0:
            rule: dict[str, Any] = {
                "source_matchers": ['severity="critical"'],
                "target_matchers": [rng.choice(['severity="warning"', 'severity=~"warning|info"'])],
            }
        elif kind == 1:
            rule = {"source_match": {"severity": "critical"}, "target_match_re": {"severity": "warn.*"}}
        else:  # alerts matching both sides: they cannot inhibit each other
            rule = {"source_matchers": ["alertname=A"], "target_matchers": ['alertname=~"A|B"']}
        if equal:
            rule["equal"] = equal
        rules.append(rule)
    if rules:
        cfg["inhibit_rules"] = rules
    if "_time_intervals" in yaml.safe_dump(root):
        key = rng.choice(["time_intervals", "mute_time_intervals"])
        cfg[key] = [{"name": n, "time_intervals": iv} for n, iv in _INTERVALS.items()]
    return cfg


def _labels(rng: random.Random) -> dict[str, str]:
    labels = {"alertname": rng.choice(_ALERTNAMES)}
    for name in rng.sample(sorted(_VALUES), rng.randint(1, 4)):
        labels[name] = rng.choice(_VALUES[name])
    return labels


def generate(seed: int, duration: int = 9) -> Scenario:
    """A random but reproducible scenario.

    Timing discipline, so that both systems must agree: every step happens on a whole second
    after t0; group_wait is 0.5 or 1.5 s and group_interval a whole number of seconds, so a
    group (created by a step) always flushes on a half second. A posted alert's startsAt is
    never older than its first post, so no group is flushed "at once" by an old alert, and
    every explicit or silence end time is a whole second too (a post at that very time is
    received after it by both). Timeout ends (receive time + resolve_timeout, which differ by the
    two systems' jitter) fall a quarter second off. API queries happen half a second after a step. The exception: a scenario may begin with one
    old alert posted alone at t0 (so no batch races its immediate flush); its groups flush on
    whole seconds, and all the other steps (and so times) move by half a second.
    """
    rng = random.Random(seed)
    cfg = _config(rng)
    config = yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True)
    steps: list[tuple[float, Step]] = []
    script: list[str] = []
    known: dict[str, dict[str, Any]] = {}  # fingerprint key -> last posted alert (spec)
    silences: list[str] = []

    def add(offset: float, step: Step, text: str) -> None:
        steps.append((float(offset), step))
        script.append(f"+{offset}s {text}")

    def new_alert(t: float) -> dict[str, Any]:
        labels = _labels(rng)
        spec: dict[str, Any] = {"labels": labels, "annotations": {"summary": f"s{rng.randint(0, 2)}"}}
        spec["startsAt"] = at(t - rng.choice([0, 0.1, 0.2])) if rng.random() < 0.8 else None
        if rng.random() < 0.6:
            spec["_end"] = t + rng.choice([60, 600, rng.randint(2, 6)])
            spec["endsAt"] = at(spec["_end"])
        if rng.random() < 0.3:
            spec["generatorURL"] = f"http://prom/{rng.randint(0, 9)}"
        known[repr(sorted(labels.items()))] = spec
        return spec

    def clean(spec: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in spec.items() if v is not None and not k.startswith("_")}

    # A third of the scenarios start with one old alert (its groups flush at once, on whole
    # seconds from then on); every other step then happens half a second later than usual.
    shift = 0.0
    if rng.random() < 0.33:
        old_alert = new_alert(0)
        old_alert.update(startsAt=at(-60), endsAt=at(600), _end=600)
        add(0, post(clean(old_alert)), f"post old {old_alert['labels']}")
        shift = 0.5
    batch = [new_alert(shift) for _ in range(rng.randint(2, 5))]
    add(shift, post(*map(clean, batch)), f"post {[a['labels'] for a in batch]}")
    for t in (whole + shift for whole in range(1, duration - 2)):
        for _ in range(rng.choice([0, 1, 1, 2])):
            op = rng.random()
            old = list(known.values())
            if op < 0.2 or not old:
                batch = [new_alert(t) for _ in range(rng.choice([1, 1, 2, 3]))]
                add(t, post(*map(clean, batch)), f"post new {[a['labels'] for a in batch]}")
            elif op < 0.27:
                a = rng.choice(old)  # sent again unchanged, as Prometheus re-sends (resolved ones too)
                add(t, post(clean(a)), f"re-send {a['labels']}")
            elif op < 0.4:
                a = rng.choice(old)
                a = {**a, "annotations": {"summary": f"s{rng.randint(3, 5)}"}}
                if rng.random() < 0.4 and a.get("startsAt") is not None and a.get("_end", t + 1) > t:
                    a["startsAt"] = at(t - 0.1)  # later start: merge keeps the earliest
                known[repr(sorted(a["labels"].items()))] = a
                add(t, post(clean(a)), f"re-post {a['labels']} {a['annotations']}")
            elif op < 0.6:
                a = rng.choice(old)
                end = rng.choice([0, 0, 2])
                if a.get("startsAt") is None:
                    a = {**a, "startsAt": at(t - 0.5)}
                a = {**a, "endsAt": at(t + end), "_end": t + end}
                known[repr(sorted(a["labels"].items()))] = a
                add(t, post(clean(a)), f"resolve {a['labels']} at +{t + end}")
            elif op < 0.7:
                a = rng.choice(old)
                a = {**a, "startsAt": at(t), "endsAt": at(t + 600), "_end": t + 600}
                known[repr(sorted(a["labels"].items()))] = a
                add(t, post(clean(a)), f"re-fire {a['labels']}")
            elif op < 0.82:
                name = f"s{len(silences)}"
                labels = rng.choice(old)["labels"]
                keys = rng.sample(sorted(labels), rng.randint(1, min(2, len(labels))))
                ms = []
                for k in keys:
                    if rng.random() < 0.7:
                        ms.append({"name": k, "value": labels[k], "isRegex": False})
                    else:
                        ms.append({"name": k, "value": re.escape(labels[k]) + "|zz", "isRegex": True})
                if rng.random() < 0.2:
                    ms.append({"name": "env", "value": "prod", "isRegex": False, "isEqual": False})
                seconds = rng.choice([3600, rng.randint(2, 4)])
                start = rng.choice([0, 0, 0, 1])
                silences.append(name)
                add(t, silence(name, ms, seconds, start), f"silence {name} {ms} +{start}..+{seconds}")
            elif op < 0.9 and silences:
                name = rng.choice(silences)
                add(t, expire(name, check=False), f"expire {name}")  # may already be expired: both must agree
            else:
                params = _query_params(rng, old)
                path = rng.choice(
                    ["/api/v2/alerts", "/api/v2/alerts", "/api/v2/alerts/groups", "/api/v2/silences"]
                )
                if path == "/api/v2/silences":
                    params = [p for p in params if p[0] == "filter"]
                # Half a second from the ends; a flush's effects (dropping resolved alerts from
                # their groups) are invisible to the API, so tying with one is harmless.
                add(t + 0.5, query(path, params), f"GET {path} {params}")
    add(duration - 0.5, query("/api/v2/alerts"), "GET /api/v2/alerts")
    order = sorted(range(len(steps)), key=lambda i: steps[i][0])
    return Scenario(seed, config, [steps[i] for i in order], float(duration), [script[i] for i in order])


def _query_params(rng: random.Random, known: list[dict[str, Any]]) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = []
    if rng.random() < 0.5:
        labels = rng.choice(known)["labels"]
        k = rng.choice(sorted(labels))
        v = labels[k].replace('"', '\\"')
        params.append(("filter", rng.choice([f'{k}="{v}"', f'{k}=~".*{v[:1]}.*"', f'{k}!="{v}"'])))
    for flag in ("silenced", "inhibited", "active"):
        if rng.random() < 0.25:
            params.append((flag, rng.choice(["false", "true"])))
    if rng.random() < 0.2:
        params.append(("receiver", rng.choice(["r0", "r1", "r.*", "team\\.ops"])))
    return params


def run_scenario(s: Scenario) -> list[str]:
    """All differences between the two systems for one scenario (empty: they agree)."""
    o = run_both(s.config, s.steps, s.duration)
    return diff_notifications(o.am, o.fw, o.t0) + diff_answers(o)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", default="0:20", help="START:STOP range of seeds")
    p.add_argument("--show", action="store_true", help="print each scenario's config and script")
    p.add_argument("--save", type=Path, help="directory for the configs and scripts of failing seeds")
    args = p.parse_args(argv)
    start, stop = (int(x) for x in args.seeds.split(":"))
    failed = 0
    t = time.time()
    for seed in range(start, stop):
        s = generate(seed)
        diffs = run_scenario(s)
        status = "ok" if not diffs else f"{len(diffs)} differences"
        print(f"seed {seed}: {status}", flush=True)
        if diffs or args.show:
            print(s.config + "\n".join(s.script))
            print("\n".join(f"  ! {d}" for d in diffs), flush=True)
        if diffs:
            failed += 1
            if args.save:
                args.save.mkdir(parents=True, exist_ok=True)
                (args.save / f"seed{seed}.txt").write_text(s.config + "\n".join(s.script + diffs))
    print(f"{stop - start} seeds, {failed} with differences, {time.time() - t:.0f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
