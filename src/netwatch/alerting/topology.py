"""Topology-aware root cause: which failing device is a real problem, and what is dark behind it.

The graph is the inventory's parent graph: every device lists its parents (towards the NOC), and a
device with several parents has redundant paths (a fiber ring). A device with no parents is a root:
the NOC's side of the plant, reachable by definition.

An edge parent -> child is *carried* by the spans (links) that join the two devices, in either
orientation, and the edge is cut when any span carrying it is down. Redundancy is declared with
parents, not with a second span: two spans between the same pair of devices are taken to ride the
same route (the example's leased spans are a lessee's capacity on the city's fiber), so either one
down counts. This only ever marks a device ``unreachable`` when its own checks fail too, so a
lessee's span going down alone darkens nothing. An edge that no span carries (a patch cable nobody
monitors) is never cut by a span; only its parent can take it down.

Rules, given the current facts (devices whose own checks say down, spans that are down):

* A device whose checks pass is ``up``: it answered, so it is reachable, whatever the graph says.
* A failing device is ``unreachable`` when every path to it is cut: it has parents, and each one
  is failing itself or joined to it by a down span. It sends nothing of its own.
* Any other failing device is ``down``: reachable and failing, a root cause. A failing root is
  ``down``; so is a child whose parent recovered while it did not (its own alert starts then).
* Exception, for the single fault that looks like several: a failing device that also has a down
  span to a device that is up, other than the spans carrying its own parent edges (a neighbour or a
  child on a ring reports its port towards it down), is ``down`` even when its paths look cut. A
  dead router takes every span on it down at once; reading that as one cut per span would page
  once per span. Its spans are then explained by it (below), so the router is the one page.
* A down span is ``unreachable`` (not a root cause) when one of its ends is ``down`` (a dead device
  takes its ports, and so its spans, with it) or both ends are ``unreachable`` (nothing reachable
  can tell us about it: it sits behind another cause). Otherwise it is ``down``: a root cause.

Attribution (the impact of each root cause) follows the paths: an unreachable device is attributed
to the causes that cut each of its paths, i.e. the union over its parents of the parent itself if
it is ``down``, the parent's own causes if it is ``unreachable``, and the root-cause spans of the
edge if that edge is cut. A device cut off only by a combination of causes (both sides of a ring)
is therefore listed in the impact of every one of them, and repairing any one of them brings it
back. A device's state depends only on its own check and the checks and spans of its neighbours,
so one pass in topological order classifies the whole plant: O(devices + parent edges + spans).

The topology also knows which ports each span lands on (a port alert on a span's end is explained
by the span being down) and how long each device takes to settle: the longest of its checks'
interval plus timeout, within which a device that started failing has run every check once, so
whether it is down (every check fails) or only degraded is known by then.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple

from netwatch.alerting.model import Impact

if TYPE_CHECKING:  # inventory imports config, which will import alerting config classes
    from netwatch.inventory import Inventory

DeviceState = Literal["up", "down", "unreachable"]
#: A span's state; ``unreachable`` is a down span explained by its end devices (not a root cause).
LinkState = Literal["up", "down", "unreachable"]
CauseKind = Literal["device", "link"]
#: What a scope or a query names: a site, a device or a span (link), by id.
EntityKind = Literal["site", "device", "link"]


class Cause(NamedTuple):
    """A root cause: a ``down`` device or a ``down`` span, by id."""

    kind: CauseKind
    id: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"


@dataclass(frozen=True, slots=True)
class Scope:
    """What an entity covers: itself, everything cut off behind it, and the spans touching those devices."""

    devices: frozenset[str]
    links: frozenset[str]


@dataclass(frozen=True, slots=True)
class Classification:
    """The state of every device and span for one set of facts, and each root cause's impact.

    Attributes:
        devices: state of every device in the inventory.
        links: state of every span in the inventory.
        causes: for every ``unreachable`` device, the root causes it is attributed to (never empty).
        impacts: for every root cause (every ``down`` device and ``down`` span), the devices that
            are unreachable because of it; empty for a cause with nothing behind it (a cut ring span).
    """

    devices: Mapping[str, DeviceState]
    links: Mapping[str, LinkState]
    causes: Mapping[str, frozenset[Cause]]
    impacts: Mapping[Cause, Impact]

    def state(self, device: str) -> DeviceState:
        """Return a device's state; a device the inventory does not know is ``up``."""
        return self.devices.get(device, "up")

    def is_root_cause(self, kind: CauseKind, ident: str) -> bool:
        """Return whether a device or span is a root cause: ``down`` and not explained by another."""
        return Cause(kind, ident) in self.impacts

    @property
    def root_causes(self) -> list[Cause]:
        """Return the root causes, devices first, each group sorted by id."""
        return sorted(self.impacts)

    @property
    def unreachable(self) -> frozenset[str]:
        """Return the devices that are failing because every path to them is cut."""
        return frozenset(self.causes)


