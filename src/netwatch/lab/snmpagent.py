"""A controllable SNMP agent: a net-snmp ``pass_persist`` script that serves a JSON state file.

snmpd does the SNMP (v2c communities, v3 USM, the wire format); this script answers for the
subtrees a network device's monitoring cares about, from a JSON file a test or the lab rewrites
while snmpd runs:

* SNMPv2-MIB system group (sysDescr, sysObjectID, sysUpTime, sysContact, sysName, sysLocation)
* IF-MIB ifNumber, ifTable (Counter32 octets/errors/discards) and ifXTable (ifName, Counter64
  ifHC*, ifHighSpeed, ifAlias, ifCounterDiscontinuityTime)
* ENTITY-MIB entPhysicalTable and entAliasMappingTable (entity -> ifIndex)
* ENTITY-SENSOR-MIB entPhySensorTable (optical power, temperature, bias current)

The file is re-read whenever its mtime, size or inode changes, so writing it (atomically, see
:func:`write_state`) changes what the next request sees. Counters and sysUpTime advance with wall
time: a value is ``base + per_s * (now - epoch)``, where ``epoch`` is a key of the file (default:
the file's mtime). So a test can set ``in_octets_per_s`` and measure a known rate, or set
``uptime_s`` small and counters to zero to simulate a reboot.

State file (every key optional)::

    {
      "epoch": 1767225600.0,              # when the values below held; default: file mtime
      "walk_delay_s": 0.0,                # each getnext takes this long (a slow agent)
      "system": {"descr": "...", "object_id": "1.3.6.1.4.1.8072.3.2.10", "uptime_s": 86400,
                 "contact": "", "name": "lab-r1", "location": "", "services": 6},
      "interfaces": [
        {"index": 1, "name": "xe-0/0/1", "descr": "xe-0/0/1", "alias": "", "type": 6,
         "mtu": 1500, "speed_mbps": 10000, "admin": 1, "oper": 1, "last_change_s": 0,
         "hc": true,                      # false: no ifXTable row (a 32-bit-only interface)
         "discontinuity_s": 0,            # ifCounterDiscontinuityTime, in sysUpTime seconds
         "in_octets": 0, "in_octets_per_s": 1.25e6,      # any counter: base and per-second rate
         "out_octets": 0, "in_ucast_pkts": 0, "out_ucast_pkts": 0, "in_errors": 0,
         "out_errors": 0, "in_discards": 0, "out_discards": 0}
      ],
      "entities": [                       # entPhysicalTable; "if_index" adds an alias mapping
        {"index": 1000, "class": 10, "name": "xe-0/0/1", "descr": "", "contained_in": 1,
         "rel_pos": 1, "if_index": 1}
      ],
      "sensors": [                        # entPhySensorTable, indexed like its entity
        {"index": 1003, "type": 14, "scale": 9, "precision": 1, "value": -52, "status": 1,
         "units": "dBm"}
      ],
      "oids": {                           # any other object: OID -> [type, value]
        "1.3.6.1.4.1.41112.1.6.1.1.1.2.1": ["string", "wifi0"],
        "1.3.6.1.4.1.41112.1.6.1.2.1.8.1": ["integer", 12],
        "1.3.6.1.4.1.9.9.999.1.0": ["counter64", 0, 1000.0]   # [type, base, per_s]: grows
      }
    }

``oids`` serves a vendor's MIB (a WiFi controller's AP and radio tables, say) without code here;
snmpd must route the subtree to this script (``snmpd_conf_lines(..., roots=[...])``). Types are
pass_persist's: integer, unsigned, gauge, counter, counter64, timeticks, string, octet (hex
digits, for binary values such as MAC addresses), objectid, ipaddress.

snmpd runs one copy of this script per registered subtree (:func:`snmpd_conf_lines`) and must
not initialise its own modules for those subtrees (:data:`SNMPD_EXCLUDE`, passed as
``snmpd -I -system_mib,ifTable,ifXTable,interface``). With Debian's snmpd 5.9.3 that is what
works: ``pass_persist -p 1`` on the parent subtree does not win, because snmpd's modules
register the more specific subtrees (ifTable, ifXTable) and the host's interfaces still answer.

This file uses only the standard library and runs with any python3 >= 3.7, so snmpd can start it
with the system interpreter: ``python3 snmpagent.py --state FILE [ROOT ...]``.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # aliases only in (lazy) annotations, so python3 < 3.10 can run this file
    from collections.abc import Callable, Sequence

    Oid = tuple[int, ...]
    Value = int | str
    #: (pass_persist type, value or a function of the current time giving it)
    Cell = tuple[str, Value | Callable[[float], Value]]

#: Subtrees this agent answers for (system, interfaces, ifMIB, entityMIB, entitySensorMIB).
ROOTS: tuple[str, ...] = (
    ".1.3.6.1.2.1.1",
    ".1.3.6.1.2.1.2",
    ".1.3.6.1.2.1.31",
    ".1.3.6.1.2.1.47",
    ".1.3.6.1.2.1.99",
)

#: snmpd (net-snmp 5.9.3) modules that would also register those subtrees; start snmpd with
#: ``-I -<these, comma-separated>`` (see :func:`snmpd_args`).
SNMPD_EXCLUDE: tuple[str, ...] = ("system_mib", "ifTable", "ifXTable", "interface")

_U32 = 1 << 32
_U64 = 1 << 64

SYSTEM = (1, 3, 6, 1, 2, 1, 1)
IF_NUMBER = (1, 3, 6, 1, 2, 1, 2, 1, 0)
IF_ENTRY = (1, 3, 6, 1, 2, 1, 2, 2, 1)
IFX_ENTRY = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
ENT_PHYSICAL_ENTRY = (1, 3, 6, 1, 2, 1, 47, 1, 1, 1, 1)
ENT_ALIAS_MAPPING_ID = (1, 3, 6, 1, 2, 1, 47, 1, 3, 2, 1, 2)
ENT_SENSOR_ENTRY = (1, 3, 6, 1, 2, 1, 99, 1, 1, 1)


def parse_oid(text: str) -> Oid | None:
    """Turn ``.1.3.6.1`` or ``1.3.6.1`` into a tuple, or None if it is not an OID."""
    text = text.strip().lstrip(".")
    if not text:
        return None
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        return None


def format_oid(oid: Oid) -> str:
    """Write an OID the way snmpd's pass_persist expects it: with a leading dot."""
    return "." + ".".join(str(part) for part in oid)


