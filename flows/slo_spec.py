"""SLO files: OpenSLO ``openslo/v1`` and Sloth ``prometheus/v1`` specs read into one model, with
errors that name the file, the field and what is wrong, and written back in either format.

Events are counted by *selectors* in Prometheus' syntax, so Sloth queries work as written when
the metrics come from OpenTelemetry (names compared with dots as underscores, unit suffixes
optional):

* ``spans{service="checkout", route="/pay", status="error"}`` counts entry spans (server,
  consumer or root); ``spans_bucket{le="0.3"}`` those that took at most 0.3 s;
* ``<histogram>_count{...}`` / ``<histogram>_bucket{le="0.3"}`` (e.g.
  ``http_server_request_duration_seconds_count{code=~"5.."}``) count observations of an
  ``otel_metrics_histogram`` metric, all or under the bound;
* anything else (``http_requests_total{...}``) is the increase of a monotonic sum.

``sum(rate(<selector>[{{.window}}]))`` and ``sum(increase(...))`` around a selector are accepted
(that is what Sloth files hold); any other PromQL is refused with the form that is understood.

>>> parse_selector('sum(rate(http_requests_total{job="api",code=~"5.."}[{{.window}}]))')
Selector(source='counter', metric='http_requests_total', matchers=(('job', '=', 'api'), ('code', '=~', '5..')), le=None)
>>> parse_selector('spans_bucket{service="checkout", le="0.3"}').le
0.3
"""

from __future__ import annotations

import calendar
import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

WINDOW_DAYS = (7, 28, 30)
SLOTH_VERSIONS = ("prometheus/v1",)
SLOTH_K8S = ("sloth.slok.dev/v1",)


class SLOFileError(ValueError):
    """One or more problems in SLO files, each ``file: field: what is wrong``."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid SLO definitions:\n" + "\n".join(f"  - {p}" for p in problems))


# -- selectors -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Selector:
    """What to count per bucket: spans, observations of a histogram, or a counter's increase."""

    source: str  # spans | histogram | counter
    metric: str
    matchers: tuple[tuple[str, str, str], ...] = ()
    le: float | None = None

    def text(self) -> str:
        """The selector back in Prometheus syntax (what the files hold)."""
        ms = [f'{k}{op}"{_escape(v)}"' for k, op, v in self.matchers]
        if self.le is not None:
            ms.append(f'le="{self.le:g}"')
        return f"{self.metric}{{{', '.join(ms)}}}" if ms else self.metric


_WRAP = re.compile(
    r"^\s*(?:sum\s*(?:(?:by|without)\s*\([^)]*\)\s*)?\(\s*)?(?:(?:rate|increase)\s*\(\s*)?"
    r"(?P<sel>[A-Za-z_:][A-Za-z0-9_:.]*\s*(?:\{[^}]*\})?)\s*"
    r"(?:\[\s*[^\]]*\]\s*\)\s*)?(?:\)\s*(?:(?:by|without)\s*\([^)]*\)\s*)?)?$"
)
_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
UNDERSTOOD = 'metric{label="value", ...}, optionally inside sum(rate(...[{{.window}}])) or sum(increase(...))'


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"')


