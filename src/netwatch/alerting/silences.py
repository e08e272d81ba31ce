"""Silences: label matchers that hold an incident's notices for a while, as Alertmanager's do.

A silence has matchers (``label=value``, ``label!=value``, ``label=~regex``, ``label!~regex``;
a regular expression matches the whole value, a missing label reads as the empty string), a
start, an end, who made it and why. While it is active, every open incident whose labels (plus
``entity``) satisfy all its matchers is *held*, like one inside a maintenance window: its
transitions are recorded in the ``alert`` measurement but no notice is sent; whatever still fires
when the silence ends (or is expired by hand) is sent then.

Silences are persisted (``alerts.db``) so they survive a restart, and expire by time; an expired
silence is kept for :data:`EXPIRED_KEPT_S` so ``netwatch silences list --all`` can show it.

Guards, because a silence that holds everything is a silent outage of the pager: at least one
matcher must need a value (Alertmanager's rule: not every matcher may match the empty string), the
matchers together may not match every value, a silence may last at most ``api.silence_max_duration``,
and at most :data:`MAX_SILENCES` may be active or pending at once.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, Literal, Protocol

import structlog

from netwatch.configbase import parse_duration
from netwatch.model import now_ns

log = structlog.get_logger(__name__)

Op = Literal["=", "!=", "=~", "!~"]
OPS: Final[tuple[Op, ...]] = ("=", "!=", "=~", "!~")
SilenceState = Literal["pending", "active", "expired"]

#: Expired silences are kept this long (Alertmanager's default retention is 120 h).
EXPIRED_KEPT_S: Final = 5 * 86400.0
#: Active or pending silences at once; past it a new one is refused (a runaway script, not an operator).
MAX_SILENCES: Final = 1000
MAX_MATCHERS: Final = 32
MAX_TEXT: Final = 2000

_LABEL: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MATCHER_TEXT: Final = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)(.*)", re.DOTALL)
#: Values a matcher is tried on to tell whether it matches anything at all.
_PROBES: Final = (
    "device_down",
    "critical",
    "warning",
    "info",
    "sw-vp",
    "core-ch:xe-0/0/1",
    "villa-parke",
    "span-ch-pd",
    "camera",
    "x",
    "0",
    "Ünïcode λ",
    "a b",
    "-",
    "." * 70,
)
#: Labels every incident has, so a matcher that accepts any non-empty value of them matches everything.
_ALWAYS_SET: Final = frozenset({"rule", "severity", "entity"})
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_FIELDS: Final = ("matchers", "starts_at", "ends_at", "duration", "created_by", "comment")
_MATCHER_FIELDS: Final = ("label", "op", "value")


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label condition of a silence (or of a ``filter`` on the alerts API)."""

    label: str
    op: Op
    value: str
    pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def build(cls, label: str, op: str, value: str) -> Matcher:
        """Check and compile a matcher.

        Raises:
            ValueError: the label is not a label name, the operator is unknown or the regex is invalid.
        """
        if not _LABEL.fullmatch(label):
            raise ValueError(f"{label!r} is not a label name (letters, digits and _, not starting with a digit)")
        if op not in OPS:
            raise ValueError(f"unknown operator {op!r}; use one of {', '.join(OPS)}")
        pattern = None
        if op in ("=~", "!~"):
            try:
                pattern = re.compile(value)
            except re.error as exc:
                raise ValueError(f"{label}{op}{value!r}: invalid regular expression: {exc}") from None
        return cls(label, op, value, pattern)

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """Parse ``label=value``, ``label!=value``, ``label=~regex`` or ``label!~regex``.

        The value may be in double quotes (``site="villa parke"``), as amtool writes it.

        Raises:
            ValueError: with the form expected.
        """
        match = _MATCHER_TEXT.fullmatch(text)
        if match is None:
            raise ValueError(
                f"{text!r} is not a matcher; write label=value, label!=value, label=~regex or label!~regex"
            )
        label, op, value = match.group(1), match.group(2), match.group(3).strip()
        if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
            try:
                value = str(json.loads(value))
            except json.JSONDecodeError:
                raise ValueError(f"{text!r}: the quoted value is not a valid string") from None
        return cls.build(label, op, value)

    def matches_value(self, value: str) -> bool:
        """Return whether a label value (``""`` when the label is missing) satisfies this matcher."""
        if self.pattern is not None:
            found = self.pattern.fullmatch(value) is not None
            return found if self.op == "=~" else not found
        return (value == self.value) if self.op == "=" else (value != self.value)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Return whether these labels satisfy this matcher."""
        return self.matches_value(labels.get(self.label, ""))

    def matches_anything(self) -> bool:
        """Return whether this matcher lets every incident through (``rule=~.+``, ``site!=nowhere``)."""
        if not all(self.matches_value(v) for v in _PROBES):
            return False
        return self.label in _ALWAYS_SET or self.matches_value("")

    def to_json(self) -> dict[str, str]:
        return {"label": self.label, "op": self.op, "value": self.value}

    def __str__(self) -> str:
        return f"{self.label}{self.op}{json.dumps(self.value, ensure_ascii=False)}"


def matches_all(matchers: Sequence[Matcher], labels: Mapping[str, str]) -> bool:
    """Return whether the labels satisfy every matcher."""
    return all(m.matches(labels) for m in matchers)


@dataclass(frozen=True, slots=True)
class SilenceSpec:
    """A validated request for a new silence (times in ns since the epoch)."""

    matchers: tuple[Matcher, ...]
    starts_ns: int
    ends_ns: int
    created_by: str
    comment: str


@dataclass(frozen=True, slots=True)
class Silence:
    """A silence as stored: what it matches, when, who made it and why."""

    id: str
    matchers: tuple[Matcher, ...]
    starts_ns: int
    ends_ns: int
    created_by: str
    comment: str
    created_ns: int
    updated_ns: int

    def state(self, now: int) -> SilenceState:
        if now >= self.ends_ns:
            return "expired"
        return "pending" if now < self.starts_ns else "active"

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Return whether an incident with these labels falls under this silence (whatever its state)."""
        return matches_all(self.matchers, labels)

    def to_json(self, now: int) -> dict[str, object]:
        """The API's view of the silence."""
        return {
            "id": self.id,
            "state": self.state(now),
            "matchers": [m.to_json() for m in self.matchers],
            "starts_at": rfc3339(self.starts_ns),
            "ends_at": rfc3339(self.ends_ns),
            "created_by": self.created_by,
            "comment": self.comment,
            "created_at": rfc3339(self.created_ns),
            "updated_at": rfc3339(self.updated_ns),
        }

    def dumps(self) -> str:
        """Serialise for the store."""
        doc = {
            "matchers": [m.to_json() for m in self.matchers],
            "starts_ns": self.starts_ns,
            "ends_ns": self.ends_ns,
            "created_by": self.created_by,
            "comment": self.comment,
            "created_ns": self.created_ns,
            "updated_ns": self.updated_ns,
        }
        return json.dumps(doc, sort_keys=True, ensure_ascii=False)

    @classmethod
    def loads(cls, silence_id: str, text: str) -> Silence:
        """Read back what :meth:`dumps` wrote.

        Raises:
            ValueError: the stored text is damaged.
        """
        try:
            doc = json.loads(text)
            return cls(
                id=silence_id,
                matchers=tuple(Matcher.build(str(m["label"]), str(m["op"]), str(m["value"])) for m in doc["matchers"]),
                starts_ns=int(doc["starts_ns"]),
                ends_ns=int(doc["ends_ns"]),
                created_by=str(doc["created_by"]),
                comment=str(doc["comment"]),
                created_ns=int(doc["created_ns"]),
                updated_ns=int(doc["updated_ns"]),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"damaged silence: {type(exc).__name__}: {exc}") from None


