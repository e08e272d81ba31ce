"""Routes: first match wins unless continue; exact and regex label matches."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from netwatch.alerting.routing import RouteConfig, Router


def router() -> Router:
    return Router(
        [
            RouteConfig.model_validate({"match": {"severity": "critical"}, "receivers": ["oncall"], "continue": True}),
            RouteConfig.model_validate({"match_re": {"lessee": "univ.*|research-lab"}, "receivers": ["lessees"]}),
            RouteConfig.model_validate({"match": {"site": "villa-parke"}, "receivers": ["parks"]}),
            RouteConfig.model_validate({"receivers": ["noc"], "group_wait": "30s"}),
        ]
    )


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        ({"severity": "critical", "site": "villa-parke"}, ["oncall", "parks"]),
        ({"severity": "warning", "lessee": "university"}, ["lessees"]),
        ({"severity": "critical", "lessee": "research-lab"}, ["oncall", "lessees"]),
        ({"severity": "warning", "lessee": "carrier-zayo"}, ["noc"]),
        ({"severity": "info"}, ["noc"]),
    ],
)
def test_first_match_wins_unless_continue(labels: dict[str, str], receivers: list[str]) -> None:
    """A critical span at a park pages on-call and the parks team; the catch-all gets the rest."""
    assert [r for route in router().routes_for(labels) for r in route.receivers] == receivers


def test_regex_must_match_the_whole_label() -> None:
    """match_re is anchored: 'univ' does not match 'university-hospital-x' unless the pattern says so."""
    route = Router([RouteConfig.model_validate({"match_re": {"site": "park"}, "receivers": ["x"]})])
    assert route.routes_for({"site": "park"})
    assert not route.routes_for({"site": "villa-park"})


def test_bad_regex_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="not a regular expression"):
        RouteConfig.model_validate({"match_re": {"site": "("}, "receivers": ["x"]})
