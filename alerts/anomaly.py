"""forewarn's own alerts: an anomaly becomes a v2 API alert, posted like any other client's.

Detectors and flows call :func:`anomaly_alert` and :func:`post_alerts` (or its async twin);
the router then treats the alert exactly like one from Prometheus.

>>> a = anomaly_alert("checkout", "latency_p99", "critical", "p99 latency 3x baseline",
...                   "residual 6.1 sigma above forecast", score=0.997, forecast=120.5,
...                   dashboard_url="http://grafana/d/x", starts_at=1.5e9)
>>> a["labels"]
{'alertname': 'ForewarnAnomaly', 'service': 'checkout', 'signal': 'latency_p99', 'severity': 'critical'}
>>> a["annotations"]["score"], a["annotations"]["forecast"], a["startsAt"]
('0.997', '120.5', '2017-07-14T02:40:00Z')
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from forewarn.alerts.model import format_time

ALERTNAME = "ForewarnAnomaly"
SEVERITIES = ("info", "warning", "critical")


class AlertPostError(RuntimeError):
    """The router refused or could not be reached; the message says which and why."""


# Routers in this process (``forewarn up``) by base URL: the credential and TLS trust that reach
# them, so forewarn's own flows post to a router behind a web config without configuration.
_LOCAL: dict[str, tuple[str, ssl.SSLContext | None]] = {}


def register_local_router(url: str, token: str, cert_file: Path | None = None) -> None:
    """Reach the in-process router at ``url`` with ``token`` (when the caller has none) and,
    for HTTPS, trust exactly its own certificate (``cert_file``; any host name, as it is pinned)."""
    ctx = None
    if cert_file is not None:
        ctx = ssl.create_default_context(cafile=str(cert_file))
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # the leaf itself is the trust anchor
        ctx.check_hostname = False
    _LOCAL[url.rstrip("/")] = (token, ctx)


def unregister_local_router(url: str) -> None:
    _LOCAL.pop(url.rstrip("/"), None)


def _reach(url: str, token: str | None) -> tuple[str | None, ssl.SSLContext | bool]:
    local = _LOCAL.get(url.rstrip("/"))
    if local is None:
        return token, True
    return token or local[0], local[1] or True


def anomaly_alert(
    service: str,
    signal: str,
    severity: str,
    summary: str,
    explanation: str,
    score: float,
    forecast: float | None = None,
    dashboard_url: str | None = None,
    starts_at: float | None = None,
    ends_at: float | None = None,
    generator_url: str = "",
    extra_labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A ``postableAlert`` for one anomaly; pass ``ends_at`` (e.g. now) to resolve it.

    Labels (``alertname, service, signal, severity``) are the alert's identity, so the same
    anomaly re-posted updates one alert instead of paging again.
    """
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    if not service or not signal:
        raise ValueError("service and signal must be non-empty")
    labels = {"alertname": ALERTNAME, "service": service, "signal": signal, "severity": severity}
    labels.update(extra_labels or {})
    annotations = {"summary": summary, "explanation": explanation, "score": f"{score:.6g}"}
    if forecast is not None:
        annotations["forecast"] = f"{forecast:.6g}"
    if dashboard_url:
        annotations["dashboard"] = dashboard_url
    alert: dict[str, Any] = {
        "labels": labels,
        "annotations": annotations,
        "startsAt": format_time(time.time() if starts_at is None else starts_at),
        "generatorURL": generator_url,
    }
    if ends_at is not None:
        alert["endsAt"] = format_time(ends_at)
    return alert


def _check(resp: httpx.Response, url: str) -> None:
    if resp.status_code != 200:
        raise AlertPostError(f"router at {url} answered {resp.status_code}: {resp.text.strip()[:500]}")


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def post_alerts(
    url: str, alerts: Sequence[dict[str, Any]], token: str | None = None, timeout: float = 10.0
) -> None:
    """POST alerts to ``url`` (the router's base URL); raises :class:`AlertPostError` on failure."""
    endpoint = url.rstrip("/") + "/api/v2/alerts"
    token, verify = _reach(url, token)
    try:
        resp = httpx.post(
            endpoint,
            json=list(alerts),
            headers=_headers(token),
            timeout=timeout,
            trust_env=False,
            verify=verify,
        )
    except httpx.HTTPError as e:
        raise AlertPostError(f"cannot reach router at {url}: {e}") from None
    _check(resp, url)


async def post_alerts_async(
    url: str,
    alerts: Sequence[dict[str, Any]],
    token: str | None = None,
    timeout: float = 10.0,
    client: httpx.AsyncClient | None = None,
) -> None:
    """The async twin of :func:`post_alerts`; reuse ``client`` when posting often."""
    endpoint = url.rstrip("/") + "/api/v2/alerts"
    try:
        token, verify = _reach(url, token)
        if client is None:
            async with httpx.AsyncClient(trust_env=False, verify=verify) as c:
                resp = await c.post(endpoint, json=list(alerts), headers=_headers(token), timeout=timeout)
        else:
            resp = await client.post(endpoint, json=list(alerts), headers=_headers(token), timeout=timeout)
    except httpx.HTTPError as e:
        raise AlertPostError(f"cannot reach router at {url}: {e}") from None
    _check(resp, url)
