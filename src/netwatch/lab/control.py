"""The lab's control endpoint (``lab.control``, loopback only) and the client ``netwatch lab fault`` uses.

``GET /status`` devices, addresses, what is dark, faults in force; ``GET /faults``;
``POST /faults`` ``{"kind": "cut", "target": "span-fs31-vp"}`` sets one (201 with its id and
the devices it affects; 400 with the reason when it cannot be set); ``DELETE /faults/<id>``
clears one and ``DELETE /faults`` all of them. JSON in, JSON out.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web

from netwatch.lab.city import CityLab, FaultError, FaultRequest


def _split(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"the lab's control endpoint listens on loopback only, not {host}")
    return host, int(port)


def _app(city: CityLab) -> web.Application:
    async def status(_: web.Request) -> web.Response:
        return web.json_response(city.status())

    async def faults(_: web.Request) -> web.Response:
        return web.json_response({"faults": [f.to_json() for f in city.faults.values()]})

    async def add(request: web.Request) -> web.Response:
        try:
            doc = await request.json()
        except json.JSONDecodeError:
            return web.json_response({"error": "the body is not JSON"}, status=400)
        if not isinstance(doc, dict):
            return web.json_response({"error": "the body is a JSON object"}, status=400)
        try:
            fault = await city.apply(FaultRequest.from_json(doc))
        except KeyError as exc:
            return web.json_response({"error": f"unknown {exc.args[0]!r}"}, status=400)
        except (FaultError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(fault.to_json(), status=201)

    async def clear(request: web.Request) -> web.Response:
        try:
            cleared = await city.clear(request.match_info.get("fault_id"))
        except FaultError as exc:
            return web.json_response({"error": str(exc)}, status=404)
        return web.json_response({"cleared": [f.to_json() for f in cleared]})

    app = web.Application()
    app.router.add_get("/status", status)
    app.router.add_get("/faults", faults)
    app.router.add_post("/faults", add)
    app.router.add_delete("/faults", clear)
    app.router.add_delete("/faults/{fault_id}", clear)
    return app


@asynccontextmanager
async def serve_control(city: CityLab, listen: str) -> AsyncIterator[str]:
    """Serve the control endpoint while the context is open; yield its base URL."""
    host, port = _split(listen)
    runner = web.AppRunner(_app(city), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
        yield f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"
    finally:
        await runner.cleanup()


class ControlError(RuntimeError):
    """The lab refused a request, or could not be reached."""


async def call(listen: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """Send one request to a running lab's control endpoint; return its JSON answer."""
    host, port = _split(listen)
    url = f"http://{host}:{port}{path}" if ":" not in host else f"http://[{host}]:{port}{path}"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
            session.request(method, url, json=body) as response,
        ):
            doc = await response.json(content_type=None)
            if response.status >= 400:
                raise ControlError(str(doc.get("error", doc)) if isinstance(doc, dict) else str(doc))
            return doc
    except aiohttp.ClientConnectorError:
        raise ControlError(f"no lab answers at {listen} (is `netwatch lab run` running?)") from None
