"""Inhibition: a firing source alert mutes matching target alerts with equal ``equal`` labels.

Each rule caches the alerts matching its source side as they arrive (whatever their own
state, as in Alertmanager), so a check costs the rule's sources, not every alert.

>>> from forewarn.alerts.config import parse_config
>>> from forewarn.alerts.state import StateStore
>>> cfg = parse_config('''
... route: {receiver: r}
... receivers: [{name: r}]
... inhibit_rules: [{source_matchers: [sev=crit], target_matchers: [sev=warn], equal: [dc]}]
... ''')
>>> p = AlertProvider(StateStore(None), 100)
>>> ih = Inhibitor(cfg.inhibit_rules, p)
>>> _ = p.put([Alert({"sev": "crit", "dc": "eu"}, starts_at=1.0, ends_at=1e12, updated_at=1.0)], now=1.0)
>>> ih.mutes({"sev": "warn", "dc": "eu"}, now=2.0) is not None, ih.mutes({"sev": "warn", "dc": "us"}, now=2.0)
(True, None)
"""

from __future__ import annotations

from forewarn.alerts import config as c
from forewarn.alerts.labels import all_match
from forewarn.alerts.model import Alert
from forewarn.alerts.provider import AlertProvider


class Inhibitor:
    """Inhibit rules with a per-rule cache of the alerts matching their source side."""

    def __init__(self, rules: list[c.InhibitRule], provider: AlertProvider) -> None:
        self.rules = rules
        self.cache: list[dict[str, Alert]] = [{} for _ in rules]
        for a in provider.alerts.values():
            self.observe(a)
        provider.listeners.append(self.observe)

    def observe(self, a: Alert) -> None:
        for rule, cache in zip(self.rules, self.cache, strict=True):
            if all_match(rule.source_matchers, a.labels):
                cache[a.fp] = a

    def mutes(self, labels: dict[str, str], now: float) -> str | None:
        """The fingerprint of an inhibiting alert, or None."""
        for rule, cache in zip(self.rules, self.cache, strict=True):
            if not all_match(rule.target_matchers, labels):
                continue
            both = all_match(rule.source_matchers, labels)
            for src in list(cache.values()):
                if src.resolved_at(now):
                    continue
                if any(src.labels.get(n, "") != labels.get(n, "") for n in rule.equal):
                    continue
                if both and all_match(rule.target_matchers, src.labels):
                    continue
                return src.fp
        return None

    def gc(self, now: float) -> None:
        for cache in self.cache:
            for fp in [fp for fp, a in cache.items() if a.resolved_at(now)]:
                del cache[fp]
