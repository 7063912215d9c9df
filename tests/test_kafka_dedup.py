"""Content deduplication in the ingester (client re-sends), against the real Tansu broker and chDB."""

from __future__ import annotations

import time
from typing import Any

import pytest
from forewarn.collector import ingest_metrics
from forewarn.collector.ingest import Ingester
from forewarn.collector.kafka_topics import ensure_topics
from kafka_broker import broker  # noqa: F401 - fixture
from test_kafka_ingest import (
    CrashBeforeCommit,
    RefusesWholeRangesThenCrashes,
    committed,
    count,
    kafka_settings,
    produce,
    running,
    unique_spans,
    wait_for,
)


def uid_counts(store: Any) -> dict[int, int]:
    rows = store.query(
        "SELECT toInt64(SpanAttributes['uid']) AS u, count() FROM otel_traces GROUP BY u"
    ).result_rows
    return {int(u): int(n) for u, n in rows}


def dropped_total() -> float:
    return ingest_metrics.DUPLICATES.labels("otlp_spans")._value.get()


def test_a_resent_request_is_stored_once_in_any_partition(settings, store, broker) -> None:  # noqa: F811
    s = kafka_settings(settings, broker.address)
    ensure_topics(s.kafka)
    a, b, c = unique_spans(3)
    before = dropped_total()
    # one round: a twice in partition 0 (same range) and once in partition 1, plus two poison copies
    produce(broker.address, "otlp_spans", [a, a, b, b"\xffjunk", b"\xffjunk"], partition=0)
    produce(broker.address, "otlp_spans", [a], partition=1)
    with running(s, store):
        wait_for(lambda: committed(s, "otlp_spans") == [5, 1], what="first round committed")
        assert uid_counts(store) == {0: 1, 1: 1}
        # later rounds: re-sends of a and b, in either partition, and a new request c
        produce(broker.address, "otlp_spans", [b, c], partition=1)
        produce(broker.address, "otlp_spans", [a], partition=0)
        wait_for(lambda: committed(s, "otlp_spans") == [6, 3], what="second round committed")
    assert uid_counts(store) == {0: 1, 1: 1, 2: 1}
    assert dropped_total() - before == 5  # a x3, b, the second poison record
    dead = store.query("SELECT partition, offset FROM forewarn_ingest_dead_letters").result_rows
    assert dead == [(0, 3)]
    plans = store.query(
        "SELECT partition, first_offset, dropped FROM forewarn_ingest_batches FINAL "
        "WHERE notEmpty(dropped) ORDER BY partition, first_offset"
    ).result_rows
    assert sorted(o for _p, _f, d in plans for o in d) == [0, 1, 1, 4, 5]  # p0: 1, 4, 5; p1: 0, 1
    assert {p for p, _f, _d in plans} == {0, 1}


def test_with_a_zero_window_identical_records_are_all_stored(settings, store, broker) -> None:  # noqa: F811
    s = kafka_settings(settings, broker.address, dedup_window_s=0)
    ensure_topics(s.kafka)
    (a,) = unique_spans(1)
    produce(broker.address, "otlp_spans", [a, a], partition=0)
    produce(broker.address, "otlp_spans", [a], partition=1)
    with running(s, store):
        wait_for(lambda: committed(s, "otlp_spans") == [2, 1], what="committed")
    assert uid_counts(store) == {0: 3}
    assert count(store, "forewarn_ingest_seen") == 0


def test_records_older_than_the_window_are_not_duplicates(settings, store, broker) -> None:  # noqa: F811
    s = kafka_settings(settings, broker.address, dedup_window_s=1)
    ensure_topics(s.kafka)
    (a,) = unique_spans(1)
    produce(broker.address, "otlp_spans", [a])
    with running(s, store):
        wait_for(lambda: committed(s, "otlp_spans")[0] == 1, what="first copy")
        time.sleep(1.2)
        produce(broker.address, "otlp_spans", [a])
        wait_for(lambda: committed(s, "otlp_spans")[0] == 2, what="second copy")
    assert uid_counts(store) == {0: 2}


class PlansButNeverInserts(CrashBeforeCommit):
    """Plans every range (recording its duplicates) and dies before inserting anything."""

    def _insert_range(self, r: Any, records: Any, isolate: bool = False) -> None:
        return None


def dataset() -> tuple[list[list[bytes]], int]:
    """Two partitions of unique requests where a few requests appear again, in the same and in the
    other partition, near and far from their first copy."""
    fresh = unique_spans(30)
    p0 = [*fresh[:15], fresh[3], fresh[20], fresh[3]]
    p1 = [*fresh[15:], fresh[0], fresh[16], fresh[14]]
    return [p0, p1], len(fresh)


