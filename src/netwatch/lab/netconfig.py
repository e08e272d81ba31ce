"""The netwatch config that watches a lab (``netwatch lab run --write-config FILE``).

Every device gets the checks a real one of its kind would: ping (where this host may send ICMP),
SNMP for routers and switches, the wifi check through the device's vendor profile (through the
controller for APs that joined one), RTSP and snapshot for cameras, the portal check for portals,
MQTT heartbeats for door panels; the trap receiver listens where the lab sends traps. Secrets go
to files beside the config, as in production. The result passes ``netwatch check-config``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from netwatch.lab.rtspsim import STREAM_PATH
from netwatch.lab.spec import Lab, yaml_text
from netwatch.lab.web import SNAPSHOT_PATH

#: A park's portal entry URL path ({address}:{http_port} is the portal device's).
PORTAL_PATH = "/guest/s/{site}/"
CAMERA_USER = "viewer"
CAMERA_PASSWORD = "lab-camera"  # a lab's throwaway password, written to a 0600 file

_KIND = {"wlc": "other", "portal": "server"}


def icmp_available() -> bool:
    """Whether this process may send ICMP echo: root/CAP_NET_RAW, or a ping group it belongs to."""
    if os.geteuid() == 0:
        return True
    try:
        low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ping_group_range").read_text().split())
    except (OSError, ValueError):
        return False
    return any(low <= gid <= high for gid in {os.getegid(), *os.getgroups()})


def write_config(
    lab: Lab,
    out: Path,
    *,
    influxdb: str | None = None,
    icmp: bool | None = None,
    receivers: list[dict[str, Any]] | None = None,
    state_dir: Path | None = None,
) -> Path:
    """Write the netwatch config (and its credential files) for ``lab`` to ``out``; return ``out``."""
    out = out.resolve()
    creds = out.parent / "credentials"
    creds.mkdir(parents=True, exist_ok=True)
    for name, value in {
        "lab-community": lab.spec.lab.community,
        "camera-user": CAMERA_USER,
        "camera-password": CAMERA_PASSWORD,
    }.items():
        path = creds / name
        path.write_text(value + "\n")
        path.chmod(0o600)
    doc = config_data(
        lab,
        influxdb=influxdb,
        icmp=icmp_available() if icmp is None else icmp,
        receivers=receivers or [],
        state_dir=state_dir or out.parent / "state",
    )
    header = (
        f"# netwatch config for the lab {lab.path}, written by `netwatch lab run --write-config`.\n"
        "# Every address is the lab's, on loopback; rewrite it rather than edit it.\n"
    )
    out.write_text(header + yaml_text(doc))
    return out


def config_data(
    lab: Lab, *, influxdb: str | None, icmp: bool, receivers: list[dict[str, Any]], state_dir: Path
) -> dict[str, Any]:
    """Return the netwatch config for ``lab`` as YAML-ready data."""
    s = lab.spec.lab
    timeout, wait, service = _timeouts(s.interval)
    ping = ["ping"] if icmp else []
    kinds: dict[str, Any] = {
        "router": {"checks": [*ping, "snmp"]},
        "switch": {"checks": [*ping, "snmp"]},
        "wifi_ap": {"checks": [*ping, "wifi"]},
        "access_panel": {"checks": ping},
        "camera": {
            "checks": [*ping, "rtsp", "snapshot"],
            "rtsp": {
                "url": f"rtsp://{{address}}:{s.rtsp_port}{STREAM_PATH}",
                "username_file": "credentials/camera-user",
                "password_file": "credentials/camera-password",
                "timeout": service,
            },
            "snapshot": {
                "url": f"http://{{address}}:{s.http_port}{SNAPSHOT_PATH}",
                "username_file": "credentials/camera-user",
                "password_file": "credentials/camera-password",
                "min_bytes": 1000,
                "timeout": service,
            },
        },
        "server": {"checks": ping},
        "other": {"checks": ping},
    }
    data: dict[str, Any] = {
        "instance": "lab",
        "state_dir": str(state_dir),
    }
    if influxdb:
        data["influxdb"] = {"url": influxdb, "api": "v1", "database": "netwatch", "flush_interval": "1s"}
    data |= {
        "api": {"listen": s.api},
        "scheduler": {"stats_interval": "10s"},
        "log": {"level": "info", "format": "auto"},
        "defaults": {
            "interval": f"{s.interval:g}s",
            "timeout": f"{timeout:g}s",
            "ping": {"count": 2, "spacing": "100ms", "wait": f"{wait:g}s"},
            "snmp": {
                "version": "2c",
                "community_file": "credentials/lab-community",
                "port": s.snmp_port,
                "timeout": f"{wait:g}s",
                "retries": 1,
            },
            "kinds": kinds,
        },
        "mqtt": {
            "host": "127.0.0.1",
            "port": s.mqtt_port,
            "heartbeat_every": f"{s.heartbeat_every:g}s",
            "client_id": "netwatch-lab",
        },
        "traps": {"listen": f"127.0.0.1:{s.trap_port}", "community_files": ["credentials/lab-community"]},
        "sites": [site.model_dump(exclude_none=True) for site in lab.spec.sites],
        "devices": [_device(lab, d.id, ping) for d in lab.spec.devices],
        "links": [link.model_dump(exclude_none=True) for link in lab.spec.links],
    }
    if receivers:
        data["receivers"] = receivers
        data["routes"] = [{"receivers": [r["name"] for r in receivers], "group_wait": "1s"}]
    return data


def _timeouts(interval: float) -> tuple[float, float, str]:
    """Return (check timeout, ping wait and SNMP timeout, service checks' timeout) for an interval.

    Every check's own waits must fit in the check timeout (check-config says so), whatever the
    interval: a 2 s lab polls with tighter timeouts than a 10 s one.
    """
    timeout = min(5.0, interval * 0.9)
    wait = round(min(1.0, timeout / 2.5), 3)
    return timeout, wait, f"{round(timeout * 0.6, 3):g}s"


def _device(lab: Lab, device_id: str, ping: list[str]) -> dict[str, Any]:
    d = lab.device(device_id)
    s = lab.spec.lab
    service = _timeouts(s.interval)[2]
    entry: dict[str, Any] = {
        "id": d.id,
        "site": d.site,
        "kind": _KIND.get(d.kind, d.kind),
        "address": lab.addresses[d.id],
    }
    if d.parents:
        entry["parents"] = list(d.parents)
    if d.ports:
        entry["ports"] = list(d.ports)
    if d.kind == "wifi_ap":
        wifi: dict[str, Any] = {"profile": d.profile}
        if d.controller is not None:
            wifi |= {"agent": lab.addresses[d.controller], "ap": d.id}
        entry["wifi"] = wifi
    elif d.kind == "portal":
        entry["checks"] = [*ping, "portal"]
        entry["portal"] = {
            "url": f"http://{lab.addresses[d.id]}:{s.http_port}{PORTAL_PATH.format(site=d.site)}",
            "expect_body_regex": "(?i)terms of (use|service)",
            "timeout": service,
        }
    return entry
