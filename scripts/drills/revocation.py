"""How long a sign-out can be missed by another server process that answers from its own
copies (models/key_cache.py): measured with two real servers on one Redis, while Redis is
killed -9 and started again, and while one server's link to Redis goes silent.

    python -m scripts.drills.revocation [--short]     (--short: cases 1 and 2, one round)

Server B is asked `GET /api/me` with a token back to back; the sign-out is made on server A
(`POST /api/auth/logout`). A request to B that *started* after A acknowledged the sign-out
and was still answered 200 is a missed revocation; the staleness is how long after the
acknowledgement such answers went on. Three cases, each a few rounds:

1. Redis up: the copies are dropped by the announcement before B answers again (0 misses).
2. Redis killed -9 and started again, the
   sign-out made the moment it is back: B's subscription broke with the restart, so B reads
   Redis itself until it has subscribed again (0 misses); and a sign-out made before a
   restart that came back empty (no persistence, flushed) still holds after it: the denylist
   is rebuilt from MongoDB (models/seeding.py).
3. B's link to Redis goes silent (a proxy that stops forwarding but keeps the connections
   open: a network partition, no reset) and A signs out: B cannot hear the announcement and
   answers from its copies until the subscription counts as broken (STALE_SECONDS) — the
   bound, measured.
"""

import asyncio
import contextlib
import time

import tornado.httpclient
from redis.asyncio import from_url as redis_client

from models.key_cache import PING_SECONDS, STALE_SECONDS
from scripts.drills.common import Drill, main
from server.embedded import free_port

USERNAME, PASSWORD = "drill-admin", "drill password 1"  # what Drill.seed creates


class SilentProxy:
    """TCP forwarding to Redis that can go silent: bytes are held, connections stay open."""

    def __init__(self, target_port: int):
        self.target_port, self.port = target_port, free_port()
        self.silent = False
        self.resumed = asyncio.Event()
        self.resumed.set()
        self.server = None
        self.tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port)

    async def _client(self, reader, writer) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:  # Redis is restarting: refused, as it would be without the proxy
            writer.close()
            return
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pipe(self, src, dst) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await src.read(65536):
                await self.resumed.wait()  # silent: held, neither delivered nor refused
                dst.write(data)
                await dst.drain()
        dst.close()

    def go_silent(self, silent: bool) -> None:
        self.silent = silent
        (self.resumed.clear if silent else self.resumed.set)()

    async def close(self) -> None:
        self.server.close()
        for task in list(self.tasks):
            task.cancel()


async def login(d: Drill, base: str) -> dict:
    status, body = await d.call("POST", f"{base}/api/auth/staff",
                                body={"username": USERNAME, "password": PASSWORD})
    if status != 200:
        raise RuntimeError(f"login answered {status}: {body}")
    return body


class Watcher:
    """GET /api/me on one server, back to back: (started, status) of every request."""

    def __init__(self, d: Drill, base: str, token: str):
        self.d, self.base, self.token = d, base, token
        self.seen: list[tuple[float, int]] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                status, _ = await self.d.call("GET", f"{self.base}/api/me", self.token, timeout=2)
            except tornado.httpclient.HTTPClientError:  # timed out: B is waiting for Redis
                status = 599
            self.seen.append((started, status))
            if status == 599:
                await asyncio.sleep(0.01)  # the server is not reachable: do not spin

    def after(self, moment: float) -> list[tuple[float, int]]:
        return [(t, s) for t, s in self.seen if t >= moment]

    async def accepted(self) -> bool:
        return any(s == 200 for _, s in self.seen)

    async def until_refused(self, since: float, timeout: float, more: int = 3) -> bool:
        """Until a request started after `since` is refused (401; 503 or no answer when B
        cannot reach Redis) and `more` requests after that one have ended too."""
        async def refused():
            first = next((t for t, s in self.after(since) if s != 200), None)
            return first is not None and len(self.after(first)) > more
        return await self.d.until(refused, timeout, every=0.02)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def round_trip(d: Drill, a, b, label: str, before_signout=None,
                     timeout: float = 30.0) -> tuple[int, float]:
    """Sign in, watch B accept the token, (do `before_signout`), sign out on A; returns
    (missed answers, seconds after the acknowledgement B still said 200)."""
    tokens = await login(d, a.base)
    watcher = Watcher(d, b.base, tokens["access_token"])
    try:
        if not await d.until(watcher.accepted, 15, 0.02):
            raise RuntimeError(f"{label}: B never accepted the token: {watcher.seen[-3:]}")
        if before_signout is not None:
            await before_signout()
        while True:  # the sign-out is made the moment A can make it
            status, body = await d.call("POST", f"{a.base}/api/auth/logout",
                                        tokens["access_token"],
                                        {"refresh_token": tokens["refresh_token"]}, timeout=5)
            if status == 204:
                break
            if status not in (503, 599):
                raise RuntimeError(f"{label}: logout answered {status}: {body}")
            await asyncio.sleep(0.05)
        acknowledged = time.monotonic()
        refused = await watcher.until_refused(acknowledged, timeout)
        late = [t for t, s in watcher.after(acknowledged) if s == 200]
        stale = (max(late) - acknowledged) if late else 0.0
        if not refused:
            d.say(f"{label}: B did not refuse the token within {timeout:.0f} s")
            stale = float("inf")
        d.say(f"{label}: {len(late)} answers 200 after the sign-out, for {stale:.3f} s; "
              f"{len(watcher.after(acknowledged))} requests watched")
        return len(late), stale
    finally:
        await watcher.stop()


