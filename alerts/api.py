"""Alertmanager v2 HTTP API (same paths and JSON) plus health and ``/metrics``, on Starlette.

Handlers are thin: they validate, then call the provider, silences or dispatcher of the
:class:`~forewarn.alerts.server.AlertRouter` they were built for.
"""

from __future__ import annotations

import hmac
import time
from typing import TYPE_CHECKING, Any

import orjson
from forewarn.alerts.config import redacted_yaml
from forewarn.alerts.labels import Matcher, MatcherError, all_match, parse_matchers
from forewarn.alerts.metrics import INVALID, RECEIVED
from forewarn.alerts.model import Alert, AlertValidationError, format_api_time
from forewarn.alerts.silences import SilenceError, SilenceNotFound
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from forewarn import __version__

if TYPE_CHECKING:
    from forewarn.alerts.server import AlertRouter


MAX_BODY = 16 * 1024 * 1024


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _error(status: int, message: str) -> Response:
    # go-swagger writes error payloads as JSON strings; amtool prints them as they are.
    return _json(message, status)


async def _body(request: Request) -> Any:
    """The JSON body, read with a size cap so one huge POST cannot exhaust memory."""
    if int(request.headers.get("content-length") or 0) > MAX_BODY:
        raise ValueError(f"request body larger than {MAX_BODY} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise ValueError(f"request body larger than {MAX_BODY} bytes")
        chunks.append(chunk)
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as e:
        raise ValueError(f"body is not valid JSON: {e}") from None


def _bool(request: Request, name: str, default: bool = True) -> bool:
    v = request.query_params.get(name)
    return default if v is None else v.lower() in ("1", "true", "yes")


def _filter(request: Request) -> list[Matcher]:
    ms = []
    for f in request.query_params.getlist("filter"):
        ms.extend(parse_matchers(f))
    return ms


def routes(router: AlertRouter) -> list[BaseRoute]:
    """The v2 API routes bound to one router instance."""

    async def post_alerts(request: Request) -> Response:
        try:
            body = await _body(request)
        except ValueError as e:
            return _error(400, str(e))
        if not isinstance(body, list):
            return _error(400, "body must be a JSON array of alerts")
        now = time.time()
        valid: list[Alert] = []
        errors: list[str] = []
        for i, raw in enumerate(body):
            try:
                valid.append(Alert.from_api(raw, now, router.config.global_.resolve_timeout))
            except AlertValidationError as e:
                errors.append(f"alert {i}: {e}" if len(body) > 1 else str(e))
        firing = sum(1 for a in valid if not a.resolved_at(now))
        RECEIVED.labels("firing").inc(firing)
        RECEIVED.labels("resolved").inc(len(valid) - firing)
        INVALID.inc(len(errors))
        try:
            router.provider.put(valid, now)
        except OverflowError as e:
            return _error(503, str(e))
        if errors:
            return _error(400, "; ".join(errors))
        return Response(status_code=200)

    async def get_alerts(request: Request) -> Response:
        ms = _filter(request)
        want = {k: _bool(request, k) for k in ("active", "silenced", "inhibited", "unprocessed")}
        recv = request.query_params.get("receiver")
        now = time.time()
        out = []
        for a in sorted(router.provider.alerts.values(), key=lambda a: a.fp):
            if a.resolved_at(now) or not all_match(ms, a.labels):
                continue
            g = router.gettable(a, now)
            if recv and not any(router.receiver_matches(recv, r["name"]) for r in g["receivers"]):
                continue
            st = g["status"]
            if (st["silencedBy"] and not want["silenced"]) or (st["inhibitedBy"] and not want["inhibited"]):
                continue
            if st["state"] == "active" and not want["active"]:
                continue
            out.append(g)
        return _json(out)

    async def get_groups(request: Request) -> Response:
        ms = _filter(request)
        now = time.time()
        out = []
        for g in router.dispatcher.all_groups():
            alerts = [router.gettable(a, now) for a in g.alerts.values() if all_match(ms, a.labels)]
            if alerts:
                out.append({"labels": g.labels, "receiver": {"name": g.route.receiver}, "alerts": alerts})
        return _json(out)

    async def get_silences(request: Request) -> Response:
        ms = _filter(request)
        now = time.time()
        out = []
        for s in router.silences.list(now):
            names = {(m.name, m.op, m.value) for m in s.matchers}
            if all((m.name, m.op, m.value) in names for m in ms):
                out.append(s.api_dict(now))
        return _json(out)

    async def post_silence(request: Request) -> Response:
        try:
            body = await _body(request)
            sid = router.silences.set(body, time.time())
        except (ValueError, SilenceError) as e:
            return _error(400, str(e))
        except SilenceNotFound as e:
            return _error(404, f"silence {e.args[0]} not found")
        return _json({"silenceID": sid})

    async def get_silence(request: Request) -> Response:
        try:
            s = router.silences.get(request.path_params["sid"])
        except SilenceNotFound:
            return _error(404, "silence not found")
        return _json(s.api_dict(time.time()))

    async def delete_silence(request: Request) -> Response:
        try:
            router.silences.expire(request.path_params["sid"], time.time())
        except SilenceNotFound:
            return _error(404, "silence not found")
        except SilenceError as e:
            return _error(500, str(e))
        return Response(status_code=200)

    async def status(request: Request) -> Response:
        return _json(
            {
                "cluster": {"name": "", "peers": [], "status": "disabled"},
                "config": {"original": redacted_yaml(router.config_text)},
                "uptime": format_api_time(router.started_at),
                "versionInfo": {
                    "branch": "forewarn",
                    "buildDate": "",
                    "buildUser": "forewarn",
                    "goVersion": "python",
                    "revision": "",
                    "version": f"0.25.0-forewarn-{__version__}",
                },
            }
        )

    async def receivers(request: Request) -> Response:
        return _json([{"name": r.name} for r in router.config.receivers])

    async def ok(request: Request) -> Response:
        return Response("OK", media_type="text/plain")

    async def ready(request: Request) -> Response:
        return Response("OK", media_type="text/plain") if router.ready else Response("Not ready", 503)

    async def reload(request: Request) -> Response:
        try:
            await router.reload()
        except ValueError as e:
            return _error(500, str(e))
        return Response(status_code=200)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/api/v2/alerts", post_alerts, methods=["POST"]),
        Route("/api/v2/alerts", get_alerts, methods=["GET"]),
        Route("/api/v2/alerts/groups", get_groups, methods=["GET"]),
        Route("/api/v2/silences", get_silences, methods=["GET"]),
        Route("/api/v2/silences", post_silence, methods=["POST"]),
        Route("/api/v2/silence/{sid}", get_silence, methods=["GET"]),
        Route("/api/v2/silence/{sid}", delete_silence, methods=["DELETE"]),
        Route("/api/v2/status", status, methods=["GET"]),
        Route("/api/v2/receivers", receivers, methods=["GET"]),
        Route("/-/healthy", ok, methods=["GET", "HEAD"]),
        Route("/-/ready", ready, methods=["GET", "HEAD"]),
        Route("/-/reload", reload, methods=["POST"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]


class TokenAuth:
    """Bearer-token check on ``/api/`` when tokens are configured (health and metrics stay open)."""

    def __init__(self, app: Any, tokens: list[str]) -> None:
        self.app, self.tokens = app, [t.encode() for t in tokens]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.tokens and scope["type"] == "http" and scope["path"].startswith("/api/"):
            headers = dict(scope["headers"])
            auth = headers.get(b"authorization", b"")
            token = auth[7:] if auth[:7].lower() == b"bearer " else b""
            if not any(hmac.compare_digest(token, t) for t in self.tokens):
                await Response(orjson.dumps("unauthorized"), 401, {"WWW-Authenticate": "Bearer"})(
                    scope, receive, send
                )
                return
        await self.app(scope, receive, send)


async def _bad_filter(request: Request, exc: Exception) -> Response:
    return _error(400, f"bad filter: {exc}")


def build_app(router: AlertRouter, extra: list[BaseRoute], tokens: list[str]) -> Any:
    # A bad ``filter=`` matcher on any GET is a 400, in one place.
    app = Starlette(routes=[*routes(router), *extra], exception_handlers={MatcherError: _bad_filter})
    return TokenAuth(app, tokens) if tokens else app
