"""Aggregation groups and their timers, and the flush pipeline (mute stages, dedup, retries).

Mirrors Alertmanager 0.25's ``dispatch`` and ``notify`` packages on one asyncio loop: each
group is a task that sleeps until its next flush; a flush runs inhibition, time intervals and
silences, hands the survivors to remediation, then for each integration decides by the
notification log whether to send, retries until the flush deadline, and logs only successes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from forewarn.alerts import config as c
from forewarn.alerts.inhibit import Inhibitor
from forewarn.alerts.labels import sort_by_labels
from forewarn.alerts.metrics import FLUSH_LAG, NOTIFICATIONS, NOTIFY_FAILED, NOTIFY_LATENCY
from forewarn.alerts.model import Alert
from forewarn.alerts.notifiers import Flush, HTTPClients, Integration, NotifyError, build_integrations
from forewarn.alerts.provider import AlertProvider
from forewarn.alerts.routing import RouteNode, build_tree, group_key
from forewarn.alerts.silences import Silences
from forewarn.alerts.state import NflogEntry, StateStore
from forewarn.alerts.timeintervals import any_contains

log = logging.getLogger(__name__)

MIN_NOTIFY_TIMEOUT = 10.0  # notify.MinTimeout: a flush may retry at least this long
CLEANUP_INTERVAL = 30.0  # empty groups are removed by this ticker, as in Alertmanager

SubmitFn = Callable[[str, str, list[dict[str, Any]]], Awaitable[None]]


class AggrGroup:
    """Alerts of one (route, group labels); a task flushes them on Alertmanager's timers."""

    def __init__(
        self, dispatcher: Dispatcher, route: RouteNode, labels: dict[str, str], restored: bool
    ) -> None:
        self.d, self.route, self.labels = dispatcher, route, labels
        self.key = group_key(route, labels)
        self.alerts: dict[str, Alert] = {}
        self.has_flushed = False
        loop = asyncio.get_running_loop()
        self.next_at = loop.time() + route.group_wait
        # A group rebuilt from stored alerts after a restart has no Alertmanager counterpart
        # until a client re-sends one of its alerts (Prometheus does every minute): that post
        # "creates" it, with Alertmanager's timers. If nobody re-sends within the dispatcher's
        # resend grace, it flushes anyway, so no accepted alert or resolution is lost.
        self.provisional = restored
        if restored:
            self.next_at = loop.time() + max(route.group_wait, dispatcher.resend_grace)
        self._wake = asyncio.Event()
        self.task = loop.create_task(self._run(), name=f"alert-group {self.key}")

    def insert(self, alert: Alert, live: bool = True) -> None:
        self.alerts[alert.fp] = alert
        if not live:
            return
        loop = asyncio.get_running_loop()
        if self.provisional:
            self.provisional = False
            self.next_at = loop.time() + self.route.group_wait
            self._wake.set()
        if not self.has_flushed and alert.starts_at + self.route.group_wait < time.time():
            self.next_at = loop.time()
            self._wake.set()

    def empty(self) -> bool:
        return not self.alerts

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            delay = self.next_at - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                self._wake.clear()
                continue
            FLUSH_LAG.observe(-delay)
            self.next_at = loop.time() + self.route.group_interval
            self.has_flushed, self.provisional = True, False
            try:
                await self._flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("flush of group %s failed", self.key)

    async def _flush(self) -> None:
        if not self.alerts:
            return
        now = time.time()
        batch = []
        for a in self.alerts.values():
            b = a.copy()
            if not b.resolved_at(now):
                b.ends_at = 0.0
            batch.append(b)
        batch = sort_by_labels(batch, key=lambda a: a.labels)
        deadline = max(self.route.group_interval, MIN_NOTIFY_TIMEOUT)
        try:
            ok = await asyncio.wait_for(self.d.pipeline.run(self, batch, now), deadline)
        except TimeoutError:
            ok = False
        if ok:
            t = time.time()
            for a in batch:
                cur = self.alerts.get(a.fp)
                if cur is not None and a.resolved_at(t) and cur.updated_at == a.updated_at:
                    del self.alerts[a.fp]

    def stop(self) -> None:
        self.task.cancel()


