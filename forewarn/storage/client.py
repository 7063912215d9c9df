"""Connecting to ClickHouse (embedded or remote) through clickhouse-connect."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from forewarn.config import Settings, mask_dsn
from forewarn.storage.migrations import migrate
from forewarn.storage.schema import Schema

log = logging.getLogger(__name__)


def is_embedded(dsn: str) -> bool:
    return dsn.startswith("chdb:")


def chdb_path(dsn: str) -> Path | None:
    """Directory of an on-disk chDB DSN (``chdb:///abs`` or ``chdb://rel``); None for memory."""
    rest = dsn[len("chdb://") :]
    if rest in ("", "memory", ":memory:") or rest.startswith("memory/"):
        return None
    return Path(rest)


def connect(dsn: str, database: str | None = None, **settings: Any) -> Client:
    """A new client; each thread that queries concurrently should hold its own."""
    if is_embedded(dsn):
        path = chdb_path(dsn)
        if path is not None:
            path.mkdir(parents=True, exist_ok=True)
    try:
        return clickhouse_connect.get_client(dsn=dsn, database=database, settings=settings or None)
    except Exception as e:
        raise ConnectionError(f"cannot connect to ClickHouse at {mask_dsn(dsn)}: {e}") from e


def schema_for(settings: Settings) -> Schema:
    return Schema(settings.storage.database, settings.storage.cluster)


def open_storage(settings: Settings, dsn: str | None = None, run_migrations: bool = True) -> Client:
    """Connect to the configured store and bring its schema up to date (migrations run on start)."""
    dsn = dsn or settings.storage_dsn
    if not is_embedded(dsn) and urlsplit(dsn).scheme not in ("http", "https", "clickhouse", "clickhouses"):
        raise ValueError(
            f"unsupported storage DSN {mask_dsn(dsn)!r}: use chdb:///path or http(s)://host:port"
        )
    client = connect(dsn)
    if run_migrations:
        migrate(client, schema_for(settings), settings.storage.ttl_days)
    client.database = settings.storage.database
    return client
