"""Certificate renewal without a restart, and a half-written renewal that must not break TLS."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import threading

from forewarn.config import TLSSettings
from forewarn.tls import CertReloader, server_context
from tests.pki import TestCA


def _handshake(ctx: ssl.SSLContext, ca: TestCA) -> str:
    """Serve one TLS handshake on 127.0.0.1 with ``ctx``; the client's view of the server's CN."""
    client = ssl.create_default_context(cafile=str(ca.dir / "ca.pem"))
    with socket.create_server(("127.0.0.1", 0)) as srv:
        port = srv.getsockname()[1]
        errors: list[BaseException] = []

        def serve() -> None:
            conn, _ = srv.accept()
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError) as e:  # the client's failure is what the test reads
                errors.append(e)

        t = threading.Thread(target=serve)
        t.start()
        try:
            with (
                socket.create_connection(("127.0.0.1", port)) as raw,
                client.wrap_socket(raw, server_hostname="localhost") as tls,
            ):
                cert = tls.getpeercert()
                tls.sendall(b"x")
        finally:
            t.join(timeout=30)
    return dict(x[0] for x in cert["subject"])["commonName"]


def test_a_renewed_certificate_is_served_and_a_half_written_one_is_not(tmp_path) -> None:
    ca = TestCA(tmp_path / "pki")
    old_cert, old_key = ca.issue("old")
    new_cert, new_key = ca.issue("new")
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    shutil.copy(old_cert, cert)
    shutil.copy(old_key, key)
    tls = TLSSettings(cert_file=cert, key_file=key, reload_interval_s=0)
    ctx = server_context(tls)
    reloader = CertReloader(ctx, tls)
    assert _handshake(ctx, ca) == "old"
    # step one of a renewal: the new certificate, the old key still in place
    shutil.copy(new_cert, cert)
    os.utime(cert, (1, 1))
    assert reloader.check() is False
    assert _handshake(ctx, ca) == "old"  # still serving the previous pair
    # step two: the new key arrives
    shutil.copy(new_key, key)
    os.utime(key, (2, 2))
    assert reloader.check() is True
    assert _handshake(ctx, ca) == "new"
