"""SNMP polling (pysnmp 7 asyncio): uptime, IF-MIB interfaces, ENTITY-SENSOR-MIB optics."""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, Literal

import structlog
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ
from pydantic import BeforeValidator, Field
from pysnmp.error import PySnmpError
from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    Udp6TransportTarget,
    UdpTransportTarget,
    UsmUserData,
    bulk_cmd,
    get_cmd,
)
from pysnmp.hlapi.v3arch.asyncio import auth as usm
from pysnmp.proto import errind, rfc1902
from pysnmp.proto.rfc1905 import EndOfMibView, NoSuchInstance, NoSuchObject

from netwatch.configbase import Duration, SecretFile, Strict, reveal
from netwatch.model import FieldValue, Outcome, PortRef, Reason, Sample, Target, now_ns
from netwatch.probes.base import Probe, ProbeResources
from netwatch.probes.counters import (
    Reading,
    max_octets_per_s,
    max_packets_per_s,
    rate,
    rate_interval,
    uptime_reset,
)

AuthProtocol = Literal["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"]
#: AES192/AES256 extend a short key as net-snmp's AES-192/AES-256 do (draft-blumenthal);
#: AES192C/AES256C as Cisco does (draft-reeder, net-snmp's AES192C/AES256C). With an auth hash
#: of at least the key length (SHA-256 and up for AES-256) both give the same key.
PrivProtocol = Literal["DES", "AES", "AES128", "AES192", "AES256", "AES192C", "AES256C"]


def _version(value: object) -> object:
    # YAML reads `version: 3` as an integer and `version: 2c` as a string; take both spellings.
    return {2: "2c", "2": "2c", 3: "3"}.get(value, value) if isinstance(value, int | str) else value


class SnmpConfig(Strict):
    """How to talk SNMP to a device. Every key is optional so that it can be layered
    (``defaults.snmp`` -> ``defaults.kinds.<kind>.snmp`` -> ``devices[].snmp``); what a version
    requires is checked on the merged result by :meth:`problems`."""

    version: Annotated[Literal["2c", "3"], BeforeValidator(_version)] = "2c"
    port: int = Field(default=161, ge=1, le=65535)
    community_file: SecretFile | None = None
    user: str | None = Field(default=None, description="SNMPv3 user name")
    security_level: Literal["noAuthNoPriv", "authNoPriv", "authPriv"] = "authPriv"
    auth_protocol: AuthProtocol = "SHA256"
    auth_key_file: SecretFile | None = None
    priv_protocol: PrivProtocol = "AES"
    priv_key_file: SecretFile | None = None
    context: str = ""
    timeout: Duration = Field(default=2.0, description="wait for one response")
    retries: int = Field(default=1, ge=0, le=5)
    max_oids_per_request: int = Field(default=40, ge=1, le=200)
    optics: bool = Field(default=True, description="read optical power from ENTITY-SENSOR-MIB")
    rediscover: Duration = Field(default=3600.0, description="re-read port and sensor indexes this often")

    def budget_s(self) -> float:
        """Return how long one request may take with its retries (it must fit in the check timeout)."""
        return self.timeout * (self.retries + 1)

    def budget_text(self) -> str:
        return f"timeout {self.timeout:g}s x {self.retries + 1} tries"

    def problems(self) -> list[str]:
        """Return what this (merged) config lacks for its SNMP version."""
        issues: list[str] = []
        if self.version == "2c":
            if self.community_file is None:
                issues.append("SNMP v2c needs community_file")
        else:
            if not self.user:
                issues.append("SNMPv3 needs user")
            if self.security_level != "noAuthNoPriv" and self.auth_key_file is None:
                issues.append(f"SNMPv3 {self.security_level} needs auth_key_file")
            if self.security_level == "authPriv" and self.priv_key_file is None:
                issues.append("SNMPv3 authPriv needs priv_key_file")
        return issues


log = structlog.get_logger(__name__)

Oid = tuple[int, ...]

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

