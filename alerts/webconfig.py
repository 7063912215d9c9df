"""TLS and basic authentication for the router from Prometheus' web configuration file.

The format is the exporter-toolkit's ``--web.config.file`` (what Alertmanager 0.25, Prometheus
and the exporters read; amtool and Prometheus connect to it with their ``http_config``), so
one file serves both. Behaviour follows exporter-toolkit v0.8.2, the version in Alertmanager
0.25:

- unknown keys are errors; relative file names are relative to the web config file;
- no ``cert_file``/``key_file``/``client_auth_type``/``client_ca_file``: plain HTTP (basic
  auth still applies); a ``client_ca_file`` needs a verifying ``client_auth_type``;
- ``basic_auth_users`` (bcrypt hashes, checked at load) guard EVERY path, ``/-/healthy``,
  ``/-/ready``, ``/-/reload`` and ``/metrics`` included: exporter-toolkit wraps the whole
  handler. A wrong or missing password is ``401`` with ``WWW-Authenticate: Basic``; an unknown
  user costs the same bcrypt comparison as a known one (no user enumeration by timing);
- the file is re-read when it changes: users and headers on the next request, certificates
  and the client CA file on the next connection. A file that became invalid answers 500
  until it is fixed, as exporter-toolkit does.

Where Python's ``ssl`` cannot do what Go's ``crypto/tls`` does, the key is refused with a
clear error rather than ignored: ``client_auth_type`` RequestClientCert/RequireAnyClientCert
(accept certificates without verifying them), ``curve_preferences``, ``client_allowed_sans``.
``client_auth_type``, TLS versions and ciphers changed in the file apply after a restart.

>>> cfg = parse_web_config("basic_auth_users: {alice: $2b$04$abcdefghijklmnopqrstuu2r9OfJnfCsdneAXAGHnS4UpFFP8WIrW}")
>>> sorted(cfg.users), cfg.tls is None
(['alice'], True)
>>> try:
...     parse_web_config("tls_server_config: {cert_file: a.crt}")
... except WebConfigError as e:
...     print(e)
invalid web config: tls_server_config: missing key_file
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import ssl
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
from forewarn.alerts.config import load_yaml

log = logging.getLogger(__name__)


class WebConfigError(ValueError):
    """A web configuration file that cannot be used; the message names the bad key."""


_TLS_KEYS = {
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "cipher_suites",
    "curve_preferences",
    "min_version",
    "max_version",
    "prefer_server_cipher_suites",
    "client_allowed_sans",
}
_UNSUPPORTED = {
    "curve_preferences": "Python's ssl cannot set a curve preference list; remove it to use OpenSSL's defaults",
    "client_allowed_sans": "not supported here; use a client CA that issues only the allowed clients",
}
_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_CLIENT_AUTH = {
    "": ssl.CERT_NONE,
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_UNVERIFIED_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")
# Go's TLS 1.0-1.2 cipher suite names (crypto/tls.CipherSuites) -> OpenSSL's; TLS 1.3 suites
# are not configurable in Go either.
_CIPHERS = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
# exporter-toolkit's extraHTTPHeaders: the headers a config may set, and their allowed values.
_HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}
_BCRYPT = re.compile(rb"^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$")


@dataclass(frozen=True)
class TLSServerConfig:
    cert_file: Path
    key_file: Path
    client_auth: ssl.VerifyMode = ssl.CERT_NONE
    client_ca_file: Path | None = None
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    ciphers: tuple[str, ...] = ()
    prefer_server_ciphers: bool = True

    def context(self) -> ssl.SSLContext:
        """A server context; reads the certificate, key and client CA files now."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version, ctx.maximum_version = self.min_version, self.max_version
        try:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as e:
            raise WebConfigError(
                f"invalid web config: tls_server_config: cannot load cert_file {self.cert_file} "
                f"with key_file {self.key_file}: {_reason(e)}"
            ) from None
        if self.ciphers:
            try:
                ctx.set_ciphers(":".join(self.ciphers))
            except ssl.SSLError as e:
                raise WebConfigError(
                    f"invalid web config: tls_server_config.cipher_suites: {_reason(e)}"
                ) from None
        if self.prefer_server_ciphers:
            ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        else:
            ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
        ctx.verify_mode = self.client_auth
        if self.client_auth != ssl.CERT_NONE:
            if self.client_ca_file is None:
                ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)  # Go: the system roots
            else:
                try:
                    ctx.load_verify_locations(cafile=self.client_ca_file)
                except (OSError, ssl.SSLError) as e:
                    raise WebConfigError(
                        f"invalid web config: tls_server_config: cannot load client_ca_file "
                        f"{self.client_ca_file}: {_reason(e)}"
                    ) from None
        return ctx


