"""Leases: background jobs that run in one process at a time across every instance.

A lease is the Redis key `lease:<name>` holding its holder's token
("<instance>:<random>"), set with a short TTL and renewed by its holder every
third of it (redis-py's Lock: SET NX PX, renewal and release by token in Lua).
Loss is detected two ways: a renewal finding another token (the key lapsed and
someone else took it), and the holder's own clock — a holder that could not renew
within 90 % of the TTL (Redis unreachable, the process stalled) counts the lease
as lost before the key can have lapsed in Redis, and stops its current pass. A
holder killed outright lets the key expire: another instance takes over within
one TTL (plus one try interval).

`LeasedJob(redis, name, work, ...)`: every `interval` the instance holding the
lease runs `await work()` (one pass); the others only try to take the lease. A
pass outliving its lease is cancelled. Work done under a lease must still be
idempotent: a pass cancelled half-way is repeated by the next holder.
"""

import asyncio
import contextlib
import logging
import time
import uuid

import redis.exceptions
from redis.exceptions import LockError, LockNotOwnedError

log = logging.getLogger("xiaoqu.leases")

PREFIX = "lease:"
SAFETY = 0.9  # of the TTL: how long a holder trusts its last renewal
DEFAULT_TTL = 10.0


class Lease:
    def __init__(self, redis, name: str, ttl: float = DEFAULT_TTL, instance: str | None = None):
        self.name = name
        self.ttl = ttl
        self.token = f"{instance or uuid.uuid4().hex[:12]}:{uuid.uuid4().hex[:8]}"
        # thread_local=False: the token must be visible to every task of this process.
        self.lock = redis.lock(PREFIX + name, timeout=ttl, blocking=False, thread_local=False)
        self.redis = redis
        self.valid_until = 0.0  # time.monotonic() until which this process holds it

    @property
    def held(self) -> bool:
        return time.monotonic() < self.valid_until

    async def keep(self) -> bool:
        """Take the lease, or renew it if held; True while this process holds it."""
        started = time.monotonic()
        try:
            if self.held:
                await self.lock.reacquire()
            elif not await self.lock.acquire(blocking=False, token=self.token):
                return False
        except LockNotOwnedError:
            self.valid_until = 0.0
            log.warning("lease %s: lost (taken over after it lapsed)", self.name)
            return False
        except (LockError, redis.exceptions.RedisError):
            return self.held  # Redis unreachable: held only until the last renewal runs out
        self.valid_until = started + self.ttl * SAFETY
        return True

    async def release(self) -> None:
        held, self.valid_until = self.held, 0.0
        if held:
            # With Redis gone the key simply expires; stopping must not fail on it.
            with contextlib.suppress(LockError, redis.exceptions.RedisError):
                await self.lock.release()

    async def holder(self) -> str | None:
        """The instance id holding the lease now (any process may ask), or None."""
        token = await self.redis.get(PREFIX + self.name)
        return token and token.rsplit(":", 1)[0]


class LeasedJob:
    """`work` run every `interval` seconds by whichever instance holds lease `name`."""

    def __init__(self, redis, name: str, work, *, interval: float, ttl: float = DEFAULT_TTL,
                 instance: str | None = None):
        self.name = name
        self.work = work
        self.interval = interval
        self.lease = Lease(redis, name, ttl, instance)
        self.passes = 0  # passes run by this process
        self.woken = False
        self._stopping = False
        self._attention = asyncio.Event()  # stop() or wake() was called
        self._task: asyncio.Task | None = None

    @property
    def held(self) -> bool:
        return self.lease.held

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run())

    def wake(self) -> None:
        """Run the next pass now rather than at the next interval (if this process holds it)."""
        self.woken = True
        self._attention.set()

    async def stop(self) -> None:
        self._stopping = True
        self._attention.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self.lease.release()

    async def _run(self) -> None:
        # Tries (and renewals while idle) come at least every third of the TTL.
        tick = min(self.interval, self.lease.ttl / 3)
        next_pass = 0.0
        while not self._stopping:
            self._attention.clear()
            if await self.lease.keep() and (time.monotonic() >= next_pass or self.woken):
                self.woken = False
                await self._pass()
                next_pass = time.monotonic() + self.interval
            if not (self._stopping or self.woken):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._attention.wait(), tick)

    async def _pass(self) -> None:
        """One pass, renewing the lease while it runs; cancelled if the lease is lost."""
        task = asyncio.create_task(self.work())
        try:
            while True:
                done, _ = await asyncio.wait([task], timeout=self.lease.ttl / 3)
                if done:
                    break
                if not await self.lease.keep():
                    log.warning("job %s: lease lost during a pass; stopping it", self.name)
                    task.cancel()
                    break
            await task
            self.passes += 1
        except asyncio.CancelledError:
            if not task.cancelled():
                raise  # this loop itself is being cancelled
        except Exception:  # a failed pass must not end the job; the next one retries
            log.exception("job %s: pass failed", self.name)
        finally:
            if not task.done():
                task.cancel()
