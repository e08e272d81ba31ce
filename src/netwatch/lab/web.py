"""The lab's web devices: parks' captive portals and cameras' snapshots, with faults on command.

One aiohttp server answers for every device. Each device listens on its own (address, port),
its loopback address in a lab, and a request is routed by the address it arrived at, so closing
one device's listener (fault ``down``) refuses that device alone and costs the others nothing.
An idle lab is idle: nothing runs between requests.

A portal intercepts whatever a visitor asks for, as captive portals do, and sends it through the
chain netwatch's ``portal`` check follows::

    GET <any path>             -> 302 /portal/welcome?ap=<device>&client_mac=...
    GET /portal/welcome        -> 302 /portal/login, setting the portal's session cookie
                                  (https://<address>:<https_port>/portal/login with TLS)
    GET /portal/login          -> 200, the welcome page with "Terms of use" (with the cookie;
                                  without it, back to the start: a loop)

Portal faults: ``broken`` (the login page is an error page, still 200: a portal whose backend
died), ``slow`` (the first answer comes after ``delay_s``), ``down`` (connection refused).

A camera serves its picture (:mod:`netwatch.lab.jpeg`) at its snapshot path, behind Basic or
Digest auth when it has a :class:`~netwatch.lab.challenge.Gate`. Faults: ``html_error`` (an HTML
error page with 200, as a camera whose image pipeline hung serves), ``truncated`` (the first
half of the picture, a complete HTTP answer), ``slow``, ``down``. ``clear`` ends any fault.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, Self, get_args

from aiohttp import web

from netwatch.lab.challenge import Gate
from netwatch.lab.jpeg import DEFAULT_MIN_BYTES, picture
from netwatch.lab.labca import LabCA

PortalFault = Literal["broken", "slow", "down", "clear"]
SnapshotFault = Literal["html_error", "truncated", "slow", "down", "clear"]
PORTAL_FAULTS: Final[frozenset[str]] = frozenset(get_args(PortalFault))
SNAPSHOT_FAULTS: Final[frozenset[str]] = frozenset(get_args(SnapshotFault))

SNAPSHOT_PATH: Final = "/snapshot.jpg"
#: Text every welcome page carries, which the written config's expect_body_regex looks for.
TERMS: Final = "Terms of use"
COOKIE: Final = "lab_portal_session"

_WELCOME = (
    "<!doctype html><html><head><title>City WiFi</title></head><body><h1>Welcome to City WiFi</h1>"
    "<p>{device}</p><form method=post action=/portal/accept><h2>Terms of use</h2>"
    "<p>Free public WiFi. Be kind.</p><button>Accept and connect</button></form></body></html>"
)
_PORTAL_ERROR = (
    "<!doctype html><html><head><title>Error</title></head><body><h1>Service temporarily unavailable</h1>"
    "<p>The guest authentication service is not responding. Please try again later.</p></body></html>"
)
_CAMERA_ERROR = (
    "<!doctype html><html><head><title>Camera</title></head><body><h1>Error</h1>"
    "<p>Snapshot unavailable: video encoder not running.</p></body></html>"
)


def _address(text: str) -> str:
    """Normalise an address so a socket's own name finds its device (``::1`` and ``0:0::1`` alike)."""
    return str(ipaddress.ip_address(text))


@dataclass
class _Device:
    device: str
    kind: Literal["portal", "camera"]
    address: str
    port: int
    path: str
    https_port: int | None = None
    gate: Gate | None = None
    min_bytes: int = DEFAULT_MIN_BYTES
    fault: str = "clear"
    delay_s: float = 0.0
    sites: list[web.TCPSite] = field(default_factory=list)

    def picture(self) -> bytes:
        return picture(self.min_bytes)


