"""OTLP/HTTP receiver (Starlette): ``POST /v1/{traces,metrics,logs}``, protobuf or JSON, gzip or identity.

Bodies are read and decompressed as a stream with a cap, so neither a large body nor a
decompression bomb can take more than ``max_request_bytes`` (413 either way). The response
uses the request's Content-Type; errors carry a ``google.rpc.Status`` body in that encoding.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Callable

from forewarn.collector.otlp import SPECS, BadData, decode_json, decode_protobuf, to_json
from forewarn.collector.pipeline import Refusal
from forewarn.collector.receiver import HTTP_STATUS, Receiver, rpc_status
from google.protobuf.message import Message
from google.rpc import status_pb2
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
ENCODINGS = ("gzip", "deflate", "zstd", "identity")


class ByteBudget:
    """Bytes of request bodies held while they are read and decoded, over all requests at once:
    with the pipeline's queue budget this bounds the memory of many concurrent large uploads."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0

    def take(self, n: int) -> None:
        if self.used + n > self.limit:
            raise Refusal("overloaded", f"too many request bytes in flight ({self.used} of {self.limit})", 1)
        self.used += n

    def give(self, n: int) -> None:
        self.used -= n


async def read_body(
    chunks: AsyncIterator[bytes], encoding: str, limit: int, budget: ByteBudget | None = None
) -> bytes:
    """The whole body, decompressed; ``Refusal('too_large')`` as soon as either size passes ``limit``.
    What it holds is taken from ``budget``; the caller gives ``len(result)`` back when done.

    >>> import asyncio, gzip
    >>> async def one(b):
    ...     yield b
    >>> asyncio.run(read_body(one(gzip.compress(b"abc" * 10)), "gzip", 100))
    b'abcabcabcabcabcabcabcabcabcabc'
    >>> try:
    ...     asyncio.run(read_body(one(gzip.compress(b"0" * 10_000)), "gzip", 1000))
    ... except Refusal as e:
    ...     print(e.kind)
    too_large
    """
    budget = budget or ByteBudget(1 << 62)
    out = bytearray()
    try:
        await _read(chunks, encoding, limit, budget, out)
    except BaseException:
        budget.give(len(out))
        raise
    return bytes(out)


_ZLIB_WBITS = {"gzip": 31, "deflate": 15}  # a gzip member; HTTP "deflate" is a zlib stream


async def _read(
    chunks: AsyncIterator[bytes], encoding: str, limit: int, budget: ByteBudget, out: bytearray
) -> None:
    raw = 0
    wbits = _ZLIB_WBITS.get(encoding)
    dec = zlib.decompressobj(wbits=wbits) if wbits else None
    compressed = bytearray()  # zstd: decompressed at the end, through a capped reader
    async for chunk in chunks:
        raw += len(chunk)
        if raw > limit:
            raise Refusal("too_large", f"request body exceeds {limit} bytes")
        if dec is None:
            budget.take(len(chunk))
            (compressed if encoding == "zstd" else out).extend(chunk)
            continue
        data = chunk
        try:
            while data:
                part = dec.decompress(data, limit + 1 - len(out))
                budget.take(len(part))
                out += part
                if len(out) > limit or dec.unconsumed_tail:
                    raise Refusal("too_large", f"decompressed request body exceeds {limit} bytes")
                data = dec.unused_data if dec.eof and encoding == "gzip" else b""
                if data:  # a further gzip member
                    dec = zlib.decompressobj(wbits=wbits)
        except zlib.error as e:
            raise Refusal("bad_request", f"invalid {encoding} body: {e}") from None
    if dec is not None and not dec.eof and (raw or out):
        raise Refusal("bad_request", f"invalid {encoding} body: truncated stream")
    if encoding == "zstd":
        try:
            _unzstd(bytes(compressed), limit, budget, out)
        finally:
            budget.give(len(compressed))


def _unzstd(data: bytes, limit: int, budget: ByteBudget, out: bytearray) -> None:
    """zstd frames, read in bounded pieces: never more than ``limit + 1`` bytes are inflated."""
    import zstandard

    try:
        reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
        while part := reader.read(min(1 << 20, limit + 1 - len(out))):
            budget.take(len(part))
            out += part
            if len(out) > limit:
                raise Refusal("too_large", f"decompressed request body exceeds {limit} bytes")
    except zstandard.ZstdError as e:
        raise Refusal("bad_request", f"invalid zstd body: {e}") from None


