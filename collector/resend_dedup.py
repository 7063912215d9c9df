"""Exactly-once effect on the direct path: a client's re-send of a request that was already
committed is not stored again (``collector.dedup_window_s``, on by default).

Why: OTLP has no idempotency key. When the collector dies after a group commit's rows are durable
but before the clients got their answers, the SDKs send the same bytes again, to a fresh process.
So the identity of a request is its content, as on the Kafka path: blake2b-128 of the validated
request bytes (:func:`forewarn.collector.ingest_dedup.digest`).

How, for each group commit of one signal (one writer per signal, so one at a time):

1. Copies inside the batch: the first one is kept (a client that timed out and re-sent while its
   first send was still queued).
2. ``lookup``: which hashes ``forewarn_collector_seen`` knows within the window, and for each, the
   insert groups that planned it with the rows each group writes per table.
3. ``check`` (only for hashes found, i.e. re-sends): per table the request has rows in, is there a
   group that planned it whose rows are in the table, *all* of them? Every row the collector writes
   carries its group's id in the hidden column ``_forewarn_batch``, and a group writes one block per
   table, so this is a fact of the table itself, atomic with the rows. A request stored everywhere is
   skipped (its client is answered OK); stored nowhere, it is written like a new one; stored in
   some tables only (a crash or a failure between a metrics batch's tables), the missing tables
   are written, as a group of their own.
4. ``plan``: before any row is written, one seen row per request: (signal, hash, group id, rows the
   group writes per table). Then each group is inserted with its id on every row.

**Never a loss.** A request is skipped in a table only when rows of a group that contains it are
there, exactly as many as that group planned: the rows decide, the seen row only says where to
look, so a plan whose insert never happened (a crash in between) skips nothing. A group id is 128
bits (time in ms, then 80 random bits), so two groups never share one. A failed lookup, check or
plan stores the request anyway: at worst a duplicate.

**At worst a duplicate**, when: a lookup or check fails; a plan write failed and the collector then
died after the rows but before answering; a group's insert into one table was cut between two of
its parts (rows of one request spanning several days' partitions: the parts commit one by one) or
its rows were later removed (TTL, a DELETE), so the count no longer matches and the re-send is
written in full; two collectors sharing a store get copies of one request in the same few
milliseconds; or the copies are further apart than the window.

**Identical requests are one.** Two byte-identical requests within the window, from different
clients or one client sending twice on purpose, are stored once. Spans, points and records carry
their own ids and nanosecond timestamps, so identical bytes are the same telemetry in practice.

>>> groups = plan_groups([b"a", b"b", b"a", b"c"], verdicts={1: set(), 3: {"t2"}}, tables_of={3: {"t1", "t2"}})
>>> [(g.tables, g.indices) for g in groups]  # 2 is a copy of 0; 1 is stored; 3 lacks t2 only
[(None, [0]), (frozenset({'t2'}), [3])]
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from forewarn.collector import telemetry as m
from forewarn.collector.convert import count_rows, insert_requests, survey
from forewarn.collector.exporter import short_error as _short
from forewarn.collector.ingest_dedup import LOOKUP_CHUNK, digest

from forewarn.storage.schema import q
from forewarn.storage.tables import BATCH_COLUMN, COLLECTOR_SEEN

log = logging.getLogger(__name__)

Candidates = list[tuple[int, dict[str, int]]]  # (group id, rows it writes per table)


def new_group_id() -> int:
    """A UInt128: milliseconds since the epoch, then 80 random bits (time-ordered, never repeated)."""
    return (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)


@dataclass
class Group:
    """Requests inserted together, into ``tables`` (None: every table they have rows in)."""

    indices: list[int]
    tables: frozenset[str] | None = None
    id: int = field(default_factory=new_group_id)


def plan_groups(
    payloads: Sequence[bytes],
    verdicts: Mapping[int, set[str]],
    tables_of: Mapping[int, set[str]],
    hashes: Sequence[int] | None = None,
) -> list[Group]:
    """Insert groups for a batch. ``verdicts`` maps the index of a re-sent request to the tables it
    still lacks (empty: stored already); ``tables_of`` to all tables it has rows in."""
    hashes = hashes if hashes is not None else [digest(p) for p in payloads]
    fresh = Group([])
    partial: dict[frozenset[str], Group] = {}
    seen: set[int] = set()
    for i, h in enumerate(hashes):
        if h in seen:
            continue  # a copy inside the batch: the first one is stored
        seen.add(h)
        lacking = verdicts.get(i)
        if lacking is None or lacking == tables_of.get(i):
            fresh.indices.append(i)
        elif lacking:
            key = frozenset(lacking)
            partial.setdefault(key, Group([], key)).indices.append(i)
    return [g for g in (fresh, *partial.values()) if g.indices]


class SeenFilter:
    """Hashes planned within the window, as a Bloom filter: a hash it does not hold was not planned,
    so the lookup query is skipped. Complete only when no other process plans into the store (an
    embedded chDB store is locked by its one process); loaded from the seen table on start.

    Two generations of ``bits`` bits each, the current one replaced every window: a hash added
    less than a window ago is always in one of them (no false negatives); a false positive only
    costs the lookup that would have run anyway. 4 MiB per generation: about 1 % false positives
    at 5 million hashes per window.

    >>> f = SeenFilter(window_s=60)
    >>> f.add([123 << 90, 7])
    >>> f.might_hold(123 << 90), f.might_hold(7), f.might_hold(8)
    (True, True, False)
    """

    K = 4  # bit positions per hash, from disjoint slices of the (uniform) blake2b digest

    def __init__(self, window_s: float, bits: int = 1 << 25, now: Callable[[], float] = time.monotonic):
        import numpy as np

        self._np = np
        self.bits = bits
        self.window_s = window_s
        self._now = now
        self._lock = threading.Lock()
        self._current = np.zeros(bits // 8, dtype=np.uint8)
        self._previous = np.zeros(bits // 8, dtype=np.uint8)
        self._since = now()

    def _positions(self, h: int) -> list[int]:
        width = (self.bits - 1).bit_length()
        return [(h >> (width * i)) & (self.bits - 1) for i in range(self.K)]

    def _rotate(self) -> None:
        if self._now() - self._since >= self.window_s:
            self._previous, self._current = self._current, self._previous
            self._current[:] = 0
            self._since = self._now()

    def add(self, hashes: Iterable[int]) -> None:
        with self._lock:
            self._rotate()
            for h in hashes:
                for p in self._positions(h):
                    self._current[p >> 3] |= 1 << (p & 7)

    def might_hold(self, h: int) -> bool:
        with self._lock:
            self._rotate()
            pos = self._positions(h)
            return all(self._current[p >> 3] & (1 << (p & 7)) for p in pos) or all(
                self._previous[p >> 3] & (1 << (p & 7)) for p in pos
            )


class ResendDedup:
    """Inserts group commits so that requests stored before (within the window) are not stored again.

    With ``sole_writer`` (an embedded store: no other process plans into it) a :class:`SeenFilter`
    loaded by :meth:`load` spares the lookup query for requests never planned, the common case.
    """

    def __init__(self, database: str, window_s: float, sole_writer: bool = False):
        self.database = database
        self.window_ms = int(window_s * 1000)
        self.sole_writer = sole_writer
        self.filter: SeenFilter | None = None

    @property
    def enabled(self) -> bool:
        return self.window_ms > 0

    def load(self, client: Any) -> None:
        """Fill the filter with the hashes planned within the window (a sole writer's only);
        without it (a failed load) every batch is looked up."""
        if not (self.enabled and self.sole_writer):
            return
        f = SeenFilter(self.window_ms / 1000)
        try:
            rows = client.query(
                f"SELECT DISTINCT hash FROM {q(self.database)}.{q(COLLECTOR_SEEN.name)} "
                "WHERE seen_at >= now64(3) - toIntervalMillisecond({w:UInt64})",
                parameters={"w": self.window_ms},
            ).result_rows
        except Exception as e:
            m.DEDUP_ERRORS.labels("load").inc()
            log.warning("cannot load the requests planned before; every batch is looked up: %s", _short(e))
            return
        f.add(int(r[0]) for r in rows)
        self.filter = f

    def insert(self, client: Any, signal: str, payloads: Sequence[bytes]) -> dict[str, int]:
        """Make every payload durable, each at most once within the window; rows written per table."""
        if not self.enabled:
            return insert_requests(client, signal, payloads, database=self.database)
        hashes = [digest(p) for p in payloads]
        unique = _firsts(hashes)
        f = self.filter
        maybe = [h for _i, h in unique if f is None or f.might_hold(h)]
        found = self._lookup(client, signal, maybe) if maybe else {}
        hits = {i: found[h] for i, h in unique if h in found}
        tables_of = {i: _tables(signal, payloads[i]) for i in hits}
        verdicts = self._check(client, hits, tables_of)
        groups = plan_groups(payloads, verdicts, tables_of, hashes)
        self._count(signal, hashes, hits, verdicts, tables_of)
        planned = [(g, survey(signal, [payloads[i] for i in g.indices])) for g in groups]
        self._plan(client, signal, hashes, [(g, _rows(counts, g.tables)) for g, (counts, _c) in planned])
        if f is not None:
            f.add(hashes[i] for g in groups for i in g.indices)
        written: dict[str, int] = {}
        for g, surveyed in planned:
            counts = insert_requests(
                client,
                signal,
                [payloads[i] for i in g.indices],
                database=self.database,
                batch=g.id,
                tables=g.tables,
                surveyed=surveyed,
            )
            for t, n in counts.items():
                written[t] = written.get(t, 0) + n
        return written

    def _lookup(self, client: Any, signal: str, hashes: Iterable[int]) -> dict[int, Candidates]:
        """hash -> the groups that planned it within the window; empty when the lookup fails."""
        wanted = sorted(set(hashes))
        found: dict[int, dict[int, dict[str, int]]] = {}
        try:
            for i in range(0, len(wanted), LOOKUP_CHUNK):
                # bound as Array(UInt128): a literal this large would be read as a Float64
                rows = client.query(
                    f"SELECT hash, batch, rows FROM {q(self.database)}.{q(COLLECTOR_SEEN.name)} "
                    "WHERE signal = {s:String} AND hash IN {h:Array(UInt128)} "
                    "AND seen_at >= now64(3) - toIntervalMillisecond({w:UInt64})",
                    parameters={"s": signal, "h": wanted[i : i + LOOKUP_CHUNK], "w": self.window_ms},
                ).result_rows
                for h, batch, planned in rows:
                    found.setdefault(int(h), {})[int(batch)] = {str(k): int(v) for k, v in planned.items()}
        except Exception as e:  # durability first: without the lookup, everything is stored
            m.DEDUP_ERRORS.labels("lookup").inc()
            log.warning(
                "re-send lookup failed, storing the batch as new (at worst a duplicate): %s", _short(e)
            )
            return {}
        return {h: list(groups.items()) for h, groups in found.items()}

    def _check(
        self, client: Any, hits: Mapping[int, Candidates], tables_of: Mapping[int, set[str]]
    ) -> dict[int, set[str]]:
        """For each re-sent request, the tables that do not hold all rows of a group that planned it."""
        wanted: dict[str, dict[int, int]] = {}  # table -> group -> rows it planned there
        for i, candidates in hits.items():
            for batch, planned in candidates:
                for t in tables_of[i]:
                    if planned.get(t):
                        wanted.setdefault(t, {})[batch] = planned[t]
        complete: dict[str, set[int]] = {}
        for table, planned_rows in wanted.items():
            try:
                rows = client.query(
                    f"SELECT {q(BATCH_COLUMN)}, count() FROM {q(self.database)}.{q(table)} "
                    f"WHERE {q(BATCH_COLUMN)} IN {{b:Array(UInt128)}} GROUP BY {q(BATCH_COLUMN)}",
                    parameters={"b": sorted(planned_rows)},
                ).result_rows
            except Exception as e:  # unknown: treated as not stored
                m.DEDUP_ERRORS.labels("check").inc()
                log.warning(
                    "re-send check on %s failed, storing again (at worst a duplicate): %s", table, _short(e)
                )
                continue
            complete[table] = {int(b) for b, n in rows if int(n) == planned_rows.get(int(b))}
        return {
            i: {
                t
                for t in tables_of[i]
                if not any(planned.get(t) and b in complete.get(t, ()) for b, planned in candidates)
            }
            for i, candidates in hits.items()
        }

    def _plan(
        self, client: Any, signal: str, hashes: Sequence[int], planned: list[tuple[Group, dict[str, int]]]
    ) -> None:
        """The seen rows of every request about to be inserted, durable before their rows."""
        data = [[signal, hashes[i], g.id, rows] for g, rows in planned for i in g.indices]
        if not data:
            return
        try:
            client.insert(
                COLLECTOR_SEEN.name,
                data,
                column_names=["signal", "hash", "batch", "rows"],
                database=self.database,
            )
        except Exception as e:  # the rows are still written: a later re-send may be a duplicate
            m.DEDUP_ERRORS.labels("plan").inc()
            log.warning("re-send plan not written, storing anyway (at worst a duplicate): %s", _short(e))

    @staticmethod
    def _count(
        signal: str,
        hashes: Sequence[int],
        hits: Mapping[int, Candidates],
        verdicts: Mapping[int, set[str]],
        tables_of: Mapping[int, set[str]],
    ) -> None:
        unique = len(set(hashes))
        if unique < len(hashes):
            m.RESENDS.labels(signal, "same_batch").inc(len(hashes) - unique)
        outcomes: dict[str, int] = {}
        for i in hits:
            lacking = verdicts.get(i, tables_of[i])
            outcome = "skipped" if not lacking else "stored" if lacking == tables_of[i] else "completed"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            m.RESENDS.labels(signal, outcome).inc()
        if outcomes.get("skipped") or outcomes.get("completed"):
            log.info(
                "%s: %d re-sent request(s) already stored, not stored again; %d partly stored, completed",
                signal,
                outcomes.get("skipped", 0),
                outcomes.get("completed", 0),
            )


def _firsts(hashes: Sequence[int]) -> list[tuple[int, int]]:
    """(index, hash) of the first occurrence of each hash."""
    out: dict[int, int] = {}
    for i, h in enumerate(hashes):
        out.setdefault(h, i)
    return [(i, h) for h, i in out.items()]


def _rows(counts: Mapping[str, int], tables: frozenset[str] | None) -> dict[str, int]:
    """Rows the group writes per table (only tables it writes)."""
    return {t: n for t, n in counts.items() if n and (tables is None or t in tables)}


def _tables(signal: str, payload: bytes) -> set[str]:
    return {t for t, n in count_rows(signal, [payload]).items() if n}
