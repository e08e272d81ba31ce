"""The lab end to end: `netwatch lab run` + `netwatch run` (real processes) + a real influxd.

The shipped city, polled every 2 s. A span cut in the lab shows in InfluxDB as the states a NOC
expects (the far switch and everything behind it unreachable, the span down) and reaches the
webhook as one page naming what is dark; clearing the fault brings everything back and resolves
it. The lab stops without leaving a process or a firewall table behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from netwatch.config import load_config
from netwatch.lab.blackhole import Blackholes
from netwatch.lab.netconfig import write_config
from netwatch.lab.spec import load_lab
from tests.servers.common import free_port
from tests.servers.influx import InfluxdServer
from tests.servers.labfile import lab_file

NETWATCH = str(Path(sys.executable).with_name("netwatch"))
VILLA_PARKE = {"sw-vp", "ap-vp-1", "ap-vp-2", "door-vp-1", "cam-vp-1"}
NETWORK = "127.23.0.0/16"


def _states(influxd: InfluxdServer, measurement: str, key: str) -> dict[str, str]:
    rows = influxd.series(f'SELECT last("state") FROM "{measurement}" GROUP BY "{key}"', db="netwatch")
    return {row["tags"][key]: row["values"][0][1] for row in rows}


async def _until(what: str, cond: Any, within: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = await asyncio.to_thread(cond)
        if result:
            return
        if loop.time() > deadline:
            pytest.fail(f"timed out after {within:g}s waiting for {what}")
        await asyncio.sleep(0.5)


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def _lab(control: str, *argv: str) -> str:
    done = subprocess.run([NETWATCH, "lab", *argv, "--control", control], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="dark devices need nftables or blackhole routes (root)")
async def test_a_span_cut_in_the_lab_is_one_page_and_the_states_a_noc_expects(
    tmp_path: Path, influxd: InfluxdServer
) -> None:
    influxd.execute("DROP DATABASE netwatch")
    influxd.execute("CREATE DATABASE netwatch")
    lab_path = lab_file(tmp_path, NETWORK)
    lab = load_lab(lab_path)
    control = lab.spec.lab.control

    pages: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        pages.append(json.loads(await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    hook_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()
    config = write_config(
        lab,
        tmp_path / "nw" / "netwatch.yaml",
        influxdb=influxd.url,
        receivers=[
            {"name": "noc", "kind": "webhook", "url": f"http://127.0.0.1:{hook_port}/hook", "secret_file": "hook.key"}
        ],
    )
    (config.parent / "hook.key").write_text("a-webhook-secret-of-some-length")
    assert load_config(config).inventory.devices  # the written config passes check-config's checks
    check = await asyncio.to_thread(_run, NETWATCH, "check-config", str(config))
    assert check.returncode == 0, check.stdout + check.stderr

    lab_proc = await asyncio.create_subprocess_exec(
        NETWATCH,
        "lab",
        "run",
        str(lab_path),
        "--workdir",
        str(tmp_path / "lab"),
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "lab.log").open("w"),
        start_new_session=True,
    )
    daemon = await asyncio.create_subprocess_exec(
        NETWATCH, "run", "-c", str(config), stdout=subprocess.DEVNULL, stderr=(tmp_path / "netwatch.log").open("w")
    )
    try:
        # Everything up first: 37 devices, 16 spans, the parks' WiFi.
        await _until(
            "every device up in InfluxDB",
            lambda: (s := _states(influxd, "device", "device")) and len(s) == 37 and set(s.values()) == {"up"},
            within=60,
        )
        await _until("every span up", lambda: set(_states(influxd, "link", "link").values()) == {"up"}, within=30)
        assert pages == []

        out = await asyncio.to_thread(_lab, control, "fault", "cut", "span-fs31-vp")
        assert "affects ap-vp-1, ap-vp-2, cam-vp-1, door-vp-1, sw-vp" in out

        def cut_seen() -> bool:
            devices = _states(influxd, "device", "device")
            return _states(influxd, "link", "link").get("span-fs31-vp") == "down" and all(
                devices.get(d) == "unreachable" for d in VILLA_PARKE
            )

        await _until("the park unreachable behind the cut span", cut_seen, within=40)
        devices = _states(influxd, "device", "device")
        assert {d for d, s in devices.items() if s != "up"} == VILLA_PARKE
        await _until("the page", lambda: pages, within=20)
        await asyncio.sleep(6)  # room for a wrong second page
        firing = [p for p in pages if p["type"] == "incident.firing"]
        assert len(firing) == 1, [(p["data"]["rule"], p["data"]["entity"]) for p in firing]
        page = firing[0]["data"]
        assert (page["rule"], page["entity"]) == ("span_down", "span-fs31-vp")
        assert set(page["impact"]["devices"]) == VILLA_PARKE

        await asyncio.to_thread(_lab, control, "clear")
        await _until(
            "everything back up",
            lambda: (
                set(_states(influxd, "device", "device").values()) == {"up"}
                and _states(influxd, "link", "link").get("span-fs31-vp") == "up"
            ),
            within=40,
        )
        await _until("the resolve", lambda: any(p["type"] == "incident.resolved" for p in pages), within=20)
        resolved = [p["data"] for p in pages if p["type"] == "incident.resolved"]
        assert [(r["rule"], r["entity"]) for r in resolved] == [("span_down", "span-fs31-vp")]
    finally:
        daemon.send_signal(signal.SIGTERM)
        lab_proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(daemon.wait(), 30) == 0
        assert await asyncio.wait_for(lab_proc.wait(), 30) == 0, (tmp_path / "lab.log").read_text()[-2000:]
        await runner.cleanup()
    # Nothing left behind: no broker or other child of the lab, no firewall table.
    leftovers = await asyncio.to_thread(_run, "pgrep", "-f", str(tmp_path / "lab"))
    assert leftovers.stdout.strip() == ""
    if shutil.which("nft"):
        tables = (await asyncio.to_thread(_run, "nft", "list", "tables")).stdout
        assert Blackholes(lab.spec.lab.network).table not in tables