#: errorStatus values (RFC 3416) by number, for details.
_ERROR_STATUS = {
    1: "tooBig",
    2: "noSuchName",
    3: "badValue",
    4: "readOnly",
    5: "genErr",
    6: "noAccess",
    16: "authorizationError",
}
_TOO_BIG: Final = 1
_AUTHORIZATION_ERROR: Final = 16
_USM_STATS: Final = "1.3.6.1.6.3.15.1.1"

_AUTH_PROTOCOLS: Final[dict[str, Any]] = {
    "MD5": usm.USM_AUTH_HMAC96_MD5,
    "SHA": usm.USM_AUTH_HMAC96_SHA,
    "SHA224": usm.USM_AUTH_HMAC128_SHA224,
    "SHA256": usm.USM_AUTH_HMAC192_SHA256,
    "SHA384": usm.USM_AUTH_HMAC256_SHA384,
    "SHA512": usm.USM_AUTH_HMAC384_SHA512,
}
_PRIV_PROTOCOLS: Final[dict[str, Any]] = {
    "DES": usm.USM_PRIV_CBC56_DES,
    "AES": usm.USM_PRIV_CFB128_AES,
    "AES128": usm.USM_PRIV_CFB128_AES,
    "AES192": usm.USM_PRIV_CFB192_AES_BLUMENTHAL,
    "AES256": usm.USM_PRIV_CFB256_AES_BLUMENTHAL,
    "AES192C": usm.USM_PRIV_CFB192_AES,
    "AES256C": usm.USM_PRIV_CFB256_AES,
}

#: ErrorIndications that mean the agent rejected our SNMPv3 credentials (or reported so).
_AUTH_INDICATIONS: Final = (
    errind.WrongDigest,
    errind.UnknownUserName,
    errind.DecryptionError,
    errind.UnknownEngineID,
    errind.UnknownSecurityName,
    errind.UnsupportedSecurityLevel,
    errind.NotInTimeWindow,
    errind.AuthenticationError,
    errind.AuthenticationFailure,
)
#: ErrorIndications that mean we got something we could not make sense of.
_PROTOCOL_INDICATIONS: Final = (
    errind.DeserializationError,
    errind.SerializationError,
    errind.DataMismatch,
    errind.EngineIDMismatch,
    errind.InvalidMsg,
    errind.EmptyResponse,
    errind.UnknownPDUHandler,
    errind.UnsupportedPDUtype,
    errind.OidNotIncreasing,
    errind.ReportPduReceived,  # a report that is not about USM (e.g. snmpUnknownContexts)
)

#: Walks stop after this many rows per column: a runaway agent must not hold a poll forever.
MAX_WALK_ROWS: Final = 20_000
MAX_REPETITIONS: Final = 25
#: A port whose ifIndex stopped answering triggers discovery, but not more often than this.
VANISHED_RETRY_S: Final = 60.0


