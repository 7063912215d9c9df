"""How commands find the forewarn process that runs on a data directory.

``forewarn up`` and ``forewarn collector`` write ``<data_dir>/forewarn-running.json`` (mode
0600: it holds tokens) once they listen, and remove it on a clean stop. It names the pid, the
store and the endpoint that answers queries for it while the process holds it (chDB locks its
directory), the alert router's URL and token, the OTLP receivers and, when served, the ClickHouse
HTTP interface (``clickhouse_http``). A file left by a process that died (its pid is gone, or
now belongs to another program started later) is stale: readers ignore it and the next start
replaces it.

>>> import tempfile
>>> d = Path(tempfile.mkdtemp())
>>> f = publish(d, {"command": "up", "router": {"url": "http://127.0.0.1:9093"}})
>>> read(d)["router"]["url"], oct(f.path.stat().st_mode & 0o777)
('http://127.0.0.1:9093', '0o600')
>>> f.remove(); read(d) is None
True
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from forewarn.config import Settings

log = logging.getLogger(__name__)

FILE_NAME = "forewarn-running.json"
VERSION = 1


def path(data_dir: Path | str) -> Path:
    return Path(data_dir) / FILE_NAME


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def alive(info: dict[str, Any]) -> bool:
    """Whether the process that wrote ``info`` still runs (same pid, same start time)."""
    try:
        pid = int(info.get("pid", 0))
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    recorded, now = info.get("pid_start"), start_ticks(pid)
    return recorded is None or now is None or recorded == now


def write_private_json(target: Path, data: dict[str, Any]) -> None:
    """Atomically write ``data`` readable by this user only (the file holds tokens)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.replace(tmp, target)


def read_json(target: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(target.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read(data_dir: Path | str, include_stale: bool = False) -> dict[str, Any] | None:
    """The live process's record for ``data_dir``; None if nobody runs there (or it died)."""
    info = read_json(path(data_dir))
    if info is None:
        return None
    if info.get("pid") == os.getpid():
        return info
    if not alive(info):
        return {**info, "stale": True} if include_stale else None
    return info


class Published:
    """This process's record in a data directory; ``update`` rewrites it, ``remove`` deletes it."""

    def __init__(self, data_dir: Path | str, info: dict[str, Any]):
        self.path = path(data_dir)
        self.info = info
        write_private_json(self.path, info)

    def update(self, **fields: Any) -> None:
        self.info.update(fields)
        write_private_json(self.path, self.info)

    def remove(self) -> None:
        current = read_json(self.path)
        if current is None or current.get("pid") == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


class AlreadyRunning(RuntimeError):
    """Another live forewarn process runs on this data directory."""


def check_free(data_dir: Path | str) -> None:
    """Refuse to start a second forewarn on one data directory (before chDB's lock says it in
    its own words); a stale record of a dead process is noted and will be replaced."""
    data_dir = Path(data_dir).resolve()
    other = read(data_dir, include_stale=True)
    if other is None or other.get("pid") == os.getpid():
        return
    if other.get("stale"):
        log.info("discovery file of pid %s is stale (not running); it will be replaced", other.get("pid"))
        return
    raise AlreadyRunning(
        f"forewarn {other.get('command') or ''} (pid {other.get('pid')}) already runs on {data_dir}; "
        "stop it first or use another --data-dir"
    )


def publish(data_dir: Path | str, info: dict[str, Any]) -> Published:
    """Write this process's record; refuses if another live process has one there."""
    data_dir = Path(data_dir).resolve()
    check_free(data_dir)
    record = {
        "version": VERSION,
        "pid": os.getpid(),
        "pid_start": start_ticks(os.getpid()),
        "started_at": time.time(),
        "data_dir": str(data_dir),
        "store": None,
        "router": None,
        "collector": None,
        "clickhouse_http": None,
        **info,
    }
    return Published(data_dir, record)


def url(host: str, port: int) -> str:
    host = host.strip("[]") or "127.0.0.1"
    host = "127.0.0.1" if host in ("0.0.0.0", "localhost") else "::1" if host == "::" else host
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def store_record(settings: Settings, collector: Any) -> dict[str, Any]:
    """The store and, for an embedded one, the endpoint that answers queries while we hold it."""
    from forewarn.config import mask_dsn

    gateway = getattr(collector, "_gateway", None)
    record: dict[str, Any] = {"dsn": mask_dsn(settings.storage_dsn), "database": settings.storage.database}
    if gateway is not None:
        record.update({k: v for k, v in gateway.record().items() if k not in ("pid", "pid_start")})
    return record


def collector_record(collector: Any) -> dict[str, Any]:
    host = "127.0.0.1" if collector.host in ("0.0.0.0", "localhost", "") else collector.host
    return {
        "grpc": f"{host}:{collector.grpc_port}",
        "http": url(host, collector.http_port),
        "metrics": url(host, collector.metrics_port) + "/metrics",
    }


def clickhouse_http_record(collector: Any) -> dict[str, Any] | None:
    """The ClickHouse HTTP interface the collector serves for its store, if it serves one."""
    served = getattr(collector, "clickhouse_http", None)
    url = getattr(served, "url", None)
    return {"url": url} if url else None
