"""Which hub process holds which bridge, in Redis, so every process can answer "is this gate online".

`gate:presence:<bridge>` = hub instance id, expiring after 3 heartbeats unless the
hub refreshes it, and `gate:last_seen` (hash bridge -> unix time).
"""

from models.common import from_timestamp

PRESENCE = "gate:presence:"
LAST_SEEN = "gate:last_seen"
# Delete presence only if it still names this instance (the bridge may have moved on).
_CLEAR_PRESENCE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class GatePresence:
    def __init__(self, redis, clock):
        self.redis = redis
        self.clock = clock
        self._clear_presence = redis.register_script(_CLEAR_PRESENCE)

    async def set_present(self, bridges: list[str], instance: str, ttl: float) -> None:
        """Mark bridges held by this hub instance as online for `ttl` seconds (one round trip)."""
        if not bridges:
            return
        now = self.clock.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            for bridge in bridges:
                pipe.set(PRESENCE + bridge, instance, px=int(ttl * 1000))
            pipe.hset(LAST_SEEN, mapping={b: now for b in bridges})
            await pipe.execute()

    async def clear_present(self, bridge: str, instance: str) -> None:
        await self._clear_presence(keys=[PRESENCE + bridge], args=[instance])

    async def owner(self, bridge: str) -> str | None:
        """The hub instance holding the bridge's connection, or None when offline."""
        return await self.redis.get(PRESENCE + bridge)

    async def presence(self, bridges: list[str]) -> dict[str, dict]:
        if not bridges:
            return {}
        owners = await self.redis.mget([PRESENCE + b for b in bridges])
        seen = await self.redis.hmget(LAST_SEEN, bridges)
        return {b: {"online": o is not None,
                    "last_seen": from_timestamp(float(s)) if s else None}
                for b, o, s in zip(bridges, owners, seen)}
