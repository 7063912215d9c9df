"""The alert store: every known alert by fingerprint, merged on re-post as Alertmanager does,
persisted before acknowledgement, and fanned out to listeners (dispatcher, inhibitor).

>>> from forewarn.alerts.state import StateStore
>>> p = AlertProvider(StateStore(None), max_alerts=1)
>>> seen = []
>>> p.listeners.append(seen.append)
>>> _ = p.put([Alert({"a": "1"}, starts_at=1.0, ends_at=100.0, updated_at=1.0)], now=1.0)
>>> try:
...     p.put([Alert({"a": "2"}, starts_at=1.0, ends_at=100.0, updated_at=1.0)], now=1.0)
... except OverflowError as e:
...     print(e)
alert limit of 1 reached; new alerts refused
>>> len(seen)
1
"""

from __future__ import annotations

from collections.abc import Callable

from forewarn.alerts.model import Alert
from forewarn.alerts.state import StateStore


class AlertProvider:
    """Every known alert by fingerprint, merged on re-post, persisted, with listeners."""

    def __init__(self, store: StateStore, max_alerts: int) -> None:
        self.store, self.max_alerts = store, max_alerts
        self.alerts: dict[str, Alert] = {a.fp: a for a in (Alert.from_row(r) for r in store.load_alerts())}
        self.listeners: list[Callable[[Alert], None]] = []

    def put(self, alerts: list[Alert], now: float) -> list[Alert]:
        """Merge, persist, then tell the listeners; raises OverflowError (after keeping the
        alerts that fit) when a new alert would exceed ``max_alerts``."""
        stored: list[Alert] = []
        full = False
        for alert in alerts:
            old = self.alerts.get(alert.fp)
            if old is None and len(self.alerts) >= self.max_alerts:
                full = True
                continue
            if old is not None and alert.overlaps(old):
                alert = old.merge(alert, now)
            self.alerts[alert.fp] = alert
            stored.append(alert)
        self.store.put_alerts((a.fp, a.to_row()) for a in stored)
        for a in stored:
            for fn in self.listeners:
                fn(a)
        if full:
            raise OverflowError(f"alert limit of {self.max_alerts} reached; new alerts refused")
        return stored

    def gc(self, now: float) -> list[str]:
        """Drop resolved alerts (Alertmanager's ``--alerts.gc-interval`` sweep)."""
        gone = [fp for fp, a in self.alerts.items() if a.resolved_at(now)]
        for fp in gone:
            del self.alerts[fp]
        if gone:
            self.store.delete_alerts(gone)
        return gone
