"""Topology: root cause, unreachable children, redundancy in rings, impact by site and kind."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from netwatch.alerting.model import Impact
from netwatch.alerting.topology import Cause, Topology
from netwatch.config import load_config

EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "example.yaml"

# A small ring in the manner of config/example.yaml: City Hall (the NOC) feeds Police HQ and the
# Library; Fire Station 31 hangs off both (two paths); Water and Power only off the Library; a park
# hangs off Fire Station 31.
RING_YAML = """
defaults:
  kinds:
    router: {checks: [ping]}
    switch: {checks: [ping]}
sites:
  - {id: city-hall, name: City Hall}
  - {id: police-hq, name: Police HQ}
  - {id: main-library, name: Central Library}
  - {id: fire-31, name: Fire Station 31}
  - {id: water-power, name: Water and Power}
  - {id: villa-parke, name: Villa Parke, kind: park}
devices:
  - {id: core-ch, site: city-hall, kind: router, address: 10.10.0.1}
  - {id: core-pd, site: police-hq, kind: router, address: 10.10.0.3, parents: [core-ch]}
  - {id: core-lib, site: main-library, kind: router, address: 10.10.0.5, parents: [core-ch]}
  - {id: core-fs31, site: fire-31, kind: router, address: 10.10.0.4, parents: [core-pd, core-lib]}
  - {id: core-wp, site: water-power, kind: router, address: 10.10.0.6, parents: [core-lib]}
  - {id: sw-vp, site: villa-parke, kind: switch, address: 10.20.5.2, parents: [core-fs31]}
  - {id: ap-vp-1, site: villa-parke, kind: wifi_ap, address: 10.20.5.11, parents: [sw-vp]}
  - {id: cam-vp-1, site: villa-parke, kind: camera, address: 10.20.5.60, parents: [sw-vp]}
links:
  - {id: span-ch-pd, a: {device: core-ch, port: xe-0/0/1}, b: {device: core-pd, port: xe-0/0/0}}
  - {id: span-lib-ch, a: {device: core-lib, port: xe-0/0/1}, b: {device: core-ch, port: xe-0/0/2}}
  - {id: span-pd-fs31, a: {device: core-pd, port: xe-0/0/2}, b: {device: core-fs31, port: xe-0/0/0}}
  - {id: span-lib-fs31, a: {device: core-lib, port: xe-0/0/2}, b: {device: core-fs31, port: xe-0/0/1}}
  - {id: span-wp-lib, a: {device: core-wp, port: xe-0/0/1}, b: {device: core-lib, port: xe-0/0/0}}
  - {id: span-fs31-vp, a: {device: core-fs31, port: ge-0/0/2}, b: {device: sw-vp, port: Gi1/0/49}}
  - {id: span-pd-wp, a: {device: core-pd, port: xe-0/0/3}, b: {device: core-wp, port: xe-0/0/3}}
