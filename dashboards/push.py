"""``forewarn grafana push``: upsert the data sources, the folder and the dashboards into a Grafana
through its HTTP API (grafana-client), then write anomaly, incident and remediation annotations.

Everything is an upsert, so pushing twice changes nothing the second time: data sources are
looked up by uid and updated in place, dashboards are posted with ``overwrite``, and each
annotation carries a ``forewarn:<kind>:<id>`` tag; ids already present in Grafana for the window
are skipped, which is what lets ``--follow`` write annotations as they happen without duplicates.

>>> annotation_tags("anomaly", 42, ["svc:web", "web"])
['forewarn', 'anomaly', 'svc:web', 'web', 'forewarn:anomaly:42']
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from clickhouse_connect.driver.client import Client
from forewarn.dashboards.build import FOLDER, FOLDER_UID

log = logging.getLogger(__name__)
MAX_ANNOTATIONS = 1000  # per kind and push: a bounded request burst even after a long outage


class PushError(RuntimeError):
    """Grafana refused or could not be reached; the message says which call and why."""


@dataclass
class PushReport:
    grafana_version: str = ""
    datasources: dict[str, str] = field(default_factory=dict)  # uid -> created | updated
    dashboards: dict[str, str] = field(default_factory=dict)  # uid -> url
    annotations: dict[str, int] = field(default_factory=dict)  # kind -> written
    skipped: int = 0


def annotation_tags(kind: str, ident: object, extra: Iterable[str]) -> list[str]:
    return ["forewarn", kind, *extra, f"forewarn:{kind}:{ident}"]


def _ms(v: datetime) -> int:
    from forewarn.flows.store import ms_of

    return ms_of(v)


class GrafanaPush:
    """One Grafana organisation reached with a service-account token (or basic auth in the URL)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 10.0):
        from grafana_client import GrafanaApi

        self.url = url.rstrip("/")
        self.api = GrafanaApi.from_url(self.url, credential=token or None, timeout=timeout)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from grafana_client.client import GrafanaException

        try:
            return fn(*args, **kwargs)
        except GrafanaException as e:
            raise PushError(f"{what}: Grafana answered {e.status_code}: {_message(e.response)}") from None
        except Exception as e:  # connection refused, TLS, timeouts
            raise PushError(f"{what}: {type(e).__name__}: {e}") from None

    def _status(self, what: str, fn: Any, *args: Any) -> tuple[int, Any]:
        """Like ``_call`` but a 404 is an answer, not an error (for get-or-create)."""
        from grafana_client.client import GrafanaException

        try:
            return 200, fn(*args)
        except GrafanaException as e:
            if e.status_code == 404:
                return 404, None
            raise PushError(f"{what}: Grafana answered {e.status_code}: {_message(e.response)}") from None
        except Exception as e:
            raise PushError(f"{what}: {type(e).__name__}: {e}") from None

    # -- steps ------------------------------------------------------------------------------------
    def health(self) -> dict:
        return self._call("GET /api/health", self.api.client.GET, "/health")

    def upsert_folder(self, uid: str = FOLDER_UID, title: str = FOLDER) -> str:
        code, _ = self._status(f"GET /api/folders/{uid}", self.api.folder.get_folder, uid)
        if code == 404:
            self._call("POST /api/folders", self.api.folder.create_folder, title, uid=uid)
            return "created"
        return "exists"

    def upsert_datasource(self, ds: dict[str, Any]) -> str:
        uid = ds["uid"]
        code, current = self._status(
            f"GET /api/datasources/uid/{uid}", self.api.datasource.get_datasource_by_uid, uid
        )
        if code == 404:
            self._call("POST /api/datasources", self.api.datasource.create_datasource, ds)
            return "created"
        body = {**ds, "id": current.get("id"), "version": current.get("version")}
        self._call(f"PUT /api/datasources/uid/{uid}", self.api.datasource.update_datasource_by_uid, uid, body)
        return "updated"

    def upsert_dashboard(self, dash: dict[str, Any], folder_uid: str = FOLDER_UID) -> str:
        body = {
            "dashboard": {**dash, "id": None},
            "folderUid": folder_uid,
            "overwrite": True,
            "message": "forewarn grafana push",
        }
        res = self._call("POST /api/dashboards/db", self.api.dashboard.update_dashboard, body)
        return str(res.get("url", ""))

    def existing_annotation_ids(self, kind: str, from_ms: int, to_ms: int) -> set[str]:
        found = self._call(
            "GET /api/annotations",
            self.api.annotations.find_annotations,
            time_from=from_ms,
            time_to=to_ms,
            tags=["forewarn", kind],
            limit=10 * MAX_ANNOTATIONS,
            ann_type="annotation",
        )
        prefix = f"forewarn:{kind}:"
        return {t[len(prefix) :] for a in found or [] for t in a.get("tags", []) if t.startswith(prefix)}

    def write_annotations(
        self, kind: str, items: list[dict[str, Any]], from_ms: int, to_ms: int
    ) -> tuple[int, int]:
        """Post ``items`` (``id, time, timeEnd?, text, tags``) not yet in Grafana; returns (written, skipped)."""
        if not items:
            return 0, 0
        # Look up what Grafana has over the items' own times (an anomaly detected in this window
        # may belong to an earlier bucket), not just the window.
        lo = min([from_ms, *(int(it["time"]) for it in items)])
        hi = max([to_ms, *(int(it.get("timeEnd") or it["time"]) for it in items)])
        have = self.existing_annotation_ids(kind, lo, hi)
        written = skipped = 0
        for it in items[:MAX_ANNOTATIONS]:
            if str(it["id"]) in have:
                skipped += 1
                continue
            self._call(
                "POST /api/annotations",
                self.api.annotations.add_annotation,
                time_from=it["time"],
                time_to=it.get("timeEnd") or it["time"],
                tags=annotation_tags(kind, it["id"], it.get("tags", [])),
                text=it["text"],
            )
            written += 1
        return written, skipped

    def push(
        self,
        dashboards: list[dict[str, Any]],
        datasources: list[dict[str, Any]],
        client: Client | None = None,
        from_ms: int | None = None,
        to_ms: int | None = None,
    ) -> PushReport:
        rep = PushReport()
        rep.grafana_version = str(self.health().get("version", ""))
        for ds in datasources:
            rep.datasources[ds["uid"]] = self.upsert_datasource(ds)
        self.upsert_folder()
        for d in dashboards:
            rep.dashboards[d["uid"]] = self.upsert_dashboard(d)
        if client is not None and from_ms is not None and to_ms is not None:
            self.push_annotations(client, from_ms, to_ms, rep)
        return rep

    def push_annotations(
        self, client: Client, from_ms: int, to_ms: int, rep: PushReport | None = None
    ) -> PushReport:
        rep = rep or PushReport()
        for kind, items in collect_annotations(client, from_ms, to_ms).items():
            n, skipped = self.write_annotations(kind, items, from_ms, to_ms)
            rep.annotations[kind] = rep.annotations.get(kind, 0) + n
            rep.skipped += skipped
        return rep

    def follow(
        self,
        client: Client,
        since_ms: int,
        interval_s: float,
        stop: threading.Event,
        on_written: Callable[[PushReport], None] = lambda r: None,
    ) -> None:
        """Write new annotations every ``interval_s`` until ``stop`` is set. Each round re-reads
        from two intervals back (anomalies land a bucket after their time, incidents change when
        they resolve); what Grafana already has is skipped. A failed round is logged and retried."""
        last = since_ms
        while not stop.wait(interval_s):
            now_ms = int(time.time() * 1000)
            try:
                r = self.push_annotations(client, last, now_ms)
            except PushError as e:
                log.warning("annotation round failed (will retry): %s", e)
                continue
            if any(r.annotations.values()):
                on_written(r)
            last = max(since_ms, now_ms - int(2 * interval_s * 1000))


