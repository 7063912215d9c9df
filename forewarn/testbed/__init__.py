"""A realistic test bed: five shop services under the real OpenTelemetry auto-instrumentation
(Python or Node.js), users with a realistic traffic shape, fault switches with a ground-truth
timeline, and a judge that scores forewarn only by the webhook notifications it sends.

Modules: :mod:`.service` (a Python service), :mod:`.node` (the Node.js variant), :mod:`.fleet`
(processes and ``OTEL_*`` configuration), :mod:`.traffic` (the users), :mod:`.control` (fault
switches), :mod:`.timeline` (scenarios and ground truth), :mod:`.judge`, :mod:`.run` (the runner).
"""
