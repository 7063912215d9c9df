"""The alert record, its v2 API input validation, merge rule and webhook/API JSON shapes.

Times are float UNIX seconds internally (``0.0`` is Go's zero time), printed like Go's
RFC 3339 with nanoseconds so receivers see what Alertmanager would send them.

>>> a = Alert.from_api({"labels": {"alertname": "Down", "env": ""}}, now=100.0, resolve_timeout=300)
>>> a.labels, a.starts_at, a.ends_at, a.timeout
({'alertname': 'Down'}, 100.0, 400.0, True)
>>> format_time(0.0), format_time(1.5), format_time(parse_time("2026-11-23T04:00:00.123Z", "t"))
('0001-01-01T00:00:00Z', '1970-01-01T00:00:01.5Z', '2026-11-23T04:00:00.123Z')
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from forewarn.alerts.labels import fingerprint, valid_label_name

ZERO_TIME = "0001-01-01T00:00:00Z"


class AlertValidationError(ValueError):
    """One posted alert Alertmanager would reject."""


def format_time(ts: float) -> str:
    """Go's ``time.Time`` JSON form in UTC (RFC 3339, trailing fractional zeros trimmed)."""
    if ts == 0.0:
        return ZERO_TIME
    whole = int(ts // 1)
    # Microsecond rounding: a float holds ~0.2 µs at today's epoch, so "…00.123Z" stays ".123Z".
    nanos = round((ts - whole) * 1e6) * 1000
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    base = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    frac = f".{nanos:09d}".rstrip("0") if nanos else ""
    return f"{base}{frac}Z"


def format_api_time(ts: float) -> str:
    """The v2 API's date-time form (go-openapi ``strfmt.DateTime``: milliseconds, UTC).

    >>> format_api_time(1.5)
    '1970-01-01T00:00:01.500Z'
    """
    whole = int(ts // 1)
    millis = round((ts - whole) * 1000)
    if millis >= 1000:
        whole, millis = whole + 1, millis - 1000
    if ts == 0.0:
        return "0001-01-01T00:00:00.000Z"
    return datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{millis:03d}Z"


# go-openapi's ``strfmt.ParseDateTime`` layouts, as regexes: RFC 3339 (any fraction, "." or ","),
# a no-colon offset after exactly 3 or 6 fractional digits, and zone-less forms read as UTC.
_FRAC = r"(?:[.,](\d+))?"
_LAYOUTS = [
    re.compile(rf"^(\d{{4}}-\d{{2}}-\d{{2}})T(\d{{2}}:\d{{2}}:\d{{2}}){_FRAC}(Z|[+-]\d{{2}}:\d{{2}})$"),
    re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})[.,](\d{3}|\d{6})(Z|[+-]\d{4})$"),
    re.compile(rf"^(\d{{4}}-\d{{2}}-\d{{2}})[T ](\d{{2}}:\d{{2}}:\d{{2}}){_FRAC}()$"),
    re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})()(Z?)$"),
]


def parse_time_text(value: Any, what: str) -> tuple[float, str]:
    """A date-time as Alertmanager reads it: UNIX seconds, and the text Go prints for it in a
    webhook (its own offset and all its fractional digits kept; Go's zero time is ``0``).

    >>> parse_time_text("2026-11-23T09:00:00.500+02:00", "t")[1], parse_time_text("2026-11-23 07:00:00", "t")[1]
    ('2026-11-23T09:00:00.5+02:00', '2026-11-23T07:00:00Z')
    """
    if not isinstance(value, str) or not value:
        raise AlertValidationError(f"{what}: expected an RFC 3339 date-time string, got {value!r}")
    if value.startswith("0001-01-01T00:00:00"):
        return 0.0, ""
    for layout in _LAYOUTS:
        m = layout.match(value)
        if m:
            break
    else:
        raise AlertValidationError(f"{what}: {value!r} is not an RFC 3339 date-time")
    date, clock, frac, zone = m.groups()
    clock = clock if len(clock) == 8 else clock + ":00"
    if zone in ("", "Z"):
        zone = "+00:00"
    elif ":" not in zone:
        zone = f"{zone[:3]}:{zone[3:]}"
    try:
        dt = datetime.fromisoformat(f"{date}T{clock}{zone}")
    except ValueError as e:
        raise AlertValidationError(f"{what}: {value!r}: {e}") from None
    digits = (frac or "").rstrip("0")[:9]
    shown = f"{date}T{clock}{'.' + digits if digits else ''}{'Z' if zone == '+00:00' else zone}"
    return dt.timestamp() + (float("0." + frac) if frac else 0.0), shown


def parse_time(value: Any, what: str) -> float:
    """RFC 3339 timestamp (and go-openapi's other layouts) to UNIX seconds; Go's zero time is 0."""
    return parse_time_text(value, what)[0]


