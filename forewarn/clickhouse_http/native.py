"""The Native format at the protocol revision an HTTP client asks for with ``client_protocol_version``.

The engine writes Native as revision 0. A ClickHouse server given ``client_protocol_version=N``
writes, per block, the block info (``is_overflows``, ``bucket_num``) when ``N > 0`` and, per
column, a ``has_custom`` serialization byte after the type when ``N >= 54454``; clickhouse-go
(and so the Grafana plugin over HTTP) and clickhouse-connect ask for it. The column data is the
same bytes, so this module walks each column's data only to find where it ends, then re-frames
the engine's blocks; the values themselves are never decoded or re-encoded. Types whose bytes
change with the revision (Dynamic, JSON, Variant, AggregateFunction...) are refused rather
than framed wrongly.

>>> reframe(bytes([1, 1, 1]) + b"x" + bytes([5]) + b"UInt8" + bytes([7]), 54460).hex()
'010002ffffffff00010101780555496e74380007'
"""

from __future__ import annotations

import functools
import re
import struct

BLOCK_INFO = bytes([1, 0, 2, 0xFF, 0xFF, 0xFF, 0xFF, 0])  # is_overflows=false, bucket_num=-1, end
CUSTOM_SERIALIZATION = 54454

_FIXED = {
    **dict.fromkeys(("UInt8", "Int8", "Bool", "Nothing"), 1),
    **dict.fromkeys(("UInt16", "Int16", "Date", "BFloat16"), 2),
    **dict.fromkeys(("UInt32", "Int32", "Float32", "Date32", "DateTime", "IPv4", "Time"), 4),
    **dict.fromkeys(("UInt64", "Int64", "Float64", "DateTime64", "Time64"), 8),
    **dict.fromkeys(("UInt128", "Int128", "UUID", "IPv6"), 16),
    **dict.fromkeys(("UInt256", "Int256"), 32),
    "Decimal32": 4,
    "Decimal64": 8,
    "Decimal128": 16,
    "Decimal256": 32,
    "Enum8": 1,
    "Enum16": 2,
}
_U64 = struct.Struct("<Q")
# Types stored as another type's bytes.
_ALIASES = {
    "Point": "Tuple(Float64, Float64)",
    "Ring": "Array(Point)",
    "LineString": "Array(Point)",
    "MultiLineString": "Array(LineString)",
    "Polygon": "Array(Ring)",
    "MultiPolygon": "Array(Polygon)",
}


class Unsupported(ValueError):
    """A column type this module cannot frame at the requested revision."""


def _split_args(s: str) -> list[str]:
    """Top-level comma-separated arguments, respecting parentheses and quotes."""
    out, depth, cur, quote, i = [], 0, [], "", 0
    while i < len(s):
        c = s[i]
        if quote:
            cur.append(c)
            if c == "\\" and i + 1 < len(s):
                cur.append(s[i + 1])
                i += 1
            elif c == quote:
                quote = ""
        elif c in "'`\"":
            quote = c
            cur.append(c)
        elif c == "(":
            depth += 1
            cur.append(c)
        elif c == ")":
            depth -= 1
            cur.append(c)
        elif c == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
        i += 1
    if "".join(cur).strip():
        out.append("".join(cur).strip())
    return out


_NAME = re.compile(r"^([A-Za-z0-9_]+)\s*(?:\((.*)\))?$", re.S)


@functools.lru_cache(maxsize=4096)
def _parse(t: str) -> tuple[str, list[str]]:
    m = _NAME.match(t.strip())
    if not m:
        raise Unsupported(f"cannot parse type {t!r}")
    return m.group(1), _split_args(m.group(2)) if m.group(2) is not None else []


def _tuple_element(arg: str) -> str:
    """``name Type`` (a named Tuple element) or ``Type``."""
    arg = arg.strip()
    if arg.startswith("`"):
        end = arg.index("`", 1)
        return arg[end + 1 :].strip()
    head = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s+(.+)$", arg, re.S)
    if head and "(" not in head.group(1):
        return head.group(2)
    return arg


class _Reader:
    def __init__(self, data: bytes, pos: int):
        self.data, self.pos = data, pos

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.data[self.pos]
            self.pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return result
            shift += 7

    def skip(self, n: int) -> None:
        if self.pos + n > len(self.data):
            raise Unsupported("truncated Native block")
        self.pos += n

    def u64(self) -> int:
        v = _U64.unpack_from(self.data, self.pos)[0]
        self.pos += 8
        return v

    def string(self) -> bytes:
        n = self.varint()
        s = self.data[self.pos : self.pos + n]
        self.skip(n)
        return s


