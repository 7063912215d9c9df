"""ClickHouse HTTP interface benchmark: what the interface costs on top of the engine it serves.

Two workloads on an embedded store, each measured through the interface (clickhouse-connect over
HTTP, as a client of ``forewarn up`` would) and directly on chDB in the same process (the
engine's own Python API, ``chdb.connect(...).query`` / ``send_query``: the floor; everything the
interface and an HTTP client add is the gap):

- small queries: ``SELECT count() FROM t WHERE k = {k}`` in a loop (queries/s) — a dashboard's
  many small panel queries, where the per-request cost (HTTP, auth, a fresh engine handle) shows;
- bulk read: ``SELECT * FROM t`` in Native (MB/s of result) — an export, where streaming shows;
  once plain, once with lz4 HTTP compression.

``ratio`` = interface throughput / direct throughput (1.0 means free).

    .venv/bin/python bench/clickhouse_http.py [--rows 2000000] [--queries 400]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import chdb
import clickhouse_connect

from forewarn.clickhouse_http import ClickHouseHTTPServer
from forewarn.config import load_settings
from forewarn.storage import open_storage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--queries", type=int, default=400)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="forewarn-bench-chhttp-"))
    try:
        s = load_settings(
            overrides={
                "data_dir": str(tmp),
                "storage": {"dsn": f"chdb://{tmp / 'chdb'}", "database": "bench"},
            }
        )
        direct = open_storage(s)
        direct.command(
            "CREATE TABLE t (k UInt64, s String, ts DateTime64(9), v Float64) ENGINE = MergeTree ORDER BY k"
        )
        direct.command(
            f"INSERT INTO t SELECT number, 'svc-' || toString(number % 100), now64(9) - number, rand() / 7 "
            f"FROM numbers({args.rows})"
        )
        srv = ClickHouseHTTPServer(s.clickhouse_http, s.storage_dsn, "bench", port=0)
        srv.start()
        try:
            http = clickhouse_connect.get_client(
                host="127.0.0.1", port=srv.port, database="bench", compress=False
            )
            http_lz4 = clickhouse_connect.get_client(
                host="127.0.0.1", port=srv.port, database="bench", compress="lz4"
            )

            engine = chdb.connect(srv.engine.conn_str)
            engine.query("USE bench")
            sql = "SELECT count() FROM t WHERE k = {k:UInt64}"

            def small(client) -> float:
                t0 = time.perf_counter()
                for i in range(args.queries):
                    if client is engine:
                        engine.query(sql, "Native", params={"k": str(i)}).bytes()
                    else:
                        client.query(sql, parameters={"k": i})
                return args.queries / (time.perf_counter() - t0)

            def bulk(client) -> tuple[float, int]:
                t0 = time.perf_counter()
                size = 0
                if client is engine:
                    for chunk in engine.send_query("SELECT * FROM t", "Native"):
                        size += len(chunk.bytes())
                else:
                    with client.raw_stream("SELECT * FROM t", fmt="Native") as stream:
                        for chunk in stream:
                            size += len(chunk)
                return size / (time.perf_counter() - t0) / 1e6, size

            small(http), small(engine)  # warm-up
            q_http, q_direct = small(http), small(engine)
            print(
                f"small queries: interface {q_http:8.0f} q/s   direct {q_direct:8.0f} q/s   ratio {q_http / q_direct:.2f}"
            )
            mb_direct, size = bulk(engine)
            mb_http, _ = bulk(http)
            mb_lz4, _ = bulk(http_lz4)
            print(f"bulk Native read ({size / 1e6:.0f} MB, {args.rows} rows):")
            print(f"  interface        {mb_http:8.0f} MB/s   ratio {mb_http / mb_direct:.2f}")
            print(f"  interface + lz4  {mb_lz4:8.0f} MB/s   ratio {mb_lz4 / mb_direct:.2f}")
            print(f"  direct (floor)   {mb_direct:8.0f} MB/s")
        finally:
            srv.stop()
            direct.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
