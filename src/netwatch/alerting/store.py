"""Alert state that survives restarts: one SQLite row per (rule, entity), WAL mode.

The engine saves a row whenever something that decides a future transition changes (state,
incident start, clear timer, flap history, the value a pending or firing alert carries) in one
transaction per call, and flushes the rest (when each entity was last seen) on its tick. Loaded
at start, the rows give the engine back its state machines: an alert that was firing is still
firing (no duplicate page, no false resolve), a pending timer continues from when the condition
started, a flapping entity is still flapping.

Beside the state machines: the silences (:mod:`netwatch.alerting.silences`) and which receivers
were told each open incident fires (so a restart neither re-pages nor forgets to send a resolve).

A damaged database is moved aside (``alerts.db.corrupt-<ns>``) and a new one started: losing alert
state costs at most a repeated notice, which the stable incident ids make idempotent downstream;
its silences are lost too, so what they held is sent (logged as ``alert_state_unreadable``).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final, Self, cast

import structlog

from netwatch.alerting.flap import QUIET
from netwatch.alerting.model import AlertState, Severity

log = structlog.get_logger(__name__)

SCHEMA_VERSION: Final = 1

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS alert_state (
    rule            TEXT NOT NULL,
    entity          TEXT NOT NULL,
    state           TEXT NOT NULL,      -- ok | pending | firing (underlying, even while flapping)
    active          INTEGER NOT NULL,   -- the (latched) condition at the last check
    started_ns      INTEGER,            -- condition true since: pending since, and the incident start
    clear_since_ns  INTEGER,            -- a firing alert's condition false since (keep_firing_for)
    clear_count     INTEGER NOT NULL,   -- consecutive clear checks of a firing alert
    value           REAL,
    last_seen_ns    INTEGER,
    seen_ok         INTEGER NOT NULL,   -- require_ok_first: the entity has been ok once
    history         TEXT NOT NULL,      -- flap history, '0'/'1' per check, oldest first
    flapping        INTEGER NOT NULL,
    flap_started_ns INTEGER,            -- incident start the flapping notices carry
    announced_ns    INTEGER,            -- start of the incident announced as firing, not yet resolved
    tags            TEXT NOT NULL,      -- JSON
    gaps_ns         TEXT NOT NULL,      -- JSON: recent gaps between samples (absence rules)
    severity        TEXT NOT NULL,      -- as last announced: a resolve of a removed rule needs them
    summary         TEXT NOT NULL,
    updated_ns      INTEGER NOT NULL,
    PRIMARY KEY (rule, entity)
) WITHOUT ROWID
"""

# Added beside alert_state without a version bump: CREATE IF NOT EXISTS, and older code ignores them.
_SILENCE_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS silence (
    id      TEXT PRIMARY KEY,
    ends_ns INTEGER NOT NULL,
    body    TEXT NOT NULL                -- JSON, as netwatch.alerting.silences.Silence.dumps writes it
)
"""

_NOTICE_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS notice (
    incident TEXT NOT NULL,              -- incident id
    receiver TEXT NOT NULL,
    told_ns  INTEGER NOT NULL,           -- when the receiver was last told it is firing
    PRIMARY KEY (incident, receiver)
) WITHOUT ROWID
"""

_COLUMNS: Final = (
    "rule, entity, state, active, started_ns, clear_since_ns, clear_count, value, last_seen_ns, seen_ok, "
    "history, flapping, flap_started_ns, announced_ns, tags, gaps_ns, severity, summary, updated_ns"
)


@dataclass(slots=True)
class EntityState:
    """The state machine of one (rule, entity), as the engine keeps it and the store saves it."""

    rule: str
    entity: str
    state: AlertState = "ok"
    active: bool = False
    started_ns: int | None = None
    clear_since_ns: int | None = None
    clear_count: int = 0
    value: float | None = None
    last_seen_ns: int | None = None
    seen_ok: bool = False
    history: str = QUIET
    flapping: bool = False
    flap_started_ns: int | None = None
    announced_ns: int | None = None
    tags: dict[str, str] = field(default_factory=dict)
    gaps_ns: list[int] = field(default_factory=list)
    #: Severity and summary of the last transition (to resolve an incident of a rule since removed).
    severity: Severity = "warning"
    summary: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.rule, self.entity)

    def durable(self) -> tuple[object, ...]:
        """Return what must be saved at once when it changes: everything that decides a transition.

        Left out: when the entity was last seen and, while it is ok, its value; those are flushed
        on the engine's tick (losing them to a crash delays an absence alert by at most a tick).
        """
        return (
            self.state,
            self.active,
            self.started_ns,
            self.clear_since_ns,
            self.clear_count,
            self.value if self.state != "ok" else None,
            self.seen_ok,
            self.history,
            self.flapping,
            self.flap_started_ns,
            self.announced_ns,
            self.tags,
        )


