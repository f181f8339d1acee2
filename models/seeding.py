"""A Redis fast path over state that MongoDB holds durably, rebuilt when Redis comes back empty.

Redis may run without persistence (docs/operations.md §3): a restart, a flush or a failover to
an empty replica loses every key. Each such fast path has a marker key, set in the same
pipeline as the rebuilt keys; a reader that finds the marker missing rebuilds from MongoDB
before it answers (`Seeded.seed`), so nothing Redis lost is read as "not there". Used by the
pass use counts (models/passes.py) and the login revocations (models/auth.py).
"""

import asyncio

from models.key_cache import CHANNEL


class Seeded:
    def __init__(self, redis, marker: str, rebuild):
        """`rebuild(pipe)` queues the keys to put back on a non-transactional pipeline."""
        self.redis, self.marker, self.rebuild = redis, marker, rebuild
        self.lock = asyncio.Lock()

    async def ensure(self) -> None:
        """Before reading the fast path: rebuild it if Redis lost it."""
        if not await self.redis.exists(self.marker):
            await self.seed()

    async def seed(self) -> None:
        """Safe while other processes seed or write too: rebuilt keys only ever add what
        MongoDB holds, and the marker is set with them."""
        async with self.lock:
            if await self.redis.exists(self.marker):
                return  # another task here (or another process) did it meanwhile
            async with self.redis.pipeline(transaction=False) as pipe:
                await self.rebuild(pipe)
                # Announced: processes that copied the missing marker (models/key_cache.py) drop it.
                pipe.set(self.marker, "1").publish(CHANNEL, self.marker)
                await pipe.execute()
