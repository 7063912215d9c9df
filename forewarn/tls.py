"""Server-side TLS from a ``tls`` block shaped like the OpenTelemetry Collector's.

``cert_file``/``key_file`` turn TLS on, ``client_ca_file`` requires client certificates signed by
that CA (mutual TLS), ``min_version`` is ``1.2`` or ``1.3``. The certificate, key and CA are
re-read when their files change (checked every ``reload_interval_s``), so renewing a certificate
needs no restart; connections already open keep the one they started with.
"""

from __future__ import annotations

import logging
import ssl
import threading
from pathlib import Path

from forewarn.config import ConfigError, TLSSettings

log = logging.getLogger(__name__)


def server_context(tls: TLSSettings) -> ssl.SSLContext:
    """An SSLContext for a server, or ConfigError naming the file that is wrong."""
    if tls.cert_file is None or tls.key_file is None:
        raise ConfigError("tls: cert_file and key_file are both required")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3 if tls.min_version == "1.3" else ssl.TLSVersion.TLSv1_2
    _load(ctx, tls)
    if tls.client_ca_file is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _load(ctx: ssl.SSLContext, tls: TLSSettings) -> None:
    try:
        ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(
            f"tls: cannot load cert_file {tls.cert_file} / key_file {tls.key_file}: {e}"
        ) from None
    if tls.client_ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=str(tls.client_ca_file))
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"tls: cannot load client_ca_file {tls.client_ca_file}: {e}") from None


class CertReloader:
    """Re-reads the files of ``tls`` into ``ctx`` when their modification times change."""

    def __init__(self, ctx: ssl.SSLContext, tls: TLSSettings):
        self.ctx, self.tls = ctx, tls
        self._stop = threading.Event()
        self._seen = self._stamp()
        self._thread: threading.Thread | None = None
        if tls.reload_interval_s > 0:
            self._thread = threading.Thread(target=self._run, name="tls-reload", daemon=True)
            self._thread.start()

    def _files(self) -> list[Path]:
        return [p for p in (self.tls.cert_file, self.tls.key_file, self.tls.client_ca_file) if p is not None]

    def _stamp(self) -> tuple[float, ...]:
        out = []
        for p in self._files():
            try:
                out.append(p.stat().st_mtime)
            except OSError:
                out.append(-1.0)
        return tuple(out)

    def check(self) -> bool:
        """Reload if any file changed; True when it did. A broken new file keeps the old certificate."""
        stamp = self._stamp()
        if stamp == self._seen:
            return False
        self._seen = stamp
        try:
            # a renewal written in two steps (new certificate, old key) must not reach the live
            # context: OpenSSL replaces the certificate before it finds the key does not match,
            # and every handshake would fail from then on. Load into a scratch context first.
            server_context(self.tls)
            _load(self.ctx, self.tls)
        except ConfigError as e:
            log.error("TLS files changed but cannot be loaded, keeping the previous ones: %s", e)
            return False
        log.info("TLS certificate reloaded from %s", self.tls.cert_file)
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.tls.reload_interval_s):
            self.check()

    def close(self) -> None:
        self._stop.set()
