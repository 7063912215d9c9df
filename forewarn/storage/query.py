"""The one route every reading command takes to the store (``query``, ``report``, ``grafana
check``, ``flows status``, ``anomaly list``...), whether or not a running forewarn holds it.

- An embedded store held by a running ``forewarn up``/``collector`` (chDB locks its directory) is
  reached through that process: its discovery file in the data directory (or the store's owner
  file) names a loopback endpoint and token.
- An embedded store nobody holds is opened here; a directory with no store is an error that says
  so (reading never creates a store).
- A ClickHouse server is queried with clickhouse-connect.

The output format of raw SQL is passed as the engine's output-format parameter (chDB's format
argument, the HTTP interface's ``default_format``), never appended to the user's text, so a
syntax error points at what the user wrote and a ``FORMAT`` clause of their own still wins.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from forewarn import discovery
from forewarn.config import Settings, mask_dsn
from forewarn.storage.client import chdb_path, is_embedded, open_storage

# Same output whichever route runs the query: 64-bit integers as JSON numbers.
OUTPUT_SETTINGS = {"output_format_json_quote_64bit_integers": "0"}


class NoStore(LookupError):
    """A read on a data directory (or chDB path) where nothing was ever stored."""


class StoreError(RuntimeError):
    """The engine refused a query; the message is the engine's own."""