def _num(entry: dict[str, Any], key: str, default: float = 0) -> float:
    value = entry.get(key, default)
    return float(value) if isinstance(value, (int, float)) else float(default)


def _int(entry: dict[str, Any], key: str) -> int:
    # Exact for big JSON integers (a Counter64 near 2**64 does not survive a float).
    value = entry.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    return value if isinstance(value, int) else int(value)


def _text(value: object) -> str:
    # pass_persist is line-based: a value cannot span lines.
    return str(value).replace("\r", " ").replace("\n", " ")


# -- cells: the MIB objects of a device, shared with the lab's own agent (netwatch.lab.simdevice) --
#
# A cell is (pass_persist type, value or a function of the current time giving it). The builders
# below lay out the system group, IF-MIB, ENTITY-MIB and ENTITY-SENSOR-MIB rows from plain dicts
# in the state file's format; the caller decides how counters and uptime move.


def system_cells(system: dict[str, Any], uptime: Value | Callable[[float], Value], cells: dict[Oid, Cell]) -> None:
    """Add the SNMPv2-MIB system group; ``uptime`` is sysUpTime in ticks."""
    oid = parse_oid(str(system.get("object_id", "1.3.6.1.4.1.8072.3.2.10"))) or (0, 0)
    cells[(*SYSTEM, 1, 0)] = ("string", _text(system.get("descr", "netwatch lab agent")))
    cells[(*SYSTEM, 2, 0)] = ("objectid", format_oid(oid))
    cells[(*SYSTEM, 3, 0)] = ("timeticks", uptime)
    cells[(*SYSTEM, 4, 0)] = ("string", _text(system.get("contact", "")))
    cells[(*SYSTEM, 5, 0)] = ("string", _text(system.get("name", "lab-agent")))
    cells[(*SYSTEM, 6, 0)] = ("string", _text(system.get("location", "")))
    cells[(*SYSTEM, 7, 0)] = ("integer", int(_num(system, "services", 6)))


