"""Fuzz the OTLP protobuf decoder (``collector/otlp.py``), as both receivers call it.

Input: one byte choosing the signal (byte % 3: traces, metrics, logs), then the request body.
The clean refusal is :class:`BadData` (400 / INVALID_ARGUMENT). An accepted request must hold:
its payload re-decodes, holds exactly ``items`` items, and the conversion's survey (which counts
the ClickHouse rows) reads it without error and counts the same rows.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["forewarn"]):
    from forewarn.collector.convert_survey import count_rows
    from forewarn.collector.otlp import SPECS, BadData, decode_protobuf

from common import keep_crashes

SIGNALS = ("traces", "metrics", "logs")


def items_in(signal: str, payload: bytes) -> int:
    msg = SPECS[signal].request.FromString(payload)
    if signal == "traces":
        return sum(len(ss.spans) for rs in msg.resource_spans for ss in rs.scope_spans)
    if signal == "logs":
        return sum(len(sl.log_records) for rl in msg.resource_logs for sl in rl.scope_logs)
    return sum(
        len(getattr(m, m.WhichOneof("data")).data_points)
        for rm in msg.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.WhichOneof("data")
    )


@keep_crashes
def test_one_input(data: bytes) -> None:
    if not data:
        return
    signal, body = SIGNALS[data[0] % 3], data[1:]
    try:
        d = decode_protobuf(signal, body)
    except BadData:
        return
    assert d.items >= 0 and d.rejected >= 0
    assert (d.rejected > 0) == bool(d.error_message), d
    assert items_in(signal, d.payload) == d.items, (d.items, items_in(signal, d.payload))
    rows = sum(count_rows(signal, [d.payload]).values())
    assert rows == d.items, f"the conversion counts {rows} rows, the receiver accepted {d.items} items"


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
