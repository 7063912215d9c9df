"""Running one HTTP request's query on the embedded engine this process already hosts.

chDB hosts one engine (one data directory) per process and lets any number of connection
handles use it concurrently; each handle has its own session (``USE``, ``SET``). So every
request gets a fresh handle: its settings, database and ``readonly`` level are set on it, the
query runs, and the handle is closed, leaving nothing behind for the next request or for the
collector's own handles writing into the same store. ``readonly`` is set last, so the engine
itself refuses any write, DDL, table function or settings change the query attempts.

The engine formats every result itself: formats without a header or footer are streamed as
the engine produces blocks; the others (JSON, Parquet, Arrow...) are produced whole, under
``max_result_bytes``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import chdb

from forewarn.clickhouse_http.protocol import ClickHouseError, from_engine
from forewarn.storage.client import chdb_path

log = logging.getLogger(__name__)


# Where chDB's defaults differ from a ClickHouse server's, clients expect the server's: JSON
# formats quote 64-bit integers (JavaScript cannot hold them as numbers).
SERVER_DEFAULTS = {"output_format_json_quote_64bit_integers": "1"}
MAX_IDLE_HANDLES = 16  # read-only handles kept for reuse


def connection_string(dsn: str) -> str:
    """The engine path chDB compares literally: the same spelling clickhouse-connect uses."""
    path = chdb_path(dsn)
    return ":memory:" if path is None else os.path.realpath(path)


def quote_ident(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def quote_value(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass
class Job:
    sql: str
    fmt: str  # used when the SQL has no FORMAT clause
    settings: dict[str, str]  # applied with SET before the query
    params: dict[str, str]  # {name:Type} placeholders
    database: str | None
    readonly: int
    stream: bool


@dataclass
class Outcome:
    """A finished (``body``) or streaming (``chunks``) result, with the summary ClickHouse reports."""

    body: bytes = b""
    chunks: Iterator[bytes] | None = None
    summary: dict[str, str] = field(default_factory=dict)
    close: Any = None  # ends a streaming result: close(finished) returns or discards its handle


class Engine:
    """Handles on the process's chDB engine, plus what the server reports about it."""

    def __init__(self, dsn: str):
        self.conn_str = connection_string(dsn)
        # An anchor handle keeps the engine up between requests (closing the last handle stops it).
        self._anchor = chdb.connect(self.conn_str)
        self._anchor_lock = threading.Lock()
        self._pool: OrderedDict[tuple, list[Any]] = OrderedDict()
        self._pool_lock = threading.Lock()
        self._idle = 0
        self._closed = False
        row = self.scalar_row("SELECT version(), timezone(), hostName()")
        self.version, self.timezone, self.hostname = row
        defaults = self.query_text("SELECT name, value FROM system.settings FORMAT TSVRaw")
        self.defaults = dict(line.split("\t", 1) for line in defaults.splitlines() if "\t" in line)
        self.defaults.update(SERVER_DEFAULTS)

    def query_text(self, sql: str) -> str:
        with self._anchor_lock:
            return self._anchor.query(sql, "TSVRaw").bytes().decode()

    def scalar_row(self, sql: str) -> list[str]:
        return self.query_text(sql).rstrip("\n").split("\t")

    def close(self) -> None:
        with self._pool_lock:
            self._closed = True
            idle = [c for conns in self._pool.values() for c in conns]
            self._pool.clear()
            self._idle = 0
        for c in idle:
            with contextlib.suppress(Exception):
                c.close()
        with self._anchor_lock, contextlib.suppress(Exception):
            self._anchor.close()

    def _open(self, job: Job) -> tuple[Any, tuple | None]:
        """A handle with the job's settings and readonly level: a pooled one when the job is
        read-only (readonly=1 leaves a handle nothing to change but its database, which is set
        again below), else a fresh one. A fresh handle's first query costs a few milliseconds."""
        key = tuple(sorted(job.settings.items())) if job.readonly == 1 else None
        if key is not None:
            with self._pool_lock:
                idle = self._pool.get(key)
                if idle:
                    self._idle -= 1
                    return idle.pop(), key
        try:
            conn = chdb.connect(self.conn_str)
        except Exception as e:
            raise ClickHouseError(1002, f"the embedded store cannot be opened: {e}") from None
        # One SET for all (each engine call costs about a millisecond); readonly last, so the
        # query that follows runs under it and nothing after it can lift it.
        assignments = [f"{n} = {quote_value(v)}" for n, v in {**SERVER_DEFAULTS, **job.settings}.items()]
        if job.readonly:
            assignments.append(f"readonly = {int(job.readonly)}")
        try:
            conn.query("SET " + ", ".join(assignments), "TSV")
        except Exception:
            conn.close()
            raise
        return conn, key

    def _release(self, conn: Any, key: tuple | None) -> None:
        evicted = conn
        with self._pool_lock:
            if key is not None and not self._closed:
                self._pool.setdefault(key, []).append(conn)
                self._pool.move_to_end(key)  # most recently used last
                self._idle += 1
                evicted = None
                if self._idle > MAX_IDLE_HANDLES:  # drop the least recently used settings' handle
                    oldest = next(iter(self._pool))
                    evicted = self._pool[oldest].pop(0)
                    if not self._pool[oldest]:
                        del self._pool[oldest]
                    self._idle -= 1
        if evicted is not None:
            with contextlib.suppress(Exception):
                evicted.close()

    def run(self, job: Job) -> Outcome:
        """Run ``job`` on its own handle (blocking: call it from a worker thread)."""
        t0 = time.perf_counter()
        try:
            conn, key = self._open(job)
        except ClickHouseError:
            raise
        except Exception as e:
            raise from_engine(str(e)) from None
        try:
            if job.database:
                conn.query(f"USE {quote_ident(job.database)}", "TSV")
            if job.stream:
                sr = conn.send_query(job.sql, job.fmt, params=job.params)

                def close(finished: bool) -> None:
                    if finished:
                        self._release(conn, key)
                    else:
                        _close_stream(sr, conn)

                return Outcome(chunks=_chunks(sr), summary=_summary(None, t0), close=close)
            res = conn.query(job.sql, job.fmt, params=job.params)
            body = res.bytes() or b""
            self._release(conn, key)
            return Outcome(body=body, summary=_summary(res, t0))
        except ClickHouseError:
            self._release(conn, key)
            raise
        except Exception as e:
            self._release(conn, key)  # an engine error leaves the session as it was
            raise from_engine(str(e)) from None


