"""The lab's BER codec against net-snmp's (what snmpget, snmpbulkget and snmptrap put on the wire
and make of our answers), round trips of every type, and malformed input that must raise BerError
and nothing else."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch.lab import ber
from netwatch.lab.ber import BerError, Message
from tests.servers.common import require_binary

NO_MIBS = ("-M", "/nonexistent", "-m", "")


@contextmanager
def manager(tool: str, *args: str) -> Iterator[tuple[socket.socket, subprocess.Popen[bytes]]]:
    """Run a net-snmp command against a UDP socket of ours (to read what it sends, and answer)."""
    binary = require_binary(tool, "snmp")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        port = sock.getsockname()[1]
        argv = [binary, *NO_MIBS, *[a.replace("{agent}", f"127.0.0.1:{port}") for a in args]]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            yield sock, proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def output(proc: subprocess.Popen[bytes]) -> list[str]:
    out, _ = proc.communicate(timeout=5)
    return out.decode().splitlines()


# -- against net-snmp ---------------------------------------------------------------------------


def test_snmpget_request_decodes_and_reencodes_byte_for_byte() -> None:
    """What snmpget sends (v2c GET, two OIDs, one with sub-identifiers over 127) decodes to the
    message it means, and our encoder writes exactly net-snmp's bytes for it."""
    with manager("snmpget", "-v2c", "-c", "lab-secret", "-r", "0", "-t", "1", "{agent}", "1.3.6.1.2.1.1.3.0",
                 "1.3.6.1.4.1.41112.1.6.1.2.1.8.1") as (sock, _proc):  # fmt: skip
        raw, _ = sock.recvfrom(65535)
    msg = ber.decode_message(raw)
    assert (msg.version, msg.community, msg.pdu_type) == (ber.V2C, b"lab-secret", ber.GET)
    assert (msg.error_status, msg.error_index) == (0, 0)
    assert msg.varbinds == (
        ((1, 3, 6, 1, 2, 1, 1, 3, 0), (ber.NULL, None)),
        ((1, 3, 6, 1, 4, 1, 41112, 1, 6, 1, 2, 1, 8, 1), (ber.NULL, None)),
    )
    assert ber.encode_message(msg) == raw


@pytest.mark.parametrize(
    ("tool", "args", "version", "pdu", "fields"),
    [
        ("snmpgetnext", ("-v1",), ber.V1, ber.GET_NEXT, (0, 0)),
        ("snmpbulkget", ("-v2c", "-Cn1", "-Cr7"), ber.V2C, ber.GET_BULK, (1, 7)),
    ],
)
def test_getnext_and_getbulk_requests(
    tool: str, args: tuple[str, ...], version: int, pdu: int, fields: tuple[int, int]
) -> None:
    """A v1 GETNEXT and a GETBULK with non-repeaters 1 and max-repetitions 7, as net-snmp writes them."""
    with manager(tool, *args, "-c", "c", "-r", "0", "-t", "1", "{agent}", "1.3.6.1.2.1.1", "1.3.6.1.2.1.2.2.1.2") as (
        sock,
        _proc,
    ):
        raw, _ = sock.recvfrom(65535)
    msg = ber.decode_message(raw)
    assert (msg.version, msg.pdu_type) == (version, pdu)
    assert (msg.non_repeaters, msg.max_repetitions) == fields
    assert [oid for oid, _ in msg.varbinds] == [(1, 3, 6, 1, 2, 1, 1), (1, 3, 6, 1, 2, 1, 2, 2, 1, 2)]
    assert ber.encode_message(msg) == raw


