"""What physically still answers in the lab: the ground truth a fault creates.

Independent of netwatch's own topology inference (:mod:`netwatch.alerting.topology`) on purpose:
the end-to-end tests compare what netwatch concludes with what the lab actually did.

The plant is a graph. A device and each of its parents are connected: through the spans between
them when there are any (cut all of them and the connection is gone), else by a local cable
that no fault cuts. A span between two devices that are not parent and child connects them too.
The NOC sits at the devices without parents; whatever no longer has a path to one of them, or
is down itself, is dark: it stops answering ICMP, SNMP, HTTP, RTSP and MQTT alike.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable

from netwatch.lab.spec import LabSpec


class Plant:
    """The lab's connectivity, with spans cut and devices down on command."""

    def __init__(self, spec: LabSpec) -> None:
        self._roots = [d.id for d in spec.devices if not d.parents]
        self._spans: dict[frozenset[str], list[str]] = defaultdict(list)
        for link in spec.links:
            self._spans[frozenset((link.a.device, link.b.device))].append(link.id)
        pairs = {frozenset((d.id, p)) for d in spec.devices for p in d.parents} | set(self._spans)
        self._neighbours: dict[str, set[str]] = defaultdict(set)
        for pair in pairs:
            a, b = tuple(pair)
            self._neighbours[a].add(b)
            self._neighbours[b].add(a)
        self._devices = [d.id for d in spec.devices]

    def dark(self, cut_spans: Iterable[str] = (), down_devices: Iterable[str] = ()) -> set[str]:
        """Return the devices that do not answer with these spans cut and these devices down."""
        cut = set(cut_spans)
        down = set(down_devices)
        seen = {r for r in self._roots if r not in down}
        queue = deque(seen)
        while queue:
            here = queue.popleft()
            for there in self._neighbours[here]:
                if there in seen or there in down or not self._connected(here, there, cut):
                    continue
                seen.add(there)
                queue.append(there)
        return {d for d in self._devices if d not in seen}

    def _connected(self, a: str, b: str, cut: set[str]) -> bool:
        spans = self._spans.get(frozenset((a, b)))
        return not spans or any(s not in cut for s in spans)
