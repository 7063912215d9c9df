"""Alerts to the router: one per incident (not one per anomaly), one per saturation warning.

The contract is Alertmanager's ``POST /api/v2/alerts``, through :mod:`forewarn.alerts.anomaly`.
Active alerts are re-posted on every batch with ``endsAt`` a little ahead (Alertmanager resolves an
alert that is not refreshed), and a resolved one is posted once with ``endsAt`` at its resolution,
which makes the router send the resolved notification; resolved posts that failed wait in a
bounded queue. An incident's labels come from :func:`incident_labels` alone (fixed when it is
first notified, so the router sees one alert throughout); its annotations say why (the evidence
of the named service, the ranked suspects) and link to the dashboards that show it.

>>> inc = Incident(7, 0, 60_000, services=["db", "web"], series=[1, 2], anomalies=3)
>>> sus = [{"service": "db", "operation": "SELECT", "weight": 9.0, "signals": ["red.p95"],
...         "evidence": ["db red.p95: latency up: 300 is 30.0x the usual 10"], "attributes": {}}]
>>> incident_labels(inc, sus)["service"], incident_labels(inc, sus)["operation"]
('db', 'SELECT')
>>> inc.labels, inc.suspects = incident_labels(inc, sus), sus
>>> a = incident_alert(inc, now_s=100.0, hold_s=60.0)
>>> a["annotations"]["summary"]
'db SELECT: latency up: 300 is 30.0x the usual 10'
>>> a["annotations"]["dashboard"]
'/d/forewarn-service-overview?var-service=db&from=-300000&to=now'
"""

from __future__ import annotations

import json
import logging
from collections import deque
from urllib.parse import urlencode

from forewarn.alerts.anomaly import AlertPostError, anomaly_alert, post_alerts
from forewarn.flows.incidents import Incident

log = logging.getLogger(__name__)
MAX_PENDING = 10_000
# dashboards/definitions.py builds these (tests/test_flows_incidents.py checks the UIDs exist)
OVERVIEW_UID, ANOMALIES_UID = "forewarn-service-overview", "forewarn-anomalies"
CONTEXT_MS = 300_000  # dashboards open this long before the incident


def incident_labels(inc: Incident, suspects: list[dict]) -> dict[str, str]:
    """The alert's identity: the incident, and the named cause (service, operation)."""
    top = suspects[0] if suspects else {"service": "", "operation": ""}
    labels = {
        "alertname": "ForewarnIncident",
        "incident": str(inc.incident_id),
        "service": top["service"] or "unknown",
        "severity": "critical",
        "source": "forewarn",
    }
    if top.get("operation"):
        labels["operation"] = top["operation"]
    return labels


def dashboard_link(base: str, uid: str, service: str, start_ms: int, end_ms: int | None) -> str:
    query = {
        "var-service": service,
        "from": start_ms - CONTEXT_MS,
        "to": end_ms if end_ms is not None else "now",
    }
    return f"{base.rstrip('/')}/d/{uid}?{urlencode(query)}"


def _why(s: dict) -> str:
    return (
        f"{s['service']}{' ' + s['operation'] if s.get('operation') else ''} (weight {s['weight']}; "
        f"{', '.join(s['signals'][:5])})"
        + (f": {s['evidence'][0]}" if s.get("evidence") else "")
        + "".join(
            f"; {a['key']}={a['value']} carries {a['share']:.0%} of the excess {a['explains']}"
            for a in s.get("attribute_values", [])[:2]
        )
    )


def burning_text(slos: list[dict]) -> str:
    """``checkout-availability (1 h burn 20.0x, page; 41% of the budget left)``, one per SLO.

    >>> burning_text([{"slo": "api-avail", "burn_1h": 20.0, "budget_left": 0.41, "firing": ["page"]}])
    'api-avail (1 h burn 20.0x, page; 41% of the budget left)'
    """
    return "; ".join(
        f"{s['slo']} (1 h burn {s['burn_1h']:.1f}x{', ' + ', '.join(s['firing']) if s['firing'] else ''}; "
        f"{s['budget_left']:.0%} of the budget left)"
        for s in slos
    )


