"""End to end through `netwatch run`: the alerts API, silences that hold pages, survive a restart and
release them when deleted, and `netwatch alerts` printing what fires."""

from __future__ import annotations

import asyncio
import inspect
import json
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.servers.common import free_port

NETWATCH = str(Path(sys.executable).parent / "netwatch")
TOKEN = "e2e-api-token-8f14e45fceea167a5a36dedd4bea2543"
HOOK_SECRET = "a-webhook-secret-of-some-length"

DEVICE_A = "  - {id: sw-hq, site: hq, kind: switch, address: 127.0.0.1, checks: [snmp]}\n"
DEVICE_B = "  - {id: sw-vp, site: park, kind: switch, address: 127.0.0.2, checks: [snmp]}\n"


def write_config(tmp: Path, api_port: int, hook_port: int, *, with_park: bool) -> Path:
    closed = free_port()  # nothing listens there: every SNMP request times out, so devices are down
    path = tmp / "netwatch.yaml"
    path.write_text(
        f"""
state_dir: {tmp / "state"}
api: {{listen: "127.0.0.1:{api_port}", token_file: api-token}}
log: {{format: json}}
defaults:
  interval: 1s
  timeout: 900ms
  snmp: {{community_file: community, port: {closed}, timeout: 300ms, retries: 0}}
sites: [{{id: hq, name: City Hall}}, {{id: park, name: Villa Parke, kind: park}}]
devices:
{DEVICE_A}{DEVICE_B if with_park else ""}
receivers:
  - {{name: noc, kind: webhook, url: "http://127.0.0.1:{hook_port}/hook", secret_file: hook.key}}
routes:
  - {{receivers: [noc], group_wait: 1s}}
"""
    )
    return path


