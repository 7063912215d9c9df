"""The embedded store speaks ClickHouse's HTTP interface: real clients (clickhouse-connect,
clickhouse-driver's block codec, curl) against the interface on the session's chDB engine, in the
same process as a client writing into the store, as in ``forewarn up``."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import clickhouse_connect
import httpx
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from forewarn.clickhouse_http import ClickHouseHTTPServer, codec
from forewarn.clickhouse_http.protocol import NAMES
from forewarn.config import ConfigError, load_settings
from forewarn.storage import open_storage

ADMIN_PASSWORD = "s3cret-admin"
READER_ENV = "FOREWARN_TEST_CH_READER_PASSWORD"
# a query that runs 5 s: long enough for a loaded machine to act while it runs
# (two sleeps one after the other: one may last 3 s at most)
SLOW = "SELECT sleep(2.5) + x FROM (SELECT sleep(2.5) AS x)"


@pytest.fixture(scope="module")
def store(chdb_dsn, tmp_path_factory):
    db = "t_chhttp_" + uuid.uuid4().hex[:8]
    settings = load_settings(
        overrides={
            "data_dir": str(tmp_path_factory.mktemp("chhttp")),
            "storage": {"dsn": chdb_dsn, "database": db},
            "clickhouse_http": {
                "users": {
                    "admin": {
                        "password_sha256_hex": hashlib.sha256(ADMIN_PASSWORD.encode()).hexdigest(),
                        "readonly": 0,
                    },
                    "reader": {"password_env": READER_ENV},
                },
                "max_concurrent_queries": 4,
            },
        }
    )
    client = open_storage(settings)
    client.command(
        "CREATE TABLE IF NOT EXISTS kv (k UInt64, s String, ts DateTime64(9), m Map(LowCardinality(String), String)) "
        "ENGINE = MergeTree ORDER BY k"
    )
    client.command(
        "INSERT INTO kv SELECT number, toString(number), toDateTime64('2026-01-01 00:00:00', 9) + number, "
        "map('service.name', 'svc' || toString(number % 3)) FROM numbers(1000)"
    )
    yield settings, client
    client.command(f"DROP DATABASE IF EXISTS `{db}`")
    client.close()


@pytest.fixture(scope="module")
def server(store):
    settings, _ = store
    os.environ[READER_ENV] = "reader-pw"
    srv = ClickHouseHTTPServer(
        settings.clickhouse_http, settings.storage_dsn, settings.storage.database, port=0
    )
    srv.start()
    yield srv
    srv.stop()


def http(server, **kw):
    return clickhouse_connect.get_client(host="127.0.0.1", port=server.port, **kw)


def test_ping_and_select_one(server):
    assert httpx.get(f"{server.url}/ping").text == "Ok.\n"
    assert httpx.get(f"{server.url}/").text == "Ok.\n"
    assert httpx.get(f"{server.url}/replicas_status").text == "Ok.\n"
    r = httpx.get(f"{server.url}/", params={"query": "SELECT 1"})
    assert r.text == "1\n"
    assert r.headers["X-ClickHouse-Format"] == "TabSeparated"
    assert r.headers["X-ClickHouse-Timezone"] == "Etc/UTC"
    assert r.headers["X-ClickHouse-Query-Id"]
    assert r.headers["X-ClickHouse-Server-Display-Name"]
    assert set(json.loads(r.headers["X-ClickHouse-Summary"])) >= {"read_rows", "written_rows", "elapsed_ns"}


def test_clickhouse_connect_reads_the_store(server, store):
    c = http(server)
    assert c.command("SELECT currentDatabase()") == store[0].storage.database
    assert c.query("SELECT count(), sum(k) FROM kv").result_rows == [(1000, 499500)]
    rows = c.query("SELECT k, s, m FROM kv WHERE k < {n:UInt64} ORDER BY k", parameters={"n": 3}).result_rows
    assert rows == [
        (0, "0", {"service.name": "svc0"}),
        (1, "1", {"service.name": "svc1"}),
        (2, "2", {"service.name": "svc2"}),
    ]
    df = c.query_df("SELECT k, ts FROM kv ORDER BY k LIMIT 5")
    assert list(df["k"]) == [0, 1, 2, 3, 4] and str(df["ts"].iloc[1]) == "2026-01-01 00:00:01"
    assert c.query_arrow("SELECT k FROM kv ORDER BY k LIMIT 3").column(0).to_pylist() == [0, 1, 2]
    # A result larger than one response buffer is streamed block by block.
    assert c.query("SELECT number FROM numbers(2000000)").row_count == 2_000_000
    with c.query_row_block_stream("SELECT number FROM numbers(300000)") as stream:
        assert sum(len(b) for b in stream) == 300_000


@pytest.mark.parametrize("compress", ["lz4", "zstd", "gzip", "br", "deflate"])
def test_clickhouse_connect_with_each_compression(server, compress):
    c = http(server, compress=compress)
    assert c.query("SELECT sum(number) FROM numbers(100000)").result_rows == [(4999950000,)]
    assert c.query("SELECT toString(number) FROM numbers(200000)").row_count == 200_000


FORMATS = [
    "JSON",
    "JSONEachRow",
    "JSONCompact",
    "JSONCompactEachRowWithNamesAndTypes",
    "JSONStrings",
    "TabSeparated",
    "TabSeparatedWithNames",
    "TabSeparatedWithNamesAndTypes",
    "CSV",
    "CSVWithNames",
    "RowBinary",
    "RowBinaryWithNamesAndTypes",
    "Native",
    "Arrow",
    "ArrowStream",
    "Parquet",
    "Values",
]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_is_the_engines_own_bytes(server, store, fmt):
    """The interface hands out what the engine formats, byte for byte (JSON statistics aside)."""
    _, direct = store
    sql = "SELECT k, s, m FROM kv ORDER BY k LIMIT 50"
    via_default_format = httpx.post(f"{server.url}/", params={"default_format": fmt}, content=sql)
    via_clause = httpx.post(f"{server.url}/", content=f"{sql} FORMAT {fmt}")
    via_header = httpx.post(f"{server.url}/", headers={"X-ClickHouse-Format": fmt}, content=sql)
    expected = direct.raw_query(sql, fmt=fmt, settings={"output_format_json_quote_64bit_integers": 1})
    for r in (via_default_format, via_clause, via_header):
        assert r.status_code == 200, r.text
        assert r.headers["X-ClickHouse-Format"] == fmt
        if fmt in ("JSON", "JSONCompact", "JSONStrings"):
            got, want = json.loads(r.content), json.loads(expected)
            assert (got["meta"], got["data"], got["rows"]) == (want["meta"], want["data"], want["rows"])
        elif fmt == "Parquet":
            import pyarrow.parquet as pq

            assert pq.read_table(io.BytesIO(r.content)).equals(pq.read_table(io.BytesIO(expected)))
        else:
            assert r.content == expected


def test_query_param_and_body_are_joined_by_a_newline(server):
    assert httpx.post(f"{server.url}/?query=SELECT", content=b"1").text == "1\n"
    assert httpx.post(f"{server.url}/?query=", content=b"SELECT 2").text == "2\n"
    r = httpx.post(
        f"{server.url}/",
        params={"param_id": "2", "param_phrase": "a\\tb"},
        content="SELECT {id:UInt8}, {phrase:String}",
    )
    assert r.text == "2\ta\\tb\n"


def test_database_and_settings_from_the_url_and_headers(server):
    r = httpx.get(f"{server.url}/", params={"query": "SELECT currentDatabase()", "database": "system"})
    assert r.text == "system\n"
    r = httpx.get(
        f"{server.url}/",
        params={"query": "SELECT currentDatabase()"},
        headers={"X-ClickHouse-Database": "system"},
    )
    assert r.text == "system\n"
    r = httpx.get(
        f"{server.url}/",
        params={
            "query": "SELECT toUInt64(1) AS x FORMAT JSONEachRow",
            "output_format_json_quote_64bit_integers": "1",
        },
    )
    assert r.text == '{"x":"1"}\n'
    r = httpx.get(f"{server.url}/", params={"query": "SELECT getSetting('max_threads')", "max_threads": "1"})
    assert r.text == "1\n"
    # session_id, query_id and friends are accepted; the query id comes back.
    r = httpx.get(
        f"{server.url}/",
        params={"query": "SELECT 1", "session_id": "abc", "query_id": "q-42", "quota_key": "x"},
    )
    assert r.status_code == 200 and r.headers["X-ClickHouse-Query-Id"] == "q-42"
    r = httpx.get(f"{server.url}/", params={"query": "SELECT 1", "query_id": "a\r\nX-Evil: 1"})
    assert (
        r.status_code == 200 and "X-Evil" not in r.headers and "\n" not in r.headers["X-ClickHouse-Query-Id"]
    )


def test_errors_have_clickhouse_shape_status_and_code_header(server):
    cases = [
        ("SELEC 1", 400, 62, "SYNTAX_ERROR"),
        ("SELECT * FROM no_such_table", 404, 60, "UNKNOWN_TABLE"),
        ("SELECT 1; SELECT 2", 400, 62, "SYNTAX_ERROR"),
        ("SELECT throwIf(1)", 500, 395, "FUNCTION_THROW_IF_VALUE_IS_NON_ZERO"),
        ("", 400, 62, "SYNTAX_ERROR"),
    ]
    for sql, status, code, name in cases:
        r = httpx.post(f"{server.url}/", content=sql)
        assert r.status_code == status, (sql, r.text)
        assert r.headers["X-ClickHouse-Exception-Code"] == str(code)
        assert r.text.startswith(f"Code: {code}. DB::Exception: "), r.text
        assert f"({name})" in r.text and r.text.endswith("\n")
    r = httpx.get(f"{server.url}/", params={"query": "SELECT 1", "no_such_setting": "1"})
    assert r.status_code == 404 and r.headers["X-ClickHouse-Exception-Code"] == "115"
    # The codes the interface raises itself are ClickHouse's own numbers.
    direct = http(server)
    for code, name in NAMES.items():
        assert direct.command(f"SELECT errorCodeToName({code})") == name


def test_an_error_after_the_first_bytes_is_tagged_in_the_body(server):
    sql = "SELECT number, throwIf(number = 1500000) FROM numbers(3000000) FORMAT TSV"
    r = httpx.post(f"{server.url}/", params={"max_block_size": "65536"}, content=sql)
    assert r.status_code == 200  # the status line went out with the first MiB
    tag = r.headers["X-ClickHouse-Exception-Tag"]
    assert len(tag) == 16
    tail = r.content[-600:]
    assert b"__exception__\r\n" + tag.encode() in tail and tail.endswith(b"__exception__\r\n")
    assert b"Code: 395" in tail
    with pytest.raises(Exception, match="395"):
        admin = http(server, username="admin", password=ADMIN_PASSWORD)
        _ = admin.query(
            "SELECT number, throwIf(number = 1500000) FROM numbers(3000000)",
            settings={"max_block_size": 65536},
        ).result_rows


def test_authentication_methods(server):
    q = {"query": "SELECT currentUser() = currentUser(), 1"}
    ok = [
        dict(auth=("admin", ADMIN_PASSWORD)),
        dict(headers={"X-ClickHouse-User": "admin", "X-ClickHouse-Key": ADMIN_PASSWORD}),
        dict(params={**q, "user": "admin", "password": ADMIN_PASSWORD}),
        dict(auth=("reader", "reader-pw")),
        dict(),  # default, no password
    ]
    for kw in ok:
        r = httpx.get(f"{server.url}/", params=kw.pop("params", q), **kw)
        assert r.status_code == 200, r.text
    bad = [
        dict(auth=("admin", "wrong")),
        dict(auth=("nobody", "")),
        dict(headers={"X-ClickHouse-User": "reader"}),
        dict(auth=("admin", ADMIN_PASSWORD), params={**q, "user": "admin"}),  # two methods at once
    ]
    for kw in bad:
        r = httpx.get(f"{server.url}/", params=kw.pop("params", q), **kw)
        assert r.status_code == 403 and r.headers["X-ClickHouse-Exception-Code"] == "516", r.text


def test_http_compression_both_ways(server):
    r = httpx.post(f"{server.url}/", headers={"Content-Encoding": "gzip"}, content=gzip.compress(b"SELECT 7"))
    assert r.text == "7\n"
    for method in ("gzip", "deflate", "br", "zstd", "lz4", "xz", "bz2"):
        with httpx.stream(
            "POST",
            f"{server.url}/",
            params={"enable_http_compression": "1"},
            headers={"Accept-Encoding": method},
            content=b"SELECT number FROM numbers(100000)",
        ) as r:
            assert r.headers["Content-Encoding"] == method
            body = b"".join(r.iter_raw())
        assert codec.decode_body(body, method, 10**8).count(b"\n") == 100000
    r = httpx.post(
        f"{server.url}/",
        params={"enable_http_compression": "0"},
        headers={"Accept-Encoding": "gzip"},
        content="SELECT 1",
    )
    assert "Content-Encoding" not in r.headers and r.text == "1\n"


def test_clickhouse_native_compression_checked_by_an_independent_codec(server):
    """compress=1 / decompress=1 blocks, read and written by clickhouse-driver's implementation."""
    from clickhouse_cityhash.cityhash import CityHash128
    from clickhouse_driver.compression.lz4 import Compressor, Decompressor
    from clickhouse_driver.reader import read_binary_uint8, read_binary_uint128
    from clickhouse_driver.writer import write_binary_uint128

    r = httpx.post(f"{server.url}/", params={"compress": "1"}, content=b"SELECT number FROM numbers(300000)")
    f, out = io.BytesIO(r.content), b""
    while f.tell() < len(r.content):
        h, method = read_binary_uint128(f), read_binary_uint8(f)
        out += Decompressor(f).get_decompressed_data(method, h, 1)
    assert out.count(b"\n") == 300000 and out.startswith(b"0\n1\n")
    c = Compressor()
    c.write(b"SELECT 40 + 2")
    block = bytes([0x82]) + c.get_compressed_data(1)
    buf = io.BytesIO()
    write_binary_uint128(CityHash128(block), buf)
    r = httpx.post(f"{server.url}/", params={"decompress": "1"}, content=buf.getvalue() + block)
    assert r.text == "42\n"
    corrupt = buf.getvalue() + block[:-1] + bytes([block[-1] ^ 1])
    r = httpx.post(f"{server.url}/", params={"decompress": "1"}, content=corrupt)
    assert r.status_code == 500 and r.headers["X-ClickHouse-Exception-Code"] == "40"