"""

PARK = {"sw-vp", "ap-vp-1", "cam-vp-1"}


@pytest.fixture
def ring(tmp_path: Path) -> Topology:
    path = tmp_path / "ring.yaml"
    path.write_text(RING_YAML)
    return Topology.from_inventory(load_config(path).inventory)


def star(dependents: int = 500) -> Topology:
    """A NOC router, a core switch behind one span, and ``dependents`` devices on the switch across
    five parks (in each park: APs, cameras and door panels in turn), plus a ring of 8 routers."""
    parents: dict[str, list[str]] = {"noc": [], "core-sw": ["noc"]}
    sites = {"noc": "city-hall", "core-sw": "city-hall"}
    kinds = {"noc": "router", "core-sw": "switch"}
    links = {"span-noc-core": ("noc", "core-sw")}
    for i in range(dependents):
        dev = f"dev-{i:03d}"
        parents[dev] = ["core-sw"]
        sites[dev] = f"park-{i % 5}"
        kinds[dev] = ("wifi_ap", "camera", "access_panel")[i % 3]
    ring = [f"ring-{i}" for i in range(8)]
    for i, dev in enumerate(ring):
        # ring-0 hangs off the NOC; 1-3 go one way round, 5-7 the other, and ring-4 closes the ring.
        parents[dev] = (
            ["noc"] if i == 0 else [ring[i - 1]] if i < 4 else [ring[3], ring[5]] if i == 4 else [ring[(i + 1) % 8]]
        )
        sites[dev] = f"ring-site-{i}"
        kinds[dev] = "router"
        links[f"span-ring-{i}"] = (dev, ring[(i + 1) % 8])
    return Topology(parents=parents, links=links, sites=sites, kinds=kinds)


def test_core_switch_down_is_one_root_cause_with_the_whole_star_behind_it() -> None:
    """A core switch with 500 failing dependents: one root cause (the switch), impact 500 with counts by
    site and kind; every dependent is unreachable and attributed to the switch alone."""
    topo = star()
    dependents = {f"dev-{i:03d}" for i in range(500)}
    result = topo.classify({"core-sw", *dependents}, set())

    assert result.root_causes == [Cause("device", "core-sw")]
    impact = result.impacts[Cause("device", "core-sw")]
    assert impact.count == 500
    assert set(impact.devices) == dependents
    assert impact.by_site == {f"park-{i}": 100 for i in range(5)}
    assert impact.by_kind == {"wifi_ap": 167, "camera": 167, "access_panel": 166}
    assert result.state("core-sw") == "down"
    assert all(result.state(d) == "unreachable" for d in dependents)
    assert all(result.causes[d] == {Cause("device", "core-sw")} for d in dependents)
    assert not any(topo.is_root_cause(d, {"core-sw", *dependents}, set()) for d in dependents)
    assert topo.is_root_cause("core-sw", {"core-sw", *dependents}, set())
    assert result.state("noc") == "up"


def test_impact_lists_only_the_devices_that_actually_fail() -> None:
    """Dependents whose checks still pass (not yet polled) stay up and are not in the impact."""
    topo = star()
    failing = {f"dev-{i:03d}" for i in range(0, 500, 2)}
    result = topo.classify({"core-sw", *failing}, set())
    assert result.impacts[Cause("device", "core-sw")].count == 250
    assert result.state("dev-001") == "up"


def test_span_to_the_core_switch_down_is_the_root_cause_for_switch_and_star() -> None:
    """The span feeding the switch cut: the switch and its dependents are all unreachable behind it."""
    topo = star(10)
    everything = {"core-sw", *(f"dev-{i:03d}" for i in range(10))}
    result = topo.classify(everything, {"span-noc-core"})
    assert result.root_causes == [Cause("link", "span-noc-core")]
    assert result.impacts[Cause("link", "span-noc-core")].count == 11
    assert result.links["span-noc-core"] == "down"
    assert result.unreachable == everything


def test_ring_with_one_span_cut_leaves_nothing_unreachable(ring: Topology) -> None:
    """Fire Station 31 keeps its path through the Library: nothing behind the cut span is unreachable,
    and the span is a root cause with an empty impact."""
    result = ring.classify(set(), {"span-pd-fs31"})
    assert result.unreachable == set()
    assert all(state == "up" for state in result.devices.values())
    assert result.root_causes == [Cause("link", "span-pd-fs31")]
    assert result.impacts[Cause("link", "span-pd-fs31")] == Impact()
    assert ring.behind("link", "span-pd-fs31") == set()


def test_ring_with_one_span_cut_and_a_failing_device_behind_it_is_the_devices_own_problem(ring: Topology) -> None:
    """With one path cut, a failing Fire Station 31 is still reachable the other way: its own root cause."""
    result = ring.classify({"core-fs31"}, {"span-pd-fs31"})
    assert result.state("core-fs31") == "down"
    # The cut span ends on a down device: that device explains it; one page, not two.
    assert result.links["span-pd-fs31"] == "unreachable"
    assert result.root_causes == [Cause("device", "core-fs31")]


def test_ring_with_both_paths_cut_attributes_the_devices_behind_to_both_spans(ring: Topology) -> None:
    """Both spans into Fire Station 31 cut: it and the park behind it are unreachable, and each device is
    listed in the impact of both spans (repairing either one brings them back)."""
    behind = {"core-fs31", *PARK}
    result = ring.classify(behind, {"span-pd-fs31", "span-lib-fs31"})
    assert result.unreachable == behind
    both = {Cause("link", "span-pd-fs31"), Cause("link", "span-lib-fs31")}
    assert set(result.root_causes) == both
    for cause in both:
        impact = result.impacts[cause]
        assert set(impact.devices) == behind
        assert impact.by_site == {"fire-31": 1, "villa-parke": 3}
        assert impact.by_kind == {"router": 1, "switch": 1, "wifi_ap": 1, "camera": 1}
    assert all(result.causes[d] == both for d in behind)


def test_both_sides_of_the_ring_cut_at_the_noc(ring: Topology) -> None:
    """Both spans out of City Hall cut: a device with one path is attributed to its span only; one cut
    off on both sides (Fire Station 31 and the park) to both spans."""
    everything = {"core-pd", "core-lib", "core-fs31", "core-wp", *PARK}
    result = ring.classify(everything, {"span-ch-pd", "span-lib-ch"})
    ch_pd, lib_ch = Cause("link", "span-ch-pd"), Cause("link", "span-lib-ch")
    assert result.causes["core-pd"] == {ch_pd}
    assert result.causes["core-lib"] == {lib_ch}
    assert result.causes["core-fs31"] == {ch_pd, lib_ch}
    assert result.causes["cam-vp-1"] == {ch_pd, lib_ch}
    # core-wp has one parent (the library) but its span to police HQ is not a parent edge.
    assert result.causes["core-wp"] == {lib_ch}
    assert set(result.root_causes) == {ch_pd, lib_ch}
    # Spans deeper in the dark part (both ends unreachable) are not root causes.
    result = ring.classify(everything, {"span-ch-pd", "span-lib-ch", "span-pd-fs31"})
    assert result.links["span-pd-fs31"] == "unreachable"
    assert set(result.root_causes) == {ch_pd, lib_ch}


def test_child_down_while_its_parent_is_up_is_its_own_root_cause(ring: Topology) -> None:
    """An access point failing behind a healthy switch is down, a root cause with nothing behind it."""
    result = ring.classify({"ap-vp-1"}, set())
    assert result.state("ap-vp-1") == "down"
    assert result.root_causes == [Cause("device", "ap-vp-1")]
    assert result.impacts[Cause("device", "ap-vp-1")].count == 0
    assert ring.is_root_cause("ap-vp-1", {"ap-vp-1"}, set())


def test_parent_recovers_and_the_child_does_not_then_the_child_becomes_down(ring: Topology) -> None:
    """While the switch is down the AP is unreachable; once the switch is back the AP is down on its own."""
    during = ring.classify({"sw-vp", "ap-vp-1"}, set())
    assert during.state("ap-vp-1") == "unreachable"
    assert not during.is_root_cause("device", "ap-vp-1")
    assert during.impacts[Cause("device", "sw-vp")].devices == ("ap-vp-1",)

    after = ring.classify({"ap-vp-1"}, set())
    assert after.state("sw-vp") == "up"
    assert after.state("ap-vp-1") == "down"
    assert after.is_root_cause("device", "ap-vp-1")


def test_a_dead_router_is_one_root_cause_not_one_per_span(ring: Topology) -> None:
    """Police HQ dies and its neighbours report every span to it down: one root cause (the router),
    even though its only parent edge is among them; its spans are explained by it."""
    down_links = {"span-ch-pd", "span-pd-fs31", "span-pd-wp"}
    result = ring.classify({"core-pd"}, down_links)
    assert result.root_causes == [Cause("device", "core-pd")]
    assert {result.links[s] for s in down_links} == {"unreachable"}
    assert ring.device_state("core-pd", {"core-pd"}, down_links) == "down"
    assert ring.link_state("span-pd-wp", {"core-pd"}, down_links) == "unreachable"


def test_a_lone_span_into_a_failing_device_is_read_as_the_cut(ring: Topology) -> None:
    """Only the span into Police HQ is down: the span is the root cause, the router unreachable behind
    it (a dead router and a cut look alike here; the page names the span and lists the router)."""
    result = ring.classify({"core-pd"}, {"span-ch-pd"})
    assert result.root_causes == [Cause("link", "span-ch-pd")]
    assert result.impacts[Cause("link", "span-ch-pd")].devices == ("core-pd",)
    assert ring.link_state("span-ch-pd", {"core-pd"}, {"span-ch-pd"}) == "down"
    assert ring.link_state("span-lib-ch", set(), {"span-ch-pd"}) == "up"


def test_failing_root_is_down_and_unknown_ids_are_ignored(ring: Topology) -> None:
    """A root has no path to cut: failing, it is down. Ids the inventory does not know change nothing."""
    result = ring.classify({"core-ch", "ghost"}, {"span-ghost"})
    assert result.state("core-ch") == "down"
    assert result.root_causes == [Cause("device", "core-ch")]
    assert "ghost" not in result.devices


def test_behind_means_every_path_goes_through_it(ring: Topology) -> None:
    """Behind the Library is Water and Power (one parent), not Fire Station 31 (two paths); behind Fire
    Station 31 is the park; a site's own devices are not behind it."""
    assert ring.behind("device", "core-lib") == {"core-wp"}
    assert ring.behind("device", "core-fs31") == PARK
    assert ring.behind("device", "cam-vp-1") == set()
    assert ring.behind("link", "span-fs31-vp") == PARK
    assert ring.behind("site", "fire-31") == PARK
    assert ring.behind("site", "villa-parke") == set()
    assert ring.behind("device", "core-ch") == set(ring.devices) - {"core-ch"}
    assert ring.cut_off(devices={"core-pd", "core-lib"}) == {"core-fs31", "core-wp", *PARK}
    with pytest.raises(KeyError):
        ring.behind("device", "ghost")


