"""The durable spool: committed lines survive a kill, corruption is skipped and counted, the cap holds."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from netwatch.sink.spool import SqliteSpool

BASE = 1_700_000_000_000_000_000


def lines(n: int, start: int = 0) -> list[str]:
    return [f"ping,device=d{i % 50},site=hq up=1i,rtt_avg_ms={i}.5 {BASE + i}" for i in range(start, start + n)]


async def test_newest_first_and_ack_removes(tmp_path: Path) -> None:
    """take() hands out the newest lines first (fresh data before backlog); ack deletes them."""
    spool = SqliteSpool(tmp_path / "spool.db", max_bytes=10_000_000)
    spool.append(lines(10))
    spool.append(lines(5, start=10))
    batch = await spool.take(5)
    assert batch is not None
    assert list(batch.lines) == lines(5, start=10)
    assert (len(spool), spool.waiting) == (15, 10)
    await spool.ack(batch)
    older = await spool.take(100)
    assert older is not None
    assert list(older.lines) == lines(10)
    await spool.requeue(older)
    assert spool.waiting == 10
    again = await spool.take(100)
    assert again is not None
    await spool.ack(again)
    assert len(spool) == 0
    assert await spool.take(10) is None
    await spool.aclose()


async def test_lines_survive_reopen_and_in_flight_batches_come_back(tmp_path: Path) -> None:
    """A batch taken but not acked when the process stops is sent again after restart."""
    spool = SqliteSpool(tmp_path / "spool.db", max_bytes=10_000_000)
    spool.append(lines(20))
    taken = await spool.take(8)
    assert taken is not None
    await spool.aclose()
    reopened = SqliteSpool(tmp_path / "spool.db", max_bytes=10_000_000)
    assert reopened.recovered == 20
    batch = await reopened.take(100)
    assert batch is not None
    assert sorted(batch.lines) == sorted(lines(20))
    await reopened.aclose()


def test_committed_lines_survive_sigkill(tmp_path: Path) -> None:
    """Every append that returned is on disk even if the process is killed right after."""
    script = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        from netwatch.sink.spool import SqliteSpool
        spool = SqliteSpool(Path({str(tmp_path / "spool.db")!r}), max_bytes=50_000_000)
        n = 0
        for i in range(100_000):
            spool.append([f"m,k=v f={{i}}i {{i}}"])
            n += 1
            if n == 3000:
                print(n, flush=True)
                os.kill(os.getpid(), 9)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert proc.stdout.strip() == "3000"
    spool = SqliteSpool(tmp_path / "spool.db", max_bytes=50_000_000)
    assert spool.recovered == 3000


async def test_cap_drops_oldest_and_counts_exactly(tmp_path: Path) -> None:
    """Past the byte cap the oldest lines go; appended == held + dropped, and bytes stay under the cap."""
    cap = 64 * 1024
    spool = SqliteSpool(tmp_path / "spool.db", max_bytes=cap)
    with structlog.testing.capture_logs() as logs:
        for i in range(200):
            spool.append(lines(10, start=i * 10))
    assert spool.bytes <= cap
    assert len(spool) + spool.dropped == 2000
    assert spool.dropped > 0
    assert [e["event"] for e in logs].count("spool_full") == 1
    newest = await spool.take(5)
    assert newest is not None
    assert list(newest.lines) == lines(5, start=1995)  # the newest survive
    held = len(spool)
    await spool.aclose()
    assert SqliteSpool(tmp_path / "spool.db", max_bytes=cap).recovered == held


async def test_row_that_fails_its_checksum_is_never_sent(tmp_path: Path) -> None:
    """A line changed on disk behind the spool's back is skipped and counted, the rest is sent."""
    spool = SqliteSpool(tmp_path / "spool.db", max_bytes=10_000_000)
    spool.append(lines(10))
    raw = sqlite3.connect(tmp_path / "spool.db")
    raw.execute("UPDATE points SET line = CAST('ping,device=dX up=9i 1' AS BLOB) WHERE seq = 3")
    raw.commit()
    raw.close()
    with structlog.testing.capture_logs() as logs:
        batch = await spool.take(100)
    assert batch is not None
    assert len(batch) == 9
    assert not any("dX" in line for line in batch.lines)
    assert spool.corrupt == 1
    assert any(e["event"] == "spool_corrupt_rows" for e in logs)
    await spool.ack(batch)
    assert len(spool) == 0


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_file_is_moved_aside_and_the_daemon_starts(tmp_path: Path, damage: str) -> None:
    """A spool file SQLite cannot read is set aside, what still reads is kept, and a fresh spool opens."""
    path = tmp_path / "spool.db"
    spool = SqliteSpool(path, max_bytes=50_000_000)
    for i in range(50):
        spool.append(lines(100, start=i * 100))
    spool._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    spool._db.close()
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2 + 123]
    else:
        for offset in range(len(data) // 3, len(data) // 3 + 4096, 7):
            data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    with structlog.testing.capture_logs() as logs:
        reopened = SqliteSpool(path, max_bytes=50_000_000)
    if damage == "truncate":
        assert 1000 <= reopened.recovered < 5000  # the pages still on disk are salvaged
    else:
        assert reopened.recovered < 5000  # the damaged pages' rows are gone, the rest is kept
        assert reopened.recovered > 0
    assert any(e["event"] == "spool_corrupt" for e in logs)
    assert list(tmp_path.glob("spool.db.corrupt-*"))
    reopened.append(lines(1, start=99_999))
    assert len(reopened) == reopened.recovered + 1


def index(line: str) -> int:
    """Which of ``lines()`` this is (its timestamp)."""
    return int(line.rsplit(" ", 1)[1]) - BASE


def damaged_spool_with_wal(path: Path) -> None:
    """A spool of 5,500 lines whose newest 500 are still in its WAL (the writer was SIGKILLed),
    with a page in the middle of its main file overwritten."""
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from netwatch.sink.spool import SqliteSpool
        spool = SqliteSpool(Path({str(path)!r}), max_bytes=50_000_000)
        for i in range(55):
            spool.append([f"ping,device=d{{j % 50}},site=hq up=1i,rtt_avg_ms={{j}}.5 {{{BASE} + j}}"
                          for j in range(i * 100, i * 100 + 100)])
            if i == 49:
                spool._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        os.kill(os.getpid(), 9)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    data = bytearray(path.read_bytes())
    for offset in range(len(data) // 3, len(data) // 3 + 4096, 7):
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def digests(directory: Path, pattern: str) -> dict[str, str]:
    """sha256 of each file matching ``pattern``, by its name with the pattern's stem cut off."""
    stem = pattern.rstrip("*")
    return {p.name.removeprefix(stem): hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.glob(pattern)}


def aside_of(directory: Path) -> Path:
    """The one damaged spool set aside in ``directory`` (its main file)."""
    (aside,) = [p for p in directory.glob("spool.db.corrupt-*") if "-" not in p.name.removeprefix("spool.db.corrupt-")]
    return aside


def salvaged_in_one_go(path: Path) -> list[str]:
    asyncio.run(SqliteSpool(path, max_bytes=50_000_000).aclose())
    return sorted(spool_lines(path))


def spool_lines(path: Path) -> list[str]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [bytes(line).decode() for (line,) in db.execute("SELECT line FROM points")]
    finally:
        db.close()


def test_damaged_original_is_set_aside_untouched(tmp_path: Path) -> None:
    """The damaged file and its WAL are set aside byte for byte (SQLite never opens them, so no
    checkpoint writes the WAL into the damaged file), and the rows still in the WAL are salvaged."""
    path = tmp_path / "spool.db"
    damaged_spool_with_wal(path)
    found = digests(tmp_path, "spool.db*")
    assert {"", "-wal"} <= found.keys()
    spool = SqliteSpool(path, max_bytes=50_000_000)
    kept = digests(tmp_path, f"{aside_of(tmp_path).name}*")
    assert kept[""] == found[""], "the damaged file was changed before it was set aside"
    assert kept["-wal"] == found["-wal"], "the damaged file's WAL was changed or lost"
    salvaged = set(spool_lines(path))
    assert set(lines(500, start=5000)) <= salvaged, "the rows in the WAL are salvaged"
    assert 0 < spool.recovered < 5500
    asyncio.run(spool.aclose())


@pytest.mark.parametrize(("step", "calls"), [("_set_aside", 1), ("_crc", 3500), ("_switch", 1)])
def test_salvage_cut_short_by_a_crash_resumes(tmp_path: Path, step: str, calls: int) -> None:
    """A process killed in the middle of a salvage (after setting the damaged file aside, after
    three of six batches were copied, after switching to the new file) leaves the next start to
    finish it: every row a salvage in one go keeps, each once, and the damaged files as found."""
    reference = tmp_path / "reference"
    reference.mkdir()
    damaged_spool_with_wal(reference / "spool.db")
    work = tmp_path / "work"
    shutil.copytree(reference, work)
    found = digests(work, "spool.db*")
    expected = salvaged_in_one_go(reference / "spool.db")
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from netwatch.sink import spool
        real, calls = spool.{step}, 0
        def dying(*args):
            global calls
            result = real(*args)
            calls += 1
            if calls == {calls}:
                os.kill(os.getpid(), 9)
            return result
        spool.{step} = dying
        spool.SqliteSpool(Path({str(work / "spool.db")!r}), max_bytes=50_000_000)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with structlog.testing.capture_logs() as logs:
        spool = SqliteSpool(work / "spool.db", max_bytes=50_000_000)
    got = spool_lines(work / "spool.db")
    assert len(got) == len(set(got)), "a row was copied twice"
    assert sorted(got) == expected
    assert spool.recovered == len(expected)
    assert any(e["event"] == "spool_corrupt" for e in logs) or step == "_switch"
    names = sorted(p.name for p in work.iterdir())
    assert not [n for n in names if n.endswith((".salvage", ".salvaging", ".readable"))], names
    kept = digests(work, f"{aside_of(work).name}*")
    assert kept[""] == found[""]
    assert kept["-wal"] == found["-wal"]
    asyncio.run(spool.aclose())


@contextlib.contextmanager
def small_disk(tmp_path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted under tmp_path, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.fail("this test mounts a small tmpfs and needs root (CI runs as root)", pytrace=False)
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


async def held_lines(spool: SqliteSpool) -> set[int]:
    """Indexes of every line the spool holds (taken and handed back)."""
    batch = await spool.take(1_000_000)
    assert batch is not None
    await spool.requeue(batch)
    return {index(line) for line in batch.lines}


async def test_full_disk_is_counted_not_a_crash(tmp_path: Path) -> None:
    """On a full file system the spool keeps running, counts every point it could not keep, and
    says so: appended == held + dropped, and the spool still opens after a restart."""
    with small_disk(tmp_path, "8m") as mnt:
        spool = SqliteSpool(mnt / "spool.db", max_bytes=100_000_000)  # the cap is not what stops it
        with structlog.testing.capture_logs() as logs:
            for i in range(12_000):
                spool.append(lines(5, start=i * 5))
        assert spool.dropped > 0
        assert len(spool) + spool.dropped == 60_000
        assert any(e["event"] == "spool_disk_full" for e in logs)
        assert not any(e["event"] == "spool_write_failed" for e in logs)
        held = len(spool)
        await spool.aclose()
        reopened = SqliteSpool(mnt / "spool.db", max_bytes=100_000_000)
        assert reopened.recovered == held
        reopened.append(lines(5, start=60_000))
        assert len(reopened) + reopened.dropped == held + 5
        await reopened.aclose()


async def test_full_disk_keeps_the_newest(tmp_path: Path) -> None:
    """On a full file system the oldest points are dropped and the newest kept, as with the cap, in
    every episode: fill the disk, deliver some, fill it again, three times; and after a restart on
    the full disk. delivered + dropped + held == appended after every append."""
    with small_disk(tmp_path, "12m") as mnt:
        spool = SqliteSpool(mnt / "spool.db", max_bytes=100_000_000)  # the cap is not what stops it
        appended, delivered = 0, set()
        with structlog.testing.capture_logs() as logs:
            for _episode in range(3):
                dropped_before = spool.dropped
                while spool.dropped - dropped_before < 10_000:  # well past full
                    spool.append(lines(5, start=appended))
                    appended += 5
                    assert len(spool) + spool.dropped + len(delivered) == appended
                held = await held_lines(spool)
                dropped = set(range(appended)) - held - delivered
                assert len(dropped) == spool.dropped
                assert appended - 1 in held
                assert max(dropped) < min(held), "a point was dropped while an older one was kept"
                for _ in range(2):  # InfluxDB is back for a moment: the newest 10,000 go
                    batch = await spool.take(5000)
                    assert batch is not None
                    delivered.update(index(line) for line in batch.lines)
                    await spool.ack(batch)
            assert len(spool) + spool.dropped + len(delivered) == appended
            held_count, dropped_count = len(spool), spool.dropped
            await spool.aclose()
            spool = SqliteSpool(mnt / "spool.db", max_bytes=100_000_000)
            assert spool.recovered == held_count
            for _ in range(1000):
                spool.append(lines(5, start=appended))
                appended += 5
            dropped_count += spool.dropped
            held = await held_lines(spool)
            assert len(held) + dropped_count + len(delivered) == appended
            assert max(set(range(appended)) - held - delivered) < min(held)
            await spool.aclose()
        assert any(e["event"] == "spool_disk_full" for e in logs)
        assert not any(e["event"] == "spool_write_failed" for e in logs), "the newest points were dropped"


async def test_disk_filled_by_another_process_keeps_the_newest(tmp_path: Path) -> None:
    """When something else takes the last of the disk, the spool gives up its reserve to write back
    its WAL and drop the oldest points, keeps the newest, and takes its reserve back."""
    with small_disk(tmp_path, "24m") as mnt:
        spool = SqliteSpool(mnt / "spool.db", max_bytes=100_000_000)
        reserve = mnt / "spool.db.reserve"
        assert reserve.exists()
        appended = 0
        for _ in range(4000):  # ~2 MB of lines, some of them still in the WAL
            spool.append(lines(5, start=appended))
            appended += 5
        with (mnt / "filler").open("wb") as filler, contextlib.suppress(OSError):
            while True:
                filler.write(b"x" * 65536)
                filler.flush()
        with structlog.testing.capture_logs() as logs:
            for _ in range(2000):
                spool.append(lines(5, start=appended))
                appended += 5
                assert len(spool) + spool.dropped == appended
        assert spool.dropped > 0
        held = await held_lines(spool)
        assert appended - 1 in held
        assert max(set(range(appended)) - held) < min(held)
        assert not any(e["event"] == "spool_write_failed" for e in logs), "the newest points were dropped"
        assert any(e.get("action") == "released the reserve to drop the oldest points" for e in logs)
        assert reserve.exists(), "the reserve is taken back from the pages of the dropped points"
        await spool.aclose()


async def test_acked_points_whose_delete_failed_are_not_sent_or_counted_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch InfluxDB accepted whose delete fails (a full disk) is not handed out again, not
    trimmed as if it were held, and is deleted by the next write."""
    spool = SqliteSpool(tmp_path / "spool.db", max_bytes=4096)
    spool.append(lines(20))
    batch = await spool.take(5)
    assert batch is not None

    def disk_full(seqs: list[int]) -> int:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(spool, "_delete", disk_full)
    await spool.ack(batch)
    monkeypatch.undo()
    assert len(spool) == 15
    rest = await spool.take(100)
    assert rest is not None
    assert sorted(rest.lines) == sorted(lines(15))
    await spool.requeue(rest)
    for i in range(1, 31):  # past the cap: trims the oldest held, not the delivered batch
        spool.append(lines(2, start=100 + i * 2))
        assert len(spool) + spool.dropped + len(batch) == 20 + 2 * i
    assert spool.dropped > 0
    raw = sqlite3.connect(tmp_path / "spool.db")
    on_disk = raw.execute("SELECT count(*) FROM points").fetchone()[0]
    raw.close()
    assert on_disk == len(spool)
    await spool.aclose()


def files_size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("spool.db*"))


async def test_drained_spool_gives_its_disk_back(tmp_path: Path) -> None:
    """After an outage's backlog is delivered, the spool file shrinks back over the next flushes
    (a bounded step per batch, never one long stall) instead of keeping its peak."""
    spool = SqliteSpool(tmp_path / "spool.db", max_bytes=100_000_000)
    for i in range(200):
        spool.append(lines(100, start=i * 100))
    peak = files_size(tmp_path)
    while (batch := await spool.take(5000)) is not None:
        await spool.ack(batch)
    for i in range(40):  # steady state after the outage: a small batch per flush
        spool.append(lines(10, start=100_000 + i * 10))
        batch = await spool.take(5000)
        assert batch is not None
        await spool.ack(batch)
    after = (tmp_path / "spool.db").stat().st_size
    wal = tmp_path / "spool.db-wal"
    assert peak > 2_000_000
    assert after < peak / 4
    assert not wal.exists() or wal.stat().st_size <= 4 << 20
    await spool.aclose()
