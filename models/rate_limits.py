"""Rate limits counted atomically in Redis (fixed windows of the `limits` library).

An attempt is counted before the work it limits is done, in one Redis script per
window, so concurrent requests cannot all read "under the limit" and then all go
ahead (30 parallel password guesses are still only `limit` guesses).
"""

import math
import time
from dataclasses import dataclass

from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import FixedWindowRateLimiter

from models.errors import RateLimited

KEY_PREFIX = "xiaoqu_limit"


@dataclass(frozen=True)
class Window:
    """At most `amount` attempts per `seconds` for one key (e.g. one username at one address)."""

    name: str
    key: tuple[str, ...]
    amount: int
    seconds: int

    @property
    def item(self) -> RateLimitItemPerSecond:
        return RateLimitItemPerSecond(self.amount, self.seconds, namespace=self.name)


class RateLimits:
    def __init__(self, redis):
        # The app's own connection pool: no second set of Redis connections.
        storage = RedisStorage("async+redis://", implementation="redispy",
                               key_prefix=KEY_PREFIX, connection_pool=redis.connection_pool)
        self.storage = storage
        self.limiter = FixedWindowRateLimiter(storage)

    async def take(self, *windows: Window, message: str, code: str = "rate_limited") -> None:
        """Count one attempt in every window, or, when one is full, in none and raise."""
        taken: list[Window] = []
        for window in windows:
            if not await self.limiter.hit(window.item, *window.key):
                await self.give_back(*taken, window)
                reset_at, _ = await self.limiter.get_window_stats(window.item, *window.key)
                raise RateLimited(message, code=code,
                                  retry_after=max(math.ceil(reset_at - time.time()), 1))
            taken.append(window)

    async def give_back(self, *windows: Window) -> None:
        """Uncount an attempt that turned out not to count (e.g. a correct password)."""
        for window in windows:
            await self.storage.incr(window.item.key_for(*window.key), window.seconds, amount=-1)

    async def reset(self, window: Window) -> None:
        await self.limiter.clear(window.item, *window.key)
