"""The one conversion path from serialized OTLP export requests to the exporter tables.

Both the direct receivers and the Kafka ingester call :func:`insert_requests` with a group of
serialized ``Export{Trace,Metrics,Logs}ServiceRequest`` messages. ClickHouse decodes them itself:
the requests are framed length-delimited, read with its ``Protobuf`` input format against the
OTLP schema of :mod:`forewarn.collector.otlp_schema` (passed inline with
``format_schema_source = 'string'`` to a server: no schema file there; a private temp file for
embedded chDB), and flattened by the ``INSERT ... SELECT``
of :mod:`forewarn.collector.convert_sql` (nested ``ARRAY JOIN``s, ``mapFromArrays``), one
statement per target table that has rows. Python only frames the bytes and surveys them with a
skeleton parse that keeps spans, records and points as undecoded bytes (row counts, and whether a
resource or scope carries array/kvlist attributes).

Why, measured with ``bench/convert.py`` (512 items per request; 10-20 attributes per span, 5-10
per log record, 4 per point; load average ~10 on this shared 2-core host, so per-CPU-second
figures are the steadier ones), ClickHouse path vs a Python columnar floor (upb decode, Python
flattening with the same stringification, columnar clickhouse-connect insert), both writing the
same rows into the same tables:

==============  ==========================  ==========================
per CPU-second  8 requests per call          32 requests per call
==============  ==========================  ==========================
spans           36k vs 18k (2.0x)           63k vs 20k (3.2x)
metric points   30k vs 31k (1.0x)           98k vs 67k (1.5x)
log records     55k vs 31k (1.8x)           94k vs 42k (2.2x)
spans + arrays  20k vs 18k (1.1x)           26k vs 17k (1.5x)
==============  ==========================  ==========================

What limits it: each statement costs ~25-40 ms of CPU before its first row (parsing and
analysing the long SELECT; the trace-id materialized view adds its own), so small group commits
pay for it, metrics once per point type present; with 2 requests of 64 spans per call the Python
floor is faster. Per row, the conversion itself (decode + flatten + render, ``SELECT`` only) runs
at ~150k spans per CPU-second at 24 requests per call; the MergeTree write into the contract
tables (bloom-filter indexes on attribute maps, ZSTD, sorting, the trace-id view) costs as much
again, for any path.

Arrays and kvlists: the OTLP ``AnyValue`` is recursive and a ClickHouse schema cannot be, so
SQL renders scalars only. Resource/scope values of those kinds (``process.command_args``...) are
rendered in Python before the insert (:func:`forewarn.collector.convert_anyvalue.prerender`,
cheap: a few values per request); one inside a span, record or point makes the statement throw
before it writes anything, and it is re-run on requests rendered in full in Python. Always
correct; only such requests pay Python speed.

Embedded chDB vs a ClickHouse server differ only in the data source clause: chDB reads a
temporary file with ``file(path, 'Protobuf', structure)``; a server gets the bytes as the HTTP
body of ``INSERT ... SELECT ... FROM input(structure) FORMAT Protobuf``. Only chDB runs here; the
server branch is checked for what it sends, not against a server.

Retries and duplicates: every statement squashes its rows into one block (so a failure writes
nothing), and the tables keep ``non_replicated_deduplication_window``. ``dedup_token`` is passed
as ``insert_deduplication_token`` (``{token}:{table}`` for the metric tables): a replay under the
same token drops, the same content under a different token lands. Without a token each call
gets a fresh one, so every call lands even when its content repeats an earlier one (identical
requests are distinct exports, as the OpenTelemetry exporter treats them); callers that retry the
same payloads and need exactly-once (the Kafka ingester) pass a token.

Known differences from the Go exporter: a key repeated inside one attribute list is kept twice
in the map (the exporter keeps the last); exemplar ids are hex of the fixed-size id, so an
absent one is all zeros, as the exporter writes it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from collections.abc import Collection, Sequence
from contextlib import ExitStack
from functools import cache

from clickhouse_connect.driver.client import Client
from forewarn.collector.convert_anyvalue import REQUEST_CLASSES, prerender
from forewarn.collector.convert_sql import COMPLEX_MARKER, select_sql, target_columns
from forewarn.collector.convert_survey import BadPayload, check_decodable, count_rows, survey
from forewarn.collector.otlp_schema import MESSAGE, PROTO, STRUCTURE
from google.protobuf.internal.encoder import _VarintBytes

from forewarn.storage.schema import q
from forewarn.storage.tables import BATCH_COLUMN

SIGNALS = ("traces", "metrics", "logs")
__all__ = ["SIGNALS", "BadPayload", "count_rows", "frame", "insert_requests", "survey"]
# One block per statement, whatever the batch size (the caller bounds the batch): a statement
# either writes all its rows or none, so the retry and pre-render paths never duplicate.
_ONE_BLOCK = {"min_insert_block_size_rows": 1 << 40, "min_insert_block_size_bytes": 1 << 50}


def _sql_str(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def frame(payloads: Sequence[bytes]) -> bytes:
    """Length-delimited concatenation: ClickHouse's ``Protobuf`` format reads one message each."""
    return b"".join(_VarintBytes(len(p)) + p for p in payloads)


