"""Spool throughput: append (one commit per observation) and drain (take + ack), bytes per point.

Side by side in the same run: netwatch's SqliteSpool, and a plain append-only file written and
flushed per observation (what a segment-file spool would cost at best, without checksums,
out-of-order acks or salvage), on the same lines: realistic `interface` and `ping` points as the
encoder writes them.

    python bench/spool.py [--points 200000] [--per-commit 10] [--record]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from bench.record import append_rows  # noqa: E402
from bench.samples import interface_sample, ping_sample  # noqa: E402

from netwatch.sink.lineproto import LineEncoder  # noqa: E402
from netwatch.sink.spool import SqliteSpool  # noqa: E402

SECTION = "## Spool (bench/spool.py)"
INTRO = """
Append = one commit per observation of `--per-commit` lines (how the daemon calls it); drain =
take 5,000 newest + ack, until empty. Bytes per point = spool file size / points held, after the
appends (SQLite WAL checkpointed). Peer: a plain file written and flushed per observation on the
same lines (no checksums, no out-of-order acks).
"""
TABLE_HEAD = (
    "| date | points | lines/commit | append pts/s | drain pts/s | bytes/pt | plain file append pts/s | command |"
)
ALIGN = "|---|---:|---:|---:|---:|---:|---:|---|"


def make_lines(n: int) -> list[str]:
    base = 1_795_000_000_000_000_000
    samples = [ping_sample(i, base + i) if i % 3 == 0 else interface_sample(i, base + i) for i in range(n)]
    return LineEncoder().encode_many(samples)


def spool_bytes(work: Path) -> int:
    # The database and its WAL; not the fixed disk reserve kept beside them (spool.db.reserve).
    return sum(p.stat().st_size for p in work.glob("spool.db*") if not p.name.endswith(".reserve"))


async def measure(points: int, per_commit: int, work: Path) -> dict[str, float]:
    lines = make_lines(points)
    chunks = [lines[i : i + per_commit] for i in range(0, len(lines), per_commit)]

    spool = SqliteSpool(work / "spool.db", max_bytes=10 << 30)
    t0 = time.perf_counter()
    for chunk in chunks:
        spool.append(chunk)
    append_s = time.perf_counter() - t0
    spool._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = spool_bytes(work)
    t0 = time.perf_counter()
    while (batch := await spool.take(5000)) is not None:
        await spool.ack(batch)
    drain_s = time.perf_counter() - t0
    await spool.aclose()

    t0 = time.perf_counter()
    with (work / "plain.lp").open("w", encoding="utf-8") as f:
        for chunk in chunks:
            f.write("\n".join(chunk) + "\n")
            f.flush()
    plain_s = time.perf_counter() - t0
    return {
        "points": points,
        "per_commit": per_commit,
        "append_pts_s": points / append_s,
        "drain_pts_s": points / drain_s,
        "bytes_per_point": size / points,
        "plain_append_pts_s": points / plain_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--per-commit", type=int, default=10)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nw-spool-", dir=os.environ.get("TMPDIR")) as tmp:
        result = asyncio.run(measure(args.points, args.per_commit, Path(tmp)))
    print(json.dumps({"bench": "spool", **{k: round(v, 1) for k, v in result.items()}}, indent=2))
    if args.record:
        command = f"python bench/spool.py --points {args.points} --per-commit {args.per_commit} --record"
        row = (
            f"| {dt.date.today().isoformat()} | {args.points:,} | {args.per_commit} | {result['append_pts_s']:,.0f} | "
            f"{result['drain_pts_s']:,.0f} | {result['bytes_per_point']:.0f} | {result['plain_append_pts_s']:,.0f} | "
            f"`{command}` |"
        )
        append_rows(ROOT / "BENCHMARKS.md", SECTION, INTRO, TABLE_HEAD, ALIGN, [row])


if __name__ == "__main__":
    main()
