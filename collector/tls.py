"""TLS and mutual TLS for both OTLP receivers, re-reading the certificate files when they change.

``collector.tls`` is the OpenTelemetry Collector's ``tls`` block (``cert_file``, ``key_file``,
``client_ca_file``, ``min_version``, ``reload_interval_s``; :mod:`forewarn.tls` loads it, as for
the ClickHouse HTTP interface). Reloading is lazy: a new connection's handshake checks the files'
identity (inode, size, mtime) at most once per ``reload_interval_s`` (0: never); when one changed,
a *fresh* context is built from them and every later handshake uses it; connections already open
keep theirs. Building aside, not loading into the live context, matters: a renewal caught half
written (a new certificate with the old key) fails to load and leaves the serving pair untouched,
where an in-place load would leave a context with the new certificate and no usable key. The next
check tries again, so a renewal never takes the receivers down.

- OTLP/HTTP: the server gets one context whose SNI callback (run on every handshake, with or
  without a server name) switches the connection to the current one.
- OTLP/gRPC: gRPC's dynamic server credentials ask a fetcher for a new certificate configuration
  on new connections. gRPC negotiates TLS 1.2 or 1.3 itself: ``min_version: "1.3"`` is enforced on
  OTLP/HTTP only (gRPC's Python API has no minimum version).
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from pathlib import Path
from typing import Any

from forewarn.config import ConfigError, TLSSettings
from forewarn.tls import server_context

log = logging.getLogger(__name__)


def _stamp(paths: list[Path]) -> tuple[tuple[int, int, int], ...]:
    out = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((0, 0, 0))
    return tuple(out)


class ReloadingTLS:
    """The receivers' TLS material, reloaded when the files change; see the module docstring."""

    def __init__(self, cfg: TLSSettings, clock: Any = time.monotonic):
        self.cfg = cfg
        self.clock = clock
        self.paths = [p for p in (cfg.cert_file, cfg.key_file, cfg.client_ca_file) if p is not None]
        self._lock = threading.Lock()
        self._checked = clock()
        self._stamp = _stamp(self.paths)
        self.version = 1  # bumped on every successful reload
        self._context = server_context(cfg)  # ConfigError naming the file: a bad setup is loud at start
        self._context.set_alpn_protocols(["http/1.1"])
        self._pem = self._read_pem()
        self._grpc_version = 0

    def _read_pem(self) -> tuple[bytes, bytes, bytes | None]:
        assert self.cfg.cert_file is not None and self.cfg.key_file is not None
        ca = self.cfg.client_ca_file.read_bytes() if self.cfg.client_ca_file else None
        return self.cfg.key_file.read_bytes(), self.cfg.cert_file.read_bytes(), ca

    def maybe_reload(self) -> None:
        """Reload if the files changed since the last check (at most every reload_interval_s)."""
        if not self.cfg.reload_interval_s:
            return
        now = self.clock()
        with self._lock:
            if now - self._checked < self.cfg.reload_interval_s:
                return
            self._checked = now
            stamp = _stamp(self.paths)
            if stamp == self._stamp:
                return
            try:
                context, pem = server_context(self.cfg), self._read_pem()
            except (ConfigError, OSError) as e:  # half-written renewal: keep serving the old pair
                log.warning("TLS files changed but cannot be loaded yet (%s); keeping the previous ones", e)
                return
            context.set_alpn_protocols(["http/1.1"])
            self._stamp, self._context, self._pem = stamp, context, pem
            self.version += 1
            log.info("TLS certificate reloaded from %s", self.cfg.cert_file)

    # --- OTLP/HTTP -------------------------------------------------------------------------------
    def server_context(self) -> ssl.SSLContext:
        """The context to give the HTTP server: each handshake moves to the current one."""
        front = server_context(self.cfg)
        front.set_alpn_protocols(["http/1.1"])

        def switch(sslobj: ssl.SSLObject, _server_name: str | None, _ctx: ssl.SSLContext) -> None:
            self.maybe_reload()
            if sslobj.context is not self._context:
                sslobj.context = self._context

        front.sni_callback = switch
        return front

    # --- OTLP/gRPC -------------------------------------------------------------------------------
    def grpc_credentials(self) -> Any:
        import grpc

        def config() -> Any:
            key, chain, ca = self._pem
            return grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=ca)

        def fetch() -> Any:
            self.maybe_reload()
            if self._grpc_version == self.version:
                return None
            self._grpc_version = self.version
            return config()

        self._grpc_version = self.version
        return grpc.dynamic_ssl_server_credentials(
            config(), fetch, require_client_authentication=self.cfg.client_ca_file is not None
        )
