"""Test telemetry for the flows tests: rows in the OTel exporter layout, inserted with
clickhouse-connect's parameterised insert (the collector's own conversion is tested elsewhere)."""

from __future__ import annotations

import logging
import random
import threading
import time
from datetime import UTC, datetime

from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import Observation
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

# A minute-aligned instant two hours ago: recent enough that the tables' TTL keeps the rows.
T0_MS = int(time.time() - 7200) // 60 * 60_000


def dt(ms: float) -> datetime:
    return datetime.fromtimestamp(ms / 1000.0, tz=UTC)


def insert_spans(client, db: str, spans: list[dict]) -> None:
    cols = [
        "Timestamp",
        "TraceId",
        "SpanId",
        "ParentSpanId",
        "SpanName",
        "SpanKind",
        "ServiceName",
        "Duration",
        "StatusCode",
        "SpanAttributes",
        "ScopeName",
    ]
    rows = [
        [
            dt(s["ms"]),
            s.get("trace", f"{random.getrandbits(128):032x}"),
            s.get("span", f"{random.getrandbits(64):016x}"),
            s.get("parent", ""),
            s["op"],
            s.get("kind", "Server"),
            s["service"],
            int(s["dur_ns"]),
            s.get("status", "Unset"),
            s.get("attrs", {}),
            s.get("scope", ""),
        ]
        for s in spans
    ]
    client.insert("otel_traces", rows, column_names=cols, database=db)


def insert_gauge(client, db: str, points: list[tuple[str, str, dict, float, float]]) -> None:
    """points: (service, metric, attributes, ms, value)."""
    rows = [[svc, m, attrs, dt(ms), dt(ms), v] for svc, m, attrs, ms, v in points]
    client.insert(
        "otel_metrics_gauge",
        rows,
        column_names=["ServiceName", "MetricName", "Attributes", "StartTimeUnix", "TimeUnix", "Value"],
        database=db,
    )


def insert_sum(client, db: str, points: list[tuple]) -> None:
    """points: (service, metric, attributes, start_ms, ms, value, temporality, monotonic)."""
    rows = [[svc, m, a, dt(st), dt(ms), v, temp, mono] for svc, m, a, st, ms, v, temp, mono in points]
    client.insert(
        "otel_metrics_sum",
        rows,
        column_names=[
            "ServiceName",
            "MetricName",
            "Attributes",
            "StartTimeUnix",
            "TimeUnix",
            "Value",
            "AggregationTemporality",
            "IsMonotonic",
        ],
        database=db,
    )


def insert_histogram(client, db: str, points: list[tuple]) -> None:
    """points: (service, metric, start_ms, ms, count, bucket_counts, bounds, temporality)."""
    rows = [[svc, m, {}, dt(st), dt(ms), n, 0.0, bc, b, temp] for svc, m, st, ms, n, bc, b, temp in points]
    client.insert(
        "otel_metrics_histogram",
        rows,
        column_names=[
            "ServiceName",
            "MetricName",
            "Attributes",
            "StartTimeUnix",
            "TimeUnix",
            "Count",
            "Sum",
            "BucketCounts",
            "ExplicitBounds",
            "AggregationTemporality",
        ],
        database=db,
    )


def insert_logs(client, db: str, logs: list[tuple[str, float, int, str]]) -> None:
    """logs: (service, ms, severity_number, body)."""
    rows = [[dt(ms), svc, sev, "ERROR" if sev >= 17 else "INFO", body] for svc, ms, sev, body in logs]
    client.insert(
        "otel_logs",
        rows,
        column_names=["Timestamp", "ServiceName", "SeverityNumber", "SeverityText", "Body"],
        database=db,
    )


def scenario(
    client, db: str, t0_ms: int, buckets: int, incident_at: int, step_ms: int = 10_000, seed: int = 7
) -> None:
    """Three services (web calls db; api alone) with steady traffic and logs, then from bucket
    ``incident_at`` a latency regression of db's ``SELECT orders`` (seen by web too), an error burst
    in web and a new error log template in db; plus a disk of ``api`` that fills up throughout (full about 18 minutes after the last bucket)."""
    rng = random.Random(seed)
    spans, logs, disk = [], [], []
    for b in range(buckets):
        bad = b >= incident_at
        for _ in range(20):
            t = t0_ms + b * step_ms + rng.random() * step_ms
            tid, sp = f"{rng.getrandbits(128):032x}", f"{rng.getrandbits(64):016x}"
            replica = rng.random() < 0.6  # the regression is on the replica only
            d_db = rng.lognormvariate(15, 0.2) * (8 if bad and replica else 1)
            err = rng.random() < (0.4 if bad else 0.0)
            spans.append(
                {
                    "ms": t,
                    "op": "GET /checkout",
                    "service": "web",
                    "dur_ns": d_db + 2e6,
                    "trace": tid,
                    "span": sp,
                    "status": "Error" if err else "Ok",
                }
            )
            spans.append(
                {
                    "ms": t,
                    "op": "SELECT orders",
                    "service": "db",
                    "dur_ns": d_db,
                    "trace": tid,
                    "parent": sp,
                    "attrs": {"db.instance": "replica" if replica else "primary"},
                }
            )
            spans.append(
                {"ms": t, "op": "GET /health", "service": "api", "dur_ns": rng.lognormvariate(14, 0.2)}
            )
            logs.append(
                ("web", t, 9, f"served checkout for user {rng.randint(1, 10_000)} in {rng.randint(2, 9)} ms")
            )
        logs.append(
            ("db", t0_ms + b * step_ms + 300, 9, f"checkpoint complete: wrote {rng.randint(10, 99)} buffers")
        )
        if bad:
            logs += [
                ("db", t0_ms + b * step_ms + 500 + i, 17, f"deadlock detected on table orders tx {b}{i}")
                for i in range(3)
            ]
        disk.append(
            (
                "api",
                "system.filesystem.utilization",
                {"device": "/dev/sda1"},
                t0_ms + b * step_ms + 100,
                0.5 + 0.003 * b + rng.random() * 0.0002,
            )
        )
    insert_spans(client, db, spans)
    insert_logs(client, db, logs)
    insert_gauge(client, db, disk)