# -- the dashboard user cannot write ----------------------------------------------------------------
WRITES = [
    "INSERT INTO kv (k) VALUES (5000)",
    "CREATE TABLE evil (a UInt8) ENGINE = Memory",
    "DROP TABLE kv",
    "TRUNCATE TABLE kv",
    "ALTER TABLE kv DELETE WHERE 1",
    "OPTIMIZE TABLE kv FINAL",
    "KILL QUERY WHERE 1",
    "SYSTEM DROP MARK CACHE",
    "CREATE USER evil",
    "SET readonly = 0",
    "SELECT 1 SETTINGS readonly = 0",
    "SELECT count() FROM kv SETTINGS max_threads = 1",
    "INSERT INTO FUNCTION file('{file}', 'CSV') SELECT 1",
    "SELECT 1 INTO OUTFILE '{file}'",
    "SELECT * FROM file('/etc/hostname', 'LineAsString')",
    "SELECT * FROM url('http://127.0.0.1:9/x', 'CSV', 'a String')",
    "SELECT * FROM executable('x.sh', 'CSV', 'a UInt8')",
    "SELECT 1; DROP TABLE kv",
    "INSERT INTO kv (k) SELECT number FROM numbers(10)",
]


@pytest.mark.parametrize("sql", WRITES)
@pytest.mark.parametrize("user", ["default", "reader"])
def test_read_only_users_cannot_write(server, store, tmp_path, sql, user):
    _, direct = store
    target = tmp_path / "written.csv"
    auth = ("reader", "reader-pw") if user == "reader" else None
    before = direct.command("SELECT count() FROM kv")
    for method in ("GET", "POST"):
        q = sql.replace("{file}", str(target))
        r = httpx.request(
            method,
            f"{server.url}/",
            params={"query": q} if method == "GET" else None,
            content=None if method == "GET" else q,
            auth=auth,
        )
        assert r.status_code != 200, (method, q, r.text)
        assert r.headers["X-ClickHouse-Exception-Code"] in {"164", "358", "62", "497", "452"}, r.text
    assert not target.exists()
    assert direct.command("SELECT count() FROM kv") == before
    assert "evil" not in direct.command("SHOW TABLES")