class Pipeline:
    """Mute stages then, per integration, dedup → send with retries → notification log."""

    def __init__(
        self,
        cfg: c.AlertsConfig,
        inhibitor: Inhibitor,
        silences: Silences,
        store: StateStore,
        clients: HTTPClients,
        external_url: str,
        submit: SubmitFn | None,
    ) -> None:
        self.cfg, self.inhibitor, self.silences, self.store = cfg, inhibitor, silences, store
        self.intervals = cfg.intervals()
        self.integrations = {r.name: build_integrations(r, cfg.global_, clients) for r in cfg.receivers}
        self.external_url, self.submit = external_url, submit

    def muted(self, route: RouteNode, alerts: list[Alert], now: float) -> list[Alert]:
        """The alerts left after inhibition, time intervals and silences ([] when all muted)."""
        alerts = [a for a in alerts if self.inhibitor.mutes(a.labels, now) is None]
        if not alerts:
            return []
        at = datetime.fromtimestamp(now, UTC)
        if route.active_time_intervals and not any(
            any_contains(self.intervals[n], at) for n in route.active_time_intervals
        ):
            return []
        if any(any_contains(self.intervals[n], at) for n in route.mute_time_intervals):
            return []
        return [a for a in alerts if not self.silences.mutes(a.labels, now)]

    async def run(self, group: AggrGroup, alerts: list[Alert], now: float) -> bool:
        route = group.route
        alerts = self.muted(route, alerts, now)
        if not alerts:
            return True
        if self.submit is not None:
            try:
                await self.submit(group.key, route.receiver, [a.webhook_dict(now) for a in alerts])
            except Exception:
                log.exception("remediation submit failed for group %s", group.key)
        flush = Flush(route.receiver, group.key, group.labels, self.external_url, now)
        integrations = self.integrations.get(route.receiver, [])
        results = await asyncio.gather(*(self._integration(i, flush, route, alerts) for i in integrations))
        return all(results)

    @staticmethod
    def needs_update(
        entry: NflogEntry | None, firing: set[str], resolved: set[str], send_resolved: bool, repeat: float
    ) -> bool:
        """``DedupStage.needsUpdate`` (see the module docstring of the reference for the five rules)."""
        if entry is None:
            return bool(firing)
        if not firing <= entry.firing:
            return True
        if not firing:
            return bool(entry.firing)
        if send_resolved and not resolved <= entry.resolved:
            return True
        return entry.ts < time.time() - repeat

    async def _integration(self, integ: Integration, f: Flush, route: RouteNode, alerts: list[Alert]) -> bool:
        firing = {a.fp for a in alerts if not a.resolved_at(f.now)}
        resolved = {a.fp for a in alerts if a.resolved_at(f.now)}
        entry = self.store.get_nflog(f.receiver, integ.name, integ.idx, f.group_key)
        if not self.needs_update(entry, firing, resolved, integ.send_resolved, route.repeat_interval):
            return True
        sent = alerts if integ.send_resolved else [a for a in alerts if not a.resolved_at(f.now)]
        if sent and not await self._send(integ, f, sent):
            return False
        self.store.put_nflog(
            NflogEntry(
                f.receiver,
                integ.name,
                integ.idx,
                f.group_key,
                frozenset(firing),
                frozenset(resolved),
                time.time(),
            )
        )
        return True

    async def _send(self, integ: Integration, f: Flush, alerts: list[Alert]) -> bool:
        """Exponential backoff (0.5 s × 1.5, ±50 % jitter, ≤ 60 s) until the caller's deadline."""
        interval, attempt, last = 0.5, 0, ""
        while True:
            attempt += 1
            t0 = time.perf_counter()
            try:
                await integ.notify(f, alerts, timeout=MIN_NOTIFY_TIMEOUT)
            except NotifyError as e:
                NOTIFY_FAILED.labels(integ.name).inc()
                if e.retry and str(e) != last:
                    log.warning("%s/%s[%d] attempt %d: %s", f.receiver, integ.name, integ.idx, attempt, e)
                last = str(e)
                if not e.retry:
                    log.error("%s/%s[%d]: giving up: %s", f.receiver, integ.name, integ.idx, e)
                    return False
            else:
                NOTIFICATIONS.labels(integ.name).inc()
                NOTIFY_LATENCY.labels(integ.name).observe(time.perf_counter() - t0)
                return True
            await asyncio.sleep(interval * random.uniform(0.5, 1.5))
            interval = min(interval * 1.5, 60.0)


class Dispatcher:
    """Routes every stored alert into its groups; owns the groups and their cleanup ticker."""

    def __init__(
        self,
        cfg: c.AlertsConfig,
        provider: AlertProvider,
        silences: Silences,
        store: StateStore,
        clients: HTTPClients,
        external_url: str,
        submit: SubmitFn | None = None,
        resend_grace: float = 90.0,
    ) -> None:
        self.cfg, self.provider, self.store = cfg, provider, store
        self.resend_grace = resend_grace
        self.tree = build_tree(cfg.route)
        self.inhibitor = Inhibitor(cfg.inhibit_rules, provider)
        try:
            self.pipeline = Pipeline(cfg, self.inhibitor, silences, store, clients, external_url, submit)
        except BaseException:  # e.g. a TLS file of a receiver: the inhibitor must not stay subscribed
            provider.listeners.remove(self.inhibitor.observe)
            raise
        self.groups: dict[RouteNode, dict[tuple[tuple[str, str], ...], AggrGroup]] = {}
        self._cleanup: asyncio.Task[None] | None = None

    def start(self, restored: bool = True) -> None:
        """Begin routing: known alerts first (as Alertmanager's subscription replays them), into
        provisional groups when ``restored`` from the state store after a restart (see
        :class:`AggrGroup`); a reload re-routes them like fresh posts, as Alertmanager does."""
        for a in list(self.provider.alerts.values()):
            self.process(a, live=not restored)
        self.provider.listeners.append(self.process)
        self._cleanup = asyncio.get_running_loop().create_task(self._cleanup_loop())

    def process(self, alert: Alert, live: bool = True) -> None:
        for route in self.tree.match(alert.labels):
            labels = route.group_labels(alert.labels)
            groups = self.groups.setdefault(route, {})
            gfp = tuple(sorted(labels.items()))
            ag = groups.get(gfp)
            if ag is None:
                ag = groups[gfp] = AggrGroup(self, route, labels, restored=not live)
            ag.insert(alert, live)

    async def _cleanup_loop(self) -> None:
        while True:
            await asyncio.sleep(CLEANUP_INTERVAL)
            for groups in self.groups.values():
                for gfp in [k for k, g in groups.items() if g.empty()]:
                    groups.pop(gfp).stop()
            self.inhibitor.gc(time.time())

    def all_groups(self) -> list[AggrGroup]:
        return [g for groups in self.groups.values() for g in groups.values()]

    async def stop(self) -> None:
        tasks = [g.task for g in self.all_groups()]
        if self._cleanup is not None:
            self._cleanup.cancel()
            tasks.append(self._cleanup)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.groups.clear()
        for fn in (self.process, self.inhibitor.observe):
            if fn in self.provider.listeners:
                self.provider.listeners.remove(fn)
