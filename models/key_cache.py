"""Process-local copies of the small Redis keys every request reads, dropped as they change.

Every API request needs its caller's revocation state (and a resident's room links), and a
Redis round trip per request costs more than the rest of the request. So each process keeps
copies of those keys (`KeyCache`), and whoever changes one announces the key on one pub/sub
channel in the same MULTI as the change (`set_announced`, `delete_announced`, or a script's
own PUBLISH). Before answering from its copies a process takes the announcements already on
its subscription socket, without a round trip: Redis writes them to every subscriber before
it acknowledges the change, so a request made after the change — to any process — does not
see the old value (on one machine at all; across machines, for longer than the network
delay between Redis and that process).

When the subscription breaks (a Redis restart closes it) the copies are dropped, and not used
until it is back (the client reconnects by itself; each reconnection drops them again); a subscription that shows no sign of life for STALE_SECONDS (a silent
network partition) counts as broken, so that is the longest a copy can be stale.
"""

import asyncio
import time
from collections import OrderedDict

CHANNEL = "xiaoqu:changed"
MAX_COPIES = 100_000
PING_SECONDS = 2.0  # the subscription is pinged this often...
STALE_SECONDS = 6.0  # ...and counts as broken after this long without an answer
RETRY_SECONDS = 1.0  # between attempts to subscribe again
SUBSCRIBE_SECONDS = 2.0


async def set_announced(redis, key: str, value, ex: int) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        await pipe.set(key, value, ex=ex).publish(CHANNEL, key).execute()


async def delete_announced(redis, key: str) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        await pipe.delete(key).publish(CHANNEL, key).execute()


class KeyCache:
    def __init__(self, redis, clock=time.monotonic):
        self.redis = redis
        self.clock = clock
        self.copies: OrderedDict[str, str | None] = OrderedDict()
        self.pubsub = None
        self.closed = False  # after close() no subscription is made again
        self.changes = 0  # announcements taken: a read that overlapped one is not kept
        self.last_heard = self.last_ping = self.last_try = float("-inf")
        self.hits = self.misses = 0
        # One reader of the subscription at a time: concurrent requests draining it together
        # made redis-py refuse the second read, which counted as a broken subscription and
        # dropped every copy under load (so every request went to Redis after all).
        self.reading = asyncio.Lock()

    async def start(self) -> None:
        """Subscribe (again); until this succeeds every read goes to Redis."""
        self.last_try = self.clock()
        pubsub = self.redis.pubsub()
        try:
            await pubsub.subscribe(CHANNEL)
            while (confirmed := await pubsub.get_message(timeout=SUBSCRIBE_SECONDS)) is None or \
                    confirmed["type"] != "subscribe":
                if confirmed is None:
                    raise TimeoutError("no confirmation of the subscription")
        except Exception:
            await pubsub.aclose()
            raise
        if self.closed:  # closed while subscribing: a late subscription would outlive the pool
            await pubsub.aclose()
            return
        # The client reconnects (and re-subscribes) by itself after a Redis restart; what was
        # announced while it was away is unknown, so every reconnection drops the copies.
        pubsub.connection.register_connect_callback(self._reconnected)
        self._reconnected(pubsub.connection)  # (and what was announced before this one)
        self.pubsub = pubsub
        self.last_heard = self.last_ping = self.clock()

    def _reconnected(self, connection) -> None:
        self.copies.clear()
        self.changes += 1

    async def close(self) -> None:
        self.closed = True
        if self.pubsub is not None:
            await self.pubsub.aclose()
            self.pubsub = None

    async def mget(self, *keys: str) -> list:
        """The keys' values, from the copies when they are all known and still current."""
        if await self._current():
            try:
                values = [self.copies[key] for key in keys]
            except KeyError:
                pass
            else:
                self.hits += 1
                for key in keys:
                    self.copies.move_to_end(key)
                return values
        self.misses += 1
        seen = self.changes
        values = await self.redis.mget(*keys)
        self.remember(dict(zip(keys, values)), seen)
        return values

    def remember(self, values: dict, seen: int) -> None:
        """Keep values read while `changes` was `seen`, unless an announcement came since
        (the value read may be the one it replaced)."""
        if self.pubsub is None or self.changes != seen:
            return
        self.copies.update(values)
        while len(self.copies) > MAX_COPIES:
            self.copies.popitem(last=False)

    async def _current(self) -> bool:
        """Take the announcements already received; False while the copies cannot be trusted."""
        now = self.clock()
        if self.pubsub is None:
            if not self.closed and now - self.last_try >= RETRY_SECONDS:
                try:
                    await self.start()
                except Exception:
                    return False
            else:
                return False
        try:
            # Announcements already received are in the connection's buffers (the event loop
            # moves what reaches the socket there before it runs any request that came after):
            # looking costs no read, so most requests skip the lock and the drain.
            pubsub = self.pubsub
            if await pubsub.connection.can_read() or now - self.last_ping >= PING_SECONDS:
                async with self.reading:
                    if self.pubsub is not pubsub:  # broken meanwhile
                        return False
                    await self._drain(now)
        except Exception:  # the subscription broke: nothing announced meanwhile is known
            await self._broken()
            return False
        if now - self.last_heard > STALE_SECONDS:
            await self._broken()
            return False
        return True

    async def _drain(self, now: float) -> None:
        while (message := await self.pubsub.get_message(timeout=0)) is not None:
            self.last_heard = now
            if message["type"] == "message":
                self.copies.pop(message["data"], None)
                self.changes += 1
        if now - self.last_ping >= PING_SECONDS:
            self.last_ping = now
            await self.pubsub.ping()

    async def _broken(self) -> None:
        self.copies.clear()
        self.changes += 1
        pubsub, self.pubsub = self.pubsub, None
        self.last_try = self.clock()
        try:
            await pubsub.aclose()
        except Exception:
            pass
