"""The running lab: every simulated device of a lab file, and the faults set on them.

:class:`CityLab` builds the simulated devices from a :class:`~netwatch.lab.spec.Lab` and runs
them in one process: SNMP agents (:mod:`.snmplab`), portals and camera snapshots (:mod:`.web`),
camera streams (:mod:`.rtspsim`), door panels (:mod:`.panelsim`) on the lab's own broker
(:mod:`.broker`). Faults are set by name (:class:`FaultRequest`) and cleared by id.

A device is in one of three conditions, worked out again after every fault: *dark* (down itself,
or cut off from the NOC by cut spans, see :mod:`.reach`: it answers nothing at all, ICMP
included where the lab may add blackhole routes), *faulty* (a fault of its own, e.g. a portal
serving an error page), or fine. A fault set on a device that is dark takes effect when the
device comes back, as it would on a real one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import structlog

from netwatch.lab.apmib import Band, ControllerAp, SimRadio
from netwatch.lab.blackhole import Blackholes
from netwatch.lab.broker import BrokerError, MosquittoBroker
from netwatch.lab.challenge import Gate
from netwatch.lab.netconfig import CAMERA_PASSWORD, CAMERA_USER, PORTAL_PATH
from netwatch.lab.panelsim import PanelLab
from netwatch.lab.reach import Plant
from netwatch.lab.rtspsim import RtspLab
from netwatch.lab.simdevice import SimDevice, SimInterface, SimOptics, TrapKind
from netwatch.lab.snmplab import SnmpLab
from netwatch.lab.spec import Lab, LabDevice
from netwatch.lab.web import WebLab

log = structlog.get_logger(__name__)

FaultKind = Literal["cut", "down", "port", "flap", "degrade", "reboot", "trap", "radio", "panel", "camera", "portal"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)

_SNMP_KINDS = frozenset({"router", "switch", "wifi_ap", "wlc"})
_CONTROLLER_PROFILES = frozenset({"cisco-wlc", "aruba-wlan"})


class FaultError(ValueError):
    """A fault request that cannot be applied (unknown target, wrong kind of device ...)."""


@dataclass(frozen=True)
class FaultRequest:
    """What to break: ``kind`` on ``target`` (a span, a device, or ``device:port``), with options.

    ``mode``: the panel (silent, malformed, or an event name), camera (no_video, hang, not_found,
    html_error, truncated, down) or portal (broken, slow, down) fault; ``period_s`` of a flap;
    ``db_per_min`` of a degrade; ``radio`` index. ``trap`` takes a port down and sends linkDown
    (clearing it sends linkUp); ``reboot`` sends coldStart.
    """

    kind: FaultKind
    target: str
    mode: str | None = None
    period_s: float = 10.0
    db_per_min: float = 1.0
    radio: int = 0

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> FaultRequest:
        kind = doc.get("kind")
        if kind not in FAULT_KINDS:
            raise FaultError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
        target = doc.get("target")
        if not isinstance(target, str) or not target:
            raise FaultError("a fault needs a target (a span, a device, or device:port)")
        unknown = set(doc) - {"kind", "target", "mode", "period_s", "db_per_min", "radio"}
        if unknown:
            raise FaultError(f"unknown keys {sorted(unknown)}")
        try:
            return cls(
                kind=kind,
                target=target,
                mode=None if doc.get("mode") is None else str(doc["mode"]),
                period_s=float(doc.get("period_s", 10.0)),
                db_per_min=float(doc.get("db_per_min", 1.0)),
                radio=int(doc.get("radio", 0)),
            )
        except (TypeError, ValueError) as exc:
            raise FaultError(f"bad fault option: {exc}") from None


@dataclass
class Fault:
    """A fault in force (or, for instant ones, done)."""

    id: str
    request: FaultRequest
    started: float
    affects: list[str] = field(default_factory=list)
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    #: Over as soon as it happened (a reboot, a panel event): nothing to clear.
    instant: bool = False

    def to_json(self) -> dict[str, Any]:
        r = self.request
        doc: dict[str, Any] = {"id": self.id, "kind": r.kind, "target": r.target, "started": self.started}
        if r.mode is not None:
            doc["mode"] = r.mode
        if r.kind == "flap":
            doc["period_s"] = r.period_s
        if r.kind == "degrade":
            doc["db_per_min"] = r.db_per_min
        if r.kind == "radio":
            doc["radio"] = r.radio
        doc["affects"] = self.affects
        return doc


def _speed(port: str) -> int:
    return 10_000 if port.startswith(("xe-", "Te", "et-")) else 1000


def _share(seed: str, low: float, high: float) -> float:
    # Stable per name (crc32, not hash(): that is salted per process).
    return low + (high - low) * (zlib.crc32(seed.encode()) % 1000) / 1000


def _radios(d: LabDevice) -> list[SimRadio]:
    bands: list[Band] = ["2.4GHz", "5GHz", "5GHz", "6GHz"]
    channels = {"2.4GHz": (1, 6, 11), "5GHz": (36, 44, 149), "6GHz": (37, 53, 69)}
    radios = []
    for i in range(d.radios):
        band = bands[i]
        share = 0.6 if band == "2.4GHz" else 0.4 / max(1, d.radios - 1)
        chan = channels[band][zlib.crc32(f"{d.id}/{i}".encode()) % 3]
        util = int(_share(f"{d.id}/{i}/util", 10, 60))
        radios.append(SimRadio(i, band, chan, clients=round(d.clients * share), util_pct=util))
    return radios


def _mac(device_id: str) -> str:
    h = zlib.crc32(device_id.encode())
    return "00:3a:7d:" + ":".join(f"{(h >> s) & 0xFF:02x}" for s in (16, 8, 0))


class CityLab:
    """A lab running on loopback: start, set faults, clear them, stop."""

    def __init__(self, lab: Lab, workdir: Path, *, panels: bool = True) -> None:
        self.lab = lab
        self.workdir = workdir
        self._settings = lab.spec.lab
        self._plant = Plant(lab.spec)
        self._devices = {d.id: d for d in lab.spec.devices}
        self._ports: dict[str, list[str]] = {d.id: list(d.ports) for d in lab.spec.devices}
        self._span_ends: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {}
        for link in lab.spec.links:
            self._span_ends[link.id] = ((link.a.device, link.a.port), (link.b.device, link.b.port))
            for end in (link.a, link.b):
                if end.port not in self._ports[end.device]:
                    self._ports[end.device].append(end.port)
        self.snmp = SnmpLab()
        self.sims: dict[str, SimDevice] = {}
        self.web = WebLab(tls_dir=workdir / "tls")
        self.rtsp = RtspLab()
        self.broker: MosquittoBroker | None = None
        self.panels: PanelLab | None = None
        self._want_panels = panels
        self.blackholes = Blackholes(self._settings.network)
        self.faults: dict[str, Fault] = {}
        self._ids = itertools.count(1)
        self.dark: set[str] = set()
        #: What each device's own service fault is, after darkness: to apply only changes.
        self._applied: dict[tuple[str, str], str] = {}
        self._build()

    # -- building -------------------------------------------------------------------------------

    def _build(self) -> None:
        s = self._settings
        joined: dict[str, list[ControllerAp]] = {}
        for d in self._devices.values():
            if d.kind == "wifi_ap" and d.controller is not None:
                joined.setdefault(d.controller, []).append(ControllerAp(d.id, _mac(d.id), _radios(d)))
        camera_http = Gate(CAMERA_USER, CAMERA_PASSWORD)
        camera_rtsp = Gate(CAMERA_USER, CAMERA_PASSWORD, qop=False)
        for d in self._devices.values():
            address = self.lab.addresses[d.id]
            if d.kind in _SNMP_KINDS:
                self.sims[d.id] = self._sim(d, address, joined.get(d.id, []))
            elif d.kind == "camera":
                self.web.add_camera(d.id, address, s.http_port, gate=camera_http)
                self.rtsp.add_camera(d.id, address, s.rtsp_port, gate=camera_rtsp)
            elif d.kind == "portal":
                self.web.add_portal(d.id, address, s.http_port, path=PORTAL_PATH.format(site=d.site))
        for sim in self.sims.values():
            self.snmp.add(sim)

    def _sim(self, d: LabDevice, address: str, joined: list[ControllerAp]) -> SimDevice:
        s = self._settings
        interfaces = []
        spans = {port for ends in self._span_ends.values() for dev, port in ends if dev == d.id}
        for index, port in enumerate(self._ports[d.id], start=1):
            speed = _speed(port)
            load = _share(f"{d.id}/{port}", 0.05, 0.45)
            optics = SimOptics(rx_dbm=round(_share(f"{d.id}/{port}/rx", -9.0, -3.0), 1)) if port in spans else None
            interfaces.append(
                SimInterface(
                    index=index,
                    name=port,
                    speed_mbps=speed,
                    in_bps=speed * 1e6 * load,
                    out_bps=speed * 1e6 * load * 0.6,
                    optics=optics,
                )
            )
        profile = None
        radios: list[SimRadio] = []
        aps: list[ControllerAp] = []
        if d.kind == "wifi_ap" and d.controller is None:
            profile = d.profile
            if d.profile in _CONTROLLER_PROFILES:
                # An AP polled with a controller's MIB answers for itself alone.
                aps = [ControllerAp(d.id, _mac(d.id), _radios(d))]
            else:
                radios = _radios(d)
        elif d.kind == "wlc":
            profile, aps = "cisco-wlc", joined
        return SimDevice(
            d.id,
            d.kind,
            address,
            snmp_port=s.snmp_port,
            community=s.community,
            location=d.site,
            interfaces=interfaces,
            radios=radios,
            ap_profile=profile,
            controller_aps=aps,
        )

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every simulator; without mosquitto the lab runs without door panels (and says so)."""
        stale = self.blackholes.clear_stale()
        if stale:
            log.info("lab_blackholes_cleared", routes=stale)
        if not self.blackholes.available:
            log.warning("lab_icmp_faults_unavailable", why="needs root for blackhole routes; ICMP keeps answering")
        await self.snmp.start()
        await self.web.start()
        await self.rtsp.start()
        panels = [d.id for d in self._devices.values() if d.kind == "access_panel"]
        if self._want_panels and panels:
            broker = MosquittoBroker(self.workdir / "broker", port=self._settings.mqtt_port)
            try:
                await asyncio.to_thread(broker.start)
            except BrokerError as exc:
                log.warning("lab_panels_unavailable", error=str(exc))
            else:
                self.broker = broker
                self.panels = PanelLab("127.0.0.1", broker.port, every=self._settings.heartbeat_every)
                for p in panels:
                    self.panels.add_panel(p)
                await self.panels.start()
        log.info(
            "lab_started",
            devices=len(self._devices),
            snmp_agents=len(self.sims),
            network=str(self._settings.network),
            mqtt=f"127.0.0.1:{self.broker.port}" if self.broker else None,
        )

    async def stop(self) -> None:
        """Stop everything and take the blackhole routes away; safe to call twice."""
        for fault in self.faults.values():
            if fault.task is not None:
                fault.task.cancel()
        tasks = [f.task for f in self.faults.values() if f.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.panels is not None:
            with contextlib.suppress(Exception):
                await self.panels.stop()
        if self.broker is not None:
            await asyncio.to_thread(self.broker.stop)
            self.broker = None
        with contextlib.suppress(Exception):
            await self.rtsp.stop()
        with contextlib.suppress(Exception):
            await self.web.stop()
        with contextlib.suppress(Exception):
            await self.snmp.close()
        self.blackholes.close()

    # -- faults ---------------------------------------------------------------------------------

    async def apply(self, request: FaultRequest) -> Fault:
        """Set a fault; raise FaultError when it cannot be (the lab is unchanged then)."""
        handler = getattr(self, f"_fault_{request.kind}")
        fault = Fault(f"f{next(self._ids)}", request, time.time())
        await handler(fault)
        if not fault.instant:
            self.faults[fault.id] = fault
        await self._settle()
        log.info("lab_fault", **fault.to_json())
        return fault

    async def clear(self, fault_id: str | None = None) -> list[Fault]:
        """Clear one fault by id, or all of them; return what was cleared."""
        if fault_id is None:
            ids = list(self.faults)
        elif fault_id in self.faults:
            ids = [fault_id]
        else:
            raise FaultError(f"no fault {fault_id!r} in force; in force: {', '.join(self.faults) or 'none'}")
        cleared = [self.faults.pop(i) for i in ids]
        for fault in cleared:
            if fault.task is not None:
                fault.task.cancel()
                await asyncio.gather(fault.task, return_exceptions=True)
            r = fault.request
            if r.kind in ("port", "flap", "trap"):
                device, port = self._port(r.target)
                self.sims[device].set_port(port, True)
                if r.kind == "trap" and device not in self.dark:
                    self._send_trap(device, "linkUp", port)
            elif r.kind == "degrade":
                device, port = self._port(r.target)
                self.sims[device].restore_optics(port)
            elif r.kind == "radio":
                self._radio(r.target, r.radio, True)
            log.info("lab_fault_cleared", id=fault.id, kind=r.kind, target=r.target)
        await self._settle()
        return cleared

    async def _fault_cut(self, fault: Fault) -> None:
        if fault.request.target not in self._span_ends:
            raise FaultError(f"unknown span {fault.request.target!r}")
        fault.affects = sorted(self._plant.dark(self._cuts() | {fault.request.target}, self._downs()) - self.dark)

    async def _fault_down(self, fault: Fault) -> None:
        self._need_device(fault.request.target)
        fault.affects = sorted(self._plant.dark(self._cuts(), self._downs() | {fault.request.target}) - self.dark)

    async def _fault_port(self, fault: Fault) -> None:
        device, port = self._port(fault.request.target)
        self.sims[device].set_port(port, False)
        fault.affects = [device]

    async def _fault_flap(self, fault: Fault) -> None:
        device, port = self._port(fault.request.target)
        period = max(0.5, fault.request.period_s)

        async def flap() -> None:
            up = False
            while True:
                self.sims[device].set_port(port, up)
                up = not up
                await asyncio.sleep(period / 2)

        fault.task = asyncio.create_task(flap(), name=f"lab-flap-{fault.id}")
        fault.affects = [device]

    async def _fault_degrade(self, fault: Fault) -> None:
        device, port = self._port(fault.request.target)
        if self.sims[device].interface(port).optics is None:
            raise FaultError(f"{device}:{port} has no optic (only span ports do)")
        self.sims[device].degrade_optics(port, fault.request.db_per_min)
        fault.affects = [device]

    async def _fault_reboot(self, fault: Fault) -> None:
        device = self._need_device(fault.request.target)
        if device not in self.sims:
            raise FaultError(f"{device} has no SNMP agent to reboot")
        self.sims[device].reboot()
        fault.affects, fault.instant = [device], True
        if device not in self.dark:
            self._send_trap(device, "coldStart", None)

    async def _fault_trap(self, fault: Fault) -> None:
        """A port goes down and the device says so at once (linkDown); clearing it sends linkUp."""
        device, port = self._port(fault.request.target)
        self.sims[device].set_port(port, False)
        self._send_trap(device, "linkDown", port)
        fault.affects = [device]

    async def _fault_radio(self, fault: Fault) -> None:
        device = self._need_device(fault.request.target)
        self._radio(device, fault.request.radio, False)
        fault.affects = [device]

    async def _fault_panel(self, fault: Fault) -> None:
        device = self._need_kind(fault.request.target, "access_panel")
        if self.panels is None:
            raise FaultError("the lab runs without door panels (no MQTT broker)")
        mode = fault.request.mode or "silent"
        if mode in ("silent", "malformed"):
            self._applied.pop(("panel", device), None)
        else:
            # An event is an instant: published now, nothing to clear.
            await self.panels.event(device, mode)
            fault.instant = True
        fault.affects = [device]

    async def _fault_camera(self, fault: Fault) -> None:
        device = self._need_kind(fault.request.target, "camera")
        mode = fault.request.mode or "down"
        if mode not in ("no_video", "hang", "not_found", "html_error", "truncated", "down"):
            raise FaultError(f"camera faults: no_video, hang, not_found, html_error, truncated, down; not {mode!r}")
        fault.affects = [device]

    async def _fault_portal(self, fault: Fault) -> None:
        device = self._need_kind(fault.request.target, "portal")
        mode = fault.request.mode or "broken"
        if mode not in ("broken", "slow", "down"):
            raise FaultError(f"portal faults: broken, slow, down; not {mode!r}")
        fault.affects = [device]

    # -- applying the combined state ------------------------------------------------------------

    def _cuts(self, faults: Iterable[Fault] | None = None) -> set[str]:
        return {f.request.target for f in (faults or self.faults.values()) if f.request.kind == "cut"}

    def _downs(self) -> set[str]:
        return {f.request.target for f in self.faults.values() if f.request.kind == "down"}

    async def _settle(self) -> None:
        """Make every simulator match the faults in force: darkness first, then each device's own."""
        dark = self._plant.dark(self._cuts(), self._downs())
        cut = self._cuts()
        for span, ((a, pa), (b, pb)) in self._span_ends.items():
            # A cut span's ends lose the light; a span whose far end is dark sees no carrier either.
            for here, port, there in ((a, pa, b), (b, pb, a)):
                sim = self.sims.get(here)
                if sim is None or self._port_fault(here, port):
                    continue
                down = span in cut or there in dark
                sim.set_port(port, not down, los=span in cut)
        for device_id, sim in self.sims.items():
            sim.silence(device_id in dark)
        for wlc in (s for s in self.sims.values() if s.kind == "wlc"):
            for ap in wlc.controller_aps:
                wlc.set_ap_joined(ap.name, ap.name not in dark)
        self.blackholes.set(self.lab.addresses[d] for d in dark)
        self.dark = dark
        await self._services(dark)

    def _port_fault(self, device: str, port: str) -> bool:
        return any(
            f.request.kind in ("port", "flap", "trap") and f.request.target == f"{device}:{port}"
            for f in self.faults.values()
        )

    async def _services(self, dark: set[str]) -> None:
        own: dict[tuple[str, str], str] = {}
        for f in self.faults.values():
            r = f.request
            if r.kind == "camera":
                own[("camera", r.target)] = r.mode or "down"
            elif r.kind == "portal":
                own[("portal", r.target)] = r.mode or "broken"
            elif r.kind == "panel" and (r.mode or "silent") in ("silent", "malformed"):
                own[("panel", r.target)] = r.mode or "silent"
        for d in self._devices.values():
            kind = {"camera": "camera", "portal": "portal", "access_panel": "panel"}.get(d.kind)
            if kind is None:
                continue
            dead = "silent" if kind == "panel" else "down"
            want = dead if d.id in dark else own.get((kind, d.id), "clear")
            if self._applied.get((kind, d.id), "clear") == want:
                continue
            if kind == "panel":
                if self.panels is not None:
                    await self.panels.fault(d.id, want)  # type: ignore[arg-type]
            elif kind == "portal":
                await self.web.fault(d.id, want)  # type: ignore[arg-type]
            else:
                web_mode = want if want in ("html_error", "truncated", "down", "clear") else "clear"
                rtsp_mode = want if want in ("no_video", "hang", "not_found", "down", "clear") else "clear"
                await self.web.fault(d.id, web_mode)  # type: ignore[arg-type]
                await self.rtsp.fault(d.id, rtsp_mode)  # type: ignore[arg-type]
            self._applied[(kind, d.id)] = want

    # -- helpers --------------------------------------------------------------------------------

    def _send_trap(self, device: str, kind: TrapKind, port: str | None) -> None:
        s = self._settings
        self.snmp.send_trap(self.sims[device], kind, port, target_host="127.0.0.1", target_port=s.trap_port)

    def _radio(self, device: str, index: int, up: bool) -> None:
        d = self._devices[device]
        if d.kind != "wifi_ap":
            raise FaultError(f"{device} is a {d.kind}, not a wifi_ap")
        if d.controller is not None:
            self.sims[d.controller].set_radio(index, up, ap=device)
        elif d.profile in _CONTROLLER_PROFILES:
            self.sims[device].set_radio(index, up, ap=device)
        else:
            self.sims[device].set_radio(index, up)

    def _need_device(self, device: str) -> str:
        if device not in self._devices:
            raise FaultError(f"unknown device {device!r}")
        return device

    def _need_kind(self, device: str, kind: str) -> str:
        d = self._devices.get(device)
        if d is None:
            raise FaultError(f"unknown device {device!r}")
        if d.kind != kind:
            raise FaultError(f"{device} is a {d.kind}, not a {kind}")
        return device

    def _port(self, target: str) -> tuple[str, str]:
        device, sep, port = target.partition(":")
        if not sep or not port:
            raise FaultError(f"name a port as device:port, not {target!r}")
        self._need_device(device)
        if device not in self.sims:
            raise FaultError(f"{device} has no SNMP agent (its ports are not simulated)")
        if port not in self._ports[device]:
            raise FaultError(f"{device} has no port {port!r}; it has {', '.join(self._ports[device])}")
        return device, port

    def status(self) -> dict[str, Any]:
        """What the lab is doing: devices (address, dark), faults in force, simulator counters."""
        return {
            "network": str(self._settings.network),
            "control": self._settings.control,
            "mqtt": f"127.0.0.1:{self.broker.port}" if self.broker else None,
            "icmp_faults": self.blackholes.available,
            "devices": [
                {
                    "id": d.id,
                    "kind": d.kind,
                    "site": d.site,
                    "address": self.lab.addresses[d.id],
                    "dark": d.id in self.dark,
                }
                for d in self._devices.values()
            ],
            "faults": [f.to_json() for f in self.faults.values()],
        }