@pytest.mark.parametrize(
    "crash", [PlansButNeverInserts, CrashBeforeCommit], ids=["before-insert", "before-commit"]
)
def test_a_replay_with_another_batch_size_keeps_the_decisions(settings, store, broker, crash) -> None:  # noqa: F811
    """A crash after the plans (with their duplicates) were written: the replay cuts the same ranges
    and drops the same records, so every request is stored exactly once."""
    parts, n = dataset()
    s = kafka_settings(settings, broker.address, batch_max_records=4)
    ensure_topics(s.kafka)
    for p, values in enumerate(parts):
        produce(broker.address, "otlp_spans", values, partition=p)
    sizes = [len(v) for v in parts]

    def planned() -> bool:
        rows = store.query(
            "SELECT partition, max(last_offset) FROM forewarn_ingest_batches GROUP BY partition"
        ).result_rows
        return sorted(rows) == [(p, sizes[p] - 1) for p in range(2)]

    with running(s, store, crash) as first:
        wait_for(planned, what="every range planned")
        if crash is CrashBeforeCommit:
            wait_for(lambda: count(store) == n, what="first pass inserted")
    assert first.ranges_inserted >= sum(sizes) // 4
    assert committed(s, "otlp_spans") == [-1001, -1001]
    drops = store.query("SELECT sum(length(dropped)) FROM forewarn_ingest_batches FINAL").result_rows[0][0]
    assert drops == 6
    s2 = kafka_settings(settings, broker.address, batch_max_records=50, group_id=s.kafka.group_id)
    with running(s2, store):
        wait_for(lambda: committed(s2, "otlp_spans") == sizes, what="replay committed")
    assert uid_counts(store) == dict.fromkeys(range(n), 1)


def test_an_isolated_range_drops_the_same_duplicates(settings, store, broker) -> None:  # noqa: F811
    s = kafka_settings(settings, broker.address, batch_max_records=100, retry_max_backoff_s=0.05)
    ensure_topics(s.kafka)
    fresh = unique_spans(6)
    produce(broker.address, "otlp_spans", [*fresh, fresh[1], fresh[5]])
    with running(s, store, RefusesWholeRangesThenCrashes) as first:
        wait_for(lambda: count(store) == 6, what="isolated inserts")
    assert first.ranges_inserted == 1
    plans = store.query(
        "SELECT first_offset, last_offset, isolated, dropped FROM forewarn_ingest_batches FINAL"
    )
    assert plans.result_rows == [(0, 7, 1, [6, 7])]
    with running(s, store):
        wait_for(lambda: committed(s, "otlp_spans")[0] == 8, what="replay committed")
    assert uid_counts(store) == dict.fromkeys(range(6), 1)


def test_a_copy_kept_by_another_member_of_the_group_is_dropped(settings, store, broker) -> None:  # noqa: F811
    """The seen rows are shared by the group: a later member drops a copy an earlier one kept; another
    group decides on its own records only."""
    s = kafka_settings(settings, broker.address)
    ensure_topics(s.kafka)
    (a,) = unique_spans(1)
    produce(broker.address, "otlp_spans", [a], partition=0)
    with running(s, store):
        wait_for(lambda: committed(s, "otlp_spans")[0] == 1, what="first copy")
    produce(broker.address, "otlp_spans", [a], partition=1)
    with running(s, store) as same_group:
        wait_for(lambda: committed(s, "otlp_spans") == [1, 1], what="copy in the other partition")
    assert same_group.ranges_inserted == 1 and uid_counts(store) == {0: 1}
    other = kafka_settings(settings, broker.address, group_id=s.kafka.group_id + "-other")
    with running(other, store):
        wait_for(lambda: committed(other, "otlp_spans") == [1, 1], what="the other group")
    drops = store.query(
        "SELECT group_id, partition, dropped FROM forewarn_ingest_batches FINAL WHERE notEmpty(dropped)"
    ).result_rows
    # the other group keeps one copy of its own (whether that lands again depends on its range's
    # token, which does not name the group: ClickHouse drops a token the first group already used)
    assert sorted(g for g, _p, _d in drops) == [s.kafka.group_id, other.kafka.group_id]
    assert (s.kafka.group_id, 1, [0]) in drops


def test_two_members_planning_copies_at_once_never_drop_both(settings, store) -> None:
    """Every interleaving of two members' lookup (then decision) and plan insert for two copies of
    one record, in different partitions: at worst both are kept, never both dropped."""
    from itertools import permutations

    from forewarn.collector.ingest import _Range
    from forewarn.collector.ingest_dedup import SeenStore, decide, digest

    h = digest(b"the same request")
    for n, order in enumerate(sorted(set(permutations("AABB")))):
        s = kafka_settings(settings, "127.0.0.1:1", group_id=f"race-{n}")
        member = {"A": Ingester(s, store), "B": Ingester(s, store)}
        seen = SeenStore(s.kafka.group_id, window_s=60)
        ranges = {"A": _Range("otlp_spans", 0, 10, 10), "B": _Range("otlp_spans", 1, 20, 20)}
        dropped: dict[str, set[int]] = {}
        for m in order:
            r = ranges[m]
            if m not in dropped:  # first step of a member: look up and decide
                known = seen.lookup(store, [(r.topic, h)])
                (dropped[m],) = decide([(r.topic, r.partition, [(r.first, h)])], known)
            else:  # second step: its plan is written, with the record if kept
                kept = [] if dropped[m] else [(r.first, h)]
                member[m]._write_plans([(r, frozenset(dropped[m]))], kept={r: kept})
        decisions = [bool(d) for d in dropped.values()]
        assert not all(decisions), order
        sequential = order[0] == order[1]  # one member finished before the other looked
        assert decisions.count(True) == (1 if sequential else 0), order
        # the one keeper, planning its range again (a stalled member), keeps it: its own seen row
        # is not another copy
        known = seen.lookup(store, [("otlp_spans", h)])
        for m, r in ranges.items():
            if sequential and not dropped[m]:
                assert decide([(r.topic, r.partition, [(r.first, h)])], known) == [set()], order
