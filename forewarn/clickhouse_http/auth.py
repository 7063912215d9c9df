"""Who may query, and which settings a read-only user may still change.

Users come from ``clickhouse_http.users``; ``default`` (no password, ``readonly=1``) is always
there unless the configuration redefines or disables it, which is what a dashboard needs and
nothing more. ``readonly`` means what it means in ClickHouse: 1 reads and may not change
settings, 2 reads and may change settings, 0 may write. As ClickHouse does with
``changeable_in_readonly`` constraints, a read-only user may still pick output and transport
settings (formats, compression, progress headers) and lower the limits; the limits themselves
(execution time, memory, result size) can never be raised above the server's.

>>> from forewarn.config import ClickHouseHTTPSettings
>>> users = Users(ClickHouseHTTPSettings())
>>> users.authenticate("default", "").readonly
1
>>> users.check_settings(users.authenticate("default", ""), {"max_threads": "1"}, "GET", {})
{'max_threads': '1'}
>>> users.check_settings(users.authenticate("default", ""), {"insert_quorum": "2"}, "GET", {})
Traceback (most recent call last):
...
forewarn.clickhouse_http.protocol.ClickHouseError: Cannot modify 'insert_quorum' setting in readonly mode
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from forewarn.clickhouse_http.protocol import (
    AUTHENTICATION_FAILED,
    READONLY,
    SETTING_CONSTRAINT_VIOLATION,
    ClickHouseError,
)
from forewarn.config import ClickHouseHTTPSettings, ConfigError

_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Settings a read-only user may change: output shape, transport, query planning, and limits
# (lowered only: see CAPPED). Prefixes first, then exact names.
_RO_PREFIXES = (
    "output_format_",
    "format_",
    "input_format_",
    "date_time_",
    "http_",
    "max_",
    "optimize_",
    "join_",
    "cast_",
    "prefer_",
    "query_plan_",
    "allow_experimental_",
    "enable_",
)
_RO_NAMES = frozenset(
    {
        "send_progress_in_http_headers",
        "cancel_http_readonly_queries_on_client_close",
        "add_http_cors_header",
        "extremes",
        "totals_mode",
        "totals_auto_threshold",
        "session_timezone",
        "log_comment",
        "result_overflow_mode",
        "timeout_overflow_mode",
        "read_overflow_mode",
        "group_by_overflow_mode",
        "sort_overflow_mode",
        "distinct_overflow_mode",
        "set_overflow_mode",
        "join_overflow_mode",
        "aggregate_functions_null_for_empty",
        "joined_subquery_requires_alias",
        "select_sequential_consistency",
        "low_cardinality_allow_in_native_format",
        "union_default_mode",
        "data_type_default_nullable",
        "precise_float_parsing",
        "count_distinct_implementation",
        "interval_output_format",
        "bool_true_representation",
        "bool_false_representation",
        "use_query_cache",
        "use_skip_indexes",
        "use_uncompressed_cache",
        "timeout_before_checking_execution_speed",
        "any_join_distinct_right_table_keys",
        "compile_expressions",
        "group_by_use_nulls",
        "transform_null_in",
        "exact_rows_before_limit",
        "rows_before_aggregation",
    }
)
# Never changeable by a read-only user, whatever the prefixes say.
_RO_DENIED = frozenset({"max_concurrent_queries_for_user", "max_concurrent_queries_for_all_users"})


@dataclass(frozen=True)
class User:
    name: str
    readonly: int
    sha256: str | None  # hex digest; None: no password


def _password_digest(name: str, user: object, environ: Mapping[str, str]) -> str | None:
    sha = getattr(user, "password_sha256_hex", None)
    env = getattr(user, "password_env", None)
    if sha and env:
        raise ConfigError(f"clickhouse_http.users.{name}: give password_sha256_hex or password_env, not both")
    if env:
        if env not in environ:
            raise ConfigError(
                f"clickhouse_http.users.{name}.password_env: environment variable {env} is not set"
            )
        return hashlib.sha256(environ[env].encode()).hexdigest()
    return sha.lower() if sha else None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (name or address) only accepts connections from this machine."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        addrs = {a[4][0] for a in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addrs) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs)


class Users:
    """The interface's users, their passwords (as digests) and readonly levels."""

    def __init__(self, cfg: ClickHouseHTTPSettings, environ: Mapping[str, str] | None = None):
        environ = os.environ if environ is None else environ
        self.caps = {
            "max_execution_time": cfg.max_execution_time_s,
            "max_memory_usage": float(cfg.max_memory_usage),
            "max_result_bytes": float(cfg.max_result_bytes),
        }
        self.extra = frozenset(cfg.readonly_settings)
        configured = dict(cfg.users)
        self._users: dict[str, User] = {}
        if "default" not in configured:
            self._users["default"] = User("default", 1, None)
        for name, u in configured.items():
            if u.disabled:
                continue
            self._users[name] = User(name, u.readonly, _password_digest(name, u, environ))
        open_users = sorted(n for n, u in self._users.items() if u.sha256 is None)
        if open_users and not is_loopback(cfg.host) and not cfg.allow_passwordless_on_network:
            raise ConfigError(
                f"clickhouse_http.host {cfg.host} is reachable from the network, but user(s) "
                f"{', '.join(open_users)} have no password: set clickhouse_http.users.<name>."
                "password_sha256_hex (or password_env), disable them, or set allow_passwordless_on_network"
            )

    def names(self) -> list[str]:
        return sorted(self._users)

    def authenticate(self, name: str, password: str) -> User:
        """The user, if the password matches (users without one take any, as ClickHouse's no_password)."""
        user = self._users.get(name)
        digest = hashlib.sha256(password.encode()).hexdigest()
        ok = user is not None and (user.sha256 is None or hmac.compare_digest(digest, user.sha256))
        if not ok:
            raise ClickHouseError(
                AUTHENTICATION_FAILED,
                f"{name}: Authentication failed: password is incorrect, or there is no user with such name",
            )
        assert user is not None
        return user

    def readonly_level(self, user: User, method: str) -> int:
        """ClickHouse's rule: a GET can never write, so a writer's GET runs with readonly=2."""
        if user.readonly == 0 and method in ("GET", "HEAD"):
            return 2
        return user.readonly

    def check_settings(
        self, user: User, settings: Mapping[str, str], method: str, defaults: Mapping[str, str]
    ) -> dict[str, str]:
        """The settings to apply for this request; refuses what ``readonly`` forbids (code 164)
        and limits above the server's (code 452), as ClickHouse's settings constraints do."""
        level = self.readonly_level(user, method)
        out: dict[str, str] = {}
        for name, value in settings.items():
            if not _SETTING_NAME.match(name):
                raise ClickHouseError(115, f"Unknown setting '{name[:100]}'", "UNKNOWN_SETTING")
            if defaults and name not in defaults:
                raise ClickHouseError(
                    115,
                    f"Setting {name} is neither a builtin setting nor started with the prefix 'SQL_' "
                    "registered for user-defined settings",
                    "UNKNOWN_SETTING",
                )
            if level == 0:
                out[name] = value
                continue
            if name == "readonly":
                if value.strip() != str(level) and not (level == 2 and value.strip() == "1"):
                    raise ClickHouseError(READONLY, "Cannot modify 'readonly' setting in readonly mode")
                continue
            if name in self.caps:
                self._check_cap(name, value)
                out[name] = value
                continue
            if level == 2 or _same(value, defaults.get(name)):
                out[name] = value
                continue
            allowed = name in _RO_NAMES or name in self.extra or name.startswith(_RO_PREFIXES)
            if not allowed or name in _RO_DENIED:
                raise ClickHouseError(READONLY, f"Cannot modify '{name}' setting in readonly mode")
            out[name] = value
        return out

    def _check_cap(self, name: str, value: str) -> None:
        cap = self.caps[name]
        try:
            v = float(value)
        except ValueError:
            return  # the engine names the bad value
        if v <= 0 or v > cap:
            limit = int(cap) if cap == int(cap) else cap
            raise ClickHouseError(
                SETTING_CONSTRAINT_VIOLATION,
                f"Setting {name} shouldn't be greater than {limit} (nor 0, which means unlimited)",
            )


def _same(value: str, default: str | None) -> bool:
    """A setting sent with the value it already has changes nothing, which readonly=1 allows."""
    if default is None:
        return False
    norm = {"true": "1", "false": "0"}
    a, b = value.strip().lower(), default.strip().lower()
    return norm.get(a, a) == norm.get(b, b)
