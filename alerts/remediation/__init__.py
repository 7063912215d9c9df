"""Guarded remediation hooks: alert-triggered, signed HTTP calls behind guardrails, fully audited.

Modules: ``config`` (the ``remediations:`` YAML section), ``engine`` (decisions, execution,
retries), ``breaker`` (circuit-breaker transitions), ``state`` (durable SQLite state),
``sender`` (one signed attempt, allowlist), ``signing`` (HMAC scheme and the receiver-side
check), ``audit`` (ClickHouse audit table), ``api`` (approval endpoints mounted by the
router), ``cli`` (``forewarn remediation``).
"""
