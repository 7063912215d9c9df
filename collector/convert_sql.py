"""The ``INSERT ... SELECT`` statements that flatten OTLP requests into the exporter tables.

ClickHouse reads the length-delimited requests with the :mod:`otlp_schema` structure and
flattens resource → scope → item with nested ``ARRAY JOIN``s; attributes become maps with
``mapFromArrays``. Resource-level columns are computed once per resource, before the item join.
A request still holding an array/kvlist value (which SQL here does not render) stops the statement
with :data:`COMPLEX_MARKER` before anything is written (the caller pre-renders and re-runs it).

>>> sql = select_sql("traces", "otel_traces", "SRC")
>>> sql.startswith("SELECT") and "ARRAY JOIN" in sql and "FROM SRC" in sql
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


# Per signal: the resource-level projection (computed once per resource), the scopes array and
# item array names, and the alias of the item inside the statement.
_LEVELS = {
    "traces": ("resource_spans", "scope_spans", "spans"),
    "logs": ("resource_logs", "scope_logs", "log_records"),
    "metrics": ("resource_metrics", "scope_metrics", "metrics"),
}

_METRIC_KINDS = {
    "otel_metrics_gauge": "gauge",
    "otel_metrics_sum": "sum",
    "otel_metrics_histogram": "histogram",
    "otel_metrics_exponential_histogram": "exponential_histogram",
    "otel_metrics_summary": "summary",
}


def _trace_columns() -> dict[str, str]:
    sp = "sp"
    ev = f"{t(sp, 'events')}"
    ln = f"{t(sp, 'links')}"
    return {
        "Timestamp": ts(t(sp, "start_time_unix_nano")),
        "TraceId": hex_id(t(sp, "trace_id"), 16),
        "SpanId": hex_id(t(sp, "span_id"), 8),
        "ParentSpanId": hex_id(t(sp, "parent_span_id"), 8),
        "TraceState": t(sp, "trace_state"),
        "SpanName": t(sp, "name"),
        "SpanKind": f"if({t(sp, 'kind')} BETWEEN 0 AND 5, {_KIND_NAMES}[{t(sp, 'kind')} + 1], '')",
        "ServiceName": "svc",
        "ResourceAttributes": "res_attrs",
        "ScopeName": t("ss", "scope", "name"),
        "ScopeVersion": t("ss", "scope", "version"),
        "SpanAttributes": attr_map(t(sp, "attributes")),
        "Duration": f"{t(sp, 'end_time_unix_nano')} - {t(sp, 'start_time_unix_nano')}",
        "StatusCode": f"if({t(sp, 'status', 'code')} BETWEEN 0 AND 2, "
        f"{_STATUS_NAMES}[{t(sp, 'status', 'code')} + 1], '')",
        "StatusMessage": t(sp, "status", "message"),
        "Events.Timestamp": f"arrayMap(e -> {ts(t('e', 'time_unix_nano'))}, {ev})",
        "Events.Name": f"arrayMap(e -> {t('e', 'name')}, {ev})",
        "Events.Attributes": f"arrayMap(e -> {attr_map(t('e', 'attributes'))}, {ev})",
        "Links.TraceId": f"arrayMap(l -> {hex_id(t('l', 'trace_id'), 16)}, {ln})",
        "Links.SpanId": f"arrayMap(l -> {hex_id(t('l', 'span_id'), 8)}, {ln})",
        "Links.TraceState": f"arrayMap(l -> {t('l', 'trace_state')}, {ln})",
        "Links.Attributes": f"arrayMap(l -> {attr_map(t('l', 'attributes'))}, {ln})",
    }


def _trace_checks() -> list[str]:
    sp = "sp"
    return [
        attrs_complex(t(sp, "attributes")),
        f"arrayExists(e -> {attrs_complex(t('e', 'attributes'))}, {t(sp, 'events')})",
        f"arrayExists(l -> {attrs_complex(t('l', 'attributes'))}, {t(sp, 'links')})",
    ]


def _columns(signal: str, table: str) -> tuple[dict[str, str], list[str]]:
    if signal == "traces":
        return _trace_columns(), _trace_checks()
    raise NotImplementedError(f"{signal} conversion is not implemented yet")


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
    res_list, scopes, items = _LEVELS[signal]
    cols, checks = _columns(signal, table)
    res_kvs = t("rs", "resource", "attributes")
    inner = (
        f"SELECT {attr_map(res_kvs)} AS res_attrs, {_named(res_kvs, 'service.name')} AS svc, "
        f"{t('rs', 'schema_url')} AS res_schema_url, {t('rs', scopes)} AS scopes "
        f"FROM {source} ARRAY JOIN {res_list} AS rs "
        f"WHERE {_throw([attrs_complex(res_kvs)])}"
    )
    scope_check = attrs_complex(t("ss", "scope", "attributes"))
    projection = ",\n  ".join(f"{expr} AS `{name}`" for name, expr in cols.items())
    return (
        f"SELECT\n  {projection}\nFROM ({inner})\n"
        f"ARRAY JOIN scopes AS ss ARRAY JOIN {t('ss', items)} AS sp\n"
        f"WHERE {_throw([scope_check, *checks])}"
    )
