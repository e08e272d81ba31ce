"""The lab's simulated devices, checked by netwatch's own probes and MQTT ingest, faults and all.

Portals and camera snapshots (netwatch.lab.web), camera streams (netwatch.lab.rtspsim), door
panels (netwatch.lab.panelsim) through the lab's mosquitto (netwatch.lab.broker). Each device
listens on its own loopback address, as in a lab; ports are picked free.
"""

from __future__ import annotations

import asyncio
import os
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import aiomqtt
import pytest

from netwatch.ingest.mqtt import MqttIngest
from netwatch.ingest.mqttconfig import MqttConfig
from netwatch.ingest.panels import PanelSpec
from netwatch.lab.broker import INSTALL_HINT, BrokerUnavailable, MosquittoBroker
from netwatch.lab.challenge import Gate
from netwatch.lab.jpeg import DEFAULT_MIN_BYTES
from netwatch.lab.panelsim import PanelLab
from netwatch.lab.rtspsim import RtspLab
from netwatch.lab.web import WebLab
from netwatch.model import Outcome, Sample, Target
from netwatch.probes.base import ProbeResources
from netwatch.probes.http import HttpConfig, HttpProbe
from netwatch.probes.rtsp import RtspConfig, RtspProbe
from netwatch.probes.snapshot import SnapshotConfig, SnapshotProbe
from tests.servers.common import require_binary

USER, PASSWORD = "viewer", "lab-camera"
TERMS = "(?i)terms of (use|service)"  # what the lab's written config expects of a portal
SYSTEM_PYTHON = "/usr/bin/python3"  # has GStreamer's bindings (see tests/servers/rtsp.py)


def target(device: str, address: str) -> Target:
    return Target(device, "villa-parke", "camera", address)


@pytest.fixture
async def resources() -> AsyncIterator[ProbeResources]:
    res = ProbeResources()
    yield res
    for close in res.closers:
        await close()


def credential_files(directory: Path, password: str = PASSWORD) -> dict[str, str]:
    """Settings naming files that hold the camera's credentials, as the lab's written config does."""
    (directory / "camera-user").write_text(USER + "\n")
    (directory / "camera-password").write_text(password + "\n")
    return {"username_file": str(directory / "camera-user"), "password_file": str(directory / "camera-password")}


@pytest.fixture
def credentials(tmp_path: Path) -> dict[str, str]:
    return credential_files(tmp_path)


# -- portals --------------------------------------------------------------------------------------


@pytest.fixture
async def web(tmp_path: Path) -> AsyncIterator[WebLab]:
    lab = WebLab(tls_dir=tmp_path / "tls", slow_s=5.0)
    lab.add_portal("portal-vp", "127.66.0.10", 0, path="/guest/s/villa-parke/")
    lab.add_portal("portal-bs", "127.66.0.11", 0, path="/guest/s/brookside/", https_port=0)
    lab.add_camera("cam-vp-1", "127.66.0.20", 0, gate=Gate(USER, PASSWORD))
    async with lab:
        yield lab


async def portal_check(web: WebLab, device: str, resources: ProbeResources, **settings: Any) -> Outcome:
    cfg = HttpConfig.model_validate(
        {"url": web.url(device), "expect_body_regex": TERMS, "ca_file": str(web.ca_file), "timeout": 2.0} | settings
    )
    return await HttpProbe(target(device, "127.66.0.10"), cfg, resources, check="portal").check()


@pytest.mark.parametrize("device", ["portal-vp", "portal-bs"])
async def test_portal_is_up_through_its_redirect_chain(web: WebLab, resources: ProbeResources, device: str) -> None:
    """The entry URL leads through two redirects to the terms page; the HTTPS one ends on the lab CA's certificate."""
    outcome = await portal_check(web, device, resources)
    assert outcome.up, outcome.detail
    fields = outcome.samples[0].fields
    assert fields["redirects"] == 2
    assert fields["body_match"] == 1
    assert outcome.detail.endswith("/portal/login after 2 redirects")
    if device == "portal-bs":
        assert outcome.detail.startswith("200 from https://127.66.0.11:")
        assert 89.9 < float(fields["cert_days_left"]) <= 90.0
    else:
        assert "cert_days_left" not in fields


