"""WiFi profiles: which SNMP objects of a vendor's MIB give an AP's radios, clients and load.

A profile is a YAML file (``config/profiles/NAME.yaml``; a site adds its own in a ``profile_dir``)
that maps the fields of the ``wifi_radio`` measurement onto table columns of the vendor MIB:

* ``radios.rows``: a column with one row per radio (its index is the radio's index);
* ``radios.fields``: per field (``up``, ``radio``, ``band``, ``channel``, ``channel_util_pct``,
  ``clients``) the column to read and how to turn the value into netwatch's (``map``, ``default``,
  ``scale``), or rows of another table that belong to the radio (``join``) folded with
  ``aggregate`` (sum, max, min, first);
* ``controller``: for an agent that serves many APs (a wireless LAN controller), the column of AP
  names whose index prefixes every radio row of that AP.

Profiles are validated when they are loaded; every problem names the file, the line and the key
(``unifi.yaml:14: radios.fields.up: ...``), as config errors do. Loading is cached by the files'
names, sizes and modification times, so a reload sees an edited profile.
"""

from __future__ import annotations

import difflib
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import BeforeValidator, Field, ValidationError, ValidationInfo

from netwatch.configbase import Strict
from netwatch.probes.snmpclient import Oid, fmt
from netwatch.yamlpos import KeyPath, line_for, load_with_lines

#: Where the shipped profiles are: the source tree's config/profiles (a checkout or an editable
#: install), else where ``pip install`` puts them (the wheel's data files, under the venv's
#: prefix: /opt/netwatch/share/netwatch/profiles), else a distribution package's place.
_BUILTIN_CANDIDATES: Final = (
    Path(__file__).resolve().parents[3] / "config" / "profiles",
    Path(sys.prefix) / "share" / "netwatch" / "profiles",
    Path("/usr/share/netwatch/profiles"),
)
SUFFIX: Final = ".yaml"

RadioField = Literal["up", "radio", "band", "channel", "channel_util_pct", "clients"]
#: What each radio field becomes: the wifi_radio field types of the data contract, and text tags.
FIELD_KINDS: Final[dict[str, Literal["int", "float", "str"]]] = {
    "up": "int",
    "radio": "str",
    "band": "str",
    "channel": "int",
    "channel_util_pct": "float",
    "clients": "int",
}
_NUMERIC: Final = frozenset({"channel", "channel_util_pct", "clients"})


def parse_oid(value: object) -> Oid:
    """Turn ``1.3.6.1.4.1.41112`` (a leading dot is fine) into a tuple of ints."""
    if isinstance(value, tuple) and all(isinstance(p, int) for p in value):
        return value
    if isinstance(value, float | int) and not isinstance(value, bool):
        raise ValueError(f"{value!r} is a number, not an OID; write the whole dotted OID")
    if not isinstance(value, str):
        raise ValueError("an OID is a dotted string like 1.3.6.1.4.1.41112.1.6.1.1.1.3")
    parts = value.strip().lstrip(".").split(".")
    try:
        oid = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"{value!r} is not a numeric OID (symbolic names are not resolved here)") from None
    if len(oid) < 2 or oid[0] > 2 or any(p < 0 for p in oid):
        raise ValueError(f"{value!r} is not a valid OID")
    return oid


def _keys_as_text(value: object) -> object:
    # YAML reads `1: up` with an integer key; raw SNMP values are matched by their text.
    if isinstance(value, Mapping):
        return {_text_key(k): v for k, v in value.items()}
    return value


def _text_key(key: object) -> str:
    return str(int(key)) if isinstance(key, bool) else str(key)


OidValue = Annotated[Oid, BeforeValidator(parse_oid)]
Scalar = int | float | str