@pytest.mark.parametrize(
    "params",
    [
        {"readonly": "0"},
        {"readonly": "2"},
        {"max_execution_time": "0"},
        {"max_execution_time": "100000"},
        {"max_memory_usage": "0"},
        {"insert_quorum": "2"},
        {"max_concurrent_queries_for_user": "1000"},
    ],
)
def test_read_only_users_cannot_lift_their_limits(server, params):
    r = httpx.get(f"{server.url}/", params={"query": "SELECT 1", **params})
    assert r.status_code == 500 and r.headers["X-ClickHouse-Exception-Code"] in ("164", "452"), r.text


def test_read_only_users_may_pick_output_and_lower_limits(server):
    for params in (
        {"max_execution_time": "5"},
        {"enable_http_compression": "1"},
        {"output_format_json_quote_64bit_integers": "0"},
        {"readonly": "1"},
        {"send_progress_in_http_headers": "1"},
        {"max_threads": "0"},
    ):
        r = httpx.get(f"{server.url}/", params={"query": "SELECT 1", **params})
        assert r.status_code == 200, (params, r.text)


def test_writer_inserts_with_post_but_not_get(server, store):
    _, direct = store
    admin = http(server, username="admin", password=ADMIN_PASSWORD)
    admin.command("CREATE TABLE IF NOT EXISTS w (a UInt32, b String) ENGINE = MergeTree ORDER BY a")
    admin.insert("w", [[1, "x"], [2, "y"]], column_names=["a", "b"])
    r = httpx.post(
        f"{server.url}/?query=INSERT%20INTO%20w%20FORMAT%20CSV",
        content=b"3,z\n",
        auth=("admin", ADMIN_PASSWORD),
    )
    assert r.status_code == 200 and r.text == "" and "X-ClickHouse-Format" not in r.headers
    # Binary data after the query reaches the engine byte for byte (RowBinary: UInt32 LE, then a
    # length-prefixed String that is not UTF-8).
    raw = (5).to_bytes(4, "little") + bytes([3, 0xFF, 0x00, 0xE9])
    url = f"{server.url}/?query=INSERT%20INTO%20w%20FORMAT%20RowBinary"
    r = httpx.post(url, content=raw, auth=("admin", ADMIN_PASSWORD))
    assert r.status_code == 200, r.text
    assert direct.command("SELECT hex(b) FROM w WHERE a = 5") == "FF00E9"
    direct.command("DELETE FROM w WHERE a = 5")
    r = httpx.get(
        f"{server.url}/", params={"query": "INSERT INTO w VALUES (4, 'no')"}, auth=("admin", ADMIN_PASSWORD)
    )
    assert r.headers["X-ClickHouse-Exception-Code"] == "164"
    assert direct.query("SELECT a, b FROM w ORDER BY a").result_rows == [(1, "x"), (2, "y"), (3, "z")]
    with pytest.raises(DatabaseError):
        http(server).insert("w", [[9, "n"]], column_names=["a", "b"])