def interface_cells(
    interfaces: list[dict[str, Any]],
    counter: Callable[[dict[str, Any], str, int], Value | Callable[[float], Value]],
    cells: dict[Oid, Cell],
) -> None:
    """Add ifNumber, ifTable and ifXTable rows; ``counter(row, key, modulo)`` gives each counter."""
    cells[IF_NUMBER] = ("integer", len(interfaces))
    for i in interfaces:
        idx = int(_num(i, "index", 0))
        if idx <= 0:
            continue
        name = _text(i.get("name", f"if{idx}"))
        speed_mbps = _num(i, "speed_mbps", 1000)

        def c32(key: str, i: dict[str, Any] = i) -> Value | Callable[[float], Value]:
            return counter(i, key, _U32)

        def c64(key: str, i: dict[str, Any] = i) -> Value | Callable[[float], Value]:
            return counter(i, key, _U64)

        row: dict[int, Cell] = {
            1: ("integer", idx),
            2: ("string", _text(i.get("descr", name))),
            3: ("integer", int(_num(i, "type", 6))),
            4: ("integer", int(_num(i, "mtu", 1500))),
            5: ("gauge", min(int(speed_mbps * 1_000_000), _U32 - 1)),
            6: ("string", ""),
            7: ("integer", int(_num(i, "admin", 1))),
            8: ("integer", int(_num(i, "oper", 1))),
            9: ("timeticks", int(_num(i, "last_change_s") * 100) % _U32),
            10: ("counter", c32("in_octets")),
            11: ("counter", c32("in_ucast_pkts")),
            12: ("counter", c32("in_nucast_pkts")),
            13: ("counter", c32("in_discards")),
            14: ("counter", c32("in_errors")),
            15: ("counter", c32("in_unknown_protos")),
            16: ("counter", c32("out_octets")),
            17: ("counter", c32("out_ucast_pkts")),
            18: ("counter", c32("out_nucast_pkts")),
            19: ("counter", c32("out_discards")),
            20: ("counter", c32("out_errors")),
            21: ("gauge", 0),
            22: ("objectid", ".0.0"),
        }
        for column, cell in row.items():
            cells[(*IF_ENTRY, column, idx)] = cell
        if not i.get("hc", True):
            continue
        xrow: dict[int, Cell] = {
            1: ("string", name),
            2: ("counter", c32("in_multicast_pkts")),
            3: ("counter", c32("in_broadcast_pkts")),
            4: ("counter", c32("out_multicast_pkts")),
            5: ("counter", c32("out_broadcast_pkts")),
            6: ("counter64", c64("in_octets")),
            7: ("counter64", c64("in_ucast_pkts")),
            8: ("counter64", c64("in_multicast_pkts")),
            9: ("counter64", c64("in_broadcast_pkts")),
            10: ("counter64", c64("out_octets")),
            11: ("counter64", c64("out_ucast_pkts")),
            12: ("counter64", c64("out_multicast_pkts")),
            13: ("counter64", c64("out_broadcast_pkts")),
            14: ("integer", 1),
            15: ("gauge", int(speed_mbps)),
            16: ("integer", 2),
            17: ("integer", 1),
            18: ("string", _text(i.get("alias", ""))),
            19: ("timeticks", int(_num(i, "discontinuity_s") * 100) % _U32),
        }
        for column, cell in xrow.items():
            cells[(*IFX_ENTRY, column, idx)] = cell


