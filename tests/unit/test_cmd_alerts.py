"""`netwatch alerts` and `netwatch silences` against a real API on loopback (the CLI runs in a thread)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import structlog
from pydantic import SecretStr

from netwatch.alerting.model import Notification
from netwatch.alerting.service import AlertService
from netwatch.api import ApiConfig, serve_api
from netwatch.cli import main
from netwatch.model import Sample, now_ns
from tests.servers.common import free_port
from tests.unit.test_api_alerts import TOKEN, build_service
from tests.unit.test_api_health import FakeSource


@dataclass
class Daemon:
    """A served alert API and a config file pointing at it."""

    port: int
    config: Path
    svc: AlertService
    inventory: object
    sent: list[Notification]

    def fail(self, *devices: str) -> None:
        t = now_ns()
        samples = []
        for d in self.inventory.devices.values():  # type: ignore[attr-defined]
            up = d.id not in devices
            samples.append(Sample("device", d.target.base_tags(), {"up": int(up), "state": "x", "reason": "ok"}, t))
        self.svc.observe(samples)
        self.svc.tick()


def write_config(path: Path, listen: str, *, token_file: str | None = "token") -> Path:
    api = f'{{listen: "{listen}"' + (f", token_file: {token_file}" if token_file else "") + "}"
    path.write_text(f"api: {api}\nsites: []\n")
    return path


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    sent: list[Notification] = []
    svc, inventory = build_service(tmp_path, sent)
    cfg = ApiConfig(listen="127.0.0.1:0", token_file=SecretStr(TOKEN))
    async with serve_api(cfg, FakeSource(), alerts=svc) as server:
        port = server.addresses[0][1]
        (tmp_path / "token").write_text(TOKEN + "\n")
        config = write_config(tmp_path / "netwatch.yaml", f"127.0.0.1:{port}")
        yield Daemon(port, config, svc, inventory, sent)


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI; what it prints is captured apart from the server's logs."""
    capsys.readouterr()
    with structlog.testing.capture_logs():
        code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_alerts_prints_the_open_incidents(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    """The table has since, severity, rule, entity, impact, held and summary; exit 0."""
    code, out, _ = await cli(capsys, "alerts", "-c", str(daemon.config))
    assert (code, out.strip()) == (0, "no open incidents")
    daemon.fail("sw-vp", "cam-vp", "ap-vp", "ups-hq")
    code, out, _ = await cli(capsys, "alerts", "-c", str(daemon.config))
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split()[:8] == ["SINCE", "FOR", "SEVERITY", "STATE", "RULE", "ENTITY", "IMPACT", "HELD"]
    assert len(rows) == 2, out  # the camera and the AP are in the switch's impact
    switch = next(r for r in rows if "sw-vp" in r)
    assert "critical" in switch
    assert "device_down" in switch
    assert "2 dark" in switch
    assert "2 devices unreachable behind it: 2 at Villa Parke" in switch
    code, out, _ = await cli(capsys, "alerts", "-c", str(daemon.config), "--all", "site=park")
    assert sorted(line.split()[6] for line in out.splitlines()[1:]) == ["ap-vp", "cam-vp", "sw-vp"]
    assert "unreachable" in out
    code, out, _ = await cli(capsys, "alerts", "-c", str(daemon.config), "--json")
    assert code == 0
    assert {a["entity"] for a in json.loads(out)["alerts"]} == {"sw-vp", "ups-hq"}


async def test_unreachable_daemon_is_exit_3_naming_the_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing listening: exit 3 and the URL tried; a bad matcher is a usage error (2)."""
    port = free_port()
    config = write_config(tmp_path / "netwatch.yaml", f"127.0.0.1:{port}", token_file=None)
    code, _, err = await cli(capsys, "alerts", "-c", str(config))
    assert code == 3
    assert f"http://127.0.0.1:{port}" in err
    code, _, err = await cli(capsys, "silences", "list", "-c", str(config))
    assert code == 3
    code, _, err = await cli(capsys, "alerts", "-c", str(config), "site")
    assert code == 2
    assert "is not a matcher" in err


@pytest.mark.parametrize(
    ("listen", "extra", "fragment"),
    [
        ("127.0.0.1:0", "", "port 0 is chosen at start; pass --url"),
        ("127.0.0.1:9317", ", enabled: false", "the API is disabled"),
        ("nonsense", "", "api.listen"),
    ],
)
async def test_config_that_does_not_say_where_the_api_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], listen: str, extra: str, fragment: str
) -> None:
    """Port 0, a disabled API or a bad address: exit 1 with the reason."""
    (tmp_path / "c.yaml").write_text(f'api: {{listen: "{listen}"{extra}}}\n')
    code, _, err = await cli(capsys, "alerts", "-c", str(tmp_path / "c.yaml"))
    assert code == 1
    assert fragment in err


async def test_reads_work_without_a_readable_token_writes_do_not(
    daemon: Daemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An operator who cannot read the token still reads on loopback; adding a silence says why not."""
    config = write_config(tmp_path / "other.yaml", f"127.0.0.1:{daemon.port}", token_file="missing-token")
    code, _, _ = await cli(capsys, "alerts", "-c", str(config))
    assert code == 0
    code, _, err = await cli(capsys, "silences", "add", "-c", str(config), "site=park", "-d", "1h", "-m", "x")
    assert code == 1
    assert "missing-token" in err
    assert "does not exist" in err


async def test_silences_add_list_expire(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    """add prints the id and holds the page; list shows it holding one incident; expire sends the page."""
    c = str(daemon.config)
    code, out, err = await cli(
        capsys, "silences", "add", "-c", c, "site=park", "rule=~device_.*", "-d", "2h", "-m", "splice", "-a", "ana"
    )
    assert code == 0, err
    silence_id = out.strip()
    daemon.fail("sw-vp")
    assert daemon.sent == []
    code, out, _ = await cli(capsys, "silences", "list", "-c", c)
    assert code == 0
    header, row = out.splitlines()
    assert header.split()[:5] == ["ID", "STATE", "STARTS", "ENDS", "HOLDING"]
    assert row.split()[0:2] == [silence_id, "active"]
    assert 'site="park" rule=~"device_.*"' in row
    assert row.split()[6] == "1"  # holding the switch's incident
    code, out, _ = await cli(capsys, "alerts", "-c", c)
    assert "silenced" in out
    code, out, _ = await cli(capsys, "silences", "expire", "-c", c, silence_id, "no-such-id")
    assert code == 1
    assert f"expired {silence_id}" in out
    assert [(n.event, n.incident.entity) for n in daemon.sent] == [("firing", "sw-vp")]
    code, out, _ = await cli(capsys, "silences", "list", "-c", c)
    assert out.strip() == "no silences"
    code, out, _ = await cli(capsys, "silences", "list", "-c", c, "--all")
    assert "expired" in out


async def test_refused_silence_prints_every_problem(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    """A silence the API refuses: exit 1 with each problem on its own line."""
    code, _, err = await cli(
        capsys, "silences", "add", "-c", str(daemon.config), "site!=nowhere", "-d", "30d", "-m", "too broad"
    )
    assert code == 1
    assert "HTTP 400" in err
    assert "every matcher also matches a missing label" in err
    assert "api.silence_max_duration" in err
    assert daemon.svc.silences.all() == []


async def test_proxy_settings_do_not_divert_loopback_requests(
    daemon: Daemon, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """http_proxy in the environment is ignored: the CLI talks to the daemon directly."""
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("no_proxy", "")
    code, _, err = await cli(capsys, "alerts", "-c", str(daemon.config))
    assert code == 0, err


async def test_url_option(daemon: Daemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--url overrides api.listen (e.g. for a config with port 0)."""
    config = write_config(tmp_path / "zero.yaml", "127.0.0.1:0", token_file=None)
    code, _, err = await cli(capsys, "alerts", "-c", str(config), "--url", f"http://127.0.0.1:{daemon.port}/")
    assert code == 0, err
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{daemon.port}/api/v1/alerts") as resp:
        assert resp.status == 200
