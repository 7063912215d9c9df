"""Alertmanager 0.25 YAML configuration, validated with pydantic; unsupported keys are errors.

Only the parts forewarn implements are accepted, so a config that would behave differently
here than in Alertmanager fails at load instead of silently routing alerts elsewhere.

>>> cfg = parse_config('''
... route: {receiver: ops, group_by: [alertname], routes: [{matchers: ['sev="page"'], receiver: ops}]}
... receivers: [{name: ops, webhook_configs: [{url: "http://127.0.0.1:1/"}]}]
... ''')
>>> cfg.route.routes[0].matchers[0].value, cfg.global_.resolve_timeout
('page', 300.0)
>>> try:
...     parse_config("route: {receiver: ops, foo: 1}\\nreceivers: [{name: ops}]")
... except AlertsConfigError as e:
...     print(e)
invalid alerts config:
  route.foo: unsupported key
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from forewarn.alerts.labels import LABEL_NAME_RE, Matcher, MatcherError, parse_matchers
from forewarn.alerts.timeintervals import TimeInterval
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

_DURATION_RE = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


class AlertsConfigError(ValueError):
    """A router configuration that cannot be loaded; the message names each bad key."""


def parse_duration(value: Any) -> float:
    """Prometheus model durations (``1d``, ``1h30m``, ``500ms``; ``0``), in seconds.

    >>> parse_duration("1h30m"), parse_duration("1d"), parse_duration("250ms")
    (5400.0, 86400.0, 0.25)
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"not a valid duration string: {value!r} (needs a unit, e.g. 30s)")
    s = str(value)
    if s == "0":
        return 0.0
    m = _DURATION_RE.match(s)
    if not s or not m or not any(m.groups()):
        raise ValueError(f"not a valid duration string: {s!r}")
    return float(sum(int(g) * u for g, u in zip(m.groups(), _UNITS, strict=True) if g))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, arbitrary_types_allowed=True)


def _duration(v: Any) -> float | None:
    return None if v is None else parse_duration(v)


def _matcher_list(v: Any) -> list[Matcher]:
    if v is None:
        return []
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list):
        # A TypeError here would escape pydantic as a traceback (found by fuzz/alerts_config.py).
        raise ValueError(f"matchers must be a list of strings, got {type(v).__name__}")
    out: list[Matcher] = []
    for s in v:
        if not isinstance(s, str):
            raise ValueError(f"matcher must be a string, got {s!r}")
        try:
            out.extend(parse_matchers(s))
        except MatcherError as e:
            raise ValueError(str(e)) from None
    return out


def _legacy_matchers(eq: dict[str, str] | None, rx: dict[str, str] | None) -> list[Matcher]:
    """``match``/``match_re`` maps; a ``match_re`` value keeps its anchors when printed, as in 0.25."""
    out = [Matcher.make(k, "=", v) for k, v in (eq or {}).items()]
    out += [Matcher.make(k, "=~", f"^(?:{v})$") for k, v in (rx or {}).items()]
    for m in out:
        if not LABEL_NAME_RE.match(m.name):
            raise ValueError(f"invalid label name {m.name!r}")
    return out


class BasicAuth(_Model):
    username: str = ""
    password: SecretStr = SecretStr("")


class Authorization(_Model):
    type: str = "Bearer"
    credentials: SecretStr = SecretStr("")


class TLSConfig(_Model):
    insecure_skip_verify: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


class HTTPConfig(_Model):
    basic_auth: BasicAuth | None = None
    authorization: Authorization | None = None
    bearer_token: SecretStr | None = None
    tls_config: TLSConfig | None = None
    follow_redirects: bool = True

    def headers(self) -> dict[str, str]:
        """Authentication headers for outgoing notifications (values never logged)."""
        if self.authorization is not None:
            return {
                "Authorization": f"{self.authorization.type} {self.authorization.credentials.get_secret_value()}"
            }
        if self.bearer_token is not None:
            return {"Authorization": f"Bearer {self.bearer_token.get_secret_value()}"}
        return {}


class GlobalConfig(_Model):
    resolve_timeout: float = 300.0
    http_config: HTTPConfig = HTTPConfig()
    slack_api_url: str | None = None
    pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"

    _d = field_validator("resolve_timeout", mode="before")(_duration)


def _http_url(v: Any) -> Any:
    """Alertmanager refuses a receiver URL that is not absolute http(s) at load, so do we."""
    from urllib.parse import urlsplit

    if isinstance(v, str):
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"unsupported scheme {parts.scheme!r} for URL {v!r}: use http:// or https://")
        if not parts.hostname:
            raise ValueError(f"host for URL {v!r} must not be empty")
    return v


