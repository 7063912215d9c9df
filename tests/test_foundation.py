"""Package layout, configuration and the storage layer (schema, migrations, TTL, cluster DDL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from forewarn.config import ConfigError, TTLSettings, load_settings, masked_dump
from forewarn.storage import TABLES, Schema, migrate
from forewarn.storage.migrations import MIGRATIONS, apply_ttl, current_ttl_days

ROOT = Path(__file__).resolve().parents[1]
FOREWARN = [sys.executable, "-m", "forewarn.cli"]


def test_every_package_folder_is_listed_in_pyproject() -> None:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed, dirs = set(cfg["packages"]), cfg["package-dir"]
    found = set()
    for pkg, folder in dirs.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([pkg, *rel.parts]) if rel.parts else pkg)
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"


def test_contract_column_names_and_types(store, settings) -> None:
    rows = store.query(
        "SELECT table, name, type FROM system.columns WHERE database = {db:String} AND table = 'otel_traces'",
        parameters={"db": settings.storage.database},
    ).result_rows
    cols = {name: typ for _, name, typ in rows}
    assert cols["Timestamp"] == "DateTime64(9)"
    assert cols["SpanAttributes"] == "Map(LowCardinality(String), String)"
    assert cols["Events.Timestamp"] == "Array(DateTime64(9))"
    assert cols["Links.Attributes"] == "Array(Map(LowCardinality(String), String))"
    assert cols["Duration"] == "UInt64"
    hist = dict(
        store.query(
            "SELECT name, type FROM system.columns WHERE database = {db:String} "
            "AND table = 'otel_metrics_exponential_histogram'",
            parameters={"db": settings.storage.database},
        ).result_rows
    )
    assert hist["PositiveBucketCounts"] == "Array(UInt64)"
    assert hist["Exemplars.FilteredAttributes"] == "Array(Map(LowCardinality(String), String))"
    assert hist["ScopeDroppedAttrCount"] == "UInt32"


def test_migrations_are_recorded_and_idempotent(store, settings) -> None:
    schema = Schema(settings.storage.database)
    assert migrate(store, schema, settings.storage.ttl_days) == []  # already applied by the fixture
    versions = [
        r[0]
        for r in store.query(
            "SELECT version FROM forewarn_schema_migrations FINAL ORDER BY version"
        ).result_rows
    ]
    assert versions == sorted(m.version for m in MIGRATIONS)
    assert len({m.version for m in MIGRATIONS}) == len(MIGRATIONS)


def test_a_table_from_an_older_release_gains_a_later_column(store, settings) -> None:
    """Migration 301 on a plans table created by migration 300 before ``isolated`` existed."""
    (v301,) = (m for m in MIGRATIONS if m.version == 301)
    store.command("ALTER TABLE forewarn_ingest_batches DROP COLUMN isolated")
    for stmt in v301.statements(Schema(settings.storage.database), settings.storage.ttl_days):
        store.command(stmt)
        store.command(stmt)  # idempotent
    cols = store.query(
        "SELECT type, default_expression FROM system.columns WHERE database = currentDatabase() "
        "AND table = 'forewarn_ingest_batches' AND name = 'isolated'"
    ).result_rows
    assert cols == [("UInt8", "0")]


def test_ttl_follows_config_on_existing_tables(store, settings) -> None:
    schema = Schema(settings.storage.database)
    assert current_ttl_days(store, schema, "otel_logs") == 0  # default: keep everything
    settings.storage.ttl_days.logs = 3
    settings.storage.ttl_days.traces = 7
    changed = apply_ttl(store, schema, settings.storage.ttl_days)
    assert set(changed) == {"otel_logs", "otel_traces", "otel_traces_trace_id_ts"}
    assert current_ttl_days(store, schema, "otel_logs") == 3
    assert current_ttl_days(store, schema, "otel_traces") == 7
    assert apply_ttl(store, schema, settings.storage.ttl_days) == []  # nothing to do twice
    settings.storage.ttl_days.traces = 0
    assert "otel_traces" in apply_ttl(store, schema, settings.storage.ttl_days)
    assert current_ttl_days(store, schema, "otel_traces") == 0


def test_mv_fills_trace_id_ts(store) -> None:
    store.command(
        "INSERT INTO otel_traces (Timestamp, TraceId, SpanId) VALUES "
        "(toStartOfMinute(now()) + 1, 'abc', '1'), (toStartOfMinute(now()) + 9, 'abc', '2'), (now(), '', '3')"
    )
    rows = store.query(
        "SELECT TraceId, min(Start), max(End) FROM otel_traces_trace_id_ts GROUP BY TraceId"
    ).result_rows
    assert [(r[0], r[1].second, r[2].second) for r in rows] == [("abc", 1, 9)]


def test_cluster_ddl_is_parsed_by_the_engine(store) -> None:
    schema = Schema("otel", cluster="prod")
    stmts = [schema.create_database()]
    for t in TABLES.values():
        stmts += schema.create_table(t, 7)
        stmts.append(schema.modify_ttl(t, 7) if t.ttl_column else "SELECT 1")
    stmts.append(schema.create_trace_id_ts_mv())
    for m in MIGRATIONS:
        stmts += m.statements(schema, TTLSettings())
    for stmt in stmts:
        formatted = store.query("SELECT formatQuery({q:String})", parameters={"q": stmt}).result_rows[0][0]
        assert formatted  # the engine parsed it
    joined = "\n".join(stmts)
    assert "ON CLUSTER `prod`" in joined
    assert "ReplicatedMergeTree('/clickhouse/tables/{shard}/otel/otel_traces_local', '{replica}')" in joined
    assert "ENGINE = Distributed(`prod`, `otel`, `otel_traces_local`, cityHash64(TraceId))" in joined
    assert "FROM `otel`.`otel_traces_local`" in schema.create_trace_id_ts_mv()


def test_config_file_env_and_flags(tmp_path, monkeypatch) -> None:
    f = tmp_path / "forewarn.yaml"
    f.write_text("storage:\n  database: fromfile\n  ttl_days: {logs: 5}\ncollector:\n  grpc_port: 1111\n")
    monkeypatch.setenv("FOREWARN_COLLECTOR__GRPC_PORT", "2222")
    s = load_settings(f, {"collector": {"http_port": 3333}})
    assert (s.storage.database, s.storage.ttl_days.logs, s.storage.ttl_days.traces) == ("fromfile", 5, 0)
    assert (s.collector.grpc_port, s.collector.http_port) == (2222, 3333)
    f.write_text("storage:\n  ttl_dayz: 3\n")
    with pytest.raises(
        ConfigError, match=r"unknown key `ttl_dayz` in section `storage`; did you mean `ttl_days`"
    ):
        load_settings(f)
    f.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(f)


def test_config_show_masks_secrets(tmp_path) -> None:
    env = {**os.environ, "FOREWARN_STORAGE__DSN": "https://u:hunter2@ch:8443/", "FOREWARN_CONFIG": ""}
    env["FOREWARN_COLLECTOR__AUTH_TOKENS"] = '["tok-secret"]'
    out = subprocess.run([*FOREWARN, "config", "show"], env=env, capture_output=True, text=True, check=True)
    assert "hunter2" not in out.stdout and "tok-secret" not in out.stdout
    assert "u:***@ch:8443" in out.stdout
    data = masked_dump(load_settings(overrides={"collector": {"auth_tokens": ["x"]}}))
    assert data["collector"]["auth_tokens"] == ["**********"]


def test_query_formats_from_a_fresh_data_dir(tmp_path) -> None:
    dsn = f"chdb://{tmp_path / 'store'}"
    subprocess.run([*FOREWARN, "migrate", "--storage", dsn], capture_output=True, check=True)
    sql = "SELECT number AS n, toString(number) AS s, toUInt64(number) * 1000000000000 AS big FROM numbers(2)"
    out = subprocess.run(
        [*FOREWARN, "query", "--storage", dsn, "--format", "json", sql],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert rows == [{"n": 0, "s": "0", "big": 0}, {"n": 1, "s": "1", "big": 1000000000000}]
    out = subprocess.run(
        [*FOREWARN, "query", "--storage", dsn, "--format", "csv", sql],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.splitlines()[0] == '"n","s","big"'
    out = subprocess.run(
        [*FOREWARN, "query", "--storage", dsn, "SELECT count() FROM otel_traces"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "0" in out.stdout  # the fresh store was migrated
    bad = subprocess.run([*FOREWARN, "query", "--storage", dsn, "SELEC 1"], capture_output=True, text=True)
    assert bad.returncode == 1 and "Syntax error" in bad.stderr and "Traceback" not in bad.stderr


def test_query_syntax_error_points_at_text_the_user_wrote(tmp_path) -> None:
    """`query` used to append its own FORMAT clause, so an error quoted text the user never wrote."""
    dsn = f"chdb://{tmp_path / 'store'}"
    subprocess.run([*FOREWARN, "migrate", "--storage", dsn], capture_output=True, check=True)
    for fmt in ("table", "json", "csv"):
        bad = subprocess.run(
            [*FOREWARN, "query", "--storage", dsn, "-f", fmt, "SELECT 1 FROM numbers(1) WHERE"],
            capture_output=True,
            text=True,
        )
        assert bad.returncode == 1 and "Syntax error" in bad.stderr
        assert "FORMAT" not in bad.stderr and "JSONEachRow" not in bad.stderr, bad.stderr
    # a FORMAT clause of the user's own wins over --format
    out = subprocess.run(
        [*FOREWARN, "query", "--storage", dsn, "-f", "json", "SELECT number FROM numbers(2) FORMAT CSV"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["0", "1"]


def test_query_on_a_directory_without_a_store_says_so_and_creates_nothing(tmp_path) -> None:
    """`forewarn query` run from another directory quietly created an empty store and printed 0."""
    data = tmp_path / "elsewhere"
    out = subprocess.run(
        [*FOREWARN, "query", "--data-dir", str(data), "SELECT count() FROM otel_traces"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1 and out.stdout == ""
    assert "no forewarn store in" in out.stderr and str(data) in out.stderr
    assert not data.exists()


def test_query_through_the_process_that_owns_the_store(tmp_path) -> None:
    """A second process queries an embedded store held by a running forewarn process."""
    dsn = f"chdb://{tmp_path / 'store'}"
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER_SCRIPT, dsn], stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout.readline().strip() == "ready"
        (owner_file,) = tmp_path.glob(".*owner.json")
        assert owner_file.stat().st_mode & 0o777 == 0o600  # its token is for this user only
        out = subprocess.run(
            [*FOREWARN, "query", "--storage", dsn, "-f", "json", "SELECT count() AS c FROM otel_logs"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(out.stdout) == {"c": 1}
    finally:
        owner.stdin.close()
        owner.wait(timeout=30)
    assert not list(tmp_path.glob(".*owner.json"))


OWNER_SCRIPT = """
import sys
from forewarn.config import load_settings
from forewarn.storage import open_storage
from forewarn.storage.gateway import Gateway
s = load_settings(overrides={"storage": {"dsn": sys.argv[1]}})
c = open_storage(s)
c.command("INSERT INTO otel_logs (Timestamp, Body) VALUES (now(), 'hello')")
gw = Gateway(sys.argv[1], s.storage.database)
print("ready", flush=True)
sys.stdin.read()
gw.close()
"""


def test_a_replayed_insert_does_not_duplicate_the_trace_id_view(store) -> None:
    sql = (
        "INSERT INTO otel_traces (Timestamp, TraceId, SpanId) SETTINGS insert_deduplication_token = 'batch-1' "
        "VALUES (now(), 'abc', '1')"
    )
    store.command(sql)
    store.command(sql)  # a retry of the same batch
    assert store.query("SELECT count() FROM otel_traces").result_rows[0][0] == 1
    assert store.query("SELECT count() FROM otel_traces_trace_id_ts").result_rows[0][0] == 1
