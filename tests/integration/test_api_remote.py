"""The alert API seen from another host (a network namespace over a veth pair): reads need the token
there, health and metrics do not."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import SecretStr

from netwatch.alerting.engine import AlertStatus
from netwatch.alerting.service import OpenIncident
from netwatch.alerting.silences import Silence, Silences, SilenceSpec
from netwatch.api import ApiConfig, serve_api
from tests.servers.common import free_port, require_binary
from tests.servers.netns import NetnsHost
from tests.unit.test_api_health import FakeSource

TOKEN = "remote-token-6512bd43d9caa6e02c990b0a82652dca"


class QuietAlerts:
    """An alert source with nothing firing and real silences."""

    def __init__(self) -> None:
        self.silences = Silences()

    def incidents(self) -> list[OpenIncident]:
        return []

    def unopened(self) -> list[AlertStatus]:
        return []

    def add_silence(self, spec: SilenceSpec) -> Silence:
        return self.silences.add(spec)

    def expire_silence(self, silence_id: str) -> Silence | None:
        return self.silences.expire(silence_id)


async def curl_from(host: NetnsHost, url: str, *args: str) -> tuple[int, str]:
    """Run curl inside the test host's namespace; return (status, body)."""
    curl = require_binary("curl", "curl")
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", host.namespace, curl, "-s", "-m", "5", "-w", "\n%{http_code}", *args, url,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 15)
    body, _, status = out.decode().rpartition("\n")
    return int(status), body


@pytest.mark.parametrize("token", [TOKEN, None])
async def test_reads_from_another_host_need_the_token(test_host: NetnsHost, token: str | None) -> None:
    """From a non-loopback peer: alerts and silences are 401 without the token (403 naming
    api.token_file when none is configured), 200 with it; /healthz and /metrics stay open."""
    cfg = ApiConfig(listen=f"{test_host.local}:{free_port()}", token_file=None if token is None else SecretStr(token))
    async with serve_api(cfg, FakeSource(), alerts=QuietAlerts()) as server:
        assert server.url is not None
        for path in ("/api/v1/alerts", "/api/v1/silences"):
            status, body = await curl_from(test_host, server.url + path)
            if token is None:
                assert status == 403, body
                assert "api.token_file" in json.loads(body)["error"]
            else:
                assert status == 401, body
                status, _ = await curl_from(test_host, server.url + path, "-H", "Authorization: Bearer wrong")
                assert status == 401
                status, body = await curl_from(test_host, server.url + path, "-H", f"Authorization: Bearer {TOKEN}")
                assert status == 200, body
        assert (await curl_from(test_host, server.url + "/healthz"))[0] == 200
        assert (await curl_from(test_host, server.url + "/metrics"))[0] == 200
