"""Alertmanager time intervals: times, weekdays, days of month, months, years, location.

Fields are ANDed, entries of one field are ORed, an unset field matches any time.

>>> from datetime import datetime, timezone
>>> ti = TimeInterval.model_validate({"weekdays": ["monday:friday"], "times": [{"start_time": "09:00", "end_time": "17:00"}]})
>>> ti.contains(datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc))  # a Monday
True
>>> ti.contains(datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc))  # a Sunday
False
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, PrivateAttr, field_validator, model_validator

_WEEKDAYS = {
    d: i for i, d in enumerate(["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"])
}
_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_name) if m}
_TIME_RE = re.compile(r"^(\d{2}):(\d{2})$")


def _range(s: Any, parse: Callable[[str], int], lo: int, hi: int, what: str) -> tuple[int, int]:
    text = str(s).strip().lower()
    parts = text.split(":") if not text.startswith("-") else None
    if parts is None:  # a negative day of month, possibly a range of two negatives
        parts = re.split(r"(?<=\d):", text)
    if len(parts) > 2 or not parts[0]:
        raise ValueError(f"invalid {what} range {s!r}")
    a = parse(parts[0])
    b = parse(parts[1]) if len(parts) == 2 else a
    for v in (a, b):
        if not lo <= v <= hi or (v == 0 and lo < 0):
            raise ValueError(f"{what} {v} out of range in {s!r}")
    if (a >= 0) == (b >= 0) and a > b:
        raise ValueError(f"start of {what} range {s!r} is after its end")
    return a, b


def _named(table: dict[str, int], what: str) -> Callable[[str], int]:
    def parse(p: str) -> int:
        p = p.strip()
        if p in table:
            return table[p]
        if what != "weekday" and p.lstrip("-").isdigit():
            return int(p)
        raise ValueError(f"{p!r} is not a valid {what}")

    return parse


class TimeRange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start_time: str
    end_time: str

    @staticmethod
    def _minutes(s: str, end: bool) -> int:
        m = _TIME_RE.match(s)
        if not m:
            raise ValueError(f"couldn't parse timestamp {s!r}, invalid format")
        h, mi = int(m.group(1)), int(m.group(2))
        if h > 24 or mi > 59 or (h == 24 and (mi or not end)):
            raise ValueError(f"timestamp {s!r} out of range")
        return h * 60 + mi

    @model_validator(mode="after")
    def _check(self) -> TimeRange:
        if self.start() >= self.end():
            raise ValueError("start time cannot be equal or greater than end time")
        return self

    def start(self) -> int:
        return self._minutes(self.start_time, end=False)

    def end(self) -> int:
        return self._minutes(self.end_time, end=True)


class TimeInterval(BaseModel):
    """One entry of a named interval; :meth:`contains` is evaluated at flush time."""

    model_config = ConfigDict(extra="forbid")
    times: list[TimeRange] | None = None
    weekdays: list[str] | None = None
    days_of_month: list[str | int] | None = None
    months: list[str | int] | None = None
    years: list[str | int] | None = None
    location: str | None = None

    _weekdays: list[tuple[int, int]] = PrivateAttr(default_factory=list)
    _days: list[tuple[int, int]] = PrivateAttr(default_factory=list)
    _months: list[tuple[int, int]] = PrivateAttr(default_factory=list)
    _years: list[tuple[int, int]] = PrivateAttr(default_factory=list)

    @field_validator("location")
    @classmethod
    def _loc(cls, v: str | None) -> str | None:
        if v is not None and v not in ("UTC", "Local"):
            try:
                ZoneInfo(v)
            except (ZoneInfoNotFoundError, ValueError, OSError):
                # OSError: a name too long for a file name, or a tzdata folder ("America");
                # found by fuzz/alerts_config.py.
                raise ValueError(f"unknown time zone location {v[:100]!r}") from None
        return v

    @model_validator(mode="after")
    def _parse(self) -> TimeInterval:
        self._weekdays = [
            _range(s, _named(_WEEKDAYS, "weekday"), 0, 6, "weekday") for s in self.weekdays or []
        ]
        self._days = [
            _range(s, _named({}, "day of month"), -31, 31, "day of month") for s in self.days_of_month or []
        ]
        self._months = [_range(s, _named(_MONTHS, "month"), 1, 12, "month") for s in self.months or []]
        self._years = [_range(s, _named({}, "year"), 1, 9999, "year") for s in self.years or []]
        return self

    def contains(self, t: datetime) -> bool:
        if self.location and self.location != "UTC":
            t = t.astimezone(None if self.location == "Local" else ZoneInfo(self.location))
        else:
            t = t.astimezone(ZoneInfo("UTC"))
        if self.times:
            minute = t.hour * 60 + t.minute
            if not any(r.start() <= minute < r.end() for r in self.times):
                return False
        if self._days:
            n = calendar.monthrange(t.year, t.month)[1]
            ok = False
            for a, b in self._days:
                begin = n + a + 1 if a < 0 else a
                end = n + b + 1 if b < 0 else b
                if begin > n:
                    continue
                begin, end = max(-n, min(begin, n)), max(-n, min(end, n))
                if begin <= t.day <= end:
                    ok = True
                    break
            if not ok:
                return False
        if self._months and not any(a <= t.month <= b for a, b in self._months):
            return False
        if self._weekdays:
            wd = (t.weekday() + 1) % 7  # Python's Monday=0 to Go's Sunday=0
            if not any(a <= wd <= b for a, b in self._weekdays):
                return False
        return not self._years or any(a <= t.year <= b for a, b in self._years)


def any_contains(intervals: list[TimeInterval], t: datetime) -> bool:
    return any(ti.contains(t) for ti in intervals)
