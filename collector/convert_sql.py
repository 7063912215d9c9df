"""The ``INSERT ... SELECT`` statements that flatten OTLP requests into the exporter tables.

ClickHouse reads the length-delimited requests with the :mod:`otlp_schema` structure and
flattens resource → scope → item with nested ``ARRAY JOIN``s; attributes become maps with
``mapFromArrays``. Resource-level columns are computed once per resource, before the item join.
A request still holding an array/kvlist value (which SQL here does not render) stops the statement
with :data:`COMPLEX_MARKER` before anything is written (the caller pre-renders and re-runs it).

>>> sql = select_sql("traces", "otel_traces", "SRC")
>>> sql.startswith("SELECT") and "ARRAY JOIN" in sql and "FROM SRC" in sql
True
>>> all(select_sql("metrics", table, "SRC") for table in METRIC_KINDS)
True
"""

from __future__ import annotations

from forewarn.storage.schema import TABLES

COMPLEX_MARKER = "FOREWARN_COMPLEX_ANYVALUE"
_KIND_NAMES = "['Unspecified','Internal','Server','Client','Producer','Consumer']"
_STATUS_NAMES = "['Unset','Ok','Error']"


def t(expr: str, *names: str) -> str:
    """Named tuple element access, chained: ``t('a', 'b', 'c')`` is ``a.b.c``."""
    for n in names:
        expr = f"tupleElement({expr}, '{n}')"
    return expr


def go_float(x: str) -> str:
    """Go's float64AsString; ClickHouse's shortest form differs only in the '+' of exponents."""
    return (
        f"if(isFinite({x}), replaceRegexpOne(toString({x}), 'e(\\\\d)', 'e+\\\\1'), "
        f"if(isNaN({x}), 'json: unsupported value: NaN', "
        f"if({x} > 0, 'json: unsupported value: +Inf', 'json: unsupported value: -Inf')))"
    )


def any_str(v: str) -> str:
    """pcommon ``AsString`` of a scalar AnyValue tuple (arrays/kvlists arrive pre-rendered)."""
    k = t(v, "value")
    return (
        f"multiIf({k} = 'string', {t(v, 'string_value')}, {k} = 'int', toString({t(v, 'int_value')}), "
        f"{k} = 'bool', if({t(v, 'bool_value')}, 'true', 'false'), "
        f"{k} = 'double', {go_float(t(v, 'double_value'))}, "
        f"{k} = 'bytes', base64Encode({t(v, 'bytes_value')}), '')"
    )


def any_complex(v: str) -> str:
    return f"{t(v, 'value')} IN ('array', 'kvlist')"


def attr_map(kvs: str) -> str:
    return (
        f"mapFromArrays(arrayMap(a -> {t('a', 'key')}, {kvs}), "
        f"arrayMap(a -> {any_str(t('a', 'value'))}, {kvs}))"
    )


def attrs_complex(kvs: str) -> str:
    return f"arrayExists(a -> {any_complex(t('a', 'value'))}, {kvs})"


def hex_id(x: str, size: int) -> str:
    """Lowercase hex of a trace/span id; empty when absent, all-zero or of the wrong length."""
    return f"if(length({x}) = {size} AND {x} != repeat(char(0), {size}), lower(hex({x})), '')"


def ts(x: str) -> str:
    return f"fromUnixTimestamp64Nano(reinterpretAsInt64({x}))"


def _named(kvs: str, key: str) -> str:
    """The stringified value of the first attribute named ``key`` ('' when absent)."""
    first = f"arrayFirst(a -> {t('a', 'key')} = '{key}', {kvs})"
    return any_str(t(first, "value"))


def _throw(conds: list[str]) -> str:
    return f"throwIf({' OR '.join(conds)}, '{COMPLEX_MARKER}') = 0"


# Per signal: the resource list, the scopes list in a resource, the items list in a scope.
_LEVELS = {
    "traces": ("resource_spans", "scope_spans", "spans"),
    "logs": ("resource_logs", "scope_logs", "log_records"),
    "metrics": ("resource_metrics", "scope_metrics", "metrics"),
}
METRIC_KINDS = {
    "otel_metrics_gauge": "gauge",
    "otel_metrics_sum": "sum",
    "otel_metrics_histogram": "histogram",
    "otel_metrics_exponential_histogram": "exponential_histogram",
    "otel_metrics_summary": "summary",
}
IT = "it"  # the row-level item: a span, a log record or a metric data point