class HttpReceiver:
    """Builds the Starlette app of the OTLP/HTTP port (plus the ops routes when they share it)."""

    def __init__(self, receiver: Receiver, max_request_bytes: int, max_inflight_bytes: int | None = None):
        self.receiver = receiver
        self.max_request_bytes = max_request_bytes
        self.budget = ByteBudget(max_inflight_bytes or 4 * max_request_bytes)

    def routes(self) -> list[Route]:
        return [
            Route(spec.http_path, self._endpoint(signal), methods=["POST"]) for signal, spec in SPECS.items()
        ]

    def _endpoint(self, signal: str) -> Callable[[Request], object]:
        async def endpoint(request: Request) -> Response:
            ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
            reply_type = JSON if ctype == JSON else PROTOBUF
            try:
                msg = await self._handle(signal, ctype, request)
            except Refusal as e:
                return self._refusal(signal, e, reply_type)
            self.receiver.count("http", signal, "200")
            body = to_json(msg) if reply_type == JSON else msg.SerializeToString()
            return Response(body, 200, media_type=reply_type)

        return endpoint

    async def _handle(self, signal: str, ctype: str, request: Request) -> Message:
        tenant = self.receiver.tenant_rule(self.receiver.authorize(request.headers.get("authorization")))
        if ctype not in (PROTOBUF, JSON):
            raise Refusal(
                "unsupported", f"unsupported Content-Type {ctype or '(none)'!r}: use {PROTOBUF} or {JSON}"
            )
        encoding = request.headers.get("content-encoding", "identity").strip().lower() or "identity"
        if encoding not in ENCODINGS:
            raise Refusal(
                "unsupported", f"unsupported Content-Encoding {encoding!r}: use {', '.join(ENCODINGS)}"
            )
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > self.max_request_bytes:
            raise Refusal("too_large", f"request body exceeds {self.max_request_bytes} bytes")
        try:
            self.receiver.check_memory()
        except Refusal as e:
            e.unread = True
            raise
        body = await read_body(request.stream(), encoding, self.max_request_bytes, self.budget)
        try:
            decode = decode_json if ctype == JSON else decode_protobuf
            decoded = decode(signal, body, tenant)
        except BadData as e:
            raise Refusal("bad_request", str(e)) from None
        finally:
            self.budget.give(len(body))
        return await self.receiver.export(signal, "http", decoded)

    def _refusal(self, signal: str, e: Refusal, reply_type: str) -> Response:
        code = HTTP_STATUS[e.kind]
        self.receiver.count("http", signal, str(code))
        st = rpc_status(e, with_retry_info=False)
        body = to_json(st) if reply_type == JSON else st.SerializeToString()
        headers: dict[str, str] = {}
        if e.retry_after_s is not None:
            headers["Retry-After"] = str(max(1, round(e.retry_after_s)))
        if e.kind == "unsupported":
            headers["Accept-Encoding"] = ", ".join(ENCODINGS)
            headers["Accept-Post"] = f"{PROTOBUF}, {JSON}"
        if e.kind == "unauthenticated":
            headers["WWW-Authenticate"] = "Bearer"
        if e.kind == "too_large" or e.unread:
            headers["Connection"] = "close"  # the rest of the body was not read
        return Response(body, code, headers=headers, media_type=reply_type)


def ops_routes(ready: Callable[[], bool]) -> list[Route]:
    """``/metrics`` (Prometheus), ``/healthz`` (process alive), ``/readyz`` (exporter ready, accepting)."""

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(_: Request) -> Response:
        if ready():
            return PlainTextResponse("ready\n")
        return PlainTextResponse("not ready\n", status_code=503)

    return [
        Route("/metrics", metrics, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]


# google.rpc.Code of the Status body of errors raised outside the OTLP endpoints (routing, bugs):
# HTTP 404 maps to UNIMPLEMENTED as in gRPC's HTTP mapping and the OpenTelemetry Collector; a
# method this path does not serve is UNIMPLEMENTED as well.
_ROUTING_CODES = {404: 12, 405: 12}
_INTERNAL, _UNKNOWN = 13, 2


def _reply_type(request: Request) -> str:
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return JSON if ctype == JSON else PROTOBUF


def status_response(request: Request, http_code: int, code: int, message: str, headers=None) -> Response:
    """A ``google.rpc.Status`` body in the request's encoding (OTLP: every 4xx/5xx carries one)."""
    st = status_pb2.Status(code=code, message=message)
    reply = _reply_type(request)
    body = to_json(st) if reply == JSON else st.SerializeToString()
    return Response(body, http_code, headers=headers, media_type=reply)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        paths = ", ".join(spec.http_path for spec in SPECS.values())
        message = f"no such path {request.url.path!r}: OTLP/HTTP takes POST {paths}"
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "POST")
        message = f"method {request.method} is not allowed on {request.url.path}: use {allowed}"
    else:
        message = exc.detail or "request refused"
    code = _ROUTING_CODES.get(exc.status_code, _UNKNOWN)
    return status_response(request, exc.status_code, code, message, exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    """An unexpected failure (a bug): 500 with a Status body; the server logs the error itself
    (Starlette re-raises it after this answer), the client gets no traceback."""
    return status_response(request, 500, _INTERNAL, "internal error in the collector (logged there)")


def make_app(routes: list[Route]) -> Starlette:
    """The Starlette app of a port: routing errors (404, 405) and failures (500) answer with a
    ``google.rpc.Status`` body like the OTLP endpoints, never plain text."""
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error, Exception: _server_error})
