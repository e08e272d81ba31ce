"""Fakes of our own protocols (not of library internals) for scheduler and state tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from netwatch.model import Outcome


class FakeProbe:
    """A probe whose behaviour the test scripts: a delay, then an outcome or an exception."""

    def __init__(
        self,
        *,
        delay: float = 0.0,
        outcome: Outcome | None = None,
        raises: BaseException | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.delay = delay
        self.outcome = outcome or Outcome(up=True, reason="ok")
        self.raises = raises
        self.calls: list[float] = []
        self.active = 0
        self.max_active = 0
        self.cancelled = 0

    async def check(self) -> Outcome:
        self.calls.append(asyncio.get_running_loop().time())
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.raises is not None:
                raise self.raises
            return self.outcome
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.active -= 1
