"""Content deduplication for ``forewarn ingest``: a record identical to one the group already kept
(within ``kafka.dedup_window_s``) is not stored again.

Why: OTLP has no idempotency key. When the collector dies after the broker stored a request's
record but before the client got its answer, the SDK sends the same bytes again, and the
collector publishes the same bytes again, perhaps to another partition owned by another
ingester. The identity of a re-send is therefore its content: blake2b-128 of the record value
(a collision between different records is about as likely as a disk returning wrong bytes).

How, for each *new* range (one that has no plan yet), in this order:

1. ``lookup``: which of its hashes the group already *kept* in a planned range, at a position
   (topic, partition, offset) other than the record's own, within the window
   (``forewarn_ingest_seen``).
2. ``decide``: a record is dropped if its hash was found there, or if an earlier record of the
   same round (same range or another range planned together) already carries it; otherwise kept.
3. The plan of the range is written with the offsets it drops (``forewarn_ingest_batches.dropped``)
   and the (offset, hash) of those it keeps; a materialized view turns the latter into seen rows
   in the same insert, so a seen row never exists without the plan that keeps its record.

A replay follows the plan: it never decides again, so it inserts the same records under the same
token and ClickHouse drops the repeated insert. Isolated ranges and dead letters work on the kept
records only, so the decision holds for them too.

**Never a loss.** A seen row is written only with the plan that keeps its record, and a planned
range is always inserted in the end (its offsets are committed only after its insert, and every
replay follows its plan). So a record is dropped only when another copy of it is kept by a plan
that is already durable, and that copy will be stored. Two copies can therefore never drop each
other, whatever the timing; the rows a record's own range wrote (its own position) never count.

**At worst a duplicate.** Two ingesters planning two copies at the same moment may both look up
before either wrote its plan; both keep their copy. The window for that is the few milliseconds
between a lookup and the plan's insert. A stalled member planning a range that the
group already gave to someone else is the other (pre-existing) source; see ``ingest.py``.

>>> a, b = digest(b"request"), digest(b"other")
>>> ranges = [("otlp_spans", 0, [(10, a), (11, b), (12, a)]), ("otlp_spans", 1, [(7, b)])]
>>> decide(ranges, known={})  # within the round: the first copy wins
[{12}, {7}]
>>> decide(ranges, known={("otlp_spans", b): {(3, 99)}})  # b was kept by partition 3 earlier
[{11, 12}, {7}]
>>> decide(ranges, known={("otlp_spans", a): {(0, 10)}})  # its own position is not a copy
[{12}, {7}]
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

SEEN_TABLE = "forewarn_ingest_seen"
LOOKUP_CHUNK = 2000  # hashes per lookup query: its parameters stay far below the URI limit of HTTP


def digest(value: bytes) -> int:
    """The identity of a record value, as the UInt128 stored in ``forewarn_ingest_seen``."""
    return int.from_bytes(hashlib.blake2b(value, digest_size=16).digest(), "big")


Records = Sequence[tuple[int, int]]  # (offset, digest), ascending offsets


def decide(
    ranges: Sequence[tuple[str, int, Records]], known: dict[tuple[str, int], set[tuple[int, int]]]
) -> list[set[int]]:
    """Offsets to drop per range, in order. ``known`` maps (topic, digest) to the positions
    (partition, offset) where the group kept that content; it is extended with this round's kept
    records, so later ranges of the round see the earlier ones."""
    out: list[set[int]] = []
    for topic, partition, records in ranges:
        dropped: set[int] = set()
        for offset, h in records:
            where = known.setdefault((topic, h), set())
            if any(pos != (partition, offset) for pos in where):
                dropped.add(offset)
            else:
                where.add((partition, offset))
        out.append(dropped)
    return out


class SeenStore:
    """Looks up ``forewarn_ingest_seen`` for one consumer group (the plans' insert writes it)."""

    def __init__(self, group_id: str, window_s: float):
        self.group_id = group_id
        self.window_ms = int(window_s * 1000)

    @property
    def enabled(self) -> bool:
        return self.window_ms > 0

    def lookup(
        self, client: Any, wanted: Iterable[tuple[str, int]]
    ) -> dict[tuple[str, int], set[tuple[int, int]]]:
        """(topic, digest) -> positions where the group kept it within the window (at most two
        per hash: enough to tell whether any differs from the record's own)."""
        pairs = set(wanted)
        topics = sorted({t for t, _h in pairs})
        hashes = sorted({h for _t, h in pairs})
        known: dict[tuple[str, int], set[tuple[int, int]]] = {}
        for i in range(0, len(hashes), LOOKUP_CHUNK):  # one query per round, whatever its topics
            rows = client.query(
                f"SELECT topic, hash, partition, offset FROM {SEEN_TABLE} "
                "WHERE group_id = {g:String} AND topic IN {t:Array(String)} AND hash IN {h:Array(UInt128)} "
                "AND seen_at >= now64(3) - toIntervalMillisecond({w:UInt64}) "
                "GROUP BY topic, hash, partition, offset LIMIT 2 BY topic, hash",
                parameters={
                    "g": self.group_id,
                    "t": topics,
                    "h": hashes[i : i + LOOKUP_CHUNK],
                    "w": self.window_ms,
                },
            ).result_rows
            for topic, h, partition, offset in rows:
                if (topic, int(h)) in pairs:
                    known.setdefault((topic, int(h)), set()).add((int(partition), int(offset)))
        return known