def parse_selector(text: str) -> Selector:
    """A selector from its Prometheus form; ValueError says what is not understood."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("is empty; expected " + UNDERSTOOD)
    m = _WRAP.match(text)
    if not m:
        raise ValueError(f"{text!r} is not understood; expected {UNDERSTOOD}")
    sel = m.group("sel").strip()
    name, _, rest = sel.partition("{")
    name = name.strip()
    body = rest.rstrip().removesuffix("}")
    matchers: list[tuple[str, str, str]] = []
    le = None
    pos = 0
    while pos < len(body) and body[pos:].strip():
        mm = _MATCHER.match(body, pos)
        if not mm:
            raise ValueError(f"label matchers {{{body}}} are not understood at {body[pos:]!r}")
        key, op, val = mm.group(1), mm.group(2), re.sub(r"\\(.)", r"\1", mm.group(3))
        pos = mm.end()
        if key == "le":
            if op != "=":
                raise ValueError('le takes a bound with =, e.g. le="0.3"')
            try:
                le = float(val)
            except ValueError:
                raise ValueError(f'le="{val}" is not a number') from None
            continue
        if op in ("=~", "!~"):
            try:
                re.compile(val)
            except re.error as e:
                raise ValueError(f"{key}{op}{val!r}: not a valid regular expression ({e})") from None
        matchers.append((key, op, val))
    if name in ("spans", "spans_count", "spans_bucket"):
        source, metric = "spans", "spans_bucket" if le is not None else "spans"
    elif name.endswith(("_count", "_bucket")):
        source, metric = "histogram", name
    else:
        source, metric = "counter", name
    if name.endswith("_bucket") and le is None:
        raise ValueError(f'{name} needs a bound, e.g. {name}{{le="0.3"}}')
    if name.endswith("_sum"):
        raise ValueError(f"{name}: a sum of observed values is not an event count; use _count or _bucket")
    return Selector(source, metric, tuple(matchers), le)


# -- the model -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TimeWindow:
    days: int
    rolling: bool = True
    start: str | None = None  # calendar anchor, ISO 8601
    tz: str = "UTC"

    def start_ms(self, now_ms: int) -> int:
        """Start of the window that contains ``now_ms``."""
        if self.rolling:
            return now_ms - self.days * 86_400_000
        zone = ZoneInfo(self.tz)
        now = datetime.fromtimestamp(now_ms / 1000, tz=UTC).astimezone(zone)
        if self.start is None and self.days in (28, 30):  # "a month", as people mean it
            s = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        elif self.start is None and self.days == 7:
            s = (now - timedelta(days=now.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
        else:
            anchor = datetime.fromisoformat(self.start or "1970-01-05T00:00:00")
            anchor = anchor if anchor.tzinfo else anchor.replace(tzinfo=zone)
            n = math.floor((now - anchor) / timedelta(days=self.days))
            s = anchor + n * timedelta(days=self.days)
        return int(s.timestamp() * 1000)

    def end_ms(self, now_ms: int) -> int:
        """End of the window containing ``now_ms`` (a rolling window ends now)."""
        if self.rolling:
            return now_ms
        start = self.start_ms(now_ms)
        s = datetime.fromtimestamp(start / 1000, tz=UTC).astimezone(ZoneInfo(self.tz))
        if self.start is None and self.days in (28, 30):
            days = calendar.monthrange(s.year, s.month)[1]
            return int((s + timedelta(days=days)).timestamp() * 1000)
        return int((s + timedelta(days=self.days)).timestamp() * 1000)

    def label(self) -> str:
        return f"{self.days}d {'rolling' if self.rolling else 'calendar'}"


@dataclass(frozen=True)
class SLO:
    """One objective over one SLI; ``id`` is Sloth's ``<service>-<slo>``."""

    service: str
    name: str
    objective: float  # a fraction: 0.999
    total: Selector
    good: Selector | None = None
    bad: Selector | None = None
    window: TimeWindow = TimeWindow(30)
    description: str = ""
    alert_name: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    page_labels: dict[str, str] = field(default_factory=dict)
    ticket_labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    alerting: bool = True
    file: str = ""

    @property
    def id(self) -> str:
        return f"{self.service}-{self.name}"

    @property
    def budget(self) -> float:
        return 1.0 - self.objective

    @cached_property  # read per bucket row by the flow: computed once
    def sli_key(self) -> str:
        """Identity of the counted events: a changed query starts a new series of buckets."""
        what = [s.text() if s else "" for s in (self.good, self.bad, self.total)]
        digest = hashlib.blake2b("\x1f".join(what).encode(), digest_size=6).hexdigest()
        return f"{self.id}/{digest}"

    @property
    def alertname(self) -> str:
        return (
            self.alert_name
            or "".join(p.capitalize() for p in re.split(r"[^A-Za-z0-9]+", self.id)) + "ErrorBudgetBurn"
        )


# -- reading ----------------------------------------------------------------------------------------
class _Problems:
    def __init__(self, file: str):
        self.file, self.items = file, []

    def add(self, where: str, what: str) -> None:
        self.items.append(f"{self.file}: {where}: {what}" if where else f"{self.file}: {what}")


