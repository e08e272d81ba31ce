r"""Encode samples as InfluxDB line protocol: correct escaping, type-stable fields.

This is the sink's hot path (every sample of every poll passes through it), so the encoder caches
what repeats from one poll to the next: the escaped measurement, the escaped tag set of each
series, and each field's escaped key and declared type.

Escaping (line protocol)
    * measurement: ``,`` and space are escaped with a backslash;
    * tag keys, tag values and field keys: ``,``, ``=`` and space are escaped;
    * string field values are double-quoted, with ``"`` and ``\`` escaped.

Types
    A field the data contract (:mod:`netwatch.contract`) declares is coerced to its type, because
    InfluxDB rejects a point whose field type differs from what the shard already holds:

    * ``int``: written ``123i``; bools become ``1i``/``0i``; integral floats are rounded (half to
      even); numeric strings are parsed;
    * ``float``: always written as a float, even when the probe gave the int ``0``;
      bools become ``1.0``/``0.0``; numeric strings are parsed;
    * ``str``: quoted; other values are written as ``str(value)`` (bools as ``true``/``false``).

    A field the contract does not name keeps its Python type (bool → int). A field whose value is
    ``None`` is absent and silently omitted.

What is dropped (counted in :class:`EncodeStats`, logged once per measurement, field and reason)
    * NaN and ±inf floats: the field is omitted (line protocol has no spelling for them);
    * integers outside signed 64 bits: the field is omitted (a raw Counter64 must never be
      written: InfluxDB 1.6 rejects ``u`` and values ≥ 2^63, and VictoriaMetrics answers 204 and
      silently drops them);
    * a value that cannot take its declared type (``"abc"`` for an int): the field is omitted;
    * a point with no fields left, with an empty measurement, or with a timestamp outside
      InfluxDB's range (±9223372036854775806 ns): the point is dropped.

Sanitising (what InfluxDB 1.6 cannot store faithfully; found by writing every string of up to
three characters over ``a \ , = " ' # TAB LF CR NUL`` and 1,500 longer ones to a real influxd 1.6
and reading them back with SHOW MEASUREMENTS / TAG KEYS / TAG VALUES / FIELD KEYS)
    Applied to measurements, tag keys, tag values and field keys ("names"), in this order:

    1. every ASCII control character (U+0000–U+001F, U+007F) becomes a space. A line feed ends
       the line mid-point; CR, TAB and NUL are stored but break tools downstream.
    2. a backslash that is the last character, or that is followed by a backslash, ``,``, space,
       ``=`` or ``"``, becomes ``/``. influxd reads such a backslash as an escape (``a\`` fails
       to parse, ``a\\b`` comes back as ``a\\b`` from a tag but ``a\b`` from a measurement,
       ``f\"`` loses its backslash) and VictoriaMetrics unescapes ``\\``, so no spelling
       round-trips everywhere. A backslash before any other character is kept.
    3. a lone surrogate (not encodable as UTF-8) becomes U+FFFD.
    4. a measurement that starts with ``#`` gets ``_`` instead: influxd takes the line for a
       comment and silently discards it (``\#`` is stored with its backslash).
    5. the key ``time`` (tag or field) becomes ``time_``: influxd rejects a point with a tag
       named ``time`` and silently drops a field named ``time``.

    Empty tag keys or values are omitted; an empty field key drops the field. When two keys of a
    point come out the same after sanitising, the later one in the sample's order wins.

    String field values keep every character (influxd 1.6 round-trips LF, CR and NUL inside
    quotes); only lone surrogates become U+FFFD. VictoriaMetrics ignores string fields but splits
    lines naively, so there a string with a line feed costs the point its other fields.

Tags are written sorted by key (InfluxDB's preferred order, saving it a sort per point); fields
keep the sample's order. Timestamps are integer nanoseconds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import structlog

from netwatch.contract import field_type
from netwatch.model import FieldValue, Sample

log = structlog.get_logger(__name__)

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
#: influxd refuses timestamps outside this range ("time outside range").
TIME_MIN_NS: Final = -9223372036854775806
TIME_MAX_NS: Final = 9223372036854775806

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BAD_BACKSLASH = re.compile(r'\\(?=[\\, ="]|\Z)')
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_RESERVED_KEYS: Final = frozenset({"time"})

_MEASUREMENT_ESCAPES: Final = str.maketrans({",": r"\,", " ": r"\ "})
_TAG_ESCAPES: Final = str.maketrans({",": r"\,", " ": r"\ ", "=": r"\="})

# Field kinds: the declared contract type, or ANY for a field the contract does not name.
_FLOAT: Final = 0
_INT: Final = 1
_STR: Final = 2
_ANY: Final = 3
_KINDS: Final = {"float": _FLOAT, "int": _INT, "str": _STR}


def sanitize_name(text: str) -> str:
    """Return a tag value (or any name) as InfluxDB will store it: rules 1–3 of the module doc."""
    if text.isascii():
        if text.isprintable() and "\\" not in text:
            return text
    elif _SURROGATE.search(text):
        text = _SURROGATE.sub("\ufffd", text)
    text = _CONTROL.sub(" ", text)
    return _BAD_BACKSLASH.sub("/", text)


def sanitize_key(text: str) -> str:
    """Return a tag or field key as InfluxDB will store it (rules 1–3 and 5)."""
    text = sanitize_name(text)
    return f"{text}_" if text in _RESERVED_KEYS else text


def sanitize_measurement(text: str) -> str:
    """Return a measurement name as InfluxDB will store it (rules 1–4)."""
    text = sanitize_name(text)
    return f"_{text[1:]}" if text.startswith("#") else text


def sanitize_string(text: str) -> str:
    """Return a string field value as InfluxDB will store it (only lone surrogates change)."""
    if text.isascii() or not _SURROGATE.search(text):
        return text
    return _SURROGATE.sub("\ufffd", text)


def escape_measurement(name: str) -> str:
    """Escape a sanitised measurement name for line protocol."""
    return name.translate(_MEASUREMENT_ESCAPES)


def escape_tag(text: str) -> str:
    """Escape a sanitised tag key, tag value or field key for line protocol."""
    return text.translate(_TAG_ESCAPES)


def quote_string(text: str) -> str:
    """Return a string field value quoted and escaped for line protocol."""
    text = sanitize_string(text)
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    if '"' in text:
        text = text.replace('"', '\\"')
    return f'"{text}"'


@dataclass(slots=True)
class EncodeStats:
    """What the encoder saw and what it had to leave out, since it was created."""

    samples: int = 0
    points: int = 0
    points_no_fields: int = 0
    points_bad_measurement: int = 0
    points_bad_time: int = 0
    fields_nonfinite: int = 0
    fields_out_of_range: int = 0
    fields_wrong_type: int = 0
    fields_bad_key: int = 0

    @property
    def points_dropped(self) -> int:
        """Samples that produced no line."""
        return self.points_no_fields + self.points_bad_measurement + self.points_bad_time

    @property
    def fields_dropped(self) -> int:
        """Fields left out of lines that were written."""
        return self.fields_nonfinite + self.fields_out_of_range + self.fields_wrong_type + self.fields_bad_key


class _Drop(Exception):
    """A field value that cannot be written; ``reason`` names the EncodeStats counter."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class _Measurement:
    """What the encoder caches per measurement name."""

    name: str
    prefix: str | None  # escaped measurement; None: points of this name are dropped
    # field key -> (escaped key followed by "=", kind, whether sanitising changed or emptied the key)
    fields: dict[str, tuple[str, int, bool]]