def incident_alert(
    inc: Incident, now_s: float, hold_s: float, dashboards: str = "", slos: list[dict] | None = None
) -> dict:
    """The postable alert of a notified incident (resolved if ``inc.resolved_ms`` is set);
    ``slos``: the SLOs of its services that it is burning (see :meth:`SLOStore.burning`), named
    in the ``slos`` annotation and the description, so the page says what the incident costs."""
    sus = inc.suspects
    named = [s for s in sus if s["service"] == inc.labels["service"]]  # the ranking may move on later
    top = named[0] if named else (sus[0] if sus else {})
    what = f"{inc.labels['service']} {inc.labels.get('operation', '')}".strip()
    first = top.get("evidence", [""])[0] if top.get("evidence") else ""
    summary = f"{what}: {first.split(': ', 1)[-1]}" if first else f"{what}: {inc.anomalies} anomalies"
    callers = [s["service"] for s in sus if s is not top]
    why = (
        f"{what} is the likely cause: the deepest service whose own signals deviate"
        + (f" ({', '.join(callers[:5])} deviate too, as its callers or callees)" if callers else "")
        + f". {inc.anomalies} anomalies across {', '.join(inc.services)}.\nRanked suspects:\n"
        + "\n".join(f"{i + 1}. {_why(s)}" for i, s in enumerate(sus[:5]))
    )
    started = inc.started_ms / 1000.0
    ends = inc.resolved_ms / 1000.0 if inc.resolved_ms is not None else now_s + hold_s
    service = inc.labels["service"]
    link = dashboard_link(dashboards, OVERVIEW_UID, service, inc.started_ms, inc.resolved_ms)
    a = anomaly_alert(service, "incident", "critical", summary, why, score=float(top.get("weight", 0.0)),
                      dashboard_url=link, starts_at=started, ends_at=max(ends, started + 0.001),
                      generator_url=dashboard_link(dashboards, ANOMALIES_UID, service, inc.started_ms,
                                                   inc.resolved_ms) if dashboards else "")  # fmt: skip
    a["labels"] = dict(inc.labels)
    a["annotations"].update(
        description=why,
        suspects=json.dumps(sus[:10]),
        services=",".join(inc.services),
        anomalies_dashboard=dashboard_link(
            dashboards, ANOMALIES_UID, service, inc.started_ms, inc.resolved_ms
        ),
    )
    if slos:
        a["annotations"]["slos"] = ",".join(s["slo"] for s in slos)
        a["annotations"]["description"] += "\nBurning SLOs: " + burning_text(slos)
    return a


def forecast_labels(w: dict) -> dict[str, str]:
    """Identity of a saturation warning: the series (service, signal and its own labels)."""
    extra = {"alertname": "ForewarnSaturationForecast", "source": "forewarn"}
    for k, v in (w.get("labels") or {}).items():
        key = "".join(c if c.isalnum() or c == "_" else "_" for c in k)
        if key and not key[0].isdigit() and key not in ("alertname", "service", "signal", "severity"):
            extra[key] = str(v)
    return {"service": w["service"] or "unknown", "signal": w["name"], "severity": "warning", **extra}


def forecast_alert(
    w: dict, now_s: float, hold_s: float, resolved: bool = False, dashboards: str = ""
) -> dict:
    labels = forecast_labels(w)
    start_ms = int(w["first_s"] * 1000)
    a = anomaly_alert(
        labels["service"], w["name"], "warning", w["explanation"], w["explanation"], score=1.0,
        forecast=float(w["eta_s"]) if w.get("eta_s") not in (None, "") else None,
        dashboard_url=dashboard_link(dashboards, OVERVIEW_UID, labels["service"], start_ms, None),
        starts_at=w["first_s"], ends_at=now_s if resolved else now_s + hold_s,
    )  # fmt: skip
    a["labels"] = labels
    return a


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
