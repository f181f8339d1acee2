"""Clients for the backing stores, with explicit timeouts."""

from pymongo import AsyncMongoClient
from redis.asyncio import BlockingConnectionPool, Redis

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
                                           decode_responses=True)
    return Redis.from_pool(pool)  # the client owns the pool and closes it


def connect_redis_pubsub(url: str) -> Redis:
    """Pub/sub waits indefinitely for messages, so no socket timeout on this one."""
    return Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT_S, decode_responses=True)
