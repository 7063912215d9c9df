"""Root cause: which service (and operation) of an incident is the most likely cause.

Suspects are services ranked by how much of the deviation they carry (the sum over their anomalies
of ``-log10(1 - score)``, capped), but the first one is chosen with the call graph (parent/child
spans): latency, errors and saturation propagate from a callee to its callers, so the cause is the
*deepest* service whose own signals deviate (no service it calls, directly or not, deviates too):
a database slowing down makes three callers suffer, and the database is named. Errors and new log
messages are explained only by a callee that fails too, not by one that merely slowed. Lost traffic
propagates the other way (a caller that stops calling starves its callees), so when throughput
drops carry most of the evidence, the *shallowest* service with a drop is named. Inside the named
service the operation that carries most of the deviation is named, a callee operation preferred
over its caller; a step an instrumentation library wraps inside an operation (Express's ``request
handler``, ASGI's ``<route> http send``) counts as that operation.

>>> import pandas as pd
>>> a = pd.DataFrame({"service": ["web", "db", "db"], "labels": [{}, {"operation": "SELECT"}, {}],
...                   "name": ["red.p95", "red.p95", "red.p99"], "score": [0.9999999, 0.999, 0.999],
...                   "value": [300.0, 40.0, 90.0], "expected": [30.0, 4.0, 9.0], "explanation": ["", "", ""]})
>>> [s["service"] + ":" + s["operation"] for s in rank_suspects(a, set(), {("web", "db")})]
['db:SELECT', 'web:']
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict

import pandas as pd
from forewarn.detectors.saturation import LOAD

CALLEE_BOOST, CALLER_PENALTY = 1.5, 0.5
TRAFFIC = ("red.rate", "log.rate")
HOST_PREFIXES = ("system.", "process.", "container.")  # a machine's or process's own resources


def stable_id(*parts: object) -> int:
    """63-bit id from its parts (deterministic across processes, unlike ``hash``)."""
    key = "\x1f".join(map(str, parts)).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def weight(score: float) -> float:
    return min(-math.log10(max(1.0 - float(score), 1e-12)), 12.0)


def evidence_kind(a: dict) -> str:
    """What an anomaly says happened: ``drop`` (lost traffic), ``resource`` (a series with a
    saturation limit: ``a["_resource"]``), ``load`` (processor time: :func:`is_load`), ``errors``,
    ``logs`` (new templates), ``latency`` or ``other``.

    >>> evidence_kind({"name": "red.error_ratio", "detector": "coldstart"})
    'errors'
    >>> evidence_kind({"name": "red.rate", "detector": "coldstart", "_drop": True})
    'drop'
    """
    name, detector = str(a.get("name", "")), str(a.get("detector", ""))
    if a.get("_drop"):
        return "drop"
    if a.get("_resource"):
        return "resource"
    if is_load(name):
        return "load"
    if "error" in name:
        return "errors"
    if detector.startswith("novelty") or name.startswith("log.template"):
        return "logs"
    if (
        any(name.endswith(s) for s in (":p50", ":p95", ":p99", ".p50", ".p95", ".p99"))
        or name == "latency.shift"
    ):
        return "latency"
    return "other"


def is_load(name: str) -> bool:
    """Processor time or a runtime's event loop: how busy a host or process is, a cause or a
    consequence of what users feel, not a symptom of its own.

    >>> is_load("system.cpu.time:rate"), is_load("process.cpu.utilization"), is_load("red.p95")
    (True, True, False)
    """
    return any(k in name for k in LOAD)


def is_inbound(name: str, labels: dict) -> bool:
    """Whether a rate counts what a service receives, not the calls it makes or its internal
    steps: a callee whose caller calls it less while the caller's own traffic holds (it fails
    before calling) was not starved by lost users. Only what is known to be outgoing or internal
    is excluded: an operation whose spans are client, producer or internal, and client-side
    request metrics; a service's entry spans as a whole, its server operations and any other
    rate count.

    >>> is_inbound("red.rate", {}), is_inbound("red.rate", {"operation": "GET /a", "span.kind": "server"})
    (True, True)
    >>> is_inbound("red.rate", {"operation": "POST", "span.kind": "client"})
    False
    >>> is_inbound("http.client.request.duration:rate", {}), is_inbound("orders_total:rate", {})
    (False, True)
    """
    if name == "red.rate" and labels.get("operation"):
        return labels.get("span.kind", "server") in ("server", "consumer", "unspecified")
    return not name.startswith(("http.client.", "rpc.client.", "db.client.", "messaging.client."))


def is_drop(name: str, value: float, expected: float) -> bool:
    """A throughput drop (evidence that travels from callers to callees): requests, log records or
    an application's own counters falling; a host's or process's processor, disk or network rates
    falling (when users stop coming, say) are their consequence, not lost traffic.

    >>> is_drop("red.rate", 1.0, 9.0), is_drop("orders_total:rate", 1.0, 9.0)
    (True, True)
    >>> is_drop("system.cpu.time:rate", 0.2, 0.4), is_drop("process.cpu.time:rate", 0.2, 0.4)
    (False, False)
    """
    if is_load(name) or name.startswith(HOST_PREFIXES):
        return False
    return (name in TRAFFIC or name.endswith(":rate")) and value < expected


def _adjust(weights: dict, edges: set[tuple]) -> dict:
    """Callee of another anomalous node: likelier cause (boost); caller of one: symptom (penalty)."""
    out = {}
    for node, w in weights.items():
        callees = any(p == node and c in weights and c != node for p, c in edges)
        callers = any(c == node and p in weights and p != node for p, c in edges)
        out[node] = w * (CALLER_PENALTY if callees else 1.0) * (CALLEE_BOOST if callers else 1.0)
    return out


def _reach(edges: set[tuple[str, str]]) -> dict[str, set[str]]:
    """Every service reachable from each service by following caller -> callee edges."""
    succ: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        succ[a].add(b)
    out = {}
    for start in list(succ):
        seen, todo = set(), [start]
        while todo:
            for nxt in succ.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        out[start] = seen - {start}
    return out


def cause(
    up: dict[str, float],
    down: dict[str, float],
    edges: set[tuple[str, str]],
    own: dict[str, float] | None = None,
) -> str | None:
    """The service to name: the deepest with latency/error-type evidence (``up``), or, when drops
    carry most of the evidence (``down``), the shallowest with a throughput drop; ties go to the
    larger weight.

    ``own`` is the part of ``up`` that is errors or new log templates. A service whose evidence is
    mostly that is explained only by a callee that fails too: a callee that merely got slower (on
    a loaded machine, say) does not make its caller answer 500 or log new messages, so both stay
    candidates and the weight decides.

    >>> cause({"web": 9.0, "api": 5.0, "db": 1.0}, {}, {("web", "api"), ("api", "db")})
    'db'
    >>> cause({}, {"web": 3.0, "db": 9.0}, {("web", "db")})
    'web'
    >>> cause({"db": 2.0}, {"web": 30.0, "db": 9.0}, {("web", "db")})  # an outage with a blip
    'web'
    >>> cause({"web": 34.0, "db": 15.0}, {}, {("web", "db")}, own={"web": 30.0})  # errors, a slow db
    'web'
    >>> cause({"web": 34.0, "db": 15.0}, {}, {("web", "db")}, own={"web": 30.0, "db": 9.0})
    'db'
    """
    reach, own = _reach(edges), own or {}

    def explained(s: str) -> bool:
        below = (reach.get(s, set()) - {s}) & set(up)
        if 2 * own.get(s, 0.0) > up[s]:  # mostly errors or new logs: only a failing callee explains
            return any(own.get(t, 0.0) > 0 for t in below)
        return bool(below)

    if up and sum(up.values()) >= sum(down.values()):
        deepest = [s for s in up if not explained(s)]
        return max(deepest or up, key=lambda s: (up[s], s))
    if down:
        above = {s for s in down for t in down if t != s and s in reach.get(t, set())}
        return max([s for s in down if s not in above] or down, key=lambda s: (down[s], s))
    return None


def rank_suspects(
    anoms: pd.DataFrame,
    op_edges: set[tuple],
    service_edges: set[tuple[str, str]],
    steps: set[tuple] | None = None,
) -> list[dict]:
    """Ranked suspects of one incident, the named cause first; ``op_edges`` holds ((caller
    service, operation), (callee service, operation)) pairs, ``service_edges`` (caller, callee),
    ``steps`` the (operation, step) pairs whose child only wraps part of its parent (an
    instrumentation library's internal span: Express's ``request handler``): it is never named, and
    what it carries counts for its operation."""
    per_service: dict[str, float] = defaultdict(float)
    up: dict[str, float] = defaultdict(float)
    down: dict[str, float] = defaultdict(float)
    own: dict[str, float] = defaultdict(float)
    per_op: dict[tuple[str, str], float] = defaultdict(float)
    evidence: dict[str, list[tuple[float, str, str]]] = defaultdict(list)
    attrs: dict[str, dict[str, str]] = {}
    for r in anoms.itertuples(index=False):
        w = weight(r.score)
        labels = dict(r.labels or {})
        per_service[r.service] += w
        if is_drop(r.name, r.value, r.expected):
            down[r.service] += w
        else:
            up[r.service] += w
            if evidence_kind({"name": r.name, "detector": getattr(r, "detector", "")}) in ("errors", "logs"):
                own[r.service] += w
        op = labels.get("operation") or labels.get("http.route", "")
        if op:
            per_op[(r.service, op)] += w
        elif labels and r.service not in attrs and not r.name.startswith(("red.", "log.", "latency.")):
            attrs[r.service] = labels
        evidence[r.service].append((w, r.name, r.explanation))
    edges = set(service_edges) | {(p[0], c[0]) for p, c in op_edges if p[0] != c[0]}
    adjusted = _adjust(dict(per_service), edges)
    for p, c in sorted(steps or ()):
        if c in per_op and p != c:  # a step's deviation is its operation's
            per_op[p] += per_op.pop(c)
    ops_adjusted = _adjust(dict(per_op), {(p, c) for p, c in op_edges if p[0] == c[0]})
    first = cause(dict(up), dict(down), edges, dict(own))
    out = []
    for svc in sorted(adjusted, key=lambda s: (s != first, -adjusted[s], s)):
        ops = sorted(
            ((w, op) for (s, op), w in ops_adjusted.items() if s == svc), key=lambda x: (-x[0], x[1])
        )
        ev = sorted(evidence[svc], key=lambda x: -x[0])[:3]
        out.append(
            {
                "service": svc,
                "operation": ops[0][1] if ops else "",
                "weight": round(adjusted[svc], 3),
                "attributes": attrs.get(svc, {}),
                "signals": sorted({n for _, n, _ in evidence[svc]}),
                "evidence": [e for _, _, e in ev if e],
            }
        )
    return out


def attribute_suspects(rows: list[tuple], limit: int = 3) -> list[dict]:
    """Attribute values that carry most of the excess latency or errors relative to their share of
    the traffic, from :meth:`.store.FlowStore.attribute_values` rows: ``share`` is the fraction of
    the window's excess (or errors) on spans with the value, ``lift`` that share over the value's
    share of spans.

    >>> attribute_suspects([("db.instance", "replica", 60, 9e9, 0, 100, 1e10, 0)])
    [{'key': 'db.instance', 'value': 'replica', 'explains': 'latency', 'share': 0.9, 'lift': 1.5}]
    """
    out = []
    for key, value, n, ex, errs, total_n, total_ex, total_err in rows:
        traffic = n / total_n if total_n else 0.0
        best = max(
            ("latency", ex / total_ex if total_ex > 0 else 0.0),
            ("errors", errs / total_err if total_err > 0 else 0.0),
            key=lambda x: x[1],
        )
        if traffic > 0 and best[1] >= 0.5 and best[1] / traffic >= 1.5:
            out.append({"key": key, "value": value, "explains": best[0], "share": round(best[1], 3),
                        "lift": round(best[1] / traffic, 2)})  # fmt: skip
    out.sort(key=lambda d: (-d["share"], -d["lift"], d["key"], d["value"]))
    return out[:limit]