def test_request_body_and_concurrency_are_bounded(store):
    settings, _ = store
    cfg = settings.clickhouse_http.model_copy(
        update={"max_request_bytes": 1000, "max_concurrent_queries": 1, "queue_timeout_s": 0}
    )
    srv = ClickHouseHTTPServer(cfg, settings.storage_dsn, settings.storage.database, port=0)
    srv.start()
    try:
        r = httpx.post(f"{srv.url}/", content=b"SELECT '" + b"x" * 2000 + b"'")
        assert r.status_code == 413 and r.headers["X-ClickHouse-Exception-Code"] == "229"
        bomb = gzip.compress(b"SELECT 1 -- " + b" " * 100_000)
        r = httpx.post(f"{srv.url}/", headers={"Content-Encoding": "gzip"}, content=bomb)
        assert r.status_code == 413
        started, results = threading.Event(), []

        def slow() -> None:
            started.set()
            results.append(
                httpx.get(f"{srv.url}/", params={"query": SLOW, "query_id": "slow-one"}, timeout=30)
            )

        t = threading.Thread(target=slow)
        t.start()
        started.wait()
        while (
            srv.engine.query_text(
                "SELECT count() FROM system.processes WHERE query LIKE 'SELECT sleep(2.5) + x%'"
            ).strip()
            == "0"
        ):
            if not t.is_alive():
                break
            time.sleep(0.01)
        r = httpx.get(f"{srv.url}/", params={"query": "SELECT 1"})
        t.join()
        assert results[0].status_code == 200
        assert r.headers["X-ClickHouse-Exception-Code"] == "202", r.text
    finally:
        srv.stop()