class Topology:
    """The parent graph of the plant with the spans that carry its edges; immutable once built.

    Build it with :meth:`from_inventory`; classify facts with :meth:`classify`; ask what an entity
    takes down with it with :meth:`behind` and :meth:`scope` (maintenance coverage).
    """

    def __init__(
        self,
        *,
        parents: Mapping[str, Iterable[str]],
        links: Mapping[str, tuple[str, str]],
        sites: Mapping[str, str],
        kinds: Mapping[str, str],
        ports: Mapping[str, tuple[str, str]] | None = None,
        settle: Mapping[str, float] | None = None,
    ) -> None:
        """Build the graph.

        Args:
            parents: device id -> its parent device ids (every device must appear as a key).
            links: span id -> the two device ids it joins.
            sites: device id -> site id.
            kinds: device id -> device kind.
            ports: span id -> the ports it lands on at its two ends, in the order of ``links``
                (a span left out has no known ports).
            settle: device id -> seconds within which a device that starts failing has run every
                check once (a device left out is not polled: 0).

        Raises:
            ValueError: a parent or span end is not a device, or the parents form a cycle (the
                config loader rejects both, so this is a bug).
        """
        devices = list(parents)
        known = set(devices)
        for ident, (a, b) in links.items():
            for end in (a, b):
                if end not in known:
                    raise ValueError(f"span {ident!r} ends on unknown device {end!r}")
        spans_between: dict[frozenset[str], list[str]] = defaultdict(list)
        for ident, (a, b) in links.items():
            spans_between[frozenset((a, b))].append(ident)

        self._parents: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {}
        children: dict[str, list[str]] = defaultdict(list)
        for dev in devices:
            edges = []
            for parent in dict.fromkeys(parents[dev]):
                if parent not in known:
                    raise ValueError(f"device {dev!r} has unknown parent {parent!r}")
                edges.append((parent, tuple(sorted(spans_between.get(frozenset((parent, dev)), ())))))
                children[parent].append(dev)
            self._parents[dev] = tuple(edges)

        # Kahn's algorithm: parents before children, ties in inventory order.
        pending = {dev: len(self._parents[dev]) for dev in devices}
        order: list[str] = [dev for dev in devices if pending[dev] == 0]
        for dev in order:  # appending while iterating walks the queue
            for child in children[dev]:
                pending[child] -= 1
                if pending[child] == 0:
                    order.append(child)
        if len(order) != len(devices):
            stuck = sorted(dev for dev, n in pending.items() if n > 0)
            raise ValueError(f"parent cycle among {', '.join(stuck)}")
        self._order: tuple[str, ...] = tuple(order)
        self._links: dict[str, tuple[str, str]] = dict(links)
        self._site: dict[str, str] = {dev: sites[dev] for dev in devices}
        self._kind: dict[str, str] = {dev: kinds[dev] for dev in devices}
        by_site: dict[str, set[str]] = defaultdict(set)
        for dev in devices:
            by_site[self._site[dev]].add(dev)
        self._at_site: dict[str, frozenset[str]] = {site: frozenset(devs) for site, devs in by_site.items()}
        self._touching: dict[str, list[str]] = defaultdict(list)
        for ident, (a, b) in links.items():
            self._touching[a].append(ident)
            if b != a:
                self._touching[b].append(ident)
        # Per device, its spans that carry none of its own parent edges, with their other end: a
        # down one whose other end is up is evidence the device itself failed.
        own_edges = {dev: {s for _, spans in edges for s in spans} for dev, edges in self._parents.items()}
        self._witnesses: dict[str, tuple[tuple[str, str], ...]] = {
            dev: tuple(
                (span, b if a == dev else a)
                for span in self._touching.get(dev, ())
                for a, b in (links[span],)
                if span not in own_edges[dev]
            )
            for dev in devices
        }
        self._behind_cache: dict[tuple[EntityKind, str], frozenset[str]] = {}
        self._spans_at: dict[tuple[str, str], tuple[str, ...]] = {}
        for ident, end_ports in (ports or {}).items():
            if ident not in self._links:
                raise ValueError(f"ports given for unknown span {ident!r}")
            for dev, port in zip(self._links[ident], end_ports, strict=True):
                self._spans_at[(dev, port)] = (*self._spans_at.get((dev, port), ()), ident)
        self._settle: dict[str, float] = dict(settle or {})

    @classmethod
    def from_inventory(cls, inventory: Inventory) -> Topology:
        """Build the topology of an inventory (its devices' parents, its spans and their ports, and
        how long each device's checks take to come round)."""
        return cls(
            parents={d.id: d.parents for d in inventory.devices.values()},
            links={lk.id: (lk.a.device, lk.b.device) for lk in inventory.links.values()},
            sites={d.id: d.site for d in inventory.devices.values()},
            kinds={d.id: d.kind for d in inventory.devices.values()},
            ports={lk.id: (lk.a.port, lk.b.port) for lk in inventory.links.values()},
            settle={
                d.id: max((c.interval + c.timeout for c in d.checks), default=0.0) for d in inventory.devices.values()
            },
        )

    # ----------------------------------------------------------------------------------------
    # Structure

    @property
    def devices(self) -> tuple[str, ...]:
        """Return every device id, parents before children."""
        return self._order

    @property
    def links(self) -> Mapping[str, tuple[str, str]]:
        """Return span id -> the two device ids it joins."""
        return self._links

    def parents(self, device: str) -> tuple[str, ...]:
        """Return a device's parents (empty for a root)."""
        return tuple(p for p, _ in self._parents[device])

    def carrying(self, parent: str, child: str) -> tuple[str, ...]:
        """Return the spans that carry the edge parent -> child (sorted; empty if none does)."""
        for p, spans in self._parents[child]:
            if p == parent:
                return spans
        return ()

    def spans_at(self, device: str, port: str) -> tuple[str, ...]:
        """Return the spans that land on this port of this device (usually one; empty if none)."""
        return self._spans_at.get((device, port), ())

    def settle_s(self, device: str) -> float:
        """Return the seconds within which a device that started failing has run all its checks
        once (the longest interval plus timeout among them; 0 for a device nobody polls)."""
        return self._settle.get(device, 0.0)

    def devices_at(self, site: str) -> frozenset[str]:
        """Return the devices at a site (empty for an unknown site)."""
        return self._at_site.get(site, frozenset())

    def links_touching(self, devices: Iterable[str]) -> frozenset[str]:
        """Return the spans with at least one end on one of these devices."""
        return frozenset(s for dev in devices for s in self._touching.get(dev, ()))

    def site_of(self, device: str) -> str:
        """Return a device's site."""
        return self._site[device]

    def kind_of(self, device: str) -> str:
        """Return a device's kind."""
        return self._kind[device]

    def behind(self, kind: EntityKind, ident: str) -> frozenset[str]:
        """Return the devices cut off when this site, device or span is down, not counting itself.

        "Behind" means every path from a root to the device goes through the entity: in a ring, a
        device that keeps one path is not behind either side. For a site, the site's devices are
        taken down together and its own devices are not counted. Cached; O(devices + edges).

        Raises:
            KeyError: unknown device or span (the config loader checks scope ids).
        """
        key = (kind, ident)
        cached = self._behind_cache.get(key)
        if cached is not None:
            return cached
        if kind == "site":
            result = self.cut_off(devices=self.devices_at(ident))
        elif kind == "device":
            if ident not in self._parents:
                raise KeyError(f"unknown device {ident!r}")
            result = self.cut_off(devices={ident})
        else:
            if ident not in self._links:
                raise KeyError(f"unknown span {ident!r}")
            result = self.cut_off(links={ident})
        self._behind_cache[key] = result
        return result

    def cut_off(self, *, devices: Set[str] = frozenset(), links: Set[str] = frozenset()) -> frozenset[str]:
        """Return the devices that lose every path when these devices and spans are all down.

        The given devices themselves are not in the result.
        """
        dead = set(devices)
        out: set[str] = set()
        for dev in self._order:
            edges = self._parents[dev]
            if dev in dead or not edges:
                continue
            if all(p in dead or _cut(spans, links) for p, spans in edges):
                dead.add(dev)
                out.add(dev)
        return frozenset(out)

    def scope(self, kind: EntityKind, ident: str) -> Scope:
        """Return what a maintenance window on this entity covers.

        A site covers its devices, everything behind them, and the spans touching any of those; a
        device covers itself, everything behind it and the spans touching those; a span covers
        itself, everything behind it and the spans touching those. An id the topology does not
        know covers only itself (the config loader reports it).
        """
        if kind == "site":
            own = self.devices_at(ident)
            devs = own | self.behind("site", ident)
            return Scope(devices=devs, links=self.links_touching(devs))
        if kind == "device":
            if ident not in self._parents:
                return Scope(devices=frozenset({ident}), links=frozenset())
            devs = self.behind("device", ident) | {ident}
            return Scope(devices=devs, links=self.links_touching(devs))
        if ident not in self._links:
            return Scope(devices=frozenset(), links=frozenset({ident}))
        devs = self.behind("link", ident)
        return Scope(devices=devs, links=self.links_touching(devs) | {ident})

    # ----------------------------------------------------------------------------------------
    # Classification

    def device_state(self, device: str, down_devices: Set[str], down_links: Set[str]) -> DeviceState:
        """Return one device's state from its own check and its neighbours' (O(its edges and spans)).

        Raises:
            KeyError: unknown device.
        """
        if device not in down_devices:
            return "up"
        edges = self._parents[device]
        if not edges or any(p not in down_devices and not _cut(spans, down_links) for p, spans in edges):
            return "down"
        if any(span in down_links and other not in down_devices for span, other in self._witnesses[device]):
            return "down"
        return "unreachable"

    def is_root_cause(self, device: str, down_devices: Set[str], down_links: Set[str]) -> bool:
        """Return whether a device is a root cause: failing while some path to it is intact.

        This is the cheap question the engine asks per transition; :meth:`classify` answers it for
        every device at once and adds the impact.
        """
        return self.device_state(device, down_devices, down_links) == "down"

    def link_state(self, link: str, down_devices: Set[str], down_links: Set[str]) -> LinkState:
        """Return one span's state: ``up``, ``down`` (a root cause) or ``unreachable`` (explained by its ends)."""
        if link not in down_links:
            return "up"
        a, b = self._links[link]
        return _link_state(
            self.device_state(a, down_devices, down_links), self.device_state(b, down_devices, down_links)
        )

    def classify(self, down_devices: Set[str], down_links: Set[str]) -> Classification:
        """Classify every device and span, and compute each root cause's impact.

        Args:
            down_devices: devices whose own checks say down. Ids not in the inventory are ignored.
            down_links: spans that are down. Ids not in the inventory are ignored.

        Returns:
            The :class:`Classification`; one pass over the graph, O(devices + edges + spans).
        """
        states: dict[str, DeviceState] = {
            dev: self.device_state(dev, down_devices, down_links) if dev in down_devices else "up"
            for dev in self._order
        }

        link_states: dict[str, LinkState] = {}
        for ident, (a, b) in self._links.items():
            link_states[ident] = _link_state(states[a], states[b]) if ident in down_links else "up"

        causes: dict[str, frozenset[Cause]] = {}
        for dev in self._order:
            if states[dev] != "unreachable":
                continue
            found: set[Cause] = set()
            for parent, spans in self._parents[dev]:
                parent_state = states[parent]
                if parent_state == "down":
                    found.add(Cause("device", parent))
                elif parent_state == "unreachable":
                    found |= causes[parent]
                # Only the spans that are down cut the edge; those explained by their ends are not causes.
                found.update(Cause("link", s) for s in spans if link_states[s] == "down")
            causes[dev] = frozenset(found)

        victims: dict[Cause, list[str]] = {Cause("device", d): [] for d, s in states.items() if s == "down"}
        victims.update({Cause("link", lk): [] for lk, s in link_states.items() if s == "down"})
        for dev in self._order:
            for cause in causes.get(dev, ()):
                victims[cause].append(dev)
        impacts = {cause: self._impact(devs) for cause, devs in victims.items()}
        return Classification(devices=states, links=link_states, causes=causes, impacts=impacts)

    def impact(self, devices: Iterable[str]) -> Impact:
        """Return the :class:`Impact` of a set of devices: names sorted, counts by site and kind."""
        return self._impact(list(dict.fromkeys(devices)))

    def _impact(self, devices: list[str]) -> Impact:
        if not devices:
            return Impact()
        names = tuple(sorted(devices))
        return Impact(
            devices=names,
            by_site=dict(Counter(self._site[d] for d in names)),
            by_kind=dict(Counter(self._kind[d] for d in names)),
        )


def _cut(spans: tuple[str, ...], down_links: Set[str]) -> bool:
    """Return whether an edge carried by ``spans`` is cut: one of them is down."""
    return any(s in down_links for s in spans)


def _link_state(a: DeviceState, b: DeviceState) -> LinkState:
    """Return the state of a down span from the states of its two ends."""
    if a == "down" or b == "down" or (a == "unreachable" and b == "unreachable"):
        return "unreachable"
    return "down"