class Daemon:
    """One `netwatch run` process; its stderr (the JSON log) is kept for the token check."""

    def __init__(self, config: Path, url: str) -> None:
        self.config = config
        self.url = url
        self.stderr = b""
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            NETWATCH, "run", "-c", str(self.config), stderr=asyncio.subprocess.PIPE
        )
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.get(self.url + "/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    pass
                if self.proc.returncode is not None:
                    break
                await asyncio.sleep(0.05)
        raise AssertionError(f"netwatch did not start: {await self.stop()!r}")

    async def stop(self) -> bytes:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        assert self.proc.stderr is not None
        err = await asyncio.wait_for(self.proc.stderr.read(), 20)
        await asyncio.wait_for(self.proc.wait(), 20)
        self.stderr += err
        return err

    def reload(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)


@asynccontextmanager
async def webhook(port: int) -> AsyncIterator[list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(json.loads(await request.read())["data"])
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield received
    finally:
        await runner.cleanup()


async def until(check: Callable[[], bool | Awaitable[bool]], within_s: float, what: str) -> None:
    """Wait until ``check`` (plain or async) is true; fail naming ``what``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while loop.time() < deadline:
        result = check()
        if await result if inspect.isawaitable(result) else result:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {within_s} s: {what}")


def pages(received: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(d["event"], d["entity"]) for d in received]


async def test_alerts_api_silence_restart_and_cli(tmp_path: Path) -> None:
    """A dead switch fires and the API lists it; a silence needs the token; a second dead switch under
    the silence pages nobody, also across a restart, and pages once the silence is deleted;
    `netwatch alerts` prints both; the token appears in no log line."""
    (tmp_path / "community").write_text("public")
    (tmp_path / "hook.key").write_text(HOOK_SECRET)
    (tmp_path / "api-token").write_text(TOKEN + "\n")
    api_port, hook_port = free_port(), free_port()
    url = f"http://127.0.0.1:{api_port}"
    config = write_config(tmp_path, api_port, hook_port, with_park=False)
    daemon = Daemon(config, url)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    silence = {
        "matchers": [{"label": "site", "op": "=", "value": "park"}],
        "duration": "1h",
        "created_by": "e2e",
        "comment": "splicing the park lateral",
    }
    async with webhook(hook_port) as received, aiohttp.ClientSession() as http:

        async def alerts() -> dict[str, dict[str, Any]]:
            async with http.get(url + "/api/v1/alerts") as resp:
                assert resp.status == 200
                return {a["entity"]: a for a in (await resp.json())["alerts"]}

        await daemon.start()
        try:
            # 1. A dead switch fires: paged, and listed by the API (open on loopback).
            await until(lambda: ("firing", "sw-hq") in pages(received), 15, "sw-hq paged")
            listed = await alerts()
            assert listed["sw-hq"]["rule"] == "device_down"
            assert listed["sw-hq"]["severity"] == "critical"
            assert listed["sw-hq"]["held"] is None
            assert listed["sw-hq"]["notified"] == ["noc"]

            # 2. A silence needs the token.
            async with http.post(url + "/api/v1/silences", json=silence) as resp:
                assert resp.status == 401
            async with http.post(
                url + "/api/v1/silences", json=silence, headers={"Authorization": "Bearer no"}
            ) as resp:
                assert resp.status == 401
            async with http.post(url + "/api/v1/silences", json=silence, headers=auth) as resp:
                assert resp.status == 201
                silence_id = (await resp.json())["id"]

            # 3. A second dead switch, at the silenced site (added by a reload): recorded, not paged.
            write_config(tmp_path, api_port, hook_port, with_park=True)
            daemon.reload()
            await until(lambda: _has(alerts, "sw-vp"), 15, "sw-vp listed")
            await asyncio.sleep(4)  # group_wait is 1 s: a page would have gone out by now
            assert ("firing", "sw-vp") not in pages(received)
            listed = await alerts()
            assert (listed["sw-vp"]["held"], listed["sw-vp"]["silenced_by"]) == ("silenced", [silence_id])
        finally:
            await daemon.stop()

        # 4. Restart: the silence is still there and still holds; sw-hq is not paged again.
        await daemon.start()
        try:
            async with http.get(url + "/api/v1/silences") as resp:
                [kept] = (await resp.json())["silences"]
            assert (kept["id"], kept["state"], kept["comment"]) == (silence_id, "active", "splicing the park lateral")
            await until(lambda: _has(alerts, "sw-vp"), 15, "sw-vp listed after the restart")
            await asyncio.sleep(3)
            assert pages(received) == [("firing", "sw-hq")]
            assert (await alerts())["sw-vp"]["held"] == "silenced"

            # 5. `netwatch alerts` prints both incidents.
            cli = await asyncio.create_subprocess_exec(
                NETWATCH, "alerts", "-c", str(config), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            out, err = await asyncio.wait_for(cli.communicate(), 30)
            assert cli.returncode == 0, err
            table = out.decode()
            assert "sw-hq" in table
            assert "sw-vp" in table
            assert "silenced" in table
            assert "device_down" in table

            # 6. Deleting the silence pages what it held, at once.
            async with http.delete(f"{url}/api/v1/silences/{silence_id}") as resp:
                assert resp.status == 401
            async with http.delete(f"{url}/api/v1/silences/{silence_id}", headers=auth) as resp:
                assert resp.status == 200
            await until(lambda: ("firing", "sw-vp") in pages(received), 10, "sw-vp paged")
            assert pages(received) == [("firing", "sw-hq"), ("firing", "sw-vp")]
        finally:
            await daemon.stop()

    # 7. The token is in no log line, though refused and accepted requests were logged.
    log = daemon.stderr.decode()
    assert "api_request_refused" in log
    assert "silence_created" in log
    assert TOKEN not in log
    # `netwatch alerts` with the daemon gone: exit 3 naming the URL.
    cli = await asyncio.create_subprocess_exec(
        NETWATCH, "alerts", "-c", str(config), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(cli.communicate(), 30)
    assert cli.returncode == 3
    assert url in err.decode()


async def _has(alerts: Any, entity: str) -> bool:
    return entity in await alerts()
