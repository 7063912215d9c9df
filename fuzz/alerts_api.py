"""Fuzz the router's v2 API payloads through its real Starlette app (``alerts/api.py``).

Input: one byte choosing the request (POST alerts, POST silences, GET alerts / groups / silences
with the rest as the query string, GET or DELETE a silence with the rest as its ID), then the
body, query or ID. The app is called in process (ASGI, no socket) on one event loop, so alerts
flow on into the dispatcher, inhibitor and silences; a new router replaces the old one every
250 inputs to bound memory and the cost of listing what piled up. The clean refusals are the statuses Alertmanager answers with
(400, 404, 413, 422, 500 for expiring an unknown silence, 503 at the alert limit); an exception,
any other status, a non-JSON body where JSON is due, or an error logged by a group's flush is a
crash. After each accepted POST the listings must still answer 200.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from urllib.parse import quote, quote_from_bytes, unquote

import atheris
import orjson

with atheris.instrument_imports(include=["forewarn"]):
    from forewarn.alerts.api import build_app
    from forewarn.alerts.server import AlertRouter
    from forewarn.alerts.webconfig import WebAuth, WebConfigFile, basic_credentials

from common import keep_crashes, scratch

CONFIG = """
global: {resolve_timeout: 2s}
route:
  receiver: r
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1h
  routes:
    - {matchers: ['severity=~"crit.*"'], receiver: r, group_by: ['...'], continue: true}
    - {match: {team: a}, receiver: r, group_by: []}
receivers: [{name: r}]
inhibit_rules:
  - {source_matchers: [severity=critical], target_matchers: [severity=warning], equal: [alertname]}
"""
RESET_EVERY = 250
CONFIG_DIR = scratch("fuzz-alerts-")
CONFIG_FILE = CONFIG_DIR / "am.yml"
CONFIG_FILE.write_text(CONFIG)
# alice / secret at bcrypt's lowest cost (4): the authentication path without seconds per input
WEB_FILE = CONFIG_DIR / "web.yml"
WEB_FILE.write_text(
    "basic_auth_users: {alice: $2b$04$abcdefghijklmnopqrstuu2r9OfJnfCsdneAXAGHnS4UpFFP8WIrW}\n"
)
OK = {
    0: {200, 400, 413, 422, 503},  # POST /api/v2/alerts
    1: {200, 400, 404, 413, 422},  # POST /api/v2/silences
    2: {200, 400},  # GET /api/v2/alerts?query
    3: {200, 400},  # GET /api/v2/alerts/groups?query
    4: {200, 400},  # GET /api/v2/silences?query
    # 404/405: an ID with "/" is another path; 307: Starlette's redirect of a trailing "/"
    # (Alertmanager answers those 200, 301 or 404 depending on the path: not compared here)
    5: {200, 307, 404, 405, 422},  # GET /api/v2/silence/{id}
    6: {200, 307, 404, 405, 422, 500},  # DELETE /api/v2/silence/{id}
    7: {200, 401},  # GET /-/healthy behind basic auth, the rest as the Authorization header
}


class _Errors(logging.Handler):
    """Errors logged anywhere (a group's flush logs and survives its exceptions)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


ERRORS = _Errors()
logging.getLogger().addHandler(ERRORS)
LOOP = asyncio.new_event_loop()
_state: dict[str, object] = {"n": 0}


def _apps() -> tuple[object, object]:
    n = _state["n"]
    if n % RESET_EVERY == 0 or "router" not in _state:
        if "router" in _state:
            LOOP.run_until_complete(_state["router"].stop())  # type: ignore[attr-defined]
        router = AlertRouter(CONFIG_FILE, data_dir=None, listen="127.0.0.1:0", max_alerts=5000)
        LOOP.run_until_complete(router.start())
        _state["router"], _state["app"] = router, build_app(router, [], [])
        _state["authed"] = WebAuth(_state["app"], WebConfigFile(WEB_FILE), tokens=["t0ken"])
    _state["n"] = n + 1  # type: ignore[operator]
    return _state["app"], _state["authed"]  # type: ignore[return-value]


async def call(  # type: ignore[no-untyped-def]
    app, method: str, path: str, query: bytes = b"", body: bytes = b"", auth: bytes | None = None
) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": quote(path).encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        + ([(b"authorization", auth)] if auth is not None else []),
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 9093),
    }
    sent = False
    out: dict[str, object] = {"body": b""}

    async def receive() -> dict[str, object]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(msg: dict[str, object]) -> None:
        if msg["type"] == "http.response.start":
            out["status"] = msg["status"]
        elif msg["type"] == "http.response.body":
            out["body"] += msg.get("body", b"")  # type: ignore[operator]

    await app(scope, receive, send)
    return out["status"], out["body"]  # type: ignore[return-value]


def _json(status: int, body: bytes, what: str) -> None:
    if body:
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError:
            raise AssertionError(f"{what}: HTTP {status} with a non-JSON body {body[:200]!r}") from None


async def one(app, authed, data: bytes) -> None:  # type: ignore[no-untyped-def]
    kind, rest = data[0] % 8, data[1:]
    if kind == 0:
        status, body = await call(app, "POST", "/api/v2/alerts", body=rest)
    elif kind == 1:
        status, body = await call(app, "POST", "/api/v2/silences", body=rest)
    elif kind in (2, 3, 4):
        path = {2: "/api/v2/alerts", 3: "/api/v2/alerts/groups", 4: "/api/v2/silences"}[kind]
        status, body = await call(app, "GET", path, query=rest)
    elif kind == 7:
        status, _ = await call(authed, "GET", "/-/healthy", auth=rest)
        creds = basic_credentials(rest)
        valid = (rest[:7].lower() == b"bearer " and rest[7:] == b"t0ken") or (
            creds is not None and creds[0] == "alice" and creds[1][:72] == b"secret"
        )
        assert status == (200 if valid else 401), f"Authorization {rest[:100]!r}: HTTP {status}"
        return
    else:
        # As uvicorn hands a path on: sent percent-encoded, then unquoted (invalid UTF-8 replaced).
        sid = unquote(quote_from_bytes(rest, safe=""))
        status, body = await call(app, "GET" if kind == 5 else "DELETE", "/api/v2/silence/" + sid)
    assert status in OK[kind], f"request kind {kind}: unexpected HTTP {status}: {body[:300]!r}"
    _json(status, body, f"request kind {kind}")
    if kind in (0, 1) and status == 200:
        for path in ("/api/v2/alerts", "/api/v2/alerts/groups", "/api/v2/silences"):
            s, b = await call(app, "GET", path)
            assert s == 200, f"GET {path} after an accepted POST: HTTP {s}: {b[:300]!r}"
            orjson.loads(b)
    await asyncio.sleep(0)  # let groups flush what they must
    await asyncio.sleep(0)


@keep_crashes
def test_one_input(data: bytes) -> None:
    if not data:
        return
    app, authed = _apps()
    LOOP.run_until_complete(one(app, authed, data))
    if ERRORS.records:
        r = ERRORS.records[0]
        ERRORS.records.clear()
        raise AssertionError(f"logged: {r.getMessage()}\n{r.exc_text or ''}")


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
