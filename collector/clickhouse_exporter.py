"""The default exporter: commits OTLP payloads into ClickHouse (embedded chDB or a server).

A client's re-send of a request already committed is not stored again (``collector.dedup_window_s``,
see :mod:`forewarn.collector.resend_dedup`). Inserts run in worker threads, each with its own clickhouse-connect client (the engine does the
heavy lifting outside the GIL). Any storage error is retryable for the client: the failed
thread's client is dropped and a fresh one connects on the next batch, so the exporter recovers
by itself when the store comes back.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from forewarn.collector.exporter import SIGNALS, ExportError
from forewarn.collector.exporter import short_error as _short

from forewarn.config import Settings
from forewarn.storage import connect, open_storage

log = logging.getLogger(__name__)


class ClickHouseExporter:
    """Exporter writing straight into the OTel ClickHouse tables with ``insert_requests``.

    >>> from forewarn.config import load_settings
    >>> ClickHouseExporter(load_settings(), "chdb:///tmp/x").name
    'clickhouse'
    """

    name = "clickhouse"

    def __init__(self, settings: Settings, dsn: str | None = None):
        self.settings = settings
        self.dsn = dsn or settings.storage_dsn
        self.database = settings.storage.database
        self._pool = ThreadPoolExecutor(max_workers=len(SIGNALS), thread_name_prefix="ch-export")
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()
        self._started = False
        self._closed = False
        from forewarn.collector.resend_dedup import ResendDedup

        from forewarn.storage import is_embedded

        self.dedup = ResendDedup(self.database, settings.collector.dedup_window_s, is_embedded(self.dsn))

    async def start(self) -> None:
        """Connect and run the migrations (the schema must exist before the first insert)."""
        loop = asyncio.get_running_loop()
        client = await loop.run_in_executor(self._pool, self._open)
        self._remember(client)
        self._started = True

    def _open(self) -> Any:
        client = open_storage(self.settings, self.dsn)
        self._local.client = client
        self.dedup.load(client)
        return client

    def _remember(self, client: Any) -> None:
        with self._lock:
            self._clients.append(client)

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = connect(self.dsn, self.database)
            self._local.client = client
            self._remember(client)
        return client

    def _drop_client(self) -> None:
        client = getattr(self._local, "client", None)
        self._local.client = None
        if client is not None:
            with self._lock:
                if client in self._clients:
                    self._clients.remove(client)
            try:
                client.close()
            except Exception:  # a broken connection may fail to close; it is gone either way
                log.debug("closing a failed client", exc_info=True)

    def _insert(self, signal: str, payloads: list[bytes]) -> dict[str, int]:
        try:
            return self.dedup.insert(self._client(), signal, payloads)
        except Exception as e:
            if _is_bad_data(e):  # the engine could not read the data: a retry cannot help
                raise ExportError(f"ClickHouse rejected the data: {_short(e)}", retryable=False) from e
            self._drop_client()
            raise ExportError(f"insert into ClickHouse failed: {_short(e)}", retryable=True) from e

    async def export(self, signal: str, payloads: list[bytes]) -> None:
        if self._closed:
            raise ExportError("exporter is closed", retryable=True)
        await asyncio.get_running_loop().run_in_executor(self._pool, self._insert, signal, payloads)

    def relieve_memory(self) -> None:
        """Hand the embedded engine's freed allocator pages back to the OS (the memory guard calls
        it when memory is tight); a server's memory is not this process's, nothing to do then."""
        from forewarn.storage import is_embedded

        if self._started and not self._closed and is_embedded(self.dsn):
            self._client().command("SYSTEM JEMALLOC PURGE")

    def ready(self) -> bool:
        return self._started and not self._closed

    async def close(self) -> None:
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown, True)
        with self._lock:
            clients, self._clients = self._clients, []
        for c in clients:
            try:
                c.close()
            except Exception:
                log.debug("closing client", exc_info=True)


# ClickHouse error codes that mean "this input cannot be read", not "the store is unwell":
# CANNOT_PARSE_TEXT, CANNOT_PARSE_QUOTED_STRING, CANNOT_PARSE_INPUT_ASSERTION_FAILED,
# ATTEMPT_TO_READ_AFTER_EOF, CANNOT_PARSE_DATE, CANNOT_PARSE_DATETIME, ARGUMENT_OUT_OF_BOUND,
# CANNOT_PARSE_NUMBER, INCORRECT_DATA, SIZES_OF_ARRAYS_DONT_MATCH,
# VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE, UNKNOWN_PROTOBUF_FORMAT.
# Anything else (a failing SQL statement included) stays retryable, so a bug never drops data.
BAD_DATA_CODES = frozenset({6, 26, 27, 32, 38, 41, 69, 72, 117, 190, 321, 444})
_CODE = re.compile(r"\bCode: (\d+)\.")


def _is_bad_data(e: BaseException) -> bool:
    """Whether the engine refused the input itself.

    >>> _is_bad_data(RuntimeError("Code: 117. DB::Exception: Incorrect data"))
    True
    >>> _is_bad_data(RuntimeError("Code: 60. DB::Exception: Unknown table"))
    False
    """
    match = _CODE.search(str(e))
    return bool(match) and int(match.group(1)) in BAD_DATA_CODES
