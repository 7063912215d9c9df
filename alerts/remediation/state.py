"""Durable remediation state in one SQLite (WAL) file inside the router's data directory.

Everything whose loss would re-run or forget an action lives here: submitted batches not yet
evaluated (inbox), actions with their idempotency keys, attempts and approval decisions, the
execution log behind cooldowns and rate limits, circuit-breaker state, and the audit outbox
that is drained into ClickHouse. Each state change and its audit rows commit in one
transaction, so a crash never leaves an outcome without its audit row or the reverse.

>>> import tempfile, pathlib
>>> st = State(pathlib.Path(tempfile.mkdtemp()) / "remediation.sqlite")
>>> st.enqueue("g", "r", [{"labels": {}}])
1
>>> [(g, r) for _, g, r, _ in st.inbox_batch(10)]
[('g', 'r')]
>>> st.close()
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import orjson
from forewarn.alerts.remediation.breaker import Breaker

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, group_key TEXT NOT NULL, receiver TEXT NOT NULL,
    alerts TEXT NOT NULL, received_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS actions (
    id TEXT PRIMARY KEY, idem_key TEXT NOT NULL UNIQUE, hook TEXT NOT NULL, kind TEXT NOT NULL,
    group_key TEXT NOT NULL, receiver TEXT NOT NULL, fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL, alert TEXT NOT NULL, url TEXT NOT NULL, method TEXT NOT NULL,
    state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', dry_run INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, expires_at REAL,
    decided_by TEXT NOT NULL DEFAULT '', decision_comment TEXT NOT NULL DEFAULT '',
    decided_at REAL, last_status INTEGER NOT NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT '',
    seen_at REAL NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS actions_state ON actions(state);
CREATE TABLE IF NOT EXISTS executions (ts REAL NOT NULL, hook TEXT NOT NULL, group_key TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS executions_ts ON executions(ts);
CREATE INDEX IF NOT EXISTS executions_group ON executions(hook, group_key, ts);
CREATE TABLE IF NOT EXISTS breakers (
    hook TEXT PRIMARY KEY, state TEXT NOT NULL, failures INTEGER NOT NULL,
    opened_at REAL NOT NULL, trial TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS audit_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, row TEXT NOT NULL);
"""

# Action states. Terminal ones never change again; "pending" waits for a human.
PENDING, QUEUED, SUCCEEDED, FAILED = "pending", "queued", "succeeded", "failed"
DENIED, EXPIRED, REFUSED, DRY_RUN = "denied", "expired", "refused", "dry_run"
CANCELLED = "cancelled"  # the alert resolved before the action ran (or while it was retrying)
ALL_STATES = (PENDING, QUEUED, SUCCEEDED, FAILED, DENIED, EXPIRED, REFUSED, DRY_RUN, CANCELLED)


@dataclass
class Action:
    """One decided remediation for one alert instance (its idempotency key is unique)."""

    id: str
    idem_key: str
    hook: str
    kind: str  # "fire" or "resolve"
    group_key: str
    receiver: str
    fingerprint: str
    starts_at: str
    alert: str  # JSON of the webhook-v4 alert object
    url: str
    method: str
    state: str
    reason: str = ""
    dry_run: int = 0
    attempts: int = 0
    next_attempt_at: float = 0.0
    created_at: float = 0.0
    updated_at: float = 0.0
    expires_at: float | None = None
    decided_by: str = ""
    decision_comment: str = ""
    decided_at: float | None = None
    last_status: int = 0
    last_error: str = ""

    def to_api(self) -> dict[str, Any]:
        """The JSON shape of the approvals API and ``forewarn remediation list``."""
        alert = orjson.loads(self.alert)
        return {
            "id": self.id,
            "hook": self.hook,
            "kind": self.kind,
            "state": self.state,
            "reason": self.reason,
            "dryRun": bool(self.dry_run),
            "groupKey": self.group_key,
            "receiver": self.receiver,
            "fingerprint": self.fingerprint,
            "labels": alert.get("labels", {}),
            "url": self.url,
            "method": self.method,
            "idempotencyKey": self.idem_key,
            "attempts": self.attempts,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "expiresAt": self.expires_at,
            "decidedBy": self.decided_by,
            "comment": self.decision_comment,
            "lastStatus": self.last_status,
            "lastError": self.last_error,
        }


_ACTION_COLS = [f.name for f in fields(Action)]


