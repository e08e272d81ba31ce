"""Simulated SNMP devices: the routers, switches, APs and WiFi controllers of the lab.

A :class:`SimDevice` is what the lab's agent (:mod:`netwatch.lab.snmplab`) answers from and what
the lab's faults act on. Everything is a function of the wall time, computed when a request asks:
counters are the integral of a traffic rate since the counters started, the uptime is the time
since the boot, optical power drifts from the moment a fault started it. Nothing ticks in the
background, so ten thousand idle devices cost nothing but their memory.

Traffic is plausible rather than flat: an interface carries its mean rate times a smooth swell
(two sine waves whose phases come from the device id and ifIndex, so two runs of the same lab
agree and neighbouring ports differ). Counter64 (ifXTable) and Counter32 (ifTable) counters come
from the same total, the 32-bit ones wrapping as real ones do; errors accrue at ``error_rate``
per second; a port that is down carries nothing, so its counters stand still.

Faults (:meth:`SimDevice.silence`, :meth:`~SimDevice.set_port`, :meth:`~SimDevice.degrade_optics`,
:meth:`~SimDevice.reboot`, :meth:`~SimDevice.set_radio` ...) take effect at once; each takes
``at`` (default now) so that tests can replay a history exactly.

The MIB objects are laid out by :mod:`netwatch.lab.snmpagent`'s builders (system group, IF-MIB,
ENTITY-MIB and ENTITY-SENSOR-MIB optics as a Cisco transceiver) and :mod:`netwatch.lab.apmib`
(the WiFi vendors' tables), so the lab answers with the same OIDs as the snmpd-based test agent.
"""

from __future__ import annotations

import dataclasses
import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from netwatch.lab import apmib, ber, snmpagent
from netwatch.lab.apmib import ControllerAp, SimRadio
from netwatch.lab.ber import Oid, VarBind
from netwatch.lab.mibview import Cell, MibView, build_view

__all__ = [
    "ApProfile",
    "ControllerAp",
    "SimDevice",
    "SimInterface",
    "SimOptics",
    "SimRadio",
    "TrapKind",
]

ApProfile = Literal["unifi", "cisco-wlc", "aruba-wlan", "generic"]
TrapKind = Literal["linkDown", "linkUp", "coldStart"]

#: net-snmp's sysObjectID for Linux, what an agent without a vendor identity reports
NET_SNMP_OBJECT_ID: Final = "1.3.6.1.4.1.8072.3.2.10"
#: The weakest light a receiver reports: no light at all.
NO_LIGHT_DBM: Final = -40.0

TRAP_OIDS: Final[dict[str, Oid]] = {
    "coldStart": (1, 3, 6, 1, 6, 3, 1, 1, 5, 1),
    "linkDown": (1, 3, 6, 1, 6, 3, 1, 1, 5, 3),
    "linkUp": (1, 3, 6, 1, 6, 3, 1, 1, 5, 4),
}

#: Table entries of the MIBs served: what follows a column there is a row index (noSuchInstance).
ENTRIES: Final[tuple[Oid, ...]] = (
    snmpagent.IF_ENTRY,
    snmpagent.IFX_ENTRY,
    snmpagent.ENT_PHYSICAL_ENTRY,
    snmpagent.ENT_ALIAS_MAPPING_ID[:-1],
    snmpagent.ENT_SENSOR_ENTRY,
    *apmib.TABLE_ENTRIES,
)

_U32: Final = 1 << 32
#: (relative amplitude, period in seconds) of the swell on top of a mean rate: a slow one over a
#: quarter of an hour and a faster ripple, so polls a minute apart do not read the same rate.
_WAVES: Final = ((0.15, 900.0), (0.05, 67.0))
_TWO_PI: Final = 2.0 * math.pi
_PACKET_BYTES: Final = 800.0
#: Of the packets: unicast, multicast and broadcast shares.
_UCAST, _MCAST, _BCAST = 0.97, 0.02, 0.01
#: sysServices by kind: datalink(2) for switches and APs, + internet(4) for routers and controllers.
_SERVICES: Final = {"router": 6, "switch": 2, "wifi_ap": 2, "wlc": 6}


