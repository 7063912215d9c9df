"""Running ad-hoc SQL for ``forewarn query``, whether or not another process owns the store."""

from __future__ import annotations

from collections.abc import Iterator

from forewarn.config import Settings
from forewarn.storage.client import is_embedded, open_storage
from forewarn.storage.gateway import find_owner, output_settings, query_owner


def run_query(settings: Settings, sql: str, fmt: str) -> Iterator[bytes]:
    """Yield the result of ``sql`` in ClickHouse format ``fmt``.

    An embedded store held by a running forewarn process is queried through that process; an
    unheld one is opened here (and migrated, so a fresh data directory answers with empty tables).
    """
    dsn = settings.storage_dsn
    if is_embedded(dsn) and (owner := find_owner(dsn)):
        yield from query_owner(owner, sql, fmt, settings.storage.database)
        return
    client = open_storage(settings, dsn, run_migrations=is_embedded(dsn))
    try:
        with client.raw_stream(sql, fmt=fmt, settings=output_settings(fmt)) as stream:
            yield from stream
    finally:
        client.close()