class Column(Strict):
    """One MIB object (a table column) and how its value becomes a netwatch value."""

    oid: OidValue = Field(description="the column's OID, numeric (the row index follows it)")
    name: str = Field(default="", description="the MIB object's name, for messages")
    map: Annotated[dict[str, Scalar], BeforeValidator(_keys_as_text)] | None = Field(
        default=None, description="raw value -> netwatch value (an enum or text code)"
    )
    default: Scalar | None = Field(default=None, description="value for a raw value the map does not list")
    scale: float | None = Field(default=None, description="multiply the raw value (numeric fields)")
    join: str | None = Field(default=None, description="read this column in the rows of a join (see joins)")
    aggregate: Literal["sum", "max", "min", "first"] | None = Field(
        default=None, description="how the joined rows' values make the radio's"
    )
    optional: bool = Field(default=False, description="the agent may lack it: not a sign of a wrong profile")
    alternative: Column | None = Field(
        default=None, alias="or", description="read this column where the first has no value"
    )

    def label(self) -> str:
        """Name and OID, as messages show a column."""
        return f"{self.name} ({fmt(self.oid)})" if self.name else fmt(self.oid)

    def chain(self) -> Iterator[Column]:
        """This column and its alternatives, in the order they are tried."""
        column: Column | None = self
        while column is not None:
            yield column
            column = column.alternative


class RadioFields(Strict):
    """The wifi_radio fields and where each comes from (``up`` is required)."""

    up: Column = Field(description="1 when the radio serves clients; needs a map (statuses differ per MIB)")
    radio: Column | None = Field(default=None, description="the radio's name (tag); default its row index")
    band: Column | None = Field(default=None, description="2.4GHz, 5GHz or 6GHz (tag)")
    channel: Column | None = None
    channel_util_pct: Column | None = None
    clients: Column | None = None

    def items(self) -> Iterator[tuple[RadioField, Column]]:
        for name in FIELD_KINDS:
            column = getattr(self, name)
            if column is not None:
                yield name, column  # type: ignore[misc]


class Radios(Strict):
    """The radio table: one row per radio."""

    rows: Column = Field(description="a column with one row per radio")
    only: list[Scalar] | None = Field(default=None, description="keep rows whose rows value is one of these")
    fields: RadioFields


class Join(Strict):
    """Rows of another table that belong to a radio (SSIDs on it, say), matched by a value."""

    key: Column = Field(description="in the other table: the value naming the row's radio")
    matches: Column | None = Field(
        default=None, description="in the radio table: the same value (default: the radio's row index)"
    )


class Controller(Strict):
    """An agent serving many APs: the AP's row in ``ap_name`` gives the index prefix of its radios."""

    ap_name: Column = Field(description="the column of AP names, indexed by the AP")
    ap_index: Literal["mac", "opaque"] = Field(
        default="opaque", description="mac: the AP index is its MAC address (6 sub-identifiers)"
    )


class ProfileSpec(Strict):
    """A profile file."""

    vendor: str = Field(min_length=1)
    mib: str = Field(min_length=1, description="the MIB module the OIDs come from")
    revision: str = Field(min_length=1, description="the MIB revision (LAST-UPDATED) the OIDs were checked against")
    description: str = ""
    controller: Controller | None = None
    radios: Radios
    joins: dict[str, Join] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Profile:
    """A loaded, valid profile."""

    name: str
    path: Path
    spec: ProfileSpec

    def fields(self) -> list[str]:
        """The wifi_radio fields this profile fills."""
        return [name for name, _ in self.spec.radios.fields.items()]


def problems(spec: ProfileSpec) -> list[tuple[KeyPath, str]]:
    """Return what is wrong between the keys of a profile that each passed on their own."""
    found: list[tuple[KeyPath, str]] = []
    for name, column in spec.radios.fields.items():
        path: KeyPath = ("radios", "fields", name)
        for col in column.chain():
            if col.join is not None and col.join not in spec.joins:
                known = ", ".join(sorted(spec.joins)) or "none defined"
                found.append(((*path, "join"), f"join {col.join!r} is not under joins (known: {known})"))
            if (col.join is None) != (col.aggregate is None):
                found.append((path, "join and aggregate go together (which rows, and how do they combine?)"))
            if col.scale is not None and name not in _NUMERIC:
                found.append(((*path, "scale"), "scale applies to numeric fields only"))
            values = [*(col.map or {}).values(), *([col.default] if col.default is not None else [])]
            if name == "up":
                if col.map is None:
                    found.append((path, "up needs a map from the MIB's status values to 1 (up) and 0 (down)"))
                elif any(isinstance(v, str) or v not in (0, 1) for v in values):
                    found.append(((*path, "map"), "up maps to 1 (up) or 0 (down) only"))
            elif FIELD_KINDS[name] == "int" and any(isinstance(v, str | float) for v in values):
                found.append(((*path, "map"), f"{name} maps to whole numbers only"))
            elif FIELD_KINDS[name] == "float" and any(isinstance(v, str) for v in values):
                found.append(((*path, "map"), f"{name} maps to numbers only"))
            path = (*path, "or")
    return found


