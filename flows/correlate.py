"""Correlation: anomalies that start together become one incident with ranked suspects.

An anomaly joins the open incident whose latest anomaly is within ``window_ms`` of it, else it
opens a new one (its id derives from the first anomaly, so a replay finds the same id). Suspects
are (service, operation) pairs ranked by how much of the deviation they carry (the sum over their
anomalies of ``-log10(1 - score)``, capped), then adjusted with the call graph from the traces:
when a caller and its callee are both anomalous, the callee is the likelier upstream cause
(latency and errors propagate from callee to caller), so the callee gains weight and the caller
loses some.

>>> import pandas as pd
>>> a = pd.DataFrame({"service": ["web", "db", "db"], "labels": [{}, {"operation": "SELECT"}, {}],
...                   "name": ["red.p95", "red.p95", "red.p99"], "score": [0.9999, 0.9999, 0.999],
...                   "explanation": ["", "", ""]})
>>> edges = {(("web", "GET /"), ("db", "SELECT"))}
>>> [s["service"] + ":" + s["operation"] for s in rank_suspects(a, edges)]
['db:SELECT', 'web:']
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict

import pandas as pd
from forewarn.flows.store import ms_of

CALLEE_BOOST, CALLER_PENALTY = 1.5, 0.5


def stable_id(*parts: object) -> int:
    """63-bit id from its parts (deterministic across processes, unlike ``hash``)."""
    key = "\x1f".join(map(str, parts)).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def weight(score: float) -> float:
    return min(-math.log10(max(1.0 - float(score), 1e-12)), 12.0)


def _adjust(weights: dict, edges: set[tuple]) -> dict:
    """Callee of another anomalous node: likelier cause (boost); caller of one: symptom (penalty)."""
    out = {}
    for node, w in weights.items():
        callees = any(p == node and c in weights and c != node for p, c in edges)
        callers = any(c == node and p in weights and p != node for p, c in edges)
        out[node] = w * (CALLER_PENALTY if callees else 1.0) * (CALLEE_BOOST if callers else 1.0)
    return out


def rank_suspects(anoms: pd.DataFrame, edges: set[tuple[tuple[str, str], tuple[str, str]]]) -> list[dict]:
    """Ranked suspects of one incident; ``edges`` holds ((caller service, operation), (callee
    service, operation)) pairs, which order services and, inside one, operations."""
    per_service: dict[str, float] = defaultdict(float)
    per_op: dict[tuple[str, str], float] = defaultdict(float)
    evidence: dict[str, list[tuple[float, str, str]]] = defaultdict(list)
    attrs: dict[str, dict[str, str]] = {}
    for r in anoms.itertuples(index=False):
        w = weight(r.score)
        labels = dict(r.labels or {})
        per_service[r.service] += w
        op = labels.get("operation", "")
        if op:
            per_op[(r.service, op)] += w
        elif labels and r.service not in attrs and not r.name.startswith(("red.", "log.", "latency.")):
            attrs[r.service] = labels
        evidence[r.service].append((w, r.name, r.explanation))
    adjusted = _adjust(dict(per_service), {(p[0], c[0]) for p, c in edges if p[0] != c[0]})
    ops_adjusted = _adjust(dict(per_op), {(p, c) for p, c in edges if p[0] == c[0]})
    out = []
    for svc in sorted(adjusted, key=lambda s: (-adjusted[s], s)):
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


def assign(anoms: list[dict], open_incidents: list[dict], run: str, window_ms: int) -> dict[int, dict]:
    """Set ``incident_id`` on each deviation anomaly (in time order); returns the touched incidents."""
    incidents = {int(i["incident_id"]): dict(i) for i in open_incidents}
    for inc in incidents.values():
        inc["_last_ms"] = ms_of(inc["updated_at"])
    touched: dict[int, dict] = {}
    for a in sorted(anoms, key=lambda a: (a["_ts_ms"], a["anomaly_id"])):
        if a["kind"] != "deviation":
            continue
        near = [i for i in incidents.values() if a["_ts_ms"] - i["_last_ms"] <= window_ms]
        if near:
            inc = max(near, key=lambda i: (i["_last_ms"], i["incident_id"]))
        else:
            iid = stable_id(run, a["anomaly_id"])
            inc = {
                "incident_id": iid,
                "run": run,
                "started_at": a["ts"],
                "_last_ms": a["_ts_ms"],
                "services": [],
                "anomalies": 0,
                "alert_labels": {},
                "resolved": False,
            }
            incidents[iid] = inc
        inc["_last_ms"] = max(inc["_last_ms"], a["_ts_ms"])
        inc["updated_at"] = a["ts"] if inc["_last_ms"] == a["_ts_ms"] else inc.get("updated_at", a["ts"])
        inc["services"] = sorted(set(inc["services"]) | {a["service"]})
        inc["anomalies"] = int(inc["anomalies"]) + 1
        a["incident_id"] = inc["incident_id"]
        touched[inc["incident_id"]] = inc
    return touched


def call_edges(
    client, database: str, services: list[str], start_ms: int, end_ms: int, limit: int = 200_000
) -> set[tuple[tuple[str, str], tuple[str, str]]]:
    """((caller service, operation), (callee service, operation)) pairs from parent/child spans
    of the window (a bounded sample)."""
    from forewarn.storage.schema import q

    if not services:
        return set()
    t = f"{q(database)}.{q('otel_traces')}"
    sql = f"""
        WITH spans AS (
            SELECT TraceId, SpanId, ParentSpanId, ServiceName, SpanName FROM {t}
            WHERE Timestamp >= fromUnixTimestamp64Milli({{a:Int64}}) AND Timestamp < fromUnixTimestamp64Milli({{b:Int64}})
              AND ServiceName IN {{svcs:Array(String)}}
            LIMIT {{lim:UInt64}})
        SELECT DISTINCT p.ServiceName, p.SpanName, c.ServiceName, c.SpanName
        FROM spans AS c INNER JOIN spans AS p ON c.TraceId = p.TraceId AND c.ParentSpanId = p.SpanId
        WHERE (c.ServiceName, c.SpanName) != (p.ServiceName, p.SpanName)"""
    rows = client.query(
        sql, parameters={"a": start_ms, "b": end_ms, "svcs": services, "lim": limit}
    ).result_rows
    return {((str(ps), str(po)), (str(cs), str(co))) for ps, po, cs, co in rows}


def attribute_suspects(
    client, database: str, service: str, operation: str, start_ms: int, end_ms: int, baseline_ms: int,
    limit: int = 3, max_spans: int = 200_000,
) -> list[dict]:  # fmt: skip
    """Span/resource attribute values of ``service`` (``operation``) that carry most of the
    incident's excess latency or errors, relative to their share of the traffic.

    Excess latency of a span is its duration above the baseline window's median; ``share`` is the
    fraction of the window's total excess (or errors) on spans with the value, ``lift`` that share
    divided by the value's share of spans. Values seen on fewer than 5 spans are ignored (ids).
    """
    from forewarn.storage.schema import q

    t = f"{q(database)}.{q('otel_traces')}"
    op = "AND SpanName = {op:String}" if operation else ""
    sql = f"""
        WITH (SELECT quantileExact(0.5)(Duration) FROM {t}
              WHERE ServiceName = {{svc:String}} {op}
                AND Timestamp >= fromUnixTimestamp64Milli({{b:Int64}}) AND Timestamp < fromUnixTimestamp64Milli({{a:Int64}})
             ) AS base_median,
        spans AS (
            SELECT greatest(toFloat64(Duration) - base_median, 0) AS excess, StatusCode = 'Error' AS err,
                   arrayConcat(arrayMap((k, v) -> (k, v), mapKeys(SpanAttributes), mapValues(SpanAttributes)),
                               arrayMap((k, v) -> (k, v), mapKeys(ResourceAttributes), mapValues(ResourceAttributes)))
                       AS kv
            FROM {t}
            WHERE ServiceName = {{svc:String}} {op}
              AND Timestamp >= fromUnixTimestamp64Milli({{a:Int64}}) AND Timestamp < fromUnixTimestamp64Milli({{e:Int64}})
            LIMIT {{lim:UInt64}})
        SELECT pair.1 AS key, pair.2 AS value, count() AS n, sum(excess) AS ex, sum(err) AS errs,
               (SELECT count() FROM spans) AS total_n, (SELECT sum(excess) FROM spans) AS total_ex,
               (SELECT sum(err) FROM spans) AS total_err
        FROM spans ARRAY JOIN kv AS pair
        WHERE pair.1 NOT IN ('service.name', 'telemetry.sdk.name', 'telemetry.sdk.language', 'telemetry.sdk.version')
        GROUP BY key, value HAVING n >= 5"""
    params = {
        "svc": service,
        "op": operation,
        "a": start_ms,
        "e": end_ms,
        "b": start_ms - baseline_ms,
        "lim": max_spans,
    }
    out = []
    for key, value, n, ex, errs, total_n, total_ex, total_err in client.query(
        sql, parameters=params
    ).result_rows:
        traffic = n / total_n if total_n else 0.0
        best = max(
            (("latency", ex / total_ex) if total_ex > 0 else ("latency", 0.0)),
            (("errors", errs / total_err) if total_err > 0 else ("errors", 0.0)),
            key=lambda x: x[1],
        )
        if traffic > 0 and best[1] >= 0.5 and best[1] / traffic >= 1.5:
            out.append({"key": key, "value": value, "explains": best[0], "share": round(best[1], 3),
                        "lift": round(best[1] / traffic, 2)})  # fmt: skip
    out.sort(key=lambda d: (-d["share"], -d["lift"], d["key"], d["value"]))
    return out[:limit]
