"""Alertmanager v2 HTTP API (same paths and JSON) plus health and ``/metrics``, on Starlette.

Handlers are thin: they validate, then call the provider, silences or dispatcher of the
:class:`~forewarn.alerts.server.AlertRouter` they were built for.
"""

from __future__ import annotations

import functools
import hmac
import logging
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from forewarn.alerts.apischema import RequestError, check_alerts, check_silence, check_silence_id
from forewarn.alerts.config import redacted_yaml
from forewarn.alerts.labels import (
    Matcher,
    MatcherError,
    all_match,
    labels_before,
    parse_matcher,
    sort_by_labels,
)
from forewarn.alerts.metrics import INVALID, RECEIVED
from forewarn.alerts.model import Alert, AlertValidationError, format_api_time
from forewarn.alerts.silences import SilenceError, SilenceNotFound
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from forewarn import __version__

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from forewarn.alerts.server import AlertRouter


MAX_BODY = 16 * 1024 * 1024


def _json(data: Any, status: int = 200, end: bytes = b"\n") -> Response:
    # Go's JSON encoder ends a handler's answer with a newline; go-openapi's own errors do not.
    return Response(orjson.dumps(data) + end, status_code=status, media_type="application/json")


def _error(status: int, message: str) -> Response:
    # Handlers' errors are JSON strings (Go's encoder ends them with a newline); amtool prints them.
    return _json(message, status)


def _refused(e: RequestError) -> Response:
    return _json(e.body(), e.status, end=b"")