class State:
    """Thread-safe access to the SQLite file; every method is one short transaction."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._lock = threading.RLock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One atomic write transaction (re-entrant within a thread)."""
        with self._lock:
            if self._conn.in_transaction:
                yield self._conn
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # -- inbox: submitted batches, durable before submit() returns --------------------------
    def enqueue(self, group_key: str, receiver: str, alerts: list[dict[str, Any]]) -> int:
        """Store one batch; returns the number of batches waiting."""
        with self.tx() as c:
            c.execute(
                "INSERT INTO inbox(group_key, receiver, alerts, received_at) VALUES (?, ?, ?, ?)",
                (group_key, receiver, orjson.dumps(alerts).decode(), time.time()),
            )
            return int(c.execute("SELECT count(*) FROM inbox").fetchone()[0])

    def inbox_size(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM inbox").fetchone()[0])

    def inbox_batch(self, limit: int) -> list[tuple[int, str, str, list[dict[str, Any]]]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, group_key, receiver, alerts FROM inbox ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [(r[0], r[1], r[2], orjson.loads(r[3])) for r in rows]

    def drop_inbox(self, c: sqlite3.Connection, inbox_id: int) -> None:
        c.execute("DELETE FROM inbox WHERE id = ?", (inbox_id,))

    # -- actions ----------------------------------------------------------------------------
    def seen_again(self, c: sqlite3.Connection, idem_key: str, now: float) -> bool:
        """True when the key is known (and notes that its alert is still around)."""
        cur = c.execute("UPDATE actions SET seen_at = ? WHERE idem_key = ?", (now, idem_key))
        return cur.rowcount > 0

    def action_by_key(self, c: sqlite3.Connection, idem_key: str) -> Action | None:
        row = c.execute(
            f"SELECT {', '.join(_ACTION_COLS)} FROM actions WHERE idem_key = ?", (idem_key,)
        ).fetchone()
        return Action(*row) if row else None

    def insert_action(self, c: sqlite3.Connection, a: Action) -> None:
        c.execute(
            f"INSERT INTO actions({', '.join(_ACTION_COLS)}) VALUES ({', '.join('?' * len(_ACTION_COLS))})",
            [getattr(a, k) for k in _ACTION_COLS],
        )

    def update_action(self, c: sqlite3.Connection, a: Action) -> None:
        cols = [k for k in _ACTION_COLS if k != "id"]
        c.execute(
            f"UPDATE actions SET {', '.join(f'{k} = ?' for k in cols)} WHERE id = ?",
            [*(getattr(a, k) for k in cols), a.id],
        )

    def get_action(self, action_id: str) -> Action | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {', '.join(_ACTION_COLS)} FROM actions WHERE id = ?", (action_id,)
            ).fetchone()
        return Action(*row) if row else None

    def list_actions(self, state: str | None = None, limit: int = 1000) -> list[Action]:
        sql = f"SELECT {', '.join(_ACTION_COLS)} FROM actions"
        args: list[Any] = []
        if state:
            sql += " WHERE state = ?"
            args.append(state)
        sql += " ORDER BY created_at DESC, id LIMIT ?"
        args.append(limit)
        with self._lock:
            return [Action(*r) for r in self._conn.execute(sql, args).fetchall()]

    def actions_in(self, states: tuple[str, ...]) -> list[Action]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {', '.join(_ACTION_COLS)} FROM actions WHERE state IN "
                f"({', '.join('?' * len(states))}) ORDER BY created_at, id",
                states,
            ).fetchall()
        return [Action(*r) for r in rows]

    # -- execution log: cooldowns and rate limits --------------------------------------------
    def record_execution(self, c: sqlite3.Connection, ts: float, hook: str, group_key: str) -> None:
        c.execute("INSERT INTO executions(ts, hook, group_key) VALUES (?, ?, ?)", (ts, hook, group_key))

    def executions_since(self, c: sqlite3.Connection, since: float, hook: str | None = None) -> int:
        if hook is None:
            row = c.execute("SELECT count(*) FROM executions WHERE ts > ?", (since,)).fetchone()
        else:
            row = c.execute(
                "SELECT count(*) FROM executions WHERE ts > ? AND hook = ?", (since, hook)
            ).fetchone()
        return int(row[0])

    def last_execution(self, c: sqlite3.Connection, hook: str, group_key: str) -> float | None:
        row = c.execute(
            "SELECT max(ts) FROM executions WHERE hook = ? AND group_key = ?", (hook, group_key)
        ).fetchone()
        return row[0]

    def prune(self, executions_before: float, actions_before: float) -> None:
        """Forget executions older than every window, and finished actions whose alert has not
        been seen since ``actions_before`` (their keys can no longer be re-flushed)."""
        finished = [s for s in ALL_STATES if s not in (PENDING, QUEUED)]
        with self.tx() as c:
            c.execute("DELETE FROM executions WHERE ts < ?", (executions_before,))
            c.execute(
                f"DELETE FROM actions WHERE state IN ({', '.join('?' * len(finished))}) "
                "AND max(seen_at, updated_at) < ?",
                [*finished, actions_before],
            )

    # -- circuit breakers --------------------------------------------------------------------
    def breaker(self, c: sqlite3.Connection, hook: str) -> Breaker:
        row = c.execute(
            "SELECT hook, state, failures, opened_at, trial FROM breakers WHERE hook = ?", (hook,)
        ).fetchone()
        return Breaker(*row) if row else Breaker(hook)

    def save_breaker(self, c: sqlite3.Connection, b: Breaker) -> None:
        c.execute(
            "INSERT OR REPLACE INTO breakers(hook, state, failures, opened_at, trial) VALUES (?, ?, ?, ?, ?)",
            (b.hook, b.state, b.failures, b.opened_at, b.trial),
        )

    def breakers(self) -> list[Breaker]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT hook, state, failures, opened_at, trial FROM breakers"
            ).fetchall()
        return [Breaker(*r) for r in rows]

    # -- audit outbox ------------------------------------------------------------------------
    def add_audit(self, c: sqlite3.Connection, row: dict[str, Any]) -> None:
        c.execute("INSERT INTO audit_outbox(row) VALUES (?)", (orjson.dumps(row).decode(),))

    def audit_batch(self, limit: int) -> list[tuple[int, dict[str, Any]]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, row FROM audit_outbox ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [(r[0], orjson.loads(r[1])) for r in rows]

    def drop_audit(self, upto_seq: int) -> None:
        with self.tx() as c:
            c.execute("DELETE FROM audit_outbox WHERE seq <= ?", (upto_seq,))

    def audit_backlog(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM audit_outbox").fetchone()[0])

    def trim_audit(self, keep: int) -> int:
        """Drop the oldest outbox rows beyond ``keep`` (the store has been down too long)."""
        with self.tx() as c:
            n = int(c.execute("SELECT count(*) FROM audit_outbox").fetchone()[0])
            if n <= keep:
                return 0
            c.execute(
                "DELETE FROM audit_outbox WHERE seq IN (SELECT seq FROM audit_outbox ORDER BY seq LIMIT ?)",
                (n - keep,),
            )
            return n - keep
