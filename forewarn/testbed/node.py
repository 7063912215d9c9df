"""The Node.js services: the exact npm versions of ``js/package-lock.json`` installed on first use
into a cache directory (``$FOREWARN_TESTBED_NODE_CACHE``, default ``~/.cache/forewarn/testbed-node``),
then each service run as ``node --require <auto-instrumentations-node/register> service.js``.

The lockfile names versions and integrity hashes only, no registry: npm uses whatever registry
the machine is configured for. Needs ``node`` (>= 20.6) and ``npm`` on PATH.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).parent / "js"
REGISTER = "node_modules/@opentelemetry/auto-instrumentations-node/build/src/register.js"


def cache_dir() -> Path:
    """One directory per lockfile version, so an update never mixes with an old install."""
    base = (
        os.environ.get("FOREWARN_TESTBED_NODE_CACHE") or Path.home() / ".cache" / "forewarn" / "testbed-node"
    )
    digest = hashlib.sha256((SOURCE / "package-lock.json").read_bytes()).hexdigest()[:12]
    return Path(base) / digest


def install(timeout_s: float = 900.0) -> Path:
    """``npm ci`` into the cache (once; a lock file serialises concurrent callers); returns the dir."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise RuntimeError("the Node.js services need node (>= 20.6) and npm on PATH")
    d = cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    with (d / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (d / REGISTER).exists():
            for f in ("package.json", "package-lock.json"):
                shutil.copy(SOURCE / f, d / f)
            cmd = [
                "npm",
                "ci",
                "--no-audit",
                "--no-fund",
                "--ignore-scripts",
                "--omit=dev",
                "--loglevel=error",
            ]
            r = subprocess.run(cmd, cwd=d, capture_output=True, text=True, timeout=timeout_s)
            if r.returncode != 0 or not (d / REGISTER).exists():
                raise RuntimeError(f"npm ci failed in {d}:\n{r.stdout[-2000:]}{r.stderr[-3000:]}")
        # the service itself changes more often than its dependencies: refresh it every time
        shutil.copy(SOURCE / "service.js", d / "service.js")
    return d


def command(name: str, port: int) -> list[str]:
    d = install()
    return [
        "node",
        "--require",
        str(d / REGISTER),
        str(d / "service.js"),
        "--name",
        name,
        "--port",
        str(port),
    ]
