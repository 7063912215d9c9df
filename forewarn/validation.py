"""Validation errors in the user's words: pydantic's messages name the library's concepts
("Extra inputs are not permitted"); a user needs the key, what is wrong with it and, for a typo,
the key they probably meant.

>>> from pydantic import BaseModel, ConfigDict
>>> class Collector(BaseModel):
...     model_config = ConfigDict(extra="forbid")
...     grpc_port: int = 4317
>>> class Root(BaseModel):
...     model_config = ConfigDict(extra="forbid")
...     collector: Collector = Collector()
>>> try:
...     Root.model_validate({"collector": {"grpc_prot": 1, "grpc_port": "x"}})
... except Exception as e:
...     print("\\n".join(problems(e, Root)))
collector.grpc_port: must be a whole number, got 'x'
unknown key `grpc_prot` in section `collector`; did you mean `grpc_port`?
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

# Wrapper steps pydantic puts in an error location that are no part of the user's key path.
_SKIP_PREFIXES = ("function-", "tagged-union", "json-or-python", "lax-or-strict", "chain")


def suggest(word: str, options: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The closest known name to a misspelt one, if any is close enough.

    >>> suggest("grpc_prot", ["grpc_port", "http_port"]), suggest("zzz", ["grpc_port"])
    ('grpc_port', None)
    """
    hits = difflib.get_close_matches(word, list(options), n=1, cutoff=cutoff)
    return hits[0] if hits else None


def did_you_mean(word: str, options: Iterable[str], cutoff: float = 0.6) -> str:
    hit = suggest(word, options, cutoff)
    return f"; did you mean `{hit}`?" if hit else ""


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``X``, ``X | None``, ``list[X]`` or ``dict[str, X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, dict, tuple, typing.Annotated) or origin is not None:
        for arg in typing.get_args(annotation):
            if (m := _model_in(arg)) is not None:
                return m
    return None


def _key_names(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def model_at(model: type[BaseModel] | None, path: Sequence[Any]) -> type[BaseModel] | None:
    """The model class that validates the value at ``path`` (list indexes skipped)."""
    for part in path:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = next(
            (f for n, f in model.model_fields.items() if part in (n, f.alias)),
            None,
        )
        if field is None:
            return None
        model = _model_in(field.annotation)
    return model


def clean_loc(loc: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(p for p in loc if not (isinstance(p, str) and p.startswith(_SKIP_PREFIXES)))


def dotted(loc: Sequence[Any], renames: dict[str, str] | None = None) -> str:
    """``('route', 'routes', 1, 'foo')`` -> ``route.routes[1].foo``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = (renames or {}).get(str(part), str(part))
            out += ("." if out else "") + name
    return out


def _got(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def phrase(err: dict[str, Any]) -> str:
    """What is wrong with one value, in plain words (without its key)."""
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    plain = {
        "int_parsing": "must be a whole number",
        "int_type": "must be a whole number",
        "int_from_float": "must be a whole number",
        "float_parsing": "must be a number",
        "float_type": "must be a number",
        "bool_parsing": "must be true or false",
        "bool_type": "must be true or false",
        "string_type": "must be text",
        "list_type": "must be a list",
        "dict_type": "must be a mapping of keys to values",
        "model_type": "must be a section (a mapping of keys to values)",
        "model_attributes_type": "must be a section (a mapping of keys to values)",
        "missing": "is required",
        "url_parsing": "must be a URL",
    }
    if kind == "missing":
        return "is required but missing"
    if kind in plain:
        return f"{plain[kind]}, got {_got(value)}"
    if kind == "literal_error":
        expected = str(ctx.get("expected", ""))
        options = [o.strip(" '\"") for o in expected.replace(" or ", ",").split(",") if o.strip()]
        hint = did_you_mean(str(value), options) if isinstance(value, str) else ""
        return f"must be one of {', '.join(options)}, got {_got(value)}{hint}"
    bounds = {
        "greater_than": "must be greater than {gt}",
        "greater_than_equal": "must be at least {ge}",
        "less_than": "must be less than {lt}",
        "less_than_equal": "must be at most {le}",
        "too_short": "must have at least {min_length} item(s)",
        "too_long": "must have at most {max_length} item(s)",
        "string_too_short": "must not be empty",
        "string_pattern_mismatch": "is not of the expected form ({pattern})",
    }
    if kind in bounds:
        try:
            text = bounds[kind].format(**ctx)
        except KeyError:
            text = err["msg"]
        return f"{text}, got {_got(value)}"
    msg = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return msg[:1].lower() + msg[1:] if msg[:2] != msg[:2].upper() else msg


def describe(
    err: dict[str, Any],
    model: type[BaseModel] | None,
    renames: dict[str, str] | None = None,
    root: tuple[str, ...] = (),
) -> str:
    """One error as a sentence naming its key (under ``root``); unknown keys get a did-you-mean."""
    loc = clean_loc(err["loc"])
    if err["type"] == "extra_forbidden" and loc:
        key, parent = str(loc[-1]), loc[:-1]
        owner = model_at(model, parent)
        hint = did_you_mean(key, _key_names(owner)) if owner is not None else ""
        if not parent and not root:
            return f"unknown section `{key}`{hint}"
        return f"unknown key `{key}` in section `{dotted((*root, *parent), renames)}`{hint}"
    where = dotted((*root, *loc), renames)
    return f"{where}: {phrase(err)}" if where else phrase(err)


def problems(
    error: ValidationError,
    model: type[BaseModel] | None,
    renames: dict[str, str] | None = None,
    root: tuple[str, ...] = (),
) -> list[str]:
    """Every error of one validation, each once, in the order pydantic found them."""
    out: list[str] = []
    for err in error.errors():
        line = describe(dict(err), model, renames, root)
        if line not in out:
            out.append(line)
    return out