async def test_a_check_pointed_at_the_login_page_reports_a_loop(web: WebLab, resources: ProbeResources) -> None:
    """The login page wants the cookie the welcome hop sets: asked for without it, it sends the visitor back to the
    start, so a check configured with the login URL instead of the entry URL sees a loop, not a green portal."""
    url = web.url("portal-vp").replace("/guest/s/villa-parke/", "/portal/login")
    cfg = HttpConfig.model_validate({"url": url, "expect_body_regex": TERMS, "timeout": 2.0})
    outcome = await HttpProbe(target("portal-vp", "127.66.0.10"), cfg, resources, check="portal").check()
    assert outcome.reason == "redirects"
    assert outcome.detail.startswith("redirect loop: http://127.66.0.10:")
    assert outcome.detail.count("/portal/login") == 2


async def test_broken_portal_is_bad_content_until_cleared(web: WebLab, resources: ProbeResources) -> None:
    """broken: the chain still ends in 200, on an error page without the terms; clear brings the page back."""
    await web.fault("portal-vp", "broken")
    outcome = await portal_check(web, "portal-vp", resources)
    assert (outcome.up, outcome.reason) == (False, "bad_content")
    assert outcome.samples[0].fields["status_code"] == 200
    assert "does not match" in outcome.detail
    assert (await portal_check(web, "portal-bs", resources)).up  # the other portal is not touched

    await web.fault("portal-vp", "clear")
    assert (await portal_check(web, "portal-vp", resources)).up


async def test_slow_and_down_portals(web: WebLab, resources: ProbeResources) -> None:
    """slow: no answer within the check's timeout; down: connection refused; a camera fault is refused by name."""
    await web.fault("portal-vp", "slow", delay_s=2.0)
    slow = await portal_check(web, "portal-vp", resources, timeout=0.3)
    assert slow.reason == "timeout"
    assert "waiting for the response" in slow.detail

    await web.fault("portal-bs", "down")
    down = await portal_check(web, "portal-bs", resources)
    assert down.reason == "refused"

    with pytest.raises(ValueError, match="portal-vp is a portal: its faults are broken, clear, down, slow"):
        await web.fault("portal-vp", "truncated")
    for device in ("portal-vp", "portal-bs"):
        await web.fault(device, "clear")
        assert (await portal_check(web, device, resources)).up


# -- camera snapshots -----------------------------------------------------------------------------


async def snapshot_check(web: WebLab, resources: ProbeResources, **settings: Any) -> Outcome:
    cfg = SnapshotConfig.model_validate(
        {"url": web.url("cam-vp-1"), "min_bytes": DEFAULT_MIN_BYTES, "timeout": 2.0} | settings
    )
    return await SnapshotProbe(target("cam-vp-1", "127.66.0.20"), cfg, resources).check()


async def test_snapshot_faults_give_the_snapshot_checks_reasons(
    web: WebLab, resources: ProbeResources, credentials: dict[str, str]
) -> None:
    """A 640x480 JPEG above the example config's min_bytes behind Digest; html_error, truncated and down each
    fail the way the snapshot check tells a camera's troubles apart; clear restores the picture."""
    picture = web.picture("cam-vp-1")
    ok = await snapshot_check(web, resources, **credentials)
    assert ok.up, ok.detail
    assert ok.detail == f"JPEG 640x480, {len(picture)} bytes"
    assert ok.samples[0].fields["bytes"] == len(picture) >= DEFAULT_MIN_BYTES

    anonymous = await snapshot_check(web, resources)
    assert anonymous.reason == "auth"
    assert "Digest" in anonymous.detail

    await web.fault("cam-vp-1", "html_error")
    html = await snapshot_check(web, resources, **credentials)
    assert html.reason == "bad_content"
    assert html.detail.startswith("not an image")
    assert "text/html" in html.detail

    await web.fault("cam-vp-1", "truncated")
    cut = await snapshot_check(web, resources, **credentials)
    assert cut.reason == "bad_content"
    assert cut.detail.startswith(f"truncated image: JPEG cut off after {len(picture) // 2} bytes")

    # The probe's session keeps connections alive: down must drop them as well as stop listening.
    await web.fault("cam-vp-1", "down")
    assert (await snapshot_check(web, resources, **credentials)).reason == "refused"

    await web.fault("cam-vp-1", "clear")
    assert (await snapshot_check(web, resources, **credentials)).up


