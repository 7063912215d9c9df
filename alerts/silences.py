"""Silences: pending before ``startsAt``, active until ``endsAt``, then expired (v2 API shapes).

>>> s = Silences(StateStore(None))
>>> sid = s.set({"matchers": [{"name": "job", "value": "api", "isRegex": False}],
...              "startsAt": "2000-01-01T00:00:00Z", "endsAt": "2999-01-01T00:00:00Z",
...              "createdBy": "me", "comment": "maintenance"}, now=1.9e9)
>>> s.mutes({"job": "api"}, now=1.9e9) == [sid], s.mutes({"job": "db"}, now=1.9e9)
(True, [])
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from forewarn.alerts.labels import LABEL_NAME_RE, Matcher, MatcherError, all_match, go_quote
from forewarn.alerts.model import format_api_time, parse_time
from forewarn.alerts.state import StateStore

RETENTION_S = 120 * 3600  # Alertmanager's --data.retention: expired silences stay listed this long


class SilenceError(ValueError):
    """A silence Alertmanager would refuse (HTTP 400)."""


class SilenceNotFound(KeyError):
    """No silence with this ID (HTTP 404)."""


@dataclass
class Silence:
    id: str
    matchers: list[Matcher]
    starts_at: float
    ends_at: float
    updated_at: float
    created_by: str
    comment: str
    extra: dict[str, Any] = field(default_factory=dict)

    def state(self, now: float) -> str:
        if now < self.starts_at:
            return "pending"
        if now < self.ends_at:
            return "active"
        return "expired"

    def api_dict(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": {"state": self.state(now)},
            "updatedAt": format_api_time(self.updated_at),
            "comment": self.comment,
            "createdBy": self.created_by,
            "endsAt": format_api_time(self.ends_at),
            "matchers": [m.api_dict() for m in self.matchers],
            "startsAt": format_api_time(self.starts_at),
        }

    def row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "matchers": [m.api_dict() for m in self.matchers],
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "updated_at": self.updated_at,
            "created_by": self.created_by,
            "comment": self.comment,
        }


class Silences:
    """All silences, in memory and persisted through :class:`StateStore` on every change."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self._by_id: dict[str, Silence] = {}
        for r in store.load_silences():
            ms = [Matcher.from_api(m) for m in r["matchers"]]
            self._by_id[r["id"]] = Silence(
                r["id"], ms, r["starts_at"], r["ends_at"], r["updated_at"], r["created_by"], r["comment"]
            )

    def _save(self, s: Silence) -> None:
        self._by_id[s.id] = s
        self.store.put_silence(s.id, s.row())

    @staticmethod
    def _parse(body: Any, now: float) -> tuple[Silence, list[Any]]:
        """The silence with its times checked; its raw matchers are validated by :meth:`_matchers`
        later, after the ID lookup, in Alertmanager's order."""
        if not isinstance(body, dict):
            raise SilenceError("silence must be a JSON object")
        for key in ("matchers", "startsAt", "endsAt", "createdBy", "comment"):
            if key not in body:
                raise SilenceError(f"{key} in body is required")
        raw = body["matchers"]
        if not isinstance(raw, list):
            raise SilenceError("matchers must be a list")
        try:
            # An empty time is Go's zero time (a start in the past: the silence starts now).
            start, end = (parse_time(body[k], k) if body[k] != "" else 0.0 for k in ("startsAt", "endsAt"))
        except ValueError as e:
            raise SilenceError(str(e)) from None
        if start >= end:
            raise SilenceError("Failed to create silence: start time must be before end time")
        if end < now:
            raise SilenceError("Failed to create silence: end time can't be in the past")
        sil = Silence(
            str(body.get("id") or ""), [], start, end, now, str(body["createdBy"]), str(body["comment"])
        )
        return sil, raw

    @staticmethod
    def _matchers(raw: list[Any]) -> list[Matcher]:
        """``validateSilence``'s matcher checks, with its messages (``silence invalid: ...``)."""
        if not raw:
            raise SilenceError("silence invalid: at least one matcher required")
        ms = []
        for i, m in enumerate(raw):
            if not isinstance(m, dict):
                raise SilenceError(f"silence invalid: invalid label matcher {i}: not an object")
            name = m.get("name")
            if not isinstance(name, str) or not LABEL_NAME_RE.match(name):
                raise SilenceError(
                    f"silence invalid: invalid label matcher {i}: invalid label name {go_quote(str(name))}"
                )
            try:
                ms.append(Matcher.from_api(m))
            except MatcherError:
                value = str(m.get("value"))
                try:
                    re.compile(value)
                    why = "invalid matcher"
                except re.error as e:
                    why = f"invalid regular expression {go_quote(value)}: {e}"
                raise SilenceError(f"silence invalid: invalid label matcher {i}: {why}") from None
        if all(m.matches({}) for m in ms):
            raise SilenceError("silence invalid: at least one matcher must not match the empty string")
        return ms

    def set(self, body: Any, now: float) -> str:
        """Create, or update in place when Alertmanager would; returns the (possibly new) ID."""
        new, raw = self._parse(body, now)
        prev = self._by_id.get(new.id) if new.id else None
        if new.id and prev is None:
            raise SilenceNotFound(new.id)
        new.matchers = self._matchers(raw)
        if prev is not None and self._can_update(prev, new, now):
            new.starts_at = max(new.starts_at, now) if prev.state(now) == "pending" else new.starts_at
            self._save(new)
            return new.id
        if prev is not None and prev.state(now) != "expired":
            self.expire(prev.id, now)
        new.id = str(uuid.uuid4())
        # Millisecond precision, the API's: a start read back from GET can update the silence in place.
        new.starts_at = max(new.starts_at, math.floor(now * 1000) / 1000)
        self._save(new)
        return new.id

    @staticmethod
    def _can_update(a: Silence, b: Silence, now: float) -> bool:
        if [m.api_dict() for m in a.matchers] != [m.api_dict() for m in b.matchers]:
            return False
        st = a.state(now)
        if st == "active":
            return b.starts_at == a.starts_at and b.ends_at >= now
        if st == "pending":
            return b.starts_at >= now
        return False

    def expire(self, sid: str, now: float) -> None:
        s = self._by_id.get(sid)
        if s is None:
            raise SilenceNotFound(sid)
        st = s.state(now)
        if st == "expired":
            return  # idempotent, as in Alertmanager 0.25
        if st == "pending":
            s.starts_at = now
        s.ends_at = now
        s.updated_at = now
        self._save(s)

    def get(self, sid: str) -> Silence:
        try:
            return self._by_id[sid]
        except KeyError:
            raise SilenceNotFound(sid) from None

    def list(self, now: float) -> list[Silence]:
        """Active by end, then pending by start, then expired newest first (Alertmanager's order)."""
        self.gc(now)
        rank = {"active": 0, "pending": 1, "expired": 2}

        def key(s: Silence) -> tuple[int, float]:
            st = s.state(now)
            return (rank[st], s.ends_at if st == "active" else s.starts_at if st == "pending" else -s.ends_at)

        return sorted(self._by_id.values(), key=key)

    def mutes(self, labels: dict[str, str], now: float) -> list[str]:
        """IDs of active silences whose matchers all match ``labels``."""
        return [
            s.id for s in self._by_id.values() if s.state(now) == "active" and all_match(s.matchers, labels)
        ]

    def gc(self, now: float) -> None:
        old = [s.id for s in self._by_id.values() if s.ends_at < now - RETENTION_S]
        if old:
            for sid in old:
                del self._by_id[sid]
            self.store.delete_silences(old)
