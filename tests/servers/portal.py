"""A captive portal on loopback: a redirect chain to a login page, and the ways portals break.

One aiohttp application answers on a plain HTTP port and on HTTPS ports with certificates from a
test CA (:mod:`tests.servers.pki`): a good one, an expired one and one for another host. A raw TCP
port answers with junk that is not HTTP. Use it in-process (``async with PortalServer(dir)``),
or as a plain process for the daemon's end-to-end tests (``python -m tests.servers.portal``),
where ``POST /_control`` switches the portal between working and broken.

Routes:

* ``/portal`` -> 302 ``/portal/welcome`` -> 302 (sets the session cookie) -> ``/portal/login``:
  200 with the welcome page, or a 302 back to ``/portal`` without the cookie (a loop).
* ``/it-works``: 200, a web server's default page where the portal should be.
* ``/loop/a`` <-> ``/loop/b``; ``/chain/{n}``: n redirects; ``/ftp``: a redirect to ftp://.
* ``/slow``: answers after 30 s; ``/error``: 500; ``/big``: 1 MiB of text with the marker at the end.
* ``/to-https``: 302 to the good HTTPS port's ``/portal``; ``/away``: 302 to ``/echo`` on the
  other origin (the plain port when asked over HTTPS, the HTTPS port otherwise).
* ``/echo``: the request's headers as JSON (what a server received); ``/auth``: 200 only with
  Basic ``netwatch:s3cret`` and ``X-Portal-Key: k3y``.
* ``/via-https/{name}``: 302 to ``/switch/{name}`` on the good HTTPS port.
* ``/switch/{name}``: the welcome page, or the status ``POST /_control?name=...&status=...``
  last set for that name (``status=200`` restores it).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Self

from aiohttp import web

from tests.servers.common import stop, wait_until
from tests.servers.pki import ServerCert, TestCA

WELCOME = "<html><body><h1>Welcome to City WiFi</h1><form>Accept the terms of use</form></body></html>"
COOKIE = "portal_session"
BASIC = "Basic " + base64.b64encode(b"netwatch:s3cret").decode()


def _app(state: dict[str, object]) -> web.Application:
    routes = web.RouteTableDef()

    @routes.get("/portal")
    async def portal(request: web.Request) -> web.Response:
        raise web.HTTPFound("/portal/welcome?ap=ap-vp-1&mac=00:11:22:33:44:55")

    @routes.get("/portal/welcome")
    async def welcome(request: web.Request) -> web.Response:
        resp = web.HTTPFound("login")  # relative: resolved against /portal/welcome
        resp.set_cookie(COOKIE, "abc123", path="/portal")
        raise resp

    @routes.get("/portal/login")
    async def login(request: web.Request) -> web.Response:
        if request.cookies.get(COOKIE) != "abc123":
            raise web.HTTPFound("/portal")
        return web.Response(text=WELCOME, content_type="text/html")

    @routes.get("/it-works")
    async def it_works(request: web.Request) -> web.Response:
        return web.Response(text="<html><body><h1>It works!</h1></body></html>", content_type="text/html")

    @routes.get("/loop/a")
    async def loop_a(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop/b")

    @routes.get("/loop/b")
    async def loop_b(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop/a")

    @routes.get("/chain/{n}")
    async def chain(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        if n <= 0:
            return web.Response(text=WELCOME, content_type="text/html")
        raise web.HTTPFound(f"/chain/{n - 1}")

    @routes.get("/ftp")
    async def ftp(request: web.Request) -> web.Response:
        raise web.HTTPFound("ftp://files.example/portal")

    @routes.get("/slow")
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(text=WELCOME)

    @routes.get("/error")
    async def error(request: web.Request) -> web.Response:
        return web.Response(status=500, text="Internal Server Error")

    @routes.get("/big")
    async def big(request: web.Request) -> web.Response:
        return web.Response(text="x" * (1024 * 1024) + "Welcome to City WiFi", content_type="text/plain")

    @routes.get("/to-https")
    async def to_https(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"https://127.0.0.1:{state['https_port']}/portal")

    @routes.get("/via-https/{name}")
    async def via_https(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"https://127.0.0.1:{state['https_port']}/switch/{request.match_info['name']}")

    @routes.get("/away")
    async def away(request: web.Request) -> web.Response:
        other = (
            f"http://127.0.0.1:{state['http_port']}" if request.secure else f"https://127.0.0.1:{state['https_port']}"
        )
        raise web.HTTPFound(f"{other}/echo")

    @routes.get("/echo")
    async def echo(request: web.Request) -> web.Response:
        state.setdefault("echoed", [])
        headers = dict(request.headers)
        state["echoed"].append(headers)  # type: ignore[attr-defined]
        return web.json_response(headers)

    @routes.get("/auth")
    async def auth(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != BASIC or request.headers.get("X-Portal-Key") != "k3y":
            return web.Response(status=401, text="who are you?")
        return web.Response(text=WELCOME, content_type="text/html")

    switches: dict[str, int] = {}

    @routes.get("/switch/{name}")
    async def switch(request: web.Request) -> web.Response:
        code = switches.get(request.match_info["name"], 200)
        return web.Response(status=code, text=WELCOME if code == 200 else "Service Unavailable")

    @routes.post("/_control")
    async def control(request: web.Request) -> web.Response:
        switches[request.query["name"]] = int(request.query["status"])
        return web.Response(text="ok")

    app = web.Application()
    app.add_routes(routes)
    return app


async def _junk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer anything with bytes that are not HTTP, then hang up."""
    writer.write(b"\x16\x03\x01garbage, not HTTP at all\r\n\r\n")
    await writer.drain()
    writer.close()