@dataclass(frozen=True)
class WebConfig:
    """A parsed web configuration: TLS (None: plain HTTP), response headers, users."""

    tls: TLSServerConfig | None = None
    http2: bool = True
    headers: dict[str, str] = field(default_factory=dict)
    users: dict[str, bytes] = field(default_factory=dict)  # name -> bcrypt hash


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(getattr(e, "reason", None) or e)


def _mapping(v: Any, where: str) -> dict[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise WebConfigError(f"invalid web config: {where} must be a mapping")
    return v


def _string(v: Any, where: str) -> str:
    if v is None:
        return ""
    if not isinstance(v, str):
        raise WebConfigError(f"invalid web config: {where} must be a string")
    return v


def _check_keys(d: dict[str, Any], allowed: set[str], where: str) -> None:
    for k in d:
        if k not in allowed:
            raise WebConfigError(f"invalid web config: {where}{k!s}: unsupported key")


def _tls(d: dict[str, Any], base: Path) -> TLSServerConfig | None:
    _check_keys(d, _TLS_KEYS, "tls_server_config.")
    for k, why in _UNSUPPORTED.items():
        if d.get(k):
            raise WebConfigError(f"invalid web config: tls_server_config.{k}: {why}")
    cert, key = _string(d.get("cert_file"), "cert_file"), _string(d.get("key_file"), "key_file")
    auth = _string(d.get("client_auth_type"), "client_auth_type")
    ca = _string(d.get("client_ca_file"), "client_ca_file")
    if not (cert or key or auth or ca):
        return None  # exporter-toolkit: no TLS config, plain HTTP
    if not cert:
        raise WebConfigError("invalid web config: tls_server_config: missing cert_file")
    if not key:
        raise WebConfigError("invalid web config: tls_server_config: missing key_file")
    if auth in _UNVERIFIED_AUTH:
        raise WebConfigError(
            f"invalid web config: tls_server_config.client_auth_type: {auth} accepts client "
            "certificates without verifying them and is not supported; use RequireAndVerifyClientCert"
        )
    if auth not in _CLIENT_AUTH:
        raise WebConfigError(f"invalid web config: tls_server_config.client_auth_type: invalid {auth!r}")
    if ca and _CLIENT_AUTH[auth] == ssl.CERT_NONE:
        raise WebConfigError(
            "invalid web config: tls_server_config: client_ca_file is set without a client_auth_type "
            "that verifies (RequireAndVerifyClientCert or VerifyClientCertIfGiven)"
        )
    versions = {}
    for k, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        name = _string(d.get(k), k) or default
        if name not in _VERSIONS:
            raise WebConfigError(f"invalid web config: tls_server_config.{k}: unknown TLS version {name!r}")
        versions[k] = _VERSIONS[name]
    if versions["min_version"] > versions["max_version"]:
        raise WebConfigError("invalid web config: tls_server_config: min_version is above max_version")
    suites = d.get("cipher_suites") or []
    if not isinstance(suites, list):
        raise WebConfigError("invalid web config: tls_server_config.cipher_suites must be a list")
    ciphers = []
    for s in suites:
        if not isinstance(s, str) or s not in _CIPHERS:
            raise WebConfigError(f"invalid web config: tls_server_config.cipher_suites: unknown cipher {s!r}")
        ciphers.append(_CIPHERS[s])
    prefer = d.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise WebConfigError(
            "invalid web config: tls_server_config.prefer_server_cipher_suites must be a boolean"
        )
    return TLSServerConfig(
        base / cert,
        base / key,
        _CLIENT_AUTH[auth],
        base / ca if ca else None,
        versions["min_version"],
        versions["max_version"],
        tuple(ciphers),
        prefer,
    )


def _http(d: dict[str, Any]) -> tuple[bool, dict[str, str]]:
    _check_keys(d, {"http2", "headers"}, "http_server_config.")
    http2 = d.get("http2", True)
    if not isinstance(http2, bool):
        raise WebConfigError("invalid web config: http_server_config.http2 must be a boolean")
    headers = _mapping(d.get("headers"), "http_server_config.headers")
    out = {}
    for k, v in headers.items():
        if k not in _HEADERS:
            raise WebConfigError(f"invalid web config: HTTP header {k!r} can not be configured")
        v = _string(v, f"http_server_config.headers.{k}")
        if _HEADERS[k] and v not in _HEADERS[k]:
            raise WebConfigError(
                f"invalid web config: invalid value for {k}. Expected one of: {list(_HEADERS[k])}, but got: {v!r}"
            )
        if any(c in v for c in "\r\n\0"):
            raise WebConfigError(f"invalid web config: http_server_config.headers.{k}: control characters")
        out[k] = v
    return http2, out


def _users(d: dict[str, Any]) -> dict[str, bytes]:
    out = {}
    for name, h in d.items():
        if not isinstance(name, str) or not isinstance(h, str):
            raise WebConfigError(
                "invalid web config: basic_auth_users maps user names to bcrypt hashes (strings)"
            )
        raw = h.encode()
        m = _BCRYPT.match(raw)
        if not m or not 4 <= int(m.group(1)) <= 31:
            # Never echo the value: it is a password hash.
            raise WebConfigError(f"invalid web config: basic_auth_users.{name}: not a bcrypt hash")
        out[name] = raw
    return out


def parse_web_config(text: str, base: Path = Path(".")) -> WebConfig:
    """Parse and validate the YAML text; ``base`` is the directory relative file names start from.
    Certificate files are read by :meth:`TLSServerConfig.context`."""
    raw = load_yaml(text, "web config", WebConfigError)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise WebConfigError("invalid web config: the top level must be a mapping")
    _check_keys(raw, {"tls_server_config", "http_server_config", "basic_auth_users"}, "")
    tls = _tls(_mapping(raw.get("tls_server_config"), "tls_server_config"), base)
    http2, headers = _http(_mapping(raw.get("http_server_config"), "http_server_config"))
    users = _users(_mapping(raw.get("basic_auth_users"), "basic_auth_users"))
    return WebConfig(tls, http2, headers, users)


def load_web_config(path: str | Path) -> WebConfig:
    """Read, parse and validate a web config file, loading its certificates once to check them."""
    path = Path(path)
    try:
        text = path.read_bytes().decode()
    except OSError as e:
        raise WebConfigError(f"cannot read web config {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise WebConfigError(f"invalid web config: {path} is not UTF-8 text (byte {e.start})") from None
    cfg = parse_web_config(text, path.parent)
    if cfg.tls is not None:
        cfg.tls.context()
    return cfg


class WebConfigFile:
    """The web config file, re-read when it changes (size, mtime or inode); the last error
    stays until the file is fixed."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._cfg: WebConfig | None = None
        self._error: WebConfigError | None = None
        self._ctx: ssl.SSLContext | None = None
        self.current()  # raises WebConfigError for a bad file at start, as exporter-toolkit does

    def _stamp_now(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def current(self) -> WebConfig:
        """The config in force; raises :class:`WebConfigError` while the file is invalid."""
        stamp = self._stamp_now()
        with self._lock:
            if stamp != self._stamp or stamp is None:
                self._stamp = stamp
                try:
                    self._cfg, self._error = load_web_config(self.path), None
                    self._ctx = None
                except WebConfigError as e:
                    if self._error is None or str(e) != str(self._error):
                        log.error("web config: %s", e)
                    self._error = e
            if self._error is not None:
                raise self._error
            assert self._cfg is not None
            return self._cfg

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server context for new connections: certificates swap in when the file or the
        certificate files change (via the SNI callback, which OpenSSL calls for every hello)."""
        cfg = self.current()
        if cfg.tls is None:
            return None
        base = cfg.tls.context()

        def pick(sslobj: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> int | None:
            try:
                sslobj.context = self._connection_context()
            except WebConfigError:
                return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
            return None

        base.sni_callback = pick
        return base

    def _connection_context(self) -> ssl.SSLContext:
        cfg = self.current()
        if cfg.tls is None:
            raise WebConfigError("invalid web config: TLS was turned off; restart to serve plain HTTP")
        files = [cfg.tls.cert_file, cfg.tls.key_file] + (
            [cfg.tls.client_ca_file] if cfg.tls.client_ca_file else []
        )
        stamp = tuple(_file_stamp(f) for f in files)
        with self._lock:
            if self._ctx is None or getattr(self, "_ctx_stamp", None) != (cfg.tls, stamp):
                self._ctx = cfg.tls.context()
                self._ctx_stamp = (cfg.tls, stamp)
            return self._ctx


def _file_stamp(p: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(p)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


# bcrypt of "fakepassword" (exporter-toolkit's): an unknown user costs one comparison too.
_FAKE_HASH = b"$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi"
_UNAUTHORIZED = b"Unauthorized\n"


def basic_credentials(header: bytes) -> tuple[str, bytes] | None:
    """User and password of an ``Authorization: Basic`` header, or None (Go's ``BasicAuth``).

    >>> basic_credentials(b"Basic " + base64.b64encode(b"alice:pa:ss"))
    ('alice', b'pa:ss')
    >>> basic_credentials(b"Bearer x"), basic_credentials(b"Basic !!!")
    (None, None)
    """
    if header[:6].lower() != b"basic ":
        return None
    try:
        raw = base64.b64decode(header[6:], validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = raw.partition(b":")
    if not sep:
        return None
    try:
        return user.decode(), password
    except UnicodeDecodeError:
        return None


class WebAuth:
    """ASGI middleware: the web config's response headers and basic authentication on every
    path, as exporter-toolkit's handler wraps Alertmanager's whole mux.

    ``tokens`` are forewarn's own API bearer tokens (``alerts.api_tokens``), accepted too, so
    forewarn's flows keep posting their alerts; a request that passed here is marked in its
    scope so the bearer-token check of ``/api/`` does not ask it again.
    """

    CACHE_SIZE = 100

    def __init__(self, app: Any, config: WebConfigFile, tokens: list[str] | None = None) -> None:
        self.app, self.config = app, config
        self.tokens = [t.encode() for t in tokens or []]
        self._cache: OrderedDict[bytes, bool] = OrderedDict()
        self._bcrypt = asyncio.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            cfg = self.config.current()
        except WebConfigError:
            await _plain(send, 500, b"Internal Server Error\n", [])
            return
        extra = [(k.encode(), v.encode()) for k, v in cfg.headers.items()]
        if cfg.users and not await self._allowed(cfg, dict(scope["headers"]).get(b"authorization", b"")):
            await _plain(send, 401, _UNAUTHORIZED, [*extra, (b"www-authenticate", b"Basic")])
            return
        if cfg.users:
            scope = {**scope, "forewarn.authenticated": True}

        async def send_with_headers(msg: Any) -> None:
            if msg["type"] == "http.response.start" and extra:
                names = {k for k, _ in extra}
                msg = {
                    **msg,
                    "headers": [*(h for h in msg.get("headers", []) if h[0].lower() not in names), *extra],
                }
            await send(msg)

        await self.app(scope, receive, send_with_headers)

    async def _allowed(self, cfg: WebConfig, header: bytes) -> bool:
        if header[:7].lower() == b"bearer " and self.tokens:
            token = header[7:]
            return any(hmac.compare_digest(token, t) for t in self.tokens)
        creds = basic_credentials(header)
        if creds is None:
            return False
        user, password = creds
        hashed = cfg.users.get(user)
        known = hashed is not None
        hashed = hashed or _FAKE_HASH
        # Keyed by a digest: the cache never holds a password in the clear.
        key = hashlib.sha256(b"\0".join((user.encode(), hashed, password))).digest()
        ok = self._cache.get(key)
        if ok is None:
            async with self._bcrypt:  # bcrypt is CPU-bound: one at a time, off the event loop
                # Go's CompareHashAndPassword uses the first 72 bytes; the bcrypt package
                # refuses longer passwords instead, so cut them the same way.
                ok = await asyncio.to_thread(bcrypt.checkpw, password[:72], hashed)
            ok = ok and known
            self._cache[key] = ok
            while len(self._cache) > self.CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return ok and known


async def _plain(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """A response as Go's ``http.Error`` writes it."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"x-content-type-options", b"nosniff"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
