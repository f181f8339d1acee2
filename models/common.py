"""Small helpers every model uses: ids, time."""

from datetime import UTC, datetime, timedelta

from bson import ObjectId
from bson.errors import InvalidId

from models.errors import NotFound


def object_id(value: str, what: str = "object") -> ObjectId:
    """Parse an id from a URL; a malformed id is simply not found."""
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        raise NotFound(f"{what} not found") from None


def from_timestamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class Clock:
    """Wall-clock time, injectable so tests can move time without sleeping."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def time(self) -> float:
        return self.now().timestamp()


class ManualClock(Clock):
    """A clock that only moves when told to (tests, simulations)."""

    def __init__(self, start: datetime):
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)
