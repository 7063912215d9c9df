"""Configuration: one YAML file plus ``FOREWARN_*`` environment overrides.

Precedence, highest first: command-line flags, environment (``FOREWARN_STORAGE__DSN``;
``__`` separates nesting levels), the YAML file, defaults. Unknown keys and unknown
``FOREWARN_<SECTION>__<KEY>`` variables are errors that name the key and the likely intended
one, all reported at once, because a typo silently ignored is an outage waiting to happen.

>>> s = load_settings(overrides={"storage": {"database": "demo"}})
>>> s.storage.database
'demo'
>>> try:
...     load_settings(overrides={"storage": {"databse": "x"}})
... except ConfigError as e:
...     print(str(e).splitlines()[1])
  - unknown key `databse` in section `storage`; did you mean `database`? (command-line flag)
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from forewarn.validation import clean_loc, describe, suggest

CONFIG_ENV = "FOREWARN_CONFIG"
DEFAULT_CONFIG_FILES = ("forewarn.yaml", "forewarn.yml")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names every bad key."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TTLSettings(Section):
    """Days to keep each signal; 0 keeps forever. Applied to existing tables on every migrate.

    The default keeps everything, as the OpenTelemetry exporter does: ClickHouse drops rows that
    are already past a TTL when they are inserted, so a TTL silently discards backfilled or
    replayed telemetry with old timestamps, which a collector must never do by surprise.
    """

    traces: int = Field(default=0, ge=0)
    metrics: int = Field(default=0, ge=0)
    logs: int = Field(default=0, ge=0)


class StorageSettings(Section):
    dsn: str | None = Field(
        default=None,
        description="clickhouse-connect DSN: chdb:///path (embedded, default <data_dir>/chdb) "
        "or http(s)://user:password@host:8123",
    )
    database: str = Field(default="otel", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    cluster: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]*$",
        description="ClickHouse cluster name: ON CLUSTER DDL, Replicated engines, Distributed tables",
    )
    ttl_days: TTLSettings = TTLSettings()
    insert_timeout_s: float = Field(default=30.0, gt=0)


class TLSSettings(Section):
    """Server TLS in the OpenTelemetry Collector's ``tls`` block shape; off while ``cert_file`` is unset.

    ``client_ca_file`` turns on mutual TLS (clients must present a certificate it signed). The
    certificate and key are re-read when their files change, so a renewal needs no restart.
    """

    cert_file: Path | None = None
    key_file: Path | None = None
    client_ca_file: Path | None = None
    min_version: Literal["1.2", "1.3"] = "1.2"
    reload_interval_s: float = Field(
        default=60.0, ge=0, description="how often changed files are re-read; 0: never"
    )

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None


class CollectorSettings(Section):
    host: str = Field(default="localhost", description="interface both receivers bind to")
    grpc_port: int = Field(default=4317, ge=0, le=65535)
    http_port: int = Field(default=4318, ge=0, le=65535)
    metrics_port: int | None = Field(
        default=None, description="separate port for /metrics, /healthz, /readyz (default: the HTTP port)"
    )
    max_request_bytes: int = Field(default=64 * 1024 * 1024, gt=0, description="after decompression")
    max_queue_bytes: int = Field(default=256 * 1024 * 1024, gt=0, description="pending, not yet durable")
    max_batch_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    batch_linger_ms: float = Field(default=2.0, ge=0)
    retry_after_s: int = Field(default=2, ge=1)
    auth_tokens: list[SecretStr] = Field(
        default_factory=list, description="bearer tokens accepted on ingest; empty = no auth"
    )
    tenants: dict[str, list[SecretStr]] = Field(
        default_factory=dict,
        description="tenant name -> its bearer tokens; rows accepted with one get the resource "
        "attribute forewarn.tenant; with tenants or auth_tokens set, a request needs a valid token",
    )
    tls: TLSSettings = Field(
        default_factory=TLSSettings, description="TLS (and mutual TLS) for both OTLP receivers"
    )
    exporter: Literal["clickhouse", "kafka"] = "clickhouse"
    drain_timeout_s: float = Field(default=30.0, ge=0)
    dedup_window_s: float = Field(
        default=3600.0,
        ge=0,
        le=86400,
        description="direct path: a request identical to one committed this recently is stored once "
        "(client re-sends); 0: off",
    )
    memory_limit_mib: float = Field(
        default=500.0,
        ge=0,
        description="bound on the collector's anonymous resident memory; new requests get 429 / "
        "RESOURCE_EXHAUSTED above memory_limit_mib - memory_spike_limit_mib; 0: no bound",
    )
    max_queue_wait_s: float = Field(
        default=5.0,
        ge=0,
        description="a signal's queue holds at most this many seconds of work (at its recent commit "
        "rate), beyond it 429 / RESOURCE_EXHAUSTED: answers come before the SDKs' 10 s timeout; 0: off",
    )
    memory_spike_limit_mib: float = Field(
        default=100.0, ge=0, description="headroom under memory_limit_mib for what is already accepted"
    )

    @model_validator(mode="after")
    def _spike_under_limit(self) -> CollectorSettings:
        if self.memory_limit_mib and self.memory_spike_limit_mib >= self.memory_limit_mib:
            raise ValueError("memory_spike_limit_mib must be below memory_limit_mib")
        return self


class KafkaSettings(Section):
    brokers: str = "127.0.0.1:9092"
    topic_spans: str = "otlp_spans"
    topic_metrics: str = "otlp_metrics"
    topic_logs: str = "otlp_logs"
    encoding: Literal["otlp_proto", "otlp_json"] = "otlp_proto"
    partition_traces_by_id: bool = False
    partition_metrics_by_resource_attributes: bool = False
    partition_logs_by_resource_attributes: bool = False
    create_topics: bool = True
    partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    group_id: str = "forewarn-ingest"
    client: dict[str, str] = Field(
        default_factory=dict, description="extra librdkafka properties (sasl.*, ssl.*, ...)"
    )
    # producer (forewarn collector --exporter kafka)
    delivery_timeout_s: float = Field(
        default=5.0, gt=0, description="broker ack deadline; keep it below the clients' export timeout"
    )
    linger_ms: float = Field(default=5.0, ge=0)
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"
    max_message_bytes: int = Field(default=1_000_000, gt=0, description="larger requests are refused (400)")
    max_buffer_kbytes: int = Field(default=65536, gt=0, description="producer memory for unacked records")
    # consumer (forewarn ingest)
    batch_max_records: int = Field(default=5000, ge=1, description="records per partition per insert")
    batch_max_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    batch_linger_ms: float = Field(
        default=200.0, ge=0, description="oldest buffered record waits at most this"
    )
    session_timeout_ms: int = Field(default=6000, ge=1000, description="failover time after an ingester dies")
    metrics_port: int | None = Field(default=None, ge=0, le=65535, description="/metrics of forewarn ingest")
    metrics_host: str = Field(default="127.0.0.1", description="interface of forewarn ingest's /metrics")
    retry_max_backoff_s: float = Field(default=5.0, gt=0, description="cap of the storage retry backoff")
    dedup_window_s: float = Field(
        default=3600.0,
        ge=0,
        le=86400,
        description="a record identical to one planned this recently is stored once (client re-sends); 0: off",
    )


class DetectorSettings(Section):
    threshold: float = Field(
        default=0.995,
        gt=0,
        le=1,
        description="committed alert threshold on the score (chosen on the tuning half of real corpora)",
    )
    seed: int = 42


class AlertsSettings(Section):
    """The Alertmanager-compatible router (``forewarn alerts``); its routing lives in ``config_file``."""

    listen: str = "127.0.0.1:9093"
    config_file: Path | None = Field(default=None, description="Alertmanager YAML of the router")
    listen_fallback: bool = Field(
        default=False,
        description="`forewarn up`: when `listen` is taken, serve on a free port (printed and in the "
        "discovery file) instead of failing",
    )
    url: str | None = Field(
        default=None,
        description="router that forewarn's own alerts are posted to and that `silence`/`remediation` "
        "commands talk to (default: the running forewarn of --data-dir, else http://<listen>)",
    )
    token: SecretStr | None = Field(
        default=None, description="bearer token the commands send to the router (one of its api_tokens)"
    )
    api_tokens: list[SecretStr] = Field(default_factory=list)
    web_config_file: Path | None = Field(
        default=None,
        description="Prometheus web configuration file (tls_server_config, basic_auth_users, "
        "http_server_config) for the router's HTTPS and basic authentication",
    )
    external_url: str | None = Field(default=None, description="URL receivers see as externalURL")
    max_alerts: int = Field(default=1_000_000, ge=1, description="bound on alerts held in memory")
    resend_grace_s: float = Field(
        default=90.0,
        ge=0,
        description="after a restart, how long stored alerts wait for their client to re-send them "
        "(Prometheus does every minute) before their groups flush anyway",
    )


class FlowsSettings(Section):
    """The score/train flows: signal buckets, watermark, detectors, correlation, sharding."""

    interval_s: float = Field(
        default=10.0, gt=0, description="how often the score loop looks for new buckets"
    )
    max_series: int = Field(
        default=100_000, ge=1, description="cardinality budget (split evenly over shards)"
    )
    step_s: float = Field(default=10.0, gt=0, description="signal bucket width")
    lateness_s: float = Field(default=5.0, ge=0, description="a bucket is scored this long after it ends")
    max_lateness_s: float = Field(
        default=60.0,
        ge=0,
        description="when data keeps arriving after its bucket was scored, the wait grows up to this",
    )
    max_batch_buckets: int = Field(default=360, ge=1, description="catch-up bound per micro-batch")
    max_batch_points: int = Field(
        default=2_000_000, ge=1000, description="catch-up bound per micro-batch: buckets x known series"
    )
    start_lookback_s: float = Field(
        default=0.0, ge=0, description="first start without a checkpoint: how far back"
    )
    counter_lookback_s: float = Field(
        default=900.0, gt=0, description="how far back a counter's previous point is"
    )
    warmup_points: int = Field(
        default=120, ge=1, description="points per series before the ensemble may alert"
    )
    cold_start_points: int = Field(
        default=6, ge=3, description="points before a gross deviation of a still-warming series alerts"
    )
    persist_s: float = Field(
        default=20.0,
        gt=0,
        description="before its models are warm, a deviation counts once it lasted this long (at least 2 buckets)",
    )
    unjudged_prefixes: list[str] = Field(
        default_factory=lambda: [
            "v8js.",
            "nodejs.",
            "jvm.",
            "process.runtime.",
            "go.",
            "dotnet.",
            "cpython.",
        ],
        description="metrics of a language runtime (heap, GC, event loop): stored and shown, not judged by "
        "the ensemble (they move with every load change; what users feel shows in latency and errors)",
    )
    forecast_horizon_s: float = Field(default=6 * 3600.0, gt=0, description="warn when a limit is this close")
    saturation_limits: dict[str, float] = Field(
        default_factory=lambda: {"*percent*": 100.0, "*_pct*": 100.0, "*utilization*": 1.0},
        description="series-name glob -> limit for time-to-full forecasts (first match wins)",
    )
    correlation_window_s: float = Field(
        default=30.0,
        gt=0,
        description="an anomaly joins an incident related to it in the call graph whose latest anomaly is this recent",
    )
    resolve_after_s: float = Field(
        default=120.0,
        gt=0,
        description="quiet period: an incident without onsets or firing series this long is resolved",
    )
    incident_max_s: float = Field(
        default=4 * 3600.0, gt=0, description="bounded lifetime: an incident this old is resolved"
    )
    dashboards_url: str | None = Field(
        default=None, description="Grafana base URL that notifications link to (relative links when unset)"
    )
    summary_interval_s: float = Field(
        default=60.0, gt=0, description="how often `forewarn up` logs a one-line summary of the flows"
    )
    incident_hold_buckets: int = Field(
        default=2,
        ge=1,
        description="buckets a new incident collects anomalies before its alert (and suspect) is fixed",
    )
    shards: int = Field(
        default=1, ge=1, description="workers sharing the series (stable hash of the service)"
    )
    shard: int = Field(default=0, ge=0, description="which shard this worker scores")
    orchestrator: Literal["prefect", "inline"] = Field(
        default="prefect", description="run each micro-batch as a Prefect flow run, or call it directly"
    )
    train_interval_s: float = Field(default=3600.0, gt=0)
    train_history_s: float = Field(default=7 * 86400.0, gt=0)
    max_templates: int = Field(default=5000, ge=10, description="Drain template budget")
    api_listen: str | None = Field(
        default=None, description="host:port of the flows HTTP API (anomaly list/feedback); off when unset"
    )
    feedback_suppress_s: float = Field(
        default=7 * 86400.0, gt=0, description="how long a false-positive mark suppresses its pattern"
    )


class SLOSettings(Section):
    """Service-level objectives: where their files are and how the SLO flow counts and alerts."""

    dir: Path | None = Field(
        default=None, description="directory of OpenSLO / Sloth YAML files (off when unset)"
    )
    step_s: float = Field(default=60.0, ge=1, le=300, description="width of the good/total event buckets")
    lateness_s: float = Field(default=60.0, ge=0, description="a bucket is counted this long after it ends")
    max_batch_buckets: int = Field(
        default=1440, ge=1, description="buckets one SLO catches up per run (a new SLO backfills its window)"
    )
    interval_s: float = Field(default=60.0, gt=0, description="how often the SLO flow runs")
    hold_s: float = Field(
        default=300.0, gt=0, description="a firing SLO alert that is not re-posted resolves after this long"
    )
    forecast_horizon_s: float = Field(
        default=7 * 86400.0, gt=0,
        description="rolling windows: warn when the budget is projected to run out within this long",
    )  # fmt: skip


class ClickHouseUser(Section):
    """One user of the ClickHouse HTTP interface. Passwords are never stored in clear text: a
    SHA-256 hex digest (``echo -n secret | sha256sum``) or the name of an environment variable."""

    password_sha256_hex: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    password_env: str | None = Field(default=None, description="environment variable holding the password")
    readonly: Literal[0, 1, 2] = Field(
        default=1,
        description="ClickHouse readonly level: 1 reads only (dashboards), 2 may also change settings, 0 may write",
    )
    disabled: bool = Field(default=False, description="refuse this user (e.g. to turn `default` off)")


def _default_users() -> dict[str, ClickHouseUser]:
    return {"default": ClickHouseUser()}


class ClickHouseHTTPSettings(Section):
    """ClickHouse's HTTP interface for the embedded store (``forewarn up`` and ``forewarn collector``)."""

    host: str = Field(default="127.0.0.1", description="interface to bind; loopback unless you add passwords")
    port: int = Field(default=8123, ge=0, le=65535, description="0: off")
    users: dict[str, ClickHouseUser] = Field(
        default_factory=_default_users,
        description="user name -> password and readonly level; `default` (no password, read-only) stays unless redefined",
    )
    allow_passwordless_on_network: bool = Field(
        default=False, description="let a user without password in when `host` is not a loopback address"
    )
    max_concurrent_queries: int = Field(
        default=8, ge=1, description="more wait up to queue_timeout_s, then fail"
    )
    queue_timeout_s: float = Field(default=10.0, ge=0)
    max_request_bytes: int = Field(
        default=32 * 1024 * 1024, gt=0, description="request body, after decompression"
    )
    max_result_bytes: int = Field(
        default=256 * 1024 * 1024,
        gt=0,
        description="formats ClickHouse cannot stream (JSON, Parquet...) are built in memory up to this",
    )
    max_execution_time_s: float = Field(
        default=300.0, gt=0, description="per query, applied unless lower; read-only users cannot raise it"
    )
    max_memory_usage: int = Field(
        default=4 * 1024**3, gt=0, description="bytes per query; read-only users cannot raise it"
    )
    readonly_settings: list[str] = Field(
        default_factory=list,
        description="extra settings read-only users may change (ClickHouse's changeable_in_readonly)",
    )
    display_name: str | None = Field(
        default=None, description="X-ClickHouse-Server-Display-Name (default: host name)"
    )
    tls: TLSSettings = TLSSettings()


