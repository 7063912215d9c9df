"""The routing tree: option inheritance, depth-first matching with ``continue``, route keys.

>>> from forewarn.alerts.config import parse_config
>>> cfg = parse_config('''
... route: {receiver: a, routes: [{match: {team: db}, receiver: b, routes: [{matchers: ['sev="crit"']}]}]}
... receivers: [{name: a}, {name: b}]
... ''')
>>> tree = build_tree(cfg.route)
>>> [(r.key, r.receiver) for r in tree.match({"team": "db", "sev": "crit"})]
[('{}/{team="db"}/{sev="crit"}', 'b')]
>>> group_key(tree, tree.group_labels({"team": "x"}))
'{}:{}'
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from forewarn.alerts import config as c
from forewarn.alerts.labels import Matcher, all_match, labelset_string, matchers_string


@dataclass(eq=False)
class RouteNode:
    """One node with its effective (inherited) options; identity, not key, separates groups."""

    matchers: list[Matcher]
    receiver: str
    group_by: frozenset[str]
    group_by_all: bool
    group_wait: float
    group_interval: float
    repeat_interval: float
    continue_: bool
    mute_time_intervals: list[str]
    active_time_intervals: list[str]
    key: str
    path: str = ""  # position in the tree ("", "0", "0/2"): unique, unlike the key
    routes: list[RouteNode] = field(default_factory=list)

    def match(self, labels: Mapping[str, str]) -> list[RouteNode]:
        if not all_match(self.matchers, labels):
            return []
        out: list[RouteNode] = []
        for child in self.routes:
            hits = child.match(labels)
            out.extend(hits)
            if hits and not child.continue_:
                break
        return out or [self]

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        if self.group_by_all:
            return dict(labels)
        return {k: v for k, v in labels.items() if k in self.group_by}

    def walk(self) -> Iterator[RouteNode]:
        yield self
        for r in self.routes:
            yield from r.walk()


def build_tree(cr: c.Route, parent: RouteNode | None = None, path: str = "") -> RouteNode:
    """``dispatch.NewRoute``: children inherit receiver, grouping and timers, not time intervals."""
    if parent is None:
        receiver, group_by, by_all, gw, gi, ri = "", frozenset(), False, 30.0, 300.0, 4 * 3600.0
    else:
        receiver, group_by, by_all = parent.receiver, parent.group_by, parent.group_by_all
        gw, gi, ri = parent.group_wait, parent.group_interval, parent.repeat_interval
    if cr.receiver:
        receiver = cr.receiver
    labels = [g for g in cr.group_by or [] if g != "..."]
    if labels:
        group_by, by_all = frozenset(labels), False
    elif cr.group_by and "..." in cr.group_by:
        by_all = True
    ms = sorted(cr.matchers, key=Matcher.sort_key)
    own = matchers_string(ms)
    node = RouteNode(
        matchers=ms,
        receiver=receiver,
        group_by=group_by,
        group_by_all=by_all,
        group_wait=gw if cr.group_wait is None else cr.group_wait,
        group_interval=gi if cr.group_interval is None else cr.group_interval,
        repeat_interval=ri if cr.repeat_interval is None else cr.repeat_interval,
        continue_=cr.continue_,
        mute_time_intervals=list(cr.mute_time_intervals),
        active_time_intervals=list(cr.active_time_intervals),
        key=own if parent is None else f"{parent.key}/{own}",
        path=path,
    )
    node.routes = [build_tree(child, node, f"{path}/{i}".lstrip("/")) for i, child in enumerate(cr.routes)]
    return node


def group_key(route: RouteNode, group_labels: Mapping[str, str]) -> str:
    """``<routeKey>:<groupLabels>``, the string receivers see as ``groupKey``."""
    return f"{route.key}:{labelset_string(group_labels)}"
