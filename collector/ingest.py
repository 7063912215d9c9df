"""``forewarn ingest``: a Kafka consumer-group member that loads OTLP records into ClickHouse.

Exactly-once into ClickHouse on top of at-least-once Kafka:

1. Records are buffered per partition and cut into ranges ``[first, last]`` of offsets.
2. Before a range is inserted, it is recorded in ``forewarn_ingest_batches`` (the *plan*), with
   the offsets it drops because the group already kept an identical record (a client's re-send,
   see ``ingest_dedup``, which also argues why that never loses a record).
3. The range is inserted through the shared conversion with the deduplication token
   ``{topic}:{partition}:{first}-{last}``; records that are not OTLP go to the dead-letter table.
4. Only then is ``last + 1`` committed to Kafka, synchronously.

A crash between 2 and 4 replays from the committed offset; the new owner of the partition reads
the plans at or after that offset and cuts the replayed records at the same boundaries, dropping
the same records, so the tokens repeat over the same content and ClickHouse drops the second insert (within its deduplication window of 1000
inserts per table). While ClickHouse fails, the partitions are paused (bounded memory), the
range is retried with capped exponential backoff, and nothing is committed. A range that keeps
failing while the store is healthy (it answers, the tables exist) holds data the store refuses:
its records are then inserted one by one and the refused ones go to the dead-letter table, so
no record blocks its partition forever. That decision is recorded in the plan before the first
record is tried (``isolated``), so a replay after a crash isolates the range again under the same
per-record tokens instead of inserting it whole under another. A member that stalled (longer than half the session
timeout since its last poll) polls the group again before writing plans or starting another
insert, so it does not plan ranges of partitions the group may already have given to someone
else; a range planned before the stall is followed by the new owner, so its tokens still match.

>>> r = _Range("otlp_spans", 3, 100, 149)
>>> r.token
'otlp_spans:3:100-149'
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from forewarn.collector import ingest_metrics as m
from forewarn.collector import kafka_topics, kafka_wire
from forewarn.collector.ingest_dedup import SeenStore, decide, digest

from forewarn.config import Settings

log = logging.getLogger(__name__)
PLANS_TABLE = "forewarn_ingest_batches"
DEAD_LETTERS_TABLE = "forewarn_ingest_dead_letters"
MAX_DEAD_LETTER_BYTES = 1 << 20
ISOLATE_AFTER = 5  # failed inserts of one range, with the store healthy, before records are tried alone


@dataclass(frozen=True)
class _Range:
    topic: str
    partition: int
    first: int
    last: int

    @property
    def token(self) -> str:
        return f"{self.topic}:{self.partition}:{self.first}-{self.last}"


@dataclass
class _Partition:
    """What this member holds for one assigned partition."""

    topic: str
    partition: int
    records: list[tuple[int, bytes]] = field(default_factory=list)  # (offset, value), ascending
    nbytes: int = 0
    oldest: float = 0.0  # monotonic time the oldest buffered record arrived
    plans: dict[int, int] | None = None  # first -> last of ranges planned by anyone; None: not loaded
    isolated: set[int] = field(default_factory=set)  # first offsets of ranges inserted record by record
    dropped: dict[int, frozenset[int]] = field(default_factory=dict)  # first -> offsets planned as duplicates
    committed: int | None = None  # last offset committed (next to read)
    to_commit: int | None = None  # inserted, not yet committed

    def add(self, offset: int, value: bytes, now: float) -> None:
        if self.records and offset <= self.records[-1][0]:
            return  # a redelivery of something already buffered
        if not self.records:
            self.oldest = now
        self.records.append((offset, value))
        self.nbytes += len(value)

    def next_range(self, max_records: int, max_bytes: int, force: bool) -> tuple[_Range, bool] | None:
        """The next range to insert and whether it is new (needs a plan); None while incomplete."""
        if not self.records:
            return None
        first = self.records[0][0]
        planned_last = (self.plans or {}).get(first)
        if planned_last is not None:
            if self.records[-1][0] < planned_last:
                return None  # replaying a planned range: wait for all of it
            # the planned bounds, not the records seen: the token must be the one first inserted
            return _Range(self.topic, self.partition, first, planned_last), False
        full = len(self.records) >= max_records or self.nbytes >= max_bytes
        if not (full or force):
            return None
        n, size = 0, 0
        for _o, v in self.records:
            if n and (n >= max_records or size + len(v) > max_bytes):
                break
            n, size = n + 1, size + len(v)
        # never swallow the start of a range someone else planned
        later = [f for f in (self.plans or {}) if f > first]
        cut = min(later) if later else None
        if cut is not None:
            n = min(n, sum(1 for o, _ in self.records if o < cut))
        return _Range(self.topic, self.partition, first, self.records[n - 1][0]), True

    def take(self, r: _Range) -> list[tuple[int, bytes]]:
        n = sum(1 for o, _ in self.records if o <= r.last)
        out, self.records = self.records[:n], self.records[n:]
        self.nbytes -= sum(len(v) for _, v in out)
        self.oldest = time.monotonic() if self.records else 0.0
        if self.plans is not None:
            self.plans.pop(r.first, None)
        self.isolated.discard(r.first)
        self.dropped.pop(r.first, None)
        return out

    def planned(self, r: _Range) -> list[tuple[int, bytes]]:
        """The records of ``r`` its plan keeps (duplicates of earlier records left out)."""
        drop = self.dropped.get(r.first, frozenset())
        return [x for x in self.records if x[0] <= r.last and x[0] not in drop]


class StorageDown(Exception):
    """ClickHouse did not accept a write; the range is retried later, nothing is committed."""


class Ingester:
    """One consumer-group member. ``run(stop)`` blocks until ``stop`` is set, then leaves the group."""

    def __init__(self, settings: Settings, client: Any | None = None):
        self.settings = settings
        self.k = settings.kafka
        self.database = settings.storage.database
        self._signal = kafka_topics.signal_of_topic(self.k)
        self._client = client
        self._parts: dict[tuple[str, int], _Partition] = {}
        self._consumer: Any = None
        self._backoff = 0.0
        self._retry_at = 0.0
        self._paused = False
        self._last_lag = 0.0
        self._failures: dict[str, int] = {}  # token -> consecutive failed inserts with the store healthy
        self._polled_at = time.monotonic()  # last consume(): rebalance callbacks run inside it
        self._seen = SeenStore(self.k.group_id, self.k.dedup_window_s)
        self.ranges_inserted = 0

    # -- Kafka -------------------------------------------------------------------------------
    def consumer_config(self) -> dict[str, Any]:
        conf: dict[str, Any] = {
            **kafka_topics.base_config(self.k),
            "group.id": self.k.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",  # a new group loads what is there: nothing acked is skipped
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": self.k.session_timeout_ms,
            "heartbeat.interval.ms": max(250, self.k.session_timeout_ms // 4),
            "queued.max.messages.kbytes": max(1024, self.k.batch_max_bytes // 1024),
            "isolation.level": "read_committed",
            "error_cb": self._on_kafka_error,
        }
        conf.update(self.k.client)
        return conf

    def _on_kafka_error(self, err: Any) -> None:
        m.ERRORS.labels("kafka").inc()
        log.warning("Kafka consumer: %s", err.str())

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        for tp in partitions:
            self._parts[(tp.topic, tp.partition)] = _Partition(tp.topic, tp.partition)
        m.ASSIGNED.set(len(self._parts))
        log.info("assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions))

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        self._commit(consumer, only={(tp.topic, tp.partition) for tp in partitions})
        self._drop(partitions)

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        self._drop(partitions)  # someone else owns them now: its replay follows our plans

    def _drop(self, partitions: list[Any]) -> None:
        for tp in partitions:
            self._parts.pop((tp.topic, tp.partition), None)
            for gauge in (m.LAG, m.COMMITTED):
                with contextlib.suppress(KeyError):
                    gauge.remove(tp.topic, str(tp.partition))
        m.ASSIGNED.set(len(self._parts))
        log.info("revoked %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions))

    # -- storage -----------------------------------------------------------------------------
    def _storage(self) -> Any:
        if self._client is None:
            from forewarn.storage import open_storage

            try:
                self._client = open_storage(self.settings)
            except Exception as e:
                raise StorageDown(f"cannot open storage: {_short(e)}") from e
        return self._client

    def _load_plans(self, p: _Partition) -> None:
        first = p.records[0][0]
        try:
            rows = (
                self._storage()
                .query(
                    "SELECT first_offset, max(last_offset), max(isolated), "
                    f"argMax(dropped, (last_offset, planned_at)) FROM {PLANS_TABLE} "
                    "WHERE group_id = {g:String} "
                    "AND topic = {t:String} AND partition = {p:UInt32} AND first_offset >= {o:Int64} "
                    "GROUP BY first_offset",
                    parameters={"g": self.k.group_id, "t": p.topic, "p": p.partition, "o": first},
                )
                .result_rows
            )
        except Exception as e:
            raise StorageDown(f"cannot read batch plans: {_short(e)}") from e
        p.plans = {int(f): int(last) for f, last, _, _ in rows}
        p.isolated = {int(f) for f, _, iso, _ in rows if iso}
        p.dropped = {int(f): frozenset(int(o) for o in d) for f, _, _, d in rows if d}
        if p.plans:
            log.info(
                "%s[%d]: replaying %d planned range(s) from offset %d", p.topic, p.partition, len(rows), first
            )

    def _write_plans(
        self,
        planned: list[tuple[_Range, frozenset[int]]],
        isolated: bool = False,
        kept: dict[_Range, list[tuple[int, int]]] | None = None,
    ) -> None:
        """Record ranges with the offsets each drops as duplicates, before anything of them is
        inserted; ``kept`` (offset, digest) become the group's seen rows in the same insert."""
        kept = kept or {}
        rows = [
            [
                self.k.group_id,
                r.topic,
                r.partition,
                r.first,
                r.last,
                int(isolated),
                sorted(drop),
                [o for o, _h in kept.get(r, ())],
                [h for _o, h in kept.get(r, ())],
            ]
            for r, drop in planned
        ]
        settings = {"insert_distributed_sync": 1} if self.settings.storage.cluster else None
        try:
            self._storage().insert(
                PLANS_TABLE,
                rows,
                column_names=[
                    "group_id",
                    "topic",
                    "partition",
                    "first_offset",
                    "last_offset",
                    "isolated",
                    "dropped",
                    "kept_offsets",
                    "kept_hashes",
                ],
                settings=settings,
            )
        except Exception as e:
            raise StorageDown(f"cannot record batch plans: {_short(e)}") from e

    def _plan(self, due: list[tuple[_Partition, _Range, bool]]) -> None:
        """Plan the new ranges, deciding which records are duplicates of ones the group already
        kept; the plans' insert records the kept ones as seen (see ingest_dedup)."""
        new = [(p, r) for p, r, is_new in due if is_new]
        if not new:
            return
        if not self._seen.enabled:
            self._write_plans([(r, frozenset()) for _p, r in new])
            self._planned(new, [set() for _ in new])
            return
        digests = {r: [(o, digest(v)) for o, v in p.records if o <= r.last] for p, r, _ in due}
        wanted = ((r.topic, h) for _p, r in new for _o, h in digests[r])
        try:
            known = self._seen.lookup(self._storage(), wanted)
        except Exception as e:
            raise StorageDown(f"cannot look up records seen before: {_short(e)}") from e
        for p, r, is_new in due:  # ranges replayed in this round are planned: their copies count
            drop = p.dropped.get(r.first, frozenset())
            for o, h in digests[r] if not is_new else ():
                if o not in drop:
                    known.setdefault((r.topic, h), set()).add((r.partition, o))
        drops = decide([(r.topic, r.partition, digests[r]) for _p, r in new], known)
        kept = {
            r: [(o, h) for o, h in digests[r] if o not in d] for (_p, r), d in zip(new, drops, strict=True)
        }
        self._write_plans([(r, frozenset(d)) for (_p, r), d in zip(new, drops, strict=True)], kept=kept)
        self._planned(new, drops)

    @staticmethod
    def _planned(new: list[tuple[_Partition, _Range]], drops: list[set[int]]) -> None:
        """Hold what was just planned, so retries of this member follow the plans as replays do."""
        for (p, r), d in zip(new, drops, strict=True):
            if p.plans is not None:
                p.plans[r.first] = r.last
            if d:
                p.dropped[r.first] = frozenset(d)

    def _insert_range(self, r: _Range, records: list[tuple[int, bytes]], isolate: bool = False) -> None:
        from forewarn.collector.convert import insert_requests

        signal = self._signal[r.topic]
        payloads: list[bytes] = []
        dead: list[list[Any]] = []
        for offset, value in records:
            try:
                d = kafka_wire.decode(signal, value)
            except kafka_wire.RecordError as e:
                dead.append([r.topic, r.partition, offset, str(e)[:1000], value[:MAX_DEAD_LETTER_BYTES]])
                continue
            if d.rejected:
                m.REJECTED.labels(r.topic).inc(d.rejected)
            if d.payload:
                payloads.append(d.payload)
        client = self._storage()
        try:
            if payloads and not isolate:
                counts = insert_requests(
                    client, signal, payloads, database=self.database, dedup_token=r.token
                )
            elif payloads:
                counts = self._insert_one_by_one(client, signal, r, records, dead)
            else:
                counts = {}
            for table, n in counts.items():
                m.ROWS.labels(table).inc(n)
            if dead:
                client.insert(
                    DEAD_LETTERS_TABLE,
                    dead,
                    column_names=["topic", "partition", "offset", "error", "value"],
                    settings={"insert_deduplication_token": "dlq:" + r.token},
                )
        except StorageDown:
            raise
        except Exception as e:
            raise StorageDown(f"insert of {r.token} failed: {_short(e)}") from e
        if dead:
            m.POISON.labels(r.topic).inc(len(dead))
            log.warning(
                "%s: %d record(s) could not be stored as OTLP %s, kept in %s",
                r.token,
                len(dead),
                signal,
                DEAD_LETTERS_TABLE,
            )

    def _insert_one_by_one(
        self, client: Any, signal: str, r: _Range, records: list[tuple[int, bytes]], dead: list[list[Any]]
    ) -> dict[str, int]:
        """Isolates the records the store refuses while it accepts others. Deterministic: a replay
        of the range fails the same way, so the per-record tokens repeat."""
        from forewarn.collector.convert import insert_requests

        bad = {row[2] for row in dead}
        total: dict[str, int] = {}
        for offset, value in records:
            if offset in bad:
                continue
            payload = kafka_wire.decode(signal, value).payload
            try:
                counts = insert_requests(
                    client, signal, [payload], database=self.database, dedup_token=f"{r.token}#{offset}"
                )
            except Exception as e:
                if not self._storage_healthy(signal):
                    raise StorageDown(f"storage failed while isolating {r.token}: {_short(e)}") from e
                dead.append([r.topic, r.partition, offset, _short(e), value[:MAX_DEAD_LETTER_BYTES]])
                continue
            for table, n in counts.items():
                total[table] = total.get(table, 0) + n
        return total

    def _storage_healthy(self, signal: str) -> bool:
        """True when the store answers and every table of the signal exists: a range that still fails
        then carries data the store refuses, and retrying it forever would block its partition."""
        from forewarn.storage.schema import SIGNAL_TABLES

        try:
            rows = (
                self._storage()
                .query(
                    "SELECT count() FROM system.tables WHERE database = {db:String} AND name IN {t:Array(String)}",
                    parameters={"db": self.database, "t": list(SIGNAL_TABLES[signal])},
                )
                .result_rows
            )
        except Exception:
            return False
        return int(rows[0][0]) == len(SIGNAL_TABLES[signal])

    # -- the loop ----------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        from confluent_kafka import Consumer

        self._ensure_topics(stop)
        self._consumer = c = Consumer(self.consumer_config())
        c.subscribe(
            list(self._signal), on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        linger = self.k.batch_linger_ms / 1000
        try:
            while not stop.is_set():
                now = time.monotonic()
                wait = max(0.0, self._retry_at - now) if self._paused else linger
                if self._paused:  # partitions assigned meanwhile are paused too: memory stays bounded
                    c.pause(c.assignment())
                msgs = c.consume(num_messages=self.k.batch_max_records, timeout=min(max(wait, 0.01), 0.5))
                self._polled_at = time.monotonic()
                now = time.monotonic()
                for msg in msgs:
                    self._take(msg, now)
                if not self._paused or now >= self._retry_at:
                    self._flush(c, now)
                if now - self._last_lag >= 2.0:
                    self._update_lag(c)
                    self._last_lag = now
        finally:
            self._commit(c)
            c.close()  # leaves the group at once, so the others take over without waiting
            m.ASSIGNED.set(0)

    def _ensure_topics(self, stop: threading.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            try:
                kafka_topics.ensure_topics(self.k, timeout_s=10)
                return
            except kafka_topics.TopicError as e:
                if e.missing:
                    raise
                log.warning("%s; retrying in %.1fs", e, delay)
                stop.wait(delay)
                delay = min(delay * 2, self.k.retry_max_backoff_s)

    def _take(self, msg: Any, now: float) -> None:
        from confluent_kafka import KafkaError

        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                m.ERRORS.labels("kafka").inc()
                log.warning("Kafka: %s", err.str())
            return
        p = self._parts.get((msg.topic(), msg.partition()))
        if p is None:
            return  # revoked meanwhile; its new owner reads it again
        value = msg.value() or b""
        if p.committed is None and not p.records:
            p.committed = msg.offset()  # the first record after assignment sits at the committed offset
        m.RECORDS.labels(msg.topic()).inc()
        m.BYTES.labels(msg.topic()).inc(len(value))
        p.add(msg.offset(), value, now)

    def _flush(self, c: Any, now: float) -> None:
        """Insert every range that is due, then commit; on a storage failure pause and back off."""
        linger = self.k.batch_linger_ms / 1000
        started = time.perf_counter()
        try:
            due: list[tuple[_Partition, _Range, bool]] = []
            for p in self._parts.values():
                if not p.records:
                    continue
                if p.plans is None:
                    self._load_plans(p)
                force = now - p.oldest >= linger or self._paused
                got = p.next_range(self.k.batch_max_records, self.k.batch_max_bytes, force)
                if got is not None:
                    due.append((p, *got))
            if not due:
                if self._paused:
                    self._resume(c)
                self._commit(c)
                return
            new = [r for _p, r, is_new in due if is_new]
            if new and self._stale():
                return  # poll first (see the module docstring)
            self._plan(due)
            for i, (p, r, _) in enumerate(due):
                if i and self._stale():
                    break  # poll first; the remaining ranges are planned and wait their turn
                isolate = r.first in p.isolated
                if not isolate and self._failures.get(r.token, 0) >= ISOLATE_AFTER:
                    # before any record lands under its own token
                    self._write_plans([(r, p.dropped.get(r.first, frozenset()))], isolated=True)
                    p.isolated.add(r.first)
                    isolate = True
                try:
                    self._insert_range(r, p.planned(r), isolate)
                except StorageDown:
                    # only failures of a store that answers and has its tables count towards isolation
                    healthy = self._storage_healthy(self._signal[r.topic])
                    self._failures[r.token] = self._failures.get(r.token, 0) + 1 if healthy else 0
                    raise
                self._failures.pop(r.token, None)
                if r.first in p.dropped:
                    m.DUPLICATES.labels(r.topic).inc(len(p.dropped[r.first]))
                p.take(r)
                p.to_commit = r.last + 1
                m.BATCHES.labels(r.topic).inc()
                self.ranges_inserted += 1
        except StorageDown as e:
            self._storage_failed(c, e)
            return
        if self._paused:
            self._resume(c)
        self._commit(c)
        m.BATCH_SECONDS.observe(time.perf_counter() - started)

    def _stale(self) -> bool:
        """True when the last poll is so long ago that the group may have moved partitions away."""
        return time.monotonic() - self._polled_at > self.k.session_timeout_ms / 2000

    def _storage_failed(self, c: Any, e: StorageDown) -> None:
        m.ERRORS.labels("storage").inc()
        self._backoff = min(max(self._backoff * 2, 0.2), self.k.retry_max_backoff_s)
        self._retry_at = time.monotonic() + self._backoff
        log.warning("%s; retrying in %.1fs with consumption paused", e, self._backoff)
        if self._client is not None and not self.settings.storage_dsn.startswith("chdb:"):
            self._client = None  # reconnect next time; an embedded client stays valid
        if not self._paused:
            self._paused = True
            m.PAUSED.set(1)
            c.pause(c.assignment())

    def _resume(self, c: Any) -> None:
        self._paused, self._backoff = False, 0.0
        m.PAUSED.set(0)
        c.resume(c.assignment())
        log.info("storage accepts writes again; consuming")

    def _commit(self, c: Any, only: set[tuple[str, int]] | None = None) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        pending = [
            p for key, p in self._parts.items() if p.to_commit is not None and (only is None or key in only)
        ]
        if not pending:
            return
        offsets = [TopicPartition(p.topic, p.partition, p.to_commit) for p in pending]
        try:
            c.commit(offsets=offsets, asynchronous=False)
        except KafkaException as e:
            # rows are in ClickHouse under deterministic tokens: a later commit or a replay settles it
            m.ERRORS.labels("commit").inc()
            log.warning("offset commit failed (kept for the next round): %s", e)
            return
        for p in pending:
            p.committed, p.to_commit = p.to_commit, None
            m.COMMITTED.labels(p.topic, str(p.partition)).set(p.committed)

    def _update_lag(self, c: Any) -> None:
        from confluent_kafka import TopicPartition

        for p in list(self._parts.values()):
            try:
                _low, high = c.get_watermark_offsets(TopicPartition(p.topic, p.partition), cached=True)
            except Exception:
                continue
            seen = p.records[-1][0] + 1 if p.records else (p.to_commit or p.committed or 0)
            if p.committed is None:
                continue
            m.LAG.labels(p.topic, str(p.partition)).set(max(high, seen) - p.committed)


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:300]


def run_ingester(settings: Settings, stop: threading.Event) -> None:
    """Run one ingester with its /metrics endpoint and, for an embedded store, the query gateway."""
    from forewarn.storage import open_storage
    from forewarn.storage.client import is_embedded

    if settings.kafka.metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(settings.kafka.metrics_port, addr=settings.kafka.metrics_host)
    delay = 0.5
    while True:  # a store that is down at start is waited for, like one that fails later
        try:
            client = open_storage(settings)
            break
        except ConnectionError as e:
            if is_embedded(settings.storage_dsn):
                raise  # a local directory that cannot be opened will not fix itself
            log.warning("%s; retrying in %.1fs", e, delay)
            if stop.wait(delay):
                return
            delay = min(delay * 2, settings.kafka.retry_max_backoff_s)
    gateway = chhttp = None
    if is_embedded(settings.storage_dsn):
        from forewarn.clickhouse_http import serve_store
        from forewarn.storage.gateway import Gateway

        gateway = Gateway(settings.storage_dsn, settings.storage.database)
        try:
            chhttp = serve_store(settings)
        except OSError:
            gateway.close()
            client.close()
            raise
    try:
        Ingester(settings, client).run(stop)
    finally:
        if chhttp is not None:
            chhttp.stop()
        if gateway is not None:
            gateway.close()
        client.close()
