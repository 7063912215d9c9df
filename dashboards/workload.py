"""A synthetic shop: four services, realistic traffic with a daily shape compressed in time, and
incidents injected on a schedule. It produces OTLP protobuf export requests (traces, logs,
metrics) for any stretch of event time, so the dashboards' tests and ``forewarn report`` chart real
OTLP data written through the collector's own conversion, and the demo drives the same model.

Topology: ``frontend`` (GET /, GET /checkout) calls ``checkout`` (POST /orders), which calls
``payments`` (POST /charge) and ``db`` (SELECT orders). An incident multiplies one service's
latency, raises its error ratio, or makes it log a new kind of error line.

>>> w = Workload(seed=1)
>>> batch = w.batch(1_700_000_000_000, 10_000)
>>> sorted(batch), batch["traces"].resource_spans[0].resource.attributes[0].key
(['logs', 'metrics', 'traces'], 'service.name')
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AggregationTemporality,
    Gauge,
    Metric,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

Kind = Literal["latency", "errors", "new_log"]
SERVICES = ("frontend", "checkout", "payments", "db")
# service -> (operation, typical latency ms, downstream services called)
OPERATIONS: dict[str, list[tuple[str, float, tuple[str, ...]]]] = {
    "frontend": [("GET /", 8.0, ()), ("GET /checkout", 15.0, ("checkout",))],
    "checkout": [("POST /orders", 12.0, ("payments", "db"))],
    "payments": [("POST /charge", 40.0, ())],
    "db": [("SELECT orders", 3.0, ())],
}
NORMAL_LOGS = {
    "frontend": "served {op} for user {n} in {ms} ms",
    "checkout": "order {n} created with {k} items",
    "payments": "charge {n} authorised by gateway in {ms} ms",
    "db": "query ok rows={k} in {ms} ms",
}
INCIDENT_LOGS = {
    "frontend": "upstream checkout unavailable: connect timeout after {ms} ms",
    "checkout": "cannot reserve stock for order {n}: lock wait timeout",
    "payments": "payment gateway timeout after {ms} ms for charge {n}",
    "db": "deadlock detected on table orders tx {n}",
}


@dataclass(frozen=True)
class Incident:
    """One injected fault: ``kind`` on ``service`` during ``[start_ms, start_ms + duration_ms)``."""

    kind: Kind
    service: str
    start_ms: int
    duration_ms: int
    factor: float = 8.0

    def active(self, t_ms: float) -> bool:
        return self.start_ms <= t_ms < self.start_ms + self.duration_ms

    @property
    def label(self) -> str:
        return f"{self.kind} on {self.service}"


@dataclass
class Call:
    """One request handled by ``service`` (a server span and its log line), with the calls it made."""

    service: str
    op: str
    start_ns: int
    end_ns: int
    failed: bool
    log: str
    severity: int
    children: list[Call] = field(default_factory=list)


@dataclass
class Workload:
    """Deterministic for a seed. ``rate`` is frontend requests per second at the daily mean;
    ``day_s`` is the length of one simulated day in event time (compressed); ``base_error`` the
    share of requests failing without an incident."""

    seed: int = 7
    rate: float = 4.0
    day_s: float = 3600.0
    environment: str = "demo"
    incidents: list[Incident] = field(default_factory=list)
    base_error: float = 0.002

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._requests: dict[str, int] = dict.fromkeys(SERVICES, 0)  # cumulative counters
        self._start_ms: dict[str, int] = {}

    def load(self, t_ms: float) -> float:
        """Traffic multiplier: a day with a trough at night and a peak in the afternoon."""
        phase = (t_ms / 1000.0 % self.day_s) / self.day_s
        return 1.0 + 0.5 * math.sin(2 * math.pi * (phase - 0.25))

    def _active(self, service: str, kind: Kind, t_ms: float) -> Incident | None:
        return next(
            (i for i in self.incidents if i.service == service and i.kind == kind and i.active(t_ms)), None
        )

    # -- one window of event time -----------------------------------------------------------------
    def calls(self, t0_ms: int, span_ms: int) -> list[Call]:
        """The frontend requests arriving in ``[t0_ms, t0_ms + span_ms)``, each with its call tree."""
        rng = self._rng
        out = []
        for _ in range(self._poisson(self.rate * self.load(t0_ms) * span_ms / 1000.0)):
            t = t0_ms + rng.random() * span_ms
            op = OPERATIONS["frontend"][0 if rng.random() < 0.4 else 1]
            out.append(self._call("frontend", op, int(t * 1e6)))
        return sorted(out, key=lambda c: c.start_ns)

    def cpu(self, service: str, t_ms: float) -> float:
        """The utilisation gauge of one service (follows load; an incident burns CPU)."""
        cpu = 0.25 + 0.1 * self.load(t_ms) + self._rng.random() * 0.03
        return min(1.0, cpu + (0.4 if self._active(service, "latency", t_ms) else 0.0))

    def batch(self, t0_ms: int, span_ms: int) -> dict[str, object]:
        """OTLP requests for ``[t0_ms, t0_ms + span_ms)``: ``traces``, ``logs``, ``metrics``."""
        spans: dict[str, list[Span]] = {s: [] for s in SERVICES}
        logs: dict[str, list[LogRecord]] = {s: [] for s in SERVICES}
        for call in self.calls(t0_ms, span_ms):
            self._to_proto(call, self._rng.getrandbits(128).to_bytes(16, "big"), b"", spans, logs)
        metrics = self._metrics(t0_ms + span_ms)
        return {
            "traces": ExportTraceServiceRequest(
                resource_spans=[
                    ResourceSpans(resource=self._resource(s), scope_spans=[ScopeSpans(scope=_SCOPE, spans=v)])
                    for s, v in spans.items()
                    if v
                ]
            ),
            "logs": ExportLogsServiceRequest(
                resource_logs=[
                    ResourceLogs(
                        resource=self._resource(s), scope_logs=[ScopeLogs(scope=_SCOPE, log_records=v)]
                    )
                    for s, v in logs.items()
                    if v
                ]
            ),
            "metrics": metrics,
        }

    def batches(
        self, start_ms: int, end_ms: int, step_ms: int = 10_000
    ) -> Iterator[tuple[int, dict[str, object]]]:
        for t in range(start_ms, end_ms, step_ms):
            yield t, self.batch(t, min(step_ms, end_ms - t))

    # -- internals --------------------------------------------------------------------------------
    def _poisson(self, lam: float) -> int:
        if lam > 50:  # normal approximation keeps big windows cheap
            return max(0, round(self._rng.gauss(lam, math.sqrt(lam))))
        k, p, limit = 0, 1.0, math.exp(-lam)
        while True:
            p *= self._rng.random()
            if p <= limit:
                return k
            k += 1

    def _call(self, service: str, op: tuple[str, float, tuple[str, ...]], start_ns: int) -> Call:
        rng = self._rng
        name, base_ms, downstream = op
        t_ms = start_ns / 1e6
        slow = self._active(service, "latency", t_ms)
        dur_ns = int(rng.lognormvariate(math.log(base_ms), 0.25) * (slow.factor if slow else 1.0) * 1e6)
        child_start = start_ns + 500_000
        children, failed = [], False
        for d in downstream:
            c = self._call(d, OPERATIONS[d][0], child_start)
            children.append(c)
            child_start = c.end_ns
            dur_ns += c.end_ns - c.start_ns
            failed |= c.failed
        failed |= rng.random() < (0.35 if self._active(service, "errors", t_ms) else self.base_error)
        self._requests[service] += 1
        bad = failed or self._active(service, "new_log", t_ms) is not None
        text = (INCIDENT_LOGS if bad else NORMAL_LOGS)[service].format(
            op=name, n=rng.randint(1, 99999), ms=round(dur_ns / 1e6), k=rng.randint(1, 9)
        )
        return Call(service, name, start_ns, start_ns + dur_ns, failed, text, 17 if bad else 9, children)

    def _to_proto(self, c: Call, trace_id: bytes, parent: bytes, spans: dict, logs: dict) -> None:
        span_id = self._rng.getrandbits(64).to_bytes(8, "big")
        for child in c.children:
            self._to_proto(child, trace_id, span_id, spans, logs)
        code = Status.STATUS_CODE_ERROR if c.failed else Status.STATUS_CODE_OK
        spans[c.service].append(
            Span(
                trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=c.op, kind=Span.SPAN_KIND_SERVER,
                start_time_unix_nano=c.start_ns, end_time_unix_nano=c.end_ns, status=Status(code=code),
                attributes=[_kv("http.route", c.op)],
            )
        )  # fmt: skip
        logs[c.service].append(
            LogRecord(
                time_unix_nano=c.end_ns, observed_time_unix_nano=c.end_ns, severity_number=c.severity,
                severity_text="ERROR" if c.severity >= 17 else "INFO", body=AnyValue(string_value=c.log),
                trace_id=trace_id, span_id=span_id,
            )
        )  # fmt: skip

    def _metrics(self, t_ms: int) -> ExportMetricsServiceRequest:
        out = []
        ns = int(t_ms * 1e6)
        for s in SERVICES:
            start = self._start_ms.setdefault(s, t_ms)
            cpu = self.cpu(s, t_ms)
            metrics = [
                Metric(
                    name="process.cpu.utilization", unit="1",
                    gauge=Gauge(data_points=[NumberDataPoint(time_unix_nano=ns, as_double=cpu)]),
                ),
                Metric(
                    name="app.requests", unit="{request}",
                    sum=Sum(
                        aggregation_temporality=AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE,
                        is_monotonic=True,
                        data_points=[
                            NumberDataPoint(
                                start_time_unix_nano=int(start * 1e6), time_unix_nano=ns, as_int=self._requests[s]
                            )
                        ],
                    ),
                ),
            ]  # fmt: skip
            out.append(
                ResourceMetrics(
                    resource=self._resource(s), scope_metrics=[ScopeMetrics(scope=_SCOPE, metrics=metrics)]
                )
            )
        return ExportMetricsServiceRequest(resource_metrics=out)

    def _resource(self, service: str) -> Resource:
        return Resource(
            attributes=[_kv("service.name", service), _kv("deployment.environment", self.environment)]
        )


_SCOPE = InstrumentationScope(name="forewarn.demo", version="1")


def _kv(k: str, v: str) -> KeyValue:
    return KeyValue(key=k, value=AnyValue(string_value=v))


def insert(client, database: str, batch: dict[str, object]) -> dict[str, int]:
    """Write one batch through the collector's conversion (the path OTLP requests take)."""
    from forewarn.collector.convert import insert_requests

    rows: dict[str, int] = {}
    for signal, req in batch.items():
        payload = req.SerializeToString()  # type: ignore[attr-defined]
        for table, n in insert_requests(client, signal, [payload], database=database).items():
            rows[table] = rows.get(table, 0) + n
    return rows
