"""Snapshot probe against a loopback aiohttp server playing a camera's web server."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError

from netwatch.contract import CONTRACT
from netwatch.model import Outcome, Target
from netwatch.probes.base import ProbeResources
from netwatch.probes.httpauth import parse_challenges
from netwatch.probes.snapshot import SnapshotConfig, SnapshotProbe
from tests.servers.common import free_port
from tests.unit.probes.pictures import tiny_jpeg, tiny_png

TARGET = Target("cam-1", "yard", "camera", "127.0.0.1")
USER, PASSWORD = "viewer", "Sn4p-Secret"
JPEG = tiny_jpeg(640, 480)
PNG = tiny_png(4, 3)
HTML = b"<!DOCTYPE html><html><body><h1>Camera busy</h1></body></html>"
HITS = web.AppKey("hits", list[str | None])


@dataclass
class Camera:
    """A loopback 'camera' web server: the URL template of its root, and its app (for what it saw)."""

    base: str
    app: web.Application


def digest_ok(request: web.Request) -> bool:
    """Check a Digest answer (MD5, qop=auth) the way a camera does, independently of netwatch."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Digest "):
        return False
    (got,) = parse_challenges([header])
    p = got.params
    ha1 = hashlib.md5(f"{USER}:cam:{PASSWORD}".encode()).hexdigest()
    ha2 = hashlib.md5(f"GET:{p['uri']}".encode()).hexdigest()
    expected = hashlib.md5(f"{ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:auth:{ha2}".encode()).hexdigest()
    return p["username"] == USER and p["uri"] == request.path_qs and p["response"] == expected


async def protected(request: web.Request) -> web.StreamResponse:
    request.app[HITS].append(request.headers.get("Authorization"))
    if digest_ok(request):
        return web.Response(body=JPEG, content_type="image/jpeg")
    challenge = 'Digest realm="cam", nonce="abc123", qop="auth", algorithm=MD5'
    return web.Response(status=401, headers={"WWW-Authenticate": challenge})


