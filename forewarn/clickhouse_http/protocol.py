"""The ClickHouse HTTP interface's request and error conventions, as pure functions.

Everything here is what ClickHouse documents (and its server does) for a request on port 8123:
which URL parameters are settings and which are the transport's own, where the query and the
credentials come from, what each error code answers as an HTTP status, and the exact shape of
an error (``Code: 62. DB::Exception: ... (SYNTAX_ERROR)``). Kept free of I/O so it can be fuzzed.

>>> r = parse_request("GET", [("query", "SELECT {x:UInt8}"), ("param_x", "1"), ("max_threads", "1")], {})
>>> r.query, r.params, r.settings, r.user
('SELECT {x:UInt8}', {'x': '1'}, {'max_threads': '1'}, 'default')
>>> status_for(62), status_for(60), status_for(516), status_for(164)
(400, 404, 403, 500)
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# Error codes this module raises itself (ClickHouse's numbers; tests check them against the engine).
SYNTAX_ERROR = 62
UNKNOWN_TYPE_OF_QUERY = 78
BAD_ARGUMENTS = 36
CHECKSUM_DOESNT_MATCH = 40
NOT_IMPLEMENTED = 48
UNKNOWN_COMPRESSION_METHOD = 89
READONLY = 164
UNKNOWN_USER = 192
REQUIRED_PASSWORD = 194
TOO_MANY_SIMULTANEOUS_QUERIES = 202
QUERY_IS_TOO_LARGE = 229
CANNOT_DECOMPRESS = 271
INTO_OUTFILE_NOT_ALLOWED = 358
INVALID_SESSION_TIMEOUT = 374
HTTP_LENGTH_REQUIRED = 381
SETTING_CONSTRAINT_VIOLATION = 452
AUTHENTICATION_FAILED = 516
UNKNOWN_EXCEPTION = 1002

NAMES = {
    SYNTAX_ERROR: "SYNTAX_ERROR",
    UNKNOWN_TYPE_OF_QUERY: "UNKNOWN_TYPE_OF_QUERY",
    BAD_ARGUMENTS: "BAD_ARGUMENTS",
    CHECKSUM_DOESNT_MATCH: "CHECKSUM_DOESNT_MATCH",
    NOT_IMPLEMENTED: "NOT_IMPLEMENTED",
    UNKNOWN_COMPRESSION_METHOD: "UNKNOWN_COMPRESSION_METHOD",
    READONLY: "READONLY",
    UNKNOWN_USER: "UNKNOWN_USER",
    REQUIRED_PASSWORD: "REQUIRED_PASSWORD",
    TOO_MANY_SIMULTANEOUS_QUERIES: "TOO_MANY_SIMULTANEOUS_QUERIES",
    QUERY_IS_TOO_LARGE: "QUERY_IS_TOO_LARGE",
    CANNOT_DECOMPRESS: "CANNOT_DECOMPRESS",
    INTO_OUTFILE_NOT_ALLOWED: "INTO_OUTFILE_NOT_ALLOWED",
    INVALID_SESSION_TIMEOUT: "INVALID_SESSION_TIMEOUT",
    HTTP_LENGTH_REQUIRED: "HTTP_LENGTH_REQUIRED",
    SETTING_CONSTRAINT_VIOLATION: "SETTING_CONSTRAINT_VIOLATION",
    AUTHENTICATION_FAILED: "AUTHENTICATION_FAILED",
    UNKNOWN_EXCEPTION: "UNKNOWN_EXCEPTION",
}

# ClickHouse's exceptionCodeToHTTPStatus, by code name.
_STATUS_BY_NAME = {
    "REQUIRED_PASSWORD": 401,
    **dict.fromkeys(
        ("UNKNOWN_USER", "WRONG_PASSWORD", "AUTHENTICATION_FAILED", "SET_NON_GRANTED_ROLE", "ACCESS_DENIED"),
        403,
    ),
    **dict.fromkeys(
        [
            "BAD_ARGUMENTS",
            "CANNOT_COMPILE_REGEXP",
            "CANNOT_PARSE_TEXT",
            "CANNOT_PARSE_ESCAPE_SEQUENCE",
            "CANNOT_PARSE_QUOTED_STRING",
            "CANNOT_PARSE_DATE",
            "CANNOT_PARSE_DATETIME",
            "CANNOT_PARSE_NUMBER",
            "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING",
            "CANNOT_PARSE_IPV4",
            "CANNOT_PARSE_IPV6",
            "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
            "CANNOT_PARSE_UUID",
            "DUPLICATE_COLUMN",
            "ILLEGAL_COLUMN",
            "UNKNOWN_ELEMENT_IN_AST",
            "UNKNOWN_TYPE_OF_AST_NODE",
            "THERE_IS_NO_COLUMN",
            "TOO_DEEP_AST",
            "TOO_BIG_AST",
            "UNEXPECTED_AST_STRUCTURE",
            "SYNTAX_ERROR",
            "INCORRECT_DATA",
            "TYPE_MISMATCH",
            "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE",
        ],
        400,
    ),
    **dict.fromkeys(
        [
            "UNKNOWN_TABLE",
            "UNKNOWN_FUNCTION",
            "UNKNOWN_IDENTIFIER",
            "UNKNOWN_TYPE",
            "UNKNOWN_STORAGE",
            "UNKNOWN_DATABASE",
            "UNKNOWN_SETTING",
            "UNKNOWN_DIRECTION_OF_SORTING",
            "UNKNOWN_AGGREGATE_FUNCTION",
            "UNKNOWN_FORMAT",
            "UNKNOWN_DATABASE_ENGINE",
            "UNKNOWN_TYPE_OF_QUERY",
            "UNKNOWN_ROLE",
        ],
        404,
    ),
    "QUERY_IS_TOO_LARGE": 413,
    "NOT_IMPLEMENTED": 501,
    "SOCKET_TIMEOUT": 503,
    "CANNOT_OPEN_FILE": 503,
    "HTTP_LENGTH_REQUIRED": 411,
    "TIMEOUT_EXCEEDED": 408,
    "CANNOT_SCHEDULE_TASK": 503,
    "UNSUPPORTED_MEDIA_TYPE": 415,
}
_CODE_NAMES = {
    **NAMES,
    **{
        code: name
        for code, name in (
            (60, "UNKNOWN_TABLE"),
            (81, "UNKNOWN_DATABASE"),
            (115, "UNKNOWN_SETTING"),
            (73, "UNKNOWN_FORMAT"),
            (6, "CANNOT_PARSE_TEXT"),
            (117, "INCORRECT_DATA"),
            (159, "TIMEOUT_EXCEEDED"),
            (193, "WRONG_PASSWORD"),
            (497, "ACCESS_DENIED"),
            (46, "UNKNOWN_FUNCTION"),
            (47, "UNKNOWN_IDENTIFIER"),
            (50, "UNKNOWN_TYPE"),
            (53, "TYPE_MISMATCH"),
            (16, "THERE_IS_NO_COLUMN"),
            (439, "CANNOT_SCHEDULE_TASK"),
        )
    },
}


def status_for(code: int, name: str | None = None) -> int:
    """The HTTP status ClickHouse answers an exception with (500 for anything unlisted)."""
    return _STATUS_BY_NAME.get(name or _CODE_NAMES.get(code, ""), 500)


class ClickHouseError(Exception):
    """An error in ClickHouse's own words: code, name and message, as a client expects to parse it."""

    def __init__(self, code: int, message: str, name: str | None = None):
        super().__init__(message)
        self.code = code
        self.name = name or _CODE_NAMES.get(code, "UNKNOWN_EXCEPTION")
        self.message = message

    @property
    def status(self) -> int:
        return status_for(self.code, self.name)

    def text(self, version: str) -> str:
        """``Code: N. DB::Exception: <message>. (NAME) (version V)`` — the body ClickHouse sends."""
        msg = self.message.rstrip()
        if msg.startswith("Code: "):  # already the engine's full text
            return msg if "(version " in msg else f"{msg} (version {version})"
        return f"Code: {self.code}. DB::Exception: {msg}. ({self.name}) (version {version})"


