"""RTSP probe against a real gst-rtsp-server on loopback (tests/servers/rtsp.py)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from netwatch.contract import CONTRACT
from netwatch.model import Outcome, Target
from netwatch.probes.rtsp import RtspConfig, RtspProbe
from tests.servers import rtsp as servers
from tests.servers.common import free_port
from tests.servers.rtsp import PASSWORD, USER, RtspServer
from tests.unit.probes.pictures import tiny_jpeg

# The real servers, one per auth mode, shared by this module.
rtsp_server = servers.rtsp_server
rtsp_server_basic = servers.rtsp_server_basic
rtsp_server_digest = servers.rtsp_server_digest

NETWATCH = str(Path(sys.executable).parent / "netwatch")
TARGET = Target("cam-vp-1", "villa-parke", "camera", "127.0.0.1")


def probe(url: str, **settings: Any) -> RtspProbe:
    return RtspProbe(TARGET, RtspConfig.model_validate({"url": url, "timeout": 3.0} | settings))


def credentials(tmp_path: Path, user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    """Settings naming files that hold the credentials, as production configs do."""
    (tmp_path / "rtsp-user").write_text(user + "\n")
    (tmp_path / "rtsp-password").write_text(password + "\n")
    return {"username_file": str(tmp_path / "rtsp-user"), "password_file": str(tmp_path / "rtsp-password")}


def sample_of(outcome: Outcome) -> dict[str, Any]:
    """The one rtsp sample, checked against the data contract; its fields plus the reason tag."""
    (sample,) = outcome.samples
    tags, types = CONTRACT["rtsp"]
    assert sample.measurement == "rtsp"
    assert set(sample.tags) == tags
    assert sample.tags["reason"] == outcome.reason
    for name, value in sample.fields.items():
        assert type(value) is {"int": int, "float": float}[types[name]], (name, value)
    return dict(sample.fields)


async def test_stream_with_video_is_up_with_codec(rtsp_server: RtspServer) -> None:
    """A stream offering MJPEG video: up, status 200, video=1, latency measured, codec named in the detail."""
    outcome = await probe(rtsp_server.url("/cam1")).check()
    assert outcome.up, outcome.detail
    assert outcome.reason == "ok"
    assert "JPEG/90000" in outcome.detail
    fields = sample_of(outcome)
    assert fields["up"] == 1
    assert fields["status_code"] == 200
    assert fields["video"] == 1
    assert 0 < fields["latency_ms"] < 3000


async def test_unknown_path_is_bad_status_404(rtsp_server: RtspServer) -> None:
    """A path with no stream is down with status_code 404, not a timeout or an exception."""
    outcome = await probe(rtsp_server.url("/nope")).check()
    assert not outcome.up
    assert outcome.reason == "bad_status"
    assert "404" in outcome.detail
    assert "/nope" in outcome.detail
    assert sample_of(outcome)["status_code"] == 404


# Basic must be allowed explicitly (auth: auto or basic): the default, digest, never sends it.
BY_SCHEME = [("rtsp_server_basic", "auto"), ("rtsp_server_basic", "basic"), ("rtsp_server_digest", "digest")]


@pytest.mark.parametrize(("server", "auth"), BY_SCHEME)
async def test_401_then_ok_with_credentials(
    server: str, auth: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A protected stream: 401 without credentials (reason auth), video with them (Basic and Digest)."""
    srv: RtspServer = request.getfixturevalue(server)
    without = await probe(srv.url("/cam2")).check()
    assert not without.up
    assert without.reason == "auth"
    assert "username_file" in without.detail
    assert sample_of(without)["status_code"] == 401

    with_creds = await probe(srv.url("/cam2"), auth=auth, **credentials(tmp_path)).check()
    assert with_creds.up, with_creds.detail
    assert sample_of(with_creds)["video"] == 1
    assert PASSWORD not in repr(with_creds)


@pytest.mark.parametrize(("server", "auth"), BY_SCHEME)
async def test_wrong_password_is_auth(server: str, auth: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Credentials the camera refuses (401 again after answering the challenge) are reason auth."""
    srv: RtspServer = request.getfixturevalue(server)
    outcome = await probe(srv.url("/cam2"), auth=auth, **credentials(tmp_path, password="wrong")).check()
    assert not outcome.up
    assert outcome.reason == "auth"
    assert "refused" in outcome.detail
    assert sample_of(outcome)["status_code"] == 401


async def test_default_digest_does_not_send_basic(rtsp_server_basic: RtspServer, tmp_path: Path) -> None:
    """By default (auth: digest) a Basic-only camera is refused, not sent the password in clear; the detail says how."""
    outcome = await probe(rtsp_server_basic.url("/cam2"), **credentials(tmp_path)).check()
    assert not outcome.up
    assert outcome.reason == "auth"
    assert "offers Basic" in outcome.detail
    assert "auth: auto or basic would send the password in clear" in outcome.detail


async def test_nothing_listening_is_refused() -> None:
    """Nothing listening on the port is reason refused at once."""
    outcome = await probe(f"rtsp://127.0.0.1:{free_port()}/cam1").check()
    assert outcome.reason == "refused"
    assert sample_of(outcome)["up"] == 0


# -- a camera through the config and `netwatch probe` ---------------------------------------------------------


async def test_camera_checks_through_netwatch_probe(rtsp_server_digest: RtspServer, tmp_path: Path) -> None:
    """A camera configured once under defaults.kinds.camera: both checks up through `netwatch probe`,
    the password (from a file) nowhere in the output; a wrong one gives reason auth and exit 1."""
    picture = tiny_jpeg(320, 240)

    async def snap(request: web.Request) -> web.Response:
        return web.Response(body=picture, content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/snap.jpg", snap)
    runner = web.AppRunner(app)
    await runner.setup()
    http_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", http_port).start()
    (tmp_path / "camera-user").write_text(USER + "\n")
    config = tmp_path / "netwatch.yaml"
    config.write_text(
        f"""
state_dir: {tmp_path / "state"}
defaults:
  kinds:
    camera:
      checks: [rtsp, snapshot]
      rtsp: {{url: "rtsp://{{address}}:{rtsp_server_digest.port}/cam2",
             username_file: camera-user, password_file: camera-password}}
      snapshot: {{url: "http://{{address}}:{http_port}/snap.jpg"}}
sites: [{{id: yard, name: Yard}}]
devices:
  - {{id: cam-1, site: yard, kind: camera, address: 127.0.0.1}}
"""
    )

    async def netwatch_probe() -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            NETWATCH, "probe", "-c", str(config), "cam-1", "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
        assert proc.returncode is not None
        return proc.returncode, out.decode()

    try:
        (tmp_path / "camera-password").write_text(PASSWORD + "\n")
        code, out = await netwatch_probe()
        lines = [json.loads(line) for line in out.splitlines()]
        checks = {line["check"]: line for line in lines if "check" in line}
        points = {line["measurement"]: line for line in lines if "measurement" in line}
        assert code == 0, out
        assert checks["rtsp"]["reason"] == "ok"
        assert checks["snapshot"]["detail"] == f"JPEG 320x240, {len(picture)} bytes"
        assert points["rtsp"]["fields"]["video"] == 1
        assert points["snapshot"]["fields"]["bytes"] == len(picture)
        assert PASSWORD not in out

        (tmp_path / "camera-password").write_text("Not-The-Password\n")
        code, out = await netwatch_probe()
        assert code == 1
        assert '"reason": "auth"' in out
        assert "Not-The-Password" not in out
    finally:
        await runner.cleanup()
