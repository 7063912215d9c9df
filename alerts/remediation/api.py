"""HTTP endpoints for pending remediations, mounted by the router next to the Alertmanager API.

``GET /api/forewarn/v1/remediations[?state=pending&limit=N]`` lists actions (newest first);
``POST .../{id}/approve`` and ``.../{id}/deny`` take ``{"by": "alice", "comment": "..."}``.
``GET .../status`` gives circuit-breaker states and the audit backlog. Unknown ids answer 404,
actions not waiting for a decision 409, bad bodies 400.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from forewarn.alerts.remediation.engine import ActionConflict, ActionNotFound, RemediationEngine
from forewarn.alerts.remediation.state import ALL_STATES
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

PREFIX = "/api/forewarn/v1/remediations"


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _error(status: int, message: str) -> Response:
    return _json({"error": message}, status)


def routes(engine: RemediationEngine) -> list[BaseRoute]:
    """Starlette routes bound to ``engine``; the router mounts them (and applies its auth)."""

    async def list_actions(request: Request) -> Response:
        state = request.query_params.get("state") or None
        if state is not None and state not in ALL_STATES:
            return _error(400, f"unknown state {state!r}; one of: {', '.join(ALL_STATES)}")
        try:
            limit = int(request.query_params.get("limit", "1000"))
        except ValueError:
            return _error(400, "limit must be an integer")
        if not 1 <= limit <= 10_000:
            return _error(400, "limit must be between 1 and 10000")
        actions = await engine.list_actions(state, limit)
        return _json([a.to_api() for a in actions])

    def decision(approve: bool):  # a route factory
        async def handler(request: Request) -> Response:
            action_id = request.path_params["id"]
            raw = await request.body()
            try:
                body = orjson.loads(raw) if raw.strip() else {}
            except orjson.JSONDecodeError as e:
                return _error(400, f"body is not valid JSON: {e}")
            if not isinstance(body, dict):
                return _error(400, "body must be a JSON object with 'by' and optional 'comment'")
            by, comment = body.get("by"), body.get("comment", "")
            if not isinstance(by, str) or not by.strip():
                return _error(400, "'by' (who decides) is required and must be a non-empty string")
            if not isinstance(comment, str):
                return _error(400, "'comment' must be a string")
            try:
                a = await engine.decide(action_id, approve, by.strip()[:200], comment[:2000])
            except ActionNotFound:
                return _error(404, f"no remediation action {action_id!r}")
            except ActionConflict as e:
                return _error(409, str(e))
            return _json(a.to_api())

        return handler

    async def status(request: Request) -> Response:
        return _json(await asyncio.to_thread(engine.status))

    return [
        Route(PREFIX, list_actions, methods=["GET"]),
        Route(PREFIX + "/status", status, methods=["GET"]),
        Route(PREFIX + "/{id}/approve", decision(True), methods=["POST"]),
        Route(PREFIX + "/{id}/deny", decision(False), methods=["POST"]),
    ]
