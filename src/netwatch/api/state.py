"""``GET /api/v1/state``: what netwatch thinks of the plant now, for the demo view and the status page.

Every device with its state (as written to ``device.state``: up, degraded, down, unreachable,
maintenance, or ``unknown`` before its first check), reason and since when; every span; every
site with its name, kind, location and its public WiFi where it has any. Reads follow the alert
endpoints' rule: open to loopback peers, the bearer token from anywhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from netwatch.alerting.silences import rfc3339
from netwatch.api.alerts import Access
from netwatch.api.statuspage import render

if TYPE_CHECKING:
    # Types only: the inventory imports the config, which imports this package (ApiConfig).
    from netwatch.inventory import Inventory
    from netwatch.state import Seen

_NO_STORE = {"Cache-Control": "no-store"}


def _seen(seen: Seen | None) -> dict[str, Any]:
    if seen is None:
        return {"state": "unknown", "reason": None, "since": None, "updated": None}
    return {
        "state": seen.state,
        "reason": seen.reason or None,
        "since": rfc3339(seen.since_ns),
        "updated": rfc3339(seen.updated_ns),
    }


def plant_state(inventory: Inventory, seen: dict[tuple[str, str], Seen]) -> dict[str, Any]:
    """Return the state document from the inventory and what the state tracker last wrote."""
    sites = []
    for site in inventory.sites.values():
        doc: dict[str, Any] = {"id": site.id, "name": site.name, "kind": site.kind}
        if site.lat is not None and site.lon is not None:
            doc["location"] = {"lat": site.lat, "lon": site.lon}
        wifi = seen.get(("wifi_service", site.id))
        doc["wifi"] = None if wifi is None else _seen(wifi)["state"]
        sites.append(doc)
    devices = [
        {"id": d.id, "site": d.site, "kind": d.kind, **_seen(seen.get(("device", d.id)))}
        for d in inventory.devices.values()
    ]
    links = [
        {
            "id": link.id,
            "lessee": link.lessee,
            "a": link.a.device,
            "b": link.b.device,
            **_seen(seen.get(("link", link.id))),
        }
        for link in inventory.links.values()
    ]
    return {"sites": sites, "devices": devices, "links": links}


@dataclass
class StateApi:
    """The state endpoint of one daemon."""

    source: Callable[[], dict[str, Any]]
    access: Access
    instance: Callable[[], str]

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/state", self.state)
        app.router.add_get("/status", self.page)

    async def state(self, request: web.Request) -> web.Response:
        refused = self.access.refuse_read(request)
        if refused is not None:
            return refused
        return web.json_response({"instance": self.instance(), **self.source()}, headers=_NO_STORE)

    async def page(self, request: web.Request) -> web.Response:
        """The status page for the on-call phone (:mod:`netwatch.api.statuspage`)."""
        refused = self.access.refuse_read(request)
        if refused is not None:
            return refused
        html = render({"instance": self.instance(), **self.source()})
        return web.Response(text=html, content_type="text/html", charset="utf-8", headers=_NO_STORE)


def status_extras(
    incidents: list[dict[str, Any]], windows: list[Any], last_write_age_s: float | None, *, influxdb: bool = True
) -> dict[str, Any]:
    """What the status page adds to the plant: open incidents (not those held behind a root
    cause: the root cause's impact names them), maintenance in force, the newest data's age."""
    order = {"critical": 0, "warning": 1, "info": 2}
    shown = [i for i in incidents if i.get("held") != "unreachable"]
    shown.sort(key=lambda i: (order.get(str(i.get("severity")), 3), str(i.get("since") or "")))
    return {
        "incidents": shown,
        "maintenance": [
            {
                "scope": f"{w.scope[0]} {w.scope[1]}",
                "start": w.start.isoformat(),
                "end": w.end.isoformat(),
                "reason": w.reason,
            }
            for w in windows
        ],
        "last_write_age_s": last_write_age_s,
        "influxdb": influxdb,
    }
