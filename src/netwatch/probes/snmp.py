"""SNMP polling (pysnmp 7 asyncio): uptime, IF-MIB interfaces, ENTITY-SENSOR-MIB optics."""

from __future__ import annotations

import asyncio
import math
import re
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import structlog
from pyasn1.type import univ
from pydantic import Field
from pysnmp.proto import rfc1902

from netwatch.configbase import Duration
from netwatch.model import FieldValue, Outcome, PortRef, Sample, Target, now_ns
from netwatch.probes.base import Probe, ProbeResources
from netwatch.probes.counters import (
    Reading,
    max_octets_per_s,
    max_packets_per_s,
    rate,
    rate_interval,
    uptime_reset,
)
from netwatch.probes.snmpclient import (
    Oid,
    SnmpAccess,
    SnmpClient,
    SnmpFailure,
    as_int,
    as_text,
    fmt,
    missing,
)


class SnmpConfig(SnmpAccess):
    """How to poll a device's interfaces and optics (access settings: :class:`SnmpAccess`)."""

    optics: bool = Field(default=True, description="read optical power from ENTITY-SENSOR-MIB")
    rediscover: Duration = Field(default=3600.0, description="re-read port and sensor indexes this often")


log = structlog.get_logger(__name__)


# -- OIDs (numeric: no IETF MIBs are installed, and resolving names costs CPU every poll) -----

SYS_UPTIME: Final[Oid] = (1, 3, 6, 1, 2, 1, 1, 3, 0)
_IF: Final[Oid] = (1, 3, 6, 1, 2, 1, 2, 2, 1)
_IFX: Final[Oid] = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
IF_INDEX: Final[Oid] = (*_IF, 1)
IF_DESCR: Final[Oid] = (*_IF, 2)
IF_SPEED: Final[Oid] = (*_IF, 5)
IF_ADMIN_STATUS: Final[Oid] = (*_IF, 7)
IF_OPER_STATUS: Final[Oid] = (*_IF, 8)
IF_IN_OCTETS: Final[Oid] = (*_IF, 10)
IF_IN_DISCARDS: Final[Oid] = (*_IF, 13)
IF_IN_ERRORS: Final[Oid] = (*_IF, 14)
IF_OUT_OCTETS: Final[Oid] = (*_IF, 16)
IF_OUT_DISCARDS: Final[Oid] = (*_IF, 19)
IF_OUT_ERRORS: Final[Oid] = (*_IF, 20)
IF_NAME: Final[Oid] = (*_IFX, 1)
IF_HC_IN_OCTETS: Final[Oid] = (*_IFX, 6)
IF_HC_OUT_OCTETS: Final[Oid] = (*_IFX, 10)
IF_HIGH_SPEED: Final[Oid] = (*_IFX, 15)
IF_COUNTER_DISCONTINUITY_TIME: Final[Oid] = (*_IFX, 19)
_ENT_PHYSICAL: Final[Oid] = (1, 3, 6, 1, 2, 1, 47, 1, 1, 1, 1)
ENT_PHYSICAL_DESCR: Final[Oid] = (*_ENT_PHYSICAL, 2)
ENT_PHYSICAL_CONTAINED_IN: Final[Oid] = (*_ENT_PHYSICAL, 4)
ENT_PHYSICAL_NAME: Final[Oid] = (*_ENT_PHYSICAL, 7)
ENT_ALIAS_MAPPING_IDENTIFIER: Final[Oid] = (1, 3, 6, 1, 2, 1, 47, 1, 3, 2, 1, 2)
_ENT_SENSOR: Final[Oid] = (1, 3, 6, 1, 2, 1, 99, 1, 1, 1)
ENT_SENSOR_TYPE: Final[Oid] = (*_ENT_SENSOR, 1)
ENT_SENSOR_SCALE: Final[Oid] = (*_ENT_SENSOR, 2)
ENT_SENSOR_PRECISION: Final[Oid] = (*_ENT_SENSOR, 3)
ENT_SENSOR_VALUE: Final[Oid] = (*_ENT_SENSOR, 4)
ENT_SENSOR_OPER_STATUS: Final[Oid] = (*_ENT_SENSOR, 5)

