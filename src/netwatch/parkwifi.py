"""A site's public WiFi as its users see it (measurement ``wifi_service``).

Users get WiFi in a park only when the captive portal works *and* at least one access point is
up: APs without a portal leave people stuck at the login page, a portal without APs serves no one.
Neither the AP checks nor the portal check says that alone, so it is derived here from their latest
results, like a device's state from its checks.

Which devices count, per site:

* the portal: every ``portal`` check of a device at the site. The portal works when all of them
  pass (a park with two portal checks, say the entry redirect and the login page, needs both).
  A ``portal`` check is what says a site offers public WiFi: a park (or a community centre) gets
  a WiFi state once one of its devices has one. Without it nothing can tell whether visitors get
  past the login page, so nothing is claimed.
* the APs: devices of kind ``wifi_ap`` at the site that have at least one check (a push-only AP
  cannot be judged). An AP is up when its device state is ``up``, or ``degraded`` unless its
  ``wifi`` check says no radio is up (it answers ping but serves no one). With no AP in
  the inventory the service follows the portal alone (``aps_total`` says 0).

The state is ``up`` or ``down``; a down service whose every culprit (the failing portal checks'
devices, and the APs when none is up) is unreachable behind another fault or in maintenance is
written ``unreachable`` or ``maintenance``, as a device is, and alerting holds its page the same
way. Until the inputs settle it (the first checks have not all reported, and none of them already
decides the answer) nothing is written: the service is never reported on a guess.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

import structlog

from netwatch.inventory import Inventory
from netwatch.model import FieldValue, Outcome, Sample

log = structlog.get_logger(__name__)

PORTAL_CHECK: Final = "portal"
AP_KIND: Final = "wifi_ap"
#: An AP's radio check: failing with bad_status (no radio up, not on its controller) it serves no one.
AP_CHECK: Final = "wifi"

ServiceState = Literal["up", "down", "unreachable", "maintenance"]
Explained = Literal["unreachable", "maintenance"]


@dataclass(frozen=True, slots=True)
class WifiSite:
    """The devices whose checks decide one site's public WiFi."""

    site: str
    aps: tuple[str, ...]
    #: Devices at the site that have a ``portal`` check.
    portals: tuple[str, ...]


def wifi_sites(inventory: Inventory) -> dict[str, WifiSite]:
    """Return the sites that offer public WiFi (those with a portal check), with their APs and portals."""
    aps: dict[str, list[str]] = {}
    portals: dict[str, list[str]] = {}
    for device in inventory.devices.values():
        if device.kind == AP_KIND and device.checks:
            aps.setdefault(device.site, []).append(device.id)
        if any(c.name == PORTAL_CHECK for c in device.checks):
            portals.setdefault(device.site, []).append(device.id)
    found = {}
    for site in inventory.sites.values():
        if site.id in portals:
            found[site.id] = WifiSite(site.id, tuple(aps.get(site.id, [])), tuple(portals[site.id]))
    return found


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the inputs say about one site's WiFi right now."""

    #: None while the inputs do not settle it yet.
    state: ServiceState | None
    aps_up: int
    aps_total: int
    #: None before every portal check has reported (and none failed).
    portal_up: bool | None
    #: Why it is down, for the log (empty when up).
    why: str = ""

    def fields(self) -> dict[str, FieldValue]:
        """Return the fields of the ``wifi_service`` sample."""
        assert self.state is not None
        fields: dict[str, FieldValue] = {
            "up": int(self.state == "up"),
            "state": self.state,
            "aps_up": self.aps_up,
            "aps_total": self.aps_total,
        }
        if self.portal_up is not None:
            fields["portal_up"] = int(self.portal_up)
        return fields


