"""The ClickHouse HTTP interface (port 8123) over the embedded store this process holds.

It runs in a thread with its own event loop, so it serves the same way inside ``forewarn up``,
``forewarn collector`` and the Kafka ingester, and its request parsing never competes with the
collector's loop. Queries run in worker threads on their own chDB handles (see ``engine``), at
most ``max_concurrent_queries`` at once: the engine runs them in parallel with ingest, and each
is bounded in time and memory, so a dashboard can slow ingest down but never stall it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import socket
import string
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from forewarn.clickhouse_http import codec
from forewarn.clickhouse_http.auth import Users
from forewarn.clickhouse_http.engine import Engine, Job, Outcome, next_chunk
from forewarn.clickhouse_http.native import Unsupported, reframe
from forewarn.clickhouse_http.protocol import (
    HTTP_LENGTH_REQUIRED,
    INTO_OUTFILE_NOT_ALLOWED,
    NOT_IMPLEMENTED,
    QUERY_IS_TOO_LARGE,
    READONLY,
    STREAMABLE_FORMATS,
    SYNTAX_ERROR,
    TOO_MANY_SIMULTANEOUS_QUERIES,
    UNKNOWN_TYPE_OF_QUERY,
    ClickHouseError,
    Request,
    content_type,
    parse_request,
)
from forewarn.clickhouse_http.sql import RESULT_KINDS, WRITE_KINDS, inspect
from forewarn.config import ClickHouseHTTPSettings
from forewarn.net import listen_sockets

log = logging.getLogger(__name__)

DEFAULT_FORMAT = "TabSeparated"
MIN_BUFFER = 1 << 20  # ClickHouse holds back at least this much of a result before answering
DEFAULT_MAX_QUERY_SIZE = 262144
_TAG_CHARS = string.ascii_lowercase + string.digits
_QUERY_ID = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,254}")


def exception_block(tag: str, text: str) -> bytes:
    """An error after the status line went out, framed as ClickHouse 25.11+ frames it in the body."""
    msg = text.encode()
    return (
        b"\r\n__exception__\r\n"
        + f"{tag}\r\n".encode()
        + msg
        + f"\r\n{len(msg)} {tag}\r\n__exception__\r\n".encode()
    )


class _Output:
    """Response bytes through ClickHouse-native blocks (``compress=1``), then HTTP compression."""

    def __init__(self, native: bool, http_method: str | None, level: int, revision: int = 0):
        self.native = codec.NativeBlockWriter() if native else None
        self.http = codec.encoder(http_method, level) if http_method else None
        self.revision = revision  # Native blocks re-framed for this client_protocol_version

    def write(self, data: bytes, result: bool = True) -> bytes:
        if self.revision and result and data:
            try:
                data = reframe(data, self.revision)
            except Unsupported as e:
                raise ClickHouseError(
                    NOT_IMPLEMENTED, f"Cannot write Native for client_protocol_version {self.revision}: {e}"
                ) from None
        if self.native is not None:
            data = self.native.write(data)
        return self.http.write(data) if self.http is not None and data else data

    def flush(self) -> bytes:
        return self.http.flush() if self.http is not None else b""


class _Pump:
    """A streaming result read block by block from worker threads; closing waits for the read
    in flight (a handle is never used by two threads at once)."""

    def __init__(self, outcome: Outcome):
        self.outcome = outcome
        self._it: Iterator[bytes] = outcome.chunks or iter(())
        self._lock = threading.Lock()
        self._closed = False
        self._finished = False

    def next(self) -> bytes | None:
        with self._lock:
            if self._closed:
                return None
            try:
                chunk = next_chunk(self._it)
            except ClickHouseError:
                self._finished = True  # the engine ended the query; its handle is reusable
                raise
            if chunk is None:
                self._finished = True
            return chunk

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                if self.outcome.close is not None:
                    self.outcome.close(self._finished)


class ClickHouseHTTP:
    """The ASGI application; :class:`ClickHouseHTTPServer` runs it."""

    def __init__(self, cfg: ClickHouseHTTPSettings, engine: Engine, default_database: str | None):
        self.cfg = cfg
        self.engine = engine
        self.users = Users(cfg)
        self.default_database = default_database
        self.display_name = cfg.display_name or socket.gethostname()
        self.limiter = anyio.CapacityLimiter(cfg.max_concurrent_queries + 2)
        self._slots: asyncio.Semaphore | None = None
        self.app = Starlette(
            routes=[
                Route("/", self.root, methods=["GET", "POST", "HEAD"]),
                Route("/ping", self.ping, methods=["GET", "HEAD"]),
                Route("/replicas_status", self.ping, methods=["GET", "HEAD"]),
            ]
        )

    # -- helpers ----------------------------------------------------------------------------------
    def _headers(self, query_id: str, tag: str) -> dict[str, str]:
        return {
            "X-ClickHouse-Server-Display-Name": self.display_name,
            "X-ClickHouse-Query-Id": query_id,
            "X-ClickHouse-Timezone": self.engine.timezone,
            "X-ClickHouse-Exception-Tag": tag,
            "Access-Control-Expose-Headers": "X-ClickHouse-Query-Id,X-ClickHouse-Summary,"
            "X-ClickHouse-Server-Display-Name,X-ClickHouse-Format,X-ClickHouse-Timezone,"
            "X-ClickHouse-Exception-Code,X-ClickHouse-Exception-Tag",
        }

    def _error(self, e: ClickHouseError, query_id: str, tag: str) -> Response:
        headers = self._headers(query_id, tag)
        headers["X-ClickHouse-Exception-Code"] = str(e.code)
        body = (e.text(self.engine.version) + "\n").encode()
        return Response(body, status_code=e.status, headers=headers, media_type="text/plain; charset=UTF-8")

    async def ping(self, request: HTTPRequest) -> Response:
        return Response(b"Ok.\n", media_type="text/plain; charset=UTF-8")

    async def root(self, request: HTTPRequest) -> Response:
        if request.method != "POST" and "query" not in request.query_params:
            return Response(b"Ok.\n", media_type="text/plain; charset=UTF-8")
        query_id = request.query_params.get("query_id") or request.headers.get("x-clickhouse-query-id") or ""
        if not _QUERY_ID.fullmatch(query_id):  # it is echoed in a header: printable ASCII only
            query_id = str(uuid.uuid4())
        tag = "".join(secrets.choice(_TAG_CHARS) for _ in range(16))
        try:
            return await self._query(request, query_id, tag)
        except ClickHouseError as e:
            return self._error(e, query_id, tag)
        except Exception as e:  # a bug of ours still answers in ClickHouse's shape
            log.exception("ClickHouse HTTP interface: query %s failed", query_id)
            return self._error(ClickHouseError(1002, f"{type(e).__name__}: {e}"), query_id, tag)

    async def _body(self, request: HTTPRequest) -> bytes:
        limit = self.cfg.max_request_bytes
        length = request.headers.get("content-length")
        if (
            request.method == "POST"
            and length is None
            and "chunked" not in request.headers.get("transfer-encoding", "")
        ):
            raise ClickHouseError(
                HTTP_LENGTH_REQUIRED,
                "The Transfer-Encoding is not chunked and there is no Content-Length header for POST request",
            )
        if length is not None and length.isdigit() and int(length) > limit:
            raise ClickHouseError(
                QUERY_IS_TOO_LARGE, f"Request body of {length} bytes is larger than {limit}"
            )
        parts, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise ClickHouseError(QUERY_IS_TOO_LARGE, f"Request body is larger than {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)

    async def _query(self, request: HTTPRequest, query_id: str, tag: str) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        r = parse_request(request.method, request.query_params.multi_items(), headers)
        r.query_id = query_id
        user = self.users.authenticate(r.user, r.password)
        level = self.users.readonly_level(user, request.method)
        settings = self.users.check_settings(user, r.settings, request.method, self.engine.defaults)
        # The slot is taken before the body is read: what requests hold in memory is bounded by
        # max_concurrent_queries x max_request_bytes, not by the number of connections.
        await self._slot()
        assert self._slots is not None
        held = [True]
        try:
            return await self._run(request, r, headers, user.name, level, settings, query_id, tag, held)
        finally:
            if held[0]:
                self._slots.release()

    async def _run(
        self,
        request: HTTPRequest,
        r: Request,
        headers: dict[str, str],
        user: str,
        level: int,
        settings: dict[str, str],
        query_id: str,
        tag: str,
        held: list[bool],
    ) -> Response:
        body = await self._body(request) if request.method == "POST" else b""
        limit = self.cfg.max_request_bytes
        if body and headers.get("content-encoding"):
            body = codec.decode_body(body, headers["content-encoding"], limit)
        if body and r.decompress:
            verify = settings.get("http_native_compression_disable_checksumming_on_decompress", "0") in (
                "0",
                "false",
            )
            body = codec.read_native_blocks(body, limit, verify=verify)
        sql = self._sql(r, body)
        max_size = _int(
            settings.get("max_query_size"),
            _int(self.engine.defaults.get("max_query_size"), DEFAULT_MAX_QUERY_SIZE),
        )
        text = sql[: max_size + 1].decode("utf-8", errors="replace")
        q = inspect(text)
        if len(sql) > max_size and not (q.kind == "INSERT" and 0 <= q.data_at <= max_size):
            raise ClickHouseError(
                SYNTAX_ERROR, f"Max query size exceeded: the query is longer than {max_size} bytes"
            )
        self._check(q, text, user, level)
        fmt = q.format or r.default_format or DEFAULT_FORMAT
        result_set = q.kind in RESULT_KINDS
        stream = result_set and fmt.lower() in STREAMABLE_FORMATS and not r.wait_end_of_query
        if not stream and level:
            settings.setdefault("max_result_bytes", str(self.cfg.max_result_bytes))
            settings.setdefault("result_overflow_mode", "throw")
        if level:
            settings.setdefault("max_execution_time", _num(self.cfg.max_execution_time_s))
        settings.setdefault("max_memory_usage", str(self.cfg.max_memory_usage))
        job = Job(
            sql=sql,
            fmt=r.default_format or DEFAULT_FORMAT,
            settings=settings,
            params=r.params,
            database=r.database or self.default_database,
            readonly=level,
            stream=stream,
        )
        level_c = _int(settings.get("http_zlib_compression_level"), 3)
        enable = settings.get(
            "enable_http_compression", self.engine.defaults.get("enable_http_compression", "0")
        )
        method = (
            codec.negotiate(headers.get("accept-encoding"))
            if enable.strip().lower() in ("1", "true")
            else None
        )
        revision = r.client_protocol_version if result_set and fmt == "Native" else 0
        out = _Output(r.compress, method, level_c, revision)
        resp_headers = self._headers(query_id, tag)
        if result_set:
            resp_headers["X-ClickHouse-Format"] = fmt
        if method:
            resp_headers["Content-Encoding"] = method
        media = content_type(fmt) if result_set else "text/plain; charset=UTF-8"
        if r.compress:
            media = "application/octet-stream"
        return await self._execute(job, r, out, resp_headers, media, tag, held)

    def _sql(self, r: Request, body: bytes) -> bytes:
        """The query as ClickHouse assembles it: the ``query`` parameter, a newline, the body.
        Bytes, so binary INSERT data (RowBinary, Native) reaches the engine untouched."""
        if r.has_query_param:
            return r.query.encode() + (b"\n" + body if body else b"")
        return body

    def _check(self, q: Any, sql: str, user: str, level: int) -> None:
        if q.statements == 0:
            raise ClickHouseError(SYNTAX_ERROR, "Empty query")
        if q.statements > 1:
            raise ClickHouseError(
                SYNTAX_ERROR,
                f"Syntax error (Multi-statements are not allowed): failed at position {q.second_at + 1} "
                f"(end of query): {sql[q.second_at : q.second_at + 40]!r}",
            )
        if q.into_outfile:
            raise ClickHouseError(INTO_OUTFILE_NOT_ALLOWED, "INTO OUTFILE is not allowed")
        if q.from_infile:
            raise ClickHouseError(UNKNOWN_TYPE_OF_QUERY, "Query has infile and was send directly to server")
        if level and q.kind in WRITE_KINDS:
            raise ClickHouseError(READONLY, f"{user}: Cannot execute query in readonly mode")

    async def _slot(self) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.cfg.max_concurrent_queries)
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout=self.cfg.queue_timeout_s or 0.001)
        except TimeoutError:
            raise ClickHouseError(
                TOO_MANY_SIMULTANEOUS_QUERIES,
                f"Too many simultaneous queries. Maximum: {self.cfg.max_concurrent_queries}",
            ) from None

    async def _execute(
        self,
        job: Job,
        r: Request,
        out: _Output,
        headers: dict[str, str],
        media: str,
        tag: str,
        held: list[bool],
    ) -> Response:
        assert self._slots is not None
        slots, loop = self._slots, asyncio.get_running_loop()

        def release() -> None:
            loop.call_soon_threadsafe(slots.release)

        outcome = await anyio.to_thread.run_sync(self.engine.run, job, limiter=self.limiter)
        if outcome.chunks is None:
            headers["X-ClickHouse-Summary"] = orjson.dumps(outcome.summary).decode()
            body = out.write(outcome.body) + out.flush()
            return Response(body, headers=headers, media_type=media)
        pump = _Pump(outcome)
        buffered: list[bytes] = []
        size, done = 0, False
        limit = min(max(r.buffer_size or 0, MIN_BUFFER), self.cfg.max_result_bytes)
        try:
            while size < limit:
                chunk = await anyio.to_thread.run_sync(pump.next, limiter=self.limiter)
                if chunk is None:
                    done = True
                    break
                buffered.append(chunk)
                size += len(chunk)
            headers["X-ClickHouse-Summary"] = orjson.dumps(outcome.summary).decode()
            if done:
                await anyio.to_thread.run_sync(pump.close, limiter=self.limiter)
                body = out.write(b"".join(buffered)) + out.flush()
                return Response(body, headers=headers, media_type=media)
            first = out.write(b"".join(buffered))  # a re-framing error still gets its HTTP status
        except BaseException:
            await anyio.to_thread.run_sync(pump.close, limiter=self.limiter)
            raise
        held[0] = False  # the stream releases the slot when it ends
        return StreamingResponse(
            self._stream(pump, first, out, tag, release), headers=headers, media_type=media
        )

    async def _stream(
        self, pump: _Pump, first: bytes, out: _Output, tag: str, release: Any
    ) -> AsyncIterator[bytes]:
        try:
            yield first
            while True:
                chunk = await anyio.to_thread.run_sync(pump.next, limiter=self.limiter)
                if chunk is None:
                    break
                data = out.write(chunk)
                if data:
                    yield data
            yield out.flush()
        except ClickHouseError as e:
            log.info("query failed after its first bytes were sent: %s", e.message.splitlines()[0][:300])
            yield out.write(exception_block(tag, e.text(self.engine.version)), result=False) + out.flush()
        finally:
            # Close off the loop: a read still in flight in a worker finishes first.
            def close_and_release() -> None:
                try:
                    pump.close()
                finally:
                    release()

            threading.Thread(target=close_and_release, name="chhttp-close", daemon=True).start()


def _int(v: str | None, default: int) -> int:
    try:
        return int(v) if v is not None else default
    except ValueError:
        return default


def _num(v: float) -> str:
    return str(int(v)) if v == int(v) else str(v)


class _Uvicorn(uvicorn.Server):
    """uvicorn without signal handlers: the process that embeds it owns shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ClickHouseHTTPServer:
    """Serves :class:`ClickHouseHTTP` on ``host:port`` (``port=0``: any free port) in its own thread."""

    def __init__(self, cfg: ClickHouseHTTPSettings, dsn: str, database: str | None, port: int | None = None):
        self.cfg = cfg
        self.host = cfg.host
        self.port = cfg.port if port is None else port
        self.engine = Engine(dsn)
        self.app = ClickHouseHTTP(cfg, self.engine, database)
        self._server: _Uvicorn | None = None
        self._thread: threading.Thread | None = None
        self._reloader: Any = None
        self.scheme = "https" if cfg.tls.enabled else "http"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def start(self) -> None:
        socks = listen_sockets(self.host, self.port)
        self.port = socks[0].getsockname()[1]
        config = uvicorn.Config(
            self.app.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=10,
            h11_max_incomplete_event_size=1024 * 1024,
            limit_concurrency=max(64, self.cfg.max_concurrent_queries * 8),
        )
        if self.cfg.tls.enabled:
            from forewarn.tls import CertReloader, server_context

            ctx = server_context(self.cfg.tls)
            config.ssl_certfile = str(self.cfg.tls.cert_file)  # makes uvicorn report https
            config.ssl_keyfile = str(self.cfg.tls.key_file)
            config.load()
            config.ssl = ctx
            self._reloader = CertReloader(ctx, self.cfg.tls)
        server = _Uvicorn(config)
        self._server = server
        error: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(server.serve(sockets=socks))
            except BaseException as e:  # surfaced by start()
                error.append(e)

        self._thread = threading.Thread(target=run, name="clickhouse-http", daemon=True)
        self._thread.start()
        while not server.started:
            if not self._thread.is_alive():
                for s in socks:
                    s.close()
                raise OSError(f"ClickHouse HTTP interface on {self.url} stopped during start: {error[:1]}")
            self._thread.join(0.01)
        log.info("ClickHouse HTTP interface on %s (users: %s)", self.url, ", ".join(self.app.users.names()))

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(15)
        if self._reloader is not None:
            self._reloader.close()
        self.engine.close()