def test_scope_covers_everything_behind_and_the_spans_touching_it(ring: Topology) -> None:
    """A device's scope is itself, what is behind it, and every span with an end on those."""
    scope = ring.scope("device", "core-fs31")
    assert scope.devices == {"core-fs31", *PARK}
    assert scope.links == {"span-pd-fs31", "span-lib-fs31", "span-fs31-vp"}
    scope = ring.scope("link", "span-wp-lib")
    assert scope.devices == {"core-wp"}
    assert scope.links == {"span-wp-lib", "span-pd-wp"}
    scope = ring.scope("site", "villa-parke")
    assert scope.devices == PARK
    assert scope.links == {"span-fs31-vp"}


def test_example_config_ring(tmp_path: Path) -> None:
    """config/example.yaml: a cut ring span darkens nothing; cutting both spans into Fire Station 31
    darkens it with Villa Parke and Victory Park, attributed to both spans."""
    topo = Topology.from_inventory(load_config(EXAMPLE).inventory)
    assert topo.classify(set(), {"span-pd-fs31"}).unreachable == set()
    behind = {"core-fs31", "sw-vp", "ap-vp-1", "ap-vp-2", "door-vp-1", "cam-vp-1", "sw-vic", "ap-vic-1", "ap-vic-2"}
    result = topo.classify(behind, {"span-pd-fs31", "span-lib-fs31"})
    assert result.unreachable == behind
    assert set(result.root_causes) == {Cause("link", "span-pd-fs31"), Cause("link", "span-lib-fs31")}
    assert result.impacts[Cause("link", "span-pd-fs31")].by_site == {"fire-31": 1, "villa-parke": 5, "victory-park": 3}
    # The EOC closes the ring from both sides; Water and Power hangs off the Library only.
    assert "core-eoc" not in topo.behind("device", "core-wp")
    assert "core-wp" in topo.behind("device", "core-lib")


