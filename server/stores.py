"""Clients for the backing stores, with explicit timeouts."""

from pymongo import AsyncMongoClient
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

MONGO_TIMEOUT_MS = 3000
REDIS_TIMEOUT_S = 2.0


def connect_mongo(uri: str) -> AsyncMongoClient:
    # tz_aware: datetimes come back as UTC-aware, comparable with our clock.
    return AsyncMongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=MONGO_TIMEOUT_MS,
                            connectTimeoutMS=MONGO_TIMEOUT_MS, socketTimeoutMS=10 * MONGO_TIMEOUT_MS)


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
    return Redis.from_pool(pool)  # the client owns the pool and closes it


def connect_redis_pubsub(url: str) -> Redis:
    """Pub/sub waits indefinitely for messages, so no socket timeout on this one."""
    return Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT_S, decode_responses=True)
