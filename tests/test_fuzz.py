"""The fuzz harnesses (fuzz/, ``make fuzz`` runs a million inputs each) run briefly here: every
seed and every input kept from an earlier crash, then 3,000 mutated inputs with a fixed seed,
under the same per-input timeout and RSS limit. A crash, hang or memory blow-up fails the test
with the harness's own report (the input is in the scratch directory it names)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("atheris", reason="atheris not installed (make install: dev extra)")
sys.path.insert(0, str(ROOT / "fuzz"))  # harnesses import each other (otlp_json uses otlp_protobuf)


def _load(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(f"forewarn_fuzz_{name}", ROOT / "fuzz" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run = _load("run")

INPUTS = 3000


@pytest.mark.parametrize("harness", list(run.HARNESSES))
def test_harness_runs_clean(harness: str, tmp_path: Path) -> None:
    r = run.run(harness, INPUTS, seed=1, timeout=10, rss_mb=2048, work=tmp_path, quiet=True)
    log = (tmp_path / f"{harness}.log").read_text()
    assert r["exit"] == 0, f"{harness} failed; inputs in {r['artifacts']}:\n{log[-4000:]}"
    assert r["inputs"] >= INPUTS


@pytest.mark.parametrize(
    "case",
    sorted(
        str(p.relative_to(ROOT / "fuzz" / "regressions"))
        for p in (ROOT / "fuzz" / "regressions").rglob("*")
        if p.parent.name in run.HARNESSES
        if p.is_file()
    ),
)
def test_crash_inputs_stay_fixed(case: str) -> None:
    """Each kept crash input, through its harness in this process (no fuzzer, plain traceback)."""
    harness, _, _ = case.partition("/")
    _load(harness).test_one_input((ROOT / "fuzz" / "regressions" / case).read_bytes())


def test_corpora_through_the_whole_conversion(store, settings) -> None:  # type: ignore[no-untyped-def]
    """Seeds and kept inputs through ClickHouse's own conversion (chDB): every request the
    receivers accept inserts, with the rows the survey counted (fuzz/convert_chdb.py)."""
    replay = _load("convert_chdb").replay
    fuzz = ROOT / "fuzz"
    inputs, accepted, failures = replay(
        [fuzz / "corpus", fuzz / "regressions"], store, settings.storage.database
    )
    assert not failures, "\n".join(failures)
    assert accepted >= 10, (inputs, accepted)
