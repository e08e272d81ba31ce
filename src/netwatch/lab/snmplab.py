"""The lab's SNMP agent: one asyncio process answering for many simulated devices.

Every device (:class:`~netwatch.lab.simdevice.SimDevice`) listens on a UDP socket of its own, on
its own loopback address (127.20.0.5:16100 ...), so one device can fall silent while the rest
answer, and its traps leave from its own address, as a poller and a trap receiver expect. Port
161 is used only when a device asks for it (and the process may bind it).

What the agent does, as a real one would:

* SNMP v1 and v2c, with each device's community; a wrong community gets no answer at all;
* GET, GETNEXT and GETBULK in lexicographic OID order, with noSuchObject, noSuchInstance and
  endOfMibView (v1: noSuchName, and Counter64 objects skipped, as v1 cannot carry them);
* answers stay within a maximum message size (default 1472 bytes, a UDP payload that needs no IP
  fragmentation on Ethernet): a GETBULK answers with fewer varbinds, anything else with tooBig;
* SET is refused (noAccess; the lab's devices are read-only); garbage is dropped and counted;
* a silenced device drops every request.

SNMPv3 is not implemented: netwatch's v3 (USM, SHA-2, AES) is tested against net-snmp's snmpd;
v3 messages here are dropped and counted as unsupported.

Values come from the devices' views (:mod:`netwatch.lab.mibview`), computed at request time; the
agent keeps counters of what it did (:class:`SnmpLabStats`) for benchmarks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import random
import resource
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Final

import structlog

from netwatch.lab import ber
from netwatch.lab.ber import BerError, Message
from netwatch.lab.mibview import MibView
from netwatch.lab.simdevice import SimDevice, TrapKind

log = structlog.get_logger(__name__)

#: A UDP payload that fits one Ethernet frame without IP fragmentation (1500 - 20 - 8).
DEFAULT_MAX_MESSAGE_SIZE: Final = 1472
#: Datagrams read from one socket per wake-up, so a flood on one device does not starve the others.
_BATCH: Final = 64
#: Descriptors kept free beyond the agent's sockets for everything else in the process.
_FD_HEADROOM: Final = 256
_REQUESTS: Final = frozenset({ber.GET, ber.GET_NEXT, ber.GET_BULK, ber.SET})
_END_OF_MIB_VIEW: Final = ber.encode_value(ber.END_OF_MIB_VIEW, None)
#: SEQUENCE headers of short varbinds
_SEQ: Final = tuple(bytes((ber.SEQUENCE, n)) for n in range(0x80))

VarBinds = list[bytes]


class SnmpLabError(Exception):
    """The agent cannot serve a device (its address and port cannot be bound)."""


@dataclass
class SnmpLabStats:
    """What the agent did since it started (for benchmarks and the lab's status)."""

    requests: int = 0  # datagrams received
    answered: int = 0
    varbinds: int = 0  # in answers
    silenced: int = 0  # dropped: the device is silenced
    bad_community: int = 0  # dropped: wrong community
    malformed: int = 0  # dropped: not SNMP v1/v2c BER
    unsupported: int = 0  # dropped: SNMPv3, GETBULK in v1, PDUs an agent does not take
    too_big: int = 0  # answered tooBig
    errors: int = 0  # answered genErr: computing a value failed
    send_failed: int = 0
    traps: int = 0

    @property
    def dropped(self) -> int:
        return self.silenced + self.bad_community + self.malformed + self.unsupported

    def as_dict(self) -> dict[str, int]:
        return {**dataclasses.asdict(self), "dropped": self.dropped}


def raise_fd_limit(needed: int) -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit if ``needed`` more descriptors would not fit.

    Ten thousand devices are ten thousand sockets; the usual soft limit is 1024. Returns the soft
    limit in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 64
    want = in_use + needed + _FD_HEADROOM
    if soft == resource.RLIM_INFINITY or want <= soft:
        return soft
    target = hard if hard != resource.RLIM_INFINITY else want
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    log.info("snmplab_fd_limit_raised", soft=target, was=soft, needed=want)
    return target


class SnmpLab:
    """Serve SNMP for many :class:`SimDevice` objects from one event loop.

    Devices added before :meth:`start` are bound there (all failures reported at once); devices
    added later are bound by :meth:`add` itself.
    """

    def __init__(self, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        if max_message_size < 484:
            raise ValueError("SNMP agents must accept messages of at least 484 bytes (RFC 3417)")
        self.max_message_size = max_message_size
        self.stats = SnmpLabStats()
        self._devices: dict[str, SimDevice] = {}
        self._socks: dict[str, socket.socket] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buffer = bytearray(65536)
        self._view = memoryview(self._buffer)
        self._trap_ids = itertools.count(random.randrange(1, 1 << 30))
        self._logged: set[str] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind every device added so far and start answering; SnmpLabError lists what failed."""
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        raise_fd_limit(len(self._devices))
        failures: list[str] = []
        for device in self._devices.values():
            try:
                self._bind(device)
            except SnmpLabError as exc:
                failures.append(str(exc))
        if failures:
            await self.close()
            more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
            raise SnmpLabError("; ".join(failures[:5]) + more)
        log.info("snmplab_started", devices=len(self._devices))

    async def close(self) -> None:
        """Stop answering and close every socket; devices stay added (start again to serve them)."""
        for device_id in list(self._socks):
            self._unbind(device_id)
        self._loop = None

    async def __aenter__(self) -> SnmpLab:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- devices -----------------------------------------------------------------------------

    def add(self, device: SimDevice) -> None:
        """Serve ``device`` (at once if the agent runs); SnmpLabError if its address cannot be bound."""
        if device.id in self._devices:
            raise ValueError(f"device {device.id!r} is already in the lab")
        self._devices[device.id] = device
        if self._loop is not None:
            raise_fd_limit(1)
            try:
                self._bind(device)
            except SnmpLabError:
                del self._devices[device.id]
                raise

    def remove(self, device_id: str) -> SimDevice:
        """Stop serving a device and return it."""
        device = self.device(device_id)
        self._unbind(device_id)
        del self._devices[device_id]
        return device

    def device(self, device_id: str) -> SimDevice:
        try:
            return self._devices[device_id]
        except KeyError:
            raise KeyError(f"no device {device_id!r} in the SNMP lab") from None

    def __iter__(self) -> Iterator[SimDevice]:
        return iter(list(self._devices.values()))

    def __len__(self) -> int:
        return len(self._devices)

    def _bind(self, device: SimDevice) -> None:
        assert self._loop is not None
        family = socket.AF_INET6 if ":" in device.address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((device.address, device.snmp_port))
        except OSError as exc:
            sock.close()
            raise SnmpLabError(
                f"{device.id}: cannot listen on {device.address}:{device.snmp_port}: {exc.strerror or exc}"
            ) from None
        self._loop.add_reader(sock.fileno(), self._readable, sock, device)
        self._socks[device.id] = sock

    def _unbind(self, device_id: str) -> None:
        sock = self._socks.pop(device_id, None)
        if sock is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(sock.fileno())
        sock.close()

    # -- requests ----------------------------------------------------------------------------

    def _readable(self, sock: socket.socket, device: SimDevice) -> None:
        for _ in range(_BATCH):
            try:
                n, addr = sock.recvfrom_into(self._buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # an ICMP error queued on the socket; the next read goes on
            reply = self.answer(device, bytes(self._view[:n]))
            if reply is None:
                continue
            try:
                sock.sendto(reply, addr)
            except OSError:
                self.stats.send_failed += 1  # a full socket buffer: UDP loses it, as it would

    def answer(self, device: SimDevice, data: bytes, now: float | None = None) -> bytes | None:
        """Return the response to one datagram for ``device``, or None to send nothing."""
        stats = self.stats
        stats.requests += 1
        if device.silent:
            stats.silenced += 1
            return None
        try:
            msg = ber.decode_message(data)
        except BerError:
            stats.malformed += 1
            return None
        if msg.community != device.community_bytes:
            stats.bad_community += 1
            return None
        pdu = msg.pdu_type
        if pdu not in _REQUESTS or (pdu == ber.GET_BULK and msg.version == ber.V1):
            stats.unsupported += 1
            return None
        now = time.time() if now is None else now
        try:
            view = device.view()
            if pdu == ber.GET:
                status, index, varbinds = self._get(view, msg, now)
            elif pdu == ber.GET_NEXT:
                status, index, varbinds = self._get_next(view, msg, now)
            elif pdu == ber.GET_BULK:
                status, index, varbinds = self._get_bulk(view, msg, now)
            else:
                # v2c: the view gives no write access; v1 has only noSuchName for that.
                status = ber.NO_ACCESS if msg.version == ber.V2C else ber.NO_SUCH_NAME
                index, varbinds = 1, _echo(msg)
        except Exception as exc:
            # A bug in one simulated value costs one answer (genErr), never the agent.
            stats.errors += 1
            if device.id not in self._logged:
                self._logged.add(device.id)
                log.exception("snmplab_value_failed", device=device.id, error=repr(exc), note="logged once per device")
            status, index, varbinds = ber.GEN_ERR, 0, _echo(msg)
        reply = ber.encode_response(msg.version, msg.community, msg.request_id, status, index, varbinds)
        if len(reply) > self.max_message_size:
            stats.too_big += 1
            # RFC 3416: tooBig with no varbinds; RFC 1157 (v1) echoes the request's.
            varbinds = _echo(msg) if msg.version == ber.V1 else []
            reply = ber.encode_response(msg.version, msg.community, msg.request_id, ber.TOO_BIG, 0, varbinds)
        elif status == ber.TOO_BIG:
            stats.too_big += 1
        else:
            stats.varbinds += len(varbinds)
        stats.answered += 1
        return reply

    @staticmethod
    def _next(view: MibView, oid: ber.Oid, v1: bool) -> int:
        pos = view.after(oid)
        if v1:
            c64 = view.layout.c64
            while pos in c64:
                pos += 1
        return pos

    def _get(self, view: MibView, msg: Message, now: float) -> tuple[int, int, VarBinds]:
        # The hot path of a lab under a poller: locals, no method calls per varbind.
        v1 = msg.version == ber.V1
        layout = view.layout
        index, names, encoders, values = layout.index, layout.names, layout.encoders, view.values
        out: VarBinds = []
        for n, (oid, _) in enumerate(msg.varbinds):
            pos = index.get(oid)
            if pos is None or (v1 and pos in layout.c64):
                if v1:
                    return ber.NO_SUCH_NAME, n + 1, _echo(msg)
                out.append(ber.encode_varbind(ber.encode_oid(oid), view.missing(oid)))
                continue
            held = values[pos]
            content = names[pos] + (held if isinstance(held, bytes) else encoders[pos](held(now)))
            out.append(_SEQ[len(content)] + content if len(content) < 0x80 else ber.tlv(ber.SEQUENCE, content))
        return ber.NO_ERROR, 0, out

    def _get_next(self, view: MibView, msg: Message, now: float) -> tuple[int, int, VarBinds]:
        v1 = msg.version == ber.V1
        names = view.layout.names
        end = len(view)
        out: VarBinds = []
        for n, (oid, _) in enumerate(msg.varbinds):
            pos = self._next(view, oid, v1)
            if pos >= end:
                if v1:
                    return ber.NO_SUCH_NAME, n + 1, _echo(msg)
                out.append(ber.encode_varbind(ber.encode_oid(oid), _END_OF_MIB_VIEW))
            else:
                out.append(ber.encode_varbind(names[pos], view.value(pos, now)))
        return ber.NO_ERROR, 0, out

    def _get_bulk(self, view: MibView, msg: Message, now: float) -> tuple[int, int, VarBinds]:
        """RFC 3416 4.2.3: N non-repeaters once, then up to M rounds of the R repeaters.

        Varbinds stop where the next would push the message past the size limit (the answer is
        then shorter, not an error), and after a round in which every repeater reached the end.
        """
        budget = self.max_message_size - ber.response_overhead(msg.version, msg.community, msg.request_id)
        names = view.layout.names
        end = len(view)
        requested = msg.varbinds
        non_repeaters = min(max(msg.non_repeaters, 0), len(requested))
        out: VarBinds = []
        size = 0
        for oid, _ in requested[:non_repeaters]:
            pos = view.after(oid)
            if pos >= end:
                vb = ber.encode_varbind(ber.encode_oid(oid), _END_OF_MIB_VIEW)
            else:
                vb = ber.encode_varbind(names[pos], view.value(pos, now))
            size += len(vb)
            if size > budget:
                return _truncated(out)
            out.append(vb)
        cursors = [view.after(oid) for oid, _ in requested[non_repeaters:]]
        last = [ber.encode_oid(oid) for oid, _ in requested[non_repeaters:]]
        for _ in range(max(msg.max_repetitions, 0) if cursors else 0):
            at_end = 0
            for j, pos in enumerate(cursors):
                if pos >= end:
                    vb = ber.encode_varbind(last[j], _END_OF_MIB_VIEW)
                    at_end += 1
                else:
                    last[j] = names[pos]
                    vb = ber.encode_varbind(names[pos], view.value(pos, now))
                    cursors[j] = pos + 1
                size += len(vb)
                if size > budget:
                    return _truncated(out)
                out.append(vb)
            if at_end == len(cursors):
                break
        return ber.NO_ERROR, 0, out

    # -- traps -------------------------------------------------------------------------------

    def send_trap(
        self,
        device: SimDevice | str,
        kind: TrapKind,
        port_name: str | None = None,
        *,
        target_host: str = "127.0.0.1",
        target_port: int = 162,
        community: str | None = None,
    ) -> bool:
        """Send an SNMPv2-Trap from the device's own address (to netwatch's trap receiver, say).

        ``community`` defaults to the device's. A silenced device reaches no one: nothing is sent
        and this returns False.
        """
        dev = self.device(device) if isinstance(device, str) else device
        if dev.silent:
            return False
        uptime, trap_oid, varbinds = dev.trap(kind, port_name)
        text = dev.community if community is None else community
        message = ber.encode_trap_v2c(text.encode(), next(self._trap_ids) % (1 << 31), uptime, trap_oid, varbinds)
        family = socket.AF_INET6 if ":" in dev.address else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            # From the device's address: a trap receiver maps the sender's address to the device.
            sock.bind((dev.address, 0))
            sock.sendto(message, (target_host, target_port))
        self.stats.traps += 1
        return True


def _echo(msg: Message) -> VarBinds:
    return [ber.encode_varbind(ber.encode_oid(oid), ber.encode_value(*value)) for oid, value in msg.varbinds]


def _truncated(out: VarBinds) -> tuple[int, int, VarBinds]:
    # Not even one varbind fits: that is tooBig; otherwise a shorter answer is a good one.
    return (ber.NO_ERROR, 0, out) if out else (ber.TOO_BIG, 0, [])