#: EntitySensorDataType values this probe reads.
SENSOR_AMPERES: Final = 5
SENSOR_WATTS: Final = 6
SENSOR_CELSIUS: Final = 8
SENSOR_DBM: Final = 14
#: EntitySensorDataScale: units(9) is 10^0, each step is a factor of 1000 (milli(8), micro(7) ...).
SCALE_UNITS: Final = 9
SENSOR_OK: Final = 1
IF_STATUS_UP: Final = 1

_RX = re.compile(r"\brx\b|receive", re.IGNORECASE)
_TX = re.compile(r"\btx\b|transmit", re.IGNORECASE)
#: A port whose ifIndex stopped answering triggers discovery, but not more often than this.
VANISHED_RETRY_S: Final = 60.0


@dataclass(slots=True)
class _Port:
    """A configured port found on the device, and what its agent turned out to support."""

    ref: PortRef
    if_index: int
    hc: bool = True  # ifHCIn/OutOctets answer; else the 32-bit ifIn/OutOctets
    high_speed: bool = True  # ifHighSpeed answers; else ifSpeed
    discontinuity: bool = True  # ifCounterDiscontinuityTime answers

    def oids(self) -> dict[str, Oid]:
        i = self.if_index
        oids = {
            "admin": (*IF_ADMIN_STATUS, i),
            "oper": (*IF_OPER_STATUS, i),
            "speed": (*IF_HIGH_SPEED, i) if self.high_speed else (*IF_SPEED, i),
            "in_octets": (*IF_HC_IN_OCTETS, i) if self.hc else (*IF_IN_OCTETS, i),
            "out_octets": (*IF_HC_OUT_OCTETS, i) if self.hc else (*IF_OUT_OCTETS, i),
            "in_errors": (*IF_IN_ERRORS, i),
            "out_errors": (*IF_OUT_ERRORS, i),
            "in_discards": (*IF_IN_DISCARDS, i),
            "out_discards": (*IF_OUT_DISCARDS, i),
        }
        if self.discontinuity:
            oids["discontinuity"] = (*IF_COUNTER_DISCONTINUITY_TIME, i)
        return oids


@dataclass(frozen=True, slots=True)
class Sensor:
    """An ENTITY-SENSOR-MIB sensor that belongs to a polled port."""

    index: int
    port: str
    field: Literal["rx_dbm", "tx_dbm", "temp_c", "bias_ma"]
    kind: int
    #: raw value x factor = the reading in the field's unit (watts sensors: W before the dB step)
    factor: float


@dataclass(slots=True)
class _PortHistory:
    """The previous poll's counters of one port, the base of the next poll's rates."""

    readings: dict[str, Reading] = field(default_factory=dict)
    discontinuity: int | None = None


def sensor_factor(kind: int, scale: int, precision: int) -> float:
    """Return what multiplies a raw sensor value into netwatch's unit for that sensor type.

    ENTITY-SENSOR-MIB: value x 10^-precision x 10^(3 x (scale - 9)) is in the type's base unit
    (amperes, celsius, dBm, watts); bias current is written in milliamperes.
    """
    factor = 10.0 ** (3 * (scale - SCALE_UNITS) - precision)
    return factor * 1000.0 if kind == SENSOR_AMPERES else factor


def sensor_field(kind: int, name: str, descr: str) -> Literal["rx_dbm", "tx_dbm", "temp_c", "bias_ma"] | None:
    """Return the optics field a sensor feeds, from its type and (for power) its name.

    Optical power (dBm, or watts converted to dBm) needs Rx/Receive or Tx/Transmit in the
    entPhysicalName, else in the entPhysicalDescr; power sensors that say neither are skipped.
    """
    if kind == SENSOR_CELSIUS:
        return "temp_c"
    if kind == SENSOR_AMPERES:
        return "bias_ma"
    if kind in (SENSOR_DBM, SENSOR_WATTS):
        for text in (name, descr):
            rx, tx = bool(_RX.search(text)), bool(_TX.search(text))
            if rx != tx:
                return "rx_dbm" if rx else "tx_dbm"
    return None


