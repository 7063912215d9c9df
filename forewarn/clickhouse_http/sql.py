"""Just enough of ClickHouse's lexer to know what a query is before the engine runs it.

The engine enforces ``readonly`` itself; this is the second lock on the door. It finds the
statement's kind (its first keyword), the ``FORMAT`` clause (which decides the response's format
and whether it can be streamed), ``INTO OUTFILE`` / ``FROM INFILE`` (files on the server's disk,
which an HTTP client must never reach) and a second statement after ``;`` (ClickHouse's HTTP
interface runs exactly one). Strings, quoted identifiers, comments and heredocs are skipped the
way ClickHouse skips them, so a keyword inside a literal is never mistaken for a clause.

>>> q = inspect("SELECT 'FORMAT CSV' AS format FORMAT JSONEachRow")
>>> q.kind, q.format, q.statements
('SELECT', 'JSONEachRow', 1)
>>> inspect("INSERT INTO t FORMAT CSV\\n1;2\\n").format
'CSV'
>>> inspect("SELECT 1; SELECT 2").statements
2
>>> inspect("select 1 into outfile '/tmp/x'").into_outfile
True
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEREDOC = re.compile(r"\$([A-Za-z0-9_]*)\$")


@dataclass
class Query:
    kind: str = ""  # first keyword, upper case; "(" for a parenthesised SELECT; "" for empty
    format: str | None = None  # explicit trailing FORMAT clause
    into_outfile: bool = False
    from_infile: bool = False
    statements: int = 0  # non-empty statements (more than one is refused)
    second_at: int = -1  # offset of the second statement, for the error message
    data_at: int = -1  # INSERT: where its inline data (after VALUES / FORMAT x) starts


def _skip_quoted(sql: str, i: int, quote: str) -> int:
    """Index after the closing ``quote`` (backslash escapes and doubled quotes, as ClickHouse)."""
    n = len(sql)
    i += 1
    while i < n:
        c = sql[i]
        if c == "\\":
            i += 2
            continue
        if c == quote:
            if i + 1 < n and sql[i + 1] == quote:
                i += 2
                continue
            return i + 1
        i += 1
    return n


def _skip_block_comment(sql: str, i: int) -> int:
    depth, n = 0, len(sql)
    while i < n:
        if sql.startswith("/*", i):
            depth += 1
            i += 2
        elif sql.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    return n


def tokens(sql: str) -> Iterator[tuple[str, int, int]]:
    """(token, start, depth) for words and the punctuation that matters: ``;``, ``(``, ``)``.
    A literal yields ``'`` and a quoted identifier ``"``; comments yield nothing. Lazy, so an
    INSERT's data after its FORMAT clause is never scanned."""
    i, n, depth = 0, len(sql), 0
    while i < n:
        c = sql[i]
        if c.isspace():
            i += 1
        elif (c == "-" and sql.startswith("--", i)) or (c == "#" and (i + 1 == n or sql[i + 1] in " !\n\t")):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif c == "/" and sql.startswith("/*", i):
            i = _skip_block_comment(sql, i)
        elif c == "'":
            yield ("'", i, depth)
            i = _skip_quoted(sql, i, "'")
        elif c in '"`':
            yield ('"', i, depth)
            i = _skip_quoted(sql, i, c)
        elif c == "$" and (m := _HEREDOC.match(sql, i)):
            end = sql.find(m.group(0), m.end())
            yield ("'", i, depth)
            i = n if end < 0 else end + len(m.group(0))
        elif c == "(" or c == "[":
            yield ("(", i, depth)
            depth += 1
            i += 1
        elif c == ")" or c == "]":
            depth = max(0, depth - 1)
            yield (")", i, depth)
            i += 1
        elif c == ";":
            yield (";", i, depth)
            i += 1
        elif m := _WORD.match(sql, i):
            yield (m.group(0), i, depth)
            i = m.end()
        else:
            yield (c, i, depth)
            i += 1


def inspect(sql: str) -> Query:
    """What the query is, without running it (see the module docstring)."""
    q = Query()
    it = tokens(sql)
    first = next(it, None)
    if first is None:
        return q
    q.kind = first[0].upper() if _WORD.fullmatch(first[0]) else first[0]
    q.statements = 1
    top: list[tuple[str, int]] = [(first[0], first[1])] if first[2] == 0 else []
    prev = first[0].upper()
    for tok, pos, depth in it:
        word = tok.upper()
        if depth == 0:
            if word == ";":
                nxt = next((t for t in it if t[0] != ";"), None)
                if nxt is not None:
                    q.statements, q.second_at = 2, nxt[1]
                break
            top.append((tok, pos))
        if prev == "INTO" and word == "OUTFILE":
            q.into_outfile = True
        if prev == "FROM" and word == "INFILE":
            q.from_infile = True
        prev = word
        if q.kind == "INSERT" and depth == 0:
            # INSERT ... VALUES / FORMAT x: what follows is data, which may hold anything.
            if word == "VALUES":
                q.data_at = pos + len(tok)
                break
            if len(top) >= 2 and top[-2][0].upper() == "FORMAT" and _WORD.fullmatch(tok):
                q.format, q.data_at = tok, pos + len(tok)
                break
    if q.kind != "INSERT":
        words = [t.upper() for t, _ in top]
        for k in range(len(top) - 1, 0, -1):
            if words[k - 1] == "FORMAT" and _WORD.fullmatch(top[k][0]):
                tail = words[k + 1 :]
                if not tail or tail[0] == "SETTINGS":
                    q.format = top[k][0]
                break
    return q


# Statements a read-only user may send; the engine refuses writes too, this list is the second
# lock (KILL QUERY, for one, is allowed by the engine under readonly and would kill ingest).
READ_ONLY_KINDS = frozenset(
    {"SELECT", "WITH", "(", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN", "SET", "USE"}
)
# Statement keywords ClickHouse knows that a read-only user may not send. Anything else that is
# not in READ_ONLY_KINDS is left to the engine's parser (a typo is a syntax error, not READONLY).
WRITE_KINDS = frozenset(
    [
        "INSERT",
        "CREATE",
        "ALTER",
        "DROP",
        "TRUNCATE",
        "RENAME",
        "EXCHANGE",
        "ATTACH",
        "DETACH",
        "UNDROP",
        "OPTIMIZE",
        "SYSTEM",
        "KILL",
        "GRANT",
        "REVOKE",
        "BACKUP",
        "RESTORE",
        "DELETE",
        "UPDATE",
        "MOVE",
        "WATCH",
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "CHECK",
        "REPLACE",
        "UPSERT",
    ]
)
# Statements that answer with a result set (the others answer with an empty body and no
# X-ClickHouse-Format header, as ClickHouse does for INSERT, CREATE, SET...).
RESULT_KINDS = frozenset(
    {"SELECT", "WITH", "(", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN", "CHECK", "VALUES"}
)
