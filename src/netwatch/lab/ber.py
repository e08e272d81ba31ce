"""BER for SNMP v1 and v2c messages: what the lab's agent decodes and answers with.

SNMP uses a small corner of BER (X.690): definite lengths, low tag numbers, primitive values. This
module decodes messages (GetRequest, GetNextRequest, GetBulkRequest, SetRequest and the other PDUs
of that shape; Response for tests) and encodes them, SNMPv2-Trap messages included. It is strict
about structure (lengths must add up, no trailing bytes, values in their SNMP ranges): anything
malformed raises :class:`BerError` and nothing else, so an agent can drop garbage with one
``except``. SNMPv3 messages are not decoded (the lab agent speaks v1 and v2c only).

Speed matters more than generality here: the lab answers thousands of simulated devices from one
process. OIDs are decoded and encoded through small caches (pollers ask for the same OIDs every
minute), and a response is assembled from varbinds that are already encoded.

A value is ``(tag, payload)``: ``(INTEGER, 5)``, ``(OCTET_STRING, b"eth0")``,
``(OBJECT_IDENTIFIER, (1, 3, 6))``, ``(IP_ADDRESS, b"\\x7f\\x00\\x00\\x01")``, ``(NULL, None)``...
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

Oid = tuple[int, ...]
Payload = int | bytes | Oid | None
Value = tuple[int, Payload]
VarBind = tuple[Oid, Value]


class BerError(ValueError):
    """A message that is not well-formed SNMP v1/v2c BER (or is SNMPv3, which is not decoded)."""


# -- tags ------------------------------------------------------------------------------------

INTEGER: Final = 0x02
OCTET_STRING: Final = 0x04
NULL: Final = 0x05
OBJECT_IDENTIFIER: Final = 0x06
SEQUENCE: Final = 0x30
IP_ADDRESS: Final = 0x40
COUNTER32: Final = 0x41
GAUGE32: Final = 0x42
TIMETICKS: Final = 0x43
OPAQUE: Final = 0x44
COUNTER64: Final = 0x46
NO_SUCH_OBJECT: Final = 0x80
NO_SUCH_INSTANCE: Final = 0x81
END_OF_MIB_VIEW: Final = 0x82

GET: Final = 0xA0
GET_NEXT: Final = 0xA1
RESPONSE: Final = 0xA2
SET: Final = 0xA3
TRAP_V1: Final = 0xA4
GET_BULK: Final = 0xA5
INFORM: Final = 0xA6
TRAP_V2: Final = 0xA7
REPORT: Final = 0xA8

V1: Final = 0
V2C: Final = 1

#: error-status values (RFC 3416) the lab agent sends
NO_ERROR: Final = 0
TOO_BIG: Final = 1
NO_SUCH_NAME: Final = 2
GEN_ERR: Final = 5
NO_ACCESS: Final = 6

#: PDUs laid out as request-id, error-status, error-index, varbinds (the v1 Trap-PDU is not)
_PDUS: Final = frozenset({GET, GET_NEXT, RESPONSE, SET, GET_BULK, INFORM, TRAP_V2, REPORT})
#: application types that are unsigned, with their ceiling
_UNSIGNED: Final = {COUNTER32: 1 << 32, GAUGE32: 1 << 32, TIMETICKS: 1 << 32, COUNTER64: 1 << 64}
_EMPTY: Final = frozenset({NULL, NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW})
_NULL_VALUE: Final[Value] = (NULL, None)
_INT32_MIN: Final = -(1 << 31)
_INT32_END: Final = 1 << 31
_SUB_ID_END: Final = 1 << 32
#: RFC 2578: an OID has at most 128 sub-identifiers
MAX_OID_LENGTH: Final = 128

SYS_UPTIME_0: Final[Oid] = (1, 3, 6, 1, 2, 1, 1, 3, 0)
SNMP_TRAP_OID_0: Final[Oid] = (1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0)


@dataclass(frozen=True, slots=True)
class Message:
    """One SNMP v1/v2c message. In a GetBulkRequest, ``error_status`` is non-repeaters and
    ``error_index`` max-repetitions (the same fields on the wire)."""

    version: int
    community: bytes
    pdu_type: int
    request_id: int
    error_status: int
    error_index: int
    varbinds: tuple[VarBind, ...]

    @property
    def non_repeaters(self) -> int:
        return self.error_status

    @property
    def max_repetitions(self) -> int:
        return self.error_index


# -- encoding --------------------------------------------------------------------------------

_BYTE: Final = tuple(bytes((i,)) for i in range(256))
_CACHE_LIMIT: Final = 1 << 16
_oid_bytes: dict[Oid, bytes] = {}
_oid_tuples: dict[bytes, Oid] = {}


def encode_length(n: int) -> bytes:
    """Return a definite-form length."""
    if n < 0x80:
        return _BYTE[n]
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return _BYTE[0x80 | len(body)] + body


def tlv(tag: int, content: bytes) -> bytes:
    """Return one tag-length-value."""
    n = len(content)
    if n < 0x80:
        return _BYTE[tag] + _BYTE[n] + content
    return _BYTE[tag] + encode_length(n) + content


def _twos(n: int) -> bytes:
    # The shortest two's complement form: the sign bit must fit, so a byte more than the bits need.
    return n.to_bytes((n if n >= 0 else ~n).bit_length() // 8 + 1, "big", signed=True)


def encode_integer(n: int) -> bytes:
    """Return an INTEGER (Integer32)."""
    if not _INT32_MIN <= n < _INT32_END:
        raise ValueError(f"INTEGER {n} is outside Integer32")
    if 0 <= n < 0x80:
        return b"\x02\x01" + _BYTE[n]
    return tlv(INTEGER, _twos(n))


def encode_unsigned(tag: int, n: int) -> bytes:
    """Return a Counter32, Gauge32, TimeTicks or Counter64."""
    if not 0 <= n < _UNSIGNED[tag]:
        raise ValueError(f"{n} does not fit tag 0x{tag:02x}")
    if n < 0x80:
        return _BYTE[tag] + b"\x01" + _BYTE[n]
    return tlv(tag, _twos(n))


def _oid_content(oid: Oid) -> bytes:
    if len(oid) < 2 or len(oid) > MAX_OID_LENGTH:
        raise ValueError(f"an OID has 2 to {MAX_OID_LENGTH} sub-identifiers: {oid!r}")
    first, second = oid[0], oid[1]
    if first not in (0, 1, 2) or (first < 2 and not 0 <= second < 40) or not 0 <= second < _SUB_ID_END:
        raise ValueError(f"bad first arcs in OID {oid!r}")
    if any(not 0 <= sub < _SUB_ID_END for sub in oid[2:]):
        raise ValueError(f"a sub-identifier out of range in OID {oid!r}")
    out = bytearray()
    for sub in (first * 40 + second, *oid[2:]):
        if 0 <= sub < 0x80:
            out.append(sub)
            continue
        if not 0 <= sub < _SUB_ID_END + 80:  # the first sub-identifier holds two arcs: 2.x is 80 + x
            raise ValueError(f"sub-identifier {sub} out of range in OID {oid!r}")
        chunk = bytearray()
        while sub:
            chunk.append(0x80 | (sub & 0x7F))
            sub >>= 7
        chunk[0] &= 0x7F
        chunk.reverse()
        out += chunk
    return bytes(out)


def encode_oid(oid: Oid) -> bytes:
    """Return an OBJECT IDENTIFIER (cached: an agent encodes the same names over and over)."""
    found = _oid_bytes.get(oid)
    if found is None:
        found = tlv(OBJECT_IDENTIFIER, _oid_content(oid))
        if len(_oid_bytes) >= _CACHE_LIMIT:
            _oid_bytes.clear()
        _oid_bytes[oid] = found
    return found


def encode_value(tag: int, payload: Payload) -> bytes:
    """Return a varbind value of any type this module knows."""
    if tag == INTEGER and isinstance(payload, int):
        return encode_integer(payload)
    if tag in _UNSIGNED and isinstance(payload, int):
        return encode_unsigned(tag, payload)
    if tag in (OCTET_STRING, OPAQUE) and isinstance(payload, bytes):
        return tlv(tag, payload)
    if tag == OBJECT_IDENTIFIER and isinstance(payload, tuple):
        return encode_oid(payload)
    if tag == IP_ADDRESS and isinstance(payload, bytes) and len(payload) == 4:
        return tlv(tag, payload)
    if tag in _EMPTY:
        return _BYTE[tag] + b"\x00"
    raise ValueError(f"cannot encode {payload!r} as tag 0x{tag:02x}")


def encode_varbind(name: bytes, value: bytes) -> bytes:
    """Return a varbind from an encoded name (OID) and value."""
    return tlv(SEQUENCE, name + value)


def encode_pdu_message(
    version: int,
    community: bytes,
    pdu_type: int,
    request_id: int,
    error_status: int,
    error_index: int,
    varbinds: Sequence[bytes],
) -> bytes:
    """Return a whole message around already-encoded varbinds (see :func:`encode_varbind`)."""
    pdu = tlv(
        pdu_type,
        encode_integer(request_id)
        + encode_integer(error_status)
        + encode_integer(error_index)
        + tlv(SEQUENCE, b"".join(varbinds)),
    )
    return tlv(SEQUENCE, encode_integer(version) + tlv(OCTET_STRING, community) + pdu)


def encode_response(
    version: int, community: bytes, request_id: int, error_status: int, error_index: int, varbinds: Sequence[bytes]
) -> bytes:
    """Return a Response message around already-encoded varbinds."""
    return encode_pdu_message(version, community, RESPONSE, request_id, error_status, error_index, varbinds)


def response_overhead(version: int, community: bytes, request_id: int) -> int:
    """Return at most how many bytes a Response adds around its varbinds (for size limits).

    The three enclosing lengths grow from one byte to three as the varbinds pass 127 bytes (and
    stay three up to 64 KiB), so this counts them at three.
    """
    return len(encode_response(version, community, request_id, 0, 0, ())) + 6


def encode_message(message: Message) -> bytes:
    """Return a message with decoded varbinds (traps, tests; the agent uses encode_response)."""
    varbinds = [encode_varbind(encode_oid(oid), encode_value(*value)) for oid, value in message.varbinds]
    return encode_pdu_message(
        message.version,
        message.community,
        message.pdu_type,
        message.request_id,
        message.error_status,
        message.error_index,
        varbinds,
    )


def encode_trap_v2c(
    community: bytes, request_id: int, uptime_ticks: int, trap_oid: Oid, varbinds: Sequence[VarBind] = ()
) -> bytes:
    """Return an SNMPv2-Trap message: sysUpTime.0 and snmpTrapOID.0 first, as RFC 3416 requires."""
    return encode_message(
        Message(
            V2C,
            community,
            TRAP_V2,
            request_id,
            0,
            0,
            (
                (SYS_UPTIME_0, (TIMETICKS, uptime_ticks)),
                (SNMP_TRAP_OID_0, (OBJECT_IDENTIFIER, trap_oid)),
                *varbinds,
            ),
        )
    )


# -- decoding --------------------------------------------------------------------------------


def _header(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """Return (tag, start, end) of the contents of the TLV at ``pos``, which must end by ``end``."""
    if pos + 2 > end:
        raise BerError("truncated: a tag and length are missing")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise BerError("high-tag-number form is not used by SNMP")
    n = data[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0:
            raise BerError("indefinite lengths are not allowed")
        if k > 4:
            raise BerError(f"a length of {k} bytes")
        if pos + k > end:
            raise BerError("truncated inside a length")
        n = int.from_bytes(data[pos : pos + k], "big")
        pos += k
    if pos + n > end:
        raise BerError(f"truncated: {n} bytes announced, {end - pos} left")
    return tag, pos, pos + n


def _expect(data: bytes, pos: int, end: int, tag: int, what: str) -> tuple[int, int]:
    found, start, stop = _header(data, pos, end)
    if found != tag:
        raise BerError(f"{what}: expected tag 0x{tag:02x}, got 0x{found:02x}")
    return start, stop


def _integer(data: bytes, start: int, stop: int) -> int:
    if start == stop:
        raise BerError("an empty integer")
    if stop - start > 9:
        raise BerError("an integer longer than 9 bytes")
    return int.from_bytes(data[start:stop], "big", signed=True)


def _int32(data: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    start, stop = _expect(data, pos, end, INTEGER, what)
    n = _integer(data, start, stop)
    if not _INT32_MIN <= n < _INT32_END:
        raise BerError(f"{what} {n} is outside Integer32")
    return n, stop


def decode_oid(content: bytes) -> Oid:
    """Return the OID whose contents (without tag and length) are ``content``."""
    found = _oid_tuples.get(content)
    if found is not None:
        return found
    if not content:
        raise BerError("an empty OID")
    if content[-1] & 0x80:
        raise BerError("an OID ends inside a sub-identifier")
    if content.isascii():
        # Every sub-identifier below 128 (most of MIB-2): the bytes are the arcs.
        subs = list(content)
    else:
        subs = []
        acc = 0
        fresh = True
        for b in content:
            if fresh and b == 0x80:
                raise BerError("a sub-identifier with a leading 0x80 (not minimal)")
            acc = (acc << 7) | (b & 0x7F)
            if b & 0x80:
                fresh = False
                if acc >= _SUB_ID_END + 80:
                    raise BerError("a sub-identifier beyond 32 bits")
            else:
                if subs and acc >= _SUB_ID_END:
                    raise BerError("a sub-identifier beyond 32 bits")
                subs.append(acc)
                acc = 0
                fresh = True
    first = subs[0]
    if first >= 80:
        if first - 80 >= _SUB_ID_END:
            raise BerError("a sub-identifier beyond 32 bits")
        head = (2, first - 80)
    else:
        head = divmod(first, 40)
    if len(subs) + 1 > MAX_OID_LENGTH:
        raise BerError(f"an OID longer than {MAX_OID_LENGTH} sub-identifiers")
    oid = (*head, *subs[1:])
    if len(_oid_tuples) >= _CACHE_LIMIT:
        _oid_tuples.clear()
    _oid_tuples[bytes(content)] = oid
    return oid


def decode_value(data: bytes, pos: int = 0, end: int | None = None) -> tuple[Value, int]:
    """Decode the value TLV at ``pos``; return it and where it ends."""
    end = len(data) if end is None else end
    tag, start, stop = _header(data, pos, end)
    if tag == INTEGER:
        n = _integer(data, start, stop)
        if not _INT32_MIN <= n < _INT32_END:
            raise BerError(f"INTEGER {n} is outside Integer32")
        return (tag, n), stop
    if tag in _UNSIGNED:
        n = _integer(data, start, stop)
        if not 0 <= n < _UNSIGNED[tag]:
            raise BerError(f"{n} is out of range for tag 0x{tag:02x}")
        return (tag, n), stop
    if tag in (OCTET_STRING, OPAQUE):
        return (tag, bytes(data[start:stop])), stop
    if tag == OBJECT_IDENTIFIER:
        return (tag, decode_oid(data[start:stop])), stop
    if tag == IP_ADDRESS:
        if stop - start != 4:
            raise BerError(f"an IpAddress of {stop - start} bytes")
        return (tag, bytes(data[start:stop])), stop
    if tag in _EMPTY:
        if stop != start:
            raise BerError(f"tag 0x{tag:02x} with contents")
        return (tag, None), stop
    raise BerError(f"unknown value tag 0x{tag:02x}")


def decode_message(data: bytes) -> Message:
    """Decode one SNMP v1/v2c message; raise BerError (only) if it is anything else."""
    try:
        return _decode_message(data)
    except BerError:
        raise
    except (IndexError, ValueError, TypeError, OverflowError) as exc:
        # Belt and braces: the checks above should catch everything first; a slip must still
        # look like garbage to the caller, not crash it.
        raise BerError(f"malformed message: {exc}") from None


def _decode_message(data: bytes) -> Message:
    end = len(data)
    start, stop = _expect(data, 0, end, SEQUENCE, "message")
    if stop != end:
        raise BerError(f"{end - stop} bytes after the message")
    tag, vstart, vstop = _header(data, start, end)
    if tag != INTEGER:
        raise BerError("message: version is not an INTEGER")
    version = _integer(data, vstart, vstop)
    if version not in (V1, V2C):
        raise BerError(f"SNMP version field {version}: only v1 (0) and v2c (1) are decoded")
    cstart, cstop = _expect(data, vstop, end, OCTET_STRING, "community")
    community = bytes(data[cstart:cstop])
    pdu_type, pstart, pstop = _header(data, cstop, end)
    if pstop != end:
        raise BerError("bytes after the PDU")
    if pdu_type not in _PDUS:
        raise BerError(f"PDU type 0x{pdu_type:02x} is not decoded")
    request_id, pos = _int32(data, pstart, pstop, "request-id")
    error_status, pos = _int32(data, pos, pstop, "error-status")
    error_index, pos = _int32(data, pos, pstop, "error-index")
    lstart, lstop = _expect(data, pos, pstop, SEQUENCE, "varbind list")
    if lstop != pstop:
        raise BerError("bytes after the varbind list")
    varbinds: list[VarBind] = []
    pos = lstart
    while pos < lstop:
        # Fast path for what every request carries: short lengths, a known OID, a NULL value.
        if pos + 4 <= lstop and data[pos] == SEQUENCE and data[pos + 1] < 0x80 and data[pos + 2] == OBJECT_IDENTIFIER:
            bstop = pos + 2 + data[pos + 1]
            nstop = pos + 4 + data[pos + 3]
            if data[pos + 3] < 0x80 and bstop == nstop + 2 and bstop <= lstop and data[nstop:bstop] == b"\x05\x00":
                oid = _oid_tuples.get(data[pos + 4 : nstop])
                if oid is not None:
                    varbinds.append((oid, _NULL_VALUE))
                    pos = bstop
                    continue
        bstart, bstop = _expect(data, pos, lstop, SEQUENCE, "varbind")
        nstart, nstop = _expect(data, bstart, bstop, OBJECT_IDENTIFIER, "varbind name")
        value, vend = decode_value(data, nstop, bstop)
        if vend != bstop:
            raise BerError("bytes after a varbind's value")
        varbinds.append((decode_oid(data[nstart:nstop]), value))
        pos = bstop
    return Message(version, community, pdu_type, request_id, error_status, error_index, tuple(varbinds))
