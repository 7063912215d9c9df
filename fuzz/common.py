"""What every harness shares: keeping the input of a crash before the fuzzer handles it.

libFuzzer writes a crash's input itself, but when a harness that runs an event loop dies, the
process can be ended by the fuzzer's own alarm while it shuts down, before the input is
written (seen as exit -14). So the input is saved first, to ``$FOREWARN_FUZZ_ARTIFACTS``.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def scratch(prefix: str) -> Path:
    """A private directory for the harness's files: the one fuzz/run.py made for this run (it
    removes it; libFuzzer's exit skips Python's atexit), else a new one removed at exit."""
    given = os.environ.get("FOREWARN_FUZZ_TMP")
    if given:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=given))
    # A memory file system where there is one: a write to /tmp costs a millisecond on some hosts.
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    atexit.register(shutil.rmtree, d, ignore_errors=True)
    return d


def keep_crashes(fn: Callable[[bytes], None]) -> Callable[[bytes], None]:
    @functools.wraps(fn)
    def run(data: bytes) -> None:
        try:
            fn(data)
        except BaseException:
            where = os.environ.get("FOREWARN_FUZZ_ARTIFACTS")
            if where:
                path = Path(where) / f"crash-{hashlib.sha1(data).hexdigest()}"
                path.write_bytes(data)
                print(f"forewarn fuzz: input saved to {path}", flush=True)
            raise

    return run