def test_queries_do_not_block_writes_into_the_same_engine(server, store):
    """Slow dashboard queries run beside the store's writers: an insert lands while they run."""
    _, direct = store
    direct.command("CREATE TABLE IF NOT EXISTS ingest_probe (a UInt64) ENGINE = MergeTree ORDER BY a")
    done: list[float] = []

    def slow() -> None:
        httpx.get(f"{server.url}/", params={"query": SLOW}, timeout=60)
        done.append(1)

    threads = [threading.Thread(target=slow) for _ in range(3)]
    for t in threads:
        t.start()
    while (
        direct.command("SELECT count() FROM system.processes WHERE query LIKE 'SELECT sleep(2.5) + x%'") < 3
    ):
        time.sleep(0.01)
    direct.insert("ingest_probe", [[1], [2]], column_names=["a"])
    inserted_while_running = not done
    for t in threads:
        t.join()
    assert inserted_while_running
    assert direct.command("SELECT count() FROM ingest_probe") == 2


def test_passwordless_users_are_refused_on_a_network_address(store):
    settings, _ = store
    cfg = settings.clickhouse_http.model_copy(update={"host": "0.0.0.0"})
    with pytest.raises(ConfigError, match="no password"):
        ClickHouseHTTPServer(cfg, settings.storage_dsn, settings.storage.database, port=0)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl(server):
    def curl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["curl", "-sS", *args], capture_output=True, text=True, timeout=60)

    assert curl(f"{server.url}/ping").stdout == "Ok.\n"
    assert curl(f"{server.url}/?query=SELECT%201").stdout == "1\n"
    assert curl(f"{server.url}/", "--data-binary", "SELECT 2").stdout == "2\n"
    assert curl(f"{server.url}/?query=SELECT", "--data-binary", "3").stdout == "3\n"
    out = curl(
        "--compressed", f"{server.url}/?enable_http_compression=1", "-d", "SELECT number FROM numbers(3)"
    )
    assert out.stdout == "0\n1\n2\n"
    out = curl(
        "-u", f"admin:{ADMIN_PASSWORD}", f"{server.url}/?query=SELECT%20currentDatabase()&database=system"
    )
    assert out.stdout == "system\n"
    out = curl("-i", f"{server.url}/?query=SELECT%20*%20FROM%20nope")
    assert (
        "404" in out.stdout.splitlines()[0]
        and "X-ClickHouse-Exception-Code: 60".lower() in out.stdout.lower()
    )