def entity_cells(entities: list[Any], sensors: list[Any], cells: dict[Oid, Cell]) -> None:
    """Add entPhysicalTable, entAliasMappingTable and entPhySensorTable rows."""
    for e in entities:
        if not isinstance(e, dict) or int(_num(e, "index", 0)) <= 0:
            continue
        idx = int(_num(e, "index"))
        row: dict[int, Cell] = {
            2: ("string", _text(e.get("descr", ""))),
            3: ("objectid", ".0.0"),
            4: ("integer", int(_num(e, "contained_in", 0))),
            5: ("integer", int(_num(e, "class", 1))),
            6: ("integer", int(_num(e, "rel_pos", -1))),
            7: ("string", _text(e.get("name", ""))),
        }
        for column, cell in row.items():
            cells[(*ENT_PHYSICAL_ENTRY, column, idx)] = cell
        if_index = e.get("if_index")
        if isinstance(if_index, int) and if_index > 0:
            target = format_oid((*IF_ENTRY, 1, if_index))
            cells[(*ENT_ALIAS_MAPPING_ID, idx, 0)] = ("objectid", target)
    for s in sensors:
        if not isinstance(s, dict) or int(_num(s, "index", 0)) <= 0:
            continue
        idx = int(_num(s, "index"))
        srow: dict[int, Cell] = {
            1: ("integer", int(_num(s, "type", 2))),
            2: ("integer", int(_num(s, "scale", 9))),
            3: ("integer", int(_num(s, "precision", 0))),
            4: ("integer", int(_num(s, "value", 0))),
            5: ("integer", int(_num(s, "status", 1))),
            6: ("string", _text(s.get("units", ""))),
            7: ("timeticks", 0),
            8: ("gauge", 0),
        }
        for column, cell in srow.items():
            cells[(*ENT_SENSOR_ENTRY, column, idx)] = cell


def extra_cells(
    oids: Any, grow: Callable[[int, float, int], Value | Callable[[float], Value]], cells: dict[Oid, Cell]
) -> None:
    """Add a state's ``oids``: OID -> [type, value] or [type, base, per_s] (``grow`` makes the counter)."""
    if not isinstance(oids, dict):
        return
    for text, spec in oids.items():
        oid = parse_oid(str(text))
        if oid is None or not isinstance(spec, list) or len(spec) < 2 or not isinstance(spec[0], str):
            continue
        kind, value = spec[0], spec[1]
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            continue
        if isinstance(value, str):
            cells[oid] = (kind, _text(value))
        elif len(spec) > 2 and isinstance(spec[2], (int, float)):
            modulo = _U64 if kind == "counter64" else _U32
            cells[oid] = (kind, grow(int(value), float(spec[2]), modulo))
        else:
            cells[oid] = (kind, int(value))


