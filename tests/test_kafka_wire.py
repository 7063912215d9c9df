"""Kafka wire compatibility with the OpenTelemetry Collector: record values, keys and partitioning."""

from __future__ import annotations

import asyncio
import time

import pytest
from confluent_kafka import Producer
from forewarn.collector import kafka_wire
from forewarn.collector.exporter import ExportError
from forewarn.collector.kafka_exporter import KafkaExporter
from kafka_broker import broker, read_topic  # noqa: F401 - fixture
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from forewarn.config import load_settings

# recent, so the tables' TTL (30 days by default) keeps the rows
NOW_NS = (int(time.time()) - 3600) * 1_000_000_000


def traces_request(traces: int = 3, spans_per_trace: int = 2) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    for r in range(2):
        rs = req.resource_spans.add()
        a = rs.resource.attributes.add(key="service.name")
        a.value.string_value = f"svc-{r}"
        ss = rs.scope_spans.add()
        ss.scope.name = "lib"
        for t in range(traces):
            for s in range(spans_per_trace):
                sp = ss.spans.add(
                    name=f"op-{t}-{s}",
                    kind=2,
                    start_time_unix_nano=NOW_NS + s,
                    end_time_unix_nano=NOW_NS + 1000 + s,
                )
                sp.trace_id = bytes([t + 1]) * 16
                sp.span_id = bytes([r + 1, t, s]) + bytes(5)
                sp.parent_span_id = bytes(8) if s == 0 else bytes([r + 1, t, 0]) + bytes(5)
                at = sp.attributes.add(key="n")
                at.value.int_value = 2**62 + s
    return req


def metrics_request() -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    for r in range(3):
        rm = req.resource_metrics.add()
        a = rm.resource.attributes.add(key="host.name")
        a.value.string_value = f"h{r}"
        m = rm.scope_metrics.add().metrics.add(name="up")
        p = m.gauge.data_points.add(time_unix_nano=NOW_NS, as_double=1.5)
        ex = p.exemplars.add(as_int=3, trace_id=b"\x07" * 16, span_id=b"\x08" * 8)
        ex.time_unix_nano = 1
    return req


def logs_request() -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.add(key="service.name").value.string_value = "api"
    lr = rl.scope_logs.add().log_records.add(
        time_unix_nano=NOW_NS, severity_number=17, trace_id=b"\x01" * 16, span_id=b"\x02" * 8
    )
    lr.body.string_value = "boom"
    return req


@pytest.mark.parametrize("make", [traces_request, metrics_request, logs_request])
def test_json_encoding_round_trips_to_the_same_request(make) -> None:
    req = make()
    signal = {"ExportTraceServiceRequest": "traces", "ExportMetricsServiceRequest": "metrics"}.get(
        type(req).__name__, "logs"
    )
    wire = kafka_wire.encode(signal, req.SerializeToString(), "otlp_json")
    assert wire.startswith(b"{") and b"==" not in wire  # ids are hex, not base64
    assert type(req).FromString(kafka_wire.decode(signal, wire).payload) == req
    # protobuf records pass through untouched
    raw = req.SerializeToString()
    assert kafka_wire.decode(signal, kafka_wire.encode(signal, raw, "otlp_proto")).payload == raw


def test_poison_records_raise_record_error() -> None:
    for bad in (
        b"\xff\xff\xff",
        b"{not json",
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
    ):
        with pytest.raises(kafka_wire.RecordError):
            kafka_wire.decode("traces", bad)


def test_split_by_trace_keeps_every_span_once_with_its_resource() -> None:
    req = traces_request(traces=3, spans_per_trace=2)
    parts = kafka_wire.split_by_trace(req.SerializeToString())
    assert sorted(k for k, _ in parts) == [(bytes([t]) * 16).hex().encode() for t in (1, 2, 3)]
    seen = []
    for key, payload in parts:
        part = ExportTraceServiceRequest.FromString(payload)
        for rs in part.resource_spans:
            svc = rs.resource.attributes[0].value.string_value
            for ss in rs.scope_spans:
                assert ss.scope.name == "lib"
                for sp in ss.spans:
                    assert sp.trace_id.hex().encode() == key
                    seen.append((svc, sp.name))
    want = [
        (rs.resource.attributes[0].value.string_value, sp.name)
        for rs in req.resource_spans
        for sp in rs.scope_spans[0].spans
    ]
    assert sorted(seen) == sorted(want)


def test_split_by_resource_keys_are_stable_and_attribute_order_free() -> None:
    req = metrics_request()
    parts = kafka_wire.split_by_resource("metrics", req.SerializeToString())
    assert len(parts) == 3 and len({k for k, _ in parts}) == 3 and all(len(k) == 16 for k, _ in parts)
    a, b = ExportLogsServiceRequest(), ExportLogsServiceRequest()
    for req_, order in ((a, ("x", "y")), (b, ("y", "x"))):
        rl = req_.resource_logs.add()
        for k in order:
            rl.resource.attributes.add(key=k).value.string_value = k.upper()
    ka = kafka_wire.split_by_resource("logs", a.SerializeToString())[0][0]
    kb = kafka_wire.split_by_resource("logs", b.SerializeToString())[0][0]
    assert ka == kb