class PortalServer:
    """The portal on loopback: ``http_port``, ``https_port`` (good cert), ``expired_port``,
    ``wrong_host_port``, ``junk_port``; ``ca`` is the CA that signed the certificates."""

    def __init__(self, directory: Path) -> None:
        self.ca = TestCA(directory / "pki")
        self.good: ServerCert = self.ca.issue("127.0.0.1", "localhost", "portal.city.example", days_valid=90)
        self.expired: ServerCert = self.ca.issue("127.0.0.1", expired_days_ago=2, file_stem="expired")
        self.wrong_host: ServerCert = self.ca.issue("wrong.example", file_stem="wrong-host")
        self.state: dict[str, object] = {}
        self._runner: web.AppRunner | None = None
        self._junk: asyncio.Server | None = None
        self.http_port = self.https_port = self.expired_port = self.wrong_host_port = self.junk_port = 0

    @property
    def echoed(self) -> list[dict[str, str]]:
        """Headers ``/echo`` received, oldest first."""
        return list(self.state.get("echoed", []))  # type: ignore[call-overload]

    def url(self, path: str, *, port: int | None = None, scheme: str | None = None) -> str:
        port = port or self.http_port
        scheme = scheme or ("http" if port in (self.http_port, self.junk_port) else "https")
        return f"{scheme}://127.0.0.1:{port}{path}"

    async def _listen(self, cert: ServerCert | None) -> int:
        assert self._runner is not None
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=cert.server_context() if cert else None)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        return int(server.sockets[0].getsockname()[1])

    async def __aenter__(self) -> Self:
        # A short shutdown: /slow's handler is still sleeping when a test that timed out on it ends.
        self._runner = web.AppRunner(_app(self.state), handle_signals=False, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        self.http_port = await self._listen(None)
        self.https_port = await self._listen(self.good)
        self.expired_port = await self._listen(self.expired)
        self.wrong_host_port = await self._listen(self.wrong_host)
        self.state.update(http_port=self.http_port, https_port=self.https_port)
        self._junk = await asyncio.start_server(_junk, "127.0.0.1", 0)
        self.junk_port = int(self._junk.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._junk is not None:
            self._junk.close()
        if self._runner is not None:
            await self._runner.cleanup()


class PortalProcess:
    """The portal as a plain process (for tests that run ``netwatch run`` as a process too)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.http_port = self.https_port = 0
        self.ca_file = ""
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        ports_file = self.directory / "ports.json"
        root = Path(__file__).resolve().parents[2]
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.servers.portal", str(self.directory), str(ports_file)], cwd=root
        )
        wait_until(ports_file.exists, timeout=10, what="the portal server", proc=self._proc)
        ports = json.loads(ports_file.read_text())
        self.http_port, self.https_port, self.ca_file = ports["http"], ports["https"], ports["ca_file"]

    def stop(self) -> None:
        if self._proc is not None:
            stop(self._proc)

    def set(self, name: str, status: int) -> None:
        """Make ``/switch/{name}`` answer ``status`` (200: the welcome page again)."""
        url = f"http://127.0.0.1:{self.http_port}/_control?name={name}&status={status}"
        with urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=5) as resp:
            assert resp.status == 200


async def _serve(directory: Path, ports_file: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with PortalServer(directory) as server:
        ports = {"http": server.http_port, "https": server.https_port, "ca_file": str(server.ca.cert_file)}
        tmp = ports_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(ports))
        tmp.rename(ports_file)  # appears complete: the fixture waits for it
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="a captive portal on loopback, for tests")
    parser.add_argument("directory", type=Path, help="where the test CA and certificates go")
    parser.add_argument("ports_file", type=Path, help="written (JSON) once the server listens")
    args = parser.parse_args()
    asyncio.run(_serve(args.directory, args.ports_file))


if __name__ == "__main__":
    main()