def rfc3339(ns: int) -> str:
    """Return an RFC 3339 UTC timestamp with second precision (``2026-12-02T14:00:00Z``)."""
    return datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC).isoformat().replace("+00:00", "Z")


class SilenceInvalid(ValueError):
    """A silence request with problems; ``problems`` lists every one."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


def _time(value: object, name: str, problems: list[str]) -> int | None:
    if not isinstance(value, str):
        problems.append(f"{name}: expected an RFC 3339 time such as 2026-12-02T06:00:00-08:00")
        return None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        problems.append(f"{name}: {value!r} is not an RFC 3339 time such as 2026-12-02T06:00:00-08:00")
        return None
    if when.tzinfo is None:
        problems.append(f"{name}: {value!r} has no UTC offset; add Z or e.g. -08:00")
        return None
    return (when - _EPOCH) // timedelta(microseconds=1) * 1000


def _text(body: Mapping[str, object], name: str, problems: list[str]) -> str:
    value = body.get(name)
    if value is None:
        problems.append(f"{name}: required")
        return ""
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{name}: required, a non-empty string")
        return ""
    if len(value) > MAX_TEXT:
        problems.append(f"{name}: longer than {MAX_TEXT} characters")
    return value.strip()


def _matchers(value: object, problems: list[str]) -> list[Matcher]:
    if not isinstance(value, list) or not value:
        problems.append("matchers: required, a non-empty list such as [{label: rule, op: '=', value: device_down}]")
        return []
    if len(value) > MAX_MATCHERS:
        problems.append(f"matchers: at most {MAX_MATCHERS}")
    out: list[Matcher] = []
    for i, item in enumerate(value):
        where = f"matchers.{i}"
        try:
            if isinstance(item, str):
                out.append(Matcher.parse(item))
                continue
            if not isinstance(item, dict):
                problems.append(f"{where}: expected {{label, op, value}} or a string such as 'site=villa-parke'")
                continue
            unknown = sorted(set(item) - set(_MATCHER_FIELDS))
            if unknown:
                problems.append(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}; known: label, op, value")
            label, op, text = item.get("label"), item.get("op", "="), item.get("value")
            if not isinstance(label, str) or not isinstance(text, str) or not isinstance(op, str):
                problems.append(f"{where}: label and value are required strings, op one of {', '.join(OPS)}")
                continue
            out.append(Matcher.build(label, op, text))
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
    return out


def parse_silence(body: object, *, now: int, max_duration_s: float) -> SilenceSpec:
    """Check a silence request (the JSON body of ``POST /api/v1/silences``) and return it.

    Fields: ``matchers`` (``[{label, op, value}]``, op ``=`` by default, or ``"label=value"``
    strings), ``starts_at`` (RFC 3339; default and at the earliest: now), ``ends_at`` or
    ``duration`` (``2h``, ``90m`` or seconds), ``created_by`` and ``comment`` (both required).

    Raises:
        SilenceInvalid: listing every problem found, not only the first.
    """
    if not isinstance(body, dict):
        raise SilenceInvalid(["the body must be a JSON object with matchers, ends_at or duration, created_by, comment"])
    problems: list[str] = []
    unknown = sorted(set(body) - set(_FIELDS))
    if unknown:
        problems.append(f"unknown field(s) {', '.join(map(repr, unknown))}; known: {', '.join(_FIELDS)}")
    matchers = _matchers(body.get("matchers"), problems)
    if matchers and len(matchers) == len(body.get("matchers") or ()):
        if all(m.matches_value("") for m in matchers):
            problems.append(
                "matchers: every matcher also matches a missing label, so the silence would hold every alert; "
                'at least one must need a value, e.g. rule="device_down" or site="villa-parke"'
            )
        elif all(m.matches_anything() for m in matchers):
            problems.append("matchers: together they match every alert; name what to silence, e.g. site=villa-parke")
    created_by = _text(body, "created_by", problems)
    comment = _text(body, "comment", problems)

    starts = now
    if body.get("starts_at") is not None:
        given = _time(body["starts_at"], "starts_at", problems)
        starts = max(now, given) if given is not None else now  # a start in the past means now
    ends: int | None = None
    has_end, has_duration = body.get("ends_at") is not None, body.get("duration") is not None
    if has_end and has_duration:
        problems.append("give ends_at or duration, not both")
    elif has_end:
        ends = _time(body["ends_at"], "ends_at", problems)
    elif has_duration:
        try:
            seconds = parse_duration(body["duration"])
        except ValueError as exc:
            problems.append(f"duration: {exc}")
        else:
            if seconds <= 0:
                problems.append("duration: must be longer than 0")
            else:
                ends = starts + int(seconds * 1e9)
    else:
        problems.append("ends_at or duration: required (e.g. duration: 2h)")
    if ends is not None:
        if ends <= now:
            problems.append(f"ends_at: {rfc3339(ends)} is in the past")
        elif ends <= starts:
            problems.append(f"ends_at: {rfc3339(ends)} is not after starts_at {rfc3339(starts)}")
        elif (ends - starts) / 1e9 > max_duration_s:
            problems.append(
                f"the silence would last {_human(int((ends - starts) / 1e9))}, longer than "
                f"api.silence_max_duration ({_human(int(max_duration_s))}); use a maintenance window for planned work"
            )
    if problems or ends is None:
        raise SilenceInvalid(problems)
    return SilenceSpec(tuple(matchers), starts, ends, created_by, comment)


def _human(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")) if n]
    return "".join(parts) or "0s"


class SilenceStore(Protocol):
    """Where silences persist (:class:`netwatch.alerting.store.AlertStore` implements it)."""

    def load_silences(self) -> list[tuple[str, str]]:
        """Return every stored silence as (id, text)."""
        ...

    def save_silence(self, silence_id: str, ends_ns: int, text: str) -> None: ...

    def delete_silences(self, silence_ids: Sequence[str]) -> None: ...


class Silences:
    """The silences in force, pending or recently expired; persisted through ``store`` when given."""

    def __init__(self, store: SilenceStore | None = None, *, clock: Callable[[], int] = now_ns) -> None:
        self._store = store
        self._clock = clock
        self._by_id: dict[str, Silence] = {}
        for silence_id, text in store.load_silences() if store is not None else ():
            try:
                self._by_id[silence_id] = Silence.loads(silence_id, text)
            except ValueError as exc:
                log.error("silence_unreadable", silence=silence_id, error=str(exc))
        self.prune()

    def now(self) -> int:
        """Nanoseconds now, by the clock the silences keep time with."""
        return self._clock()

    def prune(self, now: int | None = None) -> None:
        """Forget silences expired more than :data:`EXPIRED_KEPT_S` ago."""
        now = self._clock() if now is None else now
        old = [s.id for s in self._by_id.values() if now - s.ends_ns > EXPIRED_KEPT_S * 1e9]
        for silence_id in old:
            del self._by_id[silence_id]
        if old and self._store is not None:
            self._store.delete_silences(old)

    def add(self, spec: SilenceSpec) -> Silence:
        """Create a silence from a checked request.

        Raises:
            SilenceInvalid: :data:`MAX_SILENCES` are already active or pending.
        """
        now = self._clock()
        self.prune(now)
        if sum(1 for s in self._by_id.values() if s.state(now) != "expired") >= MAX_SILENCES:
            raise SilenceInvalid([f"{MAX_SILENCES} silences are active or pending already; expire some first"])
        silence = Silence(
            id=str(uuid.uuid4()),
            matchers=spec.matchers,
            starts_ns=spec.starts_ns,
            ends_ns=spec.ends_ns,
            created_by=spec.created_by,
            comment=spec.comment,
            created_ns=now,
            updated_ns=now,
        )
        self._save(silence)
        log.info(
            "silence_created",
            silence=silence.id,
            matchers=", ".join(map(str, silence.matchers)),
            starts_at=rfc3339(silence.starts_ns),
            ends_at=rfc3339(silence.ends_ns),
            created_by=silence.created_by,
        )
        return silence

    def expire(self, silence_id: str) -> Silence | None:
        """End a silence now (a pending one never starts); ``None`` if there is no such silence.

        Expiring an expired silence changes nothing and returns it, so a retried request is harmless.
        """
        silence = self._by_id.get(silence_id)
        if silence is None:
            return None
        now = self._clock()
        if silence.state(now) == "expired":
            return silence
        silence = Silence(
            id=silence.id,
            matchers=silence.matchers,
            starts_ns=min(silence.starts_ns, now),
            ends_ns=now,
            created_by=silence.created_by,
            comment=silence.comment,
            created_ns=silence.created_ns,
            updated_ns=now,
        )
        self._save(silence)
        log.info("silence_expired", silence=silence.id, matchers=", ".join(map(str, silence.matchers)))
        return silence

    def _save(self, silence: Silence) -> None:
        if self._store is not None:
            self._store.save_silence(silence.id, silence.ends_ns, silence.dumps())
        self._by_id[silence.id] = silence

    def get(self, silence_id: str) -> Silence | None:
        return self._by_id.get(silence_id)

    def all(self, now: int | None = None) -> list[Silence]:
        """Every kept silence: active ones first (ending soonest first), then pending, then expired (latest first)."""
        now = self._clock() if now is None else now
        self.prune(now)

        def key(silence: Silence) -> tuple[int, int]:
            state = silence.state(now)
            if state == "active":
                return (0, silence.ends_ns)
            return (1, silence.starts_ns) if state == "pending" else (2, -silence.ends_ns)

        return sorted(self._by_id.values(), key=key)

    def active(self, now: int | None = None) -> list[Silence]:
        """The silences in force at ``now``."""
        now = self._clock() if now is None else now
        return [s for s in self._by_id.values() if s.state(now) == "active"]


def silencing(active: Sequence[Silence], labels: Mapping[str, str]) -> tuple[str, ...]:
    """Return the ids of the silences (of ``active``) that hold an incident with these labels."""
    return tuple(sorted(s.id for s in active if s.matches(labels)))


__all__ = [
    "EXPIRED_KEPT_S",
    "MAX_SILENCES",
    "OPS",
    "Matcher",
    "Op",
    "Silence",
    "SilenceInvalid",
    "SilenceSpec",
    "SilenceState",
    "SilenceStore",
    "Silences",
    "matches_all",
    "parse_silence",
    "rfc3339",
    "silencing",
]