async def drill(d: Drill) -> None:
    rounds = 1 if d.short else 5
    # Mongo is not what this drill restarts: in memory, it starts faster.
    mongo, redis = await asyncio.gather(d.mongo(memory=True), d.redis(persistent=True))
    proxy = SilentProxy(int(redis.url.rsplit(":", 1)[1].split("/")[0]))
    await proxy.start()
    try:
        await d.seed(gates=0)
        a, b = await asyncio.gather(d.server(mongo, redis, name="a"),
                                    d.server(mongo, redis, name="b"))

        missed = [await round_trip(d, a, b, f"redis up, round {i + 1}") for i in range(rounds)]
        d.check("Redis up: no answer after the sign-out",
                all(n == 0 for n, _ in missed), f"{missed}")

        async def restart_redis():
            await redis.kill9()
            await redis.start()

        missed = [await round_trip(d, a, b, f"redis restarted, round {i + 1}", restart_redis)
                  for i in range(rounds)]
        d.check("Redis killed -9 and restarted, sign-out at once: no answer after it",
                all(n == 0 for n, _ in missed), f"{missed}")

        # A sign-out made before Redis comes back empty (no persistence: the flush empties the
        # append-only file too) still holds: MongoDB has it, and Redis is rebuilt from there.
        tokens = await login(d, a.base)
        status, _ = await d.call("POST", f"{a.base}/api/auth/logout", tokens["access_token"],
                                 {"refresh_token": tokens["refresh_token"]})
        client = redis_client(redis.url)
        try:
            await client.flushall()
        finally:
            await client.aclose()
        await restart_redis()
        watcher = Watcher(d, b.base, tokens["access_token"])

        async def answered():
            return sum(s == 401 for _, s in watcher.seen) >= 3
        refused = await d.until(answered, 30, every=0.05)
        await watcher.stop()
        d.check("a sign-out made before Redis restarted empty still holds after it",
                status == 204 and refused and not any(s == 200 for _, s in watcher.seen),
                f"logout {status}; B answered {sorted({s for _, s in watcher.seen})}")

        if d.short:  # the partition rounds wait out STALE_SECONDS and Redis timeouts
            return
        silent_b = await d.server(mongo, redis, name="b-behind-proxy",
                                  REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0")

        async def partition():
            proxy.go_silent(True)

        stale = []
        for i in range(rounds):
            proxy.go_silent(False)
            stale.append((await round_trip(d, a, silent_b, f"B partitioned, round {i + 1}",
                                           partition, timeout=STALE_SECONDS + 30))[1])
        proxy.go_silent(False)
        bound = STALE_SECONDS + 1  # and the last request's own time
        d.check(f"B cut off from Redis without a reset: stale at most {STALE_SECONDS:.0f} s "
                f"(STALE_SECONDS; the subscription is pinged every {PING_SECONDS:.0f} s)",
                max(stale) <= bound, f"measured {', '.join(f'{s:.2f}' for s in stale)} s")
    finally:
        await proxy.close()


if __name__ == "__main__":
    main(drill)
