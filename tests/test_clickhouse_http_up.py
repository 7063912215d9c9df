"""``forewarn up`` and ``forewarn collector`` serve the ClickHouse HTTP interface for the store they
hold: telemetry sent over OTLP is read back by ClickHouse clients while the process runs, and
the interface speaks TLS (and mutual TLS) when configured."""

from __future__ import annotations

import hashlib
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import clickhouse_connect
import httpx
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from forewarn.clickhouse_http import ClickHouseHTTPServer
from forewarn.config import load_settings
from forewarn.net import free_port
from tests.test_up import wait_until

FOREWARN = [sys.executable, "-m", "forewarn.cli"]


def _otlp_logs(service: str, body: str) -> dict:
    return {
        "resourceLogs": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                "scopeLogs": [
                    {"logRecords": [{"timeUnixNano": str(time.time_ns()), "body": {"stringValue": body}}]}
                ],
            }
        ]
    }


def _otlp_trace(service: str) -> dict:
    now = time.time_ns()
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "name": "GET /cart",
                                "kind": 2,
                                "startTimeUnixNano": str(now - 5_000_000),
                                "endTimeUnixNano": str(now),
                            }
                        ]
                    }
                ],
            }
        ]
    }


@pytest.mark.parametrize("command", ["up", "collector"])
def test_running_forewarn_serves_its_store_to_clickhouse_clients(tmp_path: Path, command: str) -> None:
    http_port, ch_port = free_port(), free_port()
    data = tmp_path / "data"
    args = [
        *FOREWARN,
        command,
        "--grpc-port",
        "0",
        "--http-port",
        str(http_port),
        "--clickhouse-http-port",
        str(ch_port),
    ]
    if command == "up":
        args += ["--data-dir", str(data), "--no-flows", "--alerts-listen", f"127.0.0.1:{free_port()}"]
    else:
        args += ["--storage", f"chdb://{data / 'chdb'}"]
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "FOREWARN_CONFIG": ""},
    )
    try:
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{http_port}/readyz").status_code == 200)
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{ch_port}/ping").text == "Ok.\n")
        assert (
            httpx.post(
                f"http://127.0.0.1:{http_port}/v1/logs", json=_otlp_logs("checkout", "hello")
            ).status_code
            == 200
        )
        assert (
            httpx.post(f"http://127.0.0.1:{http_port}/v1/traces", json=_otlp_trace("checkout")).status_code
            == 200
        )

        ch = clickhouse_connect.get_client(host="127.0.0.1", port=ch_port)  # default user, no database given
        assert ch.query("SELECT ServiceName, Body FROM otel_logs").result_rows == [("checkout", "hello")]
        assert ch.query("SELECT SpanName, Duration FROM otel.otel_traces").result_rows == [
            ("GET /cart", 5_000_000)
        ]
        assert ch.command("SELECT count() FROM otel_traces_trace_id_ts") == 1
        r = httpx.get(
            f"http://127.0.0.1:{ch_port}/", params={"query": "SELECT Body FROM otel_logs FORMAT JSONEachRow"}
        )
        assert r.json() == {"Body": "hello"}
        for sql in (
            "INSERT INTO otel_logs (Body) VALUES ('forged')",
            "DROP TABLE otel_logs",
            "TRUNCATE TABLE otel_traces",
        ):
            with pytest.raises(DatabaseError, match="READONLY"):
                ch.command(sql)
        assert ch.command("SELECT count() FROM otel_logs") == 1
        # Ingest goes on while the interface serves queries.
        assert (
            httpx.post(f"http://127.0.0.1:{http_port}/v1/logs", json=_otlp_logs("cart", "again")).status_code
            == 200
        )
        assert ch.command("SELECT count() FROM otel_logs") == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=90)[0]
    assert proc.returncode == 0, output
    assert f"127.0.0.1:{ch_port}" in output


