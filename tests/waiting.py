"""Waiting on a condition the test observes (never a fixed sleep)."""

import asyncio
import time


async def until(predicate, timeout: float, step: float = 0.05):
    """Poll `predicate` (sync or async) until it returns something true, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(step)