def _chunks(sr: Any) -> Iterator[bytes]:
    for chunk in sr:
        data = chunk.bytes() if hasattr(chunk, "bytes") else bytes(chunk)
        if data:
            yield data


def next_chunk(it: Iterator[bytes]) -> bytes | None:
    """The next block of a streaming result, None at the end; engine errors in ClickHouse's shape."""
    try:
        return next(it)
    except StopIteration:
        return None
    except ClickHouseError:
        raise
    except Exception as e:
        raise from_engine(str(e)) from None


def _close_stream(sr: Any, conn: Any) -> None:
    with contextlib.suppress(Exception):
        sr.cancel()
    with contextlib.suppress(Exception):
        sr.close()
    with contextlib.suppress(Exception):
        conn.close()


def _summary(res: Any, t0: float) -> dict[str, str]:
    """X-ClickHouse-Summary: the counters chDB reports, as strings, like ClickHouse's."""

    def get(name: str) -> int:
        try:
            return int(getattr(res, name)()) if res is not None else 0
        except Exception:
            return 0

    return {
        "read_rows": str(get("rows_read")),
        "read_bytes": str(get("bytes_read")),
        "written_rows": str(get("rows_written")),
        "written_bytes": str(get("bytes_written")),
        "total_rows_to_read": str(get("rows_read")),
        "result_rows": "0",
        "result_bytes": "0",
        "elapsed_ns": str(int((time.perf_counter() - t0) * 1e9)),
    }
