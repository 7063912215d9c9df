"""HTTP API of the flows: list anomalies and give feedback, the twin of ``forewarn anomaly list|mark``.

``GET /api/v1/anomalies?run=live&limit=50`` and ``POST /api/v1/anomalies/{id}/feedback`` with
``{"label": "false_positive" | "true_positive", "note": "..."}``. Served by ``FlowsService`` when
``flows.api_listen`` is set, or mounted into another Starlette app with :func:`routes`. When
``alerts.api_tokens`` are configured, requests need ``Authorization: Bearer <token>``.

>>> [r.path for r in routes(None, "chdb:///tmp/forewarn-doctest-api", "otel")]
['/api/v1/anomalies', '/api/v1/anomalies/{anomaly_id:int}/feedback']
"""

from __future__ import annotations

import hmac
import threading
import time
from typing import Any

import orjson
from forewarn.flows.store import FlowStore
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

LABELS = ("false_positive", "true_positive")
MAX_BODY = 64 * 1024


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data, default=str), status_code=status, media_type="application/json")


class _Store:
    """One lazily opened client for the API's requests, used by one request at a time."""

    def __init__(self, dsn: str, database: str):
        self.dsn, self.database = dsn, database
        self.lock = threading.Lock()
        self.store: FlowStore | None = None

    def call(self, fn):
        from forewarn.storage.client import connect

        with self.lock:
            if self.store is None:
                self.store = FlowStore(connect(self.dsn, database=self.database), self.database)
            return fn(self.store)


def routes(tokens: list[str] | None, dsn: str, database: str) -> list[Route]:
    st = _Store(dsn, database)

    def authorized(request: Request) -> bool:
        if not tokens:
            return True
        got = request.headers.get("authorization", "")
        return any(hmac.compare_digest(got, f"Bearer {t}") for t in tokens)

    async def list_anomalies(request: Request) -> Response:
        if not authorized(request):
            return _json("unauthorized", 401)
        run = request.query_params.get("run", "live")
        try:
            limit = int(request.query_params.get("limit", "50"))
        except ValueError:
            return _json("limit must be an integer", 400)
        if not 1 <= limit <= 10_000:
            return _json("limit must be in 1..10000", 400)
        df = await run_in_threadpool(st.call, lambda s: s.anomalies(run, limit))
        rows = df.drop(columns=[c for c in ("_ts_ms",) if c in df]).to_dict("records") if len(df) else []
        for r in rows:
            r["anomaly_id"], r["series_id"], r["incident_id"] = (
                str(r["anomaly_id"]), str(r["series_id"]), str(r["incident_id"])
            )  # fmt: skip
        return _json(rows)

    async def feedback(request: Request) -> Response:
        if not authorized(request):
            return _json("unauthorized", 401)
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return _json(f"body larger than {MAX_BODY} bytes", 413)
        try:
            body = orjson.loads(raw or b"{}")
        except orjson.JSONDecodeError as e:
            return _json(f"body is not valid JSON: {e}", 400)
        label = body.get("label") if isinstance(body, dict) else None
        note = body.get("note", "") if isinstance(body, dict) else ""
        if label not in LABELS or not isinstance(note, str):
            return _json(f"label must be one of {', '.join(LABELS)} and note a string", 400)
        aid = int(request.path_params["anomaly_id"])

        def write(s: FlowStore):
            a = s.anomaly(aid)
            if a is None:
                return None
            s.write_feedback(aid, int(a["series_id"]), a["detector"], label, note[:2000], time.time() * 1000)
            return a

        a = await run_in_threadpool(st.call, write)
        if a is None:
            return _json(f"no anomaly {aid}", 404)
        return _json({"anomaly_id": str(aid), "series_id": str(a["series_id"]), "label": label})

    return [
        Route("/api/v1/anomalies", list_anomalies, methods=["GET"]),
        Route("/api/v1/anomalies/{anomaly_id:int}/feedback", feedback, methods=["POST"]),
    ]