class WebLab:
    """Portals and camera snapshots on their own addresses, and the faults the lab sets on them.

    Add devices, then ``start()`` (or ``async with``); ``fault()`` while running; ``stop()``.
    Port 0 picks a free port, which :meth:`url` then names. ``tls_dir``: where the lab's CA lives,
    needed for portals with an ``https_port``; :attr:`ca_file` is the CA a netwatch config trusts.
    """

    def __init__(self, *, tls_dir: Path | None = None, slow_s: float = 30.0) -> None:
        self._tls_dir = tls_dir
        self._slow_s = slow_s
        self._devices: dict[str, _Device] = {}
        self._by_socket: dict[tuple[str, int], _Device] = {}
        self._runner: web.AppRunner | None = None
        self._ca: LabCA | None = None
        self._tls_context: ssl.SSLContext | None = None

    # -- set-up ---------------------------------------------------------------------------------

    def add_portal(
        self, device: str, address: str, port: int, *, path: str = "/", https_port: int | None = None
    ) -> None:
        """A captive portal whose entry URL is ``http://address:port{path}``; with ``https_port``, the
        chain ends on HTTPS there (``tls_dir`` needed)."""
        if https_port is not None and self._tls_dir is None:
            raise ValueError(f"{device}: an https_port needs WebLab(tls_dir=...) for the lab's CA")
        self._add(_Device(device, "portal", _address(address), port, path, https_port=https_port))

    def add_camera(
        self,
        device: str,
        address: str,
        port: int,
        *,
        path: str = SNAPSHOT_PATH,
        gate: Gate | None = None,
        min_bytes: int = DEFAULT_MIN_BYTES,
    ) -> None:
        """A camera serving a JPEG of at least ``min_bytes`` at ``http://address:port{path}``."""
        self._add(_Device(device, "camera", _address(address), port, path, gate=gate, min_bytes=min_bytes))

    def _add(self, dev: _Device) -> None:
        if self._runner is not None:
            raise RuntimeError("add devices before start()")
        if dev.device in self._devices:
            raise ValueError(f"{dev.device} is already in the web lab")
        if not dev.path.startswith("/"):
            raise ValueError(f"{dev.device}: a path starts with /")
        self._devices[dev.device] = dev

    @property
    def ca_file(self) -> Path | None:
        """The lab CA's certificate (PEM), once started with HTTPS portals; None without."""
        return self._ca.ca_file if self._ca is not None else None

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # A short shutdown: a ``slow`` answer still sleeping must not hold the lab's exit.
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.25)
        await self._runner.setup()
        secure = [d for d in self._devices.values() if d.https_port is not None]
        if secure:
            assert self._tls_dir is not None  # checked in add_portal
            self._ca = LabCA(self._tls_dir)
            self._tls_context = self._ca.server_context(d.address for d in secure)
        try:
            for dev in self._devices.values():
                # Warm the picture cache now, not on a camera's first request (a check's timeout runs).
                if dev.kind == "camera":
                    dev.picture()
                await self._listen(dev)
        except BaseException:
            await self.stop()  # an address that cannot be bound must not leave the others listening
            raise

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for dev in self._devices.values():
            dev.sites.clear()
        self._by_socket.clear()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _listen(self, dev: _Device) -> None:
        assert self._runner is not None
        plain = web.TCPSite(self._runner, dev.address, dev.port)
        await plain.start()
        dev.port = plain.port  # port 0: keep the one picked, so `down` then `clear` comes back there
        dev.sites = [plain]
        self._by_socket[(dev.address, dev.port)] = dev
        if dev.https_port is not None:
            assert self._tls_context is not None  # made in start() for every portal with an https_port
            secure = web.TCPSite(self._runner, dev.address, dev.https_port, ssl_context=self._tls_context)
            await secure.start()
            dev.https_port = secure.port
            dev.sites.append(secure)
            self._by_socket[(dev.address, dev.https_port)] = dev

    async def _close(self, dev: _Device) -> None:
        for site in dev.sites:
            await site.stop()
        dev.sites = []
        # A device that goes down takes its open connections with it: a client keeping one alive
        # (the snapshot check's session does) must not go on being answered by a dead camera.
        server = self._runner.server if self._runner is not None else None
        ours = {(dev.address, dev.port), (dev.address, dev.https_port)}
        for handler in server.connections if server is not None else []:
            sockname = handler.transport.get_extra_info("sockname") if handler.transport is not None else None
            if sockname and (_address(sockname[0]), sockname[1]) in ours:
                handler.force_close()

    # -- faults ---------------------------------------------------------------------------------

    async def fault(self, device: str, fault: PortalFault | SnapshotFault, *, delay_s: float | None = None) -> None:
        """Set a device's fault (``clear`` ends it); ``delay_s`` is how long ``slow`` waits."""
        dev = self._device(device)
        allowed = PORTAL_FAULTS if dev.kind == "portal" else SNAPSHOT_FAULTS
        if fault not in allowed:
            raise ValueError(f"{device} is a {dev.kind}: its faults are {', '.join(sorted(allowed))}, not {fault!r}")
        if fault == "down":
            await self._close(dev)
        elif not dev.sites and self._runner is not None:
            await self._listen(dev)
        dev.fault = fault
        dev.delay_s = self._slow_s if delay_s is None else delay_s

    def faults(self) -> dict[str, str]:
        """Return every device's current fault (``clear`` for none)."""
        return {name: dev.fault for name, dev in self._devices.items()}

    # -- what a client sees ---------------------------------------------------------------------

    def url(self, device: str) -> str:
        """Return a portal's entry URL or a camera's snapshot URL (the one a netwatch config names)."""
        dev = self._device(device)
        host = f"[{dev.address}]" if ":" in dev.address else dev.address
        return f"http://{host}:{dev.port}{dev.path}"

    def picture(self, device: str) -> bytes:
        """Return the picture a camera serves when it works."""
        return self._device(device).picture()

    def _device(self, device: str) -> _Device:
        try:
            return self._devices[device]
        except KeyError:
            raise KeyError(f"{device} is not a web lab device") from None

    # -- serving --------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
        dev = self._by_socket.get((_address(sockname[0]), sockname[1])) if sockname else None
        if dev is None:  # a listener of a device since removed: answer as nothing there would
            raise web.HTTPNotFound()
        if dev.kind == "portal":
            return await self._portal(dev, request)
        return await self._camera(dev, request)

    async def _portal(self, dev: _Device, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == "/portal/login":
            if dev.fault == "broken":
                return web.Response(text=_PORTAL_ERROR, content_type="text/html")
            if request.cookies.get(COOKIE) != dev.device:
                raise web.HTTPFound(self.url(dev.device))
            return web.Response(text=_WELCOME.format(device=dev.device), content_type="text/html")
        if path == "/portal/welcome":
            if dev.https_port is not None:
                host = f"[{dev.address}]" if ":" in dev.address else dev.address
                login = f"https://{host}:{dev.https_port}/portal/login"
            else:
                login = "login"  # relative, as many portals write it: resolved against /portal/welcome
            found = web.HTTPFound(login)
            found.set_cookie(COOKIE, dev.device, path="/portal", httponly=True)
            raise found
        # Anything else is a visitor's page the portal intercepts, the entry URL among them.
        if dev.fault == "slow":
            await asyncio.sleep(dev.delay_s)
        raise web.HTTPFound(f"/portal/welcome?ap={dev.device}&client_mac=02:00:5e:10:00:01")

    async def _camera(self, dev: _Device, request: web.Request) -> web.StreamResponse:
        if request.path != dev.path:
            raise web.HTTPNotFound()
        if dev.fault == "slow":
            await asyncio.sleep(dev.delay_s)
        if dev.gate is not None:
            verdict = dev.gate.check(request.method, request.raw_path, request.headers.get("Authorization"))
            if verdict != "ok":
                challenge = dev.gate.challenge(stale=verdict == "stale")
                return web.Response(status=401, text="401 Unauthorized", headers={"WWW-Authenticate": challenge})
        if dev.fault == "html_error":
            return web.Response(text=_CAMERA_ERROR, content_type="text/html")
        body = dev.picture()
        if dev.fault == "truncated":
            body = body[: len(body) // 2]
        return web.Response(body=body, content_type="image/jpeg", headers={"Cache-Control": "no-store"})
