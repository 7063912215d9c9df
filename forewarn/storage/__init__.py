"""ClickHouse storage: one clickhouse-connect code path for embedded chDB and ClickHouse servers.

``chdb:///path`` runs the real ClickHouse engine in this process; ``http(s)://...`` talks to a
server or cluster. Everything above this module speaks the same clickhouse-connect ``Client``.
"""

from __future__ import annotations

from forewarn.storage.client import connect, is_embedded, open_storage
from forewarn.storage.migrations import migrate
from forewarn.storage.schema import SIGNAL_TABLES, TABLES, Schema

__all__ = ["SIGNAL_TABLES", "TABLES", "Schema", "connect", "is_embedded", "migrate", "open_storage"]