class Tree:
    """The MIB view of one state: sorted OIDs and their (type, value) cells."""

    def __init__(self, state: dict[str, Any], epoch: float, roots: list[Oid]) -> None:
        self.epoch = epoch
        cells: dict[Oid, Cell] = {}
        system = state.get("system") or {}
        system_cells(system, self._uptime_ticks(_num(system, "uptime_s", 86400)), cells)
        interfaces = [i for i in state.get("interfaces") or [] if isinstance(i, dict)]
        interface_cells(interfaces, self._counter, cells)
        entity_cells(state.get("entities") or [], state.get("sensors") or [], cells)
        extra_cells(state.get("oids") or {}, self._grow, cells)
        if roots:
            cells = {oid: cell for oid, cell in cells.items() if any(oid[: len(r)] == r for r in roots)}
        self.keys: list[Oid] = sorted(cells)
        self.cells = cells

    # -- value helpers ---------------------------------------------------------------------

    def _grow(self, base: int, per_s: float, modulo: int) -> Value | Callable[[float], Value]:
        """Return a counter that was ``base`` at the epoch and grows ``per_s`` per second."""
        if not per_s:
            return base % modulo
        epoch = self.epoch
        return lambda now: (base + int(per_s * max(0.0, now - epoch))) % modulo

    def _counter(self, row: dict[str, Any], key: str, modulo: int) -> Value | Callable[[float], Value]:
        """An interface counter from the state: ``key`` is its base, ``key_per_s`` its rate."""
        return self._grow(_int(row, key), _num(row, key + "_per_s"), modulo)

    def _uptime_ticks(self, uptime_s: float) -> Callable[[float], Value]:
        epoch = self.epoch
        return lambda now: int((uptime_s + max(0.0, now - epoch)) * 100) % _U32

    # -- lookups ---------------------------------------------------------------------------

    def value(self, oid: Oid, now: float) -> tuple[str, str]:
        """Return the (type, text) of an OID in the tree (KeyError if absent)."""
        kind, value = self.cells[oid]
        if callable(value):
            value = value(now)
        return kind, str(value)

    def get(self, oid: Oid, now: float) -> tuple[Oid, str, str] | None:
        """Return the exact OID, or None."""
        if oid not in self.cells:
            return None
        return (oid, *self.value(oid, now))

    def getnext(self, oid: Oid, now: float) -> tuple[Oid, str, str] | None:
        """Return the first OID after ``oid``, or None at the end of this tree."""
        pos = bisect.bisect_right(self.keys, oid)
        if pos >= len(self.keys):
            return None
        nxt = self.keys[pos]
        return (nxt, *self.value(nxt, now))


class Agent:
    """Answer pass_persist requests from a state file, re-reading it when it changes."""

    def __init__(self, state_path: Path, roots: list[Oid], clock: Callable[[], float] = time.time) -> None:
        self.path = state_path
        self.roots = roots
        self.clock = clock
        self._sig: tuple[int, int, int] | None = None
        self.tree = Tree({}, clock(), roots)
        #: Seconds each getnext (a walk step) takes: a slow agent, for tests of long discoveries.
        self.walk_delay_s = 0.0

    def refresh(self) -> None:
        """Reload the state if the file changed; keep the last good state if it is unreadable."""
        try:
            st = os.stat(self.path)
        except OSError:
            return
        sig = (st.st_mtime_ns, st.st_size, st.st_ino)
        if sig == self._sig:
            return
        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            # A half-written file: try again on the next request.
            print(f"snmpagent: cannot read {self.path}: {exc}", file=sys.stderr)
            return
        if not isinstance(state, dict):
            return
        epoch = state.get("epoch")
        self.tree = Tree(state, float(epoch) if isinstance(epoch, (int, float)) else st.st_mtime, self.roots)
        delay = state.get("walk_delay_s", 0.0)
        self.walk_delay_s = float(delay) if isinstance(delay, (int, float)) else 0.0
        self._sig = sig

    def handle(self, command: str, oid_text: str) -> str:
        """Answer one get/getnext: ``OID\\nTYPE\\nVALUE\\n`` or ``NONE\\n``."""
        self.refresh()
        oid = parse_oid(oid_text)
        if oid is None:
            return "NONE\n"
        if command == "getnext" and self.walk_delay_s > 0:
            time.sleep(self.walk_delay_s)
        now = self.clock()
        found = self.tree.get(oid, now) if command == "get" else self.tree.getnext(oid, now)
        if found is None:
            return "NONE\n"
        noid, kind, text = found
        return f"{format_oid(noid)}\n{kind}\n{text}\n"