def map_sensors(
    ports: dict[int, str],
    sensor_types: dict[int, tuple[int, int, int]],
    names: dict[int, str],
    descrs: dict[int, str],
    contained_in: dict[int, int],
    aliases: dict[int, int],
) -> list[Sensor]:
    """Attach each usable sensor to the port above it in the ENTITY-MIB containment tree.

    ``ports``: ifIndex -> port name; ``sensor_types``: entPhysicalIndex -> (type, scale,
    precision); ``aliases``: entPhysicalIndex -> ifIndex (entAliasMappingIdentifier). From each
    sensor, walk up entPhysicalContainedIn until an entity maps to a polled ifIndex.
    """
    sensors: list[Sensor] = []
    for index, (kind, scale, precision) in sorted(sensor_types.items()):
        which = sensor_field(kind, names.get(index, ""), descrs.get(index, ""))
        if which is None:
            continue
        entity, seen = index, set[int]()
        port: str | None = None
        while entity and entity not in seen and len(seen) < 32:
            seen.add(entity)
            if_index = aliases.get(entity)
            if if_index is not None:
                port = ports.get(if_index)
                break
            entity = contained_in.get(entity, 0)
        if port is not None:
            sensors.append(Sensor(index, port, which, kind, sensor_factor(kind, scale, precision)))
    return sensors


def sensor_value(sensor: Sensor, raw: int) -> float | None:
    """Return a sensor's reading in its field's unit (None for a non-positive watts reading)."""
    value = raw * sensor.factor
    if sensor.kind == SENSOR_WATTS:
        return 10.0 * math.log10(value * 1000.0) if value > 0 else None
    return round(value, 6)


def _integer(values: dict[Oid, Any], oid: Oid, what: str) -> int | None:
    """Return the integer value at ``oid``; None if the agent has no such object or instance.

    Any other type where the MIB says integer is an agent we cannot read: a protocol failure.
    """
    value = values.get(oid)
    if missing(value):
        return None
    number = as_int(value)
    if number is None:
        raise SnmpFailure("protocol", f"{what} ({fmt(oid)}) is {type(value).__name__}, not an integer")
    return number


def _width(value: Any) -> Literal[32, 64]:
    return 64 if isinstance(value, rfc1902.Counter64) else 32