class Settings(BaseSettings):
    """The whole effective configuration of one forewarn process."""

    model_config = SettingsConfigDict(
        env_prefix="FOREWARN_", env_nested_delimiter="__", extra="forbid", validate_assignment=True
    )

    data_dir: Path = Path("./data")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    storage: StorageSettings = StorageSettings()
    collector: CollectorSettings = CollectorSettings()
    kafka: KafkaSettings = KafkaSettings()
    detectors: DetectorSettings = DetectorSettings()
    alerts: AlertsSettings = AlertsSettings()
    flows: FlowsSettings = FlowsSettings()
    slo: SLOSettings = SLOSettings()
    clickhouse_http: ClickHouseHTTPSettings = ClickHouseHTTPSettings()
    _notices: list[str] = PrivateAttr(default_factory=list)

    @property
    def notices(self) -> list[str]:
        """Warnings found while loading (deprecated names) for the command to print."""
        return self._notices

    @property
    def storage_dsn(self) -> str:
        """The configured DSN, or the embedded chDB store inside ``data_dir``."""
        if self.storage.dsn:
            return self.storage.dsn
        return f"chdb://{(self.data_dir / 'chdb').resolve()}"


def _find_config_file(path: Path | str | None) -> Path | None:
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        return p
    if env := os.environ.get(CONFIG_ENV):
        return _find_config_file(env)
    for name in DEFAULT_CONFIG_FILES:
        if Path(name).is_file():
            return Path(name)
    return None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(data).__name__}")
    return data


