"""Label sets and matchers exactly as Alertmanager 0.25 prints and compares them.

Fingerprints, group keys and route keys are visible to receivers (webhook ``groupKey``,
``fingerprint``), so their byte-exact form matters more than elegance here.

>>> fingerprint({"alertname": "Down", "job": "api"})
'c89fba827b26e2d5'
>>> ms = parse_matchers('{team="db", service=~"mysql|pg"}')
>>> [str(m) for m in ms]
['team="db"', 'service=~"mysql|pg"']
>>> ms[1].matches({"service": "pg"}), ms[1].matches({"service": "pgx"})
(True, False)
>>> labelset_string({"b": "y", "a": 'x"1'})
'{a="x\\\\"1", b="y"}'
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")
LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_MATCHER_RE = re.compile(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(=~|=|!=|!~)\s*(.*?)\s*$", re.S)

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_MASK = (1 << 64) - 1

# Operator order is Alertmanager's enum order; it breaks ties when sorting matchers.
OPERATORS = ("=", "!=", "=~", "!~")


@functools.lru_cache(maxsize=4096)
def valid_label_name(name: str) -> bool:
    """Prometheus label name syntax (cached: the same few names arrive over and over)."""
    return LABEL_NAME_RE.match(name) is not None


def fingerprint(labels: Mapping[str, str]) -> str:
    """64-bit FNV-1a over sorted name/value pairs each followed by 0xff, as 16 hex digits."""
    return _fingerprint(tuple(sorted(labels.items())))


@functools.lru_cache(maxsize=1 << 16)
def _fingerprint(items: tuple[tuple[str, str], ...]) -> str:
    # Cached: Prometheus re-sends the same alerts every evaluation interval.
    h = _FNV_OFFSET
    for name, value in items:
        for part in (name, value):
            for b in part.encode():
                h = ((h ^ b) * _FNV_PRIME) & _MASK
            h = ((h ^ 0xFF) * _FNV_PRIME) & _MASK
    return f"{h:016x}"


def go_quote(s: str) -> str:
    """Go's ``strconv.Quote`` for the strings labels hold (printable Unicode kept as is)."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append(
                {"\a": r"\a", "\b": r"\b", "\f": r"\f", "\n": r"\n", "\r": r"\r", "\t": r"\t", "\v": r"\v"}[
                    ch
                ]
            )
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif not ch.isprintable() and o > 0x7F:
            out.append(f"\\u{o:04x}" if o <= 0xFFFF else f"\\U{o:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def labelset_string(labels: Mapping[str, str]) -> str:
    """``model.LabelSet.String()``: sorted ``name="value"`` pairs joined by ``", "``."""
    return "{" + ", ".join(f"{k}={go_quote(labels[k])}" for k in sorted(labels)) + "}"


def _openmetrics_escape(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"') + '"'


class MatcherError(ValueError):
    """A matcher string or object that Alertmanager would refuse."""


@dataclass(frozen=True)
class Matcher:
    """One ``name op "value"`` condition; regexes are fully anchored like Alertmanager's."""

    name: str
    op: str
    value: str
    _re: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def make(cls, name: str, op: str, value: str) -> Matcher:
        if op not in OPERATORS:
            raise MatcherError(f"unknown matcher operator {op!r}")
        rx = None
        if op in ("=~", "!~"):
            try:
                rx = re.compile(f"^(?:{value})$")
            except re.error as e:
                raise MatcherError(f"invalid regular expression {value!r}: {e}") from None
        return cls(name, op, value, rx)

    def matches(self, labels: Mapping[str, str]) -> bool:
        v = labels.get(self.name, "")
        if self.op == "=":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        assert self._re is not None
        hit = self._re.match(v) is not None
        return hit if self.op == "=~" else not hit

    def sort_key(self) -> tuple[str, str, int]:
        return (self.name, self.value, OPERATORS.index(self.op))

    def __str__(self) -> str:
        return f"{self.name}{self.op}{_openmetrics_escape(self.value)}"

    def api_dict(self) -> dict[str, object]:
        """The v2 API silence matcher shape."""
        return {  # keys in Alertmanager's (alphabetical) order
            "isEqual": self.op in ("=", "=~"),
            "isRegex": self.op in ("=~", "!~"),
            "name": self.name,
            "value": self.value,
        }

    @classmethod
    def from_api(cls, d: Mapping[str, object]) -> Matcher:
        """A v2 API matcher object (``isEqual`` defaults to true)."""
        name, value = d.get("name"), d.get("value")
        if not isinstance(name, str) or not name or not isinstance(value, str):
            raise MatcherError("matcher needs a string 'name' and 'value'")
        is_re, is_eq = bool(d.get("isRegex", False)), d.get("isEqual", True) is not False
        op = {(False, True): "=", (False, False): "!=", (True, True): "=~", (True, False): "!~"}[
            (is_re, is_eq)
        ]
        return cls.make(name, op, value)


def parse_matcher(s: str) -> Matcher:
    """One matcher in Alertmanager's syntax: quoted or bare value, ``\\n \\" \\\\`` escapes."""
    m = _MATCHER_RE.match(s)
    if not m:
        raise MatcherError(f"bad matcher format: {s}")
    name, op, raw = m.groups()
    expect_quote = raw.startswith('"')
    if expect_quote:
        raw = raw[1:]
    out: list[str] = []
    escaped = False
    for i, ch in enumerate(raw):
        if escaped:
            escaped = False
            out.append({"n": "\n", '"': '"', "\\": "\\"}.get(ch, "\\" + ch))
            continue
        if ch == "\\":
            if i < len(raw) - 1:
                escaped = True
                continue
            out.append("\\")
        elif ch == '"':
            if not expect_quote or i < len(raw) - 1:
                raise MatcherError(f"matcher value contains unescaped double quote: {m.group(3)}")
            expect_quote = False
        else:
            out.append(ch)
    if expect_quote:
        raise MatcherError(f"matcher value contains unescaped double quote: {m.group(3)}")
    return Matcher.make(name, op, "".join(out))


def parse_matchers(s: str) -> list[Matcher]:
    """Comma-separated matchers, optionally wrapped in ``{}``; commas inside quotes are kept."""
    s = s.strip()
    s = s.removeprefix("{").removesuffix("}")
    tokens: list[str] = []
    buf: list[str] = []
    inside = escaped = False
    for ch in s:
        if ch == "," and not inside:
            tokens.append("".join(buf))
            buf = []
            continue
        if ch == '"':
            if not escaped:
                inside = not inside
            else:
                escaped = False
        elif ch == "\\":
            escaped = not escaped
        else:
            escaped = False
        buf.append(ch)
    last = "".join(buf).strip()
    if last:
        tokens.append(last)
    return [parse_matcher(t) for t in tokens]


def matchers_string(ms: Iterable[Matcher]) -> str:
    """``labels.Matchers.String()`` of the sorted set: ``{a="x",b=~"y"}``."""
    return "{" + ",".join(str(m) for m in sorted(ms, key=Matcher.sort_key)) + "}"


def all_match(ms: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in ms)


def labels_before(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    if len(a) != len(b):
        return len(a) < len(b)
    for name in sorted([*a, *b]):
        if name not in a:
            return True
        if name not in b:
            return False
        if a[name] != b[name]:
            return a[name] < b[name]
    return False


def _alert_cmp(a: Mapping[str, str], b: Mapping[str, str]) -> int:
    for key in ("job", "instance"):
        ia, ib = key in a, key in b
        if not ia and not ib:
            continue
        if not ia:
            return 1
        if not ib:
            return -1
        if a[key] != b[key]:
            return -1 if a[key] < b[key] else 1
    if labels_before(a, b):
        return -1
    return 1 if labels_before(b, a) else 0


def sort_by_labels(items: list[T], key: Callable[[T], Mapping[str, str]]) -> list[T]:
    """Alertmanager's alert order: ``job``, then ``instance``, then the whole label set."""
    return sorted(items, key=functools.cmp_to_key(lambda x, y: _alert_cmp(key(x), key(y))))
