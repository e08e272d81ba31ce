"""Device and span state from the latest outcome of each check (measurements ``device``, ``link``).

A device is ``up`` when all its checks pass, ``degraded`` when some do, ``down`` when none do.
A span is up when both of its end ports are oper-up (as far as SNMP tells) and both end devices
answer. ``unreachable`` and ``maintenance`` come with alerting, which knows the topology. A site's
public WiFi (``wifi_service``) follows its portal and APs (:mod:`netwatch.parkwifi`).

State changes are logged once each way (Home Assistant's rule), never every poll.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import structlog

from netwatch.inventory import Device, Inventory, Link
from netwatch.model import Observation, Outcome, Sample
from netwatch.parkwifi import AP_CHECK, PORTAL_CHECK, Explained, WifiServices
from netwatch.probes import REGISTRY

log = structlog.get_logger(__name__)


@dataclass
class _Tracked:
    state: str | None = None
    since: float = 0.0


@dataclass(frozen=True, slots=True)
class Seen:
    """What the last sample of a device, span or site's WiFi said, and since when (ns) it says it."""

    state: str
    reason: str
    since_ns: int
    updated_ns: int


class StateTracker:
    """Keep the latest outcome per (device, check) and emit state samples as they change."""

    def __init__(
        self,
        inventory: Inventory,
        emit: Callable[[list[Sample]], None],
        *,
        override: Callable[[str], str | None] = lambda device: None,
    ) -> None:
        self._emit = emit
        #: For a device that is not up: "unreachable" (behind a down parent) or "maintenance".
        self._override = override
        self._outcomes: dict[tuple[str, str], Outcome] = {}
        #: Checks that report port states, per device: their ports are expected to be known.
        self._port_reporters: dict[str, set[str]] = {}
        self._unknown_logged: set[str] = set()
        self._devices: dict[str, _Tracked] = {}
        self._links: dict[str, _Tracked] = {}
        #: What was last written for each device, span and site WiFi, for the API and status page.
        self.seen: dict[tuple[str, str], Seen] = {}
        self._wifi = WifiServices(
            inventory,
            portal=lambda device: self._outcomes.get((device, PORTAL_CHECK)),
            ap_state=self._ap_state,
            explain=override,
        )
        self.apply(inventory)

    def _ap_state(self, device: str) -> str | None:
        """An AP's state as its park's users see it: one that answers ping while its ``wifi``
        check finds no radio up (or the controller does not know it) serves no one."""
        state = self.device_state(device)
        radios = self._outcomes.get((device, AP_CHECK))
        if state == "degraded" and radios is not None and not radios.up and radios.reason == "bad_status":
            return "down"
        return state

    def apply(self, inventory: Inventory) -> None:
        """Switch to a new inventory (config reload), keeping what is known of devices that stay."""
        self._inv = inventory
        self._links_by_device: dict[str, list[Link]] = {}
        for link in inventory.links.values():
            for end in (link.a, link.b):
                self._links_by_device.setdefault(end.device, []).append(link)
        checks = {(d.id, c.name) for d in inventory.devices.values() for c in d.checks}
        self._outcomes = {k: v for k, v in self._outcomes.items() if k in checks}
        self._devices = {k: v for k, v in self._devices.items() if k in inventory.devices}
        self._links = {k: v for k, v in self._links.items() if k in inventory.links}
        known = {"device": inventory.devices, "link": inventory.links, "wifi_service": inventory.sites}
        self.seen = {k: v for k, v in self.seen.items() if k[1] in known.get(k[0], {})}
        self._port_reporters = {
            d.id: {c.name for c in d.checks if REGISTRY[c.name].reports_ports} for d in inventory.devices.values()
        }
        self._wifi.apply(inventory)

    @property
    def device_total(self) -> int:
        """Devices in the inventory."""
        return len(self._inv.devices)

    def device_counts(self) -> tuple[int, int]:
        """Return (up, not up) over the devices that have reported; degraded counts as up."""
        states = [t.state for t in self._devices.values() if t.state is not None]
        down = sum(1 for s in states if s == "down")
        return len(states) - down, down

    def device_state(self, device_id: str) -> str | None:
        """Return the last computed state of a device (None before its first check)."""
        tracked = self._devices.get(device_id)
        return tracked.state if tracked else None

    def observe(self, obs: Observation) -> None:
        """Take one observation: update the device, then the spans that end on it."""
        device = self._inv.devices.get(obs.device)
        if device is None:  # a check from before a reload that removed the device
            return
        self._outcomes[(obs.device, obs.check)] = obs.outcome
        # State is as of when the check finished collecting.
        ts = obs.started_ns + int(obs.duration_s * 1e9)
        samples = [self._device_sample(device, ts)]
        for link in self._links_by_device.get(obs.device, []):
            sample = self._link_sample(link, ts)
            if sample is not None:
                samples.append(sample)
        self._remember(samples)
        self._emit(samples)
        site = self._wifi.feeds(obs.device, obs.check)
        if site is not None:
            # Emitted after the device's own state, so that alerting has taken that in when the
            # service's state asks whether its failing devices are unreachable.
            wifi = self._wifi.sample(site, ts)
            if wifi is not None:
                self._remember([wifi])
                self._emit([wifi])

    def _remember(self, samples: list[Sample]) -> None:
        for s in samples:
            key = (s.measurement, s.tags.get("device") or s.tags.get("link") or s.tags.get("site", ""))
            state = str(s.fields.get("state", ""))
            before = self.seen.get(key)
            since = before.since_ns if before is not None and before.state == state else s.time_ns
            self.seen[key] = Seen(state, str(s.fields.get("reason", "")), since, s.time_ns)

    def wifi_override(self, site: str) -> Explained | None:
        """Return why a site's WiFi is down when another fault or a window explains it (else None)."""
        return self._wifi.explained(site)

    def _device_sample(self, device: Device, ts: int) -> Sample:
        outcomes = [
            (c.name, self._outcomes[(device.id, c.name)])
            for c in device.checks
            if (device.id, c.name) in self._outcomes
        ]
        failing = [(name, o) for name, o in outcomes if not o.up]
        if not failing:
            state, reason = "up", "ok"
        elif len(failing) == len(outcomes):
            # Every check that has reported fails (before the first full round, that may be
            # only some of them): down until another check says otherwise.
            state, reason = "down", failing[0][1].reason
        else:
            state, reason = "degraded", failing[0][1].reason
        tracked = self._devices.setdefault(device.id, _Tracked())
        if state != tracked.state:
            self._log_device(device, tracked, state, failing)
            tracked.state, tracked.since = state, time.monotonic()
        written = state
        if state != "up":
            written = self._override(device.id) or state
        return Sample(
            "device",
            device.target.base_tags(),
            {"up": int(state != "down"), "state": written, "reason": reason},
            ts,
        )

    def _log_device(self, device: Device, tracked: _Tracked, state: str, failing: list[tuple[str, Outcome]]) -> None:
        context = {"device": device.id, "site": device.site, "kind": device.kind}
        details = {name: f"{o.reason}: {o.detail}" if o.detail else o.reason for name, o in failing}
        if state == "up":
            if tracked.state is not None:
                log.info(
                    "device_up",
                    **context,
                    previous=tracked.state,
                    down_for_s=round(time.monotonic() - tracked.since, 1),
                )
        elif state == "down":
            log.warning("device_down", **context, failing=details)
        else:
            log.warning("device_degraded", **context, failing=details)

    def port_state(self, device: str, port: str) -> Literal["up", "down", "unknown", "unmonitored"]:
        """Return what the latest checks of ``device`` say about ``port``.

        ``unknown`` when the device has a check that reports ports (SNMP) but its latest result
        does not say (not run yet, failed, or no such port on the device); ``unmonitored`` when
        none of the device's checks reports ports.
        """
        reporters = self._port_reporters.get(device, set())
        if not reporters:
            return "unmonitored"
        for check in reporters:
            outcome = self._outcomes.get((device, check))
            if outcome is not None and outcome.up and port in outcome.ports_up:
                return "up" if outcome.ports_up[port] else "down"
        return "unknown"

    def _link_sample(self, link: Link, ts: int) -> Sample | None:
        """Return the span's state, or None while it cannot be told.

        Up when both ends answer and every end port that is monitored is oper-up; down when an
        end does not answer or an end port is oper-down. Until both ends have answered once, or
        while a monitored end port's state is not known, nothing is written (and the reason is
        logged once): a span is never reported up on a guess.
        """
        ends = (link.a, link.b)
        devices = [self.device_state(end.device) for end in ends]
        ports = [self.port_state(end.device, end.port) for end in ends]
        why = ""
        if any(s == "down" for s in devices):
            why = "end device not answering: " + ", ".join(
                e.device for e, s in zip(ends, devices, strict=True) if s == "down"
            )
        elif "down" in ports:
            why = "port down: " + ", ".join(
                f"{e.device}:{e.port}" for e, s in zip(ends, ports, strict=True) if s == "down"
            )
        elif any(s is None for s in devices) or "unknown" in ports:
            unknown = [e for e, s in zip(ends, ports, strict=True) if s == "unknown"]
            # Say so once, but not while the port-reporting check simply has not run yet.
            ran = all((e.device, c) in self._outcomes for e in unknown for c in self._port_reporters[e.device])
            if unknown and ran and link.id not in self._unknown_logged:
                self._unknown_logged.add(link.id)
                log.warning(
                    "link_state_unknown",
                    link=link.id,
                    ports=[f"{e.device}:{e.port}" for e in unknown],
                    why="SNMP does not report these ports (the check fails, or the device has no such port)",
                )
            return None
        self._unknown_logged.discard(link.id)
        state = "down" if why else "up"
        tracked = self._links.setdefault(link.id, _Tracked())
        if state != tracked.state:
            if state == "down":
                log.warning("link_down", link=link.id, lessee=link.lessee, why=why)
            elif tracked.state is not None:
                log.info(
                    "link_up",
                    link=link.id,
                    lessee=link.lessee,
                    down_for_s=round(time.monotonic() - tracked.since, 1),
                )
            tracked.state, tracked.since = state, time.monotonic()
        return Sample("link", link.tags(), {"up": int(state == "up"), "state": state}, ts)
