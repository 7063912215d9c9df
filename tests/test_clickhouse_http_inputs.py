"""Hostile input to the ClickHouse HTTP interface's parsers: every malformed request, compressed
body, SQL text or Native block ends in ClickHouse's own error, never a crash or a hang.
(Seeded random inputs, so a failure reproduces; the issue's fuzzing harnesses can reuse these entry points.)"""

from __future__ import annotations

import contextlib
import gzip
import random
import zlib

import pytest

from forewarn.clickhouse_http import codec
from forewarn.clickhouse_http.native import Unsupported, reframe
from forewarn.clickhouse_http.protocol import ClickHouseError, from_engine, parse_request
from forewarn.clickhouse_http.sql import inspect

RNG = random.Random(20261206)
ALPHABET = (
    "SELECT INSERT FORMAT INTO OUTFILE ; ' \" ` ( ) [ ] -- /* */ # $$ \\ \n\t{x:UInt8} VALUES abc 123 é"
)


def _text(n: int) -> str:
    words = ALPHABET.split(" ")
    return "".join(RNG.choice([*words, chr(RNG.randrange(0, 0x2FF))]) for _ in range(n))


def test_sql_inspection_never_fails():
    for _ in range(3000):
        sql = _text(RNG.randrange(0, 60))
        q = inspect(sql)
        assert q.statements in (0, 1, 2)
        assert q.kind == "" or isinstance(q.kind, str)


def test_request_parsing_only_raises_clickhouse_errors():
    keys = ["query", "user", "password", "param_x", "database", "default_format", "session_timeout",
            "buffer_size", "compress", "client_protocol_version", "max_threads", "", "param_"]  # fmt: skip
    for _ in range(3000):
        items = [(RNG.choice(keys), _text(RNG.randrange(0, 8))) for _ in range(RNG.randrange(0, 6))]
        headers = {}
        if RNG.random() < 0.3:
            headers["authorization"] = RNG.choice(["Basic ", "Basic !!", "Bearer x", "Basic " + _text(5)])
        if RNG.random() < 0.3:
            headers["x-clickhouse-user"] = _text(3)
        try:
            parse_request(RNG.choice(["GET", "POST"]), items, headers)
        except ClickHouseError as e:
            assert e.code > 0 and e.text("v")


@pytest.mark.parametrize("method", ["gzip", "deflate", "br", "zstd", "lz4", "xz", "bz2", "snappy", "native"])
def test_compressed_bodies_only_raise_clickhouse_errors(method):
    good = codec.encoder(method).write(b"SELECT 1" * 100) if method not in ("snappy", "native") else b""
    if method == "native":
        good = codec.NativeBlockWriter().write(b"SELECT 1" * 100)
    for _ in range(300):
        blob = bytearray(good or RNG.randbytes(64))
        for _ in range(RNG.randrange(1, 4)):
            if blob:
                blob[RNG.randrange(len(blob))] = RNG.randrange(256)
        blob = bytes(blob[: RNG.randrange(len(blob) + 1)])
        try:
            if method == "native":
                codec.read_native_blocks(blob, 10_000)
            else:
                codec.decode_body(blob, method, 10_000)
        except ClickHouseError:
            pass


def test_decompression_stops_at_the_limit():
    bomb = gzip.compress(b"\0" * 50_000_000)
    with pytest.raises(ClickHouseError, match="too large"):
        codec.decode_body(bomb, "gzip", 1_000_000)
    with pytest.raises(ClickHouseError, match="too large"):
        codec.decode_body(zlib.compress(b"\0" * 50_000_000), "deflate", 1_000_000)
    big = codec.NativeBlockWriter().write(b"\0" * 5_000_000)
    with pytest.raises(ClickHouseError, match="too large"):
        codec.read_native_blocks(big, 1_000_000)


def test_native_reframing_of_garbage_is_refused_not_crashed():
    for _ in range(2000):
        blob = RNG.randbytes(RNG.randrange(0, 80))
        with contextlib.suppress(Unsupported):
            reframe(blob, RNG.choice([54405, 54468]))


def test_engine_messages_become_errors():
    e = from_engine("Code: 60. DB::Exception: Unknown table expression identifier 'x'. (UNKNOWN_TABLE)")
    assert (e.code, e.name, e.status) == (60, "UNKNOWN_TABLE", 404)
    e = from_engine("something odd")
    assert e.code == 1002 and e.status == 500
