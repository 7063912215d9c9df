"""TLS, mutual TLS and per-tenant bearer tokens on both OTLP receivers, with the real OpenTelemetry
SDK exporters as clients and certificates made here with ``cryptography``: a renewed certificate
is served without a restart, a client without a certificate is turned away under mutual TLS, and
rows are stamped with the tenant of the token (``forewarn.tenant``), which never shows in logs."""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import ssl
import time
from pathlib import Path

import grpc
import httpx
import pytest
from collector_support import RunningCollector
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from forewarn.config import ConfigError, TLSSettings, load_settings
from forewarn.storage import connect

NOW = dt.datetime.now(dt.UTC)


class CA:
    """A throwaway certificate authority issuing server and client certificates into ``d``."""

    def __init__(self, d: Path, name: str = "forewarn test CA"):
        self.d = d
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(minutes=5))
            .not_valid_after(NOW + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = d / f"{name.replace(' ', '_')}.pem"
        self.pem.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, stem: str, *, server: bool) -> tuple[Path, Path, int]:
        """(cert_file, key_file, serial) for ``localhost`` / 127.0.0.1 (server) or a client."""
        key = ec.generate_private_key(ec.SECP256R1())
        serial = x509.random_serial_number()
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, stem)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(NOW - dt.timedelta(minutes=5))
            .not_valid_after(NOW + dt.timedelta(days=1))
        )
        if server:
            import ipaddress

            b = b.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        cert = b.sign(self.key, hashes.SHA256())
        cert_file, key_file = self.d / f"{stem}.crt", self.d / f"{stem}.key"
        # a renewal replaces the files: written aside and renamed, as certificate tools do
        for path, data in (
            (
                key_file,
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            ),
            (cert_file, cert.public_bytes(serialization.Encoding.PEM)),
        ):
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return cert_file, key_file, serial


def spans(tag: str, n: int = 2) -> list:
    mem = InMemorySpanExporter()
    tp = TracerProvider(resource=Resource.create({"service.name": "tls-test", "forewarn.tenant": "spoofed"}))
    tp.add_span_processor(SimpleSpanProcessor(mem))
    for i in range(n):
        with tp.get_tracer("t").start_as_current_span(f"{tag}-{i}"):
            pass
    return list(mem.get_finished_spans())


def served_serial(port: int, ca: CA, client: tuple[Path, Path] | None = None) -> int:
    """The serial number of the certificate a new TLS connection to ``port`` is given."""
    ctx = ssl.create_default_context(cafile=str(ca.pem))
    if client:
        ctx.load_cert_chain(*client)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number


