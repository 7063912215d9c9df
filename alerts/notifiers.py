"""Integrations: webhook (v4 payload), Slack incoming webhook, PagerDuty Events API v2.

Each integration turns one flush into one HTTP request and says whether a failure is worth
retrying (5xx, network errors; 429 for PagerDuty), exactly the split Alertmanager makes.

>>> from forewarn.alerts.model import Alert
>>> a = Alert({"alertname": "Down", "job": "api"}, {"summary": "x"}, 10.0, 0.0)
>>> d = template_data("team.ops", "{}:{}", {}, [a], "http://am", now=20.0)
>>> d["receiver"], d["status"], d["commonLabels"]
('team\\\\.ops', 'firing', {'alertname': 'Down', 'job': 'api'})
>>> subject(d)
'[FIRING:1]  (Down api)'
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

import httpx
import orjson
from forewarn.alerts import config as c
from forewarn.alerts.model import Alert

from forewarn import __version__

log = logging.getLogger(__name__)

USER_AGENT = f"forewarn/{__version__} (Alertmanager/0.25.0 compatible)"


def quote_meta(s: str) -> str:
    """Go's ``regexp.QuoteMeta``: backslash before each of ``\\.+*?()|[]{}^$``."""
    return re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", s)


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    out = dict(maps[0])
    for m in maps[1:]:
        for k in list(out):
            if m.get(k) != out[k]:
                del out[k]
    return out


def template_data(
    receiver: str,
    group_key: str,
    group_labels: dict[str, str],
    alerts: list[Alert],
    external_url: str,
    now: float,
) -> dict[str, Any]:
    """``template.Data`` as webhook v4 serialises it; common* come from the alerts in this message."""
    items = [a.webhook_dict(now) for a in alerts]
    firing = any(i["status"] == "firing" for i in items)
    return {
        "receiver": quote_meta(receiver),
        "status": "firing" if firing else "resolved",
        "alerts": items,
        "groupLabels": dict(group_labels),
        "commonLabels": _common([a.labels for a in alerts]),
        "commonAnnotations": _common([a.annotations for a in alerts]),
        "externalURL": external_url,
    }


def _values(m: dict[str, str]) -> str:
    return " ".join(m[k] for k in sorted(m))


def subject(d: dict[str, Any]) -> str:
    """Alertmanager's default ``__subject`` template, the title of Slack and PagerDuty messages."""
    n_firing = sum(1 for a in d["alerts"] if a["status"] == "firing")
    head = f"[{d['status'].upper()}" + (f":{n_firing}" if d["status"] == "firing" else "") + "]"
    text = f"{head} {_values(d['groupLabels'])} "
    if len(d["commonLabels"]) > len(d["groupLabels"]):
        rest = {k: v for k, v in d["commonLabels"].items() if k not in d["groupLabels"]}
        text += f"({_values(rest)})"
    return text


def alertmanager_url(d: dict[str, Any]) -> str:
    return f"{d['externalURL']}/#/alerts?receiver={quote_plus(d['receiver'])}"


def _instances(alerts: list[dict[str, Any]]) -> str:
    out = []
    for a in alerts:
        out.append("Labels:\n" + "".join(f" - {k} = {a['labels'][k]}\n" for k in sorted(a["labels"])))
        out.append(
            "Annotations:\n" + "".join(f" - {k} = {a['annotations'][k]}\n" for k in sorted(a["annotations"]))
        )
        out.append(f"Source: {a['generatorURL']}\n")
    return "".join(out)


@dataclass
class Flush:
    """What one integration needs to know about the flush it notifies."""

    receiver: str
    group_key: str
    group_labels: dict[str, str]
    external_url: str
    now: float


class NotifyError(Exception):
    def __init__(self, message: str, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


class Integration:
    """One configured notifier of a receiver; ``idx`` is its position among same-kind configs."""

    name = "integration"
    retry_statuses: frozenset[int] = frozenset()

    def __init__(self, idx: int, conf: Any, transport: Transport, glob: c.GlobalConfig) -> None:
        self.idx, self.conf, self.glob = idx, conf, glob
        self.http, self.slots = transport.client, transport.slots
        http_conf = getattr(conf, "http_config", None) or glob.http_config
        self.headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **http_conf.headers()}
        self.auth = (
            (http_conf.basic_auth.username, http_conf.basic_auth.password.get_secret_value())
            if http_conf.basic_auth
            else None
        )

    @property
    def send_resolved(self) -> bool:
        return bool(self.conf.send_resolved)

    def url(self) -> str:
        raise NotImplementedError

    def body(self, f: Flush, alerts: list[Alert]) -> dict[str, Any]:
        raise NotImplementedError

    async def notify(self, f: Flush, alerts: list[Alert], timeout: float) -> None:
        """One attempt; raises :class:`NotifyError` saying whether to retry."""
        payload = orjson.dumps(self.body(f, alerts))
        try:
            async with self.slots:
                resp = await self.http.post(
                    self.url(),
                    content=payload,
                    headers=self.headers,
                    auth=self.auth,
                    timeout=max(timeout, 0.001),
                )
        except httpx.HTTPError as e:
            raise NotifyError(f"{self.name}: {type(e).__name__}: {e}", retry=True) from None
        if 200 <= resp.status_code < 300:
            return
        body = resp.text[:200]
        retry = resp.status_code >= 500 or resp.status_code in self.retry_statuses
        raise NotifyError(f"{self.name}: unexpected status code {resp.status_code}: {body}", retry=retry)