_SOURCE = "__forewarn_source__"
_BATCH = "__forewarn_batch__"


@cache
def _insert_template(signal: str, table: str, database: str, marked: bool) -> str:
    """The statement with placeholders for its data source (and insert group id when ``marked``);
    cached (one per table, database and marking)."""
    names = [q(c) for c in target_columns(table)]
    extra: tuple[str, ...] = ()
    if marked:
        names.append(q(BATCH_COLUMN))
        extra = (f"toUInt128('{_BATCH}') AS {q(BATCH_COLUMN)}",)
    select = select_sql(signal, table, _SOURCE, extra)
    return f"INSERT INTO {q(database)}.{q(table)} ({', '.join(names)})\n{select}"


def _insert_sql(signal: str, table: str, database: str, source: str, batch: int | None = None) -> str:
    sql = _insert_template(signal, table, database, batch is not None).replace(_SOURCE, source, 1)
    return sql if batch is None else sql.replace(_BATCH, str(int(batch)), 1)


@cache
def _schema_file() -> str:
    """The OTLP schema as a file in a private directory of this process, for embedded chDB.

    chDB (clickhouse-local) caches an inline (``format_schema_source = 'string'``) schema in a
    ``__cache__`` folder of the process's working directory, littering wherever forewarn runs;
    an absolute schema path does not.
    """
    directory = tempfile.mkdtemp(prefix="forewarn-schema-")  # 0700: nobody else can swap it
    path = os.path.join(directory, "otlp.proto")
    with open(path, "w") as fh:
        fh.write(PROTO)
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return path


def _schema_settings(signal: str, embedded: bool) -> dict[str, object]:
    if embedded:
        return {"format_schema": f"{_schema_file()}:{MESSAGE[signal]}"}
    return {
        "format_schema": PROTO,
        "format_schema_source": "string",
        "format_schema_message_name": MESSAGE[signal],
    }


def _settings(
    signal: str, table: str, dedup_token: str, embedded: bool, marked: bool = False
) -> dict[str, object]:
    marking = {"insert_allow_materialized_columns": 1} if marked else {}
    return {
        **marking,
        **_schema_settings(signal, embedded),
        "input_format_protobuf_oneof_presence": 1,
        **_ONE_BLOCK,
        # The plan has nothing to optimise (no filter, no sort, no aggregation) and the passes cost
        # ~5 ms per statement: 10-15% of a 4k-span commit, neutral at 12k (measured).
        "query_plan_enable_optimizations": 0,
        # Cluster mode inserts into Distributed tables: answer only once the shards hold the
        # rows (no effect on a plain MergeTree; untested here, no cluster in this environment).
        "insert_distributed_sync": 1,
        "insert_deduplication_token": f"{dedup_token}:{table}" if signal == "metrics" else dedup_token,
    }


class _Source:
    """Where ClickHouse reads the framed requests: a temp file for chDB, the HTTP body for a server."""

    def __init__(
        self, client: Client, signal: str, payloads: Sequence[bytes], batch: int | None = None
    ) -> None:
        self.client = client
        self.embedded = getattr(client, "uri", "").startswith("chdb:")
        self.signal = signal
        self.batch = batch
        self.body = frame(payloads)
        self.path: str | None = None

    def __enter__(self) -> _Source:
        if self.embedded:
            fd, self.path = tempfile.mkstemp(prefix="forewarn-otlp-", suffix=".pb")
            with os.fdopen(fd, "wb") as fh:
                fh.write(self.body)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.path:
            os.unlink(self.path)

    def insert(self, table: str, database: str, settings: dict[str, object]) -> None:
        structure = _sql_str(STRUCTURE[table])
        if self.embedded:
            # Settings ride in the statement: clickhouse-connect's chDB backend would otherwise
            # SET and restore each one around the call, a dozen extra engine round trips.
            source = f"file({_sql_str(self.path)}, 'Protobuf', {structure})"
            sql = _insert_sql(self.signal, table, database, source, self.batch)
            clause = ", ".join(
                f"{k} = {_sql_str(v) if isinstance(v, str) else v}" for k, v in settings.items()
            )
            self.client.command(f"{sql}\nSETTINGS {clause}")
        else:  # untested here: no ClickHouse server in this environment
            sql = _insert_sql(self.signal, table, database, f"input({structure})", self.batch)
            sql += "\nFORMAT Protobuf"
            self.client.command(sql, data=self.body, settings=settings)