class SnmpProbe(SnmpClient):
    """Poll one device: sysUpTime, the target's ports (IF-MIB) and their optics (ENTITY-SENSOR-MIB).

    Port and sensor indexes are discovered on the first poll, every ``rediscover`` seconds, and
    again when the device rebooted or a port's index stopped answering. Counter rates start on
    the second poll; see :mod:`netwatch.probes.counters` for when a rate is left out.
    """

    _cfg: SnmpConfig

    def __init__(self, target: Target, cfg: SnmpConfig, resources: ProbeResources) -> None:
        super().__init__(target.address, cfg, resources)
        self._target = target
        self._system_tags = target.base_tags()
        self._port_tags: dict[str, dict[str, str]] = {}
        self._optics_tags: dict[str, dict[str, str]] = {}
        for ref in target.ports:
            tags = {"device": target.device, "site": target.site, "port": ref.name}
            if ref.link:
                tags["link"] = ref.link
            self._optics_tags[ref.name] = dict(tags)
            if ref.lessee:
                tags["lessee"] = ref.lessee
            self._port_tags[ref.name] = tags
        # Discovery results
        self._ports: dict[str, _Port] = {}
        self._sensors: list[Sensor] = []
        self._missing: tuple[str, ...] = ()
        self._discovered_at: float | None = None
        self._discovery: asyncio.Task[None] | None = None
        # The previous poll, the base for rates
        self._prev_uptime: int | None = None
        self._prev_at: float | None = None
        self._history: dict[str, _PortHistory] = {}

    def port_named(self, if_index: int) -> str | None:
        """Return the configured port that had this ifIndex at the last discovery (traps name ports by index)."""
        return next((name for name, port in self._ports.items() if port.if_index == if_index), None)

    # -- the contract ----------------------------------------------------------------------

    async def check(self) -> Outcome:
        """Poll the device once; SNMP failures come back as an Outcome with a reason."""
        try:
            return await self._poll()
        except SnmpFailure as failure:
            return Outcome(up=False, reason=failure.reason, detail=failure.detail)

    # -- one poll --------------------------------------------------------------------------

    async def _poll(self) -> Outcome:
        discovered = False
        if self._discovered_at is None or time.monotonic() - self._discovered_at >= self._cfg.rediscover:
            await self._discover_shielded()
            discovered = True
        values, at, ts = await self._read()
        uptime = self._uptime(values)
        rebooted = False
        if self._prev_uptime is not None and self._prev_at is not None:
            rebooted = uptime_reset(self._prev_uptime, uptime, at - self._prev_at)
        vanished = self._vanished(values) and time.monotonic() - (self._discovered_at or 0) >= VANISHED_RETRY_S
        if (rebooted or vanished) and not discovered:
            # After a reboot or a line-card swap, ifIndex values may have moved: look again.
            await self._discover_shielded()
            values, at, ts = await self._read()
            uptime = self._uptime(values)
        if rebooted:
            self._history.clear()
        samples = [Sample("system", self._system_tags, {"uptime_s": uptime // 100, "rebooted": int(rebooted)}, ts)]
        elapsed = None
        if self._prev_at is not None and self._prev_uptime is not None and not rebooted:
            elapsed = rate_interval(self._prev_uptime, uptime, at - self._prev_at)
        ports_up: dict[str, bool] = {}
        for name, port in self._ports.items():
            sample = self._interface_sample(port, values, elapsed, ts)
            if sample is not None:
                samples.append(sample)
                ports_up[name] = bool(sample.fields["oper_up"])
        samples.extend(self._optics_samples(values, ts))
        self._prev_uptime, self._prev_at = uptime, at
        detail = ""
        if self._missing:
            missing = ", ".join(self._missing)
            detail = f"configured port(s) not found on the device (by ifName or ifDescr): {missing}"
        return Outcome(up=True, reason="ok", detail=detail, samples=tuple(samples), ports_up=ports_up)

    def _uptime(self, values: dict[Oid, Any]) -> int:
        ticks = _integer(values, SYS_UPTIME, "sysUpTime.0")
        if ticks is None:
            raise SnmpFailure("protocol", "the agent has no sysUpTime.0")
        return ticks

    def _vanished(self, values: dict[Oid, Any]) -> bool:
        """Tell whether a discovered port's ifIndex stopped answering ifOperStatus."""
        return any(missing(values.get((*IF_OPER_STATUS, p.if_index))) for p in self._ports.values())

    async def _read(self) -> tuple[dict[Oid, Any], float, int]:
        """GET sysUpTime and every polled port and sensor OID; return values, monotonic and wall time.

        A port whose ifHC* or ifHighSpeed does not exist (noSuchObject/noSuchInstance) switches
        to the 32-bit counters or ifSpeed for good (until the next discovery), fetched at once.
        """
        oids: list[Oid] = [SYS_UPTIME]
        for port in self._ports.values():
            oids.extend(port.oids().values())
        for sensor in self._sensors:
            oids.append((*ENT_SENSOR_VALUE, sensor.index))
            oids.append((*ENT_SENSOR_OPER_STATUS, sensor.index))
        values = await self._get(oids)
        fallback: list[Oid] = []
        for port in self._ports.values():
            i = port.if_index
            if missing(values.get((*IF_OPER_STATUS, i))):
                continue  # the port itself is gone; discovery will sort it out
            if port.hc and missing(values.get((*IF_HC_IN_OCTETS, i))):
                port.hc = False
                fallback += [(*IF_IN_OCTETS, i), (*IF_OUT_OCTETS, i)]
            if port.high_speed and missing(values.get((*IF_HIGH_SPEED, i))):
                port.high_speed = False
                fallback.append((*IF_SPEED, i))
            if port.discontinuity and missing(values.get((*IF_COUNTER_DISCONTINUITY_TIME, i))):
                port.discontinuity = False
        if fallback:
            values.update(await self._get(fallback))
        return values, time.monotonic(), now_ns()

    # -- samples ---------------------------------------------------------------------------

    def _interface_sample(self, port: _Port, values: dict[Oid, Any], elapsed: float | None, ts: int) -> Sample | None:
        oids = port.oids()
        name = port.ref.name
        oper = _integer(values, oids["oper"], "ifOperStatus")
        admin = _integer(values, oids["admin"], "ifAdminStatus")
        if oper is None or admin is None:
            return None
        raw_speed = _integer(values, oids["speed"], "ifSpeed") or 0
        speed_bps = raw_speed * 1_000_000 if port.high_speed else raw_speed
        fields: dict[str, FieldValue] = {
            "oper_up": int(oper == IF_STATUS_UP),
            "admin_up": int(admin == IF_STATUS_UP),
            "speed_bps": speed_bps,
        }
        current: dict[str, Reading] = {}
        for key in ("in_octets", "out_octets", "in_errors", "out_errors", "in_discards", "out_discards"):
            number = _integer(values, oids[key], key)
            if number is not None:
                current[key] = Reading(number, _width(values[oids[key]]))
        history = self._history.setdefault(name, _PortHistory())
        discontinuity = (
            _integer(values, oids["discontinuity"], "ifCounterDiscontinuityTime") if "discontinuity" in oids else None
        )
        comparable = (
            elapsed is not None
            and history.readings
            and (history.discontinuity is None or discontinuity is None or discontinuity == history.discontinuity)
        )
        if comparable and elapsed is not None:
            octets, packets = max_octets_per_s(speed_bps), max_packets_per_s(speed_bps)
            for key, out, per_octet in (
                ("in_octets", "in_bps", True),
                ("out_octets", "out_bps", True),
                ("in_errors", "in_errors_ps", False),
                ("out_errors", "out_errors_ps", False),
                ("in_discards", "in_discards_ps", False),
                ("out_discards", "out_discards_ps", False),
            ):
                if key not in current:
                    continue
                per_s = rate(
                    history.readings.get(key),
                    current[key],
                    elapsed,
                    max_per_s=octets if per_octet else packets,
                    wrap_guard=per_octet,
                )
                if per_s is None:
                    continue
                if per_octet:
                    bps = per_s * 8.0
                    fields[out] = bps
                    if speed_bps > 0:
                        fields[out.replace("_bps", "_util_pct")] = 100.0 * bps / speed_bps
                else:
                    fields[out] = float(per_s)
        history.readings = current
        history.discontinuity = discontinuity
        return Sample("interface", self._port_tags[name], fields, ts)

    def _optics_samples(self, values: dict[Oid, Any], ts: int) -> list[Sample]:
        """One optics sample per port with sensors; lanes of one field keep the worst reading."""
        per_port: dict[str, dict[str, float]] = {}
        for sensor in self._sensors:
            status = _integer(values, (*ENT_SENSOR_OPER_STATUS, sensor.index), "entPhySensorOperStatus")
            raw = _integer(values, (*ENT_SENSOR_VALUE, sensor.index), "entPhySensorValue")
            if raw is None or status != SENSOR_OK:
                continue
            reading = sensor_value(sensor, raw)
            if reading is None:
                continue
            fields = per_port.setdefault(sensor.port, {})
            prior = fields.get(sensor.field)
            if prior is not None:
                # Multi-lane optics: the weakest lane's power, the hottest/highest bias.
                worse = min if sensor.field in ("rx_dbm", "tx_dbm") else max
                reading = worse(prior, reading)
            fields[sensor.field] = reading
        return [
            Sample("optics", self._optics_tags[port], dict(fields), ts) for port, fields in per_port.items() if fields
        ]

    # -- discovery -------------------------------------------------------------------------

    async def _discover_shielded(self) -> None:
        """Discover in a task of its own that outlives the check's timeout.

        Walking a big chassis (thousands of ENTITY-MIB rows) over a slow link can take longer
        than one check may; if the check's timeout threw the walk away, such a device would never
        be polled. The walk goes on in the background and the next check picks it up (or its
        result). It is cancelled when the daemon closes its SNMP resources.
        """
        task = self._discovery
        if task is None or task.done():
            task = asyncio.create_task(self._discover(), name=f"snmp-discovery/{self._target.device}")
            task.add_done_callback(_retrieve)
            self._discovery = task
            tasks: weakref.WeakSet[asyncio.Task[None]] | None = self._resources.shared.get("snmp_discovery")
            if tasks is None:
                tasks = weakref.WeakSet()
                self._resources.shared["snmp_discovery"] = tasks
                self._resources.closers.append(lambda: [t.cancel() for t in list(tasks)])
            tasks.add(task)
        await asyncio.shield(task)

    async def _discover(self) -> None:
        """Find the ifIndex of each configured port, and the optics sensors that belong to them.

        Nothing changes unless discovery completes: a timeout half-way keeps the previous map
        and the next poll tries again.
        """
        wanted = [ref.name for ref in self._target.ports]
        found: dict[str, int] = {}
        if wanted:
            (names,) = await self._walk([IF_NAME])
            by_name = _index_by_text(names)
            found = {n: by_name[n] for n in wanted if n in by_name}
            if len(found) < len(wanted):
                (descrs,) = await self._walk([IF_DESCR])
                by_descr = _index_by_text(descrs)
                found |= {n: by_descr[n] for n in wanted if n not in found and n in by_descr}
        refs = {ref.name: ref for ref in self._target.ports}
        ports: dict[str, _Port] = {}
        for name, if_index in sorted(found.items(), key=lambda item: wanted.index(item[0])):
            known = self._ports.get(name)
            # Same ifIndex: keep what we learned (32-bit only, no ifHighSpeed) to save a round trip.
            ports[name] = known if known and known.if_index == if_index else _Port(refs[name], if_index)
        sensors = await self._discover_sensors(ports) if self._cfg.optics and ports else []

        for name, port in self._ports.items():
            if name not in ports or ports[name].if_index != port.if_index:
                self._history.pop(name, None)  # another ifIndex is another set of counters
        missing = tuple(n for n in wanted if n not in found)
        if missing and missing != self._missing:
            log.warning(
                "snmp_ports_missing",
                device=self._target.device,
                ports=list(missing),
                looked_up="ifName, ifDescr",
            )
        elif self._missing and not missing:
            log.info("snmp_ports_found", device=self._target.device, ports=list(self._missing))
        self._ports, self._sensors, self._missing = ports, sensors, missing
        self._discovered_at = time.monotonic()

    async def _discover_sensors(self, ports: dict[str, _Port]) -> list[Sensor]:
        types, scales, precisions = await self._walk([ENT_SENSOR_TYPE, ENT_SENSOR_SCALE, ENT_SENSOR_PRECISION])
        sensor_types: dict[int, tuple[int, int, int]] = {}
        for index, value in types.items():
            kind = as_int(value)
            if kind is None or len(index) != 1:
                continue
            scale = as_int(scales.get(index))
            precision = as_int(precisions.get(index))
            sensor_types[index[0]] = (kind, SCALE_UNITS if scale is None else scale, precision or 0)
        useful = {i for i, (kind, _, _) in sensor_types.items() if kind in (5, 6, 8, 14)}
        if not useful:
            return []
        names, descrs, contained, aliases = await self._walk(
            [ENT_PHYSICAL_NAME, ENT_PHYSICAL_DESCR, ENT_PHYSICAL_CONTAINED_IN, ENT_ALIAS_MAPPING_IDENTIFIER]
        )
        alias_if: dict[int, int] = {}
        for index, value in aliases.items():
            # entAliasMappingIdentifier.<entPhysicalIndex>.<logical or 0> = ifIndex.<n>
            if isinstance(value, univ.ObjectIdentifier):
                target = tuple(value)
                if len(target) == len(IF_INDEX) + 1 and target[: len(IF_INDEX)] == IF_INDEX and index:
                    alias_if.setdefault(index[0], target[-1])
        return map_sensors(
            {p.if_index: name for name, p in ports.items()},
            sensor_types,
            {i[0]: t for i, v in names.items() if len(i) == 1 and (t := as_text(v)) is not None},
            {i[0]: t for i, v in descrs.items() if len(i) == 1 and (t := as_text(v)) is not None},
            {i[0]: n for i, v in contained.items() if len(i) == 1 and (n := as_int(v)) is not None},
            alias_if,
        )


def _index_by_text(column: dict[Oid, Any]) -> dict[str, int]:
    """Invert an ifName/ifDescr column: text -> ifIndex (the first index wins on duplicates)."""
    out: dict[str, int] = {}
    for index, value in sorted(column.items()):
        text = as_text(value)
        if text is not None and len(index) == 1:
            out.setdefault(text.strip("\x00 "), index[0])
    return out


def _retrieve(task: asyncio.Task[None]) -> None:
    # A discovery that failed after its check gave up is reported by the next check's own
    # discovery; fetch the exception so asyncio does not log it as never retrieved.
    if not task.cancelled():
        task.exception()


def build(target: Target, cfg: SnmpConfig, resources: ProbeResources) -> Probe:
    """Build an SNMP probe for one device (the SnmpEngine is shared through ``resources``)."""
    issues = cfg.problems()
    if issues:
        # The config loader reports these with file and line; reaching here is a bug.
        raise ValueError(f"{target.device}: incomplete SNMP settings: {'; '.join(issues)}")
    return SnmpProbe(target, cfg, resources)
