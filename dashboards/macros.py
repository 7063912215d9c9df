"""Turn a panel's raw SQL into the SQL ClickHouse receives, in the order Grafana and the plugin do it.

Grafana cannot run here, yet every panel must be proven to work, so the tests, ``forewarn report``
and the push-time self-check run panels through this one expansion:

1. the plugin's frontend replaces ``$__conditionalAll(cond, $var)`` by ``cond``, or by ``1=1`` when
   the variable is empty or "All" (``$__all``);
2. Grafana interpolates template variables (``$var``, ``${var}``, ``${var:format}``, ``[[var]]``);
   the plugin's default format quotes multi-value selections (``'a','b'``) and leaves one value
   bare, so string filters in our dashboards use ``${var:singlequote}``;
3. the plugin's backend expands its macros (``$__timeFilter(col)``, ``$__timeInterval(col)``,
   ``$__interval_s``, ...) exactly as ``pkg/macros`` of grafana-clickhouse-datasource v4 prints them.

>>> r = TimeRange(1_700_000_000, 1_700_003_600, interval_s=60)
>>> expand("SELECT $__timeInterval(Timestamp) AS t FROM x WHERE $__timeFilter(Timestamp)", r)
'SELECT toStartOfInterval(toDateTime(Timestamp), INTERVAL 60 second) AS t FROM x WHERE Timestamp >= toDateTime(1700000000) AND Timestamp <= toDateTime(1700003600)'
>>> expand("WHERE $__conditionalAll(ServiceName IN (${service:singlequote}), $service)", r, {"service": ALL})
'WHERE 1=1'
>>> expand("WHERE $__conditionalAll(ServiceName IN (${service:singlequote}), $service)", r, {"service": ["a", "b"]})
"WHERE ServiceName IN ('a','b')"
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

ALL = "$__all"
"""The value Grafana stores for a variable whose "All" option is selected."""

VarValue = str | Sequence[str]


class MacroError(ValueError):
    """A macro with the wrong arguments or an unknown macro: the plugin would refuse the query too."""


@dataclass(frozen=True)
class TimeRange:
    """The dashboard time range in Unix seconds (fractions kept for the ``_ms`` macros) and the
    panel interval Grafana computed for it."""

    start: float
    end: float
    interval_s: float = 60.0

    @property
    def start_ms(self) -> int:
        return int(self.start * 1000)

    @property
    def end_ms(self) -> int:
        return int(self.end * 1000)

    @classmethod
    def last(cls, seconds: float, now: float | None = None, max_points: int = 300) -> TimeRange:
        """``now-<seconds>`` to ``now``, with the interval Grafana picks for ``max_points`` points."""
        end = now if now is not None else datetime.now(UTC).timestamp()
        return cls(end - seconds, end, auto_interval(seconds, max_points))


# Grafana's interval rounding (rangeutil.roundInterval) snaps the computed interval to the nearest nice value.
_NICE = (
    0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800,
    3600, 7200, 10800, 21600, 43200, 86400, 604800, 2592000, 31536000,
)  # fmt: skip


def auto_interval(range_s: float, max_points: int = 300) -> float:
    """The panel interval Grafana derives from the range and the panel's width in points.

    >>> auto_interval(3600, 300), auto_interval(86400, 300)
    (10, 300)
    """
    raw = range_s / max(1, max_points)
    return min(_NICE, key=lambda n: abs(n - raw))


# -- 1. the plugin's $__conditionalAll ------------------------------------------------------------
_COND = "$__conditionalAll("


def _macro_args(sql: str, open_paren: int) -> tuple[list[str], int]:
    """Arguments of the call whose ``(`` is at ``open_paren``: split on top-level commas, quotes
    respected; returns the args and the index just past the closing ``)``."""
    args, depth, quote, start = [], 0, "", open_paren + 1
    for i in range(open_paren, len(sql)):
        c = sql[i]
        if quote:
            if c == quote and sql[i - 1] != "\\":
                quote = ""
        elif c in "'\"`":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                args.append(sql[start:i])
                return args, i + 1
        elif c == "," and depth == 1:
            args.append(sql[start:i])
            start = i + 1
    raise MacroError(f"unclosed parenthesis in macro call at offset {open_paren}: {sql[open_paren:][:60]!r}")


def apply_conditional_all(sql: str, variables: Mapping[str, VarValue]) -> str:
    """Innermost-last, like the plugin: scan from the last occurrence backwards."""
    while (i := sql.rfind(_COND)) != -1:
        args, end = _macro_args(sql, i + len(_COND) - 1)
        if len(args) != 2:
            raise MacroError(f"$__conditionalAll takes (condition, $variable), got {len(args)} arguments")
        name = args[1].strip().lstrip("$").strip("{}")
        value = variables.get(name, "")
        flat = ",".join(value) if not isinstance(value, str) else value
        phrase = "1=1" if flat in ("", ALL) else args[0]
        sql = sql[:i] + phrase + sql[end:]
    return sql


# -- 2. Grafana's template variable interpolation ----------------------------------------------
_VAR = re.compile(r"\$(\w+)|\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)(?::(\w+))?\]\]")


def _quote(v: str, q: str) -> str:
    return q + v.replace(q, "\\" + q) + q


_FORMATS: dict[str, Callable[[list[str]], str]] = {
    "singlequote": lambda vs: ",".join(_quote(v, "'") for v in vs),
    "doublequote": lambda vs: ",".join(_quote(v, '"') for v in vs),
    "csv": lambda vs: ",".join(vs),
    "raw": lambda vs: ",".join(vs),
    "pipe": lambda vs: "|".join(vs),
    "sqlstring": lambda vs: ",".join("'" + v.replace("'", "''") + "'" for v in vs),
}


def _plugin_default(vs: list[str]) -> str:
    # CHDatasource.format: arrays become 'a','b'; a single value is inserted as is.
    return _FORMATS["singlequote"](vs) if len(vs) != 1 else vs[0]


def interpolate(sql: str, variables: Mapping[str, VarValue], options: Mapping[str, Sequence[str]]) -> str:
    """Replace template variables; "All" means every option of the variable (no custom allValue)."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(4)
        fmt = m.group(3) or m.group(5)
        if name.startswith("__") or name not in variables:
            return m.group(0)  # Grafana leaves unknown names and macros for the data source
        value = variables[name]
        values = [value] if isinstance(value, str) else list(value)
        if values == [ALL]:
            values = list(options.get(name, []))
        if fmt is None:
            return _plugin_default(values)
        if fmt not in _FORMATS:
            raise MacroError(f"unsupported variable format ${{{name}:{fmt}}}")
        return _FORMATS[fmt](values)

    return _VAR.sub(sub, sql)


