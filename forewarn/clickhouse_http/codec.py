"""Compression on the ClickHouse HTTP interface: HTTP content codings and ClickHouse's own blocks.

HTTP compression (``Content-Encoding`` on requests; ``Accept-Encoding`` plus the setting
``enable_http_compression=1`` on responses) uses the standard codecs: gzip, deflate (zlib), br,
zstd, lz4 (frame format), xz and bz2. ClickHouse-native compression (``compress=1`` on the
response, ``decompress=1`` on the request body) is a sequence of blocks, each::

    16 bytes  CityHash128 (v1.0.2) of the rest of the block, as two UInt64 LE
     1 byte   method: 0x82 LZ4, 0x90 ZSTD, 0x02 none
     4 bytes  compressed size including these 9 header bytes (UInt32 LE)
     4 bytes  uncompressed size (UInt32 LE)
     ...      the compressed data (LZ4 block format, not frame)

Every decoder stops at a size limit, so a small compressed body cannot expand without bound.

>>> enc = NativeBlockWriter()
>>> data = enc.write(b"hello " * 100) + enc.flush()
>>> read_native_blocks(data, limit=10_000)[:11]
b'hello hello'
>>> negotiate("gzip, deflate, br;q=0, zstd")
'zstd'
"""

from __future__ import annotations

import bz2
import lzma
import struct
import zlib
from typing import Protocol

import brotli
import lz4.block
import lz4.frame
import zstandard
from clickhouse_cityhash.cityhash import CityHash128

from forewarn.clickhouse_http.protocol import (
    CANNOT_DECOMPRESS,
    CHECKSUM_DOESNT_MATCH,
    QUERY_IS_TOO_LARGE,
    UNKNOWN_COMPRESSION_METHOD,
    ClickHouseError,
)

# Preference when a client accepts several (the order ClickHouse's server prefers them in).
PREFERENCE = ("zstd", "br", "lz4", "gzip", "deflate", "xz", "bz2")
_ALIASES = {"x-gzip": "gzip", "zstandard": "zstd", "brotli": "br", "lzma": "xz", "bzip2": "bz2"}


def negotiate(accept_encoding: str | None) -> str | None:
    """The content coding to answer with, from an ``Accept-Encoding`` header (q=0 excludes)."""
    if not accept_encoding:
        return None
    accepted = set()
    for part in accept_encoding.split(","):
        name, _, params = part.strip().partition(";")
        name = _ALIASES.get(name.strip().lower(), name.strip().lower())
        q = 1.0
        for p in params.split(";"):
            k, _, v = p.strip().partition("=")
            if k.strip().lower() == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        if q > 0:
            accepted.add(name)
    return next((m for m in PREFERENCE if m in accepted), None)


class Encoder(Protocol):
    def write(self, data: bytes) -> bytes: ...
    def flush(self) -> bytes: ...


class _Zlib:
    def __init__(self, level: int, wbits: int):
        self._c = zlib.compressobj(max(1, min(level, 9)), zlib.DEFLATED, wbits)

    def write(self, data: bytes) -> bytes:
        # A sync flush per chunk: a streamed response reaches the client as it is produced.
        return self._c.compress(data) + self._c.flush(zlib.Z_SYNC_FLUSH)

    def flush(self) -> bytes:
        return self._c.flush()


class _Brotli:
    def __init__(self, level: int):
        self._c = brotli.Compressor(quality=max(0, min(level, 11)))

    def write(self, data: bytes) -> bytes:
        return self._c.process(data) + self._c.flush()

    def flush(self) -> bytes:
        return self._c.finish()


class _Zstd:
    def __init__(self, level: int):
        self._c = zstandard.ZstdCompressor(level=max(1, min(level, 19))).compressobj()

    def write(self, data: bytes) -> bytes:
        return self._c.compress(data) + self._c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)

    def flush(self) -> bytes:
        return self._c.flush()


class _Lz4Frame:
    def __init__(self) -> None:
        self._c = lz4.frame.LZ4FrameCompressor(auto_flush=True)
        self._head = self._c.begin()

    def write(self, data: bytes) -> bytes:
        head, self._head = self._head, b""
        return head + self._c.compress(data)

    def flush(self) -> bytes:
        return self._head + self._c.flush()


class _Simple:
    def __init__(self, c: lzma.LZMACompressor | bz2.BZ2Compressor):
        self._c = c

    def write(self, data: bytes) -> bytes:
        return self._c.compress(data)

    def flush(self) -> bytes:
        return self._c.flush()


def encoder(method: str, level: int = 3) -> Encoder:
    """A streaming encoder for a content coding chosen by :func:`negotiate`."""
    if method == "gzip":
        return _Zlib(level, 31)
    if method == "deflate":
        return _Zlib(level, 15)
    if method == "br":
        return _Brotli(level)
    if method == "zstd":
        return _Zstd(level)
    if method == "lz4":
        return _Lz4Frame()
    if method == "xz":
        return _Simple(lzma.LZMACompressor())
    if method == "bz2":
        return _Simple(bz2.BZ2Compressor())
    raise ValueError(method)