EVERY_TYPE: list[tuple[str, ber.Value, str]] = [
    ("1.3.6.1.2.1.1.1.0", (ber.OCTET_STRING, b"lab router"), 'STRING: "lab router"'),
    ("1.3.6.1.2.1.1.2.0", (ber.OBJECT_IDENTIFIER, (1, 3, 6, 1, 4, 1, 8072, 3, 2, 10)), "OID: .1.3.6.1.4.1.8072.3.2.10"),
    ("1.3.6.1.2.1.1.3.0", (ber.TIMETICKS, 4_000_000_000), "Timeticks: (4000000000) 462 days, 23:06:40.00"),
    ("1.3.6.1.2.1.2.2.1.5.5", (ber.GAUGE32, 1_000_000_000), "Gauge32: 1000000000"),
    ("1.3.6.1.2.1.2.2.1.6.5", (ber.OCTET_STRING, bytes.fromhex("0011223344ff")), "Hex-STRING: 00 11 22 33 44 FF "),
    ("1.3.6.1.2.1.2.2.1.10.5", (ber.COUNTER32, 2**32 - 1), "Counter32: 4294967295"),
    ("1.3.6.1.2.1.2.2.1.13.5", (ber.INTEGER, -129), "INTEGER: -129"),
    ("1.3.6.1.2.1.4.20.1.1.10.0.0.1", (ber.IP_ADDRESS, bytes([10, 0, 0, 1])), "IpAddress: 10.0.0.1"),
    ("1.3.6.1.2.1.31.1.1.1.6.5", (ber.COUNTER64, 2**64 - 1), "Counter64: 18446744073709551615"),
    ("1.3.6.1.2.1.31.1.1.1.6.9", (ber.NO_SUCH_INSTANCE, None), "No Such Instance currently exists at this OID"),
    ("1.3.6.1.4.1.9.9.1.0", (ber.NO_SUCH_OBJECT, None), "No Such Object available on this agent at this OID"),
]


def test_snmpget_reads_our_response_of_every_type() -> None:
    """snmpget prints what our Response says, for every value type an agent sends."""
    oids = [oid for oid, _, _ in EVERY_TYPE]
    with manager("snmpget", "-v2c", "-c", "c", "-On", "-r", "0", "-t", "2", "{agent}", *oids) as (sock, proc):
        raw, addr = sock.recvfrom(65535)
        request = ber.decode_message(raw)
        varbinds = tuple((oid, value) for (oid, _), (_, value, _) in zip(request.varbinds, EVERY_TYPE, strict=True))
        reply = Message(ber.V2C, b"c", ber.RESPONSE, request.request_id, 0, 0, varbinds)
        sock.sendto(ber.encode_message(reply), addr)
        lines = output(proc)
    assert lines == [f".{oid} = {text}" for oid, _, text in EVERY_TYPE]


def test_snmpgetnext_reads_end_of_mib_view() -> None:
    """The end of the MIB, as snmpwalk sees it at the end of a walk."""
    with manager("snmpgetnext", "-v2c", "-c", "c", "-On", "-r", "0", "-t", "2", "{agent}", "1.3.6.1.9") as (sock, proc):
        raw, addr = sock.recvfrom(65535)
        request = ber.decode_message(raw)
        end: ber.VarBind = ((1, 3, 6, 1, 9), (ber.END_OF_MIB_VIEW, None))
        reply = Message(ber.V2C, b"c", ber.RESPONSE, request.request_id, 0, 0, (end,))
        sock.sendto(ber.encode_message(reply), addr)
        lines = output(proc)
    assert lines == [".1.3.6.1.9 = No more variables left in this MIB View (It is past the end of the MIB tree)"]


def test_trap_is_byte_for_byte_what_snmptrap_sends() -> None:
    """A v2c linkDown with sysUpTime 12345 and varbinds of every type: our encoding of it is
    identical to snmptrap's (a message over 255 bytes, so long-form lengths are compared too)."""
    specs: list[tuple[str, str, str, ber.Value]] = [
        ("1.3.6.1.2.1.2.2.1.1.5", "i", "5", (ber.INTEGER, 5)),
        ("1.3.6.1.2.1.2.2.1.8.5", "i", "2", (ber.INTEGER, 2)),
        ("1.3.6.1.2.1.31.1.1.1.1.5", "s", "xe-0/0/1", (ber.OCTET_STRING, b"xe-0/0/1")),
        ("1.3.6.1.2.1.4.20.1.1.10.0.0.1", "a", "10.0.0.1", (ber.IP_ADDRESS, bytes([10, 0, 0, 1]))),
        ("1.3.6.1.2.1.2.2.1.10.5", "c", "4294967295", (ber.COUNTER32, 2**32 - 1)),
        ("1.3.6.1.2.1.2.2.1.5.5", "u", "1000000000", (ber.GAUGE32, 1_000_000_000)),
        ("1.3.6.1.2.1.31.1.1.1.6.5", "C", str(2**64 - 1), (ber.COUNTER64, 2**64 - 1)),
        ("1.3.6.1.2.1.1.2.0", "o", "1.3.6.1.4.1.9.1.1", (ber.OBJECT_IDENTIFIER, (1, 3, 6, 1, 4, 1, 9, 1, 1))),
        ("1.3.6.1.2.1.2.2.1.6.5", "x", "0011223344ff", (ber.OCTET_STRING, bytes.fromhex("0011223344ff"))),
        ("1.3.6.1.2.1.2.2.1.13.5", "i", "-129", (ber.INTEGER, -129)),
        ("1.3.6.1.2.1.1.3.0", "t", "0", (ber.TIMETICKS, 0)),
    ]
    args = [part for oid, kind, text, _ in specs for part in (oid, kind, text)]
    with manager("snmptrap", "-v2c", "-c", "trap-c", "{agent}", "12345", "1.3.6.1.6.3.1.1.5.3", *args) as (sock, proc):
        raw, _ = sock.recvfrom(65535)
        proc.wait(5)
    assert len(raw) > 255
    request_id = ber.decode_message(raw).request_id
    varbinds = [(tuple(int(p) for p in oid.split(".")), value) for oid, _, _, value in specs]
    ours = ber.encode_trap_v2c(b"trap-c", request_id, 12345, (1, 3, 6, 1, 6, 3, 1, 1, 5, 3), varbinds)
    assert ours == raw


