"""The ``remediations:`` section of the router's Alertmanager-format YAML, validated up front.

Every key is checked at load (``extra="forbid"``): a typo in a guardrail must be an error
naming its path, never a hook that quietly runs without its brakes.

>>> cfg = parse_remediations({
...     "allowlist": ["http://127.0.0.1:8080/"],
...     "secret_env": "FOREWARN_REMEDIATION_SECRET",
...     "hooks": [{"name": "restart", "matchers": ['alertname="HighLatency"'],
...                "url": "http://127.0.0.1:8080/restart", "cooldown": "15m"}],
... })
>>> cfg.hooks[0].cooldown, cfg.window
(900.0, 600.0)
>>> try:
...     parse_remediations({"hooks": [{"name": "x", "matchers": ["a=b"], "url": "ftp://h/"}]})
... except ValueError as e:
...     print(str(e).splitlines()[1])
  remediations.hooks[0].url: must be an absolute http(s) URL, got 'ftp://h/'
"""

from __future__ import annotations

import re
import ssl
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from forewarn.alerts.labels import Matcher, all_match, parse_matchers
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from forewarn.validation import problems

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
RESERVED_HEADERS = frozenset(
    {"idempotency-key", "x-forewarn-timestamp", "x-forewarn-signature", "x-forewarn-attempt", "content-type"}
)


def parse_duration(value: Any) -> float:
    """Seconds from a Prometheus-style duration (``90s``, ``1h30m``, ``500ms``) or a number.

    >>> parse_duration("1h30m"), parse_duration("500ms"), parse_duration(2)
    (5400.0, 0.5, 2.0)
    """
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"duration must not be negative, got {value}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"duration must be a string like '30s', got {type(value).__name__}")
    text = value.strip()
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_S[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"not a duration: {value!r} (use e.g. 500ms, 30s, 10m, 1h30m)")
    return total


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an absolute http(s) URL, got {value!r}")
    if parts.username or parts.password:
        raise ValueError("credentials in the URL are not allowed; use headers or the signing secret")
    return value


HttpUrl = Annotated[str, BeforeValidator(lambda v: _http_url(v) if isinstance(v, str) else v)]
Method = Literal["POST", "PUT", "PATCH", "DELETE", "GET"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BreakerConfig(_Model):
    """Per-hook circuit breaker: open after ``failures`` consecutive failed calls, one trial call
    after ``reset_after``."""

    failures: int = Field(default=5, ge=1)
    reset_after: Duration = 60.0


class BackoffConfig(_Model):
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(max, initial * 2**n))."""

    initial: Duration = 0.5
    max: Duration = 30.0


class TLSConfig(_Model):
    """TLS for https hooks, named as in Alertmanager's ``tls_config``."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _pair(self) -> TLSConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (client certificate)")
        return self

    def ssl_context(self) -> ssl.SSLContext | bool:
        """What httpx's ``verify`` takes; raises ValueError naming an unreadable file."""
        if self == TLSConfig():
            return True
        try:
            ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
            if self.cert_file and self.key_file:
                ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        except (OSError, ssl.SSLError) as e:
            raise ValueError(f"tls_config: cannot load certificates: {e}") from None
        if self.insecure_skip_verify:
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        return ctx


class ResolveAction(_Model):
    """The call made when an alert that triggered the hook resolves (e.g. undo a scale-out)."""

    url: HttpUrl
    method: Method = "POST"
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("headers")
    @classmethod
    def _no_reserved(cls, v: dict[str, str]) -> dict[str, str]:
        bad = sorted(h for h in v if h.lower() in RESERVED_HEADERS)
        if bad:
            raise ValueError(f"headers set by forewarn cannot be overridden: {', '.join(bad)}")
        return v