_ENGINE_ERROR = re.compile(r"Code: (\d+)\. DB::Exception: .*?\(([A-Z][A-Z0-9_]+)\)", re.S)


def from_engine(message: str) -> ClickHouseError:
    """The engine's exception text (chDB raises it with ClickHouse's own code and name) as an error."""
    idx = message.find("Code: ")
    text = message[idx:].strip() if idx >= 0 else message.strip()
    m = _ENGINE_ERROR.search(text)
    if not m:
        return ClickHouseError(UNKNOWN_EXCEPTION, text or "unknown error")
    # A nested "Code: 164. DB::Exception: Code: 164. ..." keeps the outer code; the name is the last.
    names = re.findall(r"\(([A-Z][A-Z0-9_]+)\)", text)
    return ClickHouseError(int(m.group(1)), text, names[-1] if names else m.group(2))


# URL parameters that belong to the HTTP transport, not to the Settings class (ClickHouse's
# HTTPHandler list); ``query`` and ``param_*`` are handled on their own.
RESERVED_PARAMS = frozenset(
    {
        "compress",
        "decompress",
        "user",
        "password",
        "quota_key",
        "query_id",
        "stacktrace",
        "role",
        "buffer_size",
        "wait_end_of_query",
        "session_id",
        "session_timeout",
        "session_check",
        "client_protocol_version",
        "close_session",
        "database",
        "default_format",
    }
)
MAX_SESSION_TIMEOUT_S = 3600