DECODE = """
import sys, gi
gi.require_version("Gst", "1.0")
from gi.repository import Gst
Gst.init(None)
p = Gst.parse_launch("fdsrc fd=0 ! jpegdec ! videoconvert ! video/x-raw,format=GRAY8 ! appsink name=s sync=false")
p.set_state(Gst.State.PLAYING)
sample = p.get_by_name("s").emit("pull-sample")
caps = sample.get_caps().get_structure(0)
buf = sample.get_buffer()
print(caps.get_value("width"), caps.get_value("height"), len(set(buf.extract_dup(0, buf.get_size()))))
p.set_state(Gst.State.NULL)
"""


async def test_snapshot_is_a_picture_a_real_decoder_reads(web: WebLab) -> None:
    """What the camera serves (fetched with Digest) decodes with GStreamer's jpegdec into 640x480 that is not flat."""
    async with (
        aiohttp.ClientSession(middlewares=(aiohttp.DigestAuthMiddleware(USER, PASSWORD),)) as session,
        session.get(web.url("cam-vp-1")) as resp,
    ):
        assert resp.status == 200
        assert resp.content_type == "image/jpeg"
        body = await resp.read()
    try:
        proc = await asyncio.create_subprocess_exec(SYSTEM_PYTHON, "-c", DECODE, stdin=PIPE, stdout=PIPE, stderr=PIPE)
    except FileNotFoundError:
        pytest.fail(f"{SYSTEM_PYTHON} with python3-gi and GStreamer is needed: run scripts/setup.sh", pytrace=False)
    out, err = await asyncio.wait_for(proc.communicate(body), timeout=30)
    assert proc.returncode == 0, err.decode()
    width, height, shades = (int(x) for x in out.split())
    assert (width, height) == (640, 480)
    assert shades > 100  # texture, not a blank frame


# -- camera streams -------------------------------------------------------------------------------


@pytest.fixture
async def rtsp() -> AsyncIterator[RtspLab]:
    lab = RtspLab()
    lab.add_camera("cam-open", "127.66.0.30", 0)
    # RFC 2069 Digest, as cameras' RTSP servers speak it
    lab.add_camera("cam-vp-1", "127.66.0.31", 0, gate=Gate(USER, PASSWORD, qop=False))
    async with lab:
        yield lab


async def rtsp_check(lab: RtspLab, device: str, **settings: Any) -> Outcome:
    cfg = RtspConfig.model_validate({"url": lab.url(device), "timeout": 1.0} | settings)
    return await RtspProbe(target(device, "127.66.0.31"), cfg).check()


async def test_rtsp_stream_offers_h264_video_and_asks_for_digest(
    rtsp: RtspLab, credentials: dict[str, str], tmp_path: Path
) -> None:
    """An open camera is up with H.264; a protected one answers 401, then 200 to the right Digest, 401 to a wrong
    one."""
    open_cam = await rtsp_check(rtsp, "cam-open")
    assert open_cam.up, open_cam.detail
    assert open_cam.detail == "video H264/90000"
    assert open_cam.samples[0].fields["video"] == 1

    anonymous = await rtsp_check(rtsp, "cam-vp-1")
    assert anonymous.reason == "auth"
    assert anonymous.samples[0].fields["status_code"] == 401

    with_creds = await rtsp_check(rtsp, "cam-vp-1", **credentials)
    assert with_creds.up, with_creds.detail

    wrong = await rtsp_check(rtsp, "cam-vp-1", **credential_files(tmp_path, password="not-it"))
    assert wrong.reason == "auth"
    assert "refused" in wrong.detail


