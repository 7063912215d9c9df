"""What both transports do with an export request: authorize it, validate it, wait until it is durable.

HTTP and gRPC differ only in framing and in how a ``Refusal`` is spelled (status code vs. gRPC
code); everything else happens here once, including the collector's own accounting.

>>> r = Receiver(pipeline=None, tokens=["s3cret"], tenants={"team-a": ["a-token"]})
>>> r.authorize("Bearer s3cret"), r.authorize("Bearer a-token")
(None, 'team-a')
>>> try:
...     r.authorize("Bearer guess")
... except Refusal as e:
...     print(e.kind)
unauthenticated
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from datetime import timedelta

import grpc
from forewarn.collector import telemetry as m
from forewarn.collector.otlp import KEEP, Decoded, Tenant, export_response
from forewarn.collector.pipeline import Pipeline, Refusal
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2


class Receiver:
    """Transport-independent handling of one OTLP export request."""

    def __init__(
        self,
        pipeline: Pipeline | None,
        tokens: Sequence[str] = (),
        tenants: Mapping[str, Sequence[str]] | None = None,
    ):
        self.pipeline = pipeline
        # (expected header, tenant); tokens of auth_tokens have no tenant
        self._tokens: list[tuple[bytes, str | None]] = [(f"Bearer {t}".encode(), None) for t in tokens]
        for tenant, secrets in (tenants or {}).items():
            self._tokens += [(f"Bearer {t}".encode(), tenant) for t in secrets]
        self.stamps_tenants = bool(tenants)

    def authorize(self, authorization: str | None) -> str | None:
        """The tenant of the bearer token (None: a token without one, or no auth configured); raises
        unauthenticated otherwise. Constant time: every configured token is compared, always."""
        if not self._tokens:
            return None
        given = (authorization or "").strip().encode()
        found: str | None = None
        ok = False
        for expected, tenant in self._tokens:
            match = hmac.compare_digest(given, expected)
            ok |= match
            if match:
                found = tenant
        if not ok:
            raise Refusal("unauthenticated", "missing or invalid bearer token")
        return found

    def tenant_rule(self, tenant: str | None) -> Tenant:
        """What decoding does with ``forewarn.tenant``: set it to the token's tenant, remove a
        client's own (token without a tenant), or, with no tenants configured, leave it alone."""
        return tenant if self.stamps_tenants else KEEP

    def check_memory(self) -> None:
        """Refuse (overloaded) before a body is read or decoded while memory is above its soft limit."""
        if self.pipeline is not None:
            self.pipeline.check_memory()

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