def _get(d: Any, key: str, p: _Problems, where: str, kind: type | tuple = str, required: bool = True) -> Any:
    if not isinstance(d, dict):
        p.add(where, f"must be a mapping, got {type(d).__name__}")
        return None
    if key not in d or d[key] is None:
        if required:
            p.add(f"{where}.{key}" if where else key, "is required")
        return None
    v = d[key]
    if not isinstance(v, kind) or (isinstance(v, bool) and kind in (int, float, (int, float))):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        p.add(f"{where}.{key}" if where else key, f"must be a {names}, got {v!r}")
        return None
    return v


def _str_map(d: Any, p: _Problems, where: str) -> dict[str, str]:
    if d is None:
        return {}
    if not isinstance(d, dict):
        p.add(where, "must be a mapping of names to values")
        return {}
    return {str(k): str(v) for k, v in d.items()}


def _selector(text: Any, p: _Problems, where: str) -> Selector | None:
    try:
        return parse_selector(text)
    except ValueError as e:
        p.add(where, str(e))
        return None


_DURATION = re.compile(r"^(\d+)([dwM])$")


def _window(
    duration: Any, rolling: bool, p: _Problems, where: str, start=None, tz="UTC"
) -> TimeWindow | None:
    m = _DURATION.match(str(duration).strip()) if duration is not None else None
    if not m:
        p.add(where, f"{duration!r} is not a window; use 7d, 28d or 30d (or 1w, 4w, 1M)")
        return None
    n, unit = int(m.group(1)), m.group(2)
    days = n * {"d": 1, "w": 7, "M": 30}[unit]
    if unit == "M" and n != 1:
        days = 0
    if days not in WINDOW_DAYS:
        p.add(where, f"{duration!r}: windows of 7, 28 or 30 days are supported")
        return None
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        p.add(where, f"unknown time zone {tz!r}")
        return None
    if start is not None:
        try:
            datetime.fromisoformat(str(start))
        except ValueError:
            p.add(where, f"calendar startTime {start!r} is not a date and time (2024-01-01 00:00:00)")
            return None
    return TimeWindow(days, rolling, None if start is None else str(start), tz)


def _objective_fraction(v: Any, percent: bool, p: _Problems, where: str) -> float | None:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        p.add(where, f"must be a number, got {v!r}")
        return None
    frac = round(v / 100.0, 12) if percent else float(v)
    if not 0.0 < frac < 1.0:
        rng = "between 0 and 100 (percent), e.g. 99.9" if percent else "between 0 and 1, e.g. 0.999"
        p.add(where, f"{v} is not {rng}")
        return None
    return frac


def _name_ok(v: str, p: _Problems, where: str) -> bool:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", v):
        p.add(where, f"{v!r}: use letters, digits, '-', '_' and '.'")
        return False
    return True