class HookConfig(ResolveAction):
    """One remediation: which alerts (matchers) trigger which HTTP call, and its brakes."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
    matchers: list[str] = Field(min_length=1)
    timeout: Duration = 10.0
    retries: int = Field(default=3, ge=0, le=50)
    backoff: BackoffConfig = BackoffConfig()
    cooldown: Duration = 300.0
    require_approval: bool = False
    approval_timeout: Duration | None = None
    dry_run: bool | None = None
    max_executions: int | None = Field(default=None, ge=0)
    window: Duration | None = None
    on_resolve: ResolveAction | None = None
    breaker: BreakerConfig = BreakerConfig()
    tls_config: TLSConfig = TLSConfig()

    @field_validator("matchers")
    @classmethod
    def _parse_matchers(cls, v: list[str]) -> list[str]:
        for i, text in enumerate(v):
            try:
                parse_matchers(text)
            except ValueError as e:
                raise ValueError(f"matchers[{i}]: {e}") from None
        return v

    @field_validator("timeout")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("must be greater than 0")
        return v

    @cached_property
    def parsed_matchers(self) -> list[Matcher]:
        """Alertmanager's matcher syntax, parsed by the router's own label module."""
        return [m for text in self.matchers for m in parse_matchers(text)]

    def matches(self, labels: dict[str, str]) -> bool:
        return all_match(self.parsed_matchers, labels)


class RemediationsConfig(_Model):
    """The whole ``remediations:`` section. Guardrails are global unless a hook narrows them."""

    dry_run: bool = False
    allowlist: list[HttpUrl] = Field(
        default_factory=list, description="URL prefixes hooks may call; empty refuses every call"
    )
    secret_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    secret_file: Path | None = None
    max_executions: int = Field(default=10, ge=0, description="blast-radius cap across all alerts")
    window: Duration = 600.0
    approval_timeout: Duration = 3600.0
    retention: Duration = Field(
        default=7 * 86400.0,
        description="how long a finished action is remembered after its alert was last flushed; "
        "keep it above the routes' repeat_interval so a still-firing alert is never re-run",
    )
    max_concurrency: int = Field(default=8, ge=1, le=256)
    max_pending: int = Field(default=10_000, ge=1, description="submitted batches not yet evaluated")
    hooks: list[HookConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> RemediationsConfig:
        names = [h.name for h in self.hooks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"hook names must be unique: {', '.join(dupes)}")
        if self.hooks and not (self.secret_env or self.secret_file):
            raise ValueError("hooks need a signing key: set secret_env or secret_file")
        if self.retention < 3600:
            raise ValueError("retention must be at least 1h")
        if self.secret_env and self.secret_file:
            raise ValueError("set only one of secret_env and secret_file")
        return self

    def hook(self, name: str) -> HookConfig | None:
        return next((h for h in self.hooks if h.name == name), None)

    def read_secret(self) -> bytes:
        """The HMAC key; raises ValueError naming where it was expected (never the value)."""
        import os

        if self.secret_env:
            value = os.environ.get(self.secret_env, "")
            if not value:
                raise ValueError(
                    f"remediations.secret_env: environment variable {self.secret_env} is not set (or empty)"
                )
            return value.encode()
        if self.secret_file:
            try:
                value = self.secret_file.read_text().strip()
            except OSError as e:
                raise ValueError(f"remediations.secret_file: cannot read {self.secret_file}: {e}") from None
            if not value:
                raise ValueError(f"remediations.secret_file: {self.secret_file} is empty")
            return value.encode()
        raise ValueError("remediations: no signing key configured (secret_env or secret_file)")

    def startup_problems(self) -> list[str]:
        """What the router checks when it starts (or reloads) with this section, beyond the
        schema: a readable signing key, loadable TLS files, hook URLs inside the allowlist (a hook
        outside it would have every call refused)."""
        from forewarn.alerts.remediation.sender import allowed

        out: list[str] = []
        if self.hooks:
            try:
                self.read_secret()
            except ValueError as e:
                out.append(str(e))
        for i, h in enumerate(self.hooks):
            try:
                h.tls_config.ssl_context()
            except ValueError as e:
                out.append(f"remediations.hooks[{i}].{e}")
            targets = [("url", h.url)] + ([("on_resolve.url", h.on_resolve.url)] if h.on_resolve else [])
            for key, url in targets:
                if not allowed(url, self.allowlist):
                    out.append(
                        f"remediations.hooks[{i}].{key}: {url} is outside the allowlist "
                        f"({', '.join(self.allowlist) or 'empty'}); every call would be refused"
                    )
        return out


class RemediationConfigError(ValueError):
    """A ``remediations:`` section that cannot be used; each line names one bad key path."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or [message]


def parse_remediations(raw: Any) -> RemediationsConfig:
    """Validate the top-level ``remediations:`` value (``None`` means no hooks)."""
    if raw is None:
        return RemediationsConfig()
    if not isinstance(raw, dict):
        raise RemediationConfigError(f"remediations: must be a mapping, got {type(raw).__name__}")
    try:
        return RemediationsConfig.model_validate(raw)
    except ValidationError as e:
        found = problems(e, RemediationsConfig, root=("remediations",))
        message = "invalid remediations configuration:\n" + "\n".join(f"  {p}" for p in found)
        raise RemediationConfigError(message, found) from None
