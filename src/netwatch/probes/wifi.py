"""WiFi access points over SNMP: radios up, clients and channel utilisation, read as a profile says.

The OIDs are not in this code: a profile (:mod:`netwatch.probes.wifiprofile`, ``config/profiles``)
names the columns of the vendor's MIB. A poll walks them (only one AP's rows on a controller) and
writes one ``wifi_radio`` sample per radio and one ``wifi`` sample per AP. Reachability stays with
the ``ping`` check; this check is down when no radio serves (reason ``bad_status``), when the agent
does not have what the profile reads (``bad_content``: a wrong profile, the missing OIDs named),
or when SNMP fails (``timeout``, ``auth`` ... as for the ``snmp`` check).

SNMP access settings are the ``snmp`` check's: the inventory lays ``wifi:`` over ``snmp:`` at each
level, so a community or v3 user set once in ``defaults.snmp`` serves both checks.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import Field

from netwatch.configbase import Duration
from netwatch.model import FieldValue, Outcome, Sample, Target, now_ns
from netwatch.probes.base import Probe, ProbeResources
from netwatch.probes.snmpclient import (
    Oid,
    SnmpAccess,
    SnmpClient,
    SnmpFailure,
    as_int,
    as_text,
    credentials_digest,
    fmt,
    missing,
)
from netwatch.probes.wifiprofile import (
    FIELD_KINDS,
    Column,
    Profile,
    ProfileDir,
    ProfileError,
    ProfileSpec,
    catalog,
)

_MAC = re.compile(r"^[0-9A-Fa-f]{2}([:.-]?)[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}$")
#: An AP name that is not on the controller is looked up again, but not more often than this.
LOOKUP_RETRY_S: Final = 60.0


class WifiConfig(SnmpAccess):
    """The ``wifi`` check: which profile reads the AP, and where its SNMP agent is.

    The SNMP access keys (version, community_file, user ...) are the ``snmp`` check's; set them
    under ``wifi:`` only where the APs differ from the rest of the plant.
    """

    profile: str | None = Field(default=None, description="profile name (netwatch profiles lists them)")
    profile_dir: ProfileDir | None = Field(
        default=None, description="directory of site profiles (NAME.yaml), searched before the shipped ones"
    )
    agent: str | None = Field(
        default=None, min_length=1, description="SNMP agent to ask when it is not the device: the controller"
    )
    ap: str | None = Field(
        default=None, min_length=1, description="the AP's name (or MAC) on the controller; default the device id"
    )
    rediscover: Duration = Field(default=3600.0, description="look the AP up on the controller again this often")

    def problems(self) -> list[str]:
        """Return what this (merged) config lacks: SNMP credentials, a profile that exists and is valid."""
        issues = super().problems()
        try:
            profiles = catalog(self.profile_dir)
            if self.profile is None:
                known = ", ".join(profiles.names()) or "none found"
                issues.append(f"the wifi check needs a profile (known: {known})")
            else:
                profiles.get(self.profile)
        except ProfileError as exc:
            issues.extend(f"profile {self.profile!r} is broken: {i}" if i.file else str(i) for i in exc.issues)
        return issues

    def load_profile(self) -> Profile:
        """Return the profile this config names (ProfileError if it is unknown or broken)."""
        return catalog(self.profile_dir).get(self.profile or "")


@dataclass(frozen=True, slots=True)
class Radio:
    """One radio as read in one poll."""

    index: Oid
    name: str
    values: dict[str, FieldValue]

    @property
    def up(self) -> bool:
        return self.values.get("up") == 1

    def label(self) -> str:
        band = self.values.get("band")
        return f"{self.name} ({band})" if band else self.name


@dataclass
class _Directory:
    """AP name -> index prefix on one controller, shared by every AP probe polling it."""

    names: dict[str, Oid] = field(default_factory=dict)
    fetched_at: float | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class WifiProbe(SnmpClient):
    """Poll one AP's radios through its profile; see the module docstring for the outcomes."""

    _cfg: WifiConfig

    def __init__(self, target: Target, cfg: WifiConfig, profile: Profile, resources: ProbeResources) -> None:
        super().__init__(cfg.agent or target.address, cfg, resources)
        self._target = target
        self._profile = profile
        self._spec: ProfileSpec = profile.spec
        self._ap = cfg.ap or target.device
        self._prefix: Oid | None = None if self._spec.controller else ()
        self._prefix_at = 0.0
        #: The AP's rows vanished: read the controller's AP list again (at most once a minute).
        self._stale = False
        self._ap_tags = {"device": target.device, "site": target.site}
        self._columns = _columns(self._spec)

    # -- the contract ----------------------------------------------------------------------

    async def check(self) -> Outcome:
        """Poll the AP once; a wrong profile, dead radios and SNMP failures come back as outcomes."""
        try:
            return await self._poll()
        except SnmpFailure as failure:
            return Outcome(up=False, reason=failure.reason, detail=failure.detail)

    # -- one poll --------------------------------------------------------------------------

    async def _poll(self) -> Outcome:
        prefix = await self._ap_prefix()
        if prefix is None:
            return self._ap_missing()
        tables = dict(zip(self._columns, await self._walk([(*c, *prefix) for c in self._columns]), strict=True))
        ts = now_ns()
        rows = self._rows(tables)
        if not rows:
            return self._no_rows(tables)
        radios = [self._radio(index, tables) for index in rows]
        samples = self._samples(radios, ts)
        lacking = self._lacking(tables)
        up = [r for r in radios if r.up]
        notes: list[str] = []
        if not up:
            detail = f"no radio up: {', '.join(r.label() for r in radios)} down"
            if lacking:
                detail += f"; the agent also lacks {', '.join(lacking)}"
            return Outcome(up=False, reason="bad_status", detail=detail, samples=samples)
        if lacking:
            return Outcome(
                up=False,
                reason="bad_content",
                detail=f"the agent lacks {', '.join(lacking)}: is profile {self._profile.name!r} right for it?",
                samples=samples,
            )
        down = [r for r in radios if not r.up]
        if down:
            notes.append(f"{len(down)} of {len(radios)} radios down: {', '.join(r.label() for r in down)}")
        if any("clients" in r.values for r in radios) and not any(r.values.get("clients") for r in radios):
            notes.append("no clients associated")
        return Outcome(up=True, reason="ok", detail="; ".join(notes), samples=samples)

    def _rows(self, tables: dict[Oid, dict[Oid, Any]]) -> list[Oid]:
        radios = self._spec.radios
        rows = tables[radios.rows.oid]
        if radios.only is None:
            return sorted(rows)
        keep = {str(v) for v in radios.only}
        return sorted(i for i, v in rows.items() if _key(v) in keep)

    def _no_rows(self, tables: dict[Oid, dict[Oid, Any]]) -> Outcome:
        rows = self._spec.radios.rows
        if self._spec.controller is not None:
            # The AP is listed but has no radio rows: it left, or is joining; look it up again.
            self._prefix, self._stale = None, True
            return Outcome(
                up=False,
                reason="bad_status",
                detail=f"the controller {self._address} lists no radios of AP {self._ap!r} in {rows.label()}: "
                "it left, or is joining",
            )
        if tables[rows.oid] and self._spec.radios.only is not None:
            # The table is there but lists no radio: the agent does not describe its radios the
            # way this profile expects (an AP whose IF-MIB has no ieee80211 interface).
            wanted = " or ".join(str(v) for v in self._spec.radios.only)
            return Outcome(
                up=False,
                reason="bad_content",
                detail=f"no radios: no row of {rows.label()} is {wanted}: "
                f"is profile {self._profile.name!r} right for it?",
            )
        lacking = [rows.label(), *(c for c in self._lacking(tables) if c != rows.label())]
        return Outcome(
            up=False,
            reason="bad_content",
            detail=f"the agent lacks {', '.join(lacking)}: is profile {self._profile.name!r} right for it?",
        )

    def _ap_missing(self) -> Outcome:
        assert self._spec.controller is not None
        names = self._directory().names
        if not names:
            column = self._spec.controller.ap_name.label()
            return Outcome(
                up=False,
                reason="bad_content",
                detail=f"the agent {self._address} lacks {column}: is it a controller of profile "
                f"{self._profile.name!r}?",
            )
        return Outcome(
            up=False,
            reason="bad_status",
            detail=f"AP {self._ap!r} is not on the controller {self._address} ({len(names)} APs listed in "
            f"{self._spec.controller.ap_name.label()}): it has not joined, or set wifi.ap to its name there",
        )

    # -- reading radios --------------------------------------------------------------------

    def _radio(self, index: Oid, tables: dict[Oid, dict[Oid, Any]]) -> Radio:
        values: dict[str, FieldValue] = {}
        for key, column in self._spec.radios.fields.items():
            value = self._field(column, index, tables)
            typed = _as_kind(key, value) if value is not None else None
            if typed is not None:
                values[key] = typed
        if "up" not in values:
            values["up"] = 0  # a radio that does not say it is up is not serving anyone
        name = str(values.pop("radio", "")).strip()
        return Radio(index, name or fmt(index), values)

    def _field(self, column: Column, index: Oid, tables: dict[Oid, dict[Oid, Any]]) -> FieldValue | None:
        for col in column.chain():
            if col.join is None:
                value = _convert(col, tables[col.oid].get(index))
            elif not tables[col.oid]:
                value = None  # the joined table is not there at all: no value, not a sum of nothing
            else:
                raws = [tables[col.oid].get(r) for r in self._joined(col.join, index, tables)]
                value = _aggregate(col.aggregate or "first", (_convert(col, raw) for raw in raws))
            if value is not None:
                return value
        return None

    def _joined(self, join_name: str, index: Oid, tables: dict[Oid, dict[Oid, Any]]) -> list[Oid]:
        join = self._spec.joins[join_name]
        wanted = _key(tables[join.matches.oid].get(index)) if join.matches is not None else fmt(index)
        if wanted is None:
            return []
        return sorted(r for r, v in tables[join.key.oid].items() if _key(v) == wanted)

    def _lacking(self, tables: dict[Oid, dict[Oid, Any]]) -> list[str]:
        """Columns the profile needs that answered for no row at all (each a sign of a wrong profile)."""
        lacking: list[str] = []
        for _, column in self._spec.radios.fields.items():
            if column.optional:
                continue
            if not any(tables[col.oid] for col in column.chain()):
                lacking.extend(col.label() for col in column.chain() if col.label() not in lacking)
        return lacking

    def _samples(self, radios: list[Radio], ts: int) -> tuple[Sample, ...]:
        samples: list[Sample] = []
        clients: list[int] = []
        utils: list[float] = []
        for radio in radios:
            tags = {**self._ap_tags, "radio": radio.name}
            band = radio.values.get("band")
            if isinstance(band, str) and band:
                tags["band"] = band
            fields = {k: v for k, v in radio.values.items() if k != "band"}
            samples.append(Sample("wifi_radio", tags, fields, ts))
            if isinstance(n := radio.values.get("clients"), int):
                clients.append(n)
            if isinstance(u := radio.values.get("channel_util_pct"), float) and radio.up:
                utils.append(u)
        up = sum(1 for r in radios if r.up)
        ap: dict[str, FieldValue] = {"radios_up": up, "radios_down": len(radios) - up}
        if clients:
            ap["clients"] = sum(clients)
        if utils:
            ap["channel_util_pct"] = max(utils)  # the busiest radio is what users feel
        samples.append(Sample("wifi", self._ap_tags, ap, ts))
        return tuple(samples)

    # -- finding the AP on a controller ----------------------------------------------------

    def _directory(self) -> _Directory:
        key = f"wifi_directory/{self._address}/{self._cfg.port}/{self._profile.name}/{credentials_digest(self._cfg)}"
        found = self._resources.shared.get(key)
        if not isinstance(found, _Directory):
            found = _Directory()
            self._resources.shared[key] = found
        return found

    async def _ap_prefix(self) -> Oid | None:
        """Return the index prefix of this AP's rows (() for a standalone AP), None if not found."""
        controller = self._spec.controller
        if controller is None:
            return ()
        now = time.monotonic()
        if self._prefix is not None and now - self._prefix_at < self._cfg.rediscover:
            return self._prefix
        if controller.ap_index == "mac" and _MAC.match(self._ap):
            self._prefix, self._prefix_at = _mac_index(self._ap), now
            return self._prefix
        directory = self._directory()
        async with directory.lock:
            # Another AP's probe may have refreshed the list while this one waited for the lock.
            fresh = directory.fetched_at is not None and now - directory.fetched_at < self._cfg.rediscover
            retry = directory.fetched_at is None or now - directory.fetched_at >= LOOKUP_RETRY_S
            if not fresh or ((self._stale or self._ap not in directory.names) and retry):
                (column,) = await self._walk([controller.ap_name.oid])
                directory.names = {}
                for index, value in sorted(column.items()):
                    text = as_text(value)
                    if text is not None:
                        directory.names.setdefault(text.strip("\x00 "), index)
                directory.fetched_at = time.monotonic()
                self._stale = False
        found = directory.names.get(self._ap)
        if found is not None:
            self._prefix, self._prefix_at = found, now
        return found


