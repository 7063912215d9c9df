"""Randomised differential scenarios: generated configs and alert/silence/query sequences
through the real Alertmanager 0.25 and forewarn must give the same notifications and answers.

A few seeds run in the suite (about 12 s each); ``FOREWARN_ALERTS_FUZZ_SEEDS=0:200`` runs more,
as does ``python -m forewarn.alerts.difftest --seeds 0:200``.
"""

from __future__ import annotations

import os

import pytest
from forewarn.alerts.difftest import generate, run_scenario
from forewarn.alerts.testing import Alertmanager

pytestmark = pytest.mark.skipif(
    not Alertmanager.available(), reason="prometheus-alertmanager not installed (make system-deps)"
)


def _seeds() -> list[int]:
    spec = os.environ.get("FOREWARN_ALERTS_FUZZ_SEEDS")
    if not spec:
        return [7, 1042, 90210]
    start, stop = (int(x) for x in spec.split(":"))
    return list(range(start, stop))


@pytest.mark.parametrize("seed", _seeds())
def test_random_scenario_matches_alertmanager(seed: int) -> None:
    s = generate(seed)
    diffs = run_scenario(s)
    assert not diffs, "\n".join([s.config, *s.script, *diffs])