def _trace_columns() -> dict[str, str]:
    ev, ln = t(IT, "events"), t(IT, "links")
    return {
        "Timestamp": ts(t(IT, "start_time_unix_nano")),
        "TraceId": hex_id(t(IT, "trace_id"), 16),
        "SpanId": hex_id(t(IT, "span_id"), 8),
        "ParentSpanId": hex_id(t(IT, "parent_span_id"), 8),
        "TraceState": t(IT, "trace_state"),
        "SpanName": t(IT, "name"),
        "SpanKind": f"if({t(IT, 'kind')} BETWEEN 0 AND 5, {_KIND_NAMES}[{t(IT, 'kind')} + 1], '')",
        "ServiceName": "svc",
        "ResourceAttributes": "res_attrs",
        "ScopeName": t("ss", "scope", "name"),
        "ScopeVersion": t("ss", "scope", "version"),
        "SpanAttributes": attr_map(t(IT, "attributes")),
        "Duration": f"{t(IT, 'end_time_unix_nano')} - {t(IT, 'start_time_unix_nano')}",
        "StatusCode": f"if({t(IT, 'status', 'code')} BETWEEN 0 AND 2, "
        f"{_STATUS_NAMES}[{t(IT, 'status', 'code')} + 1], '')",
        "StatusMessage": t(IT, "status", "message"),
        "Events.Timestamp": f"arrayMap(e -> {ts(t('e', 'time_unix_nano'))}, {ev})",
        "Events.Name": f"arrayMap(e -> {t('e', 'name')}, {ev})",
        "Events.Attributes": f"arrayMap(e -> {attr_map(t('e', 'attributes'))}, {ev})",
        "Links.TraceId": f"arrayMap(l -> {hex_id(t('l', 'trace_id'), 16)}, {ln})",
        "Links.SpanId": f"arrayMap(l -> {hex_id(t('l', 'span_id'), 8)}, {ln})",
        "Links.TraceState": f"arrayMap(l -> {t('l', 'trace_state')}, {ln})",
        "Links.Attributes": f"arrayMap(l -> {attr_map(t('l', 'attributes'))}, {ln})",
    }


def _trace_checks() -> list[str]:
    return [
        attrs_complex(t(IT, "attributes")),
        f"arrayExists(e -> {attrs_complex(t('e', 'attributes'))}, {t(IT, 'events')})",
        f"arrayExists(l -> {attrs_complex(t('l', 'attributes'))}, {t(IT, 'links')})",
    ]


def _scope_columns() -> dict[str, str]:
    return {
        "ResourceAttributes": "res_attrs",
        "ResourceSchemaUrl": "res_schema_url",
        "ServiceName": "svc",
        "ScopeName": t("ss", "scope", "name"),
        "ScopeVersion": t("ss", "scope", "version"),
        "ScopeAttributes": attr_map(t("ss", "scope", "attributes")),
        "ScopeDroppedAttrCount": t("ss", "scope", "dropped_attributes_count"),
        "ScopeSchemaUrl": t("ss", "schema_url"),
    }


def _log_columns() -> dict[str, str]:
    time_ns, observed = t(IT, "time_unix_nano"), t(IT, "observed_time_unix_nano")
    return {
        **_scope_columns(),
        "Timestamp": ts(f"if({time_ns} != 0, {time_ns}, {observed})"),
        "TraceId": hex_id(t(IT, "trace_id"), 16),
        "SpanId": hex_id(t(IT, "span_id"), 8),
        "TraceFlags": f"bitAnd({t(IT, 'flags')}, 255)",
        "SeverityText": t(IT, "severity_text"),
        "SeverityNumber": f"bitAnd({t(IT, 'severity_number')}, 255)",
        "Body": any_str(t(IT, "body")),
        "LogAttributes": attr_map(t(IT, "attributes")),
        "EventName": t(IT, "event_name"),
    }


def _number(x: str) -> str:
    """A NumberDataPoint/Exemplar value as Float64: as_int converted, absent as 0."""
    return f"multiIf({t(x, 'value')} = 'as_int', toFloat64({t(x, 'as_int')}), {t(x, 'value')} = 'as_double', {t(x, 'as_double')}, 0.)"


def _exemplar_id(x: str, size: int) -> str:
    # The exporter hex-encodes the fixed-size id array: an absent id is all zeros, not empty.
    return f"if(length({x}) = {size}, lower(hex({x})), repeat('0', {2 * size}))"


