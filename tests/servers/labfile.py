"""The shipped lab city on a loopback block and free ports of a test's own, polled every 2 s."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.servers.common import free_port

CITY = Path(__file__).resolve().parents[2] / "config" / "lab" / "city.yaml"


def lab_file(tmp_path: Path, network: str) -> Path:
    """Write the city with its own network and ports (tests never share a lab's fixed ports)."""
    raw = yaml.safe_load(CITY.read_text())
    raw["lab"] = {
        "network": network,
        "interval": "2s",
        "heartbeat_every": "1s",
        "snmp_port": free_port(),
        "http_port": free_port(),
        "rtsp_port": free_port(),
        "mqtt_port": free_port(),
        "trap_port": free_port(),
        "control": f"127.0.0.1:{free_port()}",
        "api": f"127.0.0.1:{free_port()}",
    }
    path = tmp_path / "city.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path