ENV_PREFIX = "FOREWARN_"
# FOREWARN_* variables that are not configuration keys: read by commands or by Grafana's
# provisioning files, or named by the examples of the docs (the remediation signing key).
OTHER_ENV = frozenset(
    {
        "FOREWARN_CONFIG",
        "FOREWARN_GRAFANA_URL",
        "FOREWARN_GRAFANA_TOKEN",
        "FOREWARN_GRAFANA_CLICKHOUSE_PASSWORD",
        "FOREWARN_CLICKHOUSE_HOST",
        "FOREWARN_CLICKHOUSE_PORT",
        "FOREWARN_CLICKHOUSE_PROTOCOL",
        "FOREWARN_CLICKHOUSE_SECURE",
        "FOREWARN_CLICKHOUSE_USER",
        "FOREWARN_CLICKHOUSE_PASSWORD",
        "FOREWARN_CLICKHOUSE_DATABASE",
        "FOREWARN_ROUTER_URL",
        "FOREWARN_DASHBOARDS_PATH",
        "FOREWARN_REMEDIATION_SECRET",
    }
)
# Old names still read, with a warning naming the new one.
DEPRECATED_ENV = {"FOREWARN_ALERTS_TOKEN": "FOREWARN_ALERTS__TOKEN"}


def setting_env_names(
    model: type[BaseModel] | None = None, prefix: str = ENV_PREFIX
) -> dict[str, tuple[str, ...]]:
    """Every ``FOREWARN_*`` name of a setting, mapped to its key path.

    >>> setting_env_names()["FOREWARN_COLLECTOR__GRPC_PORT"]
    ('collector', 'grpc_port')
    """
    model = model or Settings
    out: dict[str, tuple[str, ...]] = {}
    for name, field in model.model_fields.items():
        var = prefix + name.upper()
        out[var] = (name,)
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            for v, path in setting_env_names(sub, var + "__").items():
                out[v] = (name, *path)
    return out


