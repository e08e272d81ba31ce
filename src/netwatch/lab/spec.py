"""The lab description: a simulated city as a YAML file (``config/lab/city.yaml``).

Sites and spans are written exactly as in a netwatch config (the same classes validate them), so
a lab reads like the plant it imitates. Devices carry what a simulation needs instead of an
address: the lab gives each one a loopback address of its own (``lab.network``, in file order),
which is what lets one device stop answering while the rest carry on. Errors name file, line and
key, all at once, as a netwatch config's do.
"""

from __future__ import annotations

import ipaddress
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from netwatch.config import ConfigError, ConfigIssue, Id, LinkConfig, SiteConfig, _issues_from_validation
from netwatch.configbase import Duration, Strict
from netwatch.yamlpos import KeyPath, line_for, load_with_lines

#: What a simulated device is. ``portal`` is a park's captive portal (a web server the lab serves
#: and the written config checks with ``portal``); the rest are netwatch's device kinds.
LabKind = Literal["router", "switch", "wifi_ap", "wlc", "access_panel", "camera", "portal", "server"]
ApProfile = Literal["unifi", "cisco-wlc", "aruba-wlan", "generic"]


class LabSettings(Strict):
    """Where the lab listens and how the netwatch config it writes polls it."""

    network: ipaddress.IPv4Network = Field(
        default=ipaddress.IPv4Network("127.20.0.0/16"), description="loopback block device addresses come from"
    )
    snmp_port: int = Field(default=16100, ge=1, le=65535, description="every agent's port on its own address")
    community: str = Field(default="lab-city", min_length=1, description="v2c community of every agent")
    http_port: int = Field(default=18080, ge=1, le=65535, description="portals and camera snapshots")
    rtsp_port: int = Field(default=18554, ge=1, le=65535, description="camera streams")
    mqtt_port: int = Field(default=18830, ge=1, le=65535, description="the lab's broker, on 127.0.0.1")
    control: str = Field(default="127.0.0.1:18000", description="the lab's fault-control endpoint")
    # What the written netwatch config says (the lab does not need them itself).
    interval: Duration = Field(default=10.0, ge=1, description="poll interval of the written config")
    heartbeat_every: Duration = Field(default=5.0, ge=0.5, description="panel heartbeat cadence")
    trap_port: int = Field(default=18162, ge=1, le=65535, description="netwatch's trap listener, on 127.0.0.1")
    api: str = Field(default="127.0.0.1:19317", description="netwatch's API in the written config")

    @field_validator("network")
    @classmethod
    def _loopback(cls, net: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
        if not net.subnet_of(ipaddress.IPv4Network("127.0.0.0/8")):
            raise ValueError("the lab lives on loopback: network must be inside 127.0.0.0/8")
        if net.num_addresses < 4:
            raise ValueError("network is too small for a lab")
        return net


class LabDevice(Strict):
    """One simulated device."""

    id: Id
    site: Id
    kind: LabKind
    parents: list[Id] = Field(default_factory=list)
    ports: list[str] = Field(default_factory=list, description="ports beyond the span ends (uplinks, access)")
    # WiFi access points
    profile: ApProfile = Field(default="unifi", description="the vendor MIB the AP (or its controller) speaks")
    controller: Id | None = Field(default=None, description="a wlc device answering for this AP")
    radios: int = Field(default=2, ge=1, le=4)
    clients: int = Field(default=12, ge=0, le=500, description="typical associated clients")

    @model_validator(mode="after")
    def _ap_only(self) -> LabDevice:
        if self.controller is not None and self.kind != "wifi_ap":
            raise ValueError("controller: only a wifi_ap joins a controller")
        return self


class LabSpec(Strict):
    """A whole lab: settings, sites, devices, spans."""

    lab: LabSettings = Field(default_factory=LabSettings)
    sites: list[SiteConfig] = Field(min_length=1)
    devices: list[LabDevice] = Field(min_length=1)
    links: list[LinkConfig] = Field(default_factory=list)


@dataclass(frozen=True)
class Lab:
    """A loaded lab: the spec, and each device's loopback address."""

    path: Path
    spec: LabSpec
    addresses: dict[str, str]

    def device(self, device_id: str) -> LabDevice:
        for d in self.spec.devices:
            if d.id == device_id:
                return d
        raise KeyError(device_id)


def _cross_check(spec: LabSpec) -> list[tuple[KeyPath, str]]:
    problems: list[tuple[KeyPath, str]] = []
    sites = {s.id for s in spec.sites}
    kinds = {d.id: d.kind for d in spec.devices}
    seen: set[str] = set()
    for i, d in enumerate(spec.devices):
        if d.id in seen:
            problems.append((("devices", i, "id"), f"duplicate device id {d.id!r}"))
        seen.add(d.id)
        if d.site not in sites:
            problems.append((("devices", i, "site"), f"unknown site {d.site!r}"))
        for j, p in enumerate(d.parents):
            if p not in kinds:
                problems.append((("devices", i, "parents", j), f"unknown device {p!r}"))
        if d.controller is not None and kinds.get(d.controller) != "wlc":
            problems.append((("devices", i, "controller"), f"{d.controller!r} is not a wlc device of this lab"))
        if d.controller is not None and d.profile not in ("cisco-wlc", "aruba-wlan"):
            problems.append((("devices", i, "profile"), "an AP behind a controller uses cisco-wlc or aruba-wlan"))
    for i, link in enumerate(spec.links):
        for end in ("a", "b"):
            device = getattr(link, end).device
            if device not in kinds:
                problems.append((("links", i, end, "device"), f"unknown device {device!r}"))
            elif kinds[device] not in ("router", "switch"):
                problems.append(
                    (("links", i, end, "device"), f"a span ends on a router or switch, not a {kinds[device]}")
                )
    if len(spec.devices) > spec.lab.network.num_addresses - 2:
        problems.append(
            (("lab", "network"), f"{len(spec.devices)} devices do not fit in {spec.lab.network} (one address each)")
        )
    return problems


def assign_addresses(spec: LabSpec) -> dict[str, str]:
    """Give devices consecutive addresses from the lab network, skipping its network address."""
    hosts = spec.lab.network.hosts()
    return {d.id: str(next(hosts)) for d in spec.devices}


def load_lab(path: str | Path) -> Lab:
    """Read and check a lab file; raise ConfigError with every problem (file:line: key: message)."""
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigIssue(file, 0, (), f"cannot read lab file: {exc.strerror or exc}")]) from None
    raw, lines, yaml_problems = load_with_lines(text)
    issues = [ConfigIssue(file, p.line, p.path, p.message) for p in yaml_problems]
    if not issues and not isinstance(raw, dict):
        issues.append(ConfigIssue(file, 1, (), "a lab file is a mapping (lab, sites, devices, links)"))
    if issues:
        raise ConfigError(issues)
    try:
        spec = LabSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_issues_from_validation(exc, file, lines)) from None
    problems = _cross_check(spec)
    if problems:
        raise ConfigError([ConfigIssue(file, line_for(lines, p), p, m) for p, m in problems])
    return Lab(path=path, spec=spec, addresses=assign_addresses(spec))


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # repeated lists are written out, never as &id001 anchors a person would trip on


def yaml_text(data: dict[str, Any]) -> str:
    """Return lab or config data as YAML for people: keys in order, short items on one line."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=None, width=160)


def default_lab() -> Path:
    """Return the shipped city lab: the source tree's, else where a package install put it."""
    candidates = (
        Path(__file__).resolve().parents[3] / "config" / "lab" / "city.yaml",
        Path(sys.prefix) / "share" / "netwatch" / "lab" / "city.yaml",
        Path("/usr/share/netwatch/lab/city.yaml"),
    )
    return next((c for c in candidates if c.is_file()), candidates[0])
