"""HMAC-SHA256 request signing, and the check a receiving service runs.

The signature covers ``timestamp + "." + body`` so a captured request cannot be replayed
after the tolerance window nor have its body swapped. Receivers should also de-duplicate on
the ``Idempotency-Key`` header, which stays the same across retries and restarts.

>>> ts, sig = sign(b"k3y", b'{"a":1}', timestamp=1700000000)
>>> verify_signature(b"k3y", ts, b'{"a":1}', sig, now=1700000100)
True
>>> verify_signature(b"k3y", ts, b'{"a":2}', sig, now=1700000100)
False
>>> verify_signature(b"k3y", ts, b'{"a":1}', sig, now=1700000400)  # outside the replay window
False
"""

from __future__ import annotations

import hashlib
import hmac
import time

TIMESTAMP_HEADER = "X-Forewarn-Timestamp"
SIGNATURE_HEADER = "X-Forewarn-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
ATTEMPT_HEADER = "X-Forewarn-Attempt"
ACTION_HEADER = "X-Forewarn-Action-Id"


def _digest(secret: bytes, timestamp: str, body: bytes) -> str:
    return hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(secret: bytes, body: bytes, timestamp: int | None = None) -> tuple[str, str]:
    """(timestamp header value, signature header value ``v1=<hex>``) for one request."""
    ts = str(int(time.time() if timestamp is None else timestamp))
    return ts, "v1=" + _digest(secret, ts, body)


def verify_signature(
    secret: bytes | str,
    timestamp: str,
    body: bytes,
    signature: str,
    tolerance_s: float = 300,
    now: float | None = None,
) -> bool:
    """True when ``signature`` (header ``X-Forewarn-Signature``) is valid for ``body`` and
    ``timestamp`` (header ``X-Forewarn-Timestamp``) is within ``tolerance_s`` of ``now``.

    Constant-time comparison; several ``v1=`` values separated by commas are accepted so a
    key can be rotated by signing with both.
    """
    key = secret.encode() if isinstance(secret, str) else secret
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    expected = _digest(key, str(ts), body)
    for part in (signature or "").split(","):
        scheme, _, value = part.strip().partition("=")
        if scheme == "v1" and hmac.compare_digest(value, expected):
            return True
    return False
