"""Fuzz the ClickHouse HTTP interface's request parsing (``forewarn/clickhouse_http``): URL
parameters and credential headers, SQL inspection, compressed request bodies (HTTP encodings
and ClickHouse's own compressed blocks), Native blocks re-framed for a client's protocol
revision, and engine error texts.

Input: one byte choosing the parser, then its input. The clean refusals are ClickHouse's own
errors (:class:`ClickHouseError`, and :class:`Unsupported` for a Native block it cannot
re-frame); SQL inspection and error parsing must never fail. Decoded bodies stay under the limit.
"""

from __future__ import annotations

import sys
from urllib.parse import parse_qsl

import atheris

with atheris.instrument_imports(include=["forewarn"]):
    from forewarn.clickhouse_http import codec
    from forewarn.clickhouse_http.native import Unsupported, reframe
    from forewarn.clickhouse_http.protocol import ClickHouseError, from_engine, parse_request
    from forewarn.clickhouse_http.sql import inspect

from common import keep_crashes

ENCODINGS = ["gzip", "deflate", "br", "zstd", "lz4", "xz", "bz2", "snappy", "identity", "gzip, br", ""]
LIMIT = 1 << 20
REVISIONS = [0, 54405, 54454, 54460, 54470]


@keep_crashes
def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    kind, arg, rest = data[0] % 6, data[1], data[2:]
    text = rest.decode("utf-8", "replace")
    try:
        if kind == 0:
            # "query string\n\nheaders": the URL parameters, then Authorization / X-ClickHouse-* values
            qs, _, head = text.partition("\n\n")
            values = head.split("\n")
            headers = {
                k: v
                for k, v in zip(
                    ("authorization", "x-clickhouse-user", "x-clickhouse-key"), values, strict=False
                )
                if v
            }
            r = parse_request("POST" if arg & 1 else "GET", parse_qsl(qs, keep_blank_values=True), headers)
            assert isinstance(r.query, str) and isinstance(r.settings, dict)
        elif kind == 1:
            q = inspect(text)
            assert q.statements >= 0
        elif kind == 2:
            out = codec.decode_body(rest, ENCODINGS[arg % len(ENCODINGS)], LIMIT)
            assert len(out) <= LIMIT
        elif kind == 3:
            out = codec.read_native_blocks(rest, LIMIT, verify=bool(arg & 1))
            assert len(out) <= LIMIT
        elif kind == 4:
            reframe(rest, REVISIONS[arg % len(REVISIONS)])
        else:
            e = from_engine(text)
            assert isinstance(e, ClickHouseError) and e.code > 0
    except (ClickHouseError, Unsupported):
        if kind in (1, 5):
            raise


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