class WebhookConfig(_Model):
    url: str

    _u = field_validator("url", mode="before")(_http_url)
    send_resolved: bool = True
    max_alerts: int = Field(default=0, ge=0)
    http_config: HTTPConfig | None = None


def _no_template(v: Any) -> Any:
    if isinstance(v, str) and "{{" in v:
        raise ValueError("Go notification templates are not supported; use plain text")
    return v


class SlackConfig(_Model):
    api_url: str | None = None
    channel: str | None = None
    username: str = "Alertmanager"
    send_resolved: bool = False
    title: str | None = None
    text: str | None = None
    http_config: HTTPConfig | None = None

    _t = field_validator("channel", "username", "title", "text", mode="before")(_no_template)


class PagerdutyConfig(_Model):
    routing_key: SecretStr
    url: str | None = None
    send_resolved: bool = True
    severity: str = "error"
    client: str = "Alertmanager"
    source: str | None = None
    description: str | None = None
    component: str | None = None
    group: str | None = None
    class_: str | None = Field(default=None, alias="class")
    http_config: HTTPConfig | None = None

    _t = field_validator(
        "severity", "client", "source", "description", "component", "group", "class_", mode="before"
    )(_no_template)


class Receiver(_Model):
    name: str = Field(min_length=1)
    webhook_configs: list[WebhookConfig] = []
    slack_configs: list[SlackConfig] = []
    pagerduty_configs: list[PagerdutyConfig] = []


class Route(_Model):
    receiver: str | None = None
    group_by: list[str] | None = None
    matchers: list[Matcher] = []
    match: dict[str, str] | None = None
    match_re: dict[str, str] | None = None
    group_wait: float | None = None
    group_interval: float | None = None
    repeat_interval: float | None = None
    continue_: bool = Field(default=False, alias="continue")
    mute_time_intervals: list[str] = []
    active_time_intervals: list[str] = []
    routes: list[Route] = []

    _d = field_validator("group_wait", "group_interval", "repeat_interval", mode="before")(_duration)
    _m = field_validator("matchers", mode="before")(_matcher_list)

    @model_validator(mode="after")
    def _check(self) -> Route:
        self.matchers = [*_legacy_matchers(self.match, self.match_re), *self.matchers]
        if self.group_by is not None:
            if "..." in self.group_by and len(self.group_by) > 1:
                raise ValueError("cannot have wildcard group_by (`...`) and other labels at the same time")
            if len(set(self.group_by)) != len(self.group_by):
                raise ValueError("duplicated label in group_by")
            for ln in self.group_by:
                if ln != "..." and not LABEL_NAME_RE.match(ln):
                    raise ValueError(f"invalid label name {ln!r} in group_by")
        if self.group_interval == 0:
            raise ValueError("group_interval cannot be zero")
        if self.repeat_interval == 0:
            raise ValueError("repeat_interval cannot be zero")
        return self


class InhibitRule(_Model):
    source_matchers: list[Matcher] = []
    target_matchers: list[Matcher] = []
    source_match: dict[str, str] | None = None
    source_match_re: dict[str, str] | None = None
    target_match: dict[str, str] | None = None
    target_match_re: dict[str, str] | None = None
    equal: list[str] = []

    _m = field_validator("source_matchers", "target_matchers", mode="before")(_matcher_list)

    @model_validator(mode="after")
    def _merge(self) -> InhibitRule:
        self.source_matchers = [
            *_legacy_matchers(self.source_match, self.source_match_re),
            *self.source_matchers,
        ]
        self.target_matchers = [
            *_legacy_matchers(self.target_match, self.target_match_re),
            *self.target_matchers,
        ]
        return self


class NamedTimeInterval(_Model):
    name: str = Field(min_length=1)
    time_intervals: list[TimeInterval]


