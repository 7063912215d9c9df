"""Alerts to the router: one alert per incident (not one per anomaly), one per capacity forecast.

The contract is Alertmanager's ``POST /api/v2/alerts``. Alerts are re-posted on every batch while
active (Alertmanager resolves an alert that is not refreshed) and the set to post is derived from
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
from datetime import UTC, datetime

import httpx
from forewarn.flows.store import ms_of

log = logging.getLogger(__name__)
MAX_PENDING = 10_000


def iso(ts_s: float) -> str:
    return datetime.fromtimestamp(ts_s, tz=UTC).isoformat().replace("+00:00", "Z")


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
    labels = incident_labels(inc, suspects)
    started = ms_of(inc["started_at"]) / 1000.0
    top = suspects[0] if suspects else {}
    what = f"{top.get('service', '?')} {top.get('operation', '')}".strip()
    ranked = [
        f"{i + 1}. {s['service']}{' ' + s['operation'] if s.get('operation') else ''} (weight {s['weight']}; "
        f"{', '.join(s['signals'][:5])})" + (f": {s['evidence'][0]}" if s.get("evidence") else "")
        for i, s in enumerate(suspects[:5])
    ]
    ends = now_s if inc.get("resolved") else now_s + hold_s
    return {
        "labels": labels,
        "annotations": {
            "summary": f"Incident {inc['incident_id']}: {what} is the top suspect "
            f"({inc['anomalies']} anomalies across {', '.join(inc['services'])})",
            "description": "Ranked suspects:\n" + "\n".join(ranked),
            "suspects": json.dumps(suspects[:10]),
            "services": ",".join(inc["services"]),
        },
        "startsAt": iso(started),
        "endsAt": iso(max(ends, started + 0.001)),
    }


def forecast_alert(a: dict, now_s: float, hold_s: float, resolved: bool = False) -> dict:
    labels = {
        "alertname": "ForewarnSaturationForecast",
        "service": a["service"],
        "signal": a["name"],
        "severity": "warning",
        "source": "forewarn",
        **{k: v for k, v in (a.get("labels") or {}).items() if k.replace("_", "").replace(".", "").isalnum()},
    }
    return {
        "labels": {k.replace(".", "_"): str(v) for k, v in labels.items()},
        "annotations": {"summary": a["explanation"], "eta_s": str(a.get("eta_s", ""))},
        "startsAt": iso(a["first_s"]),
        "endsAt": iso(now_s if resolved else now_s + hold_s),
    }


class Notifier:
    """Posts alert batches to ``<url>/api/v2/alerts``; keeps resolved ones that failed for later."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 5.0):
        self.url = url.rstrip("/") + "/api/v2/alerts"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(
            timeout=timeout_s, headers=headers, transport=httpx.HTTPTransport(retries=2)
        )
        self.pending: deque[dict] = deque(maxlen=MAX_PENDING)
        self.sent = 0
        self.failures = 0

    def post(self, alerts: list[dict], resolved: list[dict] | None = None) -> bool:
        self.pending.extend(resolved or [])
        batch = list(self.pending) + alerts
        if not batch:
            return True
        try:
            r = self.client.post(
                self.url, content=json.dumps(batch), headers={"Content-Type": "application/json"}
            )
            if r.status_code >= 300:
                raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
        except Exception as e:  # the router is down or refuses: retry on the next batch
            self.failures += 1
            log.warning("posting %d alerts to %s failed (will retry): %s", len(batch), self.url, e)
            return False
        self.pending.clear()
        self.sent += len(batch)
        return True

    def close(self) -> None:
        self.client.close()
