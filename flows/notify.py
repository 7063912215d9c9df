"""Alerts to the router: one alert per incident (not one per anomaly), one per capacity forecast.

The contract is Alertmanager's ``POST /api/v2/alerts``, through :mod:`forewarn.alerts.anomaly`.
Alerts are re-posted on every batch while active (Alertmanager resolves an alert that is not refreshed) and the set to post is derived from
the committed incidents, so a failed post is simply retried on the next batch; resolved
notifications that failed wait in a bounded queue.

>>> a = incident_alert({"incident_id": 7, "started_at": 0, "anomalies": 3, "services": ["db", "web"],
...                     "alert_labels": {}, "resolved": False},
...                    [{"service": "db", "operation": "SELECT", "weight": 9.0, "signals": ["red.p95"],
...                      "evidence": ["spike: 300 is above the expected 9–11 (usual ~10)"], "attributes": {}}],
...                    now_s=100.0, hold_s=60.0)
>>> a["labels"]["service"], a["labels"]["operation"], a["annotations"]["summary"][:32]
('db', 'SELECT', 'Incident 7: db SELECT is the top')
"""

from __future__ import annotations

import json
import logging
from collections import deque

from forewarn.alerts.anomaly import AlertPostError, anomaly_alert, post_alerts
from forewarn.flows.store import ms_of

log = logging.getLogger(__name__)
MAX_PENDING = 10_000


def incident_labels(inc: dict, suspects: list[dict]) -> dict[str, str]:
    """Fixed once the incident is first alerted, so the router sees one alert throughout."""
    if inc.get("alert_labels"):
        return dict(inc["alert_labels"])
    top = suspects[0] if suspects else {"service": "", "operation": ""}
    labels = {
        "alertname": "ForewarnIncident",
        "incident": str(inc["incident_id"]),
        "service": top["service"],
        "severity": "critical",
        "source": "forewarn",
    }
    if top.get("operation"):
        labels["operation"] = top["operation"]
    return labels


def incident_alert(inc: dict, suspects: list[dict], now_s: float, hold_s: float) -> dict:
    top = suspects[0] if suspects else {}
    what = f"{top.get('service', '?')} {top.get('operation', '')}".strip()
    ranked = [
        f"{i + 1}. {s['service']}{' ' + s['operation'] if s.get('operation') else ''} (weight {s['weight']}; "
        f"{', '.join(s['signals'][:5])})"
        + (f": {s['evidence'][0]}" if s.get("evidence") else "")
        + "".join(
            f"; {a['key']}={a['value']} carries {a['share']:.0%} of the excess {a['explains']}"
            for a in s.get("attribute_values", [])[:2]
        )
        for i, s in enumerate(suspects[:5])
    ]
    started = ms_of(inc["started_at"]) / 1000.0
    ends = now_s if inc.get("resolved") else now_s + hold_s
    labels = incident_labels(inc, suspects)
    a = anomaly_alert(
        labels["service"] or "unknown",
        "incident",
        labels["severity"],
        f"Incident {inc['incident_id']}: {what} is the top suspect "
        f"({inc['anomalies']} anomalies across {', '.join(inc['services'])})",
        "Ranked suspects:\n" + "\n".join(ranked),
        score=float(top.get("weight", 0.0)),
        starts_at=started,
        ends_at=max(ends, started + 0.001),
    )
    a["labels"] = labels
    a["annotations"]["suspects"] = json.dumps(suspects[:10])
    a["annotations"]["services"] = ",".join(inc["services"])
    return a


def forecast_alert(a: dict, now_s: float, hold_s: float, resolved: bool = False) -> dict:
    extra = {"alertname": "ForewarnSaturationForecast", "source": "forewarn"}
    for k, v in (a.get("labels") or {}).items():
        key = "".join(c if c.isalnum() or c == "_" else "_" for c in k)
        if key and not key[0].isdigit() and key not in ("alertname", "service", "signal", "severity"):
            extra[key] = str(v)
    return anomaly_alert(
        a["service"] or "unknown",
        a["name"],
        "warning",
        a["explanation"],
        a["explanation"],
        score=1.0,
        forecast=float(a["eta_s"]) if a.get("eta_s") not in (None, "") else None,
        starts_at=a["first_s"],
        ends_at=now_s if resolved else now_s + hold_s,
        extra_labels=extra,
    )


class Notifier:
    """Posts alert batches to ``<url>/api/v2/alerts``; keeps resolved ones that failed for later."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 5.0):
        self.url, self.token, self.timeout_s = url, token, timeout_s
        self.pending: deque[dict] = deque(maxlen=MAX_PENDING)
        self.sent = 0
        self.failures = 0

    def post(self, alerts: list[dict], resolved: list[dict] | None = None) -> bool:
        self.pending.extend(resolved or [])
        batch = list(self.pending) + alerts
        if not batch:
            return True
        try:
            post_alerts(self.url, batch, self.token, self.timeout_s)
        except AlertPostError as e:  # the router is down or refuses: retry on the next batch
            self.failures += 1
            log.warning("posting %d alerts failed (will retry): %s", len(batch), e)
            return False
        self.pending.clear()
        self.sent += len(batch)
        return True

    def close(self) -> None:
        self.pending.clear()
