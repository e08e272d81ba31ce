"""What every SNMP-speaking probe shares: access settings, engines, GET/GETBULK walks, failures.

The ``snmp`` probe (IF-MIB, optics) and the ``wifi`` probe (vendor profiles) both poll through
:class:`SnmpClient`: one place turns pysnmp's errorIndications into a closed-set reason with a
detail an operator can act on, splits requests on tooBig and walks table columns side by side.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Final, Literal

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
from pysnmp.proto import errind
from pysnmp.proto.rfc1905 import EndOfMibView, NoSuchInstance, NoSuchObject

from netwatch.configbase import Duration, SecretFile, Strict, reveal
from netwatch.model import Reason
from netwatch.probes.base import ProbeResources

Oid = tuple[int, ...]

AuthProtocol = Literal["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"]
#: AES192/AES256 extend a short key as net-snmp's AES-192/AES-256 do (draft-blumenthal);
#: AES192C/AES256C as Cisco does (draft-reeder, net-snmp's AES192C/AES256C). With an auth hash
#: of at least the key length (SHA-256 and up for AES-256) both give the same key.
PrivProtocol = Literal["DES", "AES", "AES128", "AES192", "AES256", "AES192C", "AES256C"]


def _version(value: object) -> object:
    # YAML reads `version: 3` as an integer and `version: 2c` as a string; take both spellings.
    return {2: "2c", "2": "2c", 3: "3"}.get(value, value) if isinstance(value, int | str) else value


class SnmpAccess(Strict):
    """How to talk SNMP to an agent. Every key is optional so that it can be layered
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

AUTH_PROTOCOLS: Final[dict[str, Any]] = {
    "MD5": usm.USM_AUTH_HMAC96_MD5,
    "SHA": usm.USM_AUTH_HMAC96_SHA,
    "SHA224": usm.USM_AUTH_HMAC128_SHA224,
    "SHA256": usm.USM_AUTH_HMAC192_SHA256,
    "SHA384": usm.USM_AUTH_HMAC256_SHA384,
    "SHA512": usm.USM_AUTH_HMAC384_SHA512,
}
PRIV_PROTOCOLS: Final[dict[str, Any]] = {
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


class SnmpFailure(Exception):
    """A device failure found deep in a poll; the probe's ``check`` turns it into an Outcome."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason: Reason = reason
        self.detail = detail


class TooBig(Exception):
    """The agent (or pysnmp) says the request is too big: ask for fewer OIDs at a time."""


def as_int(value: Any) -> int | None:
    """Return an SNMP integer-like value (Integer, Counter, Gauge, TimeTicks) as int, else None."""
    if isinstance(value, univ.Integer):
        return int(value)
    return None


def as_text(value: Any) -> str | None:
    """Return an OCTET STRING as text (undecodable bytes replaced), else None."""
    if isinstance(value, univ.Null) or not isinstance(value, univ.OctetString):
        return None
    return bytes(value.asOctets()).decode("utf-8", errors="replace")


def missing(value: Any) -> bool:
    """Tell whether a varbind value means the agent has no such object or instance."""
    return value is None or isinstance(value, NoSuchObject | NoSuchInstance | EndOfMibView)


def fmt(oid: Iterable[int]) -> str:
    """Write an OID the way operators read it: dotted, without a leading dot."""
    return ".".join(str(part) for part in oid)


def engine(resources: ProbeResources, cfg: SnmpAccess) -> Any:
    """Return the SnmpEngine for this config, creating it (and its closer) on first use.

    v2c devices and v3 devices with the same credentials share one engine. pysnmp keeps USM users
    per engine by (user name, agent engine id) and, without a known engine id, by name alone: two
    devices with the same v3 user name but different keys on one engine would overwrite each
    other's keys mid-request. So each distinct v3 credential set gets its own engine (a city has
    a handful), keyed by a digest so that no secret is held as a dict key in clear.
    """
    key = "snmp_engine"
    if cfg.version == "3":
        key = "snmp_engine/v3/" + credentials_digest(cfg)
    found = resources.shared.get(key)
    if found is None:
        found = SnmpEngine()
        resources.shared[key] = found
        resources.closers.append(found.close_dispatcher)
    return found


def credentials_digest(cfg: SnmpAccess) -> str:
    """Return a short digest of the credentials, to key shared state without holding secrets."""
    material = "\0".join(
        str(x)
        for x in (
            cfg.version,
            reveal(cfg.community_file),
            cfg.user,
            cfg.security_level,
            cfg.auth_protocol,
            reveal(cfg.auth_key_file),
            cfg.priv_protocol,
            reveal(cfg.priv_key_file),
        )
    )
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def credentials(cfg: SnmpAccess) -> Any:
    """Build pysnmp's auth data; the only place secrets leave their SecretStr."""
    if cfg.version == "2c":
        return CommunityData(reveal(cfg.community_file) or "", mpModel=1)
    user = cfg.user or ""
    if cfg.security_level == "noAuthNoPriv":
        return UsmUserData(user)
    auth = {"authKey": reveal(cfg.auth_key_file), "authProtocol": AUTH_PROTOCOLS[cfg.auth_protocol]}
    if cfg.security_level == "authNoPriv":
        return UsmUserData(user, **auth)
    return UsmUserData(user, **auth, privKey=reveal(cfg.priv_key_file), privProtocol=PRIV_PROTOCOLS[cfg.priv_protocol])


