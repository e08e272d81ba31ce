"""A durable spool: every line is committed to SQLite (WAL) before it counts as collected.

Why SQLite in WAL mode rather than segment files (measured here, see BENCHMARKS.md): a commit of
one observation's ~10 lines costs ~0.1 ms and appends run at 90-240k points/s; WAL frames carry
checksums, so a torn tail after a crash or power cut is discarded by SQLite itself; rows can be
deleted in any order, which is what "fresh data first, backlog behind it" needs (segment files
would need per-record ack bitmaps); and the file needs no compaction logic of ours.

* ``append`` commits at once (``synchronous=NORMAL``: a SIGKILL loses nothing committed; a power
  cut may lose the last second, the WAL's fsync interval).
* ``take`` hands out the *newest* waiting lines first, so after an outage fresh data is in
  InfluxDB within one flush interval while the backlog drains behind it. Timestamps are collection
  times, so the order of writes does not matter to InfluxDB and a replay is an upsert.
* Every row carries a CRC-32 of its line; a row whose line does not match is never sent: it is
  deleted and counted (``corrupt``). A file SQLite cannot read is moved aside untouched, what can
  be read is salvaged into a fresh spool (resumably, should the process die meanwhile).
* The cap is in bytes of line data. Past it, and when the disk is full, the oldest lines are
  dropped and counted: ``written + rejected + dropped + held == appended``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

import structlog
from pydantic import ByteSize, Field

from netwatch.configbase import Strict
from netwatch.sink.buffer import Batch

log = structlog.get_logger(__name__)

#: Disk kept in reserve beside the spool, for when something else fills the file system: given up
#: so that the pages the WAL holds can be written back and the oldest points deleted, then taken
#: again from the pages those points freed. At least one WAL cycle (the autocheckpoint's 1000
#: pages): that is what a checkpoint may need to grow the database by.
RESERVE_BYTES = 4 << 20
#: Pages freed per acknowledged batch once the spool has (nearly) drained: bounded work on the
#: event loop (~2 MiB, a few ms), so a 250 MiB peak goes back to the disk over a couple of minutes.
VACUUM_PAGES = 512
GIVE_BACK_BELOW = 10_000
WAL_LIMIT_BYTES = 4 << 20
#: Disk the spool leaves free when the file system is nearly full: the WAL frames of the next
#: transaction, and a little for the rest of the system.
DISK_SLACK = 1 << 20
#: Below this much free disk the spool stops growing blindly (see ``_disk_shortfall``). Above it,
#: one append cannot run the disk out: it adds at most one WAL cycle of frames, and an automatic
#: checkpoint grows the database by at most one WAL cycle of pages.
LOW_DISK = 2 * WAL_LIMIT_BYTES + DISK_SLACK

#: Per-row overhead counted against the cap (rowid, CRC, b-tree cell), measured ~40 bytes.
ROW_OVERHEAD = 40
#: How much below the cap a trim goes, so that a spool at its cap does not trim on every append
#: (small: a trim runs on the event loop, and 1 % of a 1 GiB spool is ~0.2 s of deletes).
TRIM_HEADROOM = 0.01

_SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    seq  INTEGER PRIMARY KEY,
    line BLOB NOT NULL,
    crc  INTEGER NOT NULL
)
"""


class SpoolConfig(Strict):
    """The spool under ``state_dir``: what is kept while InfluxDB is away."""

    max_bytes: ByteSize = Field(
        default=ByteSize(1 << 30),
        ge=1 << 20,
        description="cap on points held (e.g. 512MiB, 2GiB); past it the oldest are dropped and counted",
    )