def _too_large(limit: int) -> ClickHouseError:
    return ClickHouseError(
        QUERY_IS_TOO_LARGE, f"Request body is too large after decompression: more than {limit} bytes"
    )


def decode_body(data: bytes, content_encoding: str | None, limit: int) -> bytes:
    """The request body with its ``Content-Encoding`` undone, at most ``limit`` bytes."""
    methods = [m.strip().lower() for m in (content_encoding or "").split(",") if m.strip()]
    for m in reversed(methods):  # codings are listed in the order they were applied
        m = _ALIASES.get(m, m)
        try:
            data = _decode_one(data, m, limit)
        except ClickHouseError:
            raise
        except Exception as e:
            raise ClickHouseError(
                CANNOT_DECOMPRESS, f"Cannot decompress the request body ({m}): {e}"
            ) from None
        if len(data) > limit:
            raise _too_large(limit)
    return data


def _decode_one(data: bytes, method: str, limit: int) -> bytes:
    if method in ("identity", "none"):
        return data
    if method in ("gzip", "deflate"):
        d = zlib.decompressobj(47)  # zlib or gzip header, auto-detected
        out = d.decompress(data, limit + 1)
        if not d.eof and len(out) <= limit:
            raise ValueError("truncated stream")
        return out
    if method == "br":
        b = brotli.Decompressor()
        out = b.process(data, output_buffer_limit=limit + 1)
        return out
    if method == "zstd":
        import io

        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)) as r:
            return r.read(limit + 1)
    if method == "lz4":
        return lz4.frame.LZ4FrameDecompressor().decompress(data, max_length=limit + 1)
    if method == "xz":
        return lzma.LZMADecompressor().decompress(data, max_length=limit + 1)
    if method == "bz2":
        return bz2.BZ2Decompressor().decompress(data, max_length=limit + 1)
    raise ClickHouseError(UNKNOWN_COMPRESSION_METHOD, f"Unknown HTTP compression method: {method}")


# ClickHouse-native compressed blocks ----------------------------------------------------------------
LZ4, ZSTD, NONE = 0x82, 0x90, 0x02
_HEADER = struct.Struct("<BII")
BLOCK_SIZE = 1 << 20  # DBMS_DEFAULT_BUFFER_SIZE: ClickHouse compresses its output per MiB


def _checksum(block: bytes) -> bytes:
    h = CityHash128(block)
    return struct.pack("<QQ", h >> 64, h & 0xFFFF_FFFF_FFFF_FFFF)


def compress_block(data: bytes, method: int = LZ4) -> bytes:
    if method == LZ4:
        payload = lz4.block.compress(data, store_size=False)
    elif method == ZSTD:
        payload = zstandard.ZstdCompressor(level=1).compress(data)
    else:
        payload = data
    block = _HEADER.pack(method, len(payload) + _HEADER.size, len(data)) + payload
    return _checksum(block) + block


class NativeBlockWriter:
    """``compress=1``: the response as ClickHouse-native compressed blocks of at most 1 MiB."""

    def write(self, data: bytes) -> bytes:
        return b"".join(compress_block(data[i : i + BLOCK_SIZE]) for i in range(0, len(data), BLOCK_SIZE))

    def flush(self) -> bytes:
        return b""


def read_native_blocks(data: bytes, limit: int, verify: bool = True) -> bytes:
    """``decompress=1``: the request body from ClickHouse-native compressed blocks."""
    out: list[bytes] = []
    total, i, n = 0, 0, len(data)
    while i < n:
        if n - i < 16 + _HEADER.size:
            raise ClickHouseError(CANNOT_DECOMPRESS, "Cannot decompress: truncated compressed block header")
        checksum = data[i : i + 16]
        method, size, raw = _HEADER.unpack_from(data, i + 16)
        if size < _HEADER.size or i + 16 + size > n:
            raise ClickHouseError(
                CANNOT_DECOMPRESS, f"Cannot decompress: compressed block size {size} is wrong"
            )
        block = data[i + 16 : i + 16 + size]
        if verify and _checksum(block) != checksum:
            raise ClickHouseError(CHECKSUM_DOESNT_MATCH, "Checksum doesn't match: corrupted data")
        total += raw
        if total > limit:
            raise _too_large(limit)
        payload = block[_HEADER.size :]
        try:
            if method == LZ4:
                chunk = lz4.block.decompress(payload, uncompressed_size=raw)
            elif method == ZSTD:
                chunk = zstandard.ZstdDecompressor().decompress(payload, max_output_size=raw)
            elif method == NONE:
                chunk = payload
            else:
                raise ClickHouseError(UNKNOWN_COMPRESSION_METHOD, f"Unknown compression method: {method:#x}")
        except ClickHouseError:
            raise
        except Exception as e:
            raise ClickHouseError(CANNOT_DECOMPRESS, f"Cannot decompress a compressed block: {e}") from None
        if len(chunk) != raw:
            raise ClickHouseError(
                CANNOT_DECOMPRESS, "Cannot decompress: block size does not match its header"
            )
        out.append(chunk)
        i += 16 + size
    return b"".join(out)
