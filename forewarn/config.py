"""Configuration: one YAML file plus ``FOREWARN_*`` environment overrides.

Precedence, highest first: command-line flags, environment (``FOREWARN_STORAGE__DSN``;
``__`` separates nesting levels), the YAML file, defaults. Unknown keys are errors that name
the key, because a typo silently ignored is an outage waiting to happen.

>>> s = load_settings(overrides={"storage": {"database": "demo"}})
>>> s.storage.database
'demo'
>>> try:
...     load_settings(overrides={"storage": {"databse": "x"}})
... except ConfigError as e:
...     print(str(e).splitlines()[1])
  storage.databse: Extra inputs are not permitted
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

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
    exporter: Literal["clickhouse", "kafka"] = "clickhouse"
    drain_timeout_s: float = Field(default=30.0, ge=0)


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
        default=0.999,
        gt=0,
        le=1,
        description="committed alert threshold on the score (tuned on synthetic data)",
    )
    seed: int = 42


class AlertsSettings(Section):
    """The Alertmanager-compatible router (``forewarn alerts``); its routing lives in ``config_file``."""

    listen: str = "127.0.0.1:9093"
    config_file: Path | None = Field(default=None, description="Alertmanager YAML of the router")
    url: str | None = Field(default=None, description="router that forewarn's own alerts are posted to")
    api_tokens: list[SecretStr] = Field(default_factory=list)
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
    forecast_horizon_s: float = Field(default=6 * 3600.0, gt=0, description="warn when a limit is this close")
    saturation_limits: dict[str, float] = Field(
        default_factory=lambda: {"*percent*": 100.0, "*_pct*": 100.0, "*utilization*": 1.0},
        description="series-name glob -> limit for time-to-full forecasts (first match wins)",
    )
    correlation_window_s: float = Field(
        default=120.0, gt=0, description="anomalies this close join one incident"
    )
    resolve_after_s: float = Field(default=300.0, gt=0, description="an incident quiet this long is resolved")
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


def _format_errors(err: ValidationError, origin: str) -> str:
    lines = [f"invalid configuration ({origin}):"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(root)"
        lines.append(f"  {key}: {e['msg']}")
    return "\n".join(lines)


def load_settings(path: Path | str | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Build the effective settings; raises ConfigError naming each bad key."""
    file = _find_config_file(path)
    file_data = _read_yaml(file) if file else {}

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
            return (init_settings, env_settings, _DictSource(settings_cls, file_data))

    origin = f"file {file}, FOREWARN_* environment" if file else "FOREWARN_* environment, flags"
    try:
        return _Loaded(**_prune_none(overrides or {}))
    except ValidationError as e:
        raise ConfigError(_format_errors(e, origin)) from None


class _DictSource(PydanticBaseSettingsSource):
    """The YAML file's contents as the lowest-priority settings source."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]):
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


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
