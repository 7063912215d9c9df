"""The backtest report: how many anomalies, alerts and pages a configuration would have produced.

Alerts are what the flows post (one per incident, one per saturation forecast); pages are the
notifications the routing tree of an Alertmanager-format config would have sent for them (one per
receiver and alert group, as the router groups them), so on-call can compare configurations
before changing a threshold. Anomalies that someone marked as false positives in the live run
(anomaly ids do not depend on the run) are counted too.
"""

from __future__ import annotations

from collections import Counter

from forewarn.flows.notify import forecast_alert, incident_alert
from forewarn.flows.store import FlowStore


def report(store: FlowStore, run: str, alerts_config: str | None = None) -> dict:
    c = store.client
    q = {"run": run}
    kinds = dict(
        c.query(
            f"SELECT kind, count() FROM {store.t('anomalies')} FINAL WHERE run = {{run:String}} GROUP BY kind",
            parameters=q,
        ).result_rows
    )
    fps = c.query(
        f"""SELECT count() FROM {store.t("anomalies")} FINAL WHERE run = {{run:String}} AND anomaly_id IN
            (SELECT anomaly_id FROM {store.t("forewarn_feedback")} WHERE label = 'false_positive')""",
        parameters=q,
    ).result_rows[0][0]
    res = c.query(f"SELECT * FROM {store.t('incidents')} FINAL WHERE run = {{run:String}}", parameters=q)
    incidents = [dict(zip(res.column_names, r, strict=True)) for r in res.result_rows]
    alerts = [incident_alert(i, [], 0, 0)["labels"] for i in incidents if i["alert_labels"]]
    res = c.query(
        f"""SELECT service, name, any(labels), any(explanation), min(ts) FROM {store.t("anomalies")} FINAL
            WHERE run = {{run:String}} AND kind = 'forecast' GROUP BY series_id, service, name""",
        parameters=q,
    )
    for service, name, labels, text, first in res.result_rows:
        fc = {
            "service": service,
            "name": name,
            "labels": labels,
            "explanation": text,
            "first_s": first.timestamp(),
        }
        alerts.append(forecast_alert(fc, 0, 0)["labels"])
    out = {
        "anomalies": int(kinds.get("deviation", 0)),
        "suppressed_by_feedback": int(kinds.get("suppressed", 0)),
        "forecasts": int(kinds.get("forecast", 0)),
        "marked_false_positive": int(fps),
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