def test_example_config_spans_know_their_ports_and_devices_their_settle_time() -> None:
    """config/example.yaml: core-fs31's ge-0/0/2 is where span-fs31-vp lands (a port alert there is
    the span's); a switch polled every 30 s with a 10 s timeout has run every check within 40 s of
    starting to fail, a door panel polled every 60 s within 70 s."""
    topo = Topology.from_inventory(load_config(EXAMPLE).inventory)
    assert topo.spans_at("core-fs31", "ge-0/0/2") == ("span-fs31-vp",)
    assert topo.spans_at("sw-vp", "Gi1/0/49") == ("span-fs31-vp",)
    assert topo.spans_at("core-fs31", "ge-0/0/9") == ()
    assert topo.settle_s("sw-vp") == 40.0
    assert topo.settle_s("door-vp-1") == 70.0
    assert star(1).settle_s("core-sw") == 0.0  # built by hand, polled by nobody: nothing to wait for


def test_parent_cycle_and_unknown_parent_are_rejected() -> None:
    """The loader rejects both; building a topology from them anyway is a bug, reported as ValueError."""
    sites, kinds = {"a": "s", "b": "s"}, {"a": "router", "b": "router"}
    with pytest.raises(ValueError, match="cycle"):
        Topology(parents={"a": ["b"], "b": ["a"]}, links={}, sites=sites, kinds=kinds)
    with pytest.raises(ValueError, match="unknown parent"):
        Topology(parents={"a": [], "b": ["c"]}, links={}, sites=sites, kinds=kinds)
    with pytest.raises(ValueError, match="unknown device"):
        Topology(parents={"a": [], "b": ["a"]}, links={"s": ("a", "c")}, sites=sites, kinds=kinds)


def test_classify_is_fast() -> None:
    """A 500-dependent star and a ring of 8 classify well inside 10 ms (best of 5, generous for CI)."""
    topo = star()
    down = {"core-sw", *(f"dev-{i:03d}" for i in range(500)), "ring-4"}
    links = {"span-ring-3", "span-ring-4"}
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        result = topo.classify(down, links)
        best = min(best, time.perf_counter() - t0)
    assert result.causes["ring-4"] == {Cause("link", "span-ring-3"), Cause("link", "span-ring-4")}
    assert best < 0.010, f"classify took {best * 1000:.2f} ms"