async def test_rtsp_faults_give_the_rtsp_checks_results(rtsp: RtspLab, credentials: dict[str, str]) -> None:
    """no_video, hang, not_found and down, each as netwatch reports it; the other camera carries on; clear restores."""
    await rtsp.fault("cam-vp-1", "no_video")
    no_video = await rtsp_check(rtsp, "cam-vp-1", **credentials)
    assert no_video.reason == "bad_content"
    assert "offers no video track (media: audio)" in no_video.detail
    assert no_video.samples[0].fields["video"] == 0

    await rtsp.fault("cam-vp-1", "hang")
    hang = await rtsp_check(rtsp, "cam-vp-1", **credentials)
    assert hang.reason == "timeout"
    assert hang.detail == "no answer to DESCRIBE within 1s (OPTIONS answered)"

    await rtsp.fault("cam-vp-1", "not_found")
    missing = await rtsp_check(rtsp, "cam-vp-1", **credentials)
    assert missing.reason == "bad_status"
    assert missing.samples[0].fields["status_code"] == 404

    await rtsp.fault("cam-vp-1", "down")
    assert (await rtsp_check(rtsp, "cam-vp-1", **credentials)).reason == "refused"
    assert (await rtsp_check(rtsp, "cam-open")).up

    await rtsp.fault("cam-vp-1", "clear")
    assert (await rtsp_check(rtsp, "cam-vp-1", **credentials)).up


async def test_rtsp_echoes_cseq_and_refuses_a_request_without_one(rtsp: RtspLab) -> None:
    """Raw requests: each answer carries the request's CSeq (two on one connection); no CSeq is 400."""
    url = rtsp.url("cam-open")
    reader, writer = await asyncio.open_connection(urlsplit(url).hostname, urlsplit(url).port)
    try:
        answers = []
        for request in (
            f"OPTIONS {url} RTSP/1.0\r\nCSeq: 41\r\n\r\n",
            f"DESCRIBE {url} RTSP/1.0\r\nCSeq: 42\r\nAccept: application/sdp\r\n\r\n",
            f"OPTIONS {url} RTSP/1.0\r\n\r\n",
        ):
            writer.write(request.encode())
            head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)).decode()
            length = next((int(h.split(":")[1]) for h in head.split("\r\n") if h.startswith("Content-Length")), 0)
            await reader.readexactly(length)
            answers.append(head)
    finally:
        writer.close()
    assert answers[0].startswith("RTSP/1.0 200 OK\r\nCSeq: 41\r\n")
    assert answers[1].startswith("RTSP/1.0 200 OK\r\nCSeq: 42\r\n")
    assert "Content-Type: application/sdp" in answers[1]
    assert answers[2].startswith("RTSP/1.0 400 Bad Request\r\n")


