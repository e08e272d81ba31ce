"""The running lab and its faults through the control endpoint, as `netwatch lab fault` uses it.

What a user of the lab notices: a fault names what it darkens; a dark device answers nothing
(ICMP and SNMP time out, as across a cut fibre) while its neighbours carry on; bad requests get a
reason; clearing brings everything back; stopping leaves no firewall table or broker behind.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from netwatch.lab.city import CityLab, FaultRequest
from netwatch.lab.control import ControlError, call, serve_control
from netwatch.lab.spec import Lab, load_lab
from tests.servers.labfile import lab_file

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="dark devices need nftables or blackhole routes (root)")


@pytest.fixture
async def city(tmp_path: Path) -> AsyncIterator[tuple[Lab, CityLab]]:
    lab = load_lab(lab_file(tmp_path, "127.25.0.0/16"))
    running = CityLab(lab, tmp_path / "work")
    await running.start()
    try:
        async with serve_control(running, lab.spec.lab.control):
            yield lab, running
    finally:
        await running.stop()


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def _answers_ping(address: str) -> bool:
    return subprocess.run(["fping", "-q", "-c1", "-t300", address], capture_output=True, check=False).returncode == 0


def _answers_snmp(address: str, port: int) -> bool:
    done = subprocess.run(
        ["snmpget", "-v2c", "-c", "lab-city", "-t", "0.5", "-r", "0", f"{address}:{port}", "1.3.6.1.2.1.1.3.0"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode == 0 and "Timeticks" in done.stdout


async def test_a_cut_darkens_what_is_behind_it_and_clearing_brings_it_back(city: tuple[Lab, CityLab]) -> None:
    lab, running = city
    control, port = lab.spec.lab.control, lab.spec.lab.snmp_port
    sw_vp, core_fs31 = lab.addresses["sw-vp"], lab.addresses["core-fs31"]
    assert await asyncio.to_thread(_answers_snmp, sw_vp, port)

    fault = await call(control, "POST", "/faults", {"kind": "cut", "target": "span-fs31-vp"})
    assert fault["affects"] == ["ap-vp-1", "ap-vp-2", "cam-vp-1", "door-vp-1", "sw-vp"]
    assert not await asyncio.to_thread(_answers_ping, sw_vp)
    assert not await asyncio.to_thread(_answers_snmp, sw_vp, port)
    # The near end still answers, and says its port lost the light.
    assert await asyncio.to_thread(_answers_ping, core_fs31)
    assert await asyncio.to_thread(_answers_snmp, core_fs31, port)
    near = running.sims["core-fs31"].interface("ge-0/0/2")
    assert not near.oper
    status = await call(control, "GET", "/status")
    assert {d["id"] for d in status["devices"] if d["dark"]} == set(fault["affects"])

    cleared = await call(control, "DELETE", "/faults")
    assert [f["id"] for f in cleared["cleared"]] == [fault["id"]]
    assert await asyncio.to_thread(_answers_ping, sw_vp)
    assert await asyncio.to_thread(_answers_snmp, sw_vp, port)
    assert running.sims["core-fs31"].interface("ge-0/0/2").oper


async def test_bad_fault_requests_get_a_reason_and_change_nothing(city: tuple[Lab, CityLab]) -> None:
    lab, running = city
    control = lab.spec.lab.control
    for body, reason in [
        ({"kind": "cut", "target": "span-nowhere"}, "unknown span 'span-nowhere'"),
        ({"kind": "melt", "target": "sw-vp"}, "unknown fault kind 'melt'"),
        ({"kind": "port", "target": "sw-vp"}, "name a port as device:port"),
        ({"kind": "port", "target": "sw-vp:Gi9/9"}, "sw-vp has no port 'Gi9/9'"),
        ({"kind": "camera", "target": "sw-vp", "mode": "no_video"}, "sw-vp is a switch, not a camera"),
        ({"kind": "degrade", "target": "core-ch:xe-0/0/0"}, "has no optic"),
    ]:
        with pytest.raises(ControlError, match=reason):
            await call(control, "POST", "/faults", body)
    with pytest.raises(ControlError, match="no fault 'f99'"):
        await call(control, "DELETE", "/faults/f99")
    assert running.faults == {}
    assert running.dark == set()


async def test_a_flapping_port_goes_down_and_up_until_cleared(city: tuple[Lab, CityLab]) -> None:
    lab, running = city
    fault = await call(
        lab.spec.lab.control, "POST", "/faults", {"kind": "flap", "target": "sw-bs:Gi1/0/49", "period_s": 0.5}
    )
    port = running.sims["sw-bs"].interface("Gi1/0/49")
    seen = set()
    for _ in range(12):
        seen.add(port.oper)
        await asyncio.sleep(0.1)
    assert seen == {True, False}
    await call(lab.spec.lab.control, "DELETE", f"/faults/{fault['id']}")
    await asyncio.sleep(0.6)
    assert port.oper


async def test_degrading_optics_lower_the_received_power_over_time(city: tuple[Lab, CityLab]) -> None:
    lab, running = city
    iface = running.sims["core-wp"].interface("ge-0/0/2")
    before = iface.rx_dbm_at(1e12)  # far in the future: without a fault nothing drifts
    await call(
        lab.spec.lab.control, "POST", "/faults", {"kind": "degrade", "target": "core-wp:ge-0/0/2", "db_per_min": 60}
    )
    await asyncio.sleep(0.5)
    now = running.sims["core-wp"].interface("ge-0/0/2").rx_dbm_at(time.time())
    assert before is not None
    assert now is not None
    assert now < before - 0.3  # about half a dB in half a second at 60 dB/min


async def test_stopping_the_lab_leaves_no_table_or_broker(tmp_path: Path) -> None:
    lab = load_lab(lab_file(tmp_path, "127.26.0.0/16"))
    running = CityLab(lab, tmp_path / "work")
    await running.start()
    await running.apply(FaultRequest("down", "core-wp"))
    table = running.blackholes.table
    await running.stop()
    assert (await asyncio.to_thread(_run, "pgrep", "-f", str(tmp_path / "work"))).stdout == ""
    if shutil.which("nft"):
        assert table not in (await asyncio.to_thread(_run, "nft", "list", "tables")).stdout
    assert await asyncio.to_thread(_answers_ping, lab.addresses["core-wp"])
