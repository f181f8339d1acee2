"""Clients for the backing stores, with explicit timeouts, each command timed
(xiaoqu_store_duration_seconds) and its failures counted (xiaoqu_store_errors)."""

import asyncio
import contextlib
import functools
import time

from pymongo import AsyncMongoClient, monitoring
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server import metrics

MONGO_TIMEOUT_MS = 3000
REDIS_TIMEOUT_S = 2.0


@functools.cache
def _seconds(store: str, op: str):
    """The histogram's series for a command (cached: a label lookup costs as much as the
    observation; the command names are a bounded set)."""
    return metrics.STORE_SECONDS.labels(store, op)


class MongoMonitor(monitoring.CommandListener, monitoring.ServerHeartbeatListener):
    """pymongo's own timings of every command; a failed heartbeat is a server unreachable
    (no command is even sent then)."""

    def started(self, event) -> None:
        pass

    def succeeded(self, event) -> None:
        if isinstance(event, monitoring.CommandSucceededEvent):
            _seconds("mongodb", event.command_name).observe(event.duration_micros / 1e6)

    def failed(self, event) -> None:
        if isinstance(event, monitoring.CommandFailedEvent):
            _seconds("mongodb", event.command_name).observe(event.duration_micros / 1e6)
            metrics.STORE_ERRORS.labels("mongodb", event.command_name).inc()
        else:
            metrics.STORE_ERRORS.labels("mongodb", "heartbeat").inc()


def connect_mongo(uri: str, listeners=()) -> AsyncMongoClient:
    """`listeners`: more of pymongo's monitoring listeners (tests count commands with one)."""
    # tz_aware: datetimes come back as UTC-aware, comparable with our clock.
    return AsyncMongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=MONGO_TIMEOUT_MS,
                            connectTimeoutMS=MONGO_TIMEOUT_MS, socketTimeoutMS=10 * MONGO_TIMEOUT_MS,
                            event_listeners=[MongoMonitor(), *listeners])


async def _timed(op: str, call):
    started = time.perf_counter()
    try:
        return await call
    except (RedisConnectionError, RedisTimeoutError):
        metrics.STORE_ERRORS.labels("redis", op).inc()
        raise
    finally:
        _seconds("redis", op).observe(time.perf_counter() - started)


class TimedPipeline(Pipeline):
    async def execute(self, raise_on_error: bool = True):
        return await _timed("pipeline", super().execute(raise_on_error))


class TimedRedis(Redis):
    async def execute_command(self, *args, **options):
        return await _timed(str(args[0]).lower(), super().execute_command(*args, **options))

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        return TimedPipeline(self.connection_pool, self.response_callbacks, transaction,
                             shard_hint)


def connect_redis(url: str) -> Redis:
    # A blocking pool waits for a free connection instead of raising under load.
    pool = BlockingConnectionPool.from_url(url, max_connections=64, timeout=REDIS_TIMEOUT_S,
                                           socket_timeout=REDIS_TIMEOUT_S,
                                           socket_connect_timeout=REDIS_TIMEOUT_S,
                                           decode_responses=True,
                                           # After a Redis restart pooled connections are
                                           # dead: reconnect and retry instead of failing.
                                           retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
                                           retry_on_error=[RedisConnectionError])
    return TimedRedis.from_pool(pool)  # the client owns the pool and closes it


def connect_redis_pubsub(url: str) -> Redis:
    """Pub/sub waits indefinitely for messages, so no socket timeout on this one."""
    return Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT_S, decode_responses=True)


# -- the circuit breaker ---------------------------------------------------------------------

PROBE_TIMEOUT = 2.0  # a store that does not answer a ping within this is down
PROBE_EVERY = 1.0  # seconds between probes while every store answers
RETRY_EVERY = 0.2  # while one is down: it is seen back within this
FAIL_FAST_SECONDS = 0.5  # the bound on a 503 once a store is known down (docs, tests)
RECHECK_SECONDS = 0.2  # a request finding the breaker open waits this long for a fresh probe


class StoreHealth:
    """Which stores answer, from the one probe /readyz shows: while a store is down, requests
    that need it answer 503 at once (handlers/base.py, the gate hub's scans) instead of each
    waiting out the driver's timeouts — about 3 s for MongoDB's server selection, so a remote
    open took 7 s and a resident's code 16 s to fail in an outage. The probe runs every
    PROBE_EVERY seconds, every RETRY_EVERY after a failure, and at once when a request meets
    a store error (`suspect`). Two failures in a row open the breaker (one slow answer on a
    loaded host does not); the first probe that answers closes it. A request finding it open
    waits up to RECHECK_SECONDS for one more (shared) probe: a store just back is used at
    once, one still down is answered 503 within the bound."""

    def __init__(self, db, redis):
        self.probes = {"mongodb": lambda: db.command("ping"), "redis": redis.ping}
        self.status = dict.fromkeys(self.probes, "ok")  # what the breaker acts on
        self.last = dict(self.status)  # the latest probe's own answers
        self.probed = 0  # probes run: tests wait on it rather than on time
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._probing: asyncio.Task | None = None

    def down(self) -> str | None:
        """The first store known down, or None."""
        return next((name for name, state in self.status.items() if state != "ok"), None)

    async def recheck(self, within: float = RECHECK_SECONDS) -> str | None:
        """The store known down after one more probe, waited for at most `within` seconds: a
        store just back serves the request that finds the breaker open, instead of a 503 until
        the next scheduled probe."""
        if self.down() is None:
            return None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._probe_once()), within)
        return self.down()

    def _probe_once(self) -> asyncio.Task:
        """The probe in flight, shared by everyone asking meanwhile."""
        if self._probing is None or self._probing.done():
            self._probing = asyncio.ensure_future(self._probe())
        return self._probing

    async def probe(self) -> dict[str, str]:
        """Ask every store now: {store: "ok" | "down: <error>"} as answered (the breaker opens
        on the second failure in a row)."""
        return await asyncio.shield(self._probe_once())

    async def _probe(self) -> dict[str, str]:
        results = await asyncio.gather(*(_answer(check()) for check in self.probes.values()))
        answers = dict(zip(self.probes, results, strict=True))
        self.status = {name: "ok" if state == "ok" or self.last[name] == "ok" else state
                       for name, state in answers.items()}
        self.last = answers
        self.probed += 1
        for name, state in self.status.items():
            metrics.STORE_UP.labels(name).set(state == "ok")
        return answers

    def suspect(self) -> None:
        """A request met a store error: probe now rather than at the next interval."""
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        for task in (self._task, self._probing):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._task = self._probing = None

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            await self.probe()
            with contextlib.suppress(TimeoutError):
                failing = any(state != "ok" for state in self.last.values())
                await asyncio.wait_for(self._wake.wait(), RETRY_EVERY if failing else PROBE_EVERY)


async def _answer(check) -> str:
    try:
        await asyncio.wait_for(check, PROBE_TIMEOUT)
        return "ok"
    except Exception as exc:  # any failure means "down"; say which
        return f"down: {type(exc).__name__}"