JS_DIR = Path(__file__).parent / "js"


@pytest.fixture(scope="module")
def js_client():
    """The official JS client from npm, installed at the version tests/js/package.json pins."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm not installed")
    if not (JS_DIR / "node_modules" / "@clickhouse" / "client").is_dir():
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--no-package-lock"],
            cwd=JS_DIR,
            check=True,
            capture_output=True,
            timeout=300,
        )
    return JS_DIR / "check.mjs"


def test_official_js_client(server, store, js_client):
    settings, direct = store
    run = subprocess.run(
        ["node", str(js_client), server.url, settings.storage.database, "admin", ADMIN_PASSWORD],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["ping"] is True
    assert out["json"]["data"] == [{"k": "0", "s": "0"}, {"k": "1", "s": "1"}, {"k": "2", "s": "2"}]
    assert out["json"]["meta"] == [{"name": "k", "type": "UInt64"}, {"name": "s", "type": "String"}]
    assert out["jsonEachRow"] == [{"k": "0", "s": "0"}, {"k": "1", "s": "1"}, {"k": "2", "s": "2"}]
    assert out["params"] == [{"n": "10"}]
    assert out["stream"] == 300002 and out["streamEachRow"] == 300000  # + the names and types rows
    assert out["csv"] == "1,2\n"
    assert out["gzip"] == [{"s": "4999950000"}]
    assert out["settings"] == [{"x": 1}]
    for refused in ("readerInsert", "readerCommand"):
        assert out[refused]["code"] == "164", out[refused]
    assert out["readerLiftLimit"]["code"] == "452", out["readerLiftLimit"]
    assert out["adminCommand"] == "ok" and out["adminInsert"] == [{"s": "6"}]
    assert out["adminGzipInsert"] == "ok"
    assert out["syntaxError"]["code"] == "62" and "SYNTAX_ERROR" in out["syntaxError"]["type"]
    assert out["badPassword"]["code"] == "516"
    assert direct.command("SELECT sum(a) FROM js_w") == 16
    assert "js_evil" not in direct.command("SHOW TABLES")


NATIVE_TYPES_SQL = """
SELECT k, s, ts, m,
  toLowCardinality(s) AS lc, if(k % 2 = 0, NULL, s) AS ns, toLowCardinality(if(k % 3 = 0, NULL, s)) AS lcn,
  [k, k + 1] AS arr, [[s], []] AS arr2, (k, s) AS tup, CAST((k, s) AS Tuple(a UInt64, b String)) AS named,
  toDecimal64(k, 3) AS dec, CAST(k % 2 AS Enum8('a' = 0, 'b' = 1)) AS e, toFixedString(s, 8) AS fs,
  generateUUIDv4() AS u, toDate('2026-01-01') AS d, toIPv4('10.0.0.1') AS ip, CAST(k AS Nullable(Float64)) AS nf,
  map('x', [1, 2]) AS mapa, ['a', 'b']::Array(LowCardinality(String)) AS lca