def _phases(seed: str) -> tuple[float, ...]:
    # crc32, not hash(): Python salts str hashes per process, and two runs must agree.
    h = zlib.crc32(seed.encode())
    return tuple(((h >> (16 * n)) & 0xFFFF) / 0x10000 * _TWO_PI for n in range(len(_WAVES)))


def _angle(t: float, period: float, phase: float) -> float:
    # fmod is exact, so the angle keeps its precision at epoch-sized t (a raw 2*pi*t/period would
    # lose ~1e-8 rad and let a counter step back a few hundred bytes between close requests).
    return _TWO_PI * math.fmod(t, period) / period + phase


def swell(t: float, phases: tuple[float, ...]) -> float:
    """Return the traffic multiplier at wall time ``t`` (between 0.8 and 1.2)."""
    return 1.0 + sum(a * math.sin(_angle(t, p, ph)) for (a, p), ph in zip(_WAVES, phases, strict=True))


def _area(start: float, end: float, phases: tuple[float, ...]) -> float:
    """Return the integral of :func:`swell` from ``start`` to ``end``, in seconds."""
    total = end - start
    for (a, p), ph in zip(_WAVES, phases, strict=True):
        total += a * p / _TWO_PI * (math.cos(_angle(start, p, ph)) - math.cos(_angle(end, p, ph)))
    return total


def default_uptime_s(device_id: str) -> float:
    """A plausible, stable uptime for a device the lab starts: 1 to 60 days, by its id."""
    h = zlib.crc32(device_id.encode())
    return 86_400.0 * (1 + h % 60) + (h >> 8) % 86_400


@dataclass
class SimOptics:
    """A pluggable optic's readings; ``drift_db_per_min`` makes the received power fall from the start."""

    rx_dbm: float = -5.0
    tx_dbm: float = -2.0
    temp_c: float = 35.0
    bias_ma: float = 6.0
    drift_db_per_min: float = 0.0


class _Meter:
    """What an interface carried since its counters started: octets each way and errors.

    Totals up to ``since`` are banked; from ``since`` on (while the port is up) they grow with
    the rate, so the value at any time is one closed-form integral.
    """

    __slots__ = ("banked", "byte_rates", "error_rate", "phases", "since")

    def __init__(self, seed: str, in_bps: float, out_bps: float, error_rate: float, since: float | None) -> None:
        self.phases = (_phases(seed + "/in"), _phases(seed + "/out"))
        self.byte_rates = (in_bps / 8.0, out_bps / 8.0)
        self.error_rate = error_rate
        self.banked = [0.0, 0.0, 0.0]  # in octets, out octets, errors
        self.since = since

    def octets(self, direction: int, t: float) -> float:
        total = self.banked[direction]
        rate = self.byte_rates[direction]
        if self.since is not None and t > self.since and rate > 0:
            total += rate * _area(self.since, t, self.phases[direction])
        return total

    def errors(self, t: float) -> float:
        total = self.banked[2]
        if self.since is not None and t > self.since:
            total += self.error_rate * (t - self.since)
        return total

    def bps(self, direction: int, t: float) -> float:
        if self.since is None:
            return 0.0
        return 8.0 * self.byte_rates[direction] * swell(t, self.phases[direction])

    def bank(self, t: float, running: bool) -> None:
        """Fold everything up to ``t`` into the totals; accrue from ``t`` on only if ``running``."""
        self.banked = [self.octets(0, t), self.octets(1, t), self.errors(t)]
        self.since = t if running else None

    def reset(self, t: float, running: bool) -> None:
        self.banked = [0.0, 0.0, 0.0]
        self.since = t if running else None


def _octets(direction: int, share: float) -> Callable[[_Meter, float], int]:
    return lambda m, t: int(m.octets(direction, t) * share)


def _packets(direction: int, share: float) -> Callable[[_Meter, float], int]:
    return lambda m, t: int(m.octets(direction, t) * share / _PACKET_BYTES)