def _field_at(path: tuple[str, ...]) -> Any:
    model: Any = Settings
    field = None
    for part in path:
        field = model.model_fields[part]
        model = field.annotation
    return field


def _env_value(path: tuple[str, ...], raw: str) -> Any:
    """Lists and mappings come as JSON (as pydantic-settings reads them); the rest as text."""
    from typing import get_origin

    field = _field_at(path)
    ann = field.annotation if field is not None else None
    if get_origin(ann) in (list, dict) or ann in (list, dict):
        return json.loads(raw)
    return raw


def _environment(
    environ: dict[str, str],
) -> tuple[dict[str, Any], dict[tuple[str, ...], str], list[str], list[str]]:
    """``FOREWARN_*`` variables as nested settings, their origins, errors and warnings."""
    known = setting_env_names()
    data: dict[str, Any] = {}
    origins: dict[tuple[str, ...], str] = {}
    errors: list[str] = []
    warnings: list[str] = []
    upper = {k.upper(): (k, v) for k, v in environ.items() if k.upper().startswith(ENV_PREFIX)}
    for var in sorted(upper):
        name, raw = upper[var]
        if var in OTHER_ENV:
            continue
        if var in DEPRECATED_ENV:
            new = DEPRECATED_ENV[var]
            if new in upper:
                warnings.append(f"{name} is deprecated and ignored because {new} is set")
                continue
            warnings.append(f"{name} is deprecated; use {new}")
            var = new
        path = known.get(var)
        if path is None:
            if "__" in var:
                errors.append(_unknown_env(name, known))
            elif (hint := suggest(var, [*known, *OTHER_ENV], cutoff=0.85)) or (
                hint := _single_underscore_form(var, known)
            ):
                errors.append(f"unknown environment variable {name}; did you mean {hint}?")
            # else: a FOREWARN_* name of the user's own (e.g. a hook secret named by secret_env)
            continue
        if known.get(var) and _is_section(path):
            errors.append(f"{name}: `{'.'.join(path)}` is a section; set its keys, e.g. {var}__<KEY>")
            continue
        try:
            value = _env_value(path, raw)
        except ValueError as e:
            errors.append(f'{name} must be JSON (a list or mapping), e.g. \'["a", "b"]\': {e}')
            continue
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
        origins[path] = f"environment variable {name}"
    return data, origins, errors, warnings


