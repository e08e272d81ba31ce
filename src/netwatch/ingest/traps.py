"""SNMP trap receiver: linkDown/linkUp, coldStart/warmStart and configured enterprise traps.

A trap from a device the inventory knows becomes a ``trap`` sample at once and asks the
scheduler to poll that device now (a linkDown is seen in about a second, not a poll interval
later; the poll then sets the port and span state through the usual path). Everything else
(unknown senders, wrong communities or v3 keys, garbage datagrams, trap OIDs nobody configured)
is counted in ``netwatch{component=traps}`` and ignored; an unknown or rejected sender is logged
once, not per datagram.

pysnmp's NotificationReceiver gives us accepted traps only; to count the rejected ones with their
sender, the engine's receive callback is wrapped: pysnmp processes a datagram synchronously, so
the MIB counters it bumps (snmpInBadCommunityNames, usmStatsWrongDigests, ...) while handling one
datagram say why that datagram was dropped.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

import structlog
from pydantic import Field, field_validator
from pysnmp.carrier.asyncio.dgram import udp, udp6
from pysnmp.entity import config as snmp_config
from pysnmp.entity.engine import SnmpEngine
from pysnmp.entity.rfc3413 import ntfrcv
from pysnmp.proto.api import v2c

from netwatch.configbase import SecretFile, Strict, reveal
from netwatch.model import Sample, now_ns
from netwatch.probes.snmpclient import AUTH_PROTOCOLS, PRIV_PROTOCOLS, AuthProtocol, PrivProtocol, as_int, as_text

if TYPE_CHECKING:  # the config imports this module, and the inventory imports the config
    from netwatch.inventory import Inventory

log = structlog.get_logger(__name__)

_OID_TEXT = r"^\.?[0-9]+(\.[0-9]+)+$"


def _oid(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.strip(".").split("."))


class TrapUser(Strict):
    """An SNMPv3 user that may send traps, with the sender's engine id (traps are not
    acknowledged, so the sender is the authoritative engine and its keys are localised to it)."""

    user: str = Field(min_length=1)
    engine_id: str = Field(pattern=r"^(0x)?([0-9A-Fa-f]{2}){5,32}$", description="sender's snmpEngineID, hex")
    security_level: Literal["authNoPriv", "authPriv"] = "authPriv"
    auth_protocol: AuthProtocol = "SHA256"
    auth_key_file: SecretFile
    priv_protocol: PrivProtocol = "AES"
    priv_key_file: SecretFile | None = None

    def problems(self) -> list[str]:
        if self.security_level == "authPriv" and self.priv_key_file is None:
            return ["authPriv needs priv_key_file"]
        return []


class EnterpriseTrap(Strict):
    """An enterprise (vendor) trap to accept, and what it means."""

    oid: str = Field(pattern=_OID_TEXT, description="snmpTrapOID (for v1: enterprise.0.specific)")
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,47}$", description="the trap tag written for it")
    meaning: str = Field(default="", description="for people reading the config")
    poll: bool = Field(default=True, description="poll the device now when it arrives")


class TrapsConfig(Strict):
    """The SNMP trap receiver (absent: no receiver)."""

    listen: str = Field(default="127.0.0.1:9162", description="host:port, [v6]:port; 162 needs privileges")
    community_files: list[SecretFile] = Field(default_factory=list, description="v1/v2c communities accepted")
    users: list[TrapUser] = Field(default_factory=list, description="SNMPv3 users accepted")
    enterprise: list[EnterpriseTrap] = Field(default_factory=list)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, port = split_listen(value)
        ipaddress.ip_address(host)
        if not 0 <= port <= 65535:
            raise ValueError("port must be 0..65535")
        return value

    @field_validator("users")
    @classmethod
    def _users(cls, users: list[TrapUser]) -> list[TrapUser]:
        for user in users:
            if user.problems():
                raise ValueError(f"user {user.user!r}: {'; '.join(user.problems())}")
        return users


def split_listen(value: str) -> tuple[str, int]:
    """Split ``host:port`` or ``[v6]:port``."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{value!r} is not host:port")
    return host.strip("[]"), int(port)