def test_fnv1a_32_test_vectors() -> None:
    # FNV-1a 32-bit reference vectors (Fowler/Noll/Vo test suite)
    vectors = {b"": 0x811C9DC5, b"a": 0xE40C292C, b"b": 0xE70C2DE5, b"foo": 0xA9F37ED7, b"foobar": 0xBF9CF968}
    for data, want in vectors.items():
        assert kafka_wire.fnv1a_32(data) == want, data


def test_librdkafka_fnv1a_partitioner_matches_sarama(broker) -> None:  # noqa: F811
    """Co-partitioning with Go collectors: librdkafka's fnv1a must pick Sarama's partition for every key."""
    from confluent_kafka.admin import AdminClient, NewTopic

    n = 7
    admin = AdminClient({"bootstrap.servers": broker.address})
    admin.create_topics([NewTopic("keys", n, 1)])["keys"].result(10)
    p = Producer({"bootstrap.servers": broker.address, "partitioner": "fnv1a_random", "acks": "all"})
    keys = [bytes([t]) * 16 for t in range(40)] + [f"trace-{i}".encode() for i in range(60)]
    keys = [k.hex().encode() if len(k) == 16 else k for k in keys]
    got: dict[bytes, int] = {}
    for k in keys:
        p.produce("keys", b"v", k, on_delivery=lambda err, msg: got.__setitem__(msg.key(), msg.partition()))
    assert p.flush(15) == 0
    assert got == {k: kafka_wire.sarama_partition(k, n) for k in keys}


def test_exporter_records_decode_as_standard_otlp_and_keep_trace_keys(broker, tmp_path) -> None:  # noqa: F811
    """What forewarn publishes is a plain Export*ServiceRequest per record, keyed by trace id when asked."""
    s = load_settings(
        overrides={
            "data_dir": str(tmp_path),
            "kafka": {"brokers": broker.address, "partitions": 3, "partition_traces_by_id": True},
        }
    )
    req = traces_request(traces=4, spans_per_trace=1)

    async def run() -> None:
        exp = KafkaExporter(s)
        await exp.start()
        assert exp.ready()
        await exp.export("traces", [req.SerializeToString()])
        await exp.export("logs", [logs_request().SerializeToString()])
        with pytest.raises(ExportError) as e:  # too large for a record: refused for good, clearly
            await exp.export("logs", [b"\x00" * (s.kafka.max_message_bytes + 1)])
        assert not e.value.retryable
        await exp.close()

    asyncio.run(run())
    records = read_topic(broker.address, "otlp_spans", 3, 4) + read_topic(broker.address, "otlp_logs", 3, 1)
    spans = [m for m in records if m.topic() == "otlp_spans"]
    logs = [m for m in records if m.topic() == "otlp_logs"]
    assert len(spans) == 4 and len(logs) == 1
    for m in spans:
        part = ExportTraceServiceRequest.FromString(m.value())
        ids = {sp.trace_id.hex() for rs in part.resource_spans for ss in rs.scope_spans for sp in ss.spans}
        assert ids == {m.key().decode()}
        assert m.partition() == kafka_wire.sarama_partition(m.key(), 3)
    assert ExportLogsServiceRequest.FromString(logs[0].value()) == logs_request()
    assert logs[0].key() is None


def test_exporter_answers_retryable_while_the_broker_is_stopped_and_recovers(broker, tmp_path) -> None:  # noqa: F811
    """A paused broker: exports fail within the delivery deadline with a retryable error, memory stays
    within the producer buffer (a full buffer is refused at once), and exports succeed after SIGCONT."""
    s = load_settings(
        overrides={
            "data_dir": str(tmp_path),
            "kafka": {
                "brokers": broker.address,
                "partitions": 1,
                "delivery_timeout_s": 1.5,
                "max_buffer_kbytes": 64,
            },
        }
    )
    payload = logs_request().SerializeToString()

    async def run() -> list[str]:
        exp = KafkaExporter(s)
        await exp.start()
        await exp.export("logs", [payload])
        broker.pause()
        outcomes = []
        try:
            t0 = time.monotonic()
            with pytest.raises(ExportError) as e:
                await exp.export("logs", [payload])
            assert e.value.retryable and time.monotonic() - t0 < 10
            outcomes.append("timeout")
            with pytest.raises(ExportError) as e:  # 64 KiB of buffer cannot take 100 KiB more
                await exp.export("logs", [b"\x0a\x00" + bytes(30_000)] * 4)
            assert e.value.retryable
            outcomes.append("buffer-full")
        finally:
            broker.resume()
        for _ in range(50):
            try:
                await exp.export("logs", [payload])
                outcomes.append("recovered")
                break
            except ExportError as e:
                last = str(e)
                await asyncio.sleep(0.2)
        else:
            outcomes.append(last)
        assert exp.ready()
        await exp.close()
        return outcomes

    outcomes = asyncio.run(run())
    assert outcomes == ["timeout", "buffer-full", "recovered"], outcomes