class LineEncoder:
    """Turn :class:`~netwatch.model.Sample` objects into line-protocol lines (``str``, no newline).

    One encoder belongs to one sink; it is not shared between threads. ``cache_size`` bounds each
    cache (tag sets, measurements); a full cache is emptied and refilled, so memory stays bounded
    when cardinality runs away. ``cache_size=0`` disables caching (for benchmarks).
    """

    def __init__(self, *, cache_size: int = 100_000) -> None:
        self.stats = EncodeStats()
        self._cache_size = cache_size
        self._measurements: dict[str, _Measurement] = {}
        self._tagsets: dict[tuple[tuple[str, str], ...], str] = {}
        self._warned: set[tuple[str, str, str]] = set()

    def encode_many(self, samples: Iterable[Sample]) -> list[str]:
        """Encode samples in order, leaving out the ones that are dropped."""
        encode = self.encode
        return [line for line in map(encode, samples) if line is not None]

    def encode(self, sample: Sample) -> str | None:
        """Return the line for one sample, or None when the sample is dropped (and counted)."""
        stats = self.stats
        stats.samples += 1
        name = sample.measurement
        meas = self._measurements.get(name)
        if meas is None:
            meas = self._measurement(name)
        prefix = meas.prefix
        if prefix is None:
            stats.points_bad_measurement += 1
            return None
        ts = sample.time_ns
        if type(ts) is not int or not TIME_MIN_NS <= ts <= TIME_MAX_NS:
            stats.points_bad_time += 1
            self._warn_once(name, "", "bad_time", value=repr(ts))
            return None

        tags = sample.tags
        if tags:
            key = tuple(tags.items())
            tagset = self._tagsets.get(key)
            if tagset is None:
                tagset = self._tagset(tags, key)
        else:
            tagset = ""

        parts: list[str] = []
        append = parts.append
        known = meas.fields
        drops: list[tuple[str, str, FieldValue]] | None = None
        for k, v in sample.fields.items():
            entry = known.get(k)
            if entry is None:
                entry = self._field(meas, k)
            ekey, kind, altered = entry
            if altered:
                return self._encode_altered(sample, meas, prefix + tagset, ts)
            cls = type(v)
            # Fast paths for the value types probes normally produce; the rest goes through _value.
            # (v - v == 0.0 is false exactly for NaN and the infinities.)
            if kind == _FLOAT and cls is float and v - v == 0.0:  # type: ignore[operator]
                append(f"{ekey}{v!r}")
            elif kind == _INT and cls is int and INT64_MIN <= v <= INT64_MAX:  # type: ignore[operator]
                append(f"{ekey}{v}i")
            elif v is not None:
                try:
                    append(ekey + _value(kind, v))
                except _Drop as drop:
                    # Counted only once the point is done: an altered key above restarts it.
                    drops = drops or []
                    drops.append((k, drop.reason, v))
        if drops:
            for k, reason, v in drops:
                self._count_drop(name, k, reason, v)
        if not parts:
            stats.points_no_fields += 1
            self._warn_once(name, "", "no_fields")
            return None
        stats.points += 1
        return f"{prefix}{tagset} {','.join(parts)} {ts}"

    # -- slow paths: first sight of a name, unusual values ---------------------------------------

    def _measurement(self, name: str) -> _Measurement:
        clean = sanitize_measurement(str(name))
        meas = _Measurement(name=name, prefix=escape_measurement(clean) if clean else None, fields={})
        if not clean:
            self._warn_once(name, "", "bad_measurement")
        if self._cache_size:
            if len(self._measurements) >= self._cache_size:
                self._measurements.clear()
            self._measurements[name] = meas
        return meas

    def _field(self, meas: _Measurement, key: str) -> tuple[str, int, bool]:
        clean = sanitize_key(str(key))
        kind = _KINDS.get(field_type(meas.name, key) or "", _ANY)
        entry = (f"{escape_tag(clean)}=", kind, clean != key or not clean)
        if self._cache_size:
            if len(meas.fields) >= self._cache_size:
                meas.fields.clear()
            meas.fields[key] = entry
        return entry

    def _tagset(self, tags: Mapping[str, str], key: tuple[tuple[str, str], ...]) -> str:
        clean: dict[str, str] = {}
        for k, v in tags.items():
            if v is None:
                continue
            value = v if type(v) is str else str(v)
            ckey = sanitize_key(str(k))
            if not ckey or not value:
                continue  # empty tag keys and values are omitted
            clean[ckey] = sanitize_name(value)
        tagset = "".join(f",{escape_tag(k)}={escape_tag(clean[k])}" for k in sorted(clean))
        if self._cache_size:
            if len(self._tagsets) >= self._cache_size:
                self._tagsets.clear()
            self._tagsets[key] = tagset
        return tagset

    def _encode_altered(self, sample: Sample, meas: _Measurement, head: str, ts: int) -> str | None:
        """Encode a point with a key that sanitising changed: keys may now collide (later wins)."""
        by_key: dict[str, str] = {}
        for k, v in sample.fields.items():
            entry = meas.fields.get(k) or self._field(meas, k)
            ekey, kind, _ = entry
            if ekey == "=":
                self.stats.fields_bad_key += 1
                self._warn_once(meas.name, k, "bad_key")
                continue
            if v is None:
                continue
            try:
                by_key[ekey] = _value(kind, v)
            except _Drop as drop:
                self._count_drop(meas.name, k, drop.reason, v)
        if not by_key:
            self.stats.points_no_fields += 1
            self._warn_once(meas.name, "", "no_fields")
            return None
        self.stats.points += 1
        return f"{head} {','.join(k + v for k, v in by_key.items())} {ts}"

    def _count_drop(self, measurement: str, field: str, reason: str, value: object) -> None:
        stats = self.stats
        setattr(stats, reason, getattr(stats, reason) + 1)
        self._warn_once(measurement, field, reason, value=repr(value)[:80])

    def _warn_once(self, measurement: str, field: str, reason: str, **extra: str) -> None:
        key = (measurement, field, reason)
        if key in self._warned or len(self._warned) >= 10_000:
            return
        self._warned.add(key)
        log.warning(
            "lineproto_dropped",
            measurement=measurement,
            field=field or None,
            reason=reason.removeprefix("fields_").removeprefix("points_"),
            **extra,
        )