FROM kv ORDER BY k LIMIT 300
"""


@pytest.mark.parametrize("revision", [54405, 54468])
def test_native_at_the_client_protocol_version_a_client_asks_for(server, revision):
    """Native with client_protocol_version, read by clickhouse-driver's own block reader."""
    from types import SimpleNamespace

    from clickhouse_driver.bufferedreader import CompressedBufferedReader
    from clickhouse_driver.context import Context
    from clickhouse_driver.streams.native import BlockInputStream

    r = httpx.post(
        f"{server.url}/",
        params={
            "client_protocol_version": str(revision),
            "default_format": "Native",
            "max_block_size": "128",
        },
        content=NATIVE_TYPES_SQL,
    )
    assert r.status_code == 200, r.text
    plain = httpx.post(
        f"{server.url}/",
        params={"default_format": "Native", "max_block_size": "128"},
        content=NATIVE_TYPES_SQL,
    )
    assert r.content.startswith(bytes([1, 0, 2, 0xFF, 0xFF, 0xFF, 0xFF, 0]))
    assert len(r.content) > len(plain.content)

    chunks = [r.content]

    def feed() -> bytes:
        if not chunks:
            raise EOFError
        return chunks.pop()

    fin = CompressedBufferedReader(feed, 1 << 20)  # clickhouse-driver's own buffered reader
    ctx = Context()
    ctx.server_info = SimpleNamespace(used_revision=revision, timezone="UTC", get_timezone=lambda: "UTC")
    ctx.settings = {"strings_as_bytes": False}
    ctx.client_settings = {
        "strings_as_bytes": False,
        "strings_encoding": "utf-8",
        "use_numpy": False,
        "input_format_null_as_default": False,
        "namedtuple_as_json": False,
    }
    rows = 0
    while rows < 300:
        block = BlockInputStream(fin, ctx).read()
        rows += block.num_rows
        first = block.get_rows()[0]
        assert first[3] == {"service.name": f"svc{first[0] % 3}"}
    assert rows == 300
    # clickhouse-connect probes for this and then reads every result with block info.
    c = http(server)
    assert c.protocol_version == 54405
    assert c.query(NATIVE_TYPES_SQL).row_count == 300


