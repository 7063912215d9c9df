"""Replay fuzz corpora through the whole conversion into ClickHouse rows, on embedded chDB.

The coverage-guided harnesses stop at the Python half of the conversion (``fuzz/convert.py``):
a ClickHouse statement costs ~30 ms, so a million inputs through it would take hours. This
replays the inputs they found interesting (each harness's corpus, seeds and kept crashes) the
way the receivers store them: decode (protobuf or OTLP/JSON, by corpus), then
``insert_requests`` into a fresh store; every accepted request must insert without error and
add exactly the rows the survey counted to each table, as many as the receiver accepted.

    python fuzz/convert_chdb.py DIR [DIR...]     # files named as in fuzz/corpus/<harness>/
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from forewarn.collector.convert import insert_requests
from forewarn.collector.convert_survey import BadPayload, count_rows
from forewarn.collector.otlp import BadData, decode_json, decode_protobuf

from forewarn.config import load_settings
from forewarn.storage import open_storage

SIGNALS = ("traces", "metrics", "logs")


def replay(paths: list[Path], client, db: str) -> tuple[int, int, list[str]]:  # type: ignore[no-untyped-def]
    """(inputs, accepted, failures) for the corpus files under ``paths``, into ``db`` (migrated)."""
    files = sorted(f for p in paths for f in (p.rglob("*") if p.is_dir() else [p]) if f.is_file())
    inputs = accepted = 0
    failures: list[str] = []
    for f in files:
        raw = f.read_bytes()
        if not raw:
            continue
        inputs += 1
        signal, body = SIGNALS[raw[0] % 3], raw[1:]
        try:
            d = decode_json(signal, body) if "json" in f.parent.name else decode_protobuf(signal, body)
        except BadData:
            continue
        if not d.items:
            continue
        accepted += 1
        expected = count_rows(signal, [d.payload])
        before = {t: _count(client, db, t) for t in expected}
        try:
            insert_requests(client, signal, [d.payload], database=db)
        except BadPayload as e:
            failures.append(f"{f}: accepted by the receiver, refused by the conversion: {e}")
            continue
        except Exception as e:
            failures.append(f"{f}: {type(e).__name__}: {str(e)[:500]}")
            continue
        got = {t: _count(client, db, t) - before[t] for t in expected}
        if got != expected or sum(got.values()) != d.items:
            failures.append(f"{f}: rows {got}, survey counted {expected}, the receiver accepted {d.items}")
    return inputs, accepted, failures


def _count(client, db: str, table: str) -> int:  # type: ignore[no-untyped-def]
    return int(client.command(f"SELECT count() FROM `{db}`.`{table}`"))


def main(argv: list[str]) -> int:
    t = time.monotonic()
    data = Path(tempfile.mkdtemp(prefix="forewarn-fuzz-chdb-"))
    settings = load_settings(overrides={"data_dir": str(data), "storage": {"dsn": f"chdb://{data / 'chdb'}"}})
    client = open_storage(settings)
    here = Path(__file__).parent
    paths = [Path(a) for a in argv] or [here / "corpus", here / "regressions"]
    try:
        inputs, accepted, failures = replay(paths, client, settings.storage.database)
    finally:
        client.close()
        shutil.rmtree(data, ignore_errors=True)
    for line in failures:
        print(line)
    print(
        f"{inputs} inputs, {accepted} accepted and inserted, {len(failures)} failures, {time.monotonic() - t:.0f} s"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
