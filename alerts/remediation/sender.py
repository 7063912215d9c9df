"""One signed HTTP attempt of a remediation call, classified for the retry and breaker logic.

Redirects are never followed: a 3xx is a failed attempt that names its ``Location``, so a
hook cannot be bounced to an address outside the allowlist.

>>> allowed("http://127.0.0.1:8080/restart", ["http://127.0.0.1:8080/"])
True
>>> allowed("http://127.0.0.1:80801/x", ["http://127.0.0.1:8080"])
False
>>> allowed("http://127.0.0.1:8080/restarts/../../admin", ["http://127.0.0.1:8080/restarts/"])
False
>>> backoff_delay(4, initial=1.0, cap=5.0, rand=lambda: 1.0)
5.0
"""

from __future__ import annotations

import posixpath
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import httpx
from forewarn.alerts.remediation.signing import (
    ACTION_HEADER,
    ATTEMPT_HEADER,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
)

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _norm(url: str) -> tuple[str, str, int, str]:
    p = urlsplit(url)
    scheme = p.scheme.lower()
    path = unquote(p.path or "/")
    norm = posixpath.normpath(path) if path not in ("", "/") else "/"
    if path.endswith("/") and not norm.endswith("/"):
        norm += "/"
    return scheme, (p.hostname or "").lower(), p.port or _DEFAULT_PORTS.get(scheme, 0), norm


def allowed(url: str, allowlist: list[str]) -> bool:
    """Whether ``url`` falls under one of the allowlisted prefixes (same scheme, host and
    port; path under the prefix's path after resolving ``..``). An empty allowlist allows nothing."""
    try:
        scheme, host, port, path = _norm(url)
    except ValueError:
        return False
    for prefix in allowlist:
        ps, ph, pp, ppath = _norm(prefix)
        if (scheme, host, port) != (ps, ph, pp):
            continue
        if ppath.endswith("/"):
            if path.startswith(ppath) or path + "/" == ppath:
                return True
        elif path == ppath or path.startswith(ppath + "/"):
            return True
    return False


def backoff_delay(
    attempt: int, initial: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Full-jitter exponential backoff before retry number ``attempt`` (1-based)."""
    return rand() * min(cap, initial * (2 ** max(0, attempt - 1)))


@dataclass(frozen=True)
class AttemptResult:
    ok: bool
    retryable: bool
    status: int
    latency_ms: float
    error: str
    retry_after: float | None = None


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


async def attempt(
    client: httpx.AsyncClient,
    *,
    method: str,
    url: str,
    body: bytes,
    secret: bytes,
    idem_key: str,
    action_id: str,
    attempt_no: int,
    timeout: float,
    headers: dict[str, str],
) -> AttemptResult:
    """Send once; network errors, timeouts, 5xx and 429 are retryable, other 4xx and 3xx are not."""
    ts, sig = sign(secret, body)
    hdrs = {
        **headers,
        "Content-Type": "application/json",
        IDEMPOTENCY_HEADER: idem_key,
        ACTION_HEADER: action_id,
        ATTEMPT_HEADER: str(attempt_no),
        TIMESTAMP_HEADER: ts,
        SIGNATURE_HEADER: sig,
    }
    t0 = time.perf_counter()
    try:
        resp = await client.request(method, url, content=body, headers=hdrs, timeout=timeout)
    except httpx.TimeoutException as e:
        ms = (time.perf_counter() - t0) * 1000
        return AttemptResult(False, True, 0, ms, f"timeout after {timeout:g}s ({type(e).__name__})")
    except httpx.HTTPError as e:
        ms = (time.perf_counter() - t0) * 1000
        return AttemptResult(False, True, 0, ms, f"{type(e).__name__}: {e}"[:500])
    ms = (time.perf_counter() - t0) * 1000
    code = resp.status_code
    if 200 <= code < 300:
        return AttemptResult(True, False, code, ms, "")
    if 300 <= code < 400:
        where = resp.headers.get("location", "")
        return AttemptResult(False, False, code, ms, f"redirect to {where!r} not followed")
    detail = resp.text[:200].strip()
    error = f"HTTP {code}" + (f": {detail}" if detail else "")
    retryable = code >= 500 or code in (408, 429)
    return AttemptResult(False, retryable, code, ms, error, _retry_after(resp) if retryable else None)