class Services:
    """Three services' SDK providers exporting to the collector."""

    def __init__(self, endpoint: str):
        kw = {"endpoint": endpoint, "insecure": True}
        self.tracers, self.providers = {}, []
        for name in ("web", "db", "api"):
            tp = TracerProvider(resource=Resource.create({"service.name": name}))
            tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(**kw), schedule_delay_millis=200))
            self.tracers[name] = tp.get_tracer("e2e")
            self.providers.append(tp)
        self.lp = LoggerProvider(resource=Resource.create({"service.name": "db"}))
        self.lp.add_log_record_processor(
            BatchLogRecordProcessor(OTLPLogExporter(**kw), schedule_delay_millis=200)
        )
        self.log = logging.getLogger("e2e.db")
        self.log.propagate = False
        self.log.setLevel(logging.INFO)
        self.log.addHandler(LoggingHandler(logger_provider=self.lp))
        self.disk = 0.40
        reader = PeriodicExportingMetricReader(OTLPMetricExporter(**kw), export_interval_millis=500)
        self.mp = MeterProvider(resource=Resource.create({"service.name": "api"}), metric_readers=[reader])
        self.mp.get_meter("e2e").create_observable_gauge(
            "system.filesystem.utilization", callbacks=[self._disk], unit="1"
        )

    def _disk(self, _options):
        yield Observation(self.disk, {"system.device": "/dev/sda1"})

    def request(self, rng: random.Random, incident: bool, now: int) -> None:
        """One traced request at ``now`` (ns)."""
        d_db = int(rng.lognormvariate(15, 0.2) * (8 if incident else 1))
        web = self.tracers["web"].start_span("GET /checkout", kind=SpanKind.SERVER, start_time=now)
        if incident and rng.random() < 0.5:
            web.set_status(Status(StatusCode.ERROR, "upstream timeout"))
        db = self.tracers["db"].start_span("SELECT orders", context=set_span_in_context(web), kind=SpanKind.SERVER,
                                           start_time=now + 100_000)  # fmt: skip
        db.end(end_time=now + 100_000 + d_db)
        web.end(end_time=now + 2_000_000 + d_db)
        api = self.tracers["api"].start_span("GET /health", kind=SpanKind.SERVER, start_time=now)
        api.end(end_time=now + int(rng.lognormvariate(14, 0.2)))

    def start_traffic(self, seed: int, disk_step: float, period_s: float = 0.055) -> None:
        """Requests and logs in a thread until :meth:`stop_traffic`, a round every ``period_s``;
        set ``incident`` to break things (and fill the disk by ``disk_step`` per round).

        The rounds keep to their schedule, as users do: a round the thread could not run on
        time (a loaded machine starves it for a second or two) runs late with its own
        timestamps, so a stall of this thread reaches forewarn as late telemetry, not as lost
        traffic (with 1 s buckets, a stall emptied buckets and forewarn rightly paged the drop)."""
        self.incident, self._disk_step = False, disk_step
        self._stop = threading.Event()
        rng = random.Random(seed)

        def run() -> None:
            due = time.time()
            while not self._stop.is_set():
                while due <= time.time() and not self._stop.is_set():
                    self.round(rng, int(due * 1e9))
                    due += period_s
                time.sleep(max(0.0, due - time.time()))

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def round(self, rng: random.Random, now: int) -> None:
        """Five requests and a database checkpoint log at ``now`` (ns); in an incident, a
        deadlock error log and a step of the disk."""
        for k in range(5):
            self.request(rng, self.incident, now + k * 1_000_000)
        self.emit(logging.INFO, now, "checkpoint complete: wrote %d buffers", rng.randint(10, 99))
        if self.incident:
            self.emit(logging.ERROR, now, "deadlock detected on table orders tx %d", rng.randint(1, 10_000))
            self.disk = min(1.0, self.disk + self._disk_step)

    def emit(self, level: int, now: int, msg: str, *args) -> None:
        """A log record stamped ``now`` (ns), through the logging bridge."""
        record = self.log.makeRecord(self.log.name, level, __file__, 0, msg, args, None)
        record.created = now / 1e9
        self.log.handle(record)

    def stop_traffic(self) -> None:
        if getattr(self, "_thread", None) is not None:
            self._stop.set()
            self._thread.join(10)

    def shutdown(self) -> None:
        for p in self.providers:
            p.shutdown()
        self.lp.shutdown()
        self.mp.shutdown()