def judge(
    site: WifiSite,
    portal: Callable[[str], Outcome | None],
    ap_state: Callable[[str], str | None],
    explain: Callable[[str], str | None],
) -> Verdict:
    """Decide a site's WiFi from its inputs.

    Args:
        site: the site's APs and portal devices.
        portal: a portal device's latest ``portal`` outcome (None before its first check).
        ap_state: an AP's device state (None before its first check).
        explain: for a failing device, ``unreachable`` or ``maintenance`` when another fault or a
            window explains it, else None.
    """
    states = [ap_state(ap) for ap in site.aps]
    aps_up = sum(1 for s in states if s in ("up", "degraded"))
    aps_down = bool(site.aps) and aps_up == 0 and all(s is not None for s in states)
    aps_ok = not site.aps or aps_up > 0

    outcomes = {dev: portal(dev) for dev in site.portals}
    failing = [dev for dev, o in outcomes.items() if o is not None and not o.up]
    reported = all(o is not None for o in outcomes.values())
    portal_up = not failing if failing or reported else None

    total = len(site.aps)
    if failing or aps_down:
        culprits = failing + (list(site.aps) if aps_down else [])
        reasons = [explain(dev) for dev in culprits]
        state: ServiceState = "down"
        if all(r in ("unreachable", "maintenance") for r in reasons):
            state = "maintenance" if "maintenance" in reasons else "unreachable"
        why = []
        for dev in failing:
            outcome = outcomes[dev]
            assert outcome is not None
            why.append(f"portal check of {dev} fails ({outcome.reason})")
        if aps_down:
            why.append(f"none of {len(site.aps)} APs is up")
        return Verdict(state, aps_up, total, portal_up, why="; ".join(why))
    if portal_up and aps_ok:
        return Verdict("up", aps_up, total, portal_up)
    return Verdict(None, aps_up, total, portal_up)


@dataclass
class _Seen:
    up: bool | None = None
    since: float = 0.0


class WifiServices:
    """Derive ``wifi_service`` samples as the checks that feed them report.

    The state tracker owns the latest outcomes and device states; this reads them through the
    callables it is given, so there is one source of truth.
    """

    def __init__(
        self,
        inventory: Inventory,
        *,
        portal: Callable[[str], Outcome | None],
        ap_state: Callable[[str], str | None],
        explain: Callable[[str], str | None],
    ) -> None:
        self._portal = portal
        self._ap_state = ap_state
        self._explain = explain
        self._seen: dict[str, _Seen] = {}
        self.apply(inventory)

    def apply(self, inventory: Inventory) -> None:
        """Take a reloaded inventory; what is known of sites that stay is kept."""
        self.sites: Mapping[str, WifiSite] = wifi_sites(inventory)
        self._aps = {ap: s.site for s in self.sites.values() for ap in s.aps}
        self._portals = {dev: s.site for s in self.sites.values() for dev in s.portals}
        self._seen = {k: v for k, v in self._seen.items() if k in self.sites}

    def feeds(self, device: str, check: str) -> str | None:
        """Return the site whose WiFi a check of ``device`` decides, if any."""
        if check == PORTAL_CHECK and device in self._portals:
            return self._portals[device]
        return self._aps.get(device)

    def verdict(self, site: str) -> Verdict | None:
        """Return what the inputs say about a site's WiFi now (None for a site without WiFi)."""
        found = self.sites.get(site)
        if found is None:
            return None
        return judge(found, self._portal, self._ap_state, self._explain)

    def sample(self, site: str, ts: int) -> Sample | None:
        """Return the site's ``wifi_service`` sample, or None while it cannot be told; log changes once."""
        verdict = self.verdict(site)
        if verdict is None or verdict.state is None:
            return None
        up = verdict.state == "up"
        seen = self._seen.setdefault(site, _Seen())
        if up != seen.up:
            if not up:
                log.warning("wifi_service_down", site=site, state=verdict.state, why=verdict.why)
            elif seen.up is not None:
                log.info("wifi_service_up", site=site, down_for_s=round(time.monotonic() - seen.since, 1))
            seen.up, seen.since = up, time.monotonic()
        return Sample("wifi_service", {"site": site}, verdict.fields(), ts)

    def explained(self, site: str) -> Explained | None:
        """Return ``unreachable`` or ``maintenance`` when the site's WiFi is down only because of
        another fault or a window (alerting holds its page then), else None."""
        verdict = self.verdict(site)
        if verdict is not None and verdict.state in ("unreachable", "maintenance"):
            return "unreachable" if verdict.state == "unreachable" else "maintenance"
        return None