def read_sloth(doc: dict, p: _Problems, default_window: TimeWindow) -> list[SLO]:
    """Sloth ``prometheus/v1`` (or its Kubernetes ``PrometheusServiceLevel`` spec)."""
    spec = doc.get("spec", doc) if doc.get("kind") == "PrometheusServiceLevel" else doc
    k8s = spec is not doc
    service = _get(spec, "service", p, "")
    labels = _str_map(spec.get("labels"), p, "labels")
    slos = _get(spec, "slos", p, "", list)
    out: list[SLO] = []
    if service is not None:
        _name_ok(service, p, "service")
    seen: set[str] = set()
    window = default_window
    if spec.get("slo_period") is not None or spec.get("sloPeriod") is not None:
        window = (
            _window(spec.get("slo_period", spec.get("sloPeriod")), True, p, "slo_period") or default_window
        )
    for i, s in enumerate(slos or []):
        w = f"slos[{i}]"
        name = _get(s, "name", p, w)
        if name is not None and _name_ok(name, p, f"{w}.name"):
            if name in seen:
                p.add(f"{w}.name", f"{name!r} is used twice")
            seen.add(name)
        obj = _get(s, "objective", p, w, (int, float))
        objective = _objective_fraction(obj, True, p, f"{w}.objective") if obj is not None else None
        sli = _get(s, "sli", p, w, dict) or {}
        bad = total = None
        ev = sli.get("events")
        if isinstance(ev, dict):
            ek = "errorQuery" if k8s or "errorQuery" in ev else "error_query"
            tk = "totalQuery" if k8s or "totalQuery" in ev else "total_query"
            bad = _selector(_get(ev, ek, p, f"{w}.sli.events"), p, f"{w}.sli.events.{ek}")
            total = _selector(_get(ev, tk, p, f"{w}.sli.events"), p, f"{w}.sli.events.{tk}")
        elif "raw" in sli or "plugin" in sli:
            p.add(f"{w}.sli", "raw error-ratio queries and plugins are not supported; use events "
                  "(error_query and total_query)")  # fmt: skip
        elif sli:
            p.add(f"{w}.sli", "needs events: {error_query: ..., total_query: ...}")
        al = s.get("alerting") or {}
        if not isinstance(al, dict):
            p.add(f"{w}.alerting", "must be a mapping")
            al = {}
        pk, tk2 = ("pageAlert", "ticketAlert") if k8s or "pageAlert" in al else ("page_alert", "ticket_alert")
        page, ticket = al.get(pk) or {}, al.get(tk2) or {}
        disabled = bool(page.get("disable")) and bool(ticket.get("disable"))
        if None in (service, name, objective, bad, total):
            continue
        out.append(
            SLO(
                service=service, name=name, objective=objective, total=total, bad=bad, window=window,
                description=str(s.get("description", "")), alert_name=str(al.get("name", "")),
                labels={**labels, **_str_map(s.get("labels"), p, f"{w}.labels"),
                        **_str_map(al.get("labels"), p, f"{w}.alerting.labels")},
                page_labels=_str_map(page.get("labels"), p, f"{w}.alerting.{pk}.labels"),
                ticket_labels=_str_map(ticket.get("labels"), p, f"{w}.alerting.{tk2}.labels"),
                annotations=_str_map(al.get("annotations"), p, f"{w}.alerting.annotations"),
                alerting=not disabled, file=p.file,
            )
        )  # fmt: skip
    return out


def _openslo_query(ms: Any, p: _Problems, where: str) -> Selector | None:
    src = _get(ms, "metricSource", p, where, dict)
    if src is None:
        return None
    spec = _get(src, "spec", p, f"{where}.metricSource", dict)
    if spec is None:
        return None
    q = spec.get("query", spec.get("promql"))
    if q is None:
        p.add(f"{where}.metricSource.spec.query", 'is required (a selector such as spans{service="x"})')
        return None
    return _selector(q, p, f"{where}.metricSource.spec.query")


def _openslo_indicator(sli: dict, p: _Problems, where: str) -> tuple[Selector | None, ...] | None:
    spec = _get(sli, "spec", p, where, dict)
    if spec is None:
        return None
    if "thresholdMetric" in spec:
        p.add(f"{where}.spec.thresholdMetric", "threshold SLIs are not supported; use ratioMetric with "
              "good (e.g. spans_bucket{le=\"0.3\"}) and total")  # fmt: skip
        return None
    ratio = _get(spec, "ratioMetric", p, f"{where}.spec", dict)
    if ratio is None:
        return None
    w = f"{where}.spec.ratioMetric"
    if ("good" in ratio) == ("bad" in ratio):
        p.add(w, "needs exactly one of good or bad, and total")
        return None
    good = _openslo_query(ratio["good"], p, f"{w}.good") if "good" in ratio else None
    bad = _openslo_query(ratio["bad"], p, f"{w}.bad") if "bad" in ratio else None
    total = _openslo_query(ratio.get("total"), p, f"{w}.total") if "total" in ratio else None
    if "total" not in ratio:
        p.add(f"{w}.total", "is required")
    return good, bad, total