def _skip_strings(data: bytes, pos: int, rows: int) -> int:
    """Where ``rows`` length-prefixed strings starting at ``pos`` end (the hot loop: kept flat)."""
    end = len(data)
    for _ in range(rows):
        b = data[pos]
        if b < 0x80:
            pos += 1 + b
        else:
            size, shift = b & 0x7F, 7
            pos += 1
            while True:
                b = data[pos]
                pos += 1
                size |= (b & 0x7F) << shift
                if b < 0x80:
                    break
                shift += 7
            pos += size
    if pos > end:
        raise Unsupported("truncated Native block")
    return pos


def _prefix(r: _Reader, t: str) -> None:
    """Skip the serialization state prefix of a column (written before any of its data)."""
    name, args = _parse(t)
    if name in _ALIASES:
        return _prefix(r, _ALIASES[name])
    if name == "SimpleAggregateFunction":
        return _prefix(r, args[-1])
    if name == "LowCardinality":
        r.skip(8)  # key serialization version
    elif name in ("Array", "Nullable"):
        _prefix(r, args[0])
    elif name == "Map":
        _prefix(r, args[0])
        _prefix(r, args[1])
    elif name == "Tuple":
        for a in args:
            _prefix(r, _tuple_element(a))


def _data(r: _Reader, t: str, rows: int) -> None:
    """Skip ``rows`` values of type ``t``."""
    if rows == 0:
        return
    name, args = _parse(t)
    if name in _ALIASES:
        return _data(r, _ALIASES[name], rows)
    if name == "SimpleAggregateFunction":
        return _data(r, args[-1], rows)
    if name in _FIXED:
        r.skip(_FIXED[name] * rows)
    elif name == "Decimal":
        p = int(args[0])
        r.skip((4 if p <= 9 else 8 if p <= 18 else 16 if p <= 38 else 32) * rows)
    elif name.startswith("Interval"):
        r.skip(8 * rows)
    elif name == "FixedString":
        r.skip(int(args[0]) * rows)
    elif name == "String":
        r.pos = _skip_strings(r.data, r.pos, rows)
    elif name == "Nullable":
        r.skip(rows)
        _data(r, args[0], rows)
    elif name in ("Array", "Map"):
        r.skip(8 * (rows - 1))
        total = r.u64()
        if name == "Array":
            _data(r, args[0], total)
        else:
            _data(r, args[0], total)
            _data(r, args[1], total)
    elif name == "Tuple":
        for a in args:
            _data(r, _tuple_element(a), rows)
    elif name == "LowCardinality":
        inner = args[0]
        dict_type = _parse(inner)[1][0] if _parse(inner)[0] == "Nullable" else inner
        done = 0
        while done < rows:
            flags = r.u64()
            if flags & (1 << 8) and flags & (1 << 10):  # NeedGlobalDictionary + NeedUpdateDictionary
                _data(r, dict_type, r.u64())
            if flags & (1 << 9):  # HasAdditionalKeys (all keys, in Native)
                _data(r, dict_type, r.u64())
            n = r.u64()
            r.skip((1 << (flags & 0xFF)) * n)
            done += n
    else:
        raise Unsupported(f"the Native format of {t} at this client_protocol_version")


def reframe(data: bytes, revision: int) -> bytes:
    """Native blocks as the engine wrote them (revision 0), re-framed for ``revision``."""
    if revision <= 0:
        return data
    try:
        return _reframe(data, revision)
    except (IndexError, ValueError, struct.error) as e:
        raise Unsupported(f"malformed Native block ({type(e).__name__}: {e})") from None


def _reframe(data: bytes, revision: int) -> bytes:
    out = bytearray()
    r = _Reader(data, 0)
    while r.pos < len(data):
        start = r.pos
        cols, rows = r.varint(), r.varint()
        out += BLOCK_INFO
        out += data[start : r.pos]
        for _ in range(cols):
            head = r.pos
            r.string()
            type_name = r.string().decode()
            out += data[head : r.pos]
            if revision >= CUSTOM_SERIALIZATION:
                out.append(0)  # has_custom: no sparse or other custom serialization
            body = r.pos
            if rows:
                _prefix(r, type_name)
                _data(r, type_name, rows)
            out += data[body : r.pos]
    return bytes(out)