def store_exists(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def _bind(params: Mapping[str, Any] | None) -> dict[str, str]:
    """``{name:Type}`` placeholders are bound by the engine; values travel as text (arrays in
    ClickHouse's own text form, as clickhouse-connect sends them: strings single-quoted)."""
    from clickhouse_connect.driver.binding import format_bind_value

    out = {}
    for k, v in (params or {}).items():
        if isinstance(v, bool):
            v = int(v)
        out[k] = (
            v if isinstance(v, str) else format_bind_value(v) if isinstance(v, list)
            else json.dumps(v) if isinstance(v, dict) else str(v)
        )  # fmt: skip
    return out


class _ByteSource:
    """A finished Native response in the shape clickhouse-connect's parser reads."""

    def __init__(self, data: bytes):
        self.data, self.last_message, self.exception_tag = data, None, None

    @property
    def gen(self) -> Iterator[bytes]:
        yield self.data

    def close(self) -> None:
        return None


def parse_native(data: bytes, sql: str, as_pandas: bool) -> Any:
    """Typed rows or a DataFrame from Native bytes, with clickhouse-connect's own type mapping
    (the same values a direct ``client.query``/``query_df`` gives)."""
    from clickhouse_connect.driver.ctypes import RespBuffCls
    from clickhouse_connect.driver.query import QueryContext
    from clickhouse_connect.driver.transform import NativeTransform

    ctx = QueryContext(query=sql, use_numpy=as_pandas, as_pandas=as_pandas)
    result = NativeTransform.parse_response(RespBuffCls(_ByteSource(data)), ctx)
    return result.df_result if as_pandas else result


class StoreReader:
    """SQL against the store: ``raw`` for user SQL in a named output format, ``query`` and
    ``query_df`` for typed results (what the dashboards runner and Grafana annotations need)."""

    route = "direct"

    def __init__(self, database: str):
        self.database = database

    def execute(self, sql: str, fmt: str, parameters: Mapping[str, Any] | None = None) -> bytes:
        raise NotImplementedError

    def raw(self, sql: str, fmt: str, parameters: Mapping[str, Any] | None = None) -> Iterator[bytes]:
        yield self.execute(sql, fmt, parameters)

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Any:
        return parse_native(self.execute(sql, "Native", parameters), sql, as_pandas=False)

    def query_df(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Any:
        return parse_native(self.execute(sql, "Native", parameters), sql, as_pandas=True)

    def close(self) -> None:
        return None

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ChdbReader(StoreReader):
    """A chDB connection on an embedded store this process may open (or already holds)."""

    route = "embedded"

    def __init__(self, path: Path | None, database: str):
        import chdb

        super().__init__(database)
        self._conn = chdb.connect(str(path) if path is not None else ":memory:")
        for k, v in OUTPUT_SETTINGS.items():
            self._conn.query(f"SET {k} = {v}")

    def execute(self, sql: str, fmt: str, parameters: Mapping[str, Any] | None = None) -> bytes:
        with contextlib.suppress(Exception):  # without the database, database-free SQL still runs
            self._conn.query(f"USE `{self.database}`")
        try:
            result = self._conn.query(sql, fmt, params=_bind(parameters))
        except Exception as e:
            raise StoreError(str(e).strip()) from None
        return result.bytes() or b""

    def close(self) -> None:
        self._conn.close()


class GatewayReader(StoreReader):
    """The store of a running forewarn process, through its loopback query endpoint."""

    route = "running process"

    def __init__(self, owner: Mapping[str, Any], database: str):
        super().__init__(database)
        self.owner = owner

    def _post(self, sql: str, fmt: str, parameters: Mapping[str, Any] | None) -> httpx.Response:
        headers = {
            "Authorization": f"Bearer {self.owner['token']}",
            "X-Format": fmt,
            "X-Database": self.database,
        }
        if parameters:
            headers["X-Params"] = json.dumps(_bind(parameters))
        return httpx.post(
            self.owner["url"], content=sql.encode(), headers=headers, timeout=httpx.Timeout(10.0, read=None)
        )

    def execute(self, sql: str, fmt: str, parameters: Mapping[str, Any] | None = None) -> bytes:
        try:
            r = self._post(sql, fmt, parameters)
        except httpx.HTTPError as e:
            raise StoreError(
                f"the running forewarn (pid {self.owner.get('pid')}) did not answer at {self.owner['url']}: {e}"
            ) from None
        if r.status_code != 200:
            raise StoreError(r.text.strip())
        return r.content


class ServerReader(StoreReader):
    """A ClickHouse server through clickhouse-connect."""

    route = "server"

    def __init__(self, client: Any, database: str):
        super().__init__(database)
        self.client = client

    def execute(self, sql: str, fmt: str, parameters: Mapping[str, Any] | None = None) -> bytes:
        settings = {"default_format": fmt, **OUTPUT_SETTINGS}
        try:
            return self.client.raw_query(sql, parameters=dict(parameters or {}), settings=settings)
        except Exception as e:
            raise StoreError(str(e).strip()) from None

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Any:
        return self.client.query(sql, parameters=dict(parameters or {}))

    def query_df(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Any:
        return self.client.query_df(sql, parameters=dict(parameters or {}))

    def close(self) -> None:
        self.client.close()


def store_owner(settings: Settings) -> dict[str, Any] | None:
    """The live process that holds this embedded store: the discovery file of ``data_dir``
    first, then the owner file beside the store (a store given by ``--storage`` elsewhere)."""
    from forewarn.storage.gateway import find_owner

    dsn = settings.storage_dsn
    path = chdb_path(dsn)
    if path is None:
        return None
    info = discovery.read(settings.data_dir)
    store = (info or {}).get("store") or {}
    if store.get("url") and store.get("path") == str(path.resolve()):
        return {**store, "pid": info["pid"]}
    return find_owner(dsn)


def no_store_message(settings: Settings, path: Path) -> str:
    running = discovery.read(settings.data_dir)
    hint = (
        f" (a forewarn process, pid {running['pid']}, runs on {settings.data_dir} with another store)"
        if running
        else f"; is forewarn running with another --data-dir? Start it with `forewarn up --data-dir {settings.data_dir}`"
    )
    return f"no forewarn store in {path}: nothing has been stored there yet{hint}"


def open_reader(settings: Settings) -> StoreReader:
    """The store of these settings, by the route described in the module docstring."""
    dsn = settings.storage_dsn
    db = settings.storage.database
    if is_embedded(dsn):
        if owner := store_owner(settings):
            return GatewayReader(owner, db)
        path = chdb_path(dsn)
        if path is not None and not store_exists(path):
            raise NoStore(no_store_message(settings, path))
        try:
            open_storage(settings, dsn).close()  # an existing store is brought up to date first
            return ChdbReader(path, db)
        except Exception as e:
            if "lock" in str(e).lower():
                raise StoreError(
                    f"the store {path} is locked by another process that offers no query endpoint "
                    "(an older forewarn, or another chDB program); stop it, or query a copy"
                ) from None
            raise StoreError(f"cannot open the store {path}: {e}") from None
    try:
        client = open_storage(settings, dsn, run_migrations=False)
    except Exception as e:
        raise StoreError(f"cannot reach the store {mask_dsn(dsn)}: {e}") from None
    return ServerReader(client, db)


def run_query(settings: Settings, sql: str, fmt: str) -> Iterator[bytes]:
    """Yield the result of ``sql`` in ClickHouse format ``fmt`` (see :func:`open_reader`)."""
    with open_reader(settings) as reader:
        yield from reader.raw(sql, fmt)