async def _body(request: Request, what: str) -> tuple[Any, bool]:
    """The JSON body and whether there was none, read with a size cap so one huge POST cannot
    exhaust memory; malformed JSON is the decode layer's 400."""
    if int(request.headers.get("content-length") or 0) > MAX_BODY:
        raise RequestError(413, 413, f"request body larger than {MAX_BODY} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise RequestError(413, 413, f"request body larger than {MAX_BODY} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return None, True
    try:
        return orjson.loads(raw), False
    except orjson.JSONDecodeError as e:
        raise RequestError(400, 400, f'parsing {what} body from "" failed, because {e}') from None


# go-openapi's ``swag.ConvertBool``: these are true, anything else is false (never an error).
_TRUE = frozenset({"true", "1", "yes", "ok", "y", "on", "selected", "checked", "t", "enabled"})


def _bool(request: Request, name: str, default: bool = True) -> bool:
    v = request.query_params.get(name)
    return default if v is None else v.lower() in _TRUE


def _filter(request: Request) -> list[Matcher]:
    """``filter=`` values, one matcher each (Alertmanager's ``ParseMatcher``, no braces/lists)."""
    return [parse_matcher(f) for f in request.query_params.getlist("filter")]


def _receiver_filter(request: Request) -> re.Pattern[str] | None:
    v = request.query_params.get("receiver")
    if v is None:
        return None
    try:
        return re.compile(f"^(?:{v})$")
    except re.error as e:
        raise MatcherError(f"failed to parse receiver param: {e}") from None


def routes(router: AlertRouter) -> list[BaseRoute]:
    """The v2 API routes bound to one router instance."""

    async def post_alerts(request: Request) -> Response:
        try:
            body = check_alerts(*await _body(request, "alerts"))
        except RequestError as e:
            return _refused(e)
        now = time.time()
        valid: list[Alert] = []
        errors: list[str] = []
        for raw in body:
            try:
                valid.append(Alert.from_api(raw, now, router.config.global_.resolve_timeout))
            except AlertValidationError as e:
                errors.append(str(e))
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

    def alert_filter(request: Request, now: float) -> Callable[[Alert], dict[str, Any] | None]:
        """``api.alertFilter``: unresolved, wanted states, matching labels; the status it found."""
        ms = _filter(request)
        want = {k: _bool(request, k) for k in ("active", "silenced", "inhibited")}

        def check(a: Alert) -> dict[str, Any] | None:
            if a.resolved_at(now):
                return None
            st = router.status(a, now)
            if st["state"] == "active" and not want["active"]:
                return None
            if (st["silencedBy"] and not want["silenced"]) or (st["inhibitedBy"] and not want["inhibited"]):
                return None
            return st if all_match(ms, a.labels) else None

        return check

    async def get_alerts(request: Request) -> Response:
        now = time.time()
        recv = _receiver_filter(request)
        check = alert_filter(request, now)
        out = []
        for a in sorted(router.provider.alerts.values(), key=lambda a: a.fp):
            names = [r.receiver for r in router.dispatcher.tree.match(a.labels)]
            if recv is not None and not any(recv.match(n) for n in names):
                continue
            st = check(a)
            if st is not None:
                out.append(router.gettable(a, names, st))
        return _json(out)

    async def get_groups(request: Request) -> Response:
        """``Dispatcher.Groups``: an alert's receivers are those of the listed groups holding it."""
        now = time.time()
        recv = _receiver_filter(request)
        check = alert_filter(request, now)
        groups: list[tuple[Any, list[tuple[Alert, dict[str, Any]]]]] = []
        receivers: dict[str, list[str]] = {}
        for g in router.dispatcher.all_groups():
            if recv is not None and not recv.match(g.route.receiver):
                continue
            kept = [(a, st) for a in g.alerts.values() if (st := check(a)) is not None]
            for a, _ in kept:
                receivers.setdefault(a.fp, []).append(g.route.receiver)
            if kept:
                groups.append((g, kept))
        out = []
        for g, kept in sorted(groups, key=functools.cmp_to_key(_group_cmp)):
            alerts = sort_by_labels(kept, key=lambda x: x[0].labels)
            out.append(
                {
                    "alerts": [router.gettable(a, sorted(receivers[a.fp]), st) for a, st in alerts],
                    "labels": g.labels,
                    "receiver": {"name": g.route.receiver},
                }
            )
        return _json(out)

    async def get_silences(request: Request) -> Response:
        ms = _filter(request)
        now = time.time()
        out = []
        for s in router.silences.list(now):
            # ``CheckSilenceMatchesFilterLabels``: each filter equals one of the silence's matchers.
            names = {(m.name, m.op, m.value) for m in s.matchers}
            if all((m.name, m.op, m.value) in names for m in ms):
                out.append(s.api_dict(now))
        return _json(out)

    async def post_silence(request: Request) -> Response:
        try:
            body = check_silence(*await _body(request, "silence"))
            sid = router.silences.set(body, time.time())
        except RequestError as e:
            return _refused(e)
        except SilenceError as e:
            return _error(400, str(e))
        except SilenceNotFound:
            return _error(404, "silence not found")
        return _json({"silenceID": sid})

    async def get_silence(request: Request) -> Response:
        try:
            check_silence_id(request.path_params["sid"])
            s = router.silences.get(request.path_params["sid"])
        except RequestError as e:
            return _refused(e)
        except SilenceNotFound:
            return Response(status_code=404)  # Alertmanager 0.25: no body
        return _json(s.api_dict(time.time()))

    async def delete_silence(request: Request) -> Response:
        # Alertmanager 0.25 answers 500 for an unknown silence; expiring twice is fine.
        try:
            check_silence_id(request.path_params["sid"])
            router.silences.expire(request.path_params["sid"], time.time())
        except RequestError as e:
            return _refused(e)
        except SilenceNotFound:
            return _error(500, "silence not found")
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
        from forewarn.alerts.server import RestartNeeded

        try:
            await router.reload()
        except RestartNeeded as e:
            log.warning("reload: %s", e)
            return _error(409, str(e))  # valid, but only a restart applies it
        except ValueError as e:
            log.error("reload failed, keeping the running configuration: %s", e)
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
        # A request the web config's basic auth let through (WebAuth) is not asked again.
        if (
            self.tokens
            and scope["type"] == "http"
            and scope["path"].startswith("/api/")
            and not scope.get("forewarn.authenticated")
        ):
            headers = dict(scope["headers"])
            auth = headers.get(b"authorization", b"")
            token = auth[7:] if auth[:7].lower() == b"bearer " else b""
            if not any(hmac.compare_digest(token, t) for t in self.tokens):
                await Response(orjson.dumps("unauthorized"), 401, {"WWW-Authenticate": "Bearer"})(
                    scope, receive, send
                )
                return
        await self.app(scope, receive, send)


def _group_cmp(x: tuple[Any, Any], y: tuple[Any, Any]) -> int:
    """``AlertGroups.Less``: by group labels (``LabelSet.Before``), equal labels by receiver."""
    a, b = x[0], y[0]
    if a.labels == b.labels:
        ra, rb = a.route.receiver, b.route.receiver
        return (ra > rb) - (ra < rb)
    return -1 if labels_before(a.labels, b.labels) else 1


async def _bad_filter(request: Request, exc: Exception) -> Response:
    return _error(400, str(exc))


async def _not_found(request: Request, exc: Exception) -> Response:
    return _json({"code": 404, "message": f"path {request.url.path} was not found"}, 404, end=b"")


async def _not_allowed(request: Request, exc: Exception) -> Response:
    allowed = [
        m
        for r in request.app.routes
        if isinstance(r, Route) and r.path_regex.match(request.url.path)
        for m in r.methods or ()
        if m != "HEAD"
    ]
    msg = f"method {request.method} is not allowed, but [{','.join(allowed)}] are"
    return _json({"code": 405, "message": msg}, 405, end=b"")


def build_app(router: AlertRouter, extra: list[BaseRoute], tokens: list[str]) -> Any:
    # A bad ``filter=`` matcher on any GET is a 400, in one place; unknown paths and methods
    # answer with go-openapi's error objects.
    handlers = {MatcherError: _bad_filter, 404: _not_found, 405: _not_allowed}
    app = Starlette(routes=[*routes(router), *extra], exception_handlers=handlers)  # type: ignore[arg-type]
    return TokenAuth(app, tokens) if tokens else app
