"""Fault switches: one JSON file the runner writes and every service and the traffic generator
re-read, so faults toggle at run time without admin endpoints (which would add spans of their own
to the telemetry being judged) and the same switches work for the Python and the Node.js services.

Layout (every key optional)::

    {"services": {"payments": {"latency": {"POST /charge": 5.0}, "error_ratio": 0.35,
                               "db_delay_ms": 150, "log_burst_per_s": 25, "leak_mb_per_s": 2,
                               "disk": {"start": <epoch s>, "duration_s": 72, "from": 0.6, "to": 1.0}}},
     "traffic": {"multiplier": 1.0, "drop": 0.0, "routes": ["GET /recommendations"]}}

>>> import tempfile, pathlib
>>> c = Control(pathlib.Path(tempfile.mkdtemp()) / "control.json")
>>> c.write({"services": {"payments": {"error_ratio": 0.35}}})
>>> ControlReader(c.path).poll()["services"]["payments"]["error_ratio"]
0.35
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any


class Control:
    """The writer side: replaces the file atomically, so a reader never sees half a state."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def write(self, state: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, sort_keys=True))
        os.replace(tmp, self.path)


class ControlReader:
    """The reader side: polls the file's mtime and keeps the last state that parsed."""

    def __init__(self, path: str | Path | None, interval_s: float = 0.2):
        self.path = Path(path) if path else None
        self.interval_s = interval_s
        self.state: dict[str, Any] = {}
        self._stamp: tuple[int, int] | None = None
        self._thread: threading.Thread | None = None

    def poll(self) -> dict[str, Any]:
        if self.path is None:
            return self.state
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self.state, self._stamp = {}, None
            return self.state
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            try:
                self.state = json.loads(self.path.read_text() or "{}")
                self._stamp = stamp
            except (OSError, ValueError):
                pass  # being replaced: keep the previous state, read again next time
        return self.state

    def start(self) -> ControlReader:
        def loop() -> None:
            while True:
                self.poll()
                threading.Event().wait(self.interval_s)

        self.poll()
        self._thread = threading.Thread(target=loop, name="testbed-control", daemon=True)
        self._thread.start()
        return self

    def service(self, name: str) -> dict[str, Any]:
        return (self.state.get("services") or {}).get(name) or {}
