"""What both transports do with an export request: authorize it, validate it, wait until it is durable.

HTTP and gRPC differ only in framing and in how a ``Refusal`` is spelled (status code vs. gRPC
code); everything else happens here once, including the collector's own accounting.

>>> r = Receiver(pipeline=None, tokens=["s3cret"])
>>> r.authorize("Bearer s3cret")
>>> try:
...     r.authorize("Bearer guess")
... except Refusal as e:
...     print(e.kind)
unauthenticated
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from datetime import timedelta

import grpc
from forewarn.collector import telemetry as m
from forewarn.collector.otlp import Decoded, export_response
from forewarn.collector.pipeline import Pipeline, Refusal
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2


class Receiver:
    """Transport-independent handling of one OTLP export request."""

    def __init__(self, pipeline: Pipeline | None, tokens: Sequence[str] = ()):
        self.pipeline = pipeline
        self._tokens = [f"Bearer {t}".encode() for t in tokens]

    def authorize(self, authorization: str | None) -> None:
        """Check the bearer token in constant time (every configured token is compared)."""
        if not self._tokens:
            return
        given = (authorization or "").strip().encode()
        ok = False
        for expected in self._tokens:
            ok |= hmac.compare_digest(given, expected)
        if not ok:
            raise Refusal("unauthenticated", "missing or invalid bearer token")

    async def export(self, signal: str, transport: str, decoded: Decoded) -> Message:
        """Commit the accepted items; the response carries partial success for rejected ones."""
        m.RECEIVED.labels(signal, transport).inc(decoded.items + decoded.rejected)
        if decoded.rejected:
            m.REJECTED.labels(signal, "invalid").inc(decoded.rejected)
        if decoded.items:
            assert self.pipeline is not None
            try:
                await self.pipeline.submit(signal, decoded.payload, decoded.items)
            except Refusal as e:
                m.REJECTED.labels(signal, e.kind).inc(decoded.items)
                raise
            m.ACCEPTED.labels(signal).inc(decoded.items)
        return export_response(signal, decoded.rejected, decoded.error_message)

    @staticmethod
    def count(transport: str, signal: str, status: str) -> None:
        m.REQUESTS.labels(transport, signal, status).inc()


# How each Refusal kind is spelled on the wire: HTTP status (OTLP/HTTP) and gRPC code (OTLP/gRPC).
HTTP_STATUS = {
    "bad_request": 400,
    "unauthenticated": 401,
    "too_large": 413,
    "unsupported": 415,
    "overloaded": 429,
    "unavailable": 503,
}
GRPC_CODE = {
    "bad_request": grpc.StatusCode.INVALID_ARGUMENT,
    "unauthenticated": grpc.StatusCode.UNAUTHENTICATED,
    "too_large": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "unsupported": grpc.StatusCode.INVALID_ARGUMENT,
    "overloaded": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
}


def rpc_status(refusal: Refusal, with_retry_info: bool = True) -> status_pb2.Status:
    """The ``google.rpc.Status`` of a refusal; retryable ones carry a ``RetryInfo`` detail."""
    st = status_pb2.Status(code=GRPC_CODE[refusal.kind].value[0], message=refusal.message)
    if with_retry_info and refusal.retry_after_s is not None:
        info = error_details_pb2.RetryInfo()
        info.retry_delay.FromTimedelta(timedelta(seconds=refusal.retry_after_s))
        st.details.add().Pack(info)
    return st