class AlertStore:
    """SQLite persistence of :class:`EntityState` rows; ``path`` may be ``:memory:`` for tests."""

    def __init__(self, path: str | Path) -> None:
        self.path = path
        self._db = self._open(path)

    @staticmethod
    def _connect(path: str | Path) -> sqlite3.Connection:
        db = sqlite3.connect(str(path), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a power cut may lose the last transactions, never corrupt the file.
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            db.close()
            raise sqlite3.DatabaseError(f"alert state schema version {version}, expected {SCHEMA_VERSION}")
        db.execute(_SCHEMA)
        db.execute(_SILENCE_SCHEMA)
        db.execute(_NOTICE_SCHEMA)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.execute("SELECT count(*) FROM alert_state").fetchone()
        return db

    def _open(self, path: str | Path) -> sqlite3.Connection:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            return self._connect(path)
        except sqlite3.DatabaseError as exc:
            if str(path) == ":memory:":
                raise
            aside = Path(f"{path}.corrupt-{time.time_ns()}")
            for suffix in ("", "-wal", "-shm"):
                src = Path(f"{path}{suffix}")
                if src.exists():
                    src.rename(Path(f"{aside}{suffix}"))
            log.error("alert_state_unreadable", path=str(path), moved_to=str(aside), error=str(exc))
            return self._connect(path)

    def load(self) -> list[EntityState]:
        """Return every saved state, ordered by (rule, entity)."""
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM alert_state ORDER BY rule, entity").fetchall()
        states = []
        for row in rows:
            try:
                states.append(_from_row(row))
            except (ValueError, TypeError) as exc:
                log.error("alert_state_row_skipped", rule=row[0], entity=row[1], error=str(exc))
        return states

    def save(self, states: Iterable[EntityState]) -> None:
        """Write ``states`` in one transaction."""
        now = time.time_ns()
        rows = [_to_row(s, now) for s in states]
        if not rows:
            return
        placeholders = ", ".join("?" * len(rows[0]))
        with self._transaction():
            self._db.executemany(f"INSERT OR REPLACE INTO alert_state ({_COLUMNS}) VALUES ({placeholders})", rows)

    def delete(self, keys: Iterable[tuple[str, str]]) -> None:
        """Forget the states of these (rule, entity) keys."""
        keys = list(keys)
        if not keys:
            return
        with self._transaction():
            self._db.executemany("DELETE FROM alert_state WHERE rule = ? AND entity = ?", keys)

    # -- silences (netwatch.alerting.silences) ---------------------------------------------------

    def load_silences(self) -> list[tuple[str, str]]:
        """Return every stored silence as (id, JSON text)."""
        rows = self._db.execute("SELECT id, body FROM silence ORDER BY ends_ns, id").fetchall()
        return [(str(r[0]), str(r[1])) for r in rows]

    def save_silence(self, silence_id: str, ends_ns: int, text: str) -> None:
        """Insert or replace one silence."""
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO silence (id, ends_ns, body) VALUES (?, ?, ?)", (silence_id, ends_ns, text)
            )

    def delete_silences(self, silence_ids: Sequence[str]) -> None:
        """Forget these silences."""
        if silence_ids:
            with self._transaction():
                self._db.executemany("DELETE FROM silence WHERE id = ?", [(i,) for i in silence_ids])

    # -- notices: which receivers were told an incident fires (netwatch.alerting.service) -----------

    def load_notices(self) -> dict[str, dict[str, int]]:
        """Return incident id -> receiver -> when it was last told the incident is firing."""
        out: dict[str, dict[str, int]] = {}
        for incident, receiver, told in self._db.execute("SELECT incident, receiver, told_ns FROM notice"):
            out.setdefault(str(incident), {})[str(receiver)] = int(told)
        return out

    def save_notice(self, incident: str, receiver: str, told_ns: int) -> None:
        """Record that a receiver was told (again) that an incident fires."""
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO notice (incident, receiver, told_ns) VALUES (?, ?, ?)",
                (incident, receiver, told_ns),
            )

    def delete_notices(self, incidents: Iterable[str]) -> None:
        """Forget what was told about these incidents (resolved, or no longer firing)."""
        rows = [(i,) for i in incidents]
        if rows:
            with self._transaction():
                self._db.executemany("DELETE FROM notice WHERE incident = ?", rows)

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")


_Row = tuple[object, ...]


def _to_row(s: EntityState, now: int) -> _Row:
    return (
        s.rule,
        s.entity,
        s.state,
        int(s.active),
        s.started_ns,
        s.clear_since_ns,
        s.clear_count,
        s.value,
        s.last_seen_ns,
        int(s.seen_ok),
        s.history,
        int(s.flapping),
        s.flap_started_ns,
        s.announced_ns,
        json.dumps(s.tags, sort_keys=True),
        json.dumps(s.gaps_ns),
        s.severity,
        s.summary,
        now,
    )


def _from_row(row: _Row) -> EntityState:
    state = str(row[2])
    if state not in ("ok", "pending", "firing"):
        raise ValueError(f"unknown state {state!r}")
    severity = str(row[16])
    if severity not in ("critical", "warning", "info"):
        raise ValueError(f"unknown severity {severity!r}")
    tags = json.loads(str(row[14]))
    gaps = json.loads(str(row[15]))
    if not isinstance(tags, dict) or not isinstance(gaps, list):
        raise ValueError("tags or gaps are not JSON of the right shape")
    return EntityState(
        rule=str(row[0]),
        entity=str(row[1]),
        state=cast(AlertState, state),
        active=bool(row[3]),
        started_ns=_opt_int(row[4]),
        clear_since_ns=_opt_int(row[5]),
        clear_count=int(cast(int, row[6])),
        value=None if row[7] is None else float(cast(float, row[7])),
        last_seen_ns=_opt_int(row[8]),
        seen_ok=bool(row[9]),
        history=str(row[10]),
        flapping=bool(row[11]),
        flap_started_ns=_opt_int(row[12]),
        announced_ns=_opt_int(row[13]),
        tags={str(k): str(v) for k, v in tags.items()},
        gaps_ns=[int(g) for g in gaps],
        severity=cast(Severity, severity),
        summary=str(row[17]),
    )


def _opt_int(value: object) -> int | None:
    return None if value is None else int(cast(int, value))