def test_a_port_that_cannot_be_bound_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        run = subprocess.run(
            [*FOREWARN, "collector", "--storage", f"chdb://{tmp_path / 'chdb'}", "--grpc-port", "0", "--http-port", "0",
             "--clickhouse-http-port", str(port)],
            capture_output=True, text=True, timeout=120, env={**os.environ, "FOREWARN_CONFIG": ""},
        )  # fmt: skip
    assert run.returncode == 1
    assert f"cannot serve the ClickHouse HTTP interface on 127.0.0.1:{port}" in run.stderr
    assert "--clickhouse-http-port" in run.stderr


def test_tls_and_mutual_tls(chdb_dsn: str, tmp_path: Path) -> None:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(tmp_path / "key.pem")
    cert.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    client_ca = trustme.CA()
    client_cert = client_ca.issue_cert("grafana")
    client_ca.cert_pem.write_to_path(tmp_path / "client-ca.pem")
    client_cert.private_key_and_cert_chain_pem.write_to_path(tmp_path / "client.pem")
    pw = hashlib.sha256(b"pw").hexdigest()
    tls = {
        "cert_file": str(tmp_path / "cert.pem"),
        "key_file": str(tmp_path / "key.pem"),
        "min_version": "1.3",
    }
    s = load_settings(
        overrides={
            "storage": {"dsn": chdb_dsn},
            "clickhouse_http": {"tls": tls, "users": {"admin": {"password_sha256_hex": pw}}},
        }
    )
    srv = ClickHouseHTTPServer(s.clickhouse_http, s.storage_dsn, "system", port=0)
    srv.start()
    try:
        assert srv.url.startswith("https://")
        assert (
            httpx.get(
                f"{srv.url}/ping", verify=ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
            ).text
            == "Ok.\n"
        )
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{srv.url}/ping")  # not signed by a CA the client trusts
        old = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{srv.url}/ping", verify=old)  # below min_version
        ch = clickhouse_connect.get_client(
            host="127.0.0.1",
            port=srv.port,
            secure=True,
            ca_cert=str(tmp_path / "ca.pem"),
            username="admin",
            password="pw",
        )
        assert ch.command("SELECT 1") == 1
    finally:
        srv.stop()
    mtls = {**tls, "client_ca_file": str(tmp_path / "client-ca.pem")}
    s = load_settings(overrides={"storage": {"dsn": chdb_dsn}, "clickhouse_http": {"tls": mtls}})
    srv = ClickHouseHTTPServer(s.clickhouse_http, s.storage_dsn, "system", port=0)
    srv.start()
    try:
        ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            httpx.get(f"{srv.url}/ping", verify=ctx)  # no client certificate
        ctx.load_cert_chain(str(tmp_path / "client.pem"))
        assert httpx.get(f"{srv.url}/", params={"query": "SELECT 1"}, verify=ctx).text == "1\n"
        # A renewed certificate is picked up without a restart.
        renewed = ca.issue_cert("127.0.0.1")
        renewed.private_key_pem.write_to_path(tmp_path / "key.pem")
        renewed.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
        os.utime(tmp_path / "cert.pem", (time.time() + 5, time.time() + 5))
        assert srv._reloader.check()
        with httpx.Client(verify=ctx) as c:
            served = c.get(f"{srv.url}/ping")
            assert served.text == "Ok.\n"
    finally:
        srv.stop()


def test_passwordless_default_user_on_a_network_address_stops_the_collector(tmp_path: Path) -> None:
    run = subprocess.run(
        [*FOREWARN, "collector", "--storage", f"chdb://{tmp_path / 'chdb'}", "--grpc-port", "0", "--http-port", "0",
         "--clickhouse-http-port", str(free_port())],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "FOREWARN_CONFIG": "", "FOREWARN_CLICKHOUSE_HTTP__HOST": "0.0.0.0"},
    )  # fmt: skip
    assert run.returncode == 2, run.stderr  # a configuration error, like any other
    assert "reachable from the network" in run.stderr and "default" in run.stderr
    assert "Traceback" not in run.stderr
