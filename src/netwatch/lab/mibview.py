"""One device's MIB as the lab agent serves it: sorted OIDs, encoded names, values at request time.

A view is built from cells in :mod:`netwatch.lab.snmpagent`'s format (``(type, value)`` where the
value may be a function of the wall time) and keeps everything an answer needs already encoded:
each OID's name, each static value. A dynamic value (a counter, the uptime) is computed and
encoded when asked for, so nothing runs between requests.

Memory is what limits a lab of ten thousand devices, so devices of one shape (the same OIDs with
the same types: a thousand identical park switches) share one :class:`Layout` (the sorted OIDs,
their encoded names, the position index, the encoders), short static encodings are shared, and a
view holds per OID only a reference: to its encoded value, or to the function giving it.
"""

from __future__ import annotations

import bisect
import socket
import weakref
from collections.abc import Callable, Iterable
from typing import Final

from netwatch.lab import ber
from netwatch.lab.ber import Oid

#: A cell's value: an int or text, or a function of the wall time giving one.
Raw = int | str
Cell = tuple[str, Raw | Callable[[float], Raw]]
#: What a view holds per OID: the encoded value, or the function of the wall time giving the raw one.
Held = bytes | Callable[[float], Raw]

_NO_SUCH_OBJECT: Final = ber.encode_value(ber.NO_SUCH_OBJECT, None)
_NO_SUCH_INSTANCE: Final = ber.encode_value(ber.NO_SUCH_INSTANCE, None)


def _oid_text(value: Raw) -> Oid:
    oid = tuple(int(part) for part in str(value).strip().lstrip(".").split("."))
    return oid if len(oid) >= 2 else (0, 0)


#: pass_persist types (what the state files and cells say) -> how their values are encoded
ENCODERS: Final[dict[str, Callable[[Raw], bytes]]] = {
    "integer": lambda v: ber.encode_integer(int(v)),
    "unsigned": lambda v: ber.encode_unsigned(ber.GAUGE32, int(v)),
    "gauge": lambda v: ber.encode_unsigned(ber.GAUGE32, int(v)),
    "counter": lambda v: ber.encode_unsigned(ber.COUNTER32, int(v)),
    "counter64": lambda v: ber.encode_unsigned(ber.COUNTER64, int(v)),
    "timeticks": lambda v: ber.encode_unsigned(ber.TIMETICKS, int(v)),
    "string": lambda v: ber.tlv(ber.OCTET_STRING, str(v).encode()),
    "octet": lambda v: ber.tlv(ber.OCTET_STRING, bytes.fromhex(str(v))),
    "objectid": lambda v: ber.encode_oid(_oid_text(v)),
    "ipaddress": lambda v: ber.tlv(ber.IP_ADDRESS, socket.inet_aton(str(v))),
}


def _encoder(kind: str) -> Callable[[Raw], bytes]:
    encoder = ENCODERS.get(kind)
    if encoder is None:
        raise ValueError(f"unknown cell type {kind!r} (known: {', '.join(ENCODERS)})")
    return encoder


#: Short encodings (small integers, empty strings ...) recur in every device: one copy serves all.
_interned: dict[bytes, bytes] = {}
_INTERN_MAX_LEN: Final = 8


def _hold(kind: str, value: Raw | Callable[[float], Raw]) -> Held:
    """Encode a static cell now (sharing short encodings); keep a dynamic one's function."""
    if callable(value):
        return value
    encoded = _encoder(kind)(value)
    if len(encoded) <= _INTERN_MAX_LEN:
        if len(_interned) >= 1 << 16:
            _interned.clear()
        encoded = _interned.setdefault(encoded, encoded)
    return encoded


class Layout:
    """The shape of a view, shared by every device with the same OIDs and types."""

    __slots__ = ("__weakref__", "c64", "encoders", "index", "keys", "names", "objects")

    def __init__(self, keys: tuple[Oid, ...], kinds: tuple[str, ...], entries: tuple[Oid, ...]) -> None:
        self.keys = keys
        self.names = [ber.encode_oid(k) for k in keys]
        #: how each position's dynamic value is encoded (a type is the object's, so shared)
        self.encoders = tuple(_encoder(kind) for kind in kinds)
        self.index = {k: pos for pos, k in enumerate(keys)}
        #: positions of Counter64 objects, which SNMPv1 cannot carry (a v1 agent skips them)
        self.c64 = frozenset(pos for pos, kind in enumerate(kinds) if kind == "counter64")
        self.objects = frozenset(_object(k, entries) for k in keys)


def _object(key: Oid, entries: tuple[Oid, ...]) -> Oid:
    """Return the object (scalar or table column) an instance OID belongs to."""
    best: Oid = ()
    for entry in entries:
        if len(entry) > len(best) and key[: len(entry)] == entry and len(key) > len(entry) + 1:
            best = entry
    return key[: len(best) + 1] if best else key[:-1]


_layouts: weakref.WeakValueDictionary[tuple[tuple[Oid, ...], tuple[str, ...], tuple[Oid, ...]], Layout]
_layouts = weakref.WeakValueDictionary()


class MibView:
    """What one device answers: lookups by exact OID and by successor, values at a given time."""

    __slots__ = ("layout", "values")

    def __init__(self, layout: Layout, values: list[Held]) -> None:
        self.layout = layout
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def position(self, oid: Oid) -> int | None:
        """Return the position of exactly ``oid``, or None."""
        return self.layout.index.get(oid)

    def after(self, oid: Oid) -> int:
        """Return the position of the first OID after ``oid`` (``len(self)`` past the end)."""
        return bisect.bisect_right(self.layout.keys, oid)

    def value(self, pos: int, now: float) -> bytes:
        """Return the encoded value at ``pos`` as of ``now``."""
        found = self.values[pos]
        return found if isinstance(found, bytes) else self.layout.encoders[pos](found(now))

    def missing(self, oid: Oid) -> bytes:
        """Return noSuchInstance if ``oid`` is an instance of an object this device has, else noSuchObject."""
        objects = self.layout.objects
        for n in range(len(oid), 0, -1):
            if oid[:n] in objects:
                return _NO_SUCH_INSTANCE
        return _NO_SUCH_OBJECT

    def lookup(self, oid: Oid, now: float) -> ber.Value | None:
        """Return the decoded value of ``oid`` as of ``now`` (for people and tests), or None."""
        pos = self.position(oid)
        if pos is None:
            return None
        value, _ = ber.decode_value(self.value(pos, now))
        return value


def build_view(cells: dict[Oid, Cell], entries: Iterable[Oid] = ()) -> MibView:
    """Return the view of ``cells``; ``entries`` are table entry OIDs (what follows a column is an index)."""
    keys = tuple(sorted(cells))
    kinds = tuple(cells[k][0] for k in keys)
    entry_key = tuple(sorted(set(entries)))
    signature = (keys, kinds, entry_key)
    layout = _layouts.get(signature)
    if layout is None:
        layout = Layout(keys, kinds, entry_key)
        _layouts[signature] = layout
    return MibView(layout, [_hold(*cells[k]) for k in keys])
