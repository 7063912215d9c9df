"""How long the score loop waits after a bucket ends before judging it, learnt from how late data
actually arrives.

A bucket scored before its spans and log records are in looks like a traffic drop (a service
that sent 14 records in 2 s reads 0), and that false drop opens an incident. SDKs batch before
they export (5 s by default), collectors and brokers queue under load, so a fixed wait is either
too short on a busy day or too long on a quiet one. After each batch the loop counts the window's
spans and records again; items that arrived after it was scored mean the wait was too short: it
doubles (at least one bucket more), up to ``max_s``. While nothing arrives late it shrinks back by
a tenth per batch, never below the configured wait. This is the heuristic watermark of stream
processors (Flink's bounded out-of-orderness, Dataflow's heuristic watermarks), measured instead of
configured.

>>> w = Lateness(base_s=5, max_s=60, step_s=10)
>>> w.observe(late=0, total=500), w.wait_s
(False, 5.0)
>>> w.observe(late=40, total=500), w.wait_s
(True, 15.0)
>>> w.observe(late=30, total=500), w.wait_s
(True, 30.0)
>>> [w.observe(late=0, total=500) for _ in range(3)][-1], round(w.wait_s, 2)
(False, 21.87)
"""

from __future__ import annotations

from dataclasses import dataclass

# items of a window that may arrive late without counting (clock skew, a straggler retry)
TOLERANCE = 0.005


@dataclass
class Lateness:
    base_s: float  # the configured wait (flows.lateness_s)
    max_s: float  # the most it may grow to (flows.max_lateness_s)
    step_s: float  # one bucket
    wait_s: float = -1.0

    def __post_init__(self) -> None:
        if self.wait_s < 0:
            self.wait_s = float(self.base_s)

    def observe(self, late: int, total: int) -> bool:
        """``late`` of the window's ``total`` items came after it was scored; returns whether the
        wait grew."""
        if late > max(1, TOLERANCE * total):
            grown = min(max(self.max_s, self.base_s), max(2 * self.wait_s, self.wait_s + self.step_s))
            changed = grown > self.wait_s
            self.wait_s = grown
            return changed
        self.wait_s = max(float(self.base_s), self.wait_s * 0.9)
        return False
