"""OTLP/gRPC receiver (grpc.aio): the trace, metrics and logs ``Export`` methods on one server.

The handlers are registered generically with no deserializer, so they receive the raw request
bytes and the payload is decoded exactly once, by the validator. gRPC itself handles gzip and
enforces ``max_request_bytes`` on the decompressed message (RESOURCE_EXHAUSTED).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
from forewarn.collector.otlp import SPECS, BadData, decode_protobuf
from forewarn.collector.pipeline import Refusal
from forewarn.collector.receiver import GRPC_CODE, Receiver, rpc_status


def _handler(
    receiver: Receiver, signal: str
) -> Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]:
    async def export(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            metadata = dict(context.invocation_metadata() or ())
            tenant = receiver.tenant_rule(receiver.authorize(metadata.get("authorization")))
            receiver.check_memory()
            try:
                decoded = decode_protobuf(signal, request, tenant)
            except BadData as e:
                raise Refusal("bad_request", str(e)) from None
            resp = await receiver.export(signal, "grpc", decoded)
        except Refusal as e:
            code = GRPC_CODE[e.kind]
            receiver.count("grpc", signal, code.name)
            details = rpc_status(e).SerializeToString()
            await context.abort(code, e.message, trailing_metadata=(("grpc-status-details-bin", details),))
            raise  # unreachable: abort raises
        receiver.count("grpc", signal, "OK")
        return resp.SerializeToString()

    return export


def make_server(receiver: Receiver, max_request_bytes: int) -> grpc.aio.Server:
    """A grpc.aio server with the three OTLP services; bind it with ``add_insecure_port`` or, with
    TLS, ``add_secure_port``."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_request_bytes),
            ("grpc.max_send_message_length", 4 * 1024 * 1024),
            ("grpc.so_reuseport", 0),  # a second collector on the same port must fail, not share it
        ]
    )
    handlers = [
        grpc.method_handlers_generic_handler(
            spec.grpc_service,
            {"Export": grpc.unary_unary_rpc_method_handler(_handler(receiver, signal))},
        )
        for signal, spec in SPECS.items()
    ]
    server.add_generic_rpc_handlers(handlers)
    return server
