"""Clients for the backing stores, with explicit timeouts, each command timed
(xiaoqu_store_duration_seconds) and its failures counted (xiaoqu_store_errors)."""

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


def connect_mongo(uri: str) -> AsyncMongoClient:
    # tz_aware: datetimes come back as UTC-aware, comparable with our clock.
    return AsyncMongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=MONGO_TIMEOUT_MS,
                            connectTimeoutMS=MONGO_TIMEOUT_MS, socketTimeoutMS=10 * MONGO_TIMEOUT_MS,
                            event_listeners=[MongoMonitor()])


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