def insert_requests(
    client: Client,
    signal: str,
    payloads: Sequence[bytes],
    *,
    database: str,
    dedup_token: str | None = None,
    batch: int | None = None,
    tables: Collection[str] | None = None,
    surveyed: tuple[dict[str, int], list[bool]] | None = None,
) -> dict[str, int]:
    """Insert the rows of these serialized OTLP Export{Trace,Metrics,Logs}ServiceRequest protobuf
    messages; returns rows written per table. Raises on storage failure; a retry of the same
    payloads under the same ``dedup_token`` does not duplicate rows (without a token, every call lands).

    ``batch`` (a UInt128) is written into every row's hidden ``_forewarn_batch`` column, so the
    rows of this call can be found again (:mod:`forewarn.collector.resend_dedup`); ``tables``
    restricts the insert to those tables of the signal (counts of the others are returned as 0);
    ``surveyed`` is :func:`survey` of these payloads when the caller already has it.

    Raises :class:`BadPayload` (a ``ValueError``) for a payload that does not decode: that is
    permanent, not a storage failure. The batch is held in memory once as framed bytes and once
    as ClickHouse's block per statement: callers bound the batch.
    """
    if signal not in SIGNALS:
        raise ValueError(f"unknown signal {signal!r}: expected one of {', '.join(SIGNALS)}")
    counts, rewrite = surveyed if surveyed is not None else survey(signal, payloads)
    if tables is not None:
        counts = {t: (n if t in tables else 0) for t, n in counts.items()}
    todo = [table for table, n in counts.items() if n]
    if not todo:
        return counts
    if any(rewrite):  # cheap to render up front: a few values per request
        payloads = [
            prerender(signal, p, items=False) if c else p for p, c in zip(payloads, rewrite, strict=True)
        ]
    with ExitStack() as stack:
        source = stack.enter_context(_Source(client, signal, payloads, batch))
        # With a token, a replay of the same range drops (the Kafka ingester's exactly-once).
        # Without one every call lands, as with the OpenTelemetry exporter: two clients (or one
        # client twice) sending identical requests get both stored. A fresh token per call keeps
        # the tables' deduplication window from dropping identical content.
        token = dedup_token if dedup_token is not None else f"call:{uuid.uuid4().hex}"
        rendered: _Source | None = None
        normalized = False
        for table in todo:
            settings = _settings(signal, table, token, source.embedded, batch is not None)
            while True:
                try:
                    (rendered or source).insert(table, database, settings)
                    break
                except Exception as e:
                    if COMPLEX_MARKER in str(e) and rendered is None:
                        # An array/kvlist inside an item stopped the statement before it wrote
                        # anything: re-run it on requests rendered in full in Python.
                        everything = [prerender(signal, p) for p in payloads]
                        rendered = stack.enter_context(_Source(client, signal, everything, batch))
                        continue
                    check_decodable(signal, payloads)  # bad input is not a storage failure
                    if normalized:
                        raise
                    # ClickHouse's Protobuf reader is stricter than upb, which the receivers
                    # decode with: a known field with another wire type, two members of one
                    # oneof, a uint32 sent as a larger varint (found by replaying the fuzz
                    # corpora, fuzz/convert_chdb.py). Re-run once on the requests as upb reads
                    # them; if that changes nothing, it was not the encoding.
                    normalized = True
                    clean = [normalize(signal, p) for p in payloads]
                    if clean == list(payloads):
                        raise
                    payloads = clean
                    source = stack.enter_context(_Source(client, signal, payloads, batch))
                    if rendered is not None:
                        everything = [prerender(signal, p) for p in payloads]
                        rendered = stack.enter_context(_Source(client, signal, everything, batch))
    return counts


def normalize(signal: str, payload: bytes) -> bytes:
    """The request re-encoded as upb reads it: unknown fields (and known ones sent with another
    wire type) dropped, the last member of a oneof kept, integers cut to their declared width.

    >>> normalize("logs", b"\\x0a\\x00" + b"\\xf8\\x01\\x01")  # a resource, and unknown field 31
    b'\\n\\x00'
    """
    msg = REQUEST_CLASSES[signal].FromString(payload)
    msg.DiscardUnknownFields()
    return msg.SerializeToString()
