"""The daemon's reload: a bad file touches nothing; a good one swaps checks without disturbing the rest."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import structlog

from netwatch import daemon
from netwatch.model import Outcome, Target
from netwatch.probes import REGISTRY, ProbeKind
from netwatch.probes.base import ProbeResources
from netwatch.probes.ping import PingConfig
from tests.unit.fakes import FakeProbe

CONFIG = """
instance: t
state_dir: {state}
log: {{format: json}}
api: {{listen: "127.0.0.1:0"}}
defaults: {{interval: 1s, timeout: 900ms, ping: {{count: 1, wait: 500ms}}}}
sites: [{{id: hq, name: HQ}}]
devices:
{devices}
"""


def write(path: Path, *devices: str) -> None:
    lines = "\n".join(f"  - {{id: {d}, site: hq, kind: server, address: 127.0.0.1}}" for d in devices)
    path.write_text(CONFIG.format(state=path.parent / "state", devices=lines))


@pytest.fixture
def probes(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeProbe]:
    """Replace the ping kind with fake probes that take 600 ms (so a run is often in flight)."""
    built: dict[str, FakeProbe] = {}

    def build(target: Target, cfg: Any, resources: ProbeResources) -> FakeProbe:
        probe = FakeProbe(delay=0.6, outcome=Outcome(up=True, reason="ok"))
        built[target.device] = probe
        return probe

    monkeypatch.setitem(REGISTRY, "ping", ProbeKind(PingConfig, build))
    return built


async def test_reload_keeps_running_checks_and_their_grid(tmp_path: Path, probes: dict[str, FakeProbe]) -> None:
    """A broken file is refused with no effect on polling; a good one adds and removes devices while
    the device that stays keeps its probe, its phase and its run in flight (nothing is cancelled)."""
    config = tmp_path / "netwatch.yaml"
    write(config, "d1", "d2")
    stop, reload = asyncio.Event(), asyncio.Event()
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(daemon.run(config, stop, reload, configure_logs=lambda level, fmt: None))
        await asyncio.sleep(2.2)
        d1 = probes["d1"]

        config.write_text(config.read_text().replace("kind: server", "kind: sever"))
        reload.set()
        await asyncio.sleep(2.2)
        assert any(e["event"] == "config_reload_failed" for e in logs)

        write(config, "d1", "d3")
        reload.set()
        await asyncio.sleep(2.2)
        stop.set()
        await asyncio.wait_for(task, 5)

    assert probes["d1"] is d1, "an unchanged check keeps its probe (and so its counters)"
    assert d1.cancelled <= 1, "only the final stop may cancel a run in flight"
    gaps = [b - a for a, b in zip(d1.calls, d1.calls[1:], strict=False)]
    assert len(d1.calls) >= 6
    assert all(abs(g - 1.0) < 0.1 for g in gaps), gaps  # no reset, no skipped tick, no burst
    assert "d3" in probes
    assert probes["d3"].calls
    d2_after = [t for t in probes["d2"].calls if t > d1.calls[-1] - 2.0]
    assert not d2_after, "a removed device is not polled any more"


async def test_reload_teaches_alerting_the_new_devices_kinds_and_intervals(tmp_path: Path) -> None:
    """A rule scoped to a kind sees a device added by a reload (interface samples carry no kind tag:
    alerting looks it up), and an absence rule counts the reloaded interval, not the old one."""
    import contextlib

    from netwatch.config import load_config
    from netwatch.model import Sample, now_ns

    S = 1_000_000_000

    path = tmp_path / "netwatch.yaml"
    rule = (
        "alerts:\n"
        "  - {name: ap_port_down, measurement: interface, field: oper_up, op: '==', threshold: 0,"
        " scope: {kinds: [wifi_ap]}}\n"
    )
    write(path, "sw1")
    path.write_text(path.read_text() + rule)
    first = load_config(path)
    path.write_text(
        path.read_text().replace(
            "devices:\n", "devices:\n  - {id: ap1, site: hq, kind: wifi_ap, address: 127.0.0.2, interval: 7s}\n"
        )
    )
    second = load_config(path)
    got: list[Sample] = []

    class Sink:
        def submit(self, samples: list[Sample]) -> None:
            got.extend(samples)

    async with contextlib.AsyncExitStack() as stack:
        alerts, outbox = await daemon.open_alerting(first, Sink(), stack)  # type: ignore[arg-type]
        await daemon.reload_alerting(alerts, outbox, second)
        now = now_ns()
        alerts.observe([Sample("interface", {"device": "ap1", "site": "hq", "port": "eth0"}, {"oper_up": 0}, now)])
        alerts.observe([Sample("device", {"device": "ap1", "site": "hq", "kind": "wifi_ap"}, {"up": 1}, now)])

        def fired(rule: str) -> list[str | float | int]:
            return [s.fields["state"] for s in got if s.measurement == "alert" and s.tags["rule"] == rule]

        assert fired("ap_port_down") == ["firing"]
        alerts.tick(now + 20 * S)  # device_silent: 3 intervals of 7 s
        assert fired("device_silent") == []
        alerts.tick(now + 22 * S)
        alerts.tick(now + 40 * S)  # past the default group_wait
        assert fired("device_silent") == ["firing"]


async def test_reload_that_removes_a_firing_device_resolves_its_incident(tmp_path: Path) -> None:
    """A decommissioned device's open incident is closed by the reload that removes it (written to
    the alert measurement and sent to whoever was told), not left firing forever."""
    import contextlib

    from netwatch.config import load_config
    from netwatch.model import Sample, now_ns

    path = tmp_path / "netwatch.yaml"
    write(path, "sw1", "sw2")
    first = load_config(path)
    write(path, "sw1")
    second = load_config(path)
    got: list[Sample] = []

    class Sink:
        def submit(self, samples: list[Sample]) -> None:
            got.extend(samples)

    async with contextlib.AsyncExitStack() as stack:
        alerts, outbox = await daemon.open_alerting(first, Sink(), stack)  # type: ignore[arg-type]
        now = now_ns()
        alerts.observe([Sample("device", {"device": "sw2", "site": "hq", "kind": "server"}, {"up": 0}, now)])
        await daemon.reload_alerting(alerts, outbox, second)
        states = [s.fields["state"] for s in got if s.measurement == "alert" and s.tags["entity"] == "sw2"]
        assert states == ["firing", "resolved"]
        assert alerts.open_incidents() == []
