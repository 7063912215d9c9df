"""The ingester against the real Tansu broker and chDB: inserts, commits, poison records, replays, outages."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from forewarn.collector import ingest_metrics
from forewarn.collector.ingest import Ingester, StorageDown
from forewarn.collector.kafka_topics import TopicError, ensure_topics
from forewarn.collector.kafka_wire import encode
from kafka_broker import broker  # noqa: F401 - fixture
from test_kafka_wire import logs_request, metrics_request, traces_request

from forewarn.config import Settings
from forewarn.storage import connect


def kafka_settings(settings: Settings, address: str, **kafka: Any) -> Settings:
    s = settings.model_copy(deep=True)
    s.kafka.brokers = address
    s.kafka.partitions = 2
    s.kafka.session_timeout_ms = 2000
    s.kafka.batch_linger_ms = 50
    s.kafka.retry_max_backoff_s = 0.5
    s.kafka.group_id = "g-" + settings.storage.database
    for k, v in kafka.items():
        setattr(s.kafka, k, v)
    return s


def produce(address: str, topic: str, values: list[bytes], partition: int = 0) -> None:
    p = Producer({"bootstrap.servers": address, "acks": "all", "enable.idempotence": True})
    for v in values:
        p.produce(topic, v, partition=partition)
    assert p.flush(15) == 0


def unique_spans(n: int, start: int = 0) -> list[bytes]:
    """n single-span requests, each with a distinct span id and `uid` attribute."""
    out = []
    for i in range(start, start + n):
        req = traces_request(traces=1, spans_per_trace=1)
        del req.resource_spans[1:]
        sp = req.resource_spans[0].scope_spans[0].spans[0]
        sp.span_id = (i + 1).to_bytes(8, "big")  # an all-zero id is invalid and would be dropped
        sp.attributes.add(key="uid").value.int_value = i
        out.append(req.SerializeToString())
    return out


@contextmanager
def running(s: Settings, _store: Any, ingester_cls: type[Ingester] = Ingester) -> Iterator[Ingester]:
    """The ingester on its own client (clients are not shared between threads)."""
    ing = ingester_cls(s, None)
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            ing.run(stop)
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    try:
        yield ing
    finally:
        stop.set()
        t.join(30)
    assert not errors, errors


def wait_for(cond: Callable[[], Any], timeout_s: float = 45.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def count(client: Any, table: str = "otel_traces") -> int:
    return int(client.query(f"SELECT count() FROM {table}").result_rows[0][0])


def committed(s: Settings, topic: str, partitions: int = 2) -> list[int]:
    c = Consumer({"bootstrap.servers": s.kafka.brokers, "group.id": s.kafka.group_id})
    try:
        return [
            tp.offset for tp in c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        ]
    finally:
        c.close()


def test_ingests_every_signal_and_encoding_then_commits(settings, store, broker) -> None:  # noqa: F811
    s = kafka_settings(settings, broker.address)
    ensure_topics(s.kafka)
    produce(broker.address, "otlp_spans", unique_spans(20))
    produce(
        broker.address,
        "otlp_metrics",
        [encode("metrics", metrics_request().SerializeToString(), "otlp_json")],
    )
    produce(broker.address, "otlp_logs", [logs_request().SerializeToString()], partition=1)
    with running(s, store):
        wait_for(lambda: count(store) == 20 and count(store, "otel_logs") == 1, what="rows")
        wait_for(lambda: count(store, "otel_metrics_gauge") == 3, what="gauge rows")
        wait_for(lambda: committed(s, "otlp_spans")[0] == 20, what="commit")
        assert ingest_metrics.COMMITTED.labels("otlp_spans", "0")._value.get() == 20
        wait_for(lambda: ingest_metrics.LAG.labels("otlp_spans", "0")._value.get() == 0, what="lag gauge")
    row = store.query(
        "SELECT SpanAttributes['uid'], ServiceName FROM otel_traces WHERE SpanAttributes['uid'] = '7'"
    )
    assert row.result_rows == [("7", "svc-0")]
    ex = store.query("SELECT `Exemplars.TraceId` FROM otel_metrics_gauge LIMIT 1").result_rows[0][0]
    assert ex == ["07" * 16]  # the JSON record's hex ids arrived as the same ids
    assert committed(s, "otlp_logs") == [-1001, 1]


def test_poison_record_is_dead_lettered_and_the_partition_moves_on(settings, store, broker) -> None:  # noqa: F811
    s = kafka_settings(settings, broker.address)
    ensure_topics(s.kafka)
    good = unique_spans(2)
    produce(broker.address, "otlp_spans", [good[0], b"\xff\x01garbage", b"{oops", good[1]])
    with running(s, store):
        wait_for(lambda: committed(s, "otlp_spans")[0] == 4, what="commit past the poison")
    assert count(store) == 2
    dead = store.query(
        "SELECT offset, error, value FROM forewarn_ingest_dead_letters ORDER BY offset"
    ).result_rows
    assert [d[0] for d in dead] == [1, 2]
    assert "protobuf" in dead[0][1] and "JSON" in dead[1][1]


class CrashBeforeCommit(Ingester):
    """Inserts but never commits, like a process killed between the insert and the commit."""

    def _commit(self, c: Any, only: Any = None) -> None:
        return None


class IgnorePlans(Ingester):
    """The negative control: an ingester that batches freely on replay instead of following the plans."""

    def _load_plans(self, p: Any) -> None:
        p.plans = {}


@pytest.mark.parametrize(
    "replayer", [Ingester, IgnorePlans], ids=["following-plans", "control-ignoring-plans"]
)
def test_replay_after_a_crash_between_insert_and_commit_adds_no_duplicates(
    settings,
    store,
    broker,  # noqa: F811
    replayer,
) -> None:
    n = 40
    s = kafka_settings(settings, broker.address, batch_max_records=3)
    ensure_topics(s.kafka)
    produce(broker.address, "otlp_spans", unique_spans(n))
    with running(s, store, CrashBeforeCommit) as first:
        wait_for(lambda: count(store) == n, what="first pass")
    assert first.ranges_inserted >= n // 3
    assert committed(s, "otlp_spans")[0] < 0  # nothing committed: everything will be replayed
    # a different batch size proves the replay follows the recorded plans, not luck
    s2 = kafka_settings(settings, broker.address, batch_max_records=16, group_id=s.kafka.group_id)
    with running(s2, store, replayer) as second:
        wait_for(lambda: committed(s2, "otlp_spans")[0] == n, what="replay committed")
    assert second.ranges_inserted >= 1
    if replayer is IgnorePlans:  # the test can see duplicates: free batching re-inserts under new tokens
        assert count(store) > n
        return
    assert second.ranges_inserted >= first.ranges_inserted
    assert count(store) == n
    assert store.query("SELECT uniqExact(SpanAttributes['uid']) FROM otel_traces").result_rows[0][0] == n
    # new records after the replay are batched freely again
    produce(broker.address, "otlp_spans", unique_spans(5, start=n))
    with running(s2, store):
        wait_for(lambda: committed(s2, "otlp_spans")[0] == n + 5, what="new records")
    assert count(store) == n + 5


class RefusesWholeRangesThenCrashes(CrashBeforeCommit):
    """A store that refuses every range inserted whole (while it answers and has its tables), so the
    range is isolated record by record; then the process dies before committing."""

    def _insert_range(self, r: Any, records: Any, isolate: bool = False) -> None:
        if not isolate:
            raise StorageDown(f"insert of {r.token} failed: refused")
        super()._insert_range(r, records, isolate)


def test_a_range_isolated_record_by_record_replays_record_by_record(settings, store, broker) -> None:  # noqa: F811
    """A crash after isolation must not re-insert the range whole under its own token."""
    s = kafka_settings(settings, broker.address, batch_max_records=100, retry_max_backoff_s=0.05)
    ensure_topics(s.kafka)
    produce(broker.address, "otlp_spans", unique_spans(12))
    with running(s, store, RefusesWholeRangesThenCrashes) as first:
        wait_for(lambda: count(store) == 12, what="isolated inserts")
    assert first.ranges_inserted == 1 and committed(s, "otlp_spans")[0] < 0
    plans = store.query("SELECT first_offset, last_offset, isolated FROM forewarn_ingest_batches FINAL")
    assert (0, 11, 1) in plans.result_rows
    with running(s, store):
        wait_for(lambda: committed(s, "otlp_spans")[0] == 12, what="replay committed")
    assert count(store) == 12


def test_storage_outage_pauses_consumption_and_loses_nothing(settings, store, broker, chdb_dsn) -> None:  # noqa: F811
    s = kafka_settings(settings, broker.address)
    ensure_topics(s.kafka)
    admin = connect(chdb_dsn, settings.storage.database)
    produce(broker.address, "otlp_spans", unique_spans(10))
    with running(s, store):
        wait_for(lambda: count(store) == 10, what="rows before the outage")
        admin.command("RENAME TABLE otel_traces TO otel_traces_away")
        failures = ingest_metrics.ERRORS.labels("storage")._value.get()
        produce(broker.address, "otlp_spans", unique_spans(10, start=10))
        produce(broker.address, "otlp_spans", unique_spans(10, start=20), partition=1)
        wait_for(lambda: ingest_metrics.ERRORS.labels("storage")._value.get() >= failures + 2, what="retries")
        assert ingest_metrics.PAUSED._value.get() == 1
        time.sleep(0.5)
        admin.command("RENAME TABLE otel_traces_away TO otel_traces")
        wait_for(lambda: committed(s, "otlp_spans") == [20, 10], what="commits after the outage")
    assert ingest_metrics.PAUSED._value.get() == 0
    assert count(store) == 30
    assert store.query("SELECT uniqExact(SpanAttributes['uid']) FROM otel_traces").result_rows[0][0] == 30
    admin.close()


def test_absent_topics_without_auto_creation_are_a_clear_error(settings, broker) -> None:  # noqa: F811
    s = kafka_settings(settings, broker.address, create_topics=False)
    with pytest.raises(TopicError, match=r"otlp_spans.*do not exist.*create_topics"):
        ensure_topics(s.kafka)
    s.kafka.create_topics = True
    assert ensure_topics(s.kafka) == {"otlp_spans": 2, "otlp_metrics": 2, "otlp_logs": 2}


def test_two_ingesters_share_partitions_and_take_over_without_duplicates(settings, store, broker) -> None:  # noqa: F811
    """Scale-out: members of one group split the partitions; when one leaves with inserted but
    uncommitted ranges, the other replays them under the same tokens."""
    n = 60
    s = kafka_settings(settings, broker.address, partitions=4, batch_max_records=4)
    ensure_topics(s.kafka)
    s_b = kafka_settings(
        settings, broker.address, partitions=4, batch_max_records=50, group_id=s.kafka.group_id
    )
    with running(s_b, store) as b:
        with running(s, store, CrashBeforeCommit) as a:
            wait_for(
                lambda: len(a._parts) and len(b._parts) and len(a._parts) + len(b._parts) == 12, what="split"
            )
            for p in range(4):
                produce(broker.address, "otlp_spans", unique_spans(n // 4, start=p * 1000), partition=p)
            wait_for(lambda: count(store) == n, what="rows from both members")
            assert a.ranges_inserted and b.ranges_inserted
        # a left the group without committing: b now owns everything and replays a's ranges
        wait_for(lambda: committed(s, "otlp_spans", 4) == [n // 4] * 4, what="b commits every partition")
    assert count(store) == n
    assert store.query("SELECT uniqExact(SpanAttributes['uid']) FROM otel_traces").result_rows[0][0] == n


def test_records_in_the_otel_collector_format_are_ingested(settings, store, broker) -> None:  # noqa: F811
    """What the Go collector's kafka exporter writes: a plain serialized request per record, keyed by
    trace id (partition_traces_by_id) or by a resource hash, partitioned by Sarama's FNV-1a."""
    from forewarn.collector.kafka_wire import sarama_partition, split_by_resource, split_by_trace

    s = kafka_settings(settings, broker.address)
    ensure_topics(s.kafka)
    p = Producer({"bootstrap.servers": broker.address, "partitioner": "fnv1a_random", "acks": "all"})
    for key, value in split_by_trace(traces_request(traces=3, spans_per_trace=2).SerializeToString()):
        p.produce("otlp_spans", value, key)
    for key, value in split_by_resource("logs", logs_request().SerializeToString()):
        p.produce("otlp_logs", value, key)
    p.produce("otlp_metrics", metrics_request().SerializeToString())  # unkeyed, the default
    assert p.flush(15) == 0
    with running(s, store):
        wait_for(lambda: count(store) == 12, what="keyed spans")
        wait_for(
            lambda: count(store, "otel_logs") == 1 and count(store, "otel_metrics_gauge") == 3, what="rest"
        )
    got = store.query(
        "SELECT TraceId, count() FROM otel_traces GROUP BY TraceId ORDER BY TraceId"
    ).result_rows
    assert got == [((bytes([t]) * 16).hex(), 4) for t in (1, 2, 3)]
    assert {sarama_partition((bytes([t]) * 16).hex().encode(), 2) for t in (1, 2, 3)} <= {0, 1}