#: IF-MIB counter (the state format's key) -> its value from the meter; the rest stay 0.
_COUNTERS: Final[dict[str, Callable[[_Meter, float], int]]] = {
    "in_octets": _octets(0, 1.0),
    "out_octets": _octets(1, 1.0),
    "in_ucast_pkts": _packets(0, _UCAST),
    "out_ucast_pkts": _packets(1, _UCAST),
    "in_multicast_pkts": _packets(0, _MCAST),
    "out_multicast_pkts": _packets(1, _MCAST),
    "in_broadcast_pkts": _packets(0, _BCAST),
    "out_broadcast_pkts": _packets(1, _BCAST),
    "in_nucast_pkts": _packets(0, _MCAST + _BCAST),
    "out_nucast_pkts": _packets(1, _MCAST + _BCAST),
    "in_errors": lambda m, t: int(m.errors(t)),
}


@dataclass(eq=False)
class SimInterface:
    """One interface: its identity, mean traffic (bits/s each way), errors/s and optic.

    ``admin``/``oper`` and the rates are the current state; change them through the device's
    fault methods, which keep the counters continuous.
    """

    index: int
    name: str
    speed_mbps: int = 1000
    admin: bool = True
    oper: bool = True
    in_bps: float = 0.0
    out_bps: float = 0.0
    error_rate: float = 0.0
    optics: SimOptics | None = None
    alias: str = ""
    if_type: int = 6  # ethernetCsmacd
    #: wall time the port entered its oper state; None: before the last boot
    last_change: float | None = field(default=None, init=False)
    #: loss of light: the receiver reads nothing (a cut fibre)
    los: bool = field(default=False, init=False)
    _meter: _Meter = field(init=False, repr=False)
    _loss_db: float = field(default=0.0, init=False, repr=False)
    _drift_since: float = field(default=0.0, init=False, repr=False)

    def _attach(self, seed: str, booted_at: float, now: float) -> None:
        self._meter = _Meter(seed, self.in_bps, self.out_bps, self.error_rate, booted_at if self.up else None)
        self._drift_since = now

    @property
    def up(self) -> bool:
        """Whether the port passes traffic (admin and oper up)."""
        return self.admin and self.oper

    def in_bps_at(self, t: float) -> float:
        """The modelled inbound rate at ``t`` (what a poller should measure around then)."""
        return self._meter.bps(0, t)

    def out_bps_at(self, t: float) -> float:
        return self._meter.bps(1, t)

    def octets_at(self, t: float) -> tuple[int, int]:
        """Return (in, out) octets since the counters started (ifHCIn/OutOctets, unwrapped)."""
        return int(self._meter.octets(0, t)), int(self._meter.octets(1, t))

    def errors_at(self, t: float) -> int:
        return int(self._meter.errors(t))

    def rx_dbm_at(self, t: float) -> float | None:
        """The received optical power at ``t`` (None without an optic)."""
        if self.optics is None:
            return None
        if self.los:
            return NO_LIGHT_DBM
        loss = self._loss_db + self.optics.drift_db_per_min * max(0.0, t - self._drift_since) / 60.0
        return max(NO_LIGHT_DBM, self.optics.rx_dbm - loss)

    def _counter(self, key: str, modulo: int) -> _Counter | None:
        compute = _COUNTERS.get(key)
        return None if compute is None else _Counter(compute, self._meter, modulo)


class _Counter:
    """One counter object of one interface, as of a given time (a class, not a closure: a lab holds
    a million of these, and a slotted instance is a fraction of a closure's size)."""

    __slots__ = ("compute", "meter", "modulo")

    def __init__(self, compute: Callable[[_Meter, float], int], meter: _Meter, modulo: int) -> None:
        self.compute = compute
        self.meter = meter
        self.modulo = modulo

    def __call__(self, now: float) -> int:
        return self.compute(self.meter, now) % self.modulo


