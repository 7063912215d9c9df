"""Fuzz the OTLP/JSON decoder (``collector/otlp.py`` ``decode_json``), as the HTTP receiver calls it.

Input: one byte choosing the signal (byte % 3: traces, metrics, logs), then the JSON body.
The clean refusal is :class:`BadData` (400). An accepted request must hold as for protobuf:
the payload re-decodes with ``items`` items and the conversion counts the same rows.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["forewarn"]):
    from forewarn.collector.convert_survey import count_rows
    from forewarn.collector.otlp import BadData, decode_json

from common import keep_crashes
from otlp_protobuf import SIGNALS, items_in


@keep_crashes
def test_one_input(data: bytes) -> None:
    if not data:
        return
    signal, body = SIGNALS[data[0] % 3], data[1:]
    try:
        d = decode_json(signal, body)
    except BadData:
        return
    assert items_in(signal, d.payload) == d.items
    rows = sum(count_rows(signal, [d.payload]).values())
    assert rows == d.items, f"the conversion counts {rows} rows, the receiver accepted {d.items} items"


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
