"""Run the fuzz harnesses with libFuzzer's limits: ``make fuzz`` (one million inputs each) and
``tests/test_fuzz.py`` (a few thousand, fixed seed) both come here.

Each harness runs in its own process over its seed corpus (``fuzz/corpus/<name>``) and every
input kept from an earlier crash (``fuzz/regressions/<name>``), with a per-input timeout and an
RSS limit; new coverage goes to a scratch directory, never into the committed corpus. A crash,
a hang or the RSS limit leaves its input in the scratch directory and a non-zero exit.

    python fuzz/run.py                       # every harness, 1,000,000 inputs each
    python fuzz/run.py otlp_json --runs 5000 --seed 1
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
HARNESSES = {  # name -> longest input (bytes)
    "otlp_protobuf": 16384,
    "otlp_json": 16384,
    "convert": 16384,
    "alerts_api": 8192,
    "alerts_config": 8192,
    "clickhouse_http": 16384,
}


def run(name: str, runs: int, seed: int, timeout: int, rss_mb: int, work: Path, quiet: bool) -> dict:
    """One harness; returns its figures (inputs run, seconds, exit code, crash files)."""
    out, found = work / name / "corpus", work / name / "artifacts"
    out.mkdir(parents=True, exist_ok=True)
    found.mkdir(parents=True, exist_ok=True)
    dirs = [str(out), str(HERE / "corpus" / name)]
    if (HERE / "regressions" / name).is_dir():
        dirs.append(str(HERE / "regressions" / name))
    cmd = [
        sys.executable,
        str(HERE / f"{name}.py"),
        *dirs,
        f"-runs={runs}",
        f"-seed={seed}",
        f"-timeout={timeout}",
        f"-rss_limit_mb={rss_mb}",
        f"-max_len={HARNESSES[name]}",
        f"-artifact_prefix={found}/",
        "-print_final_stats=1",
    ]
    t0 = time.monotonic()
    log_file = work / f"{name}.log"  # written as it runs: `tail -f` shows progress
    # The harness's own files (in memory where possible), removed here: libFuzzer's exit skips
    # the harness's atexit handlers.
    tmp = tempfile.mkdtemp(prefix="forewarn-fuzz-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None)
    env = {**os.environ, "FOREWARN_FUZZ_ARTIFACTS": str(found), "FOREWARN_FUZZ_TMP": tmp}
    try:
        with log_file.open("wb") as fh:
            p = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=HERE, env=env)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log = log_file.read_text(errors="replace")
    executed = re.search(r"stat::number_of_executed_units:\s*(\d+)", log)
    result = {
        "harness": name,
        "inputs": int(executed.group(1)) if executed else 0,
        "seconds": round(time.monotonic() - t0, 1),
        "exit": p.returncode,
        "artifacts": sorted(str(f) for f in found.iterdir()),
    }
    if p.returncode != 0 and not quiet:
        print(log[-6000:], file=sys.stderr)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("names", nargs="*", help=f"harnesses (default all: {', '.join(HARNESSES)})")
    p.add_argument("--runs", type=int, default=1_000_000, help="inputs per harness")
    p.add_argument("--seed", type=int, default=0, help="libFuzzer seed (0: random)")
    p.add_argument("--timeout", type=int, default=10, help="seconds one input may take")
    p.add_argument("--rss-mb", type=int, default=2048, help="RSS limit of a harness process")
    p.add_argument("--work", type=Path, help="scratch directory (default: a new temporary one)")
    args = p.parse_args(argv)
    names = args.names or list(HARNESSES)
    unknown = sorted(set(names) - set(HARNESSES))
    if unknown:
        p.error(f"unknown harness {unknown[0]!r}; known: {', '.join(HARNESSES)}")
    work = args.work or Path(tempfile.mkdtemp(prefix="forewarn-fuzz-"))
    failed = 0
    for name in names:
        r = run(name, args.runs, args.seed, args.timeout, args.rss_mb, work, quiet=False)
        status = "ok" if r["exit"] == 0 else f"FAILED (exit {r['exit']}): {' '.join(r['artifacts'])}"
        print(f"{name}: {r['inputs']} inputs in {r['seconds']} s, {status}", flush=True)
        failed += r["exit"] != 0
    print(f"scratch corpus and logs: {work}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
