"""Process-wide Prometheus metrics that survive a module being imported twice.

Each component keeps its metrics module-level, so several services in one process (``forewarn
up``, tests) share them. pytest's doctest collection also imports the package folders under a
second name (``collector.telemetry`` beside ``forewarn.collector.telemetry``), which would
register every metric twice; looking it up first makes creation idempotent.

>>> from prometheus_client import Counter
>>> a = metric(Counter, "forewarn_doctest_events", "Events.", ["kind"])
>>> a is metric(Counter, "forewarn_doctest_events", "Events.", ["kind"])
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import REGISTRY


def metric(cls: type, name: str, doc: str, labelnames: Sequence[str] = (), **kwargs: Any) -> Any:
    """The registered metric called ``name``, created on first use."""
    for key in (name, f"{name}_total"):  # a Counter registers under its _total name
        existing = REGISTRY._names_to_collectors.get(key)  # prometheus-client has no public lookup
        if existing is not None:
            return existing
    return cls(name, doc, list(labelnames), **kwargs)
