"""https hooks: a private CA through ``tls_config.ca_file``; without it the call is refused by TLS."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from pki import TestCA
from test_remediation_support import Receiver, alert, config, running, settled


def _ca_and_server_cert(tmp: Path) -> tuple[Path, ssl.SSLContext]:
    """A throw-away CA and a 127.0.0.1 server certificate it signed."""
    ca = TestCA(tmp)
    cert, key = ca.issue("srv")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ca.pem, ctx


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