def test_the_grafana_plugins_request_shape(server):
    """clickhouse-go over HTTP, as the Grafana plugin sends it: the query as the POST body,
    default_format=Native with its protocol revision, the plugin's timeout as a setting, and
    ClickHouse-native LZ4 blocks when compression is on; decoded with clickhouse-driver's readers."""
    from types import SimpleNamespace

    from clickhouse_driver.bufferedreader import CompressedBufferedReader
    from clickhouse_driver.compression.lz4 import Decompressor
    from clickhouse_driver.context import Context
    from clickhouse_driver.reader import read_binary_uint8, read_binary_uint128
    from clickhouse_driver.streams.native import BlockInputStream

    sql = "SELECT toStartOfMinute(ts) AS time, count() AS n, any(m) AS attrs FROM kv GROUP BY time ORDER BY time LIMIT 5"
    params = {
        "default_format": "Native",
        "client_protocol_version": "54460",
        "max_execution_time": "60",
        "compress": "1",
    }
    r = httpx.post(f"{server.url}/", params=params, content=sql)
    assert r.status_code == 200, r.text
    f, native = io.BytesIO(r.content), b""
    while f.tell() < len(r.content):
        h, method = read_binary_uint128(f), read_binary_uint8(f)
        native += Decompressor(f).get_decompressed_data(method, h, 1)
    ctx = Context()
    ctx.server_info = SimpleNamespace(used_revision=54460, timezone="UTC", get_timezone=lambda: "UTC")
    ctx.settings = {}
    ctx.client_settings = {"strings_as_bytes": False, "strings_encoding": "utf-8", "use_numpy": False,
                           "input_format_null_as_default": False, "namedtuple_as_json": False}  # fmt: skip
    block = BlockInputStream(CompressedBufferedReader(lambda: native, 1 << 20), ctx).read()
    rows = block.get_rows()
    assert [n for _, n, _ in rows] == [60, 60, 60, 60, 60] and rows[0][2] == {"service.name": "svc0"}
