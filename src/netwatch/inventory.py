"""The plant as netwatch sees it at run time: sites, devices with merged settings, spans.

Built once per config load from a validated :class:`~netwatch.config.Config`. Settings come in
layers (``defaults`` -> ``defaults.kinds.<kind>`` -> the device); the merged per-check settings
are checked here, because only the merge tells whether, say, an SNMP community is set anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from netwatch.config import DEFAULT_CHECKS, Config
from netwatch.configbase import Strict, layer
from netwatch.model import PortRef, Target
from netwatch.probes import REGISTRY
from netwatch.yamlpos import KeyPath


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """One check of one device, with its merged settings."""

    name: str
    interval: float
    timeout: float
    config: Strict


@dataclass(frozen=True, slots=True)
class Site:
    id: str
    name: str
    kind: str
    lat: float | None
    lon: float | None


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    name: str
    site: str
    kind: str
    address: str
    parents: tuple[str, ...]
    checks: tuple[CheckSpec, ...]
    target: Target


@dataclass(frozen=True, slots=True)
class LinkEnd:
    device: str
    port: str
    site: str


@dataclass(frozen=True, slots=True)
class Link:
    id: str
    name: str
    a: LinkEnd
    b: LinkEnd
    length_km: float | None
    lessee: str | None
    sla: float | None

    def tags(self) -> dict[str, str]:
        """Return the tags of the ``link`` measurement."""
        tags = {"link": self.id, "site_a": self.a.site, "site_b": self.b.site}
        if self.lessee:
            tags["lessee"] = self.lessee
        return tags


@dataclass(frozen=True)
class Inventory:
    sites: Mapping[str, Site]
    devices: Mapping[str, Device]
    links: Mapping[str, Link]

    def device_kind(self, device: str) -> str | None:
        """Return a device's kind (None if the config does not name it)."""
        found = self.devices.get(device)
        return found.kind if found is not None else None

    def poll_interval(self, tags: Mapping[str, str]) -> float | None:
        """Return the shortest check interval of the device ``tags`` name: how often it reports."""
        found = self.devices.get(tags.get("device", ""))
        if found is None or not found.checks:
            return None
        return min(c.interval for c in found.checks)


def build_inventory(cfg: Config) -> tuple[Inventory, list[tuple[KeyPath, str]]]:
    """Merge settings per device and build the runtime inventory; return it with any problems."""
    problems: list[tuple[KeyPath, str]] = []
    sites = {
        s.id: Site(
            s.id,
            s.name,
            s.kind,
            s.location.lat if s.location else None,
            s.location.lon if s.location else None,
        )
        for s in cfg.sites
    }
    site_of = {d.id: d.site for d in cfg.devices}

    # Ports each device must poll: the ones it names, plus every span end on it.
    ports: dict[str, dict[str, PortRef]] = {d.id: {p: PortRef(p) for p in d.ports} for d in cfg.devices}
    links: dict[str, Link] = {}
    for lk in cfg.links:
        links[lk.id] = Link(
            id=lk.id,
            name=lk.name or lk.id,
            a=LinkEnd(lk.a.device, lk.a.port, site_of.get(lk.a.device, "")),
            b=LinkEnd(lk.b.device, lk.b.port, site_of.get(lk.b.device, "")),
            length_km=lk.length_km,
            lessee=lk.lessee,
            sla=lk.sla,
        )
        for end in (lk.a, lk.b):
            ports.setdefault(end.device, {})[end.port] = PortRef(end.port, link=lk.id, lessee=lk.lessee)

    defaults: Any = cfg.defaults
    devices: dict[str, Device] = {}
    for index, dev_cfg in enumerate(cfg.devices):
        dev: Any = dev_cfg
        kind_defaults: Any = defaults.kinds.get(dev.kind)
        layers = [x for x in (kind_defaults, dev) if x is not None]

        def pick(name: str, fallback: Any, layers: list[Any] = layers) -> Any:
            value = fallback
            for lay in layers:
                if getattr(lay, name) is not None:
                    value = getattr(lay, name)
            return value

        check_names: list[str] = pick("checks", list(DEFAULT_CHECKS[dev.kind]))
        interval: float = pick("interval", defaults.interval)
        timeout: float = pick("timeout", defaults.timeout)
        if timeout >= interval:
            problems.append(
                (
                    ("devices", index, "timeout"),
                    f"timeout {timeout:g}s must be shorter than interval {interval:g}s",
                )
            )
        specs: list[CheckSpec] = []
        for name in dict.fromkeys(check_names):  # keep order, drop repeats
            base = REGISTRY[name].settings_from
            if base is None:
                merged = getattr(defaults, name)
                for lay in layers:
                    merged = layer(merged, getattr(lay, name))
            else:
                # Level by level, the base kind's settings and then this kind's over them: a
                # device's snmp.community_file beats defaults.wifi, wifi beats snmp at one level.
                merged = type(getattr(defaults, name))()
                for lay in (defaults, *layers):
                    merged = layer(layer(merged, getattr(lay, base)), getattr(lay, name))
            where = f"defaults.{base}, defaults.{name}" if base else f"defaults.{name}"
            problems.extend(
                (("devices", index, name), f"{dev.id}: {p} (set it in {where} or on the device)")
                for p in getattr(merged, "problems", lambda: [])()
            )
            # A probe's own retries must fit in the check's timeout, or the scheduler's timeout
            # fires first and the probe's diagnosis ("check the community") is lost.
            budget = getattr(merged, "budget_s", lambda: 0.0)()
            if budget >= timeout:
                problems.append(
                    (
                        ("devices", index, name),
                        f"{dev.id}: {name} may take {budget:g}s ({merged.budget_text()}), "
                        f"which does not fit in the check timeout {timeout:g}s",
                    )
                )
            specs.append(CheckSpec(name, interval, timeout, merged))
        target = Target(
            device=dev.id,
            site=dev.site,
            kind=dev.kind,
            address=dev.address,
            ports=tuple(ports.get(dev.id, {}).values()),
        )
        devices[dev.id] = Device(
            id=dev.id,
            name=dev.name or dev.id,
            site=dev.site,
            kind=dev.kind,
            address=dev.address,
            parents=tuple(dev.parents),
            checks=tuple(specs),
            target=target,
        )
    return Inventory(sites=sites, devices=devices, links=links), problems
