"""The checks Alertmanager's generated (go-swagger) API layer makes before a handler runs.

Alertmanager answers a request in up to three layers, and clients see which one refused it:
decoding the JSON into Go types fails with 400 ``{"code": 400, "message": "parsing ... body
from \\"\\" failed, because ..."}``; the OpenAPI schema (required fields, formats, minItems)
then fails with 422 ``{"code": 602, "message": "0.labels in body is required"}`` (only the
first failure, fields in alphabetical order); only then does the handler run, whose own
errors are plain JSON strings. Either of the first two layers rejects the whole request.

>>> for body in ([{"annotations": {"a": "b"}}], [{"labels": {"a": 1}}]):
...     try:
...         check_alerts(body)
...     except RequestError as e:
...         print(e.status, e.body())
422 {'code': 602, 'message': '0.labels in body is required'}
400 {'code': 400, 'message': 'parsing alerts body from "" failed, because labels values must be strings'}
>>> check_alerts(None)
[]
"""

from __future__ import annotations

import re
from typing import Any

from forewarn.alerts.model import AlertValidationError, parse_time

REQUIRED, INVALID_TYPE, TOO_FEW_ITEMS = 602, 601, 612  # go-openapi error codes
_UUID = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$", re.I)
_HOST_OK = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:\[\]<>\"%]*$")


class RequestError(ValueError):
    """A request refused before its handler: HTTP status and the go-openapi error body."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(f"{status} {message}")
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


def _decode_error(what: str, why: str) -> RequestError:
    return RequestError(400, 400, f'parsing {what} body from "" failed, because {why}')


def _string_map(v: Any, what: str, body: str) -> None:
    if v is None:
        return
    if not isinstance(v, dict):
        raise _decode_error(body, f"{what} must be an object of strings")
    if not all(isinstance(x, str) for x in v.values()):
        raise _decode_error(body, f"{what} values must be strings")


def _time(v: Any, what: str, body: str) -> None:
    if v is None or v == "":
        return
    try:
        parse_time(v, what)
    except AlertValidationError as e:
        raise _decode_error(body, str(e)) from None


def _typed(v: Any, kind: type | tuple[type, ...], what: str, body: str) -> None:
    if v is not None and (not isinstance(v, kind) or (kind is not bool and isinstance(v, bool))):
        raise _decode_error(body, f"{what} has the wrong JSON type ({type(v).__name__})")


def is_uri(s: str) -> bool:
    """What Go's ``url.ParseRequestURI`` accepts (go-openapi's ``uri`` format), closely enough:
    an absolute URI or an absolute path.

    >>> is_uri("http://prom:9090/graph?g0.expr=up"), is_uri("/graph"), is_uri("graph")
    (True, True, False)
    >>> is_uri("::bad"), is_uri("http://a b/"), is_uri("http://h/%zz")
    (False, False, False)
    """
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in s):
        return False
    if not s.startswith("/") and not re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:", s):
        return False
    if re.search(r"%(?![0-9A-Fa-f]{2})", s):
        return False
    m = re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://([^/?#]*)", s)
    if m:
        host = m.group(1).rsplit("@", 1)[-1]
        if host.startswith("["):
            if "]" not in host:
                return False
            port = host.split("]", 1)[1]
        else:
            host, _, port = host.partition(":")
            port = ":" + port if _ else ""
            if not _HOST_OK.match(host):
                return False
        if port and not re.fullmatch(r":\d*", port):
            return False
    return True


def check_alerts(body: Any, empty: bool = False) -> list[dict[str, Any]]:
    """The decode and schema layers of ``POST /api/v2/alerts``; the alerts to hand on.

    ``empty`` means no body at all (which the schema refuses; JSON ``null`` is no alerts)."""
    if empty:
        raise RequestError(422, REQUIRED, "alerts in body is required")
    if body is None:
        return []
    if not isinstance(body, list):
        raise _decode_error("alerts", f"cannot unmarshal {_json_kind(body)} into a list of alerts")
    for a in body:
        if not isinstance(a, dict):
            raise _decode_error("alerts", f"cannot unmarshal {_json_kind(a)} into an alert")
        _string_map(a.get("labels"), "labels", "alerts")
        _string_map(a.get("annotations"), "annotations", "alerts")
        _typed(a.get("generatorURL"), str, "generatorURL", "alerts")
        for k in ("startsAt", "endsAt"):
            _typed(a.get(k), str, k, "alerts")
            _time(a.get(k), k, "alerts")
    for i, a in enumerate(body):
        url = a.get("generatorURL")
        if url and not is_uri(url):
            raise RequestError(422, INVALID_TYPE, f'{i}.generatorURL in body must be of type uri: "{url}"')
        if a.get("labels") is None:
            raise RequestError(422, REQUIRED, f"{i}.labels in body is required")
    return body


def check_silence(body: Any, empty: bool = False) -> dict[str, Any]:
    """The decode and schema layers of ``POST /api/v2/silences``."""
    if empty:
        raise RequestError(422, REQUIRED, "silence in body is required")
    if body is None:
        body = {}  # JSON null decodes into an empty silence, which the schema then refuses
    if not isinstance(body, dict):
        raise _decode_error("silence", f"cannot unmarshal {_json_kind(body)} into a silence")
    for k in ("id", "comment", "createdBy"):
        _typed(body.get(k), str, k, "silence")
    for k in ("startsAt", "endsAt"):
        _typed(body.get(k), str, k, "silence")
        _time(body.get(k), k, "silence")
    ms = body.get("matchers")
    _typed(ms, list, "matchers", "silence")
    for m in ms or []:
        if not isinstance(m, dict):
            raise _decode_error("silence", f"cannot unmarshal {_json_kind(m)} into a matcher")
        for k, kind in (("name", str), ("value", str), ("isRegex", bool), ("isEqual", bool)):
            _typed(m.get(k), kind, f"matchers.{k}", "silence")
    for k in ("comment", "createdBy", "endsAt", "matchers"):
        if body.get(k) is None:
            raise RequestError(422, REQUIRED, f"{k} in body is required")
        if k == "matchers":
            if not ms:
                raise RequestError(422, TOO_FEW_ITEMS, "matchers in body should have at least 1 items")
            for i, m in enumerate(ms):
                for f in ("isRegex", "name", "value"):
                    if m.get(f) is None:
                        raise RequestError(422, REQUIRED, f"matchers.{i}.{f} in body is required")
    if body.get("startsAt") is None:
        raise RequestError(422, REQUIRED, "startsAt in body is required")
    return body


def check_silence_id(sid: str) -> None:
    """The ``silenceID`` path parameter must be a UUID."""
    if not _UUID.match(sid):
        raise RequestError(422, INVALID_TYPE, f'silenceID in path must be of type uuid: "{sid}"')


def _json_kind(v: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "bool"}.get(type(v), "number")