def _message(response: Any) -> str:
    if isinstance(response, dict):
        return str(response.get("message") or response)
    return str(response)[:300]


def collect_annotations(client: Client, from_ms: int, to_ms: int) -> dict[str, list[dict[str, Any]]]:
    """Anomalies detected, incidents active and remediation outcomes in ``[from_ms, to_ms]``, as
    annotation items (each at its own time: an anomaly at its bucket, an incident over its span)."""
    p = {"a": from_ms, "b": to_ms, "n": MAX_ANNOTATIONS}
    rng = "BETWEEN fromUnixTimestamp64Milli({a:Int64}) AND fromUnixTimestamp64Milli({b:Int64})"
    out: dict[str, list[dict[str, Any]]] = {}
    rows = client.query(
        f"""SELECT anomaly_id, ts, service, name, kind, detector, explanation, score FROM anomalies FINAL
            WHERE run = 'live' AND detected_at {rng} ORDER BY ts LIMIT {{n:UInt32}}""",
        parameters=p,
    ).result_rows
    out["anomaly"] = [
        {
            "id": aid,
            "time": _ms(ts),
            "text": f"{svc} · {name}: {expl} (score {score:.4f})",
            "tags": [f"service:{svc}", kind, det],
        }
        for aid, ts, svc, name, kind, det, expl, score in rows
    ]
    rows = client.query(
        """SELECT incident_id, started_at, updated_at, services, anomalies, resolved,
                   JSONExtractString(suspects, 1, 'service') FROM incidents FINAL
            WHERE run = 'live' AND started_at <= fromUnixTimestamp64Milli({b:Int64})
              AND updated_at >= fromUnixTimestamp64Milli({a:Int64})
            ORDER BY started_at LIMIT {n:UInt32}""",
        parameters=p,
    ).result_rows
    out["incident"] = [
        {
            "id": f"{iid}:{'resolved' if res else 'open'}",
            "time": _ms(st),
            "timeEnd": _ms(up),
            "text": f"incident {iid}: {', '.join(svcs)} ({n} anomalies, top suspect {top or '?'})"
            + (" — resolved" if res else ""),
            "tags": [f"service:{s}" for s in svcs],
        }
        for iid, st, up, svcs, n, res, top in rows
    ]
    rows = client.query(
        f"""SELECT action_id, seq, event_time, hook, event, outcome, reason, latency_ms, labels['service']
            FROM forewarn_remediation_audit
            WHERE event_time {rng} AND event IN ('succeeded', 'failed', 'refused')
            ORDER BY event_time LIMIT {{n:UInt32}}""",
        parameters=p,
    ).result_rows
    out["remediation"] = [
        {
            "id": f"{action}:{seq}",
            "time": _ms(t),
            "text": f"remediation {hook} {event}" + (f": {reason}" if reason else ""),
            "tags": [hook, event, *([f"service:{svc}"] if svc else [])],
        }
        for action, seq, t, hook, event, _outcome, reason, _lat, svc in rows
    ]
    return out
