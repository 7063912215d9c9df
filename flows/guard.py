"""Cardinality guard: a budget of series per worker; what exceeds it is counted and reported.

Series are admitted in a deterministic order (first bucket seen, then id), so a replayed batch
makes the same decisions. Rejected series are not scored or stored as signals, but every one of
them is counted per signal name and service in ``forewarn_cardinality`` (``forewarn flows status``
shows the totals) and logged; nothing disappears without a trace.

>>> import pandas as pd
>>> g = CardinalityGuard(budget=1)
>>> sig = pd.DataFrame({"series_id": [1, 2, 2], "ts": [0, 0, 10], "value": [1.0, 2, 3],
...                     "name": ["a", "b", "b"], "service": ["s", "s", "s"], "labels": [{}, {}, {}]})
>>> ok, new, rejected = g.admit(sig, 10)
>>> ok["series_id"].tolist(), len(new), rejected
([1], 1, [[10, 'b', 's', 1, 2, 1]])
"""

from __future__ import annotations

import logging

import pandas as pd
from forewarn.flows.store import to_dt

log = logging.getLogger(__name__)


class CardinalityGuard:
    def __init__(self, budget: int, known: set[int] | None = None):
        self.budget = budget
        self.known: set[int] = set(known or ())
        self.rejected_total = 0

    def admit(self, sig: pd.DataFrame, window_end_ms: int) -> tuple[pd.DataFrame, list[list], list[list]]:
        """(admitted points, registry rows of newly admitted series, cardinality report rows)."""
        if sig.empty:
            return sig, [], []
        firsts = sig.groupby("series_id", sort=False).head(1)
        fresh = firsts[~firsts["series_id"].isin(self.known)].sort_values(["ts", "series_id"], kind="stable")
        room = max(0, self.budget - len(self.known))
        take, drop = fresh.iloc[:room], fresh.iloc[room:]
        new_rows = [
            [int(r.series_id), r.name, r.service, r.labels, to_dt(r.ts)] for r in take.itertuples(index=False)
        ]
        self.known.update(int(s) for s in take["series_id"])
        report: list[list] = []
        if len(drop):
            dropped = sig[sig["series_id"].isin(set(drop["series_id"]))]
            for (name, service), g in dropped.groupby(["name", "service"], sort=True):
                report.append(
                    [window_end_ms, name, service, int(g["series_id"].nunique()), len(g), self.budget]
                )
            self.rejected_total += int(drop["series_id"].nunique())
            log.warning(
                "cardinality budget %d reached: %d new series not admitted in this batch (%d so far)",
                self.budget,
                len(drop),
                self.rejected_total,
            )
            sig = sig[~sig["series_id"].isin(set(drop["series_id"]))]
        return sig, new_rows, report
