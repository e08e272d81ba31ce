"""The spool's accounting under any sequence of appends, takes, acks, requeues and restarts.

A model tracks every line by its index; at every step ``acked + dropped + held == appended``, line
by line (not just the counters), against what the spool's table actually holds.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from netwatch.sink.buffer import Batch
from netwatch.sink.spool import ROW_OVERHEAD, SqliteSpool

BASE = 1_800_000_000_000_000_000


def line(i: int, pad: int) -> str:
    return f'm,k=v{i % 7} f="{"x" * pad}" {BASE + i}'


def index(text: str) -> int:
    return int(text.rsplit(" ", 1)[1]) - BASE


class SpoolMachine(RuleBasedStateMachine):
    """Drives one SqliteSpool with a small cap and checks it against a model of every line."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="nw-spool-prop-"))
        self.loop = asyncio.new_event_loop()
        self.cap = 4096
        self.spool = SqliteSpool(self.dir / "spool.db", max_bytes=self.cap)
        self.abandoned: list[SqliteSpool] = []  # "crashed" instances: never closed until teardown
        self.appended = 0
        self.acked: set[int] = set()
        self.dropped_before = 0  # dropped by earlier instances (the counter is per process)
        self.batches: dict[int, tuple[Batch, list[int]]] = {}
        self.handed_out: set[int] = set()  # every line take() ever returned
        self.may_return: set[int] = set()  # handed out, then requeued or in flight at a restart
        self.held: set[int] = set()

    @initialize(cap=st.integers(min_value=1024, max_value=8192))
    def set_cap(self, cap: int) -> None:
        self.loop.run_until_complete(self.spool.aclose())
        self.cap = cap
        self.spool = SqliteSpool(self.dir / "spool.db", max_bytes=cap)

    # -- steps ----------------------------------------------------------------------------------

    @rule(pads=st.lists(st.integers(min_value=0, max_value=300), min_size=1, max_size=8))
    def append(self, pads: list[int]) -> None:
        new = list(range(self.appended, self.appended + len(pads)))
        texts = [line(i, pad) for i, pad in zip(new, pads, strict=True)]
        self.appended += len(new)
        before = self.held
        self.spool.append(texts)
        after = self.table()
        size = sum(len(t.encode()) + ROW_OVERHEAD for t in texts)
        if size > self.cap:
            assert not after & set(new), "a submit larger than the cap is dropped whole"
            assert after == before, "... and nothing else"
        else:
            assert set(new) <= after, "the newest lines are always kept"
            self.check_dropped_are_the_oldest(before | set(new), after)
            if self.spool.bytes > self.cap:
                # Only lines in flight can hold the spool over its cap once it has trimmed: every
                # waiting line older than this append is gone.
                assert self.waiting() <= set(new)

    @rule(n=st.integers(min_value=1, max_value=12))
    def take(self, n: int) -> None:
        waiting = self.waiting()
        batch = self.loop.run_until_complete(self.spool.take(n))
        if not waiting:
            assert batch is None
            return
        assert batch is not None
        got = [index(t) for t in batch.lines]
        assert not set(got) & self.acked, "an acknowledged line was handed out again"
        again = set(got) & self.handed_out
        assert again <= self.may_return, f"handed out twice without a requeue or restart: {sorted(again)}"
        assert sorted(got) == sorted(waiting)[-min(n, len(waiting)) :], "the newest waiting lines go first"
        self.may_return -= set(got)
        self.handed_out |= set(got)
        self.batches[batch.seq] = (batch, got)

    @precondition(lambda self: self.batches)
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        seq = data.draw(st.sampled_from(sorted(self.batches)))
        batch, got = self.batches.pop(seq)
        self.loop.run_until_complete(self.spool.ack(batch))
        self.acked |= set(got)
        assert not self.table() & self.acked

    @precondition(lambda self: self.batches)
    @rule(data=st.data())
    def requeue(self, data: st.DataObject) -> None:
        seq = data.draw(st.sampled_from(sorted(self.batches)))
        batch, got = self.batches.pop(seq)
        self.loop.run_until_complete(self.spool.requeue(batch))
        self.may_return |= set(got)

    @rule(crash=st.booleans())
    def restart(self, crash: bool) -> None:
        """Close and reopen; or "crash": open a second instance while the first is left as it is."""
        held = len(self.spool)
        self.dropped_before += self.spool.dropped
        if crash:
            self.abandoned.append(self.spool)
        else:
            self.loop.run_until_complete(self.spool.aclose())
        for _, got in self.batches.values():
            self.may_return |= set(got)  # in flight, not acknowledged: sent again (at least once)
        self.batches.clear()
        self.spool = SqliteSpool(self.dir / "spool.db", max_bytes=self.cap)
        assert self.spool.recovered == held

    # -- checks ---------------------------------------------------------------------------------

    def table(self) -> set[int]:
        """Indexes of the lines in the spool's table, remembered as the model's ``held``."""
        self.held = {index(bytes(t).decode()) for (t,) in self.spool._db.execute("SELECT line FROM points")}
        return self.held

    def in_flight(self) -> set[int]:
        return {i for _, got in self.batches.values() for i in got}

    def waiting(self) -> set[int]:
        return self.table() - self.in_flight()

    def check_dropped_are_the_oldest(self, could_be_held: set[int], held: set[int]) -> None:
        """Lines dropped in this step are older than every line kept that could have gone instead
        (lines in flight cannot: InfluxDB may be writing them right now)."""
        gone = could_be_held - held
        kept = held - self.in_flight()
        if gone and kept:
            assert max(gone) < min(kept), f"dropped {sorted(gone)} but kept older {sorted(kept)[:5]}"

    @invariant()
    def every_line_is_accounted_for(self) -> None:
        held = self.table()
        dropped = self.dropped_before + self.spool.dropped
        assert len(held) == len(self.spool)
        assert not held & self.acked
        assert len(self.acked) + dropped + len(held) == self.appended
        assert self.spool.waiting == len(held - self.in_flight())
        assert self.in_flight() <= held

    def teardown(self) -> None:
        for spool in [*self.abandoned, self.spool]:
            self.loop.run_until_complete(spool.aclose())
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)


SpoolMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
test_spool_accounting = SpoolMachine.TestCase