class SimDevice:
    """A simulated SNMP device: system group, interfaces with optics, and radios or joined APs.

    ``ap_profile`` says which vendor MIB serves WiFi: an AP (``unifi``, ``generic``) serves its
    own ``radios``; a controller (``cisco-wlc``, ``aruba-wlan``) serves its ``controller_aps``.
    ``booted_at`` defaults to a stable 1-60 days before now.
    """

    def __init__(
        self,
        id: str,
        kind: str,
        address: str,
        *,
        snmp_port: int = 16100,
        community: str = "public",
        sys_name: str | None = None,
        sys_descr: str | None = None,
        object_id: str = NET_SNMP_OBJECT_ID,
        location: str = "",
        contact: str = "",
        interfaces: Sequence[SimInterface] = (),
        radios: Sequence[SimRadio] = (),
        ap_profile: ApProfile | None = None,
        controller_aps: Sequence[ControllerAp] = (),
        booted_at: float | None = None,
        now: float | None = None,
    ) -> None:
        now = time.time() if now is None else now
        self.id = id
        self.kind = kind
        self.address = address
        self.snmp_port = snmp_port
        self.community = community
        self.community_bytes = community.encode()
        self.sys_name = sys_name or id
        self.sys_descr = sys_descr or f"netwatch lab {kind} {id}"
        self.object_id = object_id
        self.location = location
        self.contact = contact
        self.interfaces = list(interfaces)
        self.radios = list(radios)
        self.ap_profile = ap_profile
        self.controller_aps = list(controller_aps)
        self.booted_at = now - default_uptime_s(id) if booted_at is None else booted_at
        #: a silent device answers nothing (the lab agent drops its requests)
        self.silent = False
        self._view: MibView | None = None
        self._check()
        for iface in self.interfaces:
            iface._attach(f"{id}/{iface.index}", self.booted_at, now)

    def _check(self) -> None:
        indexes = [i.index for i in self.interfaces]
        names = [i.name for i in self.interfaces]
        if len(set(indexes)) != len(indexes) or any(n <= 0 for n in indexes):
            raise ValueError(f"{self.id}: ifIndex values must be unique and positive: {indexes}")
        if len(set(names)) != len(names):
            raise ValueError(f"{self.id}: interface names must be unique: {names}")
        if len({r.index for r in self.radios}) != len(self.radios):
            raise ValueError(f"{self.id}: radio indexes must be unique")
        if len({a.name for a in self.controller_aps}) != len(self.controller_aps):
            raise ValueError(f"{self.id}: AP names on a controller must be unique")

    def __repr__(self) -> str:
        return f"SimDevice({self.id!r}, {self.kind!r}, {self.address}:{self.snmp_port})"

    # -- what the agent serves -----------------------------------------------------------------

    def view(self) -> MibView:
        """Return the device's MIB view, built on first use and again after a fault changed it."""
        if self._view is None:
            self._view = build_view(self._cells(), ENTRIES)
        return self._view

    def invalidate(self) -> None:
        """Forget the view (after changing the model directly rather than through a fault method)."""
        self._view = None

    def uptime_ticks(self, at: float | None = None) -> int:
        """sysUpTime at ``at`` (hundredths of a second since the boot, wrapping at 2^32)."""
        at = time.time() if at is None else at
        return int(max(0.0, at - self.booted_at) * 100) % _U32

    def interface(self, name: str) -> SimInterface:
        """Return the interface called ``name`` (KeyError naming the known ones if none is)."""
        for iface in self.interfaces:
            if iface.name == name:
                return iface
        raise KeyError(f"{self.id} has no interface {name!r} (has: {', '.join(i.name for i in self.interfaces)})")

    def controller_ap(self, name: str) -> ControllerAp:
        for ap in self.controller_aps:
            if ap.name == name:
                return ap
        raise KeyError(f"{self.id} serves no AP {name!r}")

    def radio(self, index: int, ap: str | None = None) -> SimRadio:
        """Return radio ``index`` of this AP, or of the AP called ``ap`` on this controller."""
        radios = self.controller_ap(ap).radios if ap is not None else self.radios
        for radio in radios:
            if radio.index == index:
                return radio
        raise KeyError(f"{self.id}{'/' + ap if ap else ''} has no radio {index}")

    # -- faults ------------------------------------------------------------------------------

    def silence(self, on: bool = True) -> None:
        """Stop (or resume) answering SNMP: requests are dropped, as on a device nobody reaches."""
        self.silent = on

    def set_port(self, name: str, oper: bool, *, los: bool = False, at: float | None = None) -> bool:
        """Take a port oper down (or up); ``los``: its optic also loses the light (a cut fibre).

        ifLastChange moves to now when the state changes; counters stop while it is down.
        Returns whether the oper state changed.
        """
        at = time.time() if at is None else at
        iface = self.interface(name)
        iface.los = los and not oper
        changed = iface.oper != oper
        if changed:
            iface.oper = oper
            iface.last_change = at
            iface._meter.bank(at, iface.up)
        self._view = None
        return changed

    def set_traffic(
        self,
        name: str,
        *,
        in_bps: float | None = None,
        out_bps: float | None = None,
        error_rate: float | None = None,
        at: float | None = None,
    ) -> None:
        """Change a port's mean rates from ``at`` on; the counters carry on from where they are."""
        at = time.time() if at is None else at
        iface = self.interface(name)
        meter = iface._meter
        meter.bank(at, iface.up)
        iface.in_bps = iface.in_bps if in_bps is None else in_bps
        iface.out_bps = iface.out_bps if out_bps is None else out_bps
        iface.error_rate = iface.error_rate if error_rate is None else error_rate
        meter.byte_rates = (iface.in_bps / 8.0, iface.out_bps / 8.0)
        meter.error_rate = iface.error_rate

    def degrade_optics(self, name: str, db_per_min: float, at: float | None = None) -> None:
        """Make a port's received power fall ``db_per_min`` from ``at`` on (down to no light)."""
        at = time.time() if at is None else at
        iface = self.interface(name)
        optics = iface.optics
        if optics is None:
            raise KeyError(f"{self.id}: {name} has no optic")
        # Bank the loss so far; beyond losing all the light there is nothing more to lose.
        loss = iface._loss_db + optics.drift_db_per_min * max(0.0, at - iface._drift_since) / 60.0
        iface._loss_db = min(loss, optics.rx_dbm - NO_LIGHT_DBM)
        iface._drift_since = at
        optics.drift_db_per_min = db_per_min

    def restore_optics(self, name: str, at: float | None = None) -> None:
        """Put a port's received power back where the optic started, and stop any drift."""
        iface = self.interface(name)
        if iface.optics is None:
            raise KeyError(f"{self.id}: {name} has no optic")
        iface._loss_db = 0.0
        iface._drift_since = time.time() if at is None else at
        iface.optics.drift_db_per_min = 0.0

    def reboot(self, at: float | None = None) -> None:
        """Reload: sysUpTime and every counter restart from zero at ``at``.

        As on a real device, ifCounterDiscontinuityTime stays 0 (no discontinuity since the agent
        started) and ifLastChange is 0 for ports whose state dates from before the boot. Ports keep
        their state (a cut fibre is still cut after a reload), as do optics and radios.
        """
        at = time.time() if at is None else at
        self.booted_at = at
        for iface in self.interfaces:
            iface.last_change = None
            iface._meter.reset(at, iface.up)
        self._view = None

    def set_radio(self, index: int, up: bool, *, ap: str | None = None) -> None:
        """Take a radio down or up (of the AP called ``ap`` when this is a controller); down serves no one."""
        self.radio(index, ap).up = up
        self._view = None

    def set_ap_joined(self, name: str, joined: bool) -> None:
        """Make an AP leave (or rejoin) this controller: it drops out of the controller's AP table."""
        self.controller_ap(name).joined = joined
        self._view = None

    def trap(
        self, kind: TrapKind, port_name: str | None = None, at: float | None = None
    ) -> tuple[int, Oid, list[VarBind]]:
        """Return (sysUpTime, snmpTrapOID, varbinds) of a trap this device sends now.

        linkDown/linkUp carry ifIndex, ifAdminStatus, ifOperStatus (down or up, as the trap says)
        and ifName of ``port_name``, as IF-MIB's notifications do (plus ifName, as Cisco adds).
        """
        if kind not in TRAP_OIDS:
            raise ValueError(f"unknown trap {kind!r} (known: {', '.join(TRAP_OIDS)})")
        varbinds: list[VarBind] = []
        if kind in ("linkDown", "linkUp"):
            if port_name is None:
                raise ValueError(f"a {kind} trap names a port")
            iface = self.interface(port_name)
            i = iface.index
            varbinds = [
                ((*snmpagent.IF_ENTRY, 1, i), (ber.INTEGER, i)),
                ((*snmpagent.IF_ENTRY, 7, i), (ber.INTEGER, 1 if iface.admin else 2)),
                ((*snmpagent.IF_ENTRY, 8, i), (ber.INTEGER, 2 if kind == "linkDown" else 1)),
                ((*snmpagent.IFX_ENTRY, 1, i), (ber.OCTET_STRING, iface.name.encode())),
            ]
        return self.uptime_ticks(at), TRAP_OIDS[kind], varbinds

    # -- the MIB -----------------------------------------------------------------------------

    def _cells(self) -> dict[Oid, Cell]:
        cells: dict[Oid, Cell] = {}
        system = {
            "descr": self.sys_descr,
            "object_id": self.object_id,
            "name": self.sys_name,
            "location": self.location,
            "contact": self.contact,
            "services": _SERVICES.get(self.kind, 72),
        }
        snmpagent.system_cells(system, self.uptime_ticks, cells)
        rows = [self._row(i) for i in self.interfaces]
        oids: apmib.Oids = {}
        if self.ap_profile == "generic":
            first = max((i.index for i in self.interfaces), default=0) + 1
            radio_rows, oids = apmib.generic(_serving(self.radios), first)
            rows += radio_rows
        elif self.ap_profile == "unifi":
            oids = apmib.unifi(_serving(self.radios))
        elif self.ap_profile in ("cisco-wlc", "aruba-wlan"):
            aps = [dataclasses.replace(ap, radios=_serving(ap.radios)) for ap in self.controller_aps]
            oids = apmib.cisco_wlc(aps) if self.ap_profile == "cisco-wlc" else apmib.aruba(aps)
        by_index = {i.index: i for i in self.interfaces}
        snmpagent.interface_cells(rows, lambda row, key, modulo: _counter(by_index, row, key, modulo), cells)
        self._optics_cells(cells)
        snmpagent.extra_cells(oids, lambda base, _per_s, modulo: base % modulo, cells)
        return cells

    def _row(self, iface: SimInterface) -> dict[str, Any]:
        since_boot = 0.0
        if iface.last_change is not None and iface.last_change >= self.booted_at:
            since_boot = iface.last_change - self.booted_at
        return {
            "index": iface.index,
            "name": iface.name,
            "descr": iface.name,
            "type": iface.if_type,
            "mtu": 1500,
            "speed_mbps": iface.speed_mbps,
            "admin": 1 if iface.admin else 2,
            "oper": 1 if iface.up else 2,
            "last_change_s": since_boot,
            "alias": iface.alias,
            "hc": True,
            "discontinuity_s": 0,
        }

    def _optics_cells(self, cells: dict[Oid, Cell]) -> None:
        entities: list[dict[str, Any]] = [
            {"index": 1, "class": 3, "name": "chassis", "descr": self.sys_descr, "contained_in": 0, "rel_pos": -1}
        ]
        sensors: list[dict[str, Any]] = []
        rx_sensors: list[tuple[int, SimInterface]] = []
        for n, iface in enumerate(i for i in self.interfaces if i.optics is not None):
            optics = iface.optics
            assert optics is not None
            port_entity = 1000 + 10 * n
            ents, sens = snmpagent.transceiver(
                port_entity,
                iface.index,
                iface.name,
                rx_dbm=optics.rx_dbm,
                tx_dbm=optics.tx_dbm,
                temp_c=optics.temp_c,
                bias_ma=optics.bias_ma,
            )
            entities += ents
            sensors += sens
            rx_sensors.append((port_entity + 5, iface))  # transceiver(): the port entity + 5 is Rx
        snmpagent.entity_cells(entities, sensors, cells)
        for index, iface in rx_sensors:
            # Received power is read at request time: it drifts, and falls to nothing on a cut.
            cells[(*snmpagent.ENT_SENSOR_ENTRY, 4, index)] = ("integer", _rx_tenths(iface))


def _rx_tenths(iface: SimInterface) -> Callable[[float], int]:
    return lambda now: round((iface.rx_dbm_at(now) or NO_LIGHT_DBM) * 10)


def _counter(by_index: dict[int, SimInterface], row: dict[str, Any], key: str, modulo: int) -> int | _Counter:
    iface = by_index.get(row["index"])
    counter = iface._counter(key, modulo) if iface is not None else None
    # None: a counter the model does not drive (discards, unknown protocols), or a radio's
    return 0 if counter is None else counter


def _serving(radios: Sequence[SimRadio]) -> list[SimRadio]:
    """What radios report: one that is down has no clients and no load."""
    return [r if r.up else dataclasses.replace(r, clients=0, util_pct=0) for r in radios]