class _Failure(Exception):
    """A device failure found deep in a poll; :meth:`SnmpProbe.check` turns it into an Outcome."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason: Reason = reason
        self.detail = detail


class _TooBig(Exception):
    """The agent (or pysnmp) says the request is too big: ask for fewer OIDs at a time."""


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


def _as_int(value: Any) -> int | None:
    """Return an SNMP integer-like value (Integer, Counter, Gauge, TimeTicks) as int, else None."""
    if isinstance(value, univ.Integer):
        return int(value)
    return None


def _as_text(value: Any) -> str | None:
    if isinstance(value, univ.Null) or not isinstance(value, univ.OctetString):
        return None
    return bytes(value.asOctets()).decode("utf-8", errors="replace")


def _integer(values: dict[Oid, Any], oid: Oid, what: str) -> int | None:
    """Return the integer value at ``oid``; None if the agent has no such object or instance.

    Any other type where the MIB says integer is an agent we cannot read: a protocol failure.
    """
    value = values.get(oid)
    if _missing(value):
        return None
    number = _as_int(value)
    if number is None:
        raise _Failure("protocol", f"{what} ({_fmt(oid)}) is {type(value).__name__}, not an integer")
    return number


def _missing(value: Any) -> bool:
    return value is None or isinstance(value, NoSuchObject | NoSuchInstance | EndOfMibView)


def _width(value: Any) -> Literal[32, 64]:
    return 64 if isinstance(value, rfc1902.Counter64) else 32


def _engine(resources: ProbeResources, cfg: SnmpConfig) -> Any:
    """Return the SnmpEngine for this config, creating it (and its closer) on first use.

    v2c devices and v3 devices with the same credentials share one engine. pysnmp keeps USM users
    per engine by (user name, agent engine id) and, without a known engine id, by name alone: two
    devices with the same v3 user name but different keys on one engine would overwrite each
    other's keys mid-request. So each distinct v3 credential set gets its own engine (a city has
    a handful), keyed by a digest so that no secret is held as a dict key in clear.
    """
    key = "snmp_engine"
    if cfg.version == "3":
        material = "\0".join(
            str(x)
            for x in (
                cfg.user,
                cfg.security_level,
                cfg.auth_protocol,
                reveal(cfg.auth_key_file),
                cfg.priv_protocol,
                reveal(cfg.priv_key_file),
            )
        )
        key = "snmp_engine/v3/" + hashlib.sha256(material.encode()).hexdigest()[:16]
    engine = resources.shared.get(key)
    if engine is None:
        engine = SnmpEngine()
        resources.shared[key] = engine
        resources.closers.append(engine.close_dispatcher)
    return engine


def _credentials(cfg: SnmpConfig) -> Any:
    """Build pysnmp's auth data; the only place secrets leave their SecretStr."""
    if cfg.version == "2c":
        return CommunityData(reveal(cfg.community_file) or "", mpModel=1)
    user = cfg.user or ""
    if cfg.security_level == "noAuthNoPriv":
        return UsmUserData(user)
    auth = {"authKey": reveal(cfg.auth_key_file), "authProtocol": _AUTH_PROTOCOLS[cfg.auth_protocol]}
    if cfg.security_level == "authNoPriv":
        return UsmUserData(user, **auth)
    return UsmUserData(user, **auth, privKey=reveal(cfg.priv_key_file), privProtocol=_PRIV_PROTOCOLS[cfg.priv_protocol])