class AlertsConfig(_Model):
    """The whole router configuration (Alertmanager's top-level keys forewarn supports)."""

    global_: GlobalConfig = Field(default_factory=GlobalConfig, alias="global")
    route: Route
    receivers: list[Receiver]
    inhibit_rules: list[InhibitRule] = []
    time_intervals: list[NamedTimeInterval] = []
    mute_time_intervals: list[NamedTimeInterval] = []
    templates: list[str] = []
    remediations: Any = None

    @model_validator(mode="after")
    def _check(self) -> AlertsConfig:
        errors: list[str] = []  # every problem at once, not the first of them
        if self.templates:
            errors.append("templates: notification templates are not supported")
        names = [r.name for r in self.receivers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            errors.append(f"notification config name {sorted(dup)[0]!r} is not unique")
        intervals = [t.name for t in (*self.time_intervals, *self.mute_time_intervals)]
        if len(set(intervals)) != len(intervals):
            errors.append("time interval names must be unique")
        r = self.route
        if not r.receiver:
            errors.append("root route must specify a default receiver")
        if r.matchers:
            errors.append("root route must not have any matchers")
        if r.continue_:
            errors.append("cannot have continue in root route")
        if r.mute_time_intervals:
            errors.append("root route must not have any mute time intervals")
        if r.active_time_intervals:
            errors.append("root route must not have any active time intervals")

        def walk(route: Route, path: str) -> None:
            if route.receiver and route.receiver not in names:
                errors.append(f"{path}: undefined receiver {route.receiver!r} used in route")
            for ti in (*route.mute_time_intervals, *route.active_time_intervals):
                if ti not in intervals:
                    errors.append(f"{path}: undefined time interval {ti!r} used in route")
            for i, child in enumerate(route.routes):
                walk(child, f"{path}.routes[{i}]")

        walk(r, "route")
        if errors:
            raise ValueError("\n  ".join(errors))
        return self

    def receiver(self, name: str) -> Receiver:
        return next(r for r in self.receivers if r.name == name)

    def intervals(self) -> dict[str, list[TimeInterval]]:
        return {t.name: t.time_intervals for t in (*self.time_intervals, *self.mute_time_intervals)}


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or str(part).startswith(
            ("function-", "tagged-union")
        ):
            continue
        else:
            name = {"global_": "global", "continue_": "continue", "class_": "class"}.get(str(part), str(part))
            out += ("." if out else "") + name
    return out


def _format(e: ValidationError) -> str:
    lines = []
    for err in e.errors():
        where = _loc(err["loc"])
        msg = (
            "unsupported key"
            if err["type"] == "extra_forbidden"
            else err["msg"].removeprefix("Value error, ")
        )
        lines.append(f"  {where}: {msg}" if where else f"  {msg}")
    return "invalid alerts config:\n" + "\n".join(lines)


MAX_ALIAS_NODES = 100_000  # expanded nodes past which aliasing must stay under 10x the document


def excessive_aliasing(root: Any) -> bool:
    """Whether YAML anchors and aliases make ``root`` expand far beyond the document itself.

    PyYAML shares an aliased node instead of copying it, but validation walks every reference,
    so a few hundred bytes of nested aliases ("billion laughs") would take hours (found by
    fuzz/alerts_config.py). Like Go's yaml.v2 in Alertmanager, refuse excessive aliasing: more
    than ``MAX_ALIAS_NODES`` expanded nodes and over ten times the distinct ones. The walk
    stops at that bound, so the check itself is linear in the document.

    >>> levels = ["a: &a [" + ", ".join(["x"] * 10) + "]"] + [
    ...     f"{n}: &{n} [" + ", ".join([f"*{p}"] * 10) + "]" for p, n in zip("abcde", "bcdef")]
    >>> bomb = yaml.safe_load("{" + ", ".join(levels) + "}")
    >>> excessive_aliasing(bomb), excessive_aliasing(yaml.safe_load("{a: &a [1], b: [*a, *a]}"))
    (True, False)
    """

    def walk(limit: float, again: bool) -> int:
        """Nodes visited (stopping past ``limit``), shared containers again only if ``again``."""
        seen: set[int] = set()
        n, stack = 0, [root]
        while stack and n <= limit:
            v = stack.pop()
            n += 1
            if isinstance(v, dict | list) and (again or id(v) not in seen):
                seen.add(id(v))
                stack.extend(v.values() if isinstance(v, dict) else v)
        return n

    limit = max(MAX_ALIAS_NODES, 10 * walk(float("inf"), again=False))
    return walk(limit, again=True) > limit


def load_yaml(text: str, what: str, error: type[ValueError]) -> Any:
    """``yaml.safe_load`` with excessive aliasing refused; errors as ``error`` naming ``what``.

    >>> load_yaml("a: [1, {b: c}]", "test", ValueError)
    {'a': [1, {'b': 'c'}]}
    """
    try:
        # libyaml when PyYAML has it: several times faster, and the parser Go's yaml.v2
        # (Alertmanager's) was ported from.
        raw = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as e:
        raise error(f"invalid {what}: not YAML: {e}") from None
    except RecursionError:
        raise error(f"invalid {what}: nested too deeply") from None
    if excessive_aliasing(raw):
        raise error(f"invalid {what}: document contains excessive aliasing")
    return raw


def _list(v: Any) -> list[Any]:
    """``v`` if it is a list: the raw YAML of a config that failed validation may hold anything."""
    return v if isinstance(v, list) else []


def _raw_route_problems(raw: dict[str, Any]) -> list[str]:
    """Undefined receivers and time intervals of the route tree, read from the raw YAML."""
    receivers = raw.get("receivers") if isinstance(raw.get("receivers"), list) else []
    names = {r.get("name") for r in receivers if isinstance(r, dict)}
    intervals = {
        t.get("name")
        for key in ("time_intervals", "mute_time_intervals")
        for t in (raw.get(key) if isinstance(raw.get(key), list) else [])
        if isinstance(t, dict)
    }
    out: list[str] = []

    def walk(route: Any, path: str) -> None:
        if not isinstance(route, dict):
            return
        receiver = route.get("receiver")
        if isinstance(receiver, str) and receiver not in names:
            out.append(f"{path}: undefined receiver {receiver!r} used in route")
        for key in ("mute_time_intervals", "active_time_intervals"):
            for ti in _list(route.get(key)):
                if isinstance(ti, str) and ti not in intervals:
                    out.append(f"{path}: undefined time interval {ti!r} used in route")
        for i, child in enumerate(_list(route.get("routes"))):
            walk(child, f"{path}.routes[{i}]")

    walk(raw.get("route"), "route")
    return out


def parse_config(text: str, startup_checks: bool = False) -> AlertsConfig:
    """Parse and validate YAML text; ``remediations:`` is handed to the remediation package.

    Every problem is reported at once: the router's schema, the remediations section and, with
    ``startup_checks``, what the router checks when it starts (signing key, TLS files, hook URLs
    inside the allowlist).
    """
    raw = load_yaml(text, "alerts config", AlertsConfigError)
    if not isinstance(raw, dict):
        raise AlertsConfigError("invalid alerts config: the top level must be a mapping")
    errors: list[str] = []
    cfg = None
    try:
        cfg = AlertsConfig.model_validate(raw)
    except ValidationError as e:
        errors.extend(_format(e).splitlines()[1:])
        # the model's own route checks do not run when a field failed: name those problems too
        errors.extend(f"  {p}" for p in _raw_route_problems(raw) if f"  {p}" not in errors)
    remediations = None
    if raw.get("remediations") is not None:
        try:
            from forewarn.alerts.remediation.config import RemediationConfigError, parse_remediations
        except ImportError as e:
            raise AlertsConfigError(f"invalid alerts config: remediations: not available ({e})") from None
        try:
            remediations = parse_remediations(raw["remediations"])
        except RemediationConfigError as e:
            errors.extend(f"  {p}" for p in e.problems)
        except (ValueError, ValidationError) as e:
            errors.append(f"  remediations: {e}")
        if remediations is not None and startup_checks:
            errors.extend(f"  {p}" for p in remediations.startup_problems())
    if errors:
        raise AlertsConfigError("invalid alerts config:\n" + "\n".join(errors))
    assert cfg is not None
    if remediations is not None:
        cfg.remediations = remediations
    return cfg


SECRET_KEYS = frozenset(
    {
        "password",
        "credentials",
        "bearer_token",
        "routing_key",
        "service_key",
        "api_url",
        "slack_api_url",
        "secret",
    }
)


def redacted_yaml(text: str) -> str:
    """The config as ``GET /api/v2/status`` shows it: secrets replaced by ``<secret>`` like Alertmanager.

    >>> print(redacted_yaml("receivers: [{name: p, pagerduty_configs: [{routing_key: abc}]}]").strip())
    receivers:
    - name: p
      pagerduty_configs:
      - routing_key: <secret>
    """

    def walk(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: "<secret>" if k in SECRET_KEYS and v[k] is not None else walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    try:
        return yaml.safe_dump(walk(yaml.safe_load(text)), sort_keys=False, allow_unicode=True)
    except yaml.YAMLError:
        return ""


def load_config(path: str | Path, startup_checks: bool = False) -> AlertsConfig:
    """Load a config file; a missing or unreadable file is a clear :class:`AlertsConfigError`.
    ``startup_checks``: also what the router checks when it starts (see :func:`parse_config`)."""
    try:
        text = Path(path).read_bytes().decode()
    except OSError as e:
        raise AlertsConfigError(f"cannot read alerts config {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise AlertsConfigError(f"invalid alerts config: {path} is not UTF-8 text (byte {e.start})") from None
    return parse_config(text, startup_checks)
