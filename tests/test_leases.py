"""Leases (models/leases.py): one holder at a time, renewal, loss, and jobs that run in exactly
one of several server processes — the holder killed, another takes over within the lease."""

import asyncio
import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import uuid

import pytest
import tornado.httpclient

from models.leases import PREFIX, SAFETY, Lease, LeasedJob
from tests.waiting import until

pytestmark = pytest.mark.asyncio


async def test_one_holder_renewal_and_release(app):
    first, second = Lease(app.redis, "t", 5, "a"), Lease(app.redis, "t", 5, "b")
    assert await first.keep() and not await second.keep()
    assert await first.keep() and first.held  # renewing keeps it
    assert await first.holder() == "a"
    assert 0 < await app.redis.pttl(PREFIX + "t") <= 5000
    await first.release()
    assert not first.held and await second.keep() and await second.holder() == "b"


async def test_a_lease_taken_over_after_it_lapsed_is_known_lost(app):
    first, second = Lease(app.redis, "t", 5, "a"), Lease(app.redis, "t", 5, "b")
    assert await first.keep()
    await app.redis.delete(PREFIX + "t")  # what expiry does
    assert await second.keep()
    assert not await first.keep() and not first.held


@pytest.fixture
def redis_url(own_redis):
    return own_redis.url


async def test_a_holder_cut_off_from_redis_gives_up_before_the_key_lapses(app, own_redis):
    lease = Lease(app.redis, "t", 1.0, "a")
    asked = time.monotonic()
    assert await lease.keep()
    answered = time.monotonic()
    # Trusted for 90 % of the TTL counted from before the request went out, so it ends
    # before the key, set by Redis after that, can lapse.
    assert asked <= lease.valid_until - SAFETY * 1.0 <= answered
    own_redis.process.terminate()
    own_redis.process.wait(10)
    await lease.keep()  # no answer: it holds only until its last renewal runs out
    await until(lambda: not lease.held, 30)
    assert not await lease.keep()  # and does not count itself the holder without Redis


async def test_a_pass_that_outlives_its_lease_is_cancelled(app):
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def work():
        started.set()
        try:
            await asyncio.Event().wait()  # a pass that never ends by itself
        except asyncio.CancelledError:
            cancelled.set()
            raise

    job = LeasedJob(app.redis, "t", work, interval=0.1, ttl=1.0, instance="a")
    job.start()
    try:
        await asyncio.wait_for(started.wait(), 30)
        await app.redis.set(PREFIX + "t", "b:other", px=5000)  # lapsed and taken by another
        await asyncio.wait_for(cancelled.wait(), 30)
        assert not job.held and job.passes == 0
    finally:
        await job.stop()
    assert await Lease(app.redis, "t").holder() == "b"  # stopping left the other's lease alone


# -- several server processes -------------------------------------------------------------------

LEASE_SECONDS = 2.0
JOBS = ("sla-watcher", "outbox")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`python -m server` on the test's stores, with short leases (SIGKILL-able)."""

    def __init__(self, settings, tmp_path):
        self.http_port = _free_port()
        data = tmp_path / uuid.uuid4().hex[:8]
        env = {**os.environ, "MONGODB_URI": settings.mongodb_uri,
               "MONGODB_DB": settings.mongodb_db, "REDIS_URL": settings.redis_url,
               "XIAOQU_DATA_DIR": str(data), "HTTP_PORT": str(self.http_port),
               "GATE_PORT": str(_free_port()), "LEASE_SECONDS": str(LEASE_SECONDS),
               "JWT_SECRET": settings.jwt_secret.get_secret_value(),
               "GATE_SECRET_KEY": settings.gate_secret_key.get_secret_value(),
               "WECHAT_BASE_URL": settings.wechat_base_url}
        self.proc = subprocess.Popen([sys.executable, "-m", "server"], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    async def ready(self) -> None:
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), 60)
        assert "xiaoqu is up" in line, line

    async def jobs(self, http) -> dict[str, tuple[bool, int]]:
        """job -> (holds its lease, passes run here), from this process's /metrics."""
        text = (await http.fetch(f"http://127.0.0.1:{self.http_port}/metrics")).body.decode()
        held = dict(re.findall(r'^xiaoqu_lease_held{job="([^"]+)"} (\S+)$', text, re.M))
        passes = dict(re.findall(r'^xiaoqu_job_passes{job="([^"]+)"} (\S+)$', text, re.M))
        return {job: (float(held[job]) == 1, int(float(passes[job]))) for job in JOBS}

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


async def test_each_job_runs_in_exactly_one_process_and_moves_when_its_holder_dies(
        settings, tmp_path, http_client):
    servers = [ServerProcess(settings, tmp_path) for _ in range(2)]
    try:
        await asyncio.gather(*(s.ready() for s in servers))

        async def states():
            return [await s.jobs(http_client) for s in servers]

        async def settled():
            seen = await states()
            # Every job has a holder that has run a pass.
            return seen if all(any(st[job][0] and st[job][1] for st in seen)
                               for job in JOBS) else None
        seen = await until(settled, 30)
        for job in JOBS:
            holders = [i for i, st in enumerate(seen) if st[job][0]]
            assert len(holders) == 1, (job, seen)
            # The other process never ran a pass: it only tried to take the lease.
            assert seen[1 - holders[0]][job][1] == 0, (job, seen)

        victim = next(i for i, st in enumerate(seen) if st["outbox"][0])
        survivor = servers[1 - victim]
        servers[victim].kill()
        killed = time.monotonic()
        await until(lambda: _holds_all(survivor, http_client), 4 * LEASE_SECONDS)
        took = time.monotonic() - killed
        # The dead holder's key lapses at most one lease after its last renewal; the survivor
        # tries every third of a lease.
        assert took <= LEASE_SECONDS * (1 + 1 / 3) + 1.0, took
        state = await survivor.jobs(http_client)
        await until(lambda: _ran_again(survivor, http_client, state), 4 * LEASE_SECONDS)
    finally:
        for server in servers:
            server.stop()


async def _holds_all(server, http) -> bool:
    with contextlib.suppress(tornado.httpclient.HTTPClientError, OSError):
        return all(held for held, _ in (await server.jobs(http)).values())
    return False


async def _ran_again(server, http, before) -> bool:
    after = await server.jobs(http)
    return after["outbox"][1] > before["outbox"][1]  # the outbox worker passes every second