def _value(kind: int, v: FieldValue) -> str:
    """Encode one field value (without its key) as its kind demands; raise _Drop if it cannot be."""
    if kind == _FLOAT:
        return _float(_as_float(v))
    if kind == _INT:
        return f"{_as_int(v)}i"
    if kind == _STR:
        if isinstance(v, bool):
            return '"true"' if v else '"false"'
        return quote_string(v if isinstance(v, str) else str(v))
    # Not in the contract: keep the Python type.
    if isinstance(v, bool):
        return "1i" if v else "0i"
    if isinstance(v, int):
        return f"{_as_int(v)}i"
    if isinstance(v, float):
        return _float(v)
    if isinstance(v, str):
        return quote_string(v)
    raise _Drop("fields_wrong_type")


def _float(v: float) -> str:
    if not math.isfinite(v):
        raise _Drop("fields_nonfinite")
    return repr(v)


def _as_float(v: FieldValue) -> float:
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, int | float):
        try:
            return float(v)
        except OverflowError:
            raise _Drop("fields_out_of_range") from None
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            raise _Drop("fields_wrong_type") from None
    raise _Drop("fields_wrong_type")


def _as_int(v: FieldValue) -> int:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        n = v
    elif isinstance(v, float):
        if not math.isfinite(v):
            raise _Drop("fields_nonfinite")
        n = round(v)
    elif isinstance(v, str):
        try:
            n = int(v)
        except ValueError:
            try:
                f = float(v)
            except ValueError:
                raise _Drop("fields_wrong_type") from None
            if not math.isfinite(f):
                raise _Drop("fields_nonfinite") from None
            n = round(f)
    else:
        raise _Drop("fields_wrong_type")
    if not INT64_MIN <= n <= INT64_MAX:
        raise _Drop("fields_out_of_range")
    return n