def _columns(spec: ProfileSpec) -> list[Oid]:
    """Every column a poll walks, once each, in a stable order."""
    seen: dict[Oid, None] = {spec.radios.rows.oid: None}
    for _, column in spec.radios.fields.items():
        for col in column.chain():
            seen[col.oid] = None
    for join in spec.joins.values():
        seen[join.key.oid] = None
        if join.matches is not None:
            seen[join.matches.oid] = None
    return list(seen)


def _key(value: Any) -> str | None:
    """The text a raw value is matched by (map keys, joins, ``only``)."""
    if missing(value):
        return None
    number = as_int(value)
    if number is not None:
        return str(number)
    text = as_text(value)
    return text.strip("\x00 ") if text is not None else str(value)


def _convert(column: Column, raw: Any) -> FieldValue | None:
    """Turn a raw SNMP value into the column's netwatch value (None: no value)."""
    key = _key(raw)
    if key is None:
        return None
    if column.map is not None:
        return column.map.get(key, column.default)
    number = as_int(raw)
    value: FieldValue = number if number is not None else key
    if column.scale is not None:
        try:
            value = float(value) * column.scale
        except ValueError:
            return None
    return value


def _as_kind(name: str, value: FieldValue) -> FieldValue | None:
    """Give a field its contract type (None for text where a number belongs: no value)."""
    kind = FIELD_KINDS[name]
    if kind == "str":
        return str(value)
    try:
        number = float(value)
    except ValueError:
        return None
    return round(number) if kind == "int" else number


def _aggregate(how: str, values: Iterable[FieldValue | None]) -> FieldValue | None:
    present = [v for v in values if v is not None]
    numbers = [v for v in present if isinstance(v, int | float) and not isinstance(v, bool)]
    if how == "first":
        return present[0] if present else None
    if how == "sum":
        return sum(numbers) if numbers or not present else None
    if not numbers:
        return None
    return max(numbers) if how == "max" else min(numbers)


def _mac_index(mac: str) -> Oid:
    digits = re.sub(r"[^0-9A-Fa-f]", "", mac)
    return tuple(int(digits[i : i + 2], 16) for i in range(0, 12, 2))


def build(target: Target, cfg: WifiConfig, resources: ProbeResources) -> Probe:
    """Build a wifi probe for one AP (the SnmpEngine is shared through ``resources``)."""
    issues = cfg.problems()
    if issues:
        # The config loader reports these with file and line; reaching here is a bug.
        raise ValueError(f"{target.device}: wifi check cannot run: {'; '.join(issues)}")
    return WifiProbe(target, cfg, cfg.load_profile(), resources)