@dataclass(slots=True)
class Alert:
    """``types.Alert``: labels are its identity, ``updated_at`` orders merges."""

    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    starts_at: float = 0.0
    ends_at: float = 0.0
    generator_url: str = ""
    updated_at: float = 0.0
    timeout: bool = False
    fp: str = ""
    # The times as the client wrote them, for webhooks (Go keeps their offset and nanoseconds);
    # empty: print the float in UTC.
    starts_text: str = ""
    ends_text: str = ""

    def __post_init__(self) -> None:
        if not self.fp:
            self.fp = fingerprint(self.labels)

    def resolved_at(self, ts: float) -> bool:
        return self.ends_at != 0.0 and self.ends_at <= ts

    def resolved(self) -> bool:
        return self.resolved_at(time.time())

    def status(self, now: float | None = None) -> str:
        return "resolved" if self.resolved_at(time.time() if now is None else now) else "firing"

    def copy(self) -> Alert:
        return Alert(
            self.labels,
            self.annotations,
            self.starts_at,
            self.ends_at,
            self.generator_url,
            self.updated_at,
            self.timeout,
            self.fp,
            self.starts_text,
            self.ends_text,
        )

    def merge(self, other: Alert, now: float) -> Alert:
        """``Alert.Merge``: the younger alert wins, the earliest start and a later explicit end are kept."""
        if other.updated_at < self.updated_at:
            return other.merge(self, now)
        res = other.copy()
        if self.starts_at < other.starts_at:
            res.starts_at, res.starts_text = self.starts_at, self.starts_text
        if other.resolved_at(now):
            if self.resolved_at(now) and self.ends_at > other.ends_at:
                res.ends_at, res.ends_text = self.ends_at, self.ends_text
        elif self.ends_at > other.ends_at and not self.timeout:
            res.ends_at, res.ends_text = self.ends_at, self.ends_text
        return res

    def overlaps(self, old: Alert) -> bool:
        """Alertmanager merges a re-post only if its time range overlaps the stored one's."""
        return (old.starts_at < self.ends_at < old.ends_at) or (old.starts_at < self.starts_at < old.ends_at)

    @classmethod
    def from_api(cls, d: Any, now: float, resolve_timeout: float) -> Alert:
        """A ``postableAlert``; empty label values are dropped, then Alertmanager's validation runs."""
        if not isinstance(d, dict):
            raise AlertValidationError(f"alert must be an object, got {type(d).__name__}")
        labels, annotations = d.get("labels"), d.get("annotations") or {}
        if not isinstance(labels, dict):
            raise AlertValidationError("labels in body is required")
        for what, m in (("label", labels), ("annotation", annotations)):
            if not isinstance(m, dict) or not all(isinstance(v, str) for v in m.values()):
                raise AlertValidationError(f"{what} values must be strings")
        starts, starts_text = parse_time_text(d["startsAt"], "startsAt") if d.get("startsAt") else (0.0, "")
        ends, ends_text = parse_time_text(d["endsAt"], "endsAt") if d.get("endsAt") else (0.0, "")
        gen = d.get("generatorURL") or ""
        if not isinstance(gen, str):
            raise AlertValidationError("generatorURL must be a string")
        if starts == 0.0:
            starts, starts_text = (now, "") if ends == 0.0 else (ends, ends_text)
        timeout = ends == 0.0
        if timeout:
            ends = now + resolve_timeout
        # Sorted like Go's JSON encoding of maps, so payloads match byte for byte.
        labels = {k: labels[k] for k in sorted(labels) if labels[k] != ""}
        annotations = {k: annotations[k] for k in sorted(annotations)}
        for name in labels:
            if not valid_label_name(name):
                raise AlertValidationError(f'invalid label set: invalid name "{name}"')
        if not labels:
            raise AlertValidationError("at least one label pair required")
        for name in annotations:
            if not valid_label_name(name):
                raise AlertValidationError(f'invalid annotations: invalid name "{name}"')
        if ends < starts:
            raise AlertValidationError("start time must be before end time")
        return cls(
            dict(labels), dict(annotations), starts, ends, gen, now, timeout, "", starts_text, ends_text
        )

    def webhook_dict(self, now: float) -> dict[str, Any]:
        """The webhook v4 / remediation alert object (firing alerts carry the zero ``endsAt``)."""
        return {
            "status": self.status(now),
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": self.starts_text or format_time(self.starts_at),
            "endsAt": (self.ends_text or format_time(self.ends_at)) if self.ends_at else format_time(0.0),
            "generatorURL": self.generator_url,
            "fingerprint": self.fp,
        }

    def to_row(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "annotations": self.annotations,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "generator_url": self.generator_url,
            "updated_at": self.updated_at,
            "timeout": self.timeout,
            "starts_text": self.starts_text,
            "ends_text": self.ends_text,
        }

    @classmethod
    def from_row(cls, r: dict[str, Any]) -> Alert:
        return cls(
            r["labels"],
            r["annotations"],
            r["starts_at"],
            r["ends_at"],
            r["generator_url"],
            r["updated_at"],
            r["timeout"],
            "",
            r.get("starts_text", ""),
            r.get("ends_text", ""),
        )