def read_openslo(docs: list[tuple[int, dict]], p: _Problems) -> list[SLO]:
    """``kind: SLO`` documents (indicator inline or by ``indicatorRef`` to a ``kind: SLI``)."""
    slis = {d.get("metadata", {}).get("name"): d for _, d in docs if d.get("kind") == "SLI"}
    out: list[SLO] = []
    for i, d in docs:
        if d.get("kind") != "SLO":
            continue
        where = f"document {i + 1} (SLO)"
        meta = _get(d, "metadata", p, where, dict) or {}
        name = _get(meta, "name", p, f"{where}.metadata")
        if name is not None:
            where = f"SLO {name}"
            _name_ok(name, p, f"{where}.metadata.name")
        spec = _get(d, "spec", p, where, dict)
        if spec is None:
            continue
        service = _get(spec, "service", p, f"{where}.spec")
        if "indicator" in spec:
            ind = spec["indicator"]
            sel = _openslo_indicator(ind if isinstance(ind, dict) else {}, p, f"{where}.spec.indicator")
        elif "indicatorRef" in spec:
            ref = spec["indicatorRef"]
            if ref not in slis:
                p.add(f"{where}.spec.indicatorRef", f"no SLI named {ref!r} in this directory")
                sel = None
            else:
                sel = _openslo_indicator(slis[ref], p, f"SLI {ref}")
        else:
            p.add(f"{where}.spec", "needs indicator (inline) or indicatorRef")
            sel = None
        tws = _get(spec, "timeWindow", p, f"{where}.spec", list)
        window = None
        if tws is not None:
            if len(tws) != 1 or not isinstance(tws[0], dict):
                p.add(f"{where}.spec.timeWindow", "must hold exactly one window")
            else:
                tw = tws[0]
                cal = tw.get("calendar") or {}
                rolling = bool(tw.get("isRolling", not cal))
                window = _window(tw.get("duration"), rolling, p, f"{where}.spec.timeWindow[0].duration",
                                 cal.get("startTime"), cal.get("timeZone", "UTC"))  # fmt: skip
        method = spec.get("budgetingMethod", "Occurrences")
        if method != "Occurrences":
            p.add(f"{where}.spec.budgetingMethod", f"{method!r}: only Occurrences is supported")
        objs = _get(spec, "objectives", p, f"{where}.spec", list) or []
        if not objs:
            p.add(f"{where}.spec.objectives", "needs at least one objective")
        for j, o in enumerate(objs):
            ow = f"{where}.spec.objectives[{j}]"
            if not isinstance(o, dict):
                p.add(ow, "must be a mapping")
                continue
            if ("target" in o) == ("targetPercent" in o):
                p.add(ow, "needs exactly one of target (0-1) or targetPercent (0-100)")
                continue
            pct = "targetPercent" in o
            frac = _objective_fraction(o["targetPercent" if pct else "target"], pct, p,
                                       f"{ow}.{'targetPercent' if pct else 'target'}")  # fmt: skip
            suffix = "" if len(objs) == 1 else "-" + str(o.get("displayName") or j).lower().replace(" ", "-")
            if None in (name, service, sel, window, frac) or sel is None or sel[2] is None:
                continue
            good, bad, total = sel
            out.append(
                SLO(service=service, name=name + suffix, objective=frac, total=total, good=good, bad=bad,
                    window=window, description=str(spec.get("description", "")),
                    alert_name=str(meta.get("annotations", {}).get("forewarn/alertname", "")),
                    labels=_str_map(meta.get("labels"), p, f"{where}.metadata.labels"), file=p.file)
            )  # fmt: skip
    return out


def load_file(path: Path, default_window: TimeWindow = TimeWindow(30)) -> list[SLO]:
    """The SLOs of one file (either format, several YAML documents allowed)."""
    p = _Problems(str(path))
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"line {mark.line + 1}" if mark else ""
        p.add(at, f"not valid YAML ({getattr(e, 'problem', None) or e})")
        raise SLOFileError(p.items) from None
    except OSError as e:
        raise SLOFileError([f"{path}: cannot be read ({e.strerror})"]) from None
    out: list[SLO] = []
    openslo = []
    for i, d in enumerate(docs):
        if not isinstance(d, dict):
            p.add(f"document {i + 1}", "must be a mapping")
            continue
        api = d.get("apiVersion") or d.get("version")
        if d.get("apiVersion") == "openslo/v1":
            openslo.append((i, d))
        elif d.get("version") in SLOTH_VERSIONS or (d.get("apiVersion") in SLOTH_K8S):
            out += read_sloth(d, p, default_window)
        else:
            p.add(f"document {i + 1}", f"unknown format {api!r}: expected apiVersion: openslo/v1 "
                  'or version: "prometheus/v1" (Sloth)')  # fmt: skip
    out += read_openslo(openslo, p)
    if p.items:
        raise SLOFileError(p.items)
    return out


