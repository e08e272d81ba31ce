"""The status page in a real browser (Debian's headless Chromium), during a span cut made in the lab.

The lab and the daemon run in this process, as in `netwatch demo`. Once the cut is paged, Chromium
loads /status as a phone would (412 px wide): the page renders without scripts, names the cut
span and the park as unreachable, and a screenshot is kept in tests/output/status-page.png.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import struct
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from netwatch import daemon
from netwatch.lab.city import CityLab, FaultRequest
from netwatch.lab.netconfig import write_config
from netwatch.lab.spec import load_lab
from tests.servers.labfile import lab_file

BEHIND = {"sw-vp", "ap-vp-1", "ap-vp-2", "door-vp-1", "cam-vp-1"}
OUTPUT = Path(__file__).resolve().parents[1] / "output"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="dark devices need nftables or blackhole routes (root)"),
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is installed by scripts/setup.sh"),
]


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


async def _until(what: str, cond: Any, within: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            if await asyncio.to_thread(cond):
                return
        except OSError:
            pass
        if loop.time() > deadline:
            pytest.fail(f"timed out after {within:g}s waiting for {what}")
        await asyncio.sleep(0.5)


async def _chromium(*args: str) -> bytes:
    assert CHROMIUM is not None
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM,
        "--headless=new",
        "--no-sandbox",  # root in CI; the page is ours, on loopback
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=412,915",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0
    return out


async def test_the_status_page_shows_a_span_cut_in_chromium(tmp_path: Path) -> None:
    lab = load_lab(lab_file(tmp_path, "127.27.0.0/16"))
    config = write_config(lab, tmp_path / "nw" / "netwatch.yaml")
    api = f"http://{lab.spec.lab.api}"
    city = CityLab(lab, tmp_path / "lab")
    stop, reload = asyncio.Event(), asyncio.Event()
    await city.start()
    task = asyncio.create_task(daemon.run(config, stop, reload, configure_logs=lambda *_: None))
    try:
        await _until(
            "every device up",
            lambda: {d["state"] for d in _get(f"{api}/api/v1/state")["devices"]} == {"up"},
            within=60,
        )
        await city.apply(FaultRequest("cut", "span-fs31-vp"))

        def paged() -> bool:
            doc = _get(f"{api}/api/v1/state")
            # The park's devices behind the lateral (its portal is served from the EOC and stays up).
            park = {d["state"] for d in doc["devices"] if d["id"] in BEHIND}
            return park == {"unreachable"} and any(i["rule"] == "span_down" for i in doc["incidents"])

        await _until("the cut's incident, the park unreachable behind it", paged, within=40)
        dom = (await _chromium("--dump-dom", f"{api}/status")).decode()
        OUTPUT.mkdir(exist_ok=True)
        shot = OUTPUT / "status-page.png"
        shot.unlink(missing_ok=True)
        await _chromium(f"--screenshot={shot}", f"{api}/status")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await city.stop()
    assert "span span-fs31-vp is down" in dom
    assert "Villa Parke Community Center" in dom
    assert "UNREACHABLE" in dom
    assert "<script" not in dom
    # A real PNG of the phone-sized page.
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width == 412
    assert height > 400