def _is_section(path: tuple[str, ...]) -> bool:
    ann = _field_at(path).annotation
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def _single_underscore_form(var: str, known: dict[str, tuple[str, ...]]) -> str | None:
    """``FOREWARN_COLLECTOR_GRPC_PORT`` (one underscore where two belong) -> the real name."""
    flat = {k.replace("__", "_"): k for k in known if "__" in k}
    return flat.get(var)


def _unknown_env(name: str, known: dict[str, tuple[str, ...]]) -> str:
    var = name.upper()
    head, _, rest = var[len(ENV_PREFIX) :].partition("__")
    sections = sorted({p[0].upper() for p in known.values() if len(p) > 1})
    if head not in sections:
        hint = suggest(head, sections)
        fixed = f"; did you mean {ENV_PREFIX}{hint}__{rest}?" if hint else ""
        return f"unknown environment variable {name}: no section `{head.lower()}`{fixed}"
    hint = suggest(var, known)
    return f"unknown environment variable {name}" + (f"; did you mean {hint}?" if hint else "")


def _merge(into: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v
    return into


def _paths(d: dict[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for k, v in d.items():
        yield (*prefix, k)
        if isinstance(v, dict):
            yield from _paths(v, (*prefix, k))


def _origin(loc: tuple[Any, ...], origins: dict[tuple[str, ...], str], default: str) -> str:
    path = tuple(str(p) for p in loc if not isinstance(p, int))
    while path:
        if path in origins:
            return origins[path]
        path = path[:-1]
    return default


def load_settings(path: Path | str | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Build the effective settings; raises ConfigError naming every problem at once."""
    file = _find_config_file(path)
    file_data = _read_yaml(file) if file else {}
    env_data, origins, errors, warnings = _environment(dict(os.environ))
    flags = _prune_none(overrides or {})
    for p in _paths(flags):
        origins[p] = "command-line flag"
    where_file = f"in {file}" if file else "in the configuration"
    merged = _merge(_merge(copy.deepcopy(file_data), env_data), flags)

    class _Loaded(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings,)  # the environment was read above, with its own checks

    settings = None
    try:
        settings = _Loaded(**merged)
    except ValidationError as e:
        for err in e.errors():
            line = describe(dict(err), Settings)
            errors.append(f"{line} ({_origin(clean_loc(err['loc']), origins, where_file)})")
    if errors:
        raise ConfigError("invalid configuration:\n" + "\n".join(f"  - {e}" for e in dict.fromkeys(errors)))
    assert settings is not None
    settings._notices = warnings
    return settings


def _prune_none(d: dict[str, Any]) -> dict[str, Any]:
    """Drop unset CLI flags (None) so they do not shadow the file or environment."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            v = _prune_none(v)
            if v:
                out[k] = v
        elif v is not None:
            out[k] = v
    return out


def mask_dsn(dsn: str) -> str:
    """Hide the password in a DSN so it can be logged.

    >>> mask_dsn("https://u:s3cret@ch.example:8443/db")
    'https://u:***@ch.example:8443/db'
    >>> mask_dsn("chdb:///data/chdb")
    'chdb:///data/chdb'
    """
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def masked_dump(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data with every secret masked."""
    data = settings.model_dump(mode="json")  # SecretStr dumps as '**********'
    data["storage"]["dsn"] = mask_dsn(settings.storage_dsn)
    for key in list(data["kafka"]["client"]):
        if any(s in key for s in ("password", "secret", "key")):
            data["kafka"]["client"][key] = "**********"
    return data
