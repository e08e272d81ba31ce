"""Probe kinds: one module each, registered here by the name used in ``checks:``.

Adding a kind touches its module, one line below, its tests, the example config and the README
table. The config schema (per-kind settings under ``defaults``, ``defaults.kinds.<kind>`` and each
device) is generated from this registry, so nothing else changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from netwatch.configbase import Strict
from netwatch.probes import http, ping, rtsp, snapshot, snmp, tcp, wifi
from netwatch.probes.base import Probe, ProbeFactory, ProbeResources


@dataclass(frozen=True, slots=True)
class ProbeKind:
    """A check name's config class and the factory that builds its probe."""

    config: type[Strict]
    build: ProbeFactory
    #: Whether its outcomes carry port states (Outcome.ports_up), so span ends can be judged.
    reports_ports: bool = False
    #: Another kind whose settings lie under this kind's at each level (wifi over snmp: SNMP
    #: credentials are written once, in ``snmp:``, and serve both checks).
    settings_from: str | None = None


REGISTRY: dict[str, ProbeKind] = {
    "ping": ProbeKind(ping.PingConfig, ping.build),
    "snmp": ProbeKind(snmp.SnmpConfig, snmp.build, reports_ports=True),
    "http": ProbeKind(http.HttpConfig, http.build),
    # An http check whose result also decides its park's public WiFi (netwatch.parkwifi).
    "portal": ProbeKind(http.HttpConfig, http.build_portal),
    "rtsp": ProbeKind(rtsp.RtspConfig, rtsp.build),
    "snapshot": ProbeKind(snapshot.SnapshotConfig, snapshot.build),
    "wifi": ProbeKind(wifi.WifiConfig, wifi.build, settings_from="snmp"),
    "tcp": ProbeKind(tcp.TcpConfig, tcp.build),
}

__all__ = ["REGISTRY", "Probe", "ProbeKind", "ProbeResources"]
