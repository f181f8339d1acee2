"""Process-local copies of the small Redis keys every request reads, dropped as they change.

Every API request needs its caller's revocation state (and a resident's room links), and a
Redis round trip per request costs more than the rest of the request. So each process keeps
copies of those keys (`KeyCache`), and whoever changes one announces the key on one pub/sub
channel in the same MULTI as the change (`set_announced`, `delete_announced`, or a script's
own PUBLISH). Before answering from its copies a process takes the announcements already on
its subscription socket, without a round trip. Redis sends the subscribers' messages in the
same pass of its event loop as the writer's acknowledgement, though not always first (it
may flush the writer's reply before them): so the writing process drops its own copies
itself when the change is acknowledged (`here=`, `KeyCache.forget`), and a request to
another process, which the writer's answer must reach first, finds the announcement already
received (on one machine at all; across machines, for longer than the network delay
between Redis and that process).

The same announcements keep copies of small store documents that every request reads (the
caller's account, its communities, the gates a page names: `documents`). Their owning manager
announces a document's key (`announce`) after writing it and before answering, so again a
request made after the change does not see the old copy; a read that overlapped an
announcement is not kept. A process that died between its write and its announcement would
leave copies stale, so a document's copy is also read again after DOCUMENT_SECONDS.

When the subscription breaks (a Redis restart closes it) the copies are dropped, and not used
until it is back (the client reconnects by itself; each reconnection drops them again); a
subscription that shows no sign of life for STALE_SECONDS (a silent network partition)
counts as broken, so that is the longest a copy can be stale. The pings that show it alive,
and subscribing again, are a task of their own: a process that served nothing for a while
still has live copies at its next request, and no request pays for a ping.
"""

import asyncio
import contextlib
import copy
import time
from collections import OrderedDict

from bson import ObjectId

CHANNEL = "xiaoqu:changed"
MAX_COPIES = 100_000
PING_SECONDS = 2.0  # the subscription is pinged this often...
STALE_SECONDS = 6.0  # ...and counts as broken after this long without an answer
RETRY_SECONDS = 1.0  # between attempts to subscribe again
SUBSCRIBE_SECONDS = 2.0
# A store document's copy is read again after this at the latest. Its announcement drops it
# at once; this bounds only a writer that died between its write and its announcement (a
# change never acknowledged). Not shorter: a page names any of a community's gates, and
# with thousands of them copies living a minute were mostly gone before their next use.
DOCUMENT_SECONDS = 600.0


async def set_announced(redis, key: str, value, ex: int, here: "KeyCache | None" = None) -> None:
    """Set the key and announce it; `here` is the writing process's own cache."""
    async with redis.pipeline(transaction=True) as pipe:
        await pipe.set(key, value, ex=ex).publish(CHANNEL, key).execute()
    if here is not None:
        here.forget(key)


async def delete_announced(redis, key: str, here: "KeyCache | None" = None) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        await pipe.delete(key).publish(CHANNEL, key).execute()
    if here is not None:
        here.forget(key)


async def announce(redis, *keys: str, here: "KeyCache | None" = None) -> None:
    """Say that the store documents under these keys changed: after the write, before the
    change is acknowledged to anyone."""
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.publish(CHANNEL, key)
        await pipe.execute()
    if here is not None:
        here.forget(*keys)


async def by_id(cache: "KeyCache | None", collection, ids) -> dict[str, dict]:
    """id -> document of a collection, for the ids given (valid ones, of documents found), from
    the process's copies (keyed "<collection>:<id>"; announce that key after changing one);
    without a cache (scripts) read each time."""
    async def load(keys: list[str]) -> dict[str, dict]:
        wanted = [ObjectId(key.partition(":")[2]) for key in keys]
        return {f"{collection.name}:{doc['_id']}": doc
                for doc in await collection.find({"_id": {"$in": wanted}}).to_list(None)}
    keys = [f"{collection.name}:{i}" for i in {str(i) for i in ids if i} if ObjectId.is_valid(i)]
    if not keys:
        return {}
    copies = await (load(keys) if cache is None else cache.documents(keys, load))
    return {key.partition(":")[2]: doc for key, doc in copies.items()}


