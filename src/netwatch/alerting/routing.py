"""Routes: which receivers hear about an incident, and when.

A route matches an incident's labels (severity, site, kind, lessee, rule, or any label a rule
sets) exactly or by regular expression; the first match wins unless it says ``continue: true``.
Each route carries its timing: ``group_wait`` (how long a new incident waits before its first
notice, so a blip that clears at once pages nobody), ``repeat_interval`` (how often a still-firing
incident is announced again) and whether resolves are sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, Field

from netwatch.configbase import Duration, Strict


def _compile(patterns: dict[str, str]) -> dict[str, str]:
    for key, pattern in patterns.items():
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"match_re.{key}: not a regular expression: {exc}") from None
    return patterns


class RouteConfig(Strict):
    """One route: labels to match, receivers to notify, and the timing."""

    match: dict[str, str] = Field(default_factory=dict, description="labels that must be equal")
    match_re: Annotated[dict[str, str], AfterValidator(_compile)] = Field(
        default_factory=dict, description="labels that must match a regular expression (whole value)"
    )
    receivers: list[str] = Field(min_length=1)
    group_wait: Duration = Field(default=10.0, description="wait before the first notice of a new incident")
    repeat_interval: Duration = Field(default=4 * 3600.0, description="announce a still-firing incident again")
    send_resolved: bool = True
    continue_: bool = Field(default=False, alias="continue", description="keep matching the routes below")


@dataclass(frozen=True, slots=True)
class Route:
    """A compiled route."""

    match: Mapping[str, str]
    match_re: Mapping[str, re.Pattern[str]]
    receivers: tuple[str, ...]
    group_wait: float
    repeat_interval: float
    send_resolved: bool
    keep_going: bool

    @classmethod
    def build(cls, cfg: RouteConfig) -> Route:
        return cls(
            match=dict(cfg.match),
            match_re={k: re.compile(v) for k, v in cfg.match_re.items()},
            receivers=tuple(cfg.receivers),
            group_wait=cfg.group_wait,
            repeat_interval=cfg.repeat_interval,
            send_resolved=cfg.send_resolved,
            keep_going=cfg.continue_,
        )

    def matches(self, labels: Mapping[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match.items()):
            return False
        return all(p.fullmatch(labels.get(k, "")) for k, p in self.match_re.items())


class Router:
    """Pick the routes for an incident's labels."""

    def __init__(self, routes: list[RouteConfig]) -> None:
        self._routes = [Route.build(r) for r in routes]

    def routes_for(self, labels: Mapping[str, str]) -> list[Route]:
        """Return the matching routes in order: the first, and those after a ``continue``."""
        chosen = []
        for route in self._routes:
            if route.matches(labels):
                chosen.append(route)
                if not route.keep_going:
                    break
        return chosen
