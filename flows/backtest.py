"""The backtest report: how many anomalies, alerts and pages a configuration would have produced.

Alerts are what the flows post (one per incident, one per saturation forecast); pages are the
notifications the routing tree of an Alertmanager-format config would have sent for them (one per
receiver and alert group, as the router groups them), so on-call can compare configurations
before changing a threshold. Anomalies that someone marked as false positives in the live run
(anomaly ids do not depend on the run) are counted too.
"""

from __future__ import annotations

from collections import Counter

from forewarn.flows.notify import forecast_labels
from forewarn.flows.store import FlowStore


def report(store: FlowStore, run: str, alerts_config: str | None = None) -> dict:
    counts = store.run_counts(run)
    incidents = store.incidents(run)
    # the labels each notified incident was posted with, as stored (incident_labels fixed them)
    alerts = [dict(i["alert_labels"]) for i in incidents if i["alert_labels"]]
    alerts += [forecast_labels(w) for w in store.forecast_series(run)]
    out = {
        "anomalies": counts.get("deviation", 0),
        "suppressed_by_feedback": counts.get("suppressed", 0),
        "forecasts": counts.get("forecast", 0),
        "marked_false_positive": counts["marked_false_positive"],
        "incidents": len(incidents),
        "alerts": len(alerts),
    }
    out["pages"], out["pages_by_receiver"] = pages(alerts, alerts_config)
    return out


def pages(alerts: list[dict[str, str]], alerts_config: str | None) -> tuple[int, dict[str, int]]:
    """Notifications the routing tree would send: distinct (receiver, group) per alert route."""
    if not alerts_config:
        crit = sum(a.get("severity") == "critical" for a in alerts)
        return crit, {"(no routing config: critical alerts)": crit}
    from forewarn.alerts.config import load_config
    from forewarn.alerts.routing import build_tree, group_key

    tree = build_tree(load_config(alerts_config).route)
    groups: set[tuple[str, str]] = set()
    for labels in alerts:
        for node in tree.match(labels):
            groups.add((node.receiver, group_key(node, node.group_labels(labels))))
    per = Counter(r for r, _ in groups)
    return len(groups), dict(sorted(per.items()))