# -- 3. the plugin backend's macros --------------------------------------------------------------
def _dt(t: float) -> str:
    return f"toDateTime({int(t)})"


def _dt64(t: float) -> str:
    return f"fromUnixTimestamp64Milli({int(t * 1000)})"


def _date(t: float) -> str:
    return f"toDate('{datetime.fromtimestamp(t, UTC):%Y-%m-%d}')"


def _between(col: str, lo: str, hi: str) -> str:
    return f"{col} >= {lo} AND {col} <= {hi}"


def _one(args: list[str], name: str) -> str:
    if len(args) != 1 or not args[0]:
        raise MacroError(f"$__{name} expects 1 argument, received {len([a for a in args if a])}")
    return args[0]


def _backend_macros(r: TimeRange) -> dict[str, Callable[[list[str]], str]]:
    secs = max(int(r.interval_s), 1)
    msecs = max(int(r.interval_s * 1000), 1)

    def dt_filter(args: list[str]) -> str:
        if len(args) != 2:
            raise MacroError(f"$__dateTimeFilter expects 2 arguments, received {len(args)}")
        d, t = args
        return f"({_between(d, _date(r.start), _date(r.end))}) AND ({_between(t, _dt(r.start), _dt(r.end))})"

    return {
        "fromTime": lambda a: _dt(r.start),
        "toTime": lambda a: _dt(r.end),
        "fromTime_ms": lambda a: _dt64(r.start),
        "toTime_ms": lambda a: _dt64(r.end),
        "timeFilter": lambda a: _between(_one(a, "timeFilter"), _dt(r.start), _dt(r.end)),
        "timeFilter_ms": lambda a: _between(_one(a, "timeFilter_ms"), _dt64(r.start), _dt64(r.end)),
        "dateFilter": lambda a: _between(_one(a, "dateFilter"), _date(r.start), _date(r.end)),
        "dateTimeFilter": dt_filter,
        "dt": dt_filter,
        "timeInterval": lambda a: (
            f"toStartOfInterval(toDateTime({_one(a, 'timeInterval')}), INTERVAL {secs} second)"
        ),
        "timeInterval_ms": lambda a: (
            f"toStartOfInterval(toDateTime64({_one(a, 'timeInterval_ms')}, 3), INTERVAL {msecs} millisecond)"
        ),
        "interval_s": lambda a: str(secs),
    }


_MACRO = re.compile(r"\$__(\w+)")


def expand_macros(sql: str, r: TimeRange) -> str:
    """The backend step (sqlds): each ``$__name`` or ``$__name(args)``, arguments trimmed."""
    macros = _backend_macros(r)
    out, pos = [], 0
    for m in _MACRO.finditer(sql):
        if m.start() < pos:
            continue
        name = m.group(1)
        if name not in macros:
            raise MacroError(f"unknown macro $__{name}")
        out.append(sql[pos : m.start()])
        end = m.end()
        args: list[str] = []
        if end < len(sql) and sql[end] == "(":
            raw, end = _macro_args(sql, end)
            args = [a.strip() for a in raw] if raw != [""] else []
        out.append(macros[name](args))
        pos = end
    out.append(sql[pos:])
    return "".join(out)


def expand(
    sql: str,
    r: TimeRange,
    variables: Mapping[str, VarValue] | None = None,
    options: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """All three steps: what ClickHouse receives for this panel SQL, range and selection."""
    variables = variables or {}
    sql = apply_conditional_all(sql, variables)
    sql = interpolate(sql, variables, options or {})
    return expand_macros(sql, r)
