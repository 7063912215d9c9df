"""The ClickHouse audit table of remediation, and the writer draining the SQLite outbox into it.

Audit rows are first committed to the local outbox together with the state change they
describe, then copied to ClickHouse in batches by one background thread. A store that is
down only delays the copy (with backoff); rows leave the outbox only after ClickHouse took
them, and a re-sent batch is dropped by the table's insert de-duplication. The outbox is
bounded: past ``max_backlog`` rows the oldest are dropped and counted, loudly.

>>> [s.split("(")[0] for s in audit_ddl(Schema("otel"))]
['CREATE TABLE IF NOT EXISTS `otel`.`forewarn_remediation_audit` ']
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from forewarn.alerts.remediation.state import State

from forewarn.config import TTLSettings, mask_dsn
from forewarn.storage.schema import Schema
from forewarn.storage.tables import AUDIT, AUDIT_TABLE

log = logging.getLogger(__name__)

COLUMNS = [name for name, _ in AUDIT.columns]
DEFAULTS: dict[str, Any] = {
    "event": "",
    "outcome": "",
    "reason": "",
    "hook": "",
    "kind": "fire",
    "action_id": "",
    "idempotency_key": "",
    "group_key": "",
    "receiver": "",
    "alertname": "",
    "fingerprints": [],
    "labels": {},
    "method": "",
    "url": "",
    "attempt": 0,
    "status_code": 0,
    "latency_ms": 0.0,
    "error": "",
    "dry_run": False,
    "approval_state": "",
    "actor": "",
    "comment": "",
    "breaker_state": "",
}


def audit_ddl(schema: Schema, ttl: TTLSettings | None = None) -> list[str]:
    """DDL of the audit table (kept forever: it is the record of what automation did)."""
    return schema.create_table(AUDIT)


def to_row(seq: int, event: dict[str, Any]) -> list[Any]:
    """One outbox entry as a row in column order; ``ts`` is a Unix time in seconds, ``seq``
    the outbox sequence that orders events written in the same instant."""
    full = {**DEFAULTS, **event, "seq": seq}
    full["event_time"] = datetime.fromtimestamp(float(event["ts"]), tz=UTC)
    return [full[c] for c in COLUMNS]


class AuditWriter:
    """Background thread copying the outbox into ClickHouse; never blocks the engine."""

    def __init__(
        self,
        state: State,
        dsn: str,
        database: str,
        cluster: str | None = None,
        batch: int = 5000,
        max_backlog: int = 1_000_000,
        max_backoff_s: float = 30.0,
    ):
        self._state, self._dsn, self._db = state, dsn, database
        self._schema = Schema(database, cluster)
        self._batch, self._max_backlog, self._max_backoff = batch, max_backlog, max_backoff_s
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._idle = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self.dropped = 0
        self.written = 0
        self.last_error = ""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="remediation-audit", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._idle.clear()
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Flush what can be flushed within ``timeout``; the rest stays in the outbox."""
        self._stopping.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)
        if self._client is not None:
            with contextlib.suppress(Exception):  # a broken connection must not mask shutdown
                self._client.close()
            self._client = None

    def flushed(self, timeout: float) -> bool:
        """Wait until the outbox is empty (for tests and orderly shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._state.audit_backlog() == 0:
                return True
            self.wake()
            self._idle.wait(0.05)
        return self._state.audit_backlog() == 0

    def _connect(self) -> Any:
        if self._client is None:
            from forewarn.storage.client import connect

            client = connect(self._dsn)
            client.command(self._schema.create_database())
            for stmt in audit_ddl(self._schema):
                client.command(stmt)
            client.database = self._db
            self._client = client
        return self._client

    def _flush_once(self) -> int:
        rows = self._state.audit_batch(self._batch)
        if not rows:
            return 0
        client = self._connect()
        client.insert(
            AUDIT_TABLE,
            [to_row(seq, r) for seq, r in rows],
            column_names=COLUMNS,
            database=self._db,
            settings={"insert_deduplicate": 1},
        )
        self._state.drop_audit(rows[-1][0])
        self.written += len(rows)
        return len(rows)

    def _run(self) -> None:
        backoff = 0.2
        while True:
            try:
                while self._flush_once():
                    pass
                backoff = 0.2
                self.last_error = ""
            except Exception as e:
                self.last_error = f"{type(e).__name__}: {e}"
                log.warning(
                    "remediation audit: store %s unavailable, retrying in %.1fs: %s",
                    mask_dsn(self._dsn),
                    backoff,
                    self.last_error,
                )
                self._client = None
                if self._stopping.is_set():
                    return
                dropped = self._state.trim_audit(self._max_backlog)
                if dropped:
                    self.dropped += dropped
                    log.error("remediation audit: outbox full, dropped %d oldest rows", dropped)
                self._wake.wait(backoff)
                self._wake.clear()
                backoff = min(backoff * 2, self._max_backoff)
                continue
            if self._stopping.is_set():
                return
            self._idle.set()
            self._wake.wait(1.0)
            self._wake.clear()
