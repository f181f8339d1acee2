"""Small helpers every model uses: ids, time, idempotent inserts."""

import functools
import time
from datetime import UTC, datetime, timedelta

from bson import ObjectId
from bson.errors import InvalidId
from pymongo.errors import BulkWriteError

from models.errors import NotFound
from models.messages import Text


def object_id(value: str, what: str = "object") -> ObjectId:
    """Parse an id from a URL; a malformed id is simply not found."""
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        raise NotFound(Text("{what} not found", what=what)) from None


DUPLICATE_KEY = 11000


async def insert_new(collection, docs: list[dict]) -> list[dict]:
    """Insert every doc not already there (by a unique key); returns the ones that were new.
    Retried writes are idempotent this way: what went in before is simply skipped."""
    if not docs:
        return []
    try:
        await collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        refused = exc.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in refused):
            raise
        duplicates = {e["index"] for e in refused}
        return [doc for i, doc in enumerate(docs) if i not in duplicates]
    return docs


def from_timestamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@functools.lru_cache(maxsize=256)  # the codes issued within a second share their times
def iso_utc(seconds: int) -> str:
    """`from_timestamp(seconds).isoformat()`, for an answer sent at once: making the datetime
    alone is ~7k instructions, a hit here ~1k."""
    return from_timestamp(seconds).isoformat()


class Clock:
    """Wall-clock time, injectable so tests can move time without sleeping."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def time(self) -> float:
        # Not now().timestamp(): the datetime is ~6k instructions of it, and a request asks
        # several times.
        return time.time()

    def __init_subclass__(cls, **kwargs) -> None:
        # A clock that moves `now` (tests, simulations) moves `time` with it.
        super().__init_subclass__(**kwargs)
        if "now" in vars(cls) and "time" not in vars(cls):
            cls.time = lambda self: self.now().timestamp()


class ManualClock(Clock):
    """A clock that only moves when told to (tests, simulations)."""

    def __init__(self, start: datetime):
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)