def _crc(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


class SqliteSpool:
    """A :class:`~netwatch.sink.buffer.LineBuffer` that survives restarts and crashes."""

    durable = True
    recovered = 0

    def __init__(self, path: Path, *, max_bytes: int) -> None:
        if max_bytes < 1024:
            raise ValueError("max_bytes must be at least 1 KiB")
        self.path = path
        self._cap = max_bytes
        self._dropped = 0
        self.corrupt = 0
        self.recovered = 0
        self._full_logged = False
        self._disk_logged = False
        self._write_failed_logged = False
        self._dir = os.fspath(path.parent)
        self._free_guess, self._free_asked = 0, 0.0
        self._reserve = path.with_name(path.name + ".reserve")
        self._batch_seq = 0
        #: batch seq -> (seqs of its rows, bytes); rows stay in the table until acked.
        self._taken: dict[int, tuple[list[int], int]] = {}
        self._taken_points = 0
        self._undeleted: list[int] = []
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._open()
        row = self._db.execute("SELECT count(*), coalesce(sum(length(line)), 0) FROM points").fetchone()
        self._count = int(row[0])
        self._bytes = int(row[1]) + ROW_OVERHEAD * self._count
        self.recovered = self._count
        self._ensure_reserve()
        if self._count:
            log.info("spool_recovered", path=str(path), points=self._count, bytes=self._bytes)

    # -- opening and salvage ------------------------------------------------------------------------

    def _connect(self, path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # auto_vacuum must be set before the first table exists (and before WAL mode is set on a
        # new file), or it silently stays off and a drained spool never gives its disk back.
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        # Debian's SQLite is built with SECURE_DELETE: every freed page is zeroed, so a DELETE
        # writes as many WAL frames as the rows it removes. That made deleting the oldest points
        # on a full disk need as much free disk as they held, and drain ran at ~230k points/s
        # instead of ~315k (bench/spool.py); the lines are InfluxDB's anyway, nothing to hide.
        db.execute("PRAGMA secure_delete=OFF")
        # After a checkpoint the WAL is cut back to this, instead of keeping its high-water size.
        db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
        return db

    def _open(self) -> sqlite3.Connection:
        if self._salvage_marker.exists():
            return self._salvage(None)  # a salvage was under way when the process died: finish it
        problem = _problem(self.path) if self.path.exists() else None
        if problem is None:
            try:
                db = self._connect(self.path)
                db.execute(_SCHEMA)
                return db
            except sqlite3.DatabaseError as exc:
                problem = str(exc)
        return self._salvage(problem)

    @property
    def _salvage_marker(self) -> Path:
        return self.path.with_name(self.path.name + ".salvage")

    def _salvage(self, problem: str | None) -> sqlite3.Connection:
        """Set an unreadable spool aside untouched, copy what still reads into a fresh one, and
        switch to it; or, with ``problem`` None, finish a salvage that a dead process started.

        Each step survives a crash and is taken up again at the next start, so a restart neither
        loses the rows already copied nor copies them twice:

        1. ``spool.db.salvage`` names the aside, written before anything moves;
        2. the damaged files are renamed to it, the main file last (while it is still at its
           name, this step is not done);
        3. rows are copied in seq order, a committed batch at a time, into
           ``spool.db.salvaging``, resuming after the largest seq already there;
        4. ``spool.db.salvaging`` becomes ``spool.db``; then the marker goes.

        SQLite never opens the aside files: a read-write connection would checkpoint the WAL into
        the damaged file when closed, and even a read-only one writes the -shm. Rows are read
        from a scratch copy of the file and its WAL (the newest rows are often still in the WAL).
        """
        marker = self._salvage_marker
        target = self.path.with_name(self.path.name + ".salvaging")
        resumed = problem is None
        if problem is None:
            aside = self.path.with_name(marker.read_text().strip() or "-")
            problem = "a salvage was cut short; resumed"
            if self.path.exists() and (aside.exists() or not aside.name.startswith(self.path.name + ".corrupt-")):
                marker.unlink()  # step 4 was done (or the marker is not ours): nothing left to copy
                return self._open()
        else:
            stamp = int(time.time())
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
            while Path(f"{aside}-wal").exists() or aside.exists():
                stamp += 1
                aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
            # No room even for the marker (a full disk): salvage anyway, only not resumably.
            with contextlib.suppress(OSError):
                _write_durably(marker, aside.name)
        if self.path.exists():
            _set_aside(self.path, aside)
        saved, before, lost_ranges = 0, 0, 0
        try:
            new = sqlite3.connect(target, isolation_level=None)
            try:
                # A rollback journal, not WAL, while it is filled: one file to rename at the end,
                # and a hot journal (a crash mid-batch) is rolled back when it is opened again.
                new.execute("PRAGMA auto_vacuum=INCREMENTAL")  # before the table exists
                new.execute(_SCHEMA)
                before, last = new.execute("SELECT count(*), coalesce(max(seq), -1) FROM points").fetchone()
                if aside.exists():
                    saved, lost_ranges = self._copy_rows(aside, new, int(last))
            finally:
                new.close()
        except (sqlite3.DatabaseError, OSError) as exc:
            problem = f"{problem}; salvage stopped: {exc}"
        if target.exists():
            _switch(target, self.path)
        marker.unlink(missing_ok=True)
        log.error(
            "spool_corrupt",
            path=str(self.path),
            moved_to=str(aside),
            problem=problem,
            resumed=resumed,
            salvaged_points=before + saved,
            corrupt_points=self.corrupt,
            unreadable_ranges=lost_ranges,
        )
        db = self._connect(self.path)
        db.execute(_SCHEMA)
        return db

    def _copy_rows(self, aside: Path, new: sqlite3.Connection, last: int) -> tuple[int, int]:
        """Copy the rows after seq ``last`` that still read and pass their CRC from the damaged
        spool set aside at ``aside`` into ``new``; return (rows copied, unreadable ranges)."""
        saved, lost_ranges = 0, 0
        readable = _scratch_copy(aside)
        try:
            old = sqlite3.connect(f"{readable.resolve().as_uri()}?mode=ro", uri=True)
            try:
                step = 64
                while step < 2**40:
                    try:
                        rows = old.execute(
                            "SELECT seq, line, crc FROM points WHERE seq > ? ORDER BY seq LIMIT 1000", (last,)
                        ).fetchall()
                    except sqlite3.DatabaseError:
                        # A damaged or missing b-tree page. Rows next to it may still read one by
                        # one (a range scan fails as soon as it touches the bad page); past them,
                        # skip ahead, further each time.
                        lost_ranges += 1
                        rows = []
                        for seq in range(last + 1, last + 1 + min(step, 1000)):
                            with contextlib.suppress(sqlite3.DatabaseError):
                                rows += old.execute(
                                    "SELECT seq, line, crc FROM points WHERE seq = ?", (seq,)
                                ).fetchall()
                        if not rows:
                            last += step
                            step *= 2
                            continue
                    if not rows:
                        break
                    step = 64 if len(rows) == 1000 or lost_ranges == 0 else step
                    good = [
                        (seq, _as_bytes(line), crc)
                        for seq, line, crc in rows
                        if isinstance(line, bytes | str) and isinstance(crc, int) and _crc(_as_bytes(line)) == crc
                    ]
                    self.corrupt += len(rows) - len(good)
                    _insert_salvaged(new, good)
                    saved += len(good)
                    last = rows[-1][0]
            finally:
                old.close()
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{readable}{suffix}").unlink(missing_ok=True)
        return saved, lost_ranges

    # -- LineBuffer --------------------------------------------------------------------------------

    def append(self, lines: Sequence[str]) -> None:
        """Commit lines to disk; past the cap or on a full disk, drop the oldest (counted)."""
        if not lines:
            return
        rows = []
        size = 0
        for line in lines:
            data = line.encode()
            size += len(data) + ROW_OVERHEAD
            rows.append((data, _crc(data)))
        if size > self._cap:
            self._drop_new(len(rows), "a single submit is larger than the spool's cap")
            return
        excess = 0
        if self._bytes + size > self._cap:
            excess = self._bytes + size - int(self._cap * (1 - TRIM_HEADROOM))
        try:
            excess = max(excess, self._disk_shortfall(size))
            self._write(rows, size, excess)
        except sqlite3.OperationalError as exc:
            self._rollback()
            if not _disk_full(exc):
                self._drop_new(len(rows), f"cannot write the spool: {exc}")
                return
            self._write_on_full_disk(rows, size, excess)

    def _disk_shortfall(self, size: int) -> int:
        """Return how many bytes of the oldest points to drop so that ``size`` more fits on the disk.

        Why the spool watches the free space itself rather than waiting for SQLITE_FULL (issue 3):
        once the disk is full, the WAL holds pages past the end of the database file, a checkpoint
        cannot write them back, the WAL cannot be reset, and so not even the DELETE of the oldest
        rows can be written. Only the reserve file got the spool out of that, once; measured on an
        8 MiB tmpfs, every one of the last ~2,000 of 12,000 appends was then the one dropped. Trim
        and retry in one transaction, or a TRUNCATE checkpoint first, fail the same way: both need
        that checkpoint, which on the full tmpfs fails with SQLITE_FULL. So, like journald's
        ``SystemKeepFree=``: with less than ``LOW_DISK`` free, every append first writes the WAL
        back and truncates it (the database then holds every page it uses, and the WAL only ever
        needs the frames of the one transaction that follows), and grows the database only into
        the free disk above ``DISK_SLACK``; the rest of the points it takes comes from the pages of
        the oldest points, deleted in the same transaction. Cost: one ``statvfs`` (~2 us) a second
        while the disk is not low; a checkpoint per append while it is.
        """
        # The spool's own use is subtracted as it writes (at most twice the lines: WAL and
        # database); the file system is asked again once a second, or as soon as it may be low.
        self._free_guess -= 2 * size
        now = time.monotonic()
        if self._free_guess >= LOW_DISK and now - self._free_asked < 1.0:
            return 0
        try:
            stat = os.statvfs(self._dir)
        except OSError:
            return 0
        self._free_guess, self._free_asked = stat.f_bavail * stat.f_frsize - 2 * size, now
        if self._free_guess >= LOW_DISK:
            self._disk_logged = False
            return 0
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # SQLITE_FULL: see _write_on_full_disk
        stat = os.statvfs(self._dir)
        room = max(0, stat.f_bavail * stat.f_frsize - DISK_SLACK)
        page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        room += int(self._db.execute("PRAGMA freelist_count").fetchone()[0]) * page_size
        if size <= room:
            return 0
        if not self._disk_logged:
            self._disk_logged = True
            log.error(
                "spool_disk_full",
                path=str(self.path),
                free_bytes=stat.f_bavail * stat.f_frsize,
                action="dropping the oldest points to keep the newest",
            )
        # A little more than this write needs, so that the next few appends fit without a delete.
        return size - room + max(size, self._bytes // 100)

    def _write_on_full_disk(self, rows: list[tuple[bytes, int]], size: int, excess: int) -> None:
        """Write ``rows`` after SQLITE_FULL: the disk filled behind the spool's back (another
        process), or faster than ``_disk_shortfall`` allowed for."""
        # Give up the reserve, so that the pages the WAL holds can be written back (a checkpoint
        # may need to grow the database) and the WAL reset; then make the room for the new rows,
        # and for the reserve again, out of the oldest points, in the same transaction.
        released = self._release_reserve()
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
            free_pages = int(self._db.execute("PRAGMA freelist_count").fetchone()[0]) * page_size
            extra = RESERVE_BYTES + DISK_SLACK if released else 0
            self._write(rows, size, max(excess, size + extra - free_pages + max(size, self._bytes // 100)))
        except sqlite3.OperationalError as exc:
            self._rollback()
            self._drop_new(len(rows), f"cannot write the spool: {exc}")
            return
        if released:
            self._retake_reserve()

    def _write(self, rows: list[tuple[bytes, int]], size: int, excess: int) -> None:
        """Insert ``rows``, deleting first the oldest waiting points worth ``excess`` bytes (and any
        acknowledged points whose delete was deferred), in one transaction: if it fails, nothing
        changed and the caller counts ``rows`` as dropped; the counters move only once it is
        committed, so ``delivered + dropped + held == appended`` holds either way."""
        victims, freed = self._oldest(excess)
        deferred = self._undeleted
        self._db.execute("BEGIN")
        self._delete_in_txn(deferred)
        removed = self._delete_in_txn(victims)
        self._db.executemany("INSERT INTO points(line, crc) VALUES (?, ?)", rows)
        self._db.execute("COMMIT")
        self._undeleted = []
        self._count += len(rows)
        self._bytes += size
        self._write_failed_logged = False
        if removed:
            self._count -= removed
            self._bytes -= freed
            self._dropped += removed
            self._log_full(removed)

    def _ensure_reserve(self) -> None:
        """Hold RESERVE_BYTES of disk beside the spool while there is room for it."""
        if self._reserve.exists():
            return
        try:
            with self._reserve.open("wb") as f:
                f.truncate(0)
                os.posix_fallocate(f.fileno(), 0, RESERVE_BYTES)
        except OSError:
            self._reserve.unlink(missing_ok=True)

    def _release_reserve(self) -> bool:
        if not self._reserve.exists():
            return False
        self._reserve.unlink(missing_ok=True)
        log.warning("spool_disk_full", path=str(self.path), action="released the reserve to drop the oldest points")
        return True

    def _retake_reserve(self) -> None:
        """Give the pages of the points just dropped back to the file system, a bounded step at a
        time (the database file shrinks at each step's checkpoint), and hold the reserve again."""
        step = VACUUM_PAGES // 4  # 512 KiB: its WAL frames fit in what the reserve left free
        for _ in range((RESERVE_BYTES + DISK_SLACK) // (step * 4096) + 2):
            try:
                stat = os.statvfs(self._dir)
                if stat.f_bavail * stat.f_frsize >= RESERVE_BYTES + DISK_SLACK:
                    # Not with less: the next transactions' WAL frames need the slack, and taking
                    # it would only have the next append give the reserve up again.
                    self._ensure_reserve()
                    return
                if not self._db.execute("PRAGMA freelist_count").fetchone()[0]:
                    return
                self._db.executescript(f"PRAGMA incremental_vacuum({step});")
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the database file shrinks here
            except (OSError, sqlite3.OperationalError):
                self._rollback()
                return

    async def take(self, max_points: int) -> Batch | None:
        """Hand out up to ``max_points`` of the newest waiting lines (oldest CRC-failures skipped)."""
        while True:
            if self._taken_points >= self._count:
                return None
            # Skip the lines in flight, and those InfluxDB has whose delete was deferred (they are
            # no longer held: handing them out again would count them twice).
            skip = {seq for seqs, _ in self._taken.values() for seq in seqs}
            skip.update(self._undeleted)
            rows = self._db.execute(
                "SELECT seq, line, crc FROM points ORDER BY seq DESC LIMIT ?",
                (max_points + len(skip),),
            ).fetchall()
            rows = [r for r in rows if r[0] not in skip][:max_points]
            if not rows:
                return None
            bad = [(seq, len(line)) for seq, line, crc in rows if _crc(bytes(line)) != crc]
            if bad:
                self._count -= self._delete([seq for seq, _ in bad])
                self._bytes -= sum(length + ROW_OVERHEAD for _, length in bad)
                self.corrupt += len(bad)
                self._dropped += len(bad)
                log.error("spool_corrupt_rows", path=str(self.path), points=len(bad), action="skipped, never sent")
                continue
            rows.reverse()  # oldest first inside a batch
            self._batch_seq += 1
            seqs = [seq for seq, _, _ in rows]
            size = sum(len(line) for _, line, _ in rows) + ROW_OVERHEAD * len(rows)
            self._taken[self._batch_seq] = (seqs, size)
            self._taken_points += len(seqs)
            return Batch(self._batch_seq, [bytes(line).decode() for _, line, _ in rows])

    async def ack(self, batch: Batch) -> None:
        seqs, size = self._taken.pop(batch.seq)
        self._taken_points -= len(seqs)
        # InfluxDB has these: they leave the count now. If the delete itself fails (a full disk),
        # they are deleted later; until then a restart would resend them (an upsert, harmless).
        self._undeleted.extend(seqs)
        self._count -= len(seqs)
        self._bytes -= size
        try:
            self._delete(self._undeleted)
            self._undeleted.clear()
        except sqlite3.OperationalError as exc:
            # The next append deletes them in its own transaction (and, on a full disk, gives up
            # the reserve for it and takes it back afterwards).
            self._rollback()
            log.warning("spool_delete_deferred", path=str(self.path), rows=len(self._undeleted), error=str(exc))
        if self._full_logged and self._bytes < self._cap // 2:
            self._full_logged = False
        if self._count == 0:
            self._bytes = 0
        if self._count <= GIVE_BACK_BELOW:
            self._give_back()

    def _give_back(self) -> None:
        """Return freed pages to the disk a bounded step at a time (called per drained batch), and
        put the disk reserve back. The pragma frees one page per step and the sqlite3 module steps
        a pragma only once: executescript runs the bounded step to completion."""
        try:
            if self._db.execute("PRAGMA freelist_count").fetchone()[0]:
                self._db.executescript(f"PRAGMA incremental_vacuum({VACUUM_PAGES});")
            self._ensure_reserve()
        except sqlite3.OperationalError:
            self._rollback()

    async def requeue(self, batch: Batch) -> None:
        seqs, _ = self._taken.pop(batch.seq)
        self._taken_points -= len(seqs)

    async def aclose(self) -> None:
        with contextlib.suppress(sqlite3.DatabaseError):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()

    def __len__(self) -> int:
        return self._count

    @property
    def waiting(self) -> int:
        return self._count - self._taken_points

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def bytes(self) -> int:
        """Line data held, plus per-row overhead: what the cap is measured against."""
        return self._bytes

    # -- internals ---------------------------------------------------------------------------------

    def _delete(self, seqs: list[int]) -> int:
        self._db.execute("BEGIN")
        removed = self._delete_in_txn(seqs)
        self._db.execute("COMMIT")
        return removed

    def _delete_in_txn(self, seqs: list[int]) -> int:
        removed = 0
        for start in range(0, len(seqs), 500):
            chunk = seqs[start : start + 500]
            marks = ",".join("?" * len(chunk))
            removed += self._db.execute(f"DELETE FROM points WHERE seq IN ({marks})", chunk).rowcount
        return removed

    def _oldest(self, excess: int) -> tuple[list[int], int]:
        """Pick the oldest waiting lines worth at least ``excess`` bytes: not those in flight, nor
        those InfluxDB already has (a deferred delete: they are not held, so not dropped)."""
        if excess <= 0:
            return [], 0
        skip = {seq for seqs, _ in self._taken.values() for seq in seqs}
        skip.update(self._undeleted)
        freed, victims = 0, []
        last = -1
        while freed < excess:
            rows = self._db.execute(
                "SELECT seq, length(line) FROM points WHERE seq > ? ORDER BY seq LIMIT 2000", (last,)
            ).fetchall()
            if not rows:
                break
            for seq, length in rows:
                last = seq
                if seq in skip:
                    continue
                victims.append(seq)
                freed += int(length) + ROW_OVERHEAD
                if freed >= excess:
                    break
        return victims, freed

    def _log_full(self, removed: int) -> None:
        if not self._full_logged:
            self._full_logged = True
            log.error(
                "spool_full",
                path=str(self.path),
                max_bytes=self._cap,
                dropped_points=removed,
                why="InfluxDB has not taken points for longer than the spool (or the disk) holds; dropping the oldest",
            )

    def _drop_new(self, n: int, why: str) -> None:
        self._dropped += n
        if not self._write_failed_logged:
            self._write_failed_logged = True
            log.error("spool_write_failed", path=str(self.path), dropped_points=n, why=why)

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.OperationalError):
            self._db.execute("ROLLBACK")


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def _problem(path: Path) -> str | None:
    """Say what is wrong with the database at ``path``, or None if it reads. Read-only: closing
    a read-write connection to a damaged file would checkpoint its WAL into it."""
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            check = str(db.execute("PRAGMA quick_check").fetchone()[0])
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return None if check == "ok" else check


def _write_durably(path: Path, text: str) -> None:
    """Write a small file so that after a crash it is either absent or whole."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _sync_dir(path.parent)


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _set_aside(path: Path, aside: Path) -> None:
    """Rename a damaged spool's files to ``aside``; the main file last (see ``_salvage``)."""
    for suffix in ("-wal", "-shm", ""):
        src = Path(f"{path}{suffix}")
        if src.exists():
            src.rename(f"{aside}{suffix}")
    _sync_dir(path.parent)


def _insert_salvaged(db: sqlite3.Connection, rows: list[tuple[int, bytes, int]]) -> None:
    # The copy resumes after the largest seq already copied; OR IGNORE is the belt to those braces.
    db.execute("BEGIN")
    db.executemany("INSERT OR IGNORE INTO points(seq, line, crc) VALUES (?, ?, ?)", rows)
    db.execute("COMMIT")


def _switch(target: Path, path: Path) -> None:
    os.replace(target, path)
    _sync_dir(path.parent)


def _scratch_copy(aside: Path) -> Path:
    """Copy a set-aside spool and its WAL for reading, and return the copy.

    SQLite writes to what it opens (the -shm, a checkpoint on close); the copy takes that, so the
    aside files stay as they were found. SQLite also refuses a file shorter than the page count
    in its header outright: cut to whole pages, with the header's count set to match, the copy
    opens and the pages still there can be read.
    """
    copy = aside.with_name(aside.name + ".readable")
    for suffix in ("-wal", "-shm", "-journal"):
        Path(f"{copy}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(aside, copy)
    if Path(f"{aside}-wal").exists():
        shutil.copyfile(f"{aside}-wal", f"{copy}-wal")
    with copy.open("r+b") as f:
        header = f.read(100)
        if len(header) < 100 or not header.startswith(b"SQLite format 3\0"):
            return copy
        page_size = int.from_bytes(header[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        pages = copy.stat().st_size // page_size if page_size >= 512 else 0
        if pages and int.from_bytes(header[28:32], "big") > pages:
            f.truncate(pages * page_size)
            f.seek(28)
            f.write(pages.to_bytes(4, "big"))
    return copy


def _disk_full(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(exc)