def until(cond, what: str, timeout_s: float = 60) -> None:
    """Poll a condition; the bound is liveness (a failure names what never happened), not timing."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def client_tls(ca: CA, cert: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca.pem))
    ctx.load_cert_chain(*cert)
    return ctx


def grpc_exporter(port: int, ca: CA, client: tuple[Path, Path] | None = None, **kw) -> GrpcSpans:
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca.pem.read_bytes(),
        private_key=client[1].read_bytes() if client else None,
        certificate_chain=client[0].read_bytes() if client else None,
    )
    return GrpcSpans(endpoint=f"localhost:{port}", credentials=creds, timeout=15, **kw)


def http_exporter(port: int, ca: CA, client: tuple[Path, Path] | None = None, **kw) -> HttpSpans:
    return HttpSpans(
        endpoint=f"https://localhost:{port}/v1/traces",
        certificate_file=str(ca.pem),
        client_certificate_file=str(client[0]) if client else None,
        client_key_file=str(client[1]) if client else None,
        timeout=15,
        **kw,
    )


def stored(settings, where: str = "1") -> list[tuple]:
    client = connect(settings.storage_dsn, settings.storage.database)
    try:
        return client.query(
            f"SELECT SpanName, ResourceAttributes['forewarn.tenant'] FROM otel_traces WHERE {where} ORDER BY SpanName"
        ).result_rows
    finally:
        client.close()


@pytest.fixture
def pki(tmp_path, monkeypatch):
    # requests lets these variables override a session's CA file, which is how the SDK's HTTP
    # exporter passes certificate_file; this sandbox sets them, a deployment pointing the exporter
    # at a private CA would not
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    ca = CA(tmp_path)
    cert, key, serial = ca.issue("server", server=True)
    client_cert, client_key, _ = ca.issue("client", server=False)
    return ca, (cert, key, serial), (client_cert, client_key)


def with_tls(settings, server, *, client_ca: Path | None = None, **extra):
    s = settings.model_copy(deep=True)
    s.collector.tls = TLSSettings(
        cert_file=server[0], key_file=server[1], client_ca_file=client_ca, reload_interval_s=0.01, **extra
    )
    return s


def test_tls_on_both_receivers_and_a_renewed_certificate_without_restart(settings, pki):
    ca, server, _client = pki
    s = with_tls(settings, server)
    with RunningCollector(s) as svc:
        for exporter in (grpc_exporter(svc.grpc_port, ca), http_exporter(svc.http_port, ca)):
            assert exporter.export(spans(type(exporter).__module__.split(".")[4])) == SpanExportResult.SUCCESS
            exporter.shutdown()
        with pytest.raises(httpx.TransportError):  # plain HTTP is not served on a TLS port
            httpx.post(
                f"http://127.0.0.1:{svc.http_port}/v1/traces", content=b"", timeout=10
            ).raise_for_status()
        assert served_serial(svc.http_port, ca) == server[2]

        _, _, renewed = ca.issue("server", server=True)  # the same files, a new certificate
        until(lambda: served_serial(svc.http_port, ca) == renewed, "the renewed certificate is served")
        exporters = (grpc_exporter(svc.grpc_port, ca), http_exporter(svc.http_port, ca))
        for exporter in exporters:
            assert exporter.export(spans("after-renewal-" + type(exporter).__module__.split(".")[4])) == (
                SpanExportResult.SUCCESS
            )
            exporter.shutdown()
    names = [r[0] for r in stored(s)]
    assert len(names) == 8 and sum(n.startswith("after-renewal") for n in names) == 4


def test_a_half_written_renewal_keeps_the_old_certificate(settings, pki, caplog):
    ca, server, _client = pki
    s = with_tls(settings, server)
    with RunningCollector(s) as svc:
        other = CA(ca.d, "another CA")
        other_cert, _other_key, _ = other.issue("stray", server=True)
        os.replace(other_cert, server[0])  # a new certificate whose key is not written yet
        with caplog.at_level(logging.WARNING):
            until(
                lambda: (
                    served_serial(svc.http_port, ca) == server[2] and "cannot be loaded yet" in caplog.text
                ),
                "the half-written renewal was seen and the old certificate kept",
            )


def test_mutual_tls_turns_away_clients_without_a_certificate(settings, pki):
    ca, server, client = pki
    s = with_tls(settings, server, client_ca=ca.pem)
    with RunningCollector(s) as svc:
        for exporter in (grpc_exporter(svc.grpc_port, ca, client), http_exporter(svc.http_port, ca, client)):
            assert exporter.export(spans("mtls")) == SpanExportResult.SUCCESS
            exporter.shutdown()
        anonymous = grpc.secure_channel(
            f"localhost:{svc.grpc_port}", grpc.ssl_channel_credentials(root_certificates=ca.pem.read_bytes())
        )
        call = anonymous.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        with pytest.raises(grpc.RpcError) as err:
            call(b"", timeout=15)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        anonymous.close()
        # TLS 1.3: the client's handshake ends before the server checks its certificate, so the
        # refusal arrives as an alert on the first read: the request fails either way
        with pytest.raises(httpx.TransportError):
            httpx.get(f"https://localhost:{svc.http_port}/healthz", verify=str(ca.pem), timeout=10)
        stranger = CA(ca.d, "stranger CA")
        foreign = stranger.issue("foreign-client", server=False)[:2]
        with pytest.raises(httpx.TransportError):
            httpx.get(
                f"https://localhost:{svc.http_port}/healthz", verify=client_tls(ca, foreign), timeout=10
            )
        ok = httpx.get(
            f"https://localhost:{svc.http_port}/healthz", verify=client_tls(ca, client), timeout=10
        )
        assert ok.status_code == 200
    assert len(stored(s)) == 4


def test_min_version_1_3_refuses_a_tls_1_2_client(settings, pki):
    ca, server, _client = pki
    s = with_tls(settings, server, min_version="1.3")
    with RunningCollector(s) as svc:
        old = ssl.create_default_context(cafile=str(ca.pem))
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with (
            pytest.raises(ssl.SSLError),
            socket.create_connection(("127.0.0.1", svc.http_port), timeout=10) as raw,
            old.wrap_socket(raw, server_hostname="localhost"),
        ):
            pass
        assert served_serial(svc.http_port, ca) == server[2]  # TLS 1.3 clients are served


def test_bad_tls_files_stop_the_start_with_a_clear_error(settings, tmp_path):
    (tmp_path / "c.pem").write_text("not a certificate")
    s = settings.model_copy(deep=True)
    s.collector.tls = TLSSettings(cert_file=tmp_path / "c.pem", key_file=tmp_path / "missing.key")
    with pytest.raises(ConfigError, match=r"cert_file .*c\.pem"):
        RunningCollector(s)


def test_tenant_tokens_stamp_rows_and_never_reach_the_logs(settings, caplog):
    s = settings.model_copy(deep=True)
    secret_a, secret_b, plain = "tok-A-9f2c1e", "tok-B-77d0aa", "tok-plain-31bb"
    s = load_settings(
        overrides={
            "data_dir": str(settings.data_dir),
            "storage": {"dsn": settings.storage.dsn, "database": settings.storage.database},
            "collector": {"tenants": {"team-a": [secret_a], "team-b": [secret_b]}, "auth_tokens": [plain]},
        }
    )
    with caplog.at_level(logging.DEBUG), RunningCollector(s) as svc:
        http_port, grpc_port = svc.http_port, svc.grpc_port

        def http(token: str | None) -> HttpSpans:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return HttpSpans(endpoint=f"http://127.0.0.1:{http_port}/v1/traces", headers=headers, timeout=15)

        def grpc_(token: str) -> GrpcSpans:
            return GrpcSpans(
                endpoint=f"127.0.0.1:{grpc_port}",
                insecure=True,
                headers={"authorization": f"Bearer {token}"},
                timeout=15,
            )

        assert http(secret_a).export(spans("a-http")) == SpanExportResult.SUCCESS
        assert grpc_(secret_b).export(spans("b-grpc")) == SpanExportResult.SUCCESS
        assert http(plain).export(spans("plain")) == SpanExportResult.SUCCESS  # a token without a tenant
        assert http(None).export(spans("anonymous")) == SpanExportResult.FAILURE  # 401
        assert http("tok-A-9f2c1f").export(spans("guess")) == SpanExportResult.FAILURE
        assert grpc_("nope").export(spans("guess-grpc")) == SpanExportResult.FAILURE  # UNAUTHENTICATED
        r = httpx.post(
            f"http://127.0.0.1:{http_port}/v1/traces",
            content=b"",
            headers={"Content-Type": "application/json", "Authorization": "Bearer tok-A-9f2c1f"},
        )
        assert r.status_code == 401 and r.json()["code"] == 16
    rows = stored(s)
    assert rows == [
        ("a-http-0", "team-a"),
        ("a-http-1", "team-a"),
        ("b-grpc-0", "team-b"),
        ("b-grpc-1", "team-b"),
        ("plain-0", ""),  # the client's own "spoofed" value is removed, not trusted
        ("plain-1", ""),
    ]
    for secret in (secret_a, secret_b, plain, "tok-A-9f2c1f"):
        assert secret not in caplog.text
    from forewarn.config import masked_dump

    assert secret_a not in str(masked_dump(s))


def test_without_tenants_resource_attributes_are_left_as_sent(settings):
    with RunningCollector(settings) as svc:
        exporter = HttpSpans(endpoint=f"http://127.0.0.1:{svc.http_port}/v1/traces", timeout=15)
        assert exporter.export(spans("free")) == SpanExportResult.SUCCESS
    assert {r[1] for r in stored(settings)} == {"spoofed"}
