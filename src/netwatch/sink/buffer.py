"""Hold encoded lines until InfluxDB has accepted them.

The writer talks to a :class:`LineBuffer`, never to a concrete class, so a durable spool (SQLite
WAL or segment files, the next step in design.md) slots in without touching it. The contract:

* ``append(lines)`` is synchronous and cheap: the scheduler calls it (through ``submit``) for every
  observation. Past the cap the *oldest* waiting lines are dropped and counted.
* ``take(n)`` hands out up to ``n`` of the oldest waiting lines as a :class:`Batch`. They stay in
  the buffer (and in ``len()``) until the batch is settled:
* ``ack(batch)``: InfluxDB is done with it (accepted, or rejected for good); the lines leave.
* ``requeue(batch)``: the write failed; the lines go back to the front, to be taken again first.

So ``written + rejected + dropped + len(buffer) == appended`` at every moment.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Batch:
    """Lines taken from a buffer together; settled together with ack or requeue."""

    seq: int
    lines: Sequence[str]

    def __len__(self) -> int:
        return len(self.lines)


class LineBuffer(Protocol):
    """Where encoded lines wait for InfluxDB (memory now, a durable spool later)."""

    #: True when lines survive a restart; the sink counts what is left at close as lost otherwise.
    durable: bool
    #: Lines found in the buffer when it was opened (a durable spool's backlog from before a restart).
    recovered: int

    def append(self, lines: Sequence[str]) -> None:
        """Add lines at the back; drop (and count) the oldest waiting lines past the cap."""
        ...

    async def take(self, max_points: int) -> Batch | None:
        """Hand out up to ``max_points`` of the oldest waiting lines, or None if none wait."""
        ...

    async def ack(self, batch: Batch) -> None:
        """Forget a batch InfluxDB is done with."""
        ...

    async def requeue(self, batch: Batch) -> None:
        """Put a batch back at the front, to be taken again before anything newer."""
        ...

    async def aclose(self) -> None:
        """Release resources; what is still held stays held if the buffer is durable."""
        ...

    def __len__(self) -> int:
        """Points held: waiting plus taken but not yet settled."""
        ...

    @property
    def waiting(self) -> int:
        """Points not taken yet."""
        ...

    @property
    def dropped(self) -> int:
        """Points dropped past the cap since the buffer was created."""
        ...


class MemoryBuffer:
    """A bounded in-memory FIFO of lines; what it holds is lost when the process stops.

    A batch in flight is never cut (InfluxDB may be taking it right now), so ``append`` bounds
    the waiting lines by the cap and the batches in flight come on top of it. When a batch comes
    back by ``requeue`` the cap applies to everything held again, dropping the oldest lines
    first, which are then that batch's. Memory is bounded by ``max_points`` plus one batch.
    """

    durable = False
    recovered = 0

    def __init__(self, *, max_points: int) -> None:
        if max_points < 1:
            raise ValueError("max_points must be at least 1")
        self._cap = max_points
        self._waiting: deque[str] = deque()
        self._taken: dict[int, Batch] = {}
        self._taken_points = 0
        self._seq = 0
        self._dropped = 0

    def append(self, lines: Sequence[str]) -> None:
        self._waiting.extend(lines)
        self._trim(len(self._waiting) - self._cap)

    async def take(self, max_points: int) -> Batch | None:
        waiting = self._waiting
        n = min(max_points, len(waiting))
        if n <= 0:
            return None
        popleft = waiting.popleft
        self._seq += 1
        batch = Batch(self._seq, [popleft() for _ in range(n)])
        self._taken[batch.seq] = batch
        self._taken_points += n
        return batch

    async def ack(self, batch: Batch) -> None:
        del self._taken[batch.seq]
        self._taken_points -= len(batch)

    async def requeue(self, batch: Batch) -> None:
        del self._taken[batch.seq]
        self._taken_points -= len(batch)
        self._waiting.extendleft(reversed(batch.lines))
        self._trim(len(self._waiting) + self._taken_points - self._cap)

    async def aclose(self) -> None:
        return None

    def __len__(self) -> int:
        return len(self._waiting) + self._taken_points

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def dropped(self) -> int:
        return self._dropped

    def _trim(self, over: int) -> None:
        """Drop the ``over`` oldest waiting lines (fewer if fewer wait) and count them."""
        waiting = self._waiting
        over = min(over, len(waiting))
        if over > 0:
            popleft = waiting.popleft
            for _ in range(over):
                popleft()
            self._dropped += over