# -- round trips ---------------------------------------------------------------------------------

arcs = st.integers(0, 2**32 - 1)
oids = st.one_of(
    st.tuples(st.integers(0, 1), st.integers(0, 39)),
    st.tuples(st.just(2), arcs),
).flatmap(lambda head: st.lists(arcs, max_size=30).map(lambda rest: (*head, *rest)))
values = st.one_of(
    st.tuples(st.just(ber.INTEGER), st.integers(-(2**31), 2**31 - 1)),
    st.tuples(st.sampled_from([ber.COUNTER32, ber.GAUGE32, ber.TIMETICKS]), st.integers(0, 2**32 - 1)),
    st.tuples(st.just(ber.COUNTER64), st.integers(0, 2**64 - 1)),
    st.tuples(st.just(ber.OCTET_STRING), st.binary(max_size=300)),
    st.tuples(st.just(ber.OPAQUE), st.binary(max_size=20)),
    st.tuples(st.just(ber.IP_ADDRESS), st.binary(min_size=4, max_size=4)),
    st.tuples(st.just(ber.OBJECT_IDENTIFIER), oids),
    st.tuples(st.sampled_from([ber.NULL, ber.NO_SUCH_OBJECT, ber.NO_SUCH_INSTANCE, ber.END_OF_MIB_VIEW]), st.none()),
)
messages = st.builds(
    Message,
    version=st.sampled_from([ber.V1, ber.V2C]),
    community=st.binary(max_size=40),
    pdu_type=st.sampled_from([ber.GET, ber.GET_NEXT, ber.RESPONSE, ber.SET, ber.GET_BULK, ber.TRAP_V2, ber.REPORT]),
    request_id=st.integers(-(2**31), 2**31 - 1),
    error_status=st.integers(0, 2**31 - 1),
    error_index=st.integers(0, 2**31 - 1),
    varbinds=st.lists(st.tuples(oids, values), max_size=12).map(tuple),
)


@given(messages)
def test_round_trip(message: Message) -> None:
    """Any message of any types encodes and decodes back to itself."""
    assert ber.decode_message(ber.encode_message(message)) == message


def test_a_known_encoding() -> None:
    """A v2c GET of sysDescr.0 (request-id 1234, community "public"), written out by hand."""
    raw = bytes.fromhex(
        "3027"  # message
        "020101"  # version v2c
        "04067075626c6963"  # "public"
        "a01a"  # GetRequest
        "020204d2020100020100"  # request-id 1234, error-status 0, error-index 0
        "300e300c06082b060102010101000500"  # sysDescr.0 = NULL
    )
    msg = ber.decode_message(raw)
    assert msg == Message(ber.V2C, b"public", ber.GET, 1234, 0, 0, (((1, 3, 6, 1, 2, 1, 1, 1, 0), (ber.NULL, None)),))
    assert ber.encode_message(msg) == raw


# -- malformed input -------------------------------------------------------------------------------


@settings(max_examples=500)
@given(st.binary(max_size=400))
def test_random_bytes_raise_ber_error_only(data: bytes) -> None:
    """Garbage either decodes (rarely) or raises BerError; any other exception fails this test."""
    with suppress(BerError):
        ber.decode_message(data)