def _truthy(v: str | None) -> bool:
    return (v or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass
class Request:
    """One query request, decoded: where the SQL, the credentials and the settings came from."""

    method: str
    query: str = ""  # the URL's `query` parameter (a POST body is appended later)
    has_query_param: bool = False
    user: str = "default"
    password: str = ""
    database: str | None = None
    default_format: str | None = None
    query_id: str | None = None
    session_id: str | None = None
    settings: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    compress: bool = False  # ClickHouse-native compressed response blocks
    decompress: bool = False  # the body is ClickHouse-native compressed blocks
    buffer_size: int | None = None
    wait_end_of_query: bool = False
    client_protocol_version: int = 0


def _basic(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, ValueError):  # not base64, not ASCII, not UTF-8
        raise ClickHouseError(
            AUTHENTICATION_FAILED, "Invalid authentication: malformed Basic credentials"
        ) from None
    user, _, password = raw.partition(":")
    return user, password


def parse_request(method: str, items: Iterable[tuple[str, str]], headers: Mapping[str, str]) -> Request:
    """Decode the URL parameters and headers of a query request (``headers`` with lower-case keys).

    Credentials come from exactly one place: HTTP Basic, ``X-ClickHouse-User``/``-Key`` headers,
    or ``user``/``password`` parameters; mixing them is refused, as ClickHouse does.
    """
    r = Request(method=method)
    seen_user = seen_password = False
    for key, value in items:
        if not key:
            continue
        if key == "query":
            r.query, r.has_query_param = value, True
        elif key.startswith("param_"):
            r.params[key[len("param_") :]] = value
        elif key == "user":
            r.user, seen_user = value, True
        elif key == "password":
            r.password, seen_password = value, True
        elif key == "database":
            r.database = value or None
        elif key == "default_format":
            r.default_format = value or None
        elif key == "query_id":
            r.query_id = value or None
        elif key == "session_id":
            r.session_id = value or None
        elif key == "session_timeout":
            if not value.isdigit() or int(value) > MAX_SESSION_TIMEOUT_S:
                raise ClickHouseError(INVALID_SESSION_TIMEOUT, f"Invalid session timeout: '{value}'")
        elif key == "compress":
            r.compress = _truthy(value)
        elif key == "decompress":
            r.decompress = _truthy(value)
        elif key == "buffer_size":
            if not value.isdigit():
                raise ClickHouseError(BAD_ARGUMENTS, f"Cannot parse buffer_size '{value}'")
            r.buffer_size = int(value)
        elif key == "wait_end_of_query":
            r.wait_end_of_query = _truthy(value)
        elif key == "client_protocol_version":
            r.client_protocol_version = int(value) if value.isdigit() else 0
        elif key in RESERVED_PARAMS:
            continue  # quota_key, stacktrace, role, session_check, close_session: accepted, no effect here
        else:
            r.settings[key] = value
    h_user, h_key = headers.get("x-clickhouse-user"), headers.get("x-clickhouse-key")
    basic = _basic(headers["authorization"]) if headers.get("authorization") else None
    sources = sum((basic is not None, h_user is not None or h_key is not None, seen_user or seen_password))
    if sources > 1:
        raise ClickHouseError(
            AUTHENTICATION_FAILED,
            "Invalid authentication: it is not allowed to use more than one authentication method "
            "(Authorization header, X-ClickHouse-User/Key headers, user/password parameters) at once",
        )
    if basic is not None:
        r.user, r.password = basic
    elif h_user is not None or h_key is not None:
        r.user, r.password = h_user or "default", h_key or ""
    r.user = r.user or "default"
    if db := headers.get("x-clickhouse-database"):
        r.database = db
    if fmt := headers.get("x-clickhouse-format"):
        r.default_format = fmt
    if qid := headers.get("x-clickhouse-query-id"):
        r.query_id = r.query_id or qid
    return r


# Output formats whose per-block outputs concatenate into one valid output (no header, footer or
# delimiter between blocks): these are streamed as the engine produces them; the others are built
# whole in memory, bounded by max_result_bytes.
STREAMABLE_FORMATS = frozenset(
    f.lower()
    for f in [
        "TabSeparated",
        "TSV",
        "TabSeparatedRaw",
        "TSVRaw",
        "Raw",
        "CSV",
        "RowBinary",
        "Native",
        "JSONEachRow",
        "JSONLines",
        "NDJSON",
        "JSONCompactEachRow",
        "JSONStringsEachRow",
        "JSONCompactStringsEachRow",
        "LineAsString",
        "RawBLOB",
        "TSKV",
        "Null",
    ]
)


def content_type(fmt: str) -> str:
    """The Content-Type ClickHouse answers a format with."""
    f = fmt.lower()
    if f.startswith(("tabseparated", "tsv")) or f in ("raw",):
        return "text/tab-separated-values; charset=UTF-8"
    if f.startswith("csv"):
        return "text/csv; charset=UTF-8; header=" + ("present" if "withnames" in f else "absent")
    if f in ("jsoneachrow", "jsonlines", "ndjson", "jsonstringseachrow"):
        return "application/x-ndjson; charset=UTF-8"
    if f.startswith("json"):
        return "application/json; charset=UTF-8"
    if f == "xml":
        return "application/xml; charset=UTF-8"
    if f.startswith(
        (
            "rowbinary",
            "native",
            "parquet",
            "arrow",
            "orc",
            "avro",
            "msgpack",
            "protobuf",
            "capnproto",
            "npy",
            "bson",
        )
    ):
        return "application/octet-stream"
    return "text/plain; charset=UTF-8"
