"""End to end: `netwatch run` pages once, signed, for a dead switch and not for what is behind it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.servers.common import free_port

NETWATCH = str(Path(sys.executable).parent / "netwatch")
SECRET = "a-webhook-secret-of-some-length"


async def test_dead_switch_pages_once_with_its_impact(tmp_path: Path) -> None:
    """A switch whose SNMP agent never answers is down; the camera and AP behind it are unreachable
    and send nothing; the NOC's webhook gets one signed 'firing' naming both as impact."""
    received: list[tuple[dict[str, str], bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    (tmp_path / "hook.key").write_text(SECRET)
    (tmp_path / "community").write_text("public")
    closed = free_port()  # nothing listens there: every SNMP request times out
    (tmp_path / "netwatch.yaml").write_text(
        f"""
state_dir: {tmp_path / "state"}
api: {{listen: "127.0.0.1:0"}}
log: {{format: json}}
defaults:
  interval: 2s
  timeout: 1500ms
  snmp: {{community_file: community, port: {closed}, timeout: 300ms, retries: 0}}
sites: [{{id: hq, name: City Hall}}, {{id: park, name: Villa Parke, kind: park}}]
devices:
  - {{id: sw-vp, site: park, kind: switch, address: 127.0.0.1, checks: [snmp]}}
  - {{id: cam-vp, site: park, kind: camera, address: 127.0.0.2, checks: [snmp], parents: [sw-vp]}}
  - {{id: ap-vp, site: park, kind: wifi_ap, address: 127.0.0.3, checks: [snmp], parents: [sw-vp]}}
receivers:
  - {{name: noc, kind: webhook, url: "http://127.0.0.1:{port}/hook", secret_file: hook.key}}
routes:
  - {{receivers: [noc], group_wait: 3s}}
"""
    )
    proc = await asyncio.create_subprocess_exec(
        NETWATCH, "run", "-c", str(tmp_path / "netwatch.yaml"), stderr=asyncio.subprocess.DEVNULL
    )
    try:
        for _ in range(100):
            if received:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(4)  # room for a wrong second page to arrive
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 15)
        await runner.cleanup()
    assert len(received) == 1, [json.loads(b) for _, b in received]
    headers, body = received[0]
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(SECRET.encode(), signed, hashlib.sha256).digest()).decode()
    assert f"v1,{expected}" in headers["webhook-signature"].split()
    doc: dict[str, Any] = json.loads(body)
    text = json.dumps(doc)
    assert "sw-vp" in text
    assert "device_down" in text
    # The impact names what is dark behind it.
    assert "cam-vp" in text
    assert "ap-vp" in text


async def test_a_receiver_refusing_pages_raises_a_self_alert_elsewhere(tmp_path: Path) -> None:
    """A receiver that answers 400 loses the page (no retry loop); netwatch notices the drop in its
    own counters and tells the other receiver, once, naming how many notifications were lost."""
    received: dict[str, list[dict[str, Any]]] = {"broken": [], "noc": []}

    async def broken(request: web.Request) -> web.Response:
        received["broken"].append(await request.json())
        return web.Response(status=400, text="no such channel")

    async def noc(request: web.Request) -> web.Response:
        received["noc"].append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/broken", broken)
    app.router.add_post("/noc", noc)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    (tmp_path / "community").write_text("public")
    (tmp_path / "hook.key").write_text(SECRET)
    closed = free_port()
    (tmp_path / "netwatch.yaml").write_text(
        f"""
state_dir: {tmp_path / "state"}
api: {{listen: "127.0.0.1:0"}}
scheduler: {{stats_interval: 1s}}
defaults:
  interval: 1s
  timeout: 800ms
  snmp: {{community_file: community, port: {closed}, timeout: 300ms, retries: 0}}
sites: [{{id: hq, name: City Hall}}]
devices:
  - {{id: sw-hq, site: hq, kind: switch, address: 127.0.0.1, checks: [snmp]}}
receivers:
  - {{name: broken, kind: webhook, url: "http://127.0.0.1:{port}/broken", secret_file: hook.key}}
  - {{name: noc, kind: webhook, url: "http://127.0.0.1:{port}/noc", secret_file: hook.key}}
routes:
  - {{match: {{rule: notifications_dropped}}, receivers: [noc], group_wait: 0s}}
  - {{receivers: [broken], group_wait: 0s}}
"""
    )
    proc = await asyncio.create_subprocess_exec(
        NETWATCH, "run", "-c", str(tmp_path / "netwatch.yaml"), stderr=asyncio.subprocess.DEVNULL
    )
    try:
        for _ in range(200):
            if received["noc"]:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(3)  # room for a wrong second self-alert to arrive
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 15)
        await runner.cleanup()
    assert len(received["broken"]) == 1, "a 400 is not retried"
    assert "sw-hq" in json.dumps(received["broken"][0])
    assert len(received["noc"]) == 1, received["noc"]
    text = json.dumps(received["noc"][0])
    assert "notifications_dropped" in text
    assert "dropped 1 alert notifications" in text