@settings(max_examples=300)
@given(messages, st.data())
def test_damaged_messages_raise_ber_error_only(message: Message, data: st.DataObject) -> None:
    """A real message cut short always raises BerError; one with bytes changed, inserted or
    removed anywhere raises BerError or decodes, never anything else."""
    raw = ber.encode_message(message)
    cut = data.draw(st.integers(0, len(raw) - 1), label="cut")
    with pytest.raises(BerError):
        ber.decode_message(raw[:cut])
    at = data.draw(st.integers(0, len(raw) - 1), label="at")
    junk = data.draw(st.binary(min_size=1, max_size=4), label="junk")
    for damaged in (raw[:at] + junk + raw[at + len(junk) :], raw[:at] + junk + raw[at:], raw[:at] + raw[at + 1 :]):
        with suppress(BerError):
            ber.decode_message(damaged)


def v2c_get(*varbind: bytes) -> bytes:
    """A v2c GET whose varbind list is ``varbind`` (already encoded), to carry malformed parts."""
    pdu = ber.tlv(ber.GET, bytes.fromhex("020101020100020100") + ber.tlv(ber.SEQUENCE, b"".join(varbind)))
    return ber.tlv(ber.SEQUENCE, bytes.fromhex("020101") + ber.tlv(ber.OCTET_STRING, b"c") + pdu)


def vb(value: bytes, name: bytes = bytes.fromhex("06082b06010201010300")) -> bytes:
    return ber.tlv(ber.SEQUENCE, name + value)


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"", "truncated"),
        (bytes.fromhex("3080020101"), "indefinite"),
        (v2c_get(vb(b"\x05\x00")) + b"\x00", "after the message"),
        (bytes.fromhex("300e020103") + bytes.fromhex("3009020101020100020100"), "version field 3"),
        (v2c_get(vb(b"\x05\x00", name=bytes.fromhex("06022b86"))), "ends inside a sub-identifier"),
        (v2c_get(vb(b"\x05\x00", name=bytes.fromhex("06062b8080808001"))), "leading 0x80"),
        (v2c_get(vb(b"\x05\x00", name=bytes.fromhex("06062b9080808000"))), "beyond 32 bits"),
        (v2c_get(vb(b"\x05\x00", name=ber.tlv(6, bytes(130)))), "longer than 128"),
        (v2c_get(vb(bytes.fromhex("40037f0000"))), "IpAddress of 3 bytes"),
        (v2c_get(vb(bytes.fromhex("0202ffff") + b"")), None),
        (v2c_get(vb(bytes.fromhex("02050080000000"))), "outside Integer32"),
        (v2c_get(vb(bytes.fromhex("4105ff00000000"))), "out of range"),
        (v2c_get(vb(bytes.fromhex("0200"))), "empty integer"),
        (v2c_get(vb(bytes.fromhex("050101"))), "with contents"),
        (v2c_get(vb(bytes.fromhex("1f0100"))), "high-tag-number"),
        (v2c_get(vb(bytes.fromhex("470100"))), "unknown value tag"),
        (v2c_get(vb(bytes.fromhex("0500") + b"\x05\x00")), "after a varbind's value"),
        (bytes.fromhex("3085010000000002"), "length of 5 bytes"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_malformed_parts_name_the_problem(raw: bytes, says: str | None) -> None:
    """Each malformation is BerError with a message that says what is wrong (one well-formed case
    in the list, -1 as INTEGER, decodes)."""
    if says is None:
        assert ber.decode_message(raw).varbinds[0][1] == (ber.INTEGER, -1)
        return
    with pytest.raises(BerError, match=says):
        ber.decode_message(raw)


@pytest.mark.parametrize(
    ("tag", "payload"),
    [
        (ber.INTEGER, 2**31),
        (ber.COUNTER32, -1),
        (ber.COUNTER64, 2**64),
        (ber.IP_ADDRESS, b"\x7f\x00\x01"),
        (ber.OBJECT_IDENTIFIER, (3, 1)),
        (ber.OBJECT_IDENTIFIER, (1, 40)),
        (ber.OBJECT_IDENTIFIER, (1, 3, 2**32)),
        (ber.OCTET_STRING, 5),
    ],
)
def test_values_out_of_their_type_are_not_encoded(tag: int, payload: ber.Payload) -> None:
    """The encoder refuses what the decoder would refuse (a simulated value out of range is a bug)."""
    with pytest.raises(ValueError, match=r"."):
        ber.encode_value(tag, payload)