class KeyCache:
    def __init__(self, redis, clock=time.monotonic):
        self.redis = redis
        self.clock = clock
        self.copies: OrderedDict[str, str | None] = OrderedDict()
        self.docs: OrderedDict[str, tuple[float, dict]] = OrderedDict()  # key -> (expires, doc)
        self.pubsub = None
        self.closed = False  # after close() no subscription is made again
        self.changes = 0  # announcements taken: a read that overlapped one is not kept
        self.last_heard = float("-inf")
        self.hits = self.misses = 0
        # One reader of the subscription at a time: concurrent requests draining it together
        # made redis-py refuse the second read, which counted as a broken subscription and
        # dropped every copy under load (so every request went to Redis after all).
        self.reading = asyncio.Lock()
        self.keeper: asyncio.Task | None = None
        self.stopping = asyncio.Event()

    async def start(self) -> None:
        """Subscribe, and keep the subscription alive from now on; until it is up every read
        goes to Redis."""
        if self.keeper is None and not self.closed:
            self.keeper = asyncio.create_task(self._keep_alive())
        if self.pubsub is None:  # (a second start-up keeps the one it has)
            await self._subscribe()

    async def _keep_alive(self) -> None:
        while not self.closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(),
                                       PING_SECONDS if self.pubsub is not None else RETRY_SECONDS)
            await self.tend()

    async def tend(self) -> None:
        """The keeper's beat: take what the subscription received (the last ping's answer
        among it) and ping it, or, without one, subscribe again."""
        if self.closed:
            return
        if (pubsub := self.pubsub) is None:
            with contextlib.suppress(Exception):  # Redis is away: again at the next beat
                await self._subscribe()
            return
        now = self.clock()
        try:
            async with self.reading:
                if self.pubsub is not pubsub:  # broken meanwhile
                    return
                await self._drain(now)
                if self._silent(now):
                    raise TimeoutError("the subscription answered no ping")
                await pubsub.ping()
        except Exception:  # broken or silent: nothing announced meanwhile is known
            await self._broken()

    async def _subscribe(self) -> None:
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
        self.last_heard = self.clock()

    def _reconnected(self, connection) -> None:
        self.copies.clear()
        self.docs.clear()
        self.changes += 1

    async def close(self) -> None:
        self.closed = True
        if self.keeper is not None:
            # Its beat ends first, not cancelled in the middle of a command (Redis's timeouts
            # bound it to seconds); a subscription it made meanwhile it closes itself.
            self.stopping.set()
            await self.keeper
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

    async def documents(self, keys, load) -> dict[str, dict]:
        """Store documents by key (their manager's naming, e.g. "staff:<id>"), from the copies
        when current; the others read by `await load(missing keys) -> {key: doc}`, and kept
        unless an announcement came meanwhile. A key not found is not kept (nor announced when
        its document is created). Each caller gets its own copy: callers may change it."""
        found: dict[str, dict] = {}
        if await self._current():
            now = self.clock()
            for key in keys:
                held = self.docs.get(key)
                if held is not None and held[0] > now:
                    found[key] = held[1]
                    self.docs.move_to_end(key)
        if missing := [key for key in keys if key not in found]:
            self.misses += 1
            seen, started = self.changes, self.clock()
            loaded = await load(missing)
            if self.pubsub is not None and self.changes == seen:
                self.docs.update((key, (started + DOCUMENT_SECONDS, doc))
                                 for key, doc in loaded.items())
                while len(self.docs) > MAX_COPIES:
                    self.docs.popitem(last=False)
            found.update(loaded)
        else:
            self.hits += 1
        return {key: copy.deepcopy(doc) for key, doc in found.items()}

    def forget(self, *keys: str) -> None:
        """This process changed these keys: its copies go now, not when its own announcement
        comes back, and a read that overlapped the change is not kept."""
        for key in keys:
            self.copies.pop(key, None)
            self.docs.pop(key, None)
        self.changes += 1

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
        if (pubsub := self.pubsub) is None:
            return False  # (the keeper subscribes again)
        now = self.clock()
        try:
            # Announcements already received are in the connection's buffers (the event loop
            # moves what reaches the socket there before it runs any request that came after):
            # looking costs no read, so most requests skip the lock and the drain.
            if await pubsub.connection.can_read():
                async with self.reading:
                    if self.pubsub is not pubsub:  # broken meanwhile
                        return False
                    await self._drain(now)
        except Exception:  # the subscription broke: nothing announced meanwhile is known
            await self._broken()
            return False
        if self._silent(now):
            await self._broken()
            return False
        return True

    def _silent(self, now: float) -> bool:
        """No sign of life for longer than the bound on a copy's staleness."""
        return now - self.last_heard > STALE_SECONDS

    async def _drain(self, now: float) -> None:
        while (message := await self.pubsub.get_message(timeout=0)) is not None:
            self.last_heard = now
            if message["type"] == "message":
                self.copies.pop(message["data"], None)
                self.docs.pop(message["data"], None)
                self.changes += 1

    async def _broken(self) -> None:
        self.copies.clear()
        self.docs.clear()
        self.changes += 1
        pubsub, self.pubsub = self.pubsub, None
        try:
            await pubsub.aclose()
        except Exception:
            pass
