"""Fuzz the Python half of the conversion into ClickHouse rows (``collector/convert*.py``).

``insert_requests`` surveys the requests (rows per table, arrays in resources and scopes),
pre-renders array/kvlist values as the Collector's ``AsString()`` does, and re-checks that a
payload decodes when ClickHouse refuses it; ClickHouse itself decodes the rest (not fuzzed here:
a statement costs ~30 ms, see docs/fuzzing.md). Input: one byte choosing the signal, then a
serialized request, which need not be valid. The clean refusal is :class:`BadPayload`. Rendering
must keep the row counts, leave no array/kvlist behind, and be idempotent.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["forewarn"]):
    from forewarn.collector.convert_anyvalue import REQUEST_CLASSES, as_string, prerender
    from forewarn.collector.convert_survey import BadPayload, check_decodable, survey
    from forewarn.collector.otlp_schema import LEVELS

from common import keep_crashes
from otlp_protobuf import SIGNALS


@keep_crashes
def test_one_input(data: bytes) -> None:
    if not data:
        return
    signal, body = SIGNALS[data[0] % 3], data[1:]
    try:
        counts, _ = survey(signal, [body])
    except BadPayload:
        return
    try:
        head = prerender(signal, body, items=False)
    except BadPayload:
        return  # items that do not decode: ClickHouse refuses them, check_decodable names them
    assert survey(signal, [head])[0] == counts
    assert survey(signal, [head])[1] == [False], "array/kvlist left in a resource or scope"
    try:
        check_decodable(signal, [body])
    except BadPayload:
        return
    full = prerender(signal, body)
    assert survey(signal, [full])[0] == counts
    assert prerender(signal, full) == full, "rendering is not idempotent"
    req = REQUEST_CLASSES[signal].FromString(body)
    for r in getattr(req, LEVELS[signal][0]):
        for kv in r.resource.attributes:
            assert isinstance(as_string(kv.value), str)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