@dataclass(frozen=True, slots=True)
class ProfileIssue:
    """One problem in a profile file, placed by line and key path."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}: " if self.file else ""
        return f"{where}{self.path}: {self.message}" if self.path else f"{where}{self.message}"


class ProfileError(Exception):
    """A profile that cannot be used, with every problem found."""

    def __init__(self, issues: list[ProfileIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


@dataclass(frozen=True)
class Catalog:
    """Every profile found: by name the good ones, and the problems of the broken ones."""

    profiles: dict[str, Profile] = field(default_factory=dict)
    broken: dict[str, list[ProfileIssue]] = field(default_factory=dict)
    dirs: tuple[Path, ...] = ()

    def names(self) -> list[str]:
        return sorted({*self.profiles, *self.broken})

    def get(self, name: str) -> Profile:
        """Return the named profile; ProfileError says why not (unknown names list the known)."""
        found = self.profiles.get(name)
        if found is not None:
            return found
        if name in self.broken:
            raise ProfileError(self.broken[name])
        hint = difflib.get_close_matches(name, self.names(), n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        where = ", ".join(str(d) for d in self.dirs) or "no profile directory found"
        known = ", ".join(self.names()) or "none"
        raise ProfileError(
            [ProfileIssue("", 0, "", f"unknown profile {name!r}{suggestion}; known: {known} (in {where})")]
        )


def builtin_dir() -> Path | None:
    """Return the directory of the shipped profiles, if there is one."""
    return next((d for d in _BUILTIN_CANDIDATES if d.is_dir()), None)


def load_file(path: Path) -> Profile:
    """Read and validate one profile file; raise ProfileError with every problem in it."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError([ProfileIssue(file, 0, "", f"cannot read profile: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError:
        raise ProfileError([ProfileIssue(file, 0, "", "profile is not UTF-8 text")]) from None
    raw, lines, yaml_problems = load_with_lines(text)
    issues = [ProfileIssue(file, p.line, _path_text(p.path), p.message) for p in yaml_problems]
    if not issues and not isinstance(raw, dict):
        issues.append(ProfileIssue(file, 1, "", "a profile is a mapping (vendor, mib, revision, radios ...)"))
    if issues:
        raise ProfileError(issues)
    try:
        spec = ProfileSpec.model_validate(raw)
    except ValidationError as exc:
        raise ProfileError(_issues(exc, file, lines)) from None
    found = problems(spec)
    if found:
        raise ProfileError([ProfileIssue(file, line_for(lines, p), _path_text(p), m) for p, m in found])
    return Profile(path.name.removesuffix(SUFFIX), path, spec)


_CACHE_LOCK = threading.Lock()
_CACHE: dict[tuple[tuple[str, int, int, int], ...], Catalog] = {}


def catalog(extra: Path | str | None = None) -> Catalog:
    """Load the shipped profiles and those in ``extra`` (which win on a name clash).

    The result is cached by every file's name, size and mtime: checking a config with a hundred
    APs reads each profile once, and an edited profile is read again.
    """
    dirs = [d for d in (Path(extra) if extra is not None else None, builtin_dir()) if d is not None]
    files: dict[str, Path] = {}
    for directory in reversed(dirs):  # built-in first, so the site's directory overrides
        try:
            entries = sorted(directory.glob(f"*{SUFFIX}"))
        except OSError:
            continue
        for path in entries:
            files[path.name.removesuffix(SUFFIX)] = path
    signature: list[tuple[str, int, int, int]] = []
    for path in files.values():
        try:
            st = path.stat()
        except OSError:
            continue
        signature.append((str(path), st.st_size, st.st_mtime_ns, st.st_ino))
    key = tuple(sorted(signature))
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
    if cached is not None and cached.dirs == tuple(dirs):
        return cached
    result = Catalog(dirs=tuple(dirs))
    for name, path in files.items():
        try:
            result.profiles[name] = load_file(path)
        except ProfileError as exc:
            result.broken[name] = exc.issues
    with _CACHE_LOCK:
        if len(_CACHE) > 64:
            _CACHE.clear()
        _CACHE[key] = result
    return result


