"""A Redis fast path over state that MongoDB holds durably, rebuilt when Redis comes back empty.

Redis may run without persistence (docs/operations.md §3): a restart, a flush or a failover to
an empty replica loses every key. Each such fast path has a marker key, set in the same
pipeline as the rebuilt keys; a reader that finds the marker missing rebuilds from MongoDB
before it answers (`Seeded.seed`), so nothing Redis lost is read as "not there". Used by the
pass use counts (models/passes.py) and the login revocations (models/auth.py).

A rebuild is only known to hold when the marker is read in the same step as the keys: Redis
may restart empty again between a rebuild and the read that needed it (a restart soon after
a restart, a failover during one). So a reader reads the marker with its keys (`mget`, or a
script that checks it) and rebuilds as often as that finds it missing, up to TRIES times.
"""

import asyncio

import redis.exceptions

from models.key_cache import CHANNEL

TRIES = 4  # reads (a rebuild before each but the first) before Redis counts as failing


def still_empty() -> redis.exceptions.ConnectionError:
    """What a reader raises when Redis lost its data again after each of TRIES rebuilds
    (a store that is failing: answered 503, not acknowledged)."""
    return redis.exceptions.ConnectionError("Redis lost its data again after each rebuild")


class Seeded:
    def __init__(self, redis, marker: str, rebuild):
        """`rebuild(pipe)` queues the keys to put back on a non-transactional pipeline."""
        self.redis, self.marker, self.rebuild = redis, marker, rebuild
        self.lock = asyncio.Lock()

    async def ensure(self) -> None:
        """Before reading the fast path: rebuild it if Redis lost it."""
        if not await self.redis.exists(self.marker):
            await self.seed()

    async def mget(self, *keys: str, first=None) -> list:
        """The keys' values, read with the marker so they are known complete. `first`: the
        read to try first (a process's copies, models/key_cache.py); after a rebuild the
        keys are read from Redis (copies predate it)."""
        read = first or self.redis.mget
        for _ in range(TRIES):
            *values, marker = await read(*keys, self.marker)
            if marker is not None:
                return values
            await self.seed()
            read = self.redis.mget
        raise still_empty()

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