def serve(agent: Agent, stdin: Any = None, stdout: Any = None) -> None:
    """Run the pass_persist loop until snmpd closes the pipe."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    while True:
        line = stdin.readline()
        if not line:
            return
        command = line.strip()
        if command == "PING":
            reply = "PONG\n"
        elif command in ("get", "getnext"):
            reply = agent.handle(command, stdin.readline())
        elif command == "set":
            stdin.readline()  # OID
            stdin.readline()  # TYPE VALUE
            reply = "not-writable\n"
        elif command == "":
            # snmpd sends an empty line when it shuts the script down.
            return
        else:
            reply = "NONE\n"
        stdout.write(reply)
        stdout.flush()


# -- helpers for fixtures and the lab ---------------------------------------------------------


def snmpd_args() -> list[str]:
    """Return the snmpd options that keep its own modules off the subtrees served here."""
    return ["-I", "-" + ",".join(SNMPD_EXCLUDE)]


def snmpd_conf_lines(state_path: str | Path, python: str = sys.executable, roots: Sequence[str] = ROOTS) -> list[str]:
    """Return the ``pass_persist`` lines that make snmpd serve ``state_path`` through this script.

    One line (and one process) per subtree; each process answers only inside its own subtree, so
    a getnext at the end of one subtree moves on to the next registration as snmpd expects. Add
    roots (a vendor's enterprise subtree) to serve the state's ``oids`` there.
    """
    script = Path(__file__).resolve()
    return [f"pass_persist {root} {python} {script} --state {Path(state_path)} {root}" for root in roots]


def write_state(path: str | Path, state: dict[str, Any]) -> None:
    """Write a state file atomically, so the agent never reads half of it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=str(path.parent), prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(state, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def transceiver(
    port_entity: int,
    if_index: int,
    port_name: str,
    *,
    rx_dbm: float | None = None,
    tx_dbm: float | None = None,
    temp_c: float | None = None,
    bias_ma: float | None = None,
    contained_in: int = 1,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return (entities, sensors) for a port with a pluggable optic, laid out like Cisco does.

    The port entity (class port, mapped to ``if_index``) contains the transceiver module, which
    contains one sensor per reading, so a poller has to walk up two levels to find the port.
    Readings use the usual encodings: dBm and celsius as units with precision 1, bias current
    as milliamperes with precision 1 (e.g. -5.2 dBm is value -52, scale 9, precision 1).
    """
    module = port_entity + 1
    entities: list[dict[str, Any]] = [
        {
            "index": port_entity,
            "class": 10,
            "name": port_name,
            "descr": f"{port_name} port",
            "contained_in": contained_in,
            "rel_pos": if_index,
            "if_index": if_index,
        },
        {
            "index": module,
            "class": 9,
            "name": f"{port_name} transceiver",
            "descr": "SFP+ 10GBASE-LR",
            "contained_in": port_entity,
            "rel_pos": 1,
        },
    ]
    sensors: list[dict[str, Any]] = []
    readings = (
        ("Temperature Sensor", 8, 9, temp_c, "celsius"),
        ("Bias Current Sensor", 5, 8, bias_ma, "mA"),
        ("Transmit Power Sensor", 14, 9, tx_dbm, "dBm"),
        ("Receive Power Sensor", 14, 9, rx_dbm, "dBm"),
    )
    for offset, (what, kind, scale, reading, units) in enumerate(readings, start=2):
        if reading is None:
            continue
        idx = port_entity + offset
        entities.append(
            {
                "index": idx,
                "class": 8,
                "name": f"{port_name} {what}",
                "descr": f"{port_name} Transceiver {what}",
                "contained_in": module,
                "rel_pos": offset - 1,
            }
        )
        sensors.append(
            {
                "index": idx,
                "type": kind,
                "scale": scale,
                "precision": 1,
                "value": round(reading * 10),
                "status": 1,
                "units": units,
            }
        )
    return entities, sensors


def main(argv: list[str] | None = None) -> int:
    """Entry point for snmpd's pass_persist."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--state", required=True, type=Path, help="JSON state file")
    parser.add_argument("roots", nargs="*", help="answer only inside these subtrees")
    args = parser.parse_args(argv)
    roots = [r for r in (parse_oid(text) for text in args.roots) if r is not None]
    serve(Agent(args.state, roots))
    return 0


if __name__ == "__main__":
    sys.exit(main())