def load_dir(directory: Path | str) -> list[SLO]:
    """Every SLO of the ``*.yaml``/``*.yml`` files under ``directory``; every problem of every
    file is reported at once, and two SLOs may not share an id."""
    d = Path(directory)
    if not d.is_dir():
        raise SLOFileError([f"{d}: SLO directory not found"])
    problems: list[str] = []
    out: list[SLO] = []
    for f in sorted([*d.rglob("*.yaml"), *d.rglob("*.yml")]):
        try:
            out += load_file(f)
        except SLOFileError as e:
            problems += e.problems
    first: dict[str, str] = {}
    for s in out:
        if s.id in first:
            problems.append(f"{s.file}: SLO {s.id} is already defined in {first[s.id]}")
        first.setdefault(s.id, s.file)
    if problems:
        raise SLOFileError(problems)
    return out


# -- writing ---------------------------------------------------------------------------------------
def _tw(w: TimeWindow) -> dict:
    dur = f"{w.days}d"
    if w.rolling:
        return {"duration": dur, "isRolling": True}
    cal: dict[str, str] = {"timeZone": w.tz}
    if w.start:
        cal["startTime"] = w.start
    return {"duration": dur, "isRolling": False, "calendar": cal}


def to_openslo(s: SLO) -> dict:
    """An OpenSLO ``kind: SLO`` document with its indicator inline."""
    ratio: dict[str, Any] = {"counter": True}
    for k in ("good", "bad", "total"):
        sel = getattr(s, k)
        if sel is not None:
            ratio[k] = {"metricSource": {"type": "forewarn", "spec": {"query": sel.text()}}}
    meta: dict[str, Any] = {"name": s.name}
    if s.labels:
        meta["labels"] = dict(s.labels)
    if s.alert_name:
        meta["annotations"] = {"forewarn/alertname": s.alert_name}
    return {
        "apiVersion": "openslo/v1",
        "kind": "SLO",
        "metadata": meta,
        "spec": {
            "description": s.description,
            "service": s.service,
            "indicator": {"metadata": {"name": f"{s.name}-sli"}, "spec": {"ratioMetric": ratio}},
            "timeWindow": [_tw(s.window)],
            "budgetingMethod": "Occurrences",
            "objectives": [{"target": round(s.objective, 10)}],
        },
    }


def to_sloth(slos: list[SLO]) -> dict:
    """One Sloth ``prometheus/v1`` spec for SLOs of one service (bad events: error_query)."""
    (service,) = {s.service for s in slos}
    out = []
    for s in slos:
        if s.bad is None:
            raise ValueError(f"{s.id}: Sloth counts bad events; this SLO counts good ones")
        alerting: dict[str, Any] = {"name": s.alertname}
        for k, v in (("labels", s.labels), ("annotations", s.annotations)):
            if v:
                alerting[k] = dict(v)
        alerting["page_alert"] = {"labels": dict(s.page_labels)} if s.page_labels else {}
        alerting["ticket_alert"] = {"labels": dict(s.ticket_labels)} if s.ticket_labels else {}
        if not s.alerting:
            alerting["page_alert"]["disable"] = alerting["ticket_alert"]["disable"] = True
        out.append({
            "name": s.name, "objective": round(s.objective * 100, 8), "description": s.description,
            "sli": {"events": {"error_query": f"sum(rate({s.bad.text()}[{{{{.window}}}}]))",
                               "total_query": f"sum(rate({s.total.text()}[{{{{.window}}}}]))"}},
            "alerting": alerting,
        })  # fmt: skip
    return {"version": "prometheus/v1", "service": service, "slos": out}


def describe(s: SLO) -> dict:
    """Plain data for tables and JSON output."""
    d = asdict(s)
    d.update(id=s.id, sli_key=s.sli_key, window=s.window.label(), alertname=s.alertname)
    return json.loads(json.dumps(d, default=str))