class SnmpClient:
    """GET and GETBULK walks against one agent, failures raised as :class:`SnmpFailure`.

    Probes subclass it (the request seam :meth:`_request` is what unit tests script). The
    transport is resolved on first use and kept; requests that are too big are split and the
    smaller size is remembered for the agent.
    """

    def __init__(self, address: str, cfg: SnmpAccess, resources: ProbeResources) -> None:
        self._address = address
        self._cfg = cfg
        self._resources = resources
        self._auth = credentials(cfg)
        self._context = ContextData(contextName=cfg.context.encode()) if cfg.context else ContextData()
        self._transport: Any = None
        self._chunk = cfg.max_oids_per_request
        self._varbinds: dict[Oid, Any] = {}

    async def _target_transport(self) -> Any:
        if self._transport is None:
            cls = Udp6TransportTarget if ":" in self._address else UdpTransportTarget
            try:
                self._transport = await cls.create(
                    (self._address, self._cfg.port),
                    timeout=self._cfg.timeout,
                    retries=self._cfg.retries,
                )
            except PySnmpError as exc:
                raise SnmpFailure("dns", f"cannot resolve {self._address!r}: {exc}") from None
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
            except TooBig:
                if len(chunk) == 1:
                    raise SnmpFailure("protocol", f"agent says tooBig for the single OID {fmt(chunk[0])}") from None
                self._chunk = max(1, len(chunk) // 2)
                continue
            if len(reply) != len(chunk):
                raise SnmpFailure("protocol", f"GET of {len(chunk)} OIDs answered with {len(reply)} values")
            for asked, (name, value) in zip(chunk, reply, strict=True):
                if tuple(name) != asked:
                    raise SnmpFailure("protocol", f"GET {fmt(asked)} answered for {fmt(tuple(name))}")
                values[asked] = value
            pos += len(chunk)
        return values

    async def _walk(self, columns: Sequence[Oid]) -> list[dict[Oid, Any]]:
        """Walk table columns side by side with GETBULK; return index suffix -> value per column.

        A "column" may be any subtree: a column OID followed by an index prefix walks only the
        rows under that prefix (one AP's radios on a controller), indexed by what follows it.
        """
        tables: list[dict[Oid, Any]] = [{} for _ in columns]
        cursor = list(columns)
        active = list(range(len(columns)))
        while active:
            reps = max(1, min(MAX_REPETITIONS, self._chunk // len(active)))
            try:
                reply = await self._request("GETBULK", [cursor[i] for i in active], reps)
            except TooBig:
                if self._chunk == 1:
                    raise SnmpFailure("protocol", "agent says tooBig for a one-row GETBULK") from None
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
                    raise SnmpFailure("protocol", f"agent returned OIDs out of order walking {fmt(column)}")
                cursor[col] = oid
                tables[col][oid[len(column) :]] = value
                if len(tables[col]) >= MAX_WALK_ROWS:
                    still.remove(col)
            active = still
        return tables

    async def _request(self, op: Literal["GET", "GETBULK"], oids: Sequence[Oid], reps: int = 0) -> list[Any]:
        """Send one request; return its varbinds or raise SnmpFailure/TooBig."""
        transport = await self._target_transport()
        snmp_engine = engine(self._resources, self._cfg)
        varbinds = [self._varbind(oid) for oid in oids]
        try:
            if op == "GET":
                reply = await get_cmd(snmp_engine, self._auth, transport, self._context, *varbinds, lookupMib=False)
            else:
                reply = await bulk_cmd(
                    snmp_engine, self._auth, transport, self._context, 0, reps, *varbinds, lookupMib=False
                )
        except PySnmpError as exc:
            # Some failures escape as exceptions (bulk_cmd raises StatusInformation without
            # `cryptography`); they carry the same errorIndication as a returned one would.
            indication = _status_indication(exc)
            if indication is not None:
                raise self._indication_failure(indication) from None
            raise SnmpFailure("error", f"pysnmp: {type(exc).__name__}: {exc}") from None
        except PyAsn1Error as exc:
            raise SnmpFailure("protocol", f"cannot decode the response: {type(exc).__name__}: {exc}") from None
        except OSError as exc:
            # The socket itself failed (no route, no source address); not a silent timeout.
            raise SnmpFailure("unreachable", f"cannot send to {self._address}: {exc}") from None
        error_indication, error_status, error_index, result = reply
        if error_indication:
            raise self._indication_failure(error_indication)
        status = int(error_status or 0)
        if status:
            if status == _TOO_BIG:
                raise TooBig
            at = int(error_index or 0)
            where = f" at {fmt(oids[at - 1])}" if 0 < at <= len(oids) else ""
            name = _ERROR_STATUS.get(status, str(status))
            if status == _AUTHORIZATION_ERROR:
                raise SnmpFailure("auth", f"agent refused access ({name}{where}): a credentials or view problem")
            raise SnmpFailure("protocol", f"agent answered {op} with error-status {name}{where}")
        return list(result)

    def _indication_failure(self, indication: Any) -> Exception:
        cfg = self._cfg
        if isinstance(indication, errind.TooBig):
            return TooBig()
        if isinstance(indication, errind.RequestTimedOut):
            creds = (
                "the community (a wrong community gets no answer at all)"
                if cfg.version == "2c"
                else f"the SNMPv3 user {cfg.user!r} and its keys (a wrong privacy key gets no answer)"
            )
            tries = cfg.retries + 1
            return SnmpFailure(
                "timeout",
                f"no SNMP response from {self._address}:{cfg.port} within {cfg.timeout:g}s x {tries} "
                f"tries: check the address and port, and {creds}",
            )
        text = str(indication)
        if isinstance(indication, _AUTH_INDICATIONS) or (
            isinstance(indication, errind.ReportPduReceived) and _USM_STATS in text
        ):
            return SnmpFailure(
                "auth",
                f"SNMPv3 credentials problem for user {cfg.user!r}: {text} (check user, auth/priv protocols and keys)",
            )
        if isinstance(indication, _PROTOCOL_INDICATIONS):
            return SnmpFailure("protocol", f"bad SNMP response: {text}")
        if isinstance(indication, errind.EncryptionError):
            return SnmpFailure("error", f"{text}: SNMPv3 privacy needs the Python package 'cryptography'")
        return SnmpFailure("error", f"SNMP engine error: {text}")


def _status_indication(exc: Exception) -> Any:
    """Return the errorIndication a pysnmp StatusInformation carries, if any."""
    try:
        return exc["errorIndication"]  # type: ignore[index]
    except (TypeError, KeyError):
        return None