# -- door panels and the broker -------------------------------------------------------------------


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    require_binary("mosquitto", "mosquitto")
    server = MosquittoBroker(tmp_path / "mosquitto")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def wait_for(cond: Callable[[], bool], *, what: str, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


PANELS = ["door-vp-1", "door-jr-1"]
EVERY, MISSED = 0.2, 2


def latest(samples: list[Sample], device: str) -> dict[str, Any]:
    panel = [s for s in samples if s.measurement == "panel" and s.tags["device"] == device]
    return dict(panel[-1].fields) if panel else {}


async def test_panels_seen_by_netwatchs_mqtt_ingest(broker: MosquittoBroker) -> None:
    """Heartbeats make the ingest report both panels online; silent makes one offline after its missed cadences;
    an event arrives as panel_event with its name and door; malformed garbage is counted while heartbeats go on."""
    samples: list[Sample] = []
    cfg = MqttConfig.model_validate(
        {"host": "127.0.0.1", "port": broker.port, "heartbeat_every": EVERY, "missed": MISSED, "reconnect_min": 0.05}
    )
    ingest = MqttIngest(cfg, [PanelSpec(d, "villa-parke", EVERY, MISSED) for d in PANELS], samples.extend, instance="t")
    lab = PanelLab("127.0.0.1", broker.port, every=EVERY)
    for device in PANELS:
        lab.add_panel(device)
    task = asyncio.create_task(ingest.run())
    try:
        async with lab:
            await lab.wait_connected()
            await wait_for(lambda: ingest.book.stats.heartbeats >= 6, what="heartbeats from both panels")
            await wait_for(lambda: all(latest(samples, d).get("online") == 1 for d in PANELS), what="both online")

            await lab.fault("door-jr-1", "silent")
            await wait_for(lambda: latest(samples, "door-jr-1").get("online") == 0, what="the silent panel offline")
            offline = latest(samples, "door-jr-1")
            assert float(offline["heartbeat_age_s"]) > EVERY * MISSED
            assert latest(samples, "door-vp-1")["online"] == 1

            await lab.event("door-vp-1", "door_forced", "north", detail="lab")
            await wait_for(lambda: ingest.book.stats.events == 1, what="the event")
            (event,) = [s for s in samples if s.measurement == "panel_event"]
            assert dict(event.tags) == {
                "device": "door-vp-1",
                "site": "villa-parke",
                "event": "door_forced",
                "door": "north",
            }
            assert event.fields == {"count": 1, "alarm": 1, "detail": "lab"}

            await lab.fault("door-vp-1", "malformed")
            await wait_for(lambda: ingest.book.stats.malformed >= 3, what="three malformed messages")
            await wait_for(lambda: int(latest(samples, "door-vp-1").get("malformed", 0)) >= 3, what="counted per panel")
            assert latest(samples, "door-vp-1")["online"] == 1
            assert ingest.book.stats.events == 1  # garbage is never taken for an event
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_panels_reconnect_when_the_broker_restarts(broker: MosquittoBroker) -> None:
    """The broker restarts on its port: the panels' client comes back by itself and an event then gets through."""
    lab = PanelLab("127.0.0.1", broker.port, every=EVERY, reconnect_min=0.05, reconnect_max=0.2)
    lab.add_panel("door-vp-1")
    got: list[bytes] = []
    async with lab:
        await lab.wait_connected()
        broker.restart()
        await wait_for(lambda: lab.stats.connects == 2 and lab.connected, what="the panels' reconnect")
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.subscribe("panels/+/event", qos=1)
            await lab.event("door-vp-1", "tamper")
            async with asyncio.timeout(5):
                async for message in client.messages:
                    got.append(bytes(message.payload))  # type: ignore[arg-type]
                    break
    assert got == [b'{"event": "tamper"}']


def processes_running(config: Path) -> list[int]:
    """Pids of processes whose command line names ``config``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if str(config).encode() in cmdline:
                found.append(int(entry.name))
    return found


def test_broker_stop_leaves_no_process_and_frees_its_port(tmp_path: Path) -> None:
    """Start, restart and stop: afterwards no mosquitto runs with the lab's config and nothing listens on the port."""
    require_binary("mosquitto", "mosquitto")
    broker = MosquittoBroker(tmp_path / "mq")
    with broker:
        first = broker.proc.pid if broker.proc else 0
        assert processes_running(broker.config_file) == [first]
        broker.restart()
        assert broker.listening()
        second = broker.proc.pid if broker.proc else 0
        assert processes_running(broker.config_file) == [second]
    assert processes_running(broker.config_file) == []
    assert not broker.listening()
    for pid in (first, second):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_without_mosquitto_the_broker_says_what_to_install(tmp_path: Path) -> None:
    """On a host without mosquitto, starting the broker fails with the install command, and starts nothing."""
    broker = MosquittoBroker(tmp_path / "mq", search_path=str(tmp_path / "empty-bin"))
    with pytest.raises(BrokerUnavailable, match="apt-get install mosquitto") as failure:
        broker.start()
    assert INSTALL_HINT in str(failure.value)
    assert broker.proc is None