class SnmpProbe:
    """Poll one device: sysUpTime, the target's ports (IF-MIB) and their optics (ENTITY-SENSOR-MIB).

    Port and sensor indexes are discovered on the first poll, every ``rediscover`` seconds, and
    again when the device rebooted or a port's index stopped answering. Counter rates start on
    the second poll; see :mod:`netwatch.probes.counters` for when a rate is left out.
    """

    def __init__(self, target: Target, cfg: SnmpConfig, resources: ProbeResources) -> None:
        self._target = target
        self._cfg = cfg
        self._resources = resources
        self._auth = _credentials(cfg)
        self._context = ContextData(contextName=cfg.context.encode()) if cfg.context else ContextData()
        self._transport: Any = None
        self._chunk = cfg.max_oids_per_request
        self._varbinds: dict[Oid, Any] = {}
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

    # -- the contract ----------------------------------------------------------------------

    async def check(self) -> Outcome:
        """Poll the device once; SNMP failures come back as an Outcome with a reason."""
        try:
            return await self._poll()
        except _Failure as failure:
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
            raise _Failure("protocol", "the agent has no sysUpTime.0")
        return ticks

    def _vanished(self, values: dict[Oid, Any]) -> bool:
        """Tell whether a discovered port's ifIndex stopped answering ifOperStatus."""
        return any(_missing(values.get((*IF_OPER_STATUS, p.if_index))) for p in self._ports.values())

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
            if _missing(values.get((*IF_OPER_STATUS, i))):
                continue  # the port itself is gone; discovery will sort it out
            if port.hc and _missing(values.get((*IF_HC_IN_OCTETS, i))):
                port.hc = False
                fallback += [(*IF_IN_OCTETS, i), (*IF_OUT_OCTETS, i)]
            if port.high_speed and _missing(values.get((*IF_HIGH_SPEED, i))):
                port.high_speed = False
                fallback.append((*IF_SPEED, i))
            if port.discontinuity and _missing(values.get((*IF_COUNTER_DISCONTINUITY_TIME, i))):
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
            kind = _as_int(value)
            if kind is None or len(index) != 1:
                continue
            scale = _as_int(scales.get(index))
            precision = _as_int(precisions.get(index))
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
            {i[0]: t for i, v in names.items() if len(i) == 1 and (t := _as_text(v)) is not None},
            {i[0]: t for i, v in descrs.items() if len(i) == 1 and (t := _as_text(v)) is not None},
            {i[0]: n for i, v in contained.items() if len(i) == 1 and (n := _as_int(v)) is not None},
            alias_if,
        )

    # -- SNMP requests ---------------------------------------------------------------------

    async def _target_transport(self) -> Any:
        if self._transport is None:
            cls = Udp6TransportTarget if ":" in self._target.address else UdpTransportTarget
            try:
                self._transport = await cls.create(
                    (self._target.address, self._cfg.port),
                    timeout=self._cfg.timeout,
                    retries=self._cfg.retries,
                )
            except PySnmpError as exc:
                raise _Failure("dns", f"cannot resolve {self._target.address!r}: {exc}") from None
        return self._transport

    def _varbind(self, oid: Oid) -> Any:
        # pysnmp resolves an ObjectType in place once; reusing it saves that work every poll.
        vb = self._varbinds.get(oid)
        if vb is None:
            vb = self._varbinds[oid] = ObjectType(ObjectIdentity(oid))
        return vb

    async def _get(self, oids: Sequence[Oid]) -> dict[Oid, Any]:
        """GET ``oids`` in requests of at most ``max_oids_per_request``, halving on tooBig.

        Requests are evened out (81 OIDs at 40 per request go as 27 + 27 + 27, not 40 + 40 + 1)
        so that no response is needlessly close to the size limit.
        """
        values: dict[Oid, Any] = {}
        pos = 0
        while pos < len(oids):
            left = len(oids) - pos
            requests = -(-left // self._chunk)
            chunk = oids[pos : pos + -(-left // requests)]
            try:
                reply = await self._request("GET", chunk)
            except _TooBig:
                if len(chunk) == 1:
                    raise _Failure("protocol", f"agent says tooBig for the single OID {_fmt(chunk[0])}") from None
                self._chunk = max(1, len(chunk) // 2)
                continue
            if len(reply) != len(chunk):
                raise _Failure("protocol", f"GET of {len(chunk)} OIDs answered with {len(reply)} values")
            for asked, (name, value) in zip(chunk, reply, strict=True):
                if tuple(name) != asked:
                    raise _Failure("protocol", f"GET {_fmt(asked)} answered for {_fmt(tuple(name))}")
                values[asked] = value
            pos += len(chunk)
        return values

    async def _walk(self, columns: Sequence[Oid]) -> list[dict[Oid, Any]]:
        """Walk table columns side by side with GETBULK; return index suffix -> value per column."""
        tables: list[dict[Oid, Any]] = [{} for _ in columns]
        cursor = list(columns)
        active = list(range(len(columns)))
        while active:
            reps = max(1, min(MAX_REPETITIONS, self._chunk // len(active)))
            try:
                reply = await self._request("GETBULK", [cursor[i] for i in active], reps)
            except _TooBig:
                if self._chunk == 1:
                    raise _Failure("protocol", "agent says tooBig for a one-row GETBULK") from None
                self._chunk = max(1, self._chunk // 2)
                continue
            if not reply:
                break
            still = list(active)
            for pos, (name, value) in enumerate(reply):
                col = active[pos % len(active)]
                if col not in still:
                    continue
                oid = tuple(name)
                column = columns[col]
                if isinstance(value, EndOfMibView) or oid[: len(column)] != column:
                    still.remove(col)
                    continue
                if oid <= cursor[col]:
                    raise _Failure("protocol", f"agent returned OIDs out of order walking {_fmt(column)}")
                cursor[col] = oid
                tables[col][oid[len(column) :]] = value
                if len(tables[col]) >= MAX_WALK_ROWS:
                    still.remove(col)
            active = still
        return tables

    async def _request(self, op: Literal["GET", "GETBULK"], oids: Sequence[Oid], reps: int = 0) -> list[Any]:
        """Send one request; return its varbinds or raise _Failure/_TooBig."""
        transport = await self._target_transport()
        engine = _engine(self._resources, self._cfg)
        varbinds = [self._varbind(oid) for oid in oids]
        try:
            if op == "GET":
                reply = await get_cmd(engine, self._auth, transport, self._context, *varbinds, lookupMib=False)
            else:
                reply = await bulk_cmd(
                    engine, self._auth, transport, self._context, 0, reps, *varbinds, lookupMib=False
                )
        except PySnmpError as exc:
            # Some failures escape as exceptions (bulk_cmd raises StatusInformation without
            # `cryptography`); they carry the same errorIndication as a returned one would.
            indication = _status_indication(exc)
            if indication is not None:
                raise self._indication_failure(indication) from None
            raise _Failure("error", f"pysnmp: {type(exc).__name__}: {exc}") from None
        except PyAsn1Error as exc:
            raise _Failure("protocol", f"cannot decode the response: {type(exc).__name__}: {exc}") from None
        except OSError as exc:
            # The socket itself failed (no route, no source address); not a silent timeout.
            raise _Failure("unreachable", f"cannot send to {self._target.address}: {exc}") from None
        error_indication, error_status, error_index, result = reply
        if error_indication:
            raise self._indication_failure(error_indication)
        status = int(error_status or 0)
        if status:
            if status == _TOO_BIG:
                raise _TooBig
            at = int(error_index or 0)
            where = f" at {_fmt(oids[at - 1])}" if 0 < at <= len(oids) else ""
            name = _ERROR_STATUS.get(status, str(status))
            if status == _AUTHORIZATION_ERROR:
                raise _Failure("auth", f"agent refused access ({name}{where}): a credentials or view problem")
            raise _Failure("protocol", f"agent answered {op} with error-status {name}{where}")
        return list(result)

    def _indication_failure(self, indication: Any) -> Exception:
        cfg = self._cfg
        if isinstance(indication, errind.TooBig):
            return _TooBig()
        if isinstance(indication, errind.RequestTimedOut):
            creds = (
                "the community (a wrong community gets no answer at all)"
                if cfg.version == "2c"
                else f"the SNMPv3 user {cfg.user!r} and its keys (a wrong privacy key gets no answer)"
            )
            tries = cfg.retries + 1
            return _Failure(
                "timeout",
                f"no SNMP response from {self._target.address}:{cfg.port} within {cfg.timeout:g}s x {tries} "
                f"tries: check the address and port, and {creds}",
            )
        text = str(indication)
        if isinstance(indication, _AUTH_INDICATIONS) or (
            isinstance(indication, errind.ReportPduReceived) and _USM_STATS in text
        ):
            return _Failure(
                "auth",
                f"SNMPv3 credentials problem for user {cfg.user!r}: {text} (check user, auth/priv protocols and keys)",
            )
        if isinstance(indication, _PROTOCOL_INDICATIONS):
            return _Failure("protocol", f"bad SNMP response: {text}")
        if isinstance(indication, errind.EncryptionError):
            return _Failure("error", f"{text}: SNMPv3 privacy needs the Python package 'cryptography'")
        return _Failure("error", f"SNMP engine error: {text}")


def _status_indication(exc: Exception) -> Any:
    """Return the errorIndication a pysnmp StatusInformation carries, if any."""
    try:
        return exc["errorIndication"]  # type: ignore[index]
    except (TypeError, KeyError):
        return None


def _index_by_text(column: dict[Oid, Any]) -> dict[str, int]:
    """Invert an ifName/ifDescr column: text -> ifIndex (the first index wins on duplicates)."""
    out: dict[str, int] = {}
    for index, value in sorted(column.items()):
        text = _as_text(value)
        if text is not None and len(index) == 1:
            out.setdefault(text.strip("\x00 "), index[0])
    return out


def _fmt(oid: Iterable[int]) -> str:
    return ".".join(str(part) for part in oid)


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