async def truncated_by_connection(request: web.Request) -> web.StreamResponse:
    """Promise the whole picture, send half, and drop the connection."""
    resp = web.StreamResponse(headers={"Content-Type": "image/jpeg", "Content-Length": str(len(JPEG))})
    await resp.prepare(request)
    await resp.write(JPEG[: len(JPEG) // 2])
    assert request.transport is not None
    request.transport.close()
    return resp


def serve(body: bytes, content_type: str) -> web.Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type=content_type)

    return handler


async def moved(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/snap.png")


async def elsewhere(request: web.Request) -> web.StreamResponse:
    """Redirect to the same server under another name: another origin as far as credentials go."""
    raise web.HTTPFound(f"http://localhost:{request.url.port}/protected.jpg")


async def endless(request: web.Request) -> web.StreamResponse:
    """A chunked 'picture' without Content-Length that never ends (a stream served at the snapshot URL)."""
    resp = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    await resp.write(JPEG[:-2])
    for _ in range(10_000):  # bounded: 640 MB at most, far beyond what the probe may read
        await resp.write(b"\x00" * 65536)
    return resp


async def hang(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(3600)
    raise AssertionError("unreachable")


@pytest.fixture
async def camera() -> AsyncIterator[Camera]:
    """Base URL of a loopback 'camera' web server with one path per behaviour, and its app."""
    app = web.Application()
    app[HITS] = []
    static = {
        "/snap.jpg": (JPEG, "image/jpeg"),
        "/snap.png": (PNG, "image/png"),
        "/error-page": (HTML, "text/html"),
        "/cut.jpg": (JPEG[:-200], "image/jpeg"),
        "/big.jpg": (JPEG + b"\x00" * 50_000, "image/jpeg"),
    }
    for path, (body, ctype) in static.items():
        app.router.add_get(path, serve(body, ctype))
    app.router.add_get("/protected.jpg", protected)
    app.router.add_get("/dropped.jpg", truncated_by_connection)
    app.router.add_get("/hang.jpg", hang)
    app.router.add_get("/endless.jpg", endless)
    app.router.add_get("/moved", moved)
    app.router.add_get("/elsewhere", elsewhere)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Camera(f"http://{{address}}:{port}", app)
    finally:
        await runner.cleanup()


@pytest.fixture
async def resources() -> AsyncIterator[ProbeResources]:
    res = ProbeResources()
    yield res
    await res.aclose()


def creds(tmp_path: Path, password: str = PASSWORD) -> dict[str, str]:
    (tmp_path / "user").write_text(USER + "\n")
    (tmp_path / "password").write_text(password + "\n")
    return {"username_file": str(tmp_path / "user"), "password_file": str(tmp_path / "password")}


async def check(camera: Camera, path: str, resources: ProbeResources, **settings: Any) -> Outcome:
    url = camera.base + path
    cfg = SnapshotConfig.model_validate({"url": url, "timeout": 1.0} | settings)
    return await SnapshotProbe(TARGET, cfg, resources).check()


def fields(outcome: Outcome) -> dict[str, Any]:
    (sample,) = outcome.samples
    assert sample.measurement == "snapshot"
    assert sample.tags == {"device": "cam-1", "site": "yard", "reason": outcome.reason}
    types = CONTRACT["snapshot"][1]
    for name, value in sample.fields.items():
        assert type(value) is {"int": int, "float": float}[types[name]], (name, value)
    return dict(sample.fields)


@pytest.mark.parametrize(
    ("path", "shown", "size"), [("/snap.jpg", "JPEG 640x480", len(JPEG)), ("/snap.png", "PNG 4x3", len(PNG))]
)
async def test_jpeg_and_png_are_up(camera: Camera, resources: ProbeResources, path: str, shown: str, size: int) -> None:
    """A complete picture is up, with its size in bytes, its latency and its dimensions in the detail."""
    outcome = await check(camera, path, resources)
    assert outcome.up, outcome.detail
    assert outcome.reason == "ok"
    assert outcome.detail == f"{shown}, {size} bytes"
    f = fields(outcome)
    assert f["up"] == 1
    assert f["bytes"] == size
    assert 0 < f["latency_ms"] < 1000


async def test_html_error_page_with_200_is_not_image(camera: Camera, resources: ProbeResources) -> None:
    """An HTML page served with status 200 is bad_content 'not an image', not up."""
    outcome = await check(camera, "/error-page", resources)
    assert not outcome.up
    assert outcome.reason == "bad_content"
    assert outcome.detail.startswith("not an image")
    assert "text/html" in outcome.detail
    assert fields(outcome)["bytes"] == len(HTML)


@pytest.mark.parametrize("path", ["/cut.jpg", "/dropped.jpg"])
async def test_truncated_picture_is_truncated(camera: Camera, resources: ProbeResources, path: str) -> None:
    """A picture cut short (served short, or the connection dropped mid-body) is bad_content 'truncated'."""
    outcome = await check(camera, path, resources)
    assert not outcome.up
    assert outcome.reason == "bad_content"
    assert "truncated" in outcome.detail


async def test_digest_401_then_ok(camera: Camera, resources: ProbeResources, tmp_path: Path) -> None:
    """A camera asking for Digest: the probe answers the challenge once with the files' credentials."""
    outcome = await check(camera, "/protected.jpg", resources, **creds(tmp_path))
    assert outcome.up, outcome.detail
    assert fields(outcome)["bytes"] == len(JPEG)
    first, second = camera.app[HITS]
    assert first is None  # nothing sent before the camera asked
    assert second is not None
    assert second.startswith("Digest ")
    assert PASSWORD not in second


async def test_no_credentials_or_wrong_ones_are_auth(camera: Camera, resources: ProbeResources, tmp_path: Path) -> None:
    """Without credentials, or with refused ones, a protected snapshot is reason auth; the password is never shown."""
    without = await check(camera, "/protected.jpg", resources)
    assert without.reason == "auth"
    assert "username_file" in without.detail
    wrong = await check(camera, "/protected.jpg", resources, **creds(tmp_path, password="Wr0ng-Pass"))
    assert wrong.reason == "auth"
    assert "credentials refused" in wrong.detail
    assert "Wr0ng-Pass" not in repr(wrong)


async def test_credentials_not_sent_to_another_origin(
    camera: Camera, resources: ProbeResources, tmp_path: Path
) -> None:
    """A redirect to another host that then asks for credentials gets none: reason auth, nothing sent there."""
    outcome = await check(camera, "/elsewhere", resources, **creds(tmp_path))
    assert outcome.reason == "auth"
    assert "after a redirect" in outcome.detail
    assert camera.app[HITS] == [None]


async def test_size_bounds(camera: Camera, resources: ProbeResources) -> None:
    """A picture above max_bytes stops being read; one below min_bytes (a blank frame) is bad_content."""
    big = await check(camera, "/big.jpg", resources, max_bytes=20_000)
    assert big.reason == "bad_content"
    assert "max_bytes" in big.detail
    endless = await check(camera, "/endless.jpg", resources, max_bytes=200_000)
    assert endless.reason == "bad_content"
    assert "above max_bytes 200000" in endless.detail
    assert 200_000 < fields(endless)["bytes"] <= 200_000 + 65536
    small = await check(camera, "/snap.jpg", resources, min_bytes=10_000)
    assert small.reason == "bad_content"
    assert "min_bytes" in small.detail


async def test_not_found_is_bad_status(camera: Camera, resources: ProbeResources) -> None:
    """A wrong snapshot path is bad_status naming the status."""
    outcome = await check(camera, "/nope.jpg", resources)
    assert outcome.reason == "bad_status"
    assert "404" in outcome.detail


async def test_redirect_is_followed(camera: Camera, resources: ProbeResources) -> None:
    """A snapshot URL that redirects to the picture is followed."""
    outcome = await check(camera, "/moved", resources)
    assert outcome.up, outcome.detail


async def test_hanging_camera_is_timeout(camera: Camera, resources: ProbeResources) -> None:
    """A camera that never answers is a timeout within the probe's own timeout."""
    started = time.monotonic()
    outcome = await check(camera, "/hang.jpg", resources, timeout=0.3)
    assert time.monotonic() - started < 1.0
    assert outcome.reason == "timeout"
    assert fields(outcome) == {"up": 0}


async def test_nothing_listening_is_refused(resources: ProbeResources) -> None:
    """A closed port is reason refused."""
    outcome = await check(Camera(f"http://{{address}}:{free_port()}", web.Application()), "/snap.jpg", resources)
    assert outcome.reason == "refused"


async def test_one_session_shared_and_closed(camera: Camera, resources: ProbeResources) -> None:
    """Probes share one aiohttp session, which the resources close."""
    await check(camera, "/snap.jpg", resources)
    await check(camera, "/snap.png", resources)
    (session,) = resources.shared.values()
    await resources.aclose()
    assert session.closed


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://admin:hunter2@{address}/snap.jpg", "must not hold credentials (user:password@)"),
        ("http://{address}/cgi-bin/snap.cgi?usr=admin&pwd=hunter2", "query parameter 'usr'"),
        ("rtsp://{address}/snap.jpg", "must start with http:// or https://"),
    ],
)
def test_bad_url_refused_at_load(url: str, fragment: str) -> None:
    """Credentials in the URL are refused at load, without repeating them."""
    with pytest.raises(ValidationError) as info:
        SnapshotConfig.model_validate({"url": url})
    (error,) = info.value.errors(include_url=False)
    assert fragment in error["msg"]
    assert "hunter2" not in error["msg"]