class Webhook(Integration):
    name = "webhook"

    def url(self) -> str:
        return self.conf.url

    def body(self, f: Flush, alerts: list[Alert]) -> dict[str, Any]:
        truncated = 0
        if self.conf.max_alerts and len(alerts) > self.conf.max_alerts:
            truncated = len(alerts) - self.conf.max_alerts
            alerts = alerts[: self.conf.max_alerts]
        data = template_data(f.receiver, f.group_key, f.group_labels, alerts, f.external_url, f.now)
        return {**data, "version": "4", "groupKey": f.group_key, "truncatedAlerts": truncated}


class Slack(Integration):
    name = "slack"

    def url(self) -> str:
        url = self.conf.api_url or self.glob.slack_api_url
        if not url:
            raise NotifyError("slack: no api_url configured", retry=False)
        return url

    def body(self, f: Flush, alerts: list[Alert]) -> dict[str, Any]:
        d = template_data(f.receiver, f.group_key, f.group_labels, alerts, f.external_url, f.now)
        title = self.conf.title or subject(d)
        link = alertmanager_url(d)
        msg: dict[str, Any] = {
            "username": self.conf.username,
            "attachments": [
                {
                    "title": title,
                    "title_link": link,
                    "text": self.conf.text or "",
                    "fallback": f"{title} | {link}",
                    "callback_id": "",
                    "footer": "",
                    "color": "danger" if d["status"] == "firing" else "good",
                    "mrkdwn_in": ["fallback", "pretext", "text"],
                }
            ],
        }
        if self.conf.channel:
            msg["channel"] = self.conf.channel
        return msg


class PagerDuty(Integration):
    name = "pagerduty"
    retry_statuses = frozenset({429})

    def url(self) -> str:
        return self.conf.url or self.glob.pagerduty_url

    def body(self, f: Flush, alerts: list[Alert]) -> dict[str, Any]:
        d = template_data(f.receiver, f.group_key, f.group_labels, alerts, f.external_url, f.now)
        firing = [a for a in d["alerts"] if a["status"] == "firing"]
        resolved = [a for a in d["alerts"] if a["status"] == "resolved"]
        summary = (self.conf.description or subject(d))[:1024]
        payload: dict[str, Any] = {
            "summary": summary,
            "source": self.conf.source or self.conf.client,
            "severity": self.conf.severity,
            "custom_details": {
                "firing": _instances(firing),
                "resolved": _instances(resolved),
                "num_firing": str(len(firing)),
                "num_resolved": str(len(resolved)),
            },
        }
        for key in ("component", "group", "class_"):
            if getattr(self.conf, key):
                payload[key.rstrip("_")] = getattr(self.conf, key)
        return {
            "routing_key": self.conf.routing_key.get_secret_value(),
            "event_action": "trigger" if d["status"] == "firing" else "resolve",
            "dedup_key": hashlib.sha256(f.group_key.encode()).hexdigest(),
            "payload": payload,
            "client": self.conf.client,
            "client_url": alertmanager_url(d),
        }


def build_integrations(recv: c.Receiver, glob: c.GlobalConfig, clients: HTTPClients) -> list[Integration]:
    out: list[Integration] = []
    for cls, confs in (
        (Webhook, recv.webhook_configs),
        (Slack, recv.slack_configs),
        (PagerDuty, recv.pagerduty_configs),
    ):
        for i, conf in enumerate(confs):
            out.append(
                cls(i, conf, clients.get(getattr(conf, "http_config", None) or glob.http_config), glob)
            )
    return out


@dataclass
class Transport:
    """A pooled client and the slots bounding its concurrent requests (a flush storm queues
    here, under the flush deadline, instead of failing with pool timeouts)."""

    client: httpx.AsyncClient
    slots: asyncio.Semaphore


MAX_CONCURRENT_REQUESTS = 16


class HTTPClients:
    """One pooled client per distinct TLS/redirect setting, closed with the router."""

    def __init__(self) -> None:
        self._clients: dict[tuple[Any, ...], Transport] = {}

    def get(self, hc: c.HTTPConfig) -> Transport:
        tls = hc.tls_config or c.TLSConfig()
        key = (
            tls.insecure_skip_verify,
            str(tls.ca_file),
            str(tls.cert_file),
            str(tls.key_file),
            hc.follow_redirects,
        )
        if key not in self._clients:
            verify: Any = not tls.insecure_skip_verify
            if tls.ca_file or tls.cert_file:
                import ssl

                # A missing or bad file refuses the config (at start or reload, which then keeps
                # the running one), as Alertmanager does when it builds its integrations.
                what = "ca_file"
                try:
                    ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
                    if tls.insecure_skip_verify:
                        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
                    if tls.cert_file:
                        what = "cert_file/key_file"
                        ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
                except (OSError, ssl.SSLError) as e:
                    reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                    raise c.AlertsConfigError(
                        f"invalid alerts config: tls_config: cannot load {what}: {reason}"
                    ) from None
                verify = ctx
            client = httpx.AsyncClient(
                verify=verify,
                follow_redirects=hc.follow_redirects,
                limits=httpx.Limits(
                    max_connections=MAX_CONCURRENT_REQUESTS, max_keepalive_connections=MAX_CONCURRENT_REQUESTS
                ),
                trust_env=False,
            )
            self._clients[key] = Transport(client, asyncio.Semaphore(MAX_CONCURRENT_REQUESTS))
        return self._clients[key]

    async def aclose(self) -> None:
        for t in self._clients.values():
            await t.client.aclose()
        self._clients.clear()
