"""The remediation engine: decides, guards, signs, sends, retries and audits hook calls.

The router calls :meth:`RemediationEngine.submit` at every group flush. The batch is made
durable in the SQLite inbox and evaluated in the background, one alert instance at a time:

1. idempotency: one action per (hook, group key, fingerprint, startsAt); re-flushes are no-ops;
2. guardrails, in order: URL allowlist, per-group cooldown, per-hook and global rate limits
   (the blast-radius cap), then dry-run (audited, nothing sent) or manual approval;
3. execution: circuit breaker gate, signed call, retries with full-jitter backoff for network
   errors, timeouts, 5xx and 429. The attempt counter is committed before each send, so after a
   restart the action resumes with the same idempotency key.

Resolve actions (``on_resolve``) run only for an alert whose firing action succeeded (or was
dry-run) and skip cooldown, rate limits and approval: undoing must not be blocked by the brakes
meant for doing. Every decision, attempt and breaker transition becomes an audit row.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
from forewarn.alerts.labels import fingerprint as label_fingerprint
from forewarn.alerts.remediation import sender
from forewarn.alerts.remediation.audit import AuditWriter
from forewarn.alerts.remediation.breaker import Breaker
from forewarn.alerts.remediation.config import HookConfig, RemediationsConfig
from forewarn.alerts.remediation.state import (
    CANCELLED,
    DENIED,
    DRY_RUN,
    EXPIRED,
    FAILED,
    PENDING,
    QUEUED,
    REFUSED,
    SUCCEEDED,
    Action,
    State,
)
from prometheus_client import Counter

from forewarn.metrics import metric

log = logging.getLogger(__name__)


EVENTS = metric(
    Counter,
    "forewarn_remediation_events",
    "Remediation decisions, attempts and outcomes (one per audit row).",
    ["hook", "event", "outcome"],
)


class ActionNotFound(KeyError):
    """No action with that id."""


class ActionConflict(ValueError):
    """The action is not waiting for a decision (already decided, expired or never needed one)."""


def idempotency_key(hook: str, group_key: str, fingerprint: str, starts_at: str, kind: str = "fire") -> str:
    """Stable across retries and restarts: the same alert instance always yields the same key.

    >>> idempotency_key("restart", "{}:{a=\\"b\\"}", "0f8e", "2024-01-01T00:00:00Z")[:12]
    '99ba86298187'
    """
    parts = [hook, group_key, fingerprint, starts_at] + ([kind] if kind != "fire" else [])
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


class RemediationEngine:
    """Guarded remediation hooks; one instance per router process.

    >>> import asyncio, tempfile, pathlib
    >>> from forewarn.alerts.remediation.config import parse_remediations
    >>> eng = RemediationEngine(parse_remediations({}), pathlib.Path(tempfile.mkdtemp()),
    ...                         "chdb:///nonexistent", "otel")
    >>> asyncio.run(eng.submit("g", "r", [{"status": "firing", "labels": {"a": "b"}}]))  # no hooks: no-op
    """

    def __init__(
        self,
        config: RemediationsConfig,
        data_dir: Path,
        storage_dsn: str,
        database: str,
        cluster: str | None = None,
    ):
        self.config = config
        self._dir = Path(data_dir)
        self._dsn, self._db, self._cluster = storage_dsn, database, cluster
        self._state: State | None = None
        self.audit: AuditWriter | None = None
        self._secret = b""
        self._http: httpx.AsyncClient | None = None
        self._tls_clients: dict[Any, httpx.AsyncClient] = {}
        self._sem: asyncio.Semaphore | None = None
        self._wake = asyncio.Event()
        self._runners: dict[str, asyncio.Task[None]] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._started = False
        self._allow_cache: dict[str, bool] = {}

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Open state, start the audit writer and background loops, resume unfinished actions."""
        if self._started:
            return
        if self.config.hooks:
            self._secret = self.config.read_secret()
        self._tls_clients = self._clients_for(self.config)  # bad certificate files fail here, first
        self._state = await asyncio.to_thread(State, self._dir / "remediation" / "state.sqlite")
        self.audit = AuditWriter(self._state, self._dsn, self._db, self._cluster)
        self.audit.start()
        self._http = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        self._sem = asyncio.Semaphore(self.config.max_concurrency)
        self._wake = asyncio.Event()
        self._started = True
        self._loops = [
            asyncio.create_task(self._admission_loop(), name="remediation-admission"),
            asyncio.create_task(self._maintenance_loop(), name="remediation-maintenance"),
        ]
        for a in await asyncio.to_thread(self._state.actions_in, (QUEUED,)):
            self._spawn(a.id)
        self._wake.set()  # batches left in the inbox by a previous run

    async def reload(self, config: RemediationsConfig) -> None:
        """Apply a new ``remediations:`` section (SIGHUP): hooks, guardrails and the signing key.

        Queued actions of a hook that no longer exists are refused when they next run;
        concurrency and backlog limits keep their values until a restart.
        """
        secret = config.read_secret() if config.hooks else b""
        clients = self._clients_for(config)
        old, self._tls_clients = self._tls_clients, clients
        self.config, self._secret, self._allow_cache = config, secret, {}
        for client in old.values():
            await client.aclose()

    @staticmethod
    def _clients_for(config: RemediationsConfig) -> dict[Any, httpx.AsyncClient]:
        """One client per distinct ``tls_config`` (httpx binds TLS settings to the client)."""
        clients: dict[Any, httpx.AsyncClient] = {}
        for h in config.hooks:
            verify = h.tls_config.ssl_context()
            if verify is not True and h.tls_config not in clients:
                clients[h.tls_config] = httpx.AsyncClient(
                    verify=verify, follow_redirects=False, trust_env=False
                )
        return clients

    async def stop(self) -> None:
        """Stop background work; unfinished actions stay queued and resume on the next start."""
        if not self._started:
            return
        self._started = False
        tasks = [*self._loops, *self._runners.values()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loops, self._runners = [], {}
        for client in [self._http, *self._tls_clients.values()]:
            if client is not None:
                await client.aclose()
        self._tls_clients = {}
        if self.audit:
            if not self.audit.last_error:  # a store that is down keeps the rows in the outbox
                await asyncio.to_thread(self.audit.flushed, 5.0)
            await asyncio.to_thread(self.audit.stop)
        if self._state:
            self._state.close()
            self._state = None

    @property
    def state(self) -> State:
        if self._state is None:
            raise RuntimeError("remediation engine is not started")
        return self._state

    # -- intake --------------------------------------------------------------------------------
    async def submit(self, group_key: str, receiver: str, alerts: list[dict[str, Any]]) -> None:
        """Take one group flush; durable on return, evaluated in the background.

        Only alerts some hook matches are kept. When more than ``max_pending`` batches wait,
        this waits for the backlog to shrink (backpressure instead of unbounded memory).
        """
        if not self.config.hooks:
            return
        relevant = [
            a for a in alerts if isinstance(a, dict) and any(h.matches(_labels(a)) for h in self.config.hooks)
        ]
        if not relevant:
            return
        if not self._started:
            raise RuntimeError("remediation engine is not started")
        waiting = await asyncio.to_thread(self.state.enqueue, group_key, receiver, relevant)
        self._wake.set()
        while waiting > self.config.max_pending and self._started:
            await asyncio.sleep(0.05)
            waiting = await asyncio.to_thread(self.state.inbox_size)

    async def _admission_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                while batch := await asyncio.to_thread(self.state.inbox_batch, 50):
                    for action_id in await asyncio.to_thread(self._admit, batch):
                        self._spawn(action_id)
                    self.audit and self.audit.wake()
            except (sqlite3.Error, OSError):
                log.exception("remediation: evaluating submitted alerts failed; retrying")
                await asyncio.sleep(1.0)
                self._wake.set()

    def _admit(self, batch: list[tuple[int, str, str, list[dict[str, Any]]]]) -> list[str]:
        """Decide each alert of each batch; returns the actions to execute now."""
        run: list[str] = []
        for inbox_id, group_key, receiver, alerts in batch:
            try:
                with self.state.tx() as c:
                    for alert in alerts:
                        for hook in self.config.hooks:
                            if hook.matches(_labels(alert)):
                                action_id = self._decide(c, hook, group_key, receiver, alert)
                                if action_id:
                                    run.append(action_id)
                    self.state.drop_inbox(c, inbox_id)
            except (sqlite3.Error, OSError):
                raise  # the state file itself is in trouble: retried by the admission loop
            except Exception:
                # A batch this code cannot evaluate would block every later one: set it aside
                # loudly (its content is in the log) rather than retry it forever.
                log.exception("remediation: cannot evaluate batch for group %s: %r", group_key, alerts)
                with self.state.tx() as c:
                    self.state.drop_inbox(c, inbox_id)
        return run

    def _decide(
        self, c: sqlite3.Connection, hook: HookConfig, group_key: str, receiver: str, alert: dict[str, Any]
    ) -> str | None:
        labels = _labels(alert)
        fp = str(alert.get("fingerprint") or label_fingerprint(labels))
        starts_at = str(alert.get("startsAt") or "")
        resolved = alert.get("status") == "resolved"
        if resolved:
            fired = self.state.action_by_key(c, idempotency_key(hook.name, group_key, fp, starts_at))
            if fired is not None and fired.state in (PENDING, QUEUED):
                # The problem went away: do not keep asking a human, nor keep retrying a fix.
                self._finish(fired, CANCELLED, "alert_resolved")
                return None
            if hook.on_resolve is None or fired is None or fired.state not in (SUCCEEDED, DRY_RUN):
                return None
            kind, url, method = "resolve", hook.on_resolve.url, hook.on_resolve.method
        else:
            kind, url, method = "fire", hook.url, hook.method
        key = idempotency_key(hook.name, group_key, fp, starts_at, kind)
        now = time.time()
        if self.state.seen_again(c, key, now):
            return None  # a re-flush of an alert instance already decided
        dry = self.config.dry_run if hook.dry_run is None else hook.dry_run
        a = Action(
            id=uuid.uuid4().hex[:16],
            idem_key=key,
            hook=hook.name,
            kind=kind,
            group_key=group_key,
            receiver=receiver,
            fingerprint=fp,
            starts_at=starts_at,
            alert=orjson.dumps(alert).decode(),
            url=url,
            method=method,
            state=QUEUED,
            dry_run=int(dry),
            created_at=now,
            updated_at=now,
        )
        reason = self._guardrail(c, hook, a, now)
        if reason:
            a.state, a.reason = REFUSED, reason
            self.state.insert_action(c, a)
            self._audit(c, a, "refused", reason, reason=reason)
            return None
        if kind == "fire":
            self.state.record_execution(c, now, hook.name, group_key)
        needs_approval = hook.require_approval and kind == "fire"
        if dry:
            a.state = DRY_RUN
            self.state.insert_action(c, a)
            self._audit(
                c,
                a,
                "dry_run",
                "not_sent",
                reason=f"would call {method} {url}",
                approval_state="required" if needs_approval else "",
            )
            return None
        if needs_approval:
            a.state = PENDING
            a.expires_at = now + (hook.approval_timeout or self.config.approval_timeout)
            self.state.insert_action(c, a)
            self._audit(c, a, "approval_requested", "pending", approval_state="pending")
            return None
        self.state.insert_action(c, a)
        self._audit(c, a, "queued", "queued")
        return a.id

    def _guardrail(self, c: sqlite3.Connection, hook: HookConfig, a: Action, now: float) -> str:
        """The name of the first guardrail refusing this action, or '' when it may proceed."""
        if not self._allowed(a.url):
            return "allowlist"
        if a.kind != "fire":
            return ""
        if hook.cooldown > 0:
            last = self.state.last_execution(c, hook.name, a.group_key)
            if last is not None and now - last < hook.cooldown:
                return "cooldown"
        if hook.max_executions is not None:
            window = hook.window or self.config.window
            if self.state.executions_since(c, now - window, hook.name) >= hook.max_executions:
                return "hook_rate_limit"
        if self.state.executions_since(c, now - self.config.window) >= self.config.max_executions:
            return "blast_radius"
        return ""

    def _allowed(self, url: str) -> bool:
        hit = self._allow_cache.get(url)
        if hit is None:
            if len(self._allow_cache) > 10_000:
                self._allow_cache.clear()
            hit = self._allow_cache[url] = sender.allowed(url, self.config.allowlist)
        return hit

    # -- execution -------------------------------------------------------------------------------
    def _spawn(self, action_id: str) -> None:
        if not self._started or action_id in self._runners:
            return
        task = asyncio.create_task(self._execute(action_id), name=f"remediation-{action_id}")
        self._runners[action_id] = task
        task.add_done_callback(lambda t, i=action_id: self._runners.pop(i, None))

    async def _execute(self, action_id: str) -> None:
        while True:
            try:
                return await self._execute_once(action_id)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug or a full disk must not strand the action: try again later
                log.exception("remediation: executing action %s failed; retrying in 5s", action_id)
                await asyncio.sleep(5.0)

    async def _execute_once(self, action_id: str) -> None:
        assert self._sem is not None and self._http is not None
        a: Action | None = await asyncio.to_thread(self.state.get_action, action_id)
        if a is None or a.state != QUEUED:
            return
        while True:
            hook = self.config.hook(a.hook)
            if hook is None:  # the hook was removed from the configuration
                await asyncio.to_thread(self._finish, a, REFUSED, "hook_removed")
                return
            delay = a.next_attempt_at - time.time()
            if delay > 0:  # backoff waits outside the concurrency slots
                await asyncio.sleep(delay)
            async with self._sem:
                a = await asyncio.to_thread(self._begin_attempt, action_id, hook)
                if a is None:  # decided meanwhile (cancelled, refused by the breaker)
                    return
                try:
                    res = await self._send(a, hook)
                except asyncio.CancelledError:
                    self._interrupted(a)  # stopping mid-call: audit it; the action stays queued
                    raise
                if await asyncio.to_thread(self._end_attempt, a, hook, res):
                    return

    async def _send(self, a: Action, hook: HookConfig) -> sender.AttemptResult:
        assert self._http is not None
        headers = hook.on_resolve.headers if a.kind == "resolve" and hook.on_resolve else hook.headers
        return await sender.attempt(
            self._tls_clients.get(hook.tls_config, self._http),
            method=a.method,
            url=a.url,
            body=self._body(a),
            secret=self._secret,
            idem_key=a.idem_key,
            action_id=a.id,
            attempt_no=a.attempts,
            timeout=hook.timeout,
            headers=headers,
        )

    def _interrupted(self, a: Action) -> None:
        try:
            with self.state.tx() as c:
                self._audit(c, a, "attempt", "interrupted", attempt=a.attempts, error="engine stopped")
        except sqlite3.Error:
            log.exception("remediation: could not audit an interrupted attempt")

    def _begin_attempt(self, action_id: str, hook: HookConfig) -> Action | None:
        """Pass the breaker gate and count the attempt durably before sending (or refuse)."""
        with self.state.tx() as c:
            a = self.state.get_action(action_id)
            if a is None or a.state != QUEUED:
                return None
            if not self._allowed(a.url):  # the allowlist may have shrunk by a reload
                self._finish(a, REFUSED, "allowlist")
                return None
            b = self.state.breaker(c, hook.name)
            before, trial, now = b.state, b.trial, time.time()
            admitted = b.admit(a.id, now, hook.breaker.reset_after)
            if (b.state, b.trial) != (before, trial):
                self.state.save_breaker(c, b)
            if b.state != before:
                self._audit(c, a, "breaker", b.state, breaker_state=b.state, reason=f"{before} -> {b.state}")
            if not admitted:
                self._finish(a, REFUSED, "breaker_open", breaker_state=b.state)
                return None
            a.attempts += 1
            a.updated_at = now
            self.state.update_action(c, a)
            return a

    def _end_attempt(self, a: Action, hook: HookConfig, res: sender.AttemptResult) -> bool:
        """Record one attempt and its consequences; True when the action is finished."""
        with self.state.tx() as c:
            current = self.state.get_action(a.id)
            cancelled = current is not None and current.state == CANCELLED
            b = self.state.breaker(c, hook.name)
            a.last_status, a.last_error, a.updated_at = res.status, res.error, time.time()
            outcome = "success" if res.ok else ("retryable_error" if res.retryable else "error")
            self._audit(
                c,
                a,
                "attempt",
                outcome,
                attempt=a.attempts,
                status_code=res.status,
                latency_ms=res.latency_ms,
                error=res.error,
                breaker_state=b.state,
            )
            self._breaker_after(c, a, hook, b, res.ok)
            if cancelled and not res.ok:  # resolved while this attempt was in flight: stop here
                a.state, a.reason = CANCELLED, current.reason if current else ""
                self.state.update_action(c, a)
                return True
            if res.ok:  # even if resolved meanwhile: the call did happen
                self._finish(a, SUCCEEDED, "", attempt=a.attempts, status_code=res.status)
                return True
            if res.retryable and a.attempts <= hook.retries:
                delay = sender.backoff_delay(a.attempts, hook.backoff.initial, hook.backoff.max)
                if res.retry_after is not None:
                    delay = max(delay, min(res.retry_after, hook.backoff.max))
                a.next_attempt_at = time.time() + delay
                self.state.update_action(c, a)
                return False
            self._finish(a, FAILED, res.error, attempt=a.attempts, status_code=res.status, error=res.error)
            return True

    def _breaker_after(
        self, c: sqlite3.Connection, a: Action, hook: HookConfig, b: Breaker, ok: bool
    ) -> None:
        before = b.state
        if b.record(ok, time.time(), hook.breaker.failures):
            self._audit(c, a, "breaker", b.state, breaker_state=b.state, reason=f"{before} -> {b.state}")
        self.state.save_breaker(c, b)

    def _finish(self, a: Action, state: str, reason: str, **audit: Any) -> None:
        with self.state.tx() as c:
            a.state, a.reason, a.updated_at = state, reason[:500], time.time()
            self.state.update_action(c, a)
            event = {SUCCEEDED: "succeeded", FAILED: "failed", REFUSED: "refused"}.get(state, state)
            self._audit(c, a, event, state if state != REFUSED else reason, reason=reason, **audit)

    def _body(self, a: Action) -> bytes:
        """The JSON body: identical on every attempt, so the signature covers stable content."""
        return orjson.dumps(
            {
                "version": "1",
                "actionId": a.id,
                "idempotencyKey": a.idem_key,
                "hook": a.hook,
                "kind": a.kind,
                "groupKey": a.group_key,
                "receiver": a.receiver,
                "alert": orjson.loads(a.alert),
                "approvedBy": a.decided_by,
            }
        )

    # -- approvals ----------------------------------------------------------------------------
    async def list_actions(self, state: str | None = None, limit: int = 1000) -> list[Action]:
        await asyncio.to_thread(self._expire_pending)
        return await asyncio.to_thread(self.state.list_actions, state, limit)

    async def decide(self, action_id: str, approve: bool, by: str, comment: str = "") -> Action:
        """Approve or deny a pending action; raises ActionNotFound or ActionConflict."""
        a = await asyncio.to_thread(self._decide_pending, action_id, approve, by, comment)
        if approve:
            self._spawn(a.id)
        return a

    def _decide_pending(self, action_id: str, approve: bool, by: str, comment: str) -> Action:
        self._expire_pending()
        with self.state.tx() as c:
            a = self.state.get_action(action_id)
            if a is None:
                raise ActionNotFound(action_id)
            if a.state != PENDING:
                raise ActionConflict(f"action {action_id} is {a.state}, not pending approval")
            now = time.time()
            a.state = QUEUED if approve else DENIED
            a.decided_by, a.decision_comment, a.decided_at, a.updated_at = by, comment, now, now
            self.state.update_action(c, a)
            verdict = "approved" if approve else "denied"
            self._audit(c, a, verdict, verdict, approval_state=verdict, actor=by, comment=comment)
            return a

    def _expire_pending(self) -> None:
        now = time.time()
        with self.state.tx() as c:
            for a in self.state.actions_in((PENDING,)):
                if a.expires_at is not None and a.expires_at <= now:
                    a.state, a.reason, a.updated_at = EXPIRED, "approval_timeout", now
                    self.state.update_action(c, a)
                    self._audit(c, a, "approval_expired", "expired", approval_state="expired")

    async def _maintenance_loop(self) -> None:
        keep = max(
            [
                self.config.window,
                *(h.cooldown for h in self.config.hooks),
                *(h.window or 0 for h in self.config.hooks),
            ]
        )
        while True:
            await asyncio.sleep(1.0)
            try:
                await asyncio.to_thread(self._expire_pending)
                now = time.time()
                await asyncio.to_thread(self.state.prune, now - keep - 1, now - self.config.retention)
            except (sqlite3.Error, OSError):
                log.exception("remediation maintenance failed")
            if self.audit:
                self.audit.wake()

    # -- audit --------------------------------------------------------------------------------
    def _audit(self, c: sqlite3.Connection, a: Action, event: str, outcome: str, **extra: Any) -> None:
        labels = _labels(orjson.loads(a.alert))
        row = {
            "ts": time.time(),
            "event": event,
            "outcome": outcome,
            "hook": a.hook,
            "kind": a.kind,
            "action_id": a.id,
            "idempotency_key": a.idem_key,
            "group_key": a.group_key,
            "receiver": a.receiver,
            "alertname": labels.get("alertname", ""),
            "fingerprints": [a.fingerprint],
            "labels": labels,
            "method": a.method,
            "url": a.url,
            "attempt": a.attempts,
            "dry_run": bool(a.dry_run),
            "approval_state": _approval_state(a),
            "actor": a.decided_by,
            "comment": a.decision_comment,
            **extra,
        }
        self.state.add_audit(c, row)
        EVENTS.labels(a.hook, event, outcome).inc()

    async def audit_flushed(self, timeout: float = 10.0) -> bool:
        """Wait until every audit row so far is in ClickHouse."""
        return bool(self.audit) and await asyncio.to_thread(self.audit.flushed, timeout)  # type: ignore[union-attr]

    def status(self) -> dict[str, Any]:
        """Summary for status pages: breaker states and the audit backlog."""
        return {
            "breakers": {b.hook: b.state for b in self.state.breakers()},
            "auditBacklog": self.state.audit_backlog(),
            "auditDropped": self.audit.dropped if self.audit else 0,
        }


def _labels(alert: dict[str, Any]) -> dict[str, str]:
    labels = alert.get("labels")
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def _approval_state(a: Action) -> str:
    return {PENDING: "pending", DENIED: "denied", EXPIRED: "expired"}.get(
        a.state, "approved" if a.decided_by else ""
    )
