"""https hooks: a private CA through ``tls_config.ca_file``; without it the call is refused by TLS."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_remediation_support import Receiver, alert, config, running, settled


def _ca_and_server_cert(tmp: Path) -> tuple[Path, ssl.SSLContext]:
    """A throw-away CA and a 127.0.0.1 server certificate it signed."""
    now = dt.datetime.now(dt.UTC)
    ca_key, srv_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "forewarn test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    srv = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(srv_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (tmp / "ca.pem").write_bytes(ca.public_bytes(pem))
    (tmp / "srv.pem").write_bytes(srv.public_bytes(pem))
    (tmp / "srv.key").write_bytes(
        srv_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp / "srv.pem", tmp / "srv.key")
    return tmp / "ca.pem", ctx


def test_https_hook_with_a_private_ca(store, settings, tmp_path) -> None:
    ca, server_ctx = _ca_and_server_cert(tmp_path)
    receiver = Receiver(tls=server_ctx)
    try:
        trusted = config(receiver.url, tmp_path, tls_config={"ca_file": str(ca)})
        untrusted = config(receiver.url, tmp_path)

        async def main() -> None:
            async with running(untrusted, settings) as eng:
                await eng.submit("g1", "team", [alert(1)])
                await settled(eng)
                [failed] = await eng.list_actions(state="failed")
                assert "CERTIFICATE_VERIFY_FAILED" in failed.last_error
            async with running(trusted, settings) as eng:
                await eng.submit("g2", "team", [alert(2)])
                await settled(eng)
                assert [a.group_key for a in await eng.list_actions(state="succeeded")] == ["g2"]

        asyncio.run(main())
    finally:
        receiver.close()
    assert receiver.count(200) == 1
