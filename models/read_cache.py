"""Per-process copies of small documents every scan reads (a community's pass settings, its
emergency modes), read from the store once at a time and ahead of their expiry.

A copy is kept `seconds` from the moment its read began, so a change made in another
process is seen within that long (one made here calls `forget`). Without more, every scan
arriving while a copy was being read again made a read of its own, and on a store busy with
the access log's group commits those reads queued behind the batch in flight, and the scans
behind them (scripts/bench_gates.py measures it). So: one read per key at a time, shared by
everyone who wants the value meanwhile; and a copy used in the second half of its life
starts the next read in the background, so a gate that is scanning never waits for one.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable

log = logging.getLogger("xiaoqu.read_cache")


class ReadCache:
    def __init__(self, load: Callable[[Hashable], Awaitable], seconds: float,
                 clock: Callable[[], float] = time.monotonic):
        self.load, self.seconds, self.clock = load, seconds, clock
        self.copies: dict[Hashable, tuple[float, object]] = {}  # key -> (expires, value)
        self.reads: dict[Hashable, asyncio.Task] = {}  # the read in flight per key
        self.reads_made = 0  # store reads started (tests count them)

    async def get(self, key: Hashable):
        now = self.clock()
        copy = self.copies.get(key)
        if copy is not None and copy[0] > now:
            if copy[0] - now < self.seconds / 2:
                self._read(key)  # ahead of time, off this caller's path
            return copy[1]
        # Shielded: a caller that gives up does not cancel the read the others wait for.
        return await asyncio.shield(self._read(key))

    def forget(self, key: Hashable) -> None:
        """Drop the copy and any read in flight (the value changed here): the next caller
        reads it again."""
        self.copies.pop(key, None)
        self.reads.pop(key, None)

    def clear(self) -> None:
        self.copies.clear()
        self.reads.clear()

    async def settle(self) -> None:
        """Wait for the reads in flight (at shutdown, before the store's client closes)."""
        await asyncio.gather(*self.reads.values(), return_exceptions=True)

    def _read(self, key: Hashable) -> asyncio.Task:
        task = self.reads.get(key)
        if task is None:
            self.reads_made += 1
            task = self.reads[key] = asyncio.create_task(self._fetch(key))
            task.add_done_callback(lambda done: self._done(key, done))
        return task

    async def _fetch(self, key: Hashable):
        started = self.clock()
        value = await self.load(key)
        if self.reads.get(key) is asyncio.current_task():  # not forgotten meanwhile
            self.copies[key] = (started + self.seconds, value)
        return value

    def _done(self, key: Hashable, task: asyncio.Task) -> None:
        if self.reads.get(key) is task:
            del self.reads[key]
        if not task.cancelled() and task.exception() is not None:
            # Callers waiting for it get the error; one read ahead of time only logs it
            # (the copy still serves until it expires, then a caller reads and hears of it).
            log.debug("read cache: a read failed", exc_info=task.exception())