def _metric_columns(kind: str) -> dict[str, str]:
    ex = t(IT, "exemplars")
    cols = {
        **_scope_columns(),
        "MetricName": t("m", "name"),
        "MetricDescription": t("m", "description"),
        "MetricUnit": t("m", "unit"),
        "Attributes": attr_map(t(IT, "attributes")),
        "StartTimeUnix": ts(t(IT, "start_time_unix_nano")),
        "TimeUnix": ts(t(IT, "time_unix_nano")),
        "Flags": t(IT, "flags"),
    }
    if kind != "summary":
        cols |= {
            "Exemplars.FilteredAttributes": f"arrayMap(x -> {attr_map(t('x', 'filtered_attributes'))}, {ex})",
            "Exemplars.TimeUnix": f"arrayMap(x -> {ts(t('x', 'time_unix_nano'))}, {ex})",
            "Exemplars.Value": f"arrayMap(x -> {_number('x')}, {ex})",
            "Exemplars.SpanId": f"arrayMap(x -> {_exemplar_id(t('x', 'span_id'), 8)}, {ex})",
            "Exemplars.TraceId": f"arrayMap(x -> {_exemplar_id(t('x', 'trace_id'), 16)}, {ex})",
        }
    if kind in ("gauge", "sum"):
        cols["Value"] = _number(IT)
    else:
        cols |= {"Count": t(IT, "count"), "Sum": t(IT, "sum")}
    if kind in ("sum", "histogram", "exponential_histogram"):
        cols["AggregationTemporality"] = t("m", kind, "aggregation_temporality")
    if kind in ("histogram", "exponential_histogram"):
        cols |= {"Min": t(IT, "min"), "Max": t(IT, "max")}
    if kind == "sum":
        cols["IsMonotonic"] = t("m", kind, "is_monotonic")
    elif kind == "histogram":
        cols |= {"BucketCounts": t(IT, "bucket_counts"), "ExplicitBounds": t(IT, "explicit_bounds")}
    elif kind == "exponential_histogram":
        cols |= {
            "Scale": t(IT, "scale"),
            "ZeroCount": t(IT, "zero_count"),
            "PositiveOffset": t(IT, "positive", "offset"),
            "PositiveBucketCounts": t(IT, "positive", "bucket_counts"),
            "NegativeOffset": t(IT, "negative", "offset"),
            "NegativeBucketCounts": t(IT, "negative", "bucket_counts"),
        }
    elif kind == "summary":
        q = t(IT, "quantile_values")
        cols |= {
            "ValueAtQuantiles.Quantile": f"arrayMap(v -> {t('v', 'quantile')}, {q})",
            "ValueAtQuantiles.Value": f"arrayMap(v -> {t('v', 'value')}, {q})",
        }
    return cols


def _metric_checks(kind: str) -> list[str]:
    checks = [attrs_complex(t(IT, "attributes"))]
    if kind != "summary":
        checks.append(
            f"arrayExists(x -> {attrs_complex(t('x', 'filtered_attributes'))}, {t(IT, 'exemplars')})"
        )
    return checks


def _spec(signal: str, table: str) -> tuple[dict[str, str], list[str], str]:
    """Columns, complex-value checks and the ARRAY JOIN reaching the row-level item."""
    items = _LEVELS[signal][2]
    if signal == "traces":
        return _trace_columns(), _trace_checks(), f"ARRAY JOIN {t('ss', items)} AS {IT}"
    if signal == "logs":
        body = t(IT, "body")
        checks = [attrs_complex(t(IT, "attributes")), any_complex(body)]
        return _log_columns(), checks, f"ARRAY JOIN {t('ss', items)} AS {IT}"
    kind = METRIC_KINDS[table]
    join = f"ARRAY JOIN {t('ss', items)} AS m ARRAY JOIN {t('m', kind, 'data_points')} AS {IT}"
    return _metric_columns(kind), _metric_checks(kind), join


def target_columns(table: str) -> list[str]:
    """The contract columns of ``table``, Nested ones expanded to their dotted sub-columns."""
    out = []
    for name, typ in TABLES[table].columns:
        if typ.startswith("Nested("):
            inner = typ[len("Nested(") : typ.rindex(")")]
            depth, start = 0, 0
            for i, ch in enumerate(inner + ","):
                if ch == "(":
                    depth += 1
                elif ch == ")":
                    depth -= 1
                elif ch == "," and depth == 0:
                    out.append(f"{name}.{inner[start:i].strip().split()[0]}")
                    start = i + 1
        else:
            out.append(name)
    return out


def select_sql(signal: str, table: str, source: str) -> str:
    """The SELECT producing ``table``'s rows (in :func:`target_columns` order) from ``source``."""
    res_list, scopes, _ = _LEVELS[signal]
    cols, checks, item_join = _spec(signal, table)
    res_kvs = t("rs", "resource", "attributes")
    inner = (
        f"SELECT {attr_map(res_kvs)} AS res_attrs, {_named(res_kvs, 'service.name')} AS svc, "
        f"{t('rs', 'schema_url')} AS res_schema_url, {t('rs', scopes)} AS scopes "
        f"FROM {source} ARRAY JOIN {res_list} AS rs "
        f"WHERE {_throw([attrs_complex(res_kvs)])}"
    )
    scope_check = attrs_complex(t("ss", "scope", "attributes"))
    projection = ",\n  ".join(f"{cols[name]} AS `{name}`" for name in target_columns(table))
    return (
        f"SELECT\n  {projection}\nFROM ({inner})\n"
        f"ARRAY JOIN scopes AS ss {item_join}\n"
        f"WHERE {_throw([scope_check, *checks])}"
    )
