"""Which hub process holds which bridge, in Redis, so every process can answer "is this gate
online" — and notice when a process died holding bridges.

`gate:presence:<bridge>` = the holder (the hub instance's id), expiring after 3
heartbeats unless the hub refreshes it, and `gate:last_seen` (hash bridge -> unix time).
Each hub instance also keeps a short **lease** `gate:instance:<holder>` (half a heartbeat,
renewed every sweep) and the set of bridges it holds, `gate:held:<holder>`. A holder whose lease lapsed is dead: the presence watcher (one
across instances) takes its bridges (`orphans`) and declares them offline, within one
heartbeat instead of the three a presence key takes to expire. `gate:instances` maps each
holder to when it (last) took its lease, so one lapse is declared once.
"""

from models.common import from_timestamp

PRESENCE = "gate:presence:"
LAST_SEEN = "gate:last_seen"
LEASE = "gate:instance:"
HELD = "gate:held:"
INSTANCES = "gate:instances"
# Delete presence only if it still names this instance (the bridge may have moved on).
_CLEAR_PRESENCE = """
redis.call('SREM', KEYS[2], KEYS[3])
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# A dead holder's bridge: taken (presence deleted) if it still names the holder, "gone" if
# its presence already lapsed, "elsewhere" if it reconnected to another instance; nothing
# while the holder's lease exists (it is alive after all).
_TAKE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 'alive' end
local owner = redis.call('GET', KEYS[2])
if owner == ARGV[1] then redis.call('DEL', KEYS[2]) return 'taken' end
if not owner then return 'gone' end
return 'elsewhere'
"""
# A dead holder with nothing left to declare is forgotten (unless it took its lease again).
_FORGET_HOLDER = """
if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('SCARD', KEYS[2]) == 0 then
  return redis.call('HDEL', KEYS[3], ARGV[1])
end
return 0
"""


class GatePresence:
    def __init__(self, redis, clock):
        self.redis = redis
        self.clock = clock
        self._clear_presence = redis.register_script(_CLEAR_PRESENCE)
        self._take = redis.register_script(_TAKE)
        self._forget_holder = redis.register_script(_FORGET_HOLDER)

    # -- the hub instance's own lease ------------------------------------------------------

    async def register(self, holder: str, lease: float) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(LEASE + holder, "1", px=int(lease * 1000))
            pipe.hset(INSTANCES, holder, repr(self.clock.time()))
            await pipe.execute()

    async def renew(self, holder: str, lease: float) -> bool:
        """Extend the holder's lease; False if it had lapsed (the holder counted as dead, and
        its bridges may have been declared offline: it must register again)."""
        return bool(await self.redis.set(LEASE + holder, "1", px=int(lease * 1000), xx=True))

    # -- bridges -------------------------------------------------------------------------------

    async def set_present(self, bridges: list[str], holder: str, ttl: float) -> None:
        """Mark bridges held by this hub instance as online for `ttl` seconds (one round trip)."""
        if not bridges:
            return
        now = self.clock.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            for bridge in bridges:
                pipe.set(PRESENCE + bridge, holder, px=int(ttl * 1000))
            pipe.hset(LAST_SEEN, mapping={b: now for b in bridges})
            pipe.sadd(HELD + holder, *bridges)
            await pipe.execute()

    async def reannounce(self, bridges: list[str], holder: str, ttl: float) -> list[str]:
        """A holder whose lease lapsed, alive after all, took it again: mark its bridges
        present; returns those that were not (the watcher declared them offline meanwhile)."""
        if not bridges:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for bridge in bridges:
                pipe.set(PRESENCE + bridge, holder, px=int(ttl * 1000), get=True)
            pipe.sadd(HELD + holder, *bridges)
            before = (await pipe.execute())[:-1]
        return [b for b, owner in zip(bridges, before) if owner != holder]

    async def clear_present(self, bridge: str, holder: str) -> None:
        await self._clear_presence(keys=[PRESENCE + bridge, HELD + holder, bridge], args=[holder])

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

    # -- the watcher's side ------------------------------------------------------------------------

    async def dead_holders(self) -> list[tuple[str, str]]:
        """(holder, when it took its lease) for each holder whose lease lapsed."""
        holders = sorted((await self.redis.hgetall(INSTANCES)).items())
        if not holders:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for holder, _ in holders:
                pipe.exists(LEASE + holder)
            leases = await pipe.execute()
        return [h for h, live in zip(holders, leases) if not live]

    async def orphans(self, holder: str) -> list[tuple[str, str]]:
        """A dead holder's bridges as (bridge, "taken" | "gone" | "elsewhere"), presence deleted
        for those taken; empty if the holder turned out alive."""
        result = []
        for bridge in sorted(await self.redis.smembers(HELD + holder)):
            outcome = await self._take(keys=[LEASE + holder, PRESENCE + bridge], args=[holder])
            if outcome == "alive":
                return []
            result.append((bridge, outcome))
        return result

    async def forget(self, holder: str, bridge: str) -> None:
        """The holder no longer answers for the bridge (it moved to another instance, or,
        for a dead holder, its offline transition is recorded)."""
        await self.redis.srem(HELD + holder, bridge)

    async def forget_holder(self, holder: str) -> None:
        """Done with a dead holder, once it holds nothing more."""
        await self._forget_holder(keys=[LEASE + holder, HELD + holder, INSTANCES], args=[holder])
