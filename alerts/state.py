"""Durable router state in one SQLite file (WAL): alerts, silences and the notification log.

Alertmanager keeps silences and the notification log in snapshot files and relies on
Prometheus re-sending alerts; forewarn also keeps the alerts, so a restart neither re-pages
(the log says what was sent) nor forgets to resolve (the alerts are still there to flush).
Without a data directory the same code runs on an in-memory database.

>>> st = StateStore(None)
>>> st.put_nflog(NflogEntry("ops", "webhook", 0, "{}:{}", frozenset({"a"}), frozenset(), 10.0))
>>> st.get_nflog("ops", "webhook", 0, "{}:{}").firing
frozenset({'a'})
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (fp TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS silences (id TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS nflog (
    receiver TEXT NOT NULL, integration TEXT NOT NULL, idx INTEGER NOT NULL, group_key TEXT NOT NULL,
    firing BLOB NOT NULL, resolved BLOB NOT NULL, ts REAL NOT NULL,
    PRIMARY KEY (receiver, integration, idx, group_key));
"""


@dataclass(frozen=True, slots=True)
class NflogEntry:
    """The last notification sent for one (receiver, integration, groupKey)."""

    receiver: str
    integration: str
    idx: int
    group_key: str
    firing: frozenset[str]
    resolved: frozenset[str]
    ts: float


class StateStore:
    """Synchronous, small-transaction persistence; callers batch one POST into one transaction."""

    def __init__(self, data_dir: Path | None) -> None:
        if data_dir is None:
            self.path = ":memory:"
        else:
            data_dir.mkdir(parents=True, exist_ok=True)
            self.path = str(data_dir / "alerts-state.sqlite")
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _tx(self) -> Iterator[None]:
        # Autocommit connection (isolation_level=None): one explicit transaction per call,
        # otherwise every row of an executemany would be its own commit.
        self.db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # alerts
    def put_alerts(self, rows: Iterable[tuple[str, dict[str, Any]]]) -> None:
        with self._tx():
            self.db.executemany(
                "INSERT OR REPLACE INTO alerts (fp, data) VALUES (?, ?)",
                ((fp, orjson.dumps(d)) for fp, d in rows),
            )

    def delete_alerts(self, fps: Iterable[str]) -> None:
        with self._tx():
            self.db.executemany("DELETE FROM alerts WHERE fp = ?", ((fp,) for fp in fps))

    def load_alerts(self) -> list[dict[str, Any]]:
        return [orjson.loads(d) for (d,) in self.db.execute("SELECT data FROM alerts")]

    # silences
    def put_silence(self, sid: str, data: dict[str, Any]) -> None:
        with self._tx():
            self.db.execute(
                "INSERT OR REPLACE INTO silences (id, data) VALUES (?, ?)", (sid, orjson.dumps(data))
            )

    def delete_silences(self, ids: Iterable[str]) -> None:
        with self._tx():
            self.db.executemany("DELETE FROM silences WHERE id = ?", ((i,) for i in ids))

    def load_silences(self) -> list[dict[str, Any]]:
        return [orjson.loads(d) for (d,) in self.db.execute("SELECT data FROM silences")]

    # notification log
    def get_nflog(self, receiver: str, integration: str, idx: int, group_key: str) -> NflogEntry | None:
        row = self.db.execute(
            "SELECT firing, resolved, ts FROM nflog WHERE receiver=? AND integration=? AND idx=? AND group_key=?",
            (receiver, integration, idx, group_key),
        ).fetchone()
        if row is None:
            return None
        return NflogEntry(
            receiver,
            integration,
            idx,
            group_key,
            frozenset(orjson.loads(row[0])),
            frozenset(orjson.loads(row[1])),
            row[2],
        )

    def put_nflog(self, e: NflogEntry) -> None:
        with self._tx():
            self.db.execute(
                "INSERT OR REPLACE INTO nflog VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    e.receiver,
                    e.integration,
                    e.idx,
                    e.group_key,
                    orjson.dumps(sorted(e.firing)),
                    orjson.dumps(sorted(e.resolved)),
                    e.ts,
                ),
            )

    def gc_nflog(self, older_than: float) -> int:
        """Drop log entries past retention (Alertmanager's default is 120 h)."""
        with self._tx():
            n = self.db.execute("DELETE FROM nflog WHERE ts < ?", (older_than,)).rowcount
        return n
