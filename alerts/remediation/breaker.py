"""Per-hook circuit breaker: stop calling an endpoint that keeps failing, probe it again later.

closed → open after ``failures`` consecutive failed calls; open → half-open once
``reset_after`` has passed, letting exactly one trial action through; the trial's success
closes it, its failure opens it again. The record is plain data persisted by the state store,
so the breaker's memory survives restarts.

>>> b = Breaker("restart")
>>> b.record(ok=False, now=0, threshold=2), b.record(ok=False, now=1, threshold=2)
(False, True)
>>> b.state, b.admit("a1", now=30, reset_after=60)
('open', False)
>>> b.admit("a2", now=61, reset_after=60), b.state, b.admit("a3", now=62, reset_after=60)
(True, 'half_open', False)
>>> b.record(ok=True, now=63, threshold=2), b.state
(True, 'closed')
"""

from __future__ import annotations

from dataclasses import dataclass

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass
class Breaker:
    hook: str
    state: str = CLOSED
    failures: int = 0  # consecutive failed calls
    opened_at: float = 0.0
    trial: str = ""  # the action allowed through while half-open

    def admit(self, action_id: str, now: float, reset_after: float) -> bool:
        """Whether this action may call now (moving open → half-open when it is time)."""
        if self.state == OPEN and now - self.opened_at >= reset_after:
            self.state, self.trial = HALF_OPEN, action_id
        elif self.state == HALF_OPEN and not self.trial:
            self.trial = action_id
        if self.state == OPEN:
            return False
        return self.state == CLOSED or self.trial == action_id

    def record(self, ok: bool, now: float, threshold: int) -> bool:
        """Account one call's result; True when the state changed."""
        before = self.state
        if ok:
            self.state, self.failures, self.trial = CLOSED, 0, ""
        else:
            self.failures += 1
            if self.state == HALF_OPEN or self.failures >= threshold:
                self.state, self.opened_at, self.trial = OPEN, now, ""
        return self.state != before