class TrapListenError(Exception):
    """The receiver cannot bind its address (port in use, no permission, not a local address)."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"traps: cannot listen on {address}: {reason}")
        self.address = address


# Standard traps (SNMPv2-MIB, IF-MIB) by snmpTrapOID.
_STANDARD: Final[dict[tuple[int, ...], str]] = {
    (1, 3, 6, 1, 6, 3, 1, 1, 5, 1): "coldStart",
    (1, 3, 6, 1, 6, 3, 1, 1, 5, 2): "warmStart",
    (1, 3, 6, 1, 6, 3, 1, 1, 5, 3): "linkDown",
    (1, 3, 6, 1, 6, 3, 1, 1, 5, 4): "linkUp",
}
_SNMP_TRAP_OID: Final = (1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0)
_SNMP_TRAP_ADDRESS: Final = (1, 3, 6, 1, 6, 3, 18, 1, 3, 0)  # v1 agent-addr, carried over by pysnmp
_IF_INDEX: Final = (1, 3, 6, 1, 2, 1, 2, 2, 1, 1)
_IF_DESCR: Final = (1, 3, 6, 1, 2, 1, 2, 2, 1, 2)
_IF_OPER: Final = (1, 3, 6, 1, 2, 1, 2, 2, 1, 8)
_IF_NAME: Final = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1)
#: link traps poll only the check that reads ports; the others (and enterprise traps) the device.
_LINK_CHECKS: Final = frozenset({"snmp"})

Verdict = Literal["accepted", "unknown_sender", "bad_community", "bad_credentials", "malformed", "ignored"]
#: MIB counters pysnmp bumps when it drops a datagram, and what we count it as.
_DROP_COUNTERS: Final[tuple[tuple[str, str, Verdict], ...]] = (
    ("__SNMPv2-MIB", "snmpInBadCommunityNames", "bad_community"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsWrongDigests", "bad_credentials"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsUnknownUserNames", "bad_credentials"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsDecryptionErrors", "bad_credentials"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsUnknownEngineIDs", "bad_credentials"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsNotInTimeWindows", "bad_credentials"),
    ("__SNMP-USER-BASED-SM-MIB", "usmStatsUnsupportedSecLevels", "bad_credentials"),
)
_USM: Final = 3
_LEVELS: Final = {"noAuthNoPriv": 1, "authNoPriv": 2, "authPriv": 3}
#: Senders remembered for log-once; past this many the set starts again (a scan must not grow memory).
_MAX_LOGGED_SENDERS: Final = 4096


@dataclass(frozen=True, slots=True)
class _DeviceRef:
    device: str
    site: str


class TrapReceiver:
    """Receive traps on one UDP socket and hand samples and poll requests to the daemon."""

    def __init__(
        self,
        cfg: TrapsConfig,
        inventory: Inventory,
        *,
        emit: Callable[[list[Sample]], None],
        poll_now: Callable[[str, frozenset[str] | None], int],
        instance: str,
        port_name: Callable[[str, int], str | None] = lambda _device, _if_index: None,
    ) -> None:
        self._cfg = cfg
        self._emit = emit
        self._poll_now = poll_now
        self._port_name = port_name
        self._instance = instance
        self._by_address: dict[str, _DeviceRef] = {}
        self._enterprise = {_oid(t.oid): t for t in cfg.enterprise}
        # by user name (what the message names); one name on several engines takes its lowest level
        self._levels: dict[str, int] = {}
        for user in cfg.users:
            self._levels[user.user] = min(_LEVELS[user.security_level], self._levels.get(user.user, 3))
        self._logged: set[tuple[str, str]] = set()
        self._engine: Any = None
        self._receiver: Any = None
        self._accepted = False
        self._sender = ""
        self.address: tuple[str, int] = ("", 0)
        self.counts: dict[str, int] = {
            "traps_received": 0,
            "traps_accepted": 0,
            "traps_unknown_sender": 0,
            "traps_bad_community": 0,
            "traps_bad_credentials": 0,
            "traps_malformed": 0,
            "traps_ignored": 0,
            "traps_polls": 0,
        }
        self.apply(inventory)

    def apply(self, inventory: Inventory) -> None:
        """Take a (reloaded) inventory: senders are matched by the device address it lists."""
        by_address: dict[str, _DeviceRef] = {}
        for device in inventory.devices.values():
            try:
                # normalise (::ffff:10.0.0.1, leading zeros in v6) so a match does not hinge on spelling
                key = str(ipaddress.ip_address(device.address))
            except ValueError:
                continue  # a host name: documented, traps from it count as unknown_sender
            by_address[key] = _DeviceRef(device.id, device.site)
        self._by_address = by_address

    # ---------------------------------------------------------------------------------------
    # lifecycle

    def open(self) -> None:
        """Bind the socket and start receiving; a bind failure is :class:`TrapListenError`."""
        host, port = split_listen(self._cfg.listen)
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise TrapListenError(self._cfg.listen, exc.strerror or str(exc)) from None
        sock.setblocking(False)
        self.address = sock.getsockname()[:2]
        engine = SnmpEngine()
        transport: Any = udp6.Udp6AsyncioTransport() if family == socket.AF_INET6 else udp.UdpAsyncioTransport()
        domain = udp6.DOMAIN_NAME if family == socket.AF_INET6 else udp.DOMAIN_NAME
        snmp_config.add_transport(engine, domain, transport.open_server_mode(sock=sock))
        for i, secret in enumerate(self._cfg.community_files):
            snmp_config.add_v1_system(engine, f"community-{i}", reveal(secret) or "")
        for user in self._cfg.users:
            keys: dict[str, Any] = {
                "authProtocol": AUTH_PROTOCOLS[user.auth_protocol],
                "authKey": reveal(user.auth_key_file),
            }
            if user.security_level == "authPriv":
                keys |= {"privProtocol": PRIV_PROTOCOLS[user.priv_protocol], "privKey": reveal(user.priv_key_file)}
            engine_id = v2c.OctetString(hexValue=user.engine_id.removeprefix("0x"))
            snmp_config.add_v3_user(engine, user.user, securityEngineId=engine_id, **keys)
        # Route every datagram through our wrapper (see the module docstring).
        dispatcher = engine.transport_dispatcher
        dispatcher.unregister_recv_callback()
        dispatcher.register_recv_callback(self._datagram)
        self._receiver = ntfrcv.NotificationReceiver(engine, self._notification)
        self._engine = engine
        log.info("traps_listening", address=f"{self.address[0]}:{self.address[1]}")

    def close(self) -> None:
        """Close the socket; safe to call twice."""
        engine, self._engine = self._engine, None
        if engine is None:
            return
        if self._receiver is not None:
            self._receiver.close(engine)
        engine.close_dispatcher()

    # ---------------------------------------------------------------------------------------
    # receiving

    def _datagram(self, _dispatcher: Any, domain: Any, address: Any, message: bytes) -> None:
        self.counts["traps_received"] += 1
        sender = str(address[0]) if isinstance(address, tuple) else "?"
        engine = self._engine
        if engine is None:
            return
        before = self._drop_counts(engine)
        self._accepted = False
        self._sender = sender
        try:
            engine.message_dispatcher.receive_message(engine, domain, address, message)
        except Exception as exc:
            # pysnmp raised on input it should have rejected: still just garbage from a sender
            self._reject(sender, "malformed", f"{type(exc).__name__}")
            return
        if self._accepted:
            return
        after = self._drop_counts(engine)
        why: Verdict = "malformed"
        for (_module, _name, verdict), old, new in zip(_DROP_COUNTERS, before, after, strict=True):
            if new > old:
                why = verdict
                break
        self._reject(sender, why, "")

    @staticmethod
    def _drop_counts(engine: Any) -> list[int]:
        builder = engine.get_mib_builder()
        return [int(builder.import_symbols(module, name)[0].syntax) for module, name, _ in _DROP_COUNTERS]

    def _reject(self, sender: str, why: Verdict, detail: str) -> None:
        self.counts[f"traps_{why}"] += 1
        if (sender, why) in self._logged:
            return
        if len(self._logged) >= _MAX_LOGGED_SENDERS:
            self._logged.clear()
        self._logged.add((sender, why))
        log.warning("trap_rejected", sender=sender, why=why, detail=detail or None, note="logged once per sender")

    def _notification(
        self, engine: Any, _state: Any, _ctx_engine: Any, _ctx_name: Any, varbinds: Iterable[Any], _cb: Any
    ) -> None:
        self._accepted = True
        try:
            context = engine.observer.get_execution_context("rfc3412.receiveMessage:request")
            if not self._level_ok(context):
                self._reject(self._sender, "bad_credentials", "below the user's configured security level")
                return
            values = {tuple(oid): value for oid, value in varbinds}
            self._handle(self._sender, values)
        except Exception:
            log.exception("trap_handling_failed", sender=self._sender)
            self.counts["traps_malformed"] += 1

    def _level_ok(self, context: Mapping[str, Any]) -> bool:
        """Tell whether a v3 trap used at least its user's configured security level.

        USM accepts a message at a lower level than the user supports (authNoPriv for an
        authPriv user), which would let a trap through without the privacy the operator asked for.
        """
        if context.get("securityModel") != _USM:
            return True
        name = context.get("securityName")
        user = bytes(name).decode(errors="replace") if name is not None else ""
        needed = self._levels.get(user, _LEVELS["authPriv"])
        return int(context.get("securityLevel", 0)) >= needed

    def _handle(self, sender: str, values: Mapping[tuple[int, ...], Any]) -> None:
        ref = self._device_for(sender, values)
        if ref is None:
            self._reject(sender, "unknown_sender", "")
            return
        trap_oid = values.get(_SNMP_TRAP_OID)
        oid = tuple(trap_oid) if trap_oid is not None else ()
        name = _STANDARD.get(oid)
        enterprise = self._enterprise.get(oid)
        if name is None and enterprise is None:
            self._reject(sender, "ignored", f"trap {'.'.join(map(str, oid))} is not configured")
            return
        self.counts["traps_accepted"] += 1
        tags = {"device": ref.device, "site": ref.site, "trap": name or (enterprise.name if enterprise else "")}
        if_index, port, detail = _port_and_detail(values)
        if if_index is not None:
            # the port's configured name, as the interface measurement tags it, when the poller knows it
            port = self._port_name(ref.device, if_index) or port
        if port and name in ("linkDown", "linkUp"):
            tags["port"] = port
        if enterprise is not None and enterprise.meaning:
            detail = f"{enterprise.meaning}; {detail}" if detail else enterprise.meaning
        self._emit([Sample("trap", tags, {"count": 1, "detail": detail[:500]}, now_ns())])
        log.info("trap_received", device=ref.device, trap=tags["trap"], port=tags.get("port"), sender=sender)
        if name in ("linkDown", "linkUp"):
            polled = self._poll_now(ref.device, _LINK_CHECKS)
        elif name is not None or (enterprise is not None and enterprise.poll):
            polled = self._poll_now(ref.device, None)
        else:
            polled = 0
        self.counts["traps_polls"] += polled

    def _device_for(self, sender: str, values: Mapping[tuple[int, ...], Any]) -> _DeviceRef | None:
        ref = self._by_address.get(_normal(sender))
        if ref is not None:
            return ref
        # Behind a NAT or a relay, or a v1 trap: the agent's own address in the trap.
        agent = values.get(_SNMP_TRAP_ADDRESS)
        if agent is not None:
            try:
                return self._by_address.get(str(ipaddress.ip_address(bytes(agent.asOctets()))))
            except (ValueError, AttributeError):
                return None
        return None

    async def report(self, interval: Callable[[], float]) -> None:
        """Write the counters every ``interval()`` seconds (the scheduler's stats_interval), from start."""
        while True:
            self._emit([self.stats_sample()])
            await asyncio.sleep(interval())

    def stats(self) -> dict[str, int]:
        """Return the receiver's counters since start: the ``netwatch`` fields for ``component=traps``."""
        return dict(self.counts)

    def stats_sample(self) -> Sample:
        """Return the receiver's counters as a ``netwatch{component=traps}`` sample."""
        return Sample("netwatch", {"instance": self._instance, "component": "traps"}, self.stats(), now_ns())


def port_lookup(probes: Mapping[tuple[str, str], tuple[object, object]]) -> Callable[[str, int], str | None]:
    """Return a lookup of a port's name by ifIndex in the daemon's probe cache (its snmp probes)."""

    def lookup(device: str, if_index: int) -> str | None:
        entry = probes.get((device, "snmp"))
        named = getattr(entry[1], "port_named", None) if entry else None
        found = named(if_index) if callable(named) else None
        return found if isinstance(found, str) else None

    return lookup


def _normal(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


_OPER = {1: "up", 2: "down", 3: "testing", 5: "dormant", 6: "notPresent", 7: "lowerLayerDown"}


def _port_and_detail(values: Mapping[tuple[int, ...], Any]) -> tuple[int | None, str | None, str]:
    """Return the ifIndex and port a link trap names (ifName, ifDescr, else ``ifIndex N``) and a short detail."""
    if_index: int | None = None
    name: str | None = None
    descr: str | None = None
    oper: int | None = None
    for oid, value in values.items():
        column, index = oid[:-1], oid[-1]
        if column == _IF_INDEX:
            if_index = as_int(value)
        elif column == _IF_NAME:
            name, if_index = as_text(value), if_index or index
        elif column == _IF_DESCR:
            descr, if_index = as_text(value), if_index or index
        elif column == _IF_OPER:
            oper, if_index = as_int(value), if_index or index
    port = name or descr or (f"ifIndex {if_index}" if if_index is not None else None)
    parts = []
    if if_index is not None:
        parts.append(f"ifIndex {if_index}")
    if oper is not None:
        parts.append(f"ifOperStatus {_OPER.get(oper, oper)}")
    return if_index, port, ", ".join(parts)