def _resolve_dir(value: object, info: ValidationInfo) -> str:
    """Resolve a profile directory beside the config file; it must exist."""
    if not isinstance(value, str | os.PathLike) or not str(value).strip():
        raise ValueError("expected a directory path")
    path = Path(str(value)).expanduser()
    if not path.is_absolute():
        context = info.context if isinstance(info.context, dict) else {}
        path = Path(context.get("base_dir", ".")) / path
    if not path.is_dir():
        raise ValueError(f"profile directory {str(path)!r} does not exist")
    return str(path)


#: A directory of site profiles, resolved beside the config file and checked at load.
ProfileDir = Annotated[str, BeforeValidator(_resolve_dir)]


# -- error placement ----------------------------------------------------------------------------

_KNOWN_KEYS: Final = sorted(
    {
        *ProfileSpec.model_fields,
        *Column.model_fields,
        "or",
        *RadioFields.model_fields,
        *Radios.model_fields,
        *Join.model_fields,
        *Controller.model_fields,
    }
)


def _issues(exc: ValidationError, file: str, lines: dict[KeyPath, int]) -> list[ProfileIssue]:
    issues = []
    for err in exc.errors(include_url=False):
        path: KeyPath = tuple(p for p in err["loc"] if p != "[key]" and not str(p).startswith("function-"))
        kind = err["type"]
        if kind == "extra_forbidden":
            key = str(path[-1])
            hint = difflib.get_close_matches(key, _KNOWN_KEYS, n=1, cutoff=0.6)
            message = f"unknown key {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
        elif kind == "missing":
            message = "required key is missing"
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
        # Union members (int | float | str) add their type name to the path; drop it.
        path = tuple(p for p in path if p not in ("int", "float", "str", "list[int]"))
        issues.append(ProfileIssue(file, line_for(lines, path), _path_text(path), message))
    return issues


def _path_text(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def describe(profile: Profile) -> list[str]:
    """Lines for ``netwatch profiles show``: every column a poll reads and what it becomes."""
    spec = profile.spec
    out = [
        f"profile     {profile.name}",
        f"file        {profile.path}",
        f"vendor      {spec.vendor}",
        f"mib         {spec.mib} (revision {spec.revision})",
    ]
    if spec.description:
        out.append(f"description {spec.description}")
    if spec.controller is not None:
        ctl = spec.controller
        index = "the AP's MAC address" if ctl.ap_index == "mac" else "an opaque AP index"
        out.append(f"controller  APs found by name in {ctl.ap_name.label()}; rows indexed by {index}")
    only = f", rows whose value is {', '.join(str(v) for v in spec.radios.only)}" if spec.radios.only else ""
    out.append(f"radios      one per row of {spec.radios.rows.label()}{only}")
    for name, column in spec.radios.fields.items():
        parts = []
        for col in column.chain():
            text = col.label()
            if col.join is not None:
                text += f" over join {col.join} ({col.aggregate})"
            if col.map is not None:
                text += " map " + ", ".join(f"{k}->{v}" for k, v in col.map.items())
                if col.default is not None:
                    text += f", else {col.default}"
            if col.scale is not None:
                text += f" x {col.scale:g}"
            parts.append(text)
        optional = " (optional)" if column.optional else ""
        out.append(f"  {name:<17} {' or '.join(parts)}{optional}")
    for jname, join in spec.joins.items():
        matches = join.matches.label() if join.matches is not None else "the radio's row index"
        out.append(f"join {jname}: rows whose {join.key.label()} equals {matches}")
    return out
