"""The outbox: effects of a state change, stored durably and run until each has happened.

A manager saves its state change, then `await outbox.add(key, kind, payload)`
right after it. The key is the effect's idempotency key, derived from the change
(e.g. "ticket:<id>:<version>:notify"): it is the document's `_id`, so adding the
same effect twice stores it once, and a handler is given it to make its own
writes idempotent. `add` never raises for a store failure: a state change already
saved must not be reported failed, so an effect that cannot be written is kept in
this process and written as soon as the store answers (only a process killed
during that outage loses it).

Effects are run by `run(key)` (at once, in the process that made the change:
no waiting for the worker) or by the worker, `drain()`, which runs every effect
that is due, under the `outbox` lease (models/leases.py) so one instance drains
at a time. Running claims the effect first (find-and-modify on its state), so two
runners never run one effect at the same moment; a handler that raises is tried
again later, with exponential backoff capped at MAX_BACKOFF, for ever — an effect
is never dropped; `last_error` and `attempts` say why it waits. Handlers must be
idempotent: a runner that dies after the effect happened but before marking it
done runs it again once its claim lapses.

A handler is `async def handler(key: str, payload: dict) -> None` (the key first, as
models.workflow.Effects calls its handlers), registered with `outbox.handle(kind, handler)`.

An effect that keeps failing waits for ever, so it must be seen: `count_pending`, read at
each scrape of /metrics, sets xiaoqu_outbox_pending and xiaoqu_outbox_oldest_pending_seconds
per kind (the age since the oldest pending effect was stored; a remote open's intent is
pending for its wait, ttl and grace, about a minute, before it is due), and the
XiaoquOutboxStuck alert fires on an effect pending for a quarter of an hour
(deploy/prometheus/alerts.yml).
"""

import asyncio
import logging
from datetime import datetime, timedelta

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError

from server import metrics

log = logging.getLogger("xiaoqu.outbox")

CLAIM_SECONDS = 60.0  # a runner that died mid-effect is replaced after this
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 300.0
DONE_KEPT_DAYS = 7  # done effects are kept this long: a repeat within it is recognised
BATCH = 100
CONCURRENCY = 10  # effects a worker pass runs at once

INDEXES = {
    "outbox": [IndexModel([("state", ASCENDING), ("due", ASCENDING)]),
               IndexModel([("done_at", ASCENDING)], expireAfterSeconds=DONE_KEPT_DAYS * 86400)],
}


def backoff(attempts: int) -> float:
    return min(FIRST_BACKOFF * 2 ** max(attempts - 1, 0), MAX_BACKOFF)


class Outbox:
    def __init__(self, db, clock, instance: str = ""):
        self.db = db
        self.clock = clock
        self.instance = instance
        self.handlers: dict = {}
        self.unsaved: list[dict] = []  # effects the store refused to take; written when it answers
        self.saver: asyncio.Task | None = None
        self.running: set[asyncio.Task] = set()

    def handle(self, kind: str, handler) -> None:
        self.handlers[kind] = handler

    def effect(self, key: str, kind: str, payload: dict, due: datetime | None = None) -> dict:
        now = self.clock.now()
        return {"_id": key, "kind": kind, "payload": payload, "state": "pending",
                "due": due or now, "created_at": now, "attempts": 0, "claimed_until": None,
                "last_error": None}

    async def add(self, key: str, kind: str, payload: dict, *, due: datetime | None = None,
                  run: bool = True) -> bool:
        """Store an effect (once per key) and, with `run`, start running it now in this
        process. Returns True when it is durable; False when the store did not answer and
        it waits in this process to be written (never raises for that)."""
        if kind not in self.handlers:
            raise KeyError(f"no outbox handler for {kind!r}")
        doc = self.effect(key, kind, payload, due)
        if not await self._insert(doc):
            return False
        if run and doc["due"] <= self.clock.now():
            self.spawn(key)
        return True

    async def put(self, key: str, kind: str, payload: dict, *, due: datetime) -> None:
        """Store an effect that must be durable before the caller goes on (an intent written
        before acting): raises the store's error instead of keeping it in memory."""
        if kind not in self.handlers:
            raise KeyError(f"no outbox handler for {kind!r}")
        try:
            await self.db.outbox.insert_one(self.effect(key, kind, payload, due))
        except DuplicateKeyError:
            pass  # already stored: the same effect

    async def update(self, key: str, payload: dict, *, run: bool = True) -> bool:
        """Complete a stored effect's payload (fields merged in) and make it due now, e.g. an
        intent's outcome. True when durable; otherwise kept here and written later."""
        changes = {f"payload.{name}": value for name, value in payload.items()}
        changes["due"] = self.clock.now()
        doc = {"_id": key, "$set": changes}
        try:
            await self.db.outbox.update_one({"_id": key, "state": "pending"}, {"$set": changes})
        except PyMongoError:
            log.warning("outbox: %s not updated; keeping it to write later", key, exc_info=True)
            self._keep(doc)
            return False
        if run:
            self.spawn(key)
        return True

    def done_after(self, key: str, step) -> None:
        """In the background: await `step` (what the effect does, done by its caller), then
        mark the effect done. Should either fail, the effect stays pending and runs again
        (harmlessly: effects are idempotent)."""
        self._track(asyncio.create_task(self._done_after(key, step)))

    async def _done_after(self, key: str, step) -> None:
        try:
            await step
            await self.db.outbox.update_one(
                {"_id": key, "state": "pending"},
                {"$set": {"state": "done", "done_at": self.clock.now(), "claimed_until": None}})
        except PyMongoError:
            log.warning("outbox: %s not marked done; it will run again", key, exc_info=True)

    async def _insert(self, doc: dict) -> bool:
        try:
            await self.db.outbox.insert_one(doc)
        except DuplicateKeyError:
            pass  # stored before (a retried request): the effect is the same one
        except PyMongoError:
            log.warning("outbox: %s not stored; keeping it to write later", doc["_id"],
                        exc_info=True)
            self._keep(doc)
            return False
        return True

    def _keep(self, doc: dict) -> None:
        self.unsaved.append(doc)
        if self.saver is None or self.saver.done():
            self.saver = asyncio.create_task(self._save_unsaved())

    async def _save_unsaved(self) -> None:
        delay = FIRST_BACKOFF
        while self.unsaved:
            doc = self.unsaved[0]
            try:
                if "$set" in doc:
                    await self.db.outbox.update_one({"_id": doc["_id"], "state": "pending"},
                                                    {"$set": doc["$set"]})
                else:
                    try:
                        await self.db.outbox.insert_one(doc)
                    except DuplicateKeyError:
                        pass
            except PyMongoError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            self.unsaved.pop(0)
            delay = FIRST_BACKOFF
            self.spawn(doc["_id"])

    def spawn(self, key: str) -> asyncio.Task:
        return self._track(asyncio.create_task(self.run(key)))

    def _track(self, task: asyncio.Task) -> asyncio.Task:
        self.running.add(task)
        task.add_done_callback(self.running.discard)
        return task

    async def run(self, key: str, now: datetime | None = None) -> bool:
        """Run one effect if it is pending, due and not claimed; True when it is done now.
        Store errors leave it for the worker (False)."""
        try:
            return await self._run(key, now or self.clock.now())
        except PyMongoError:
            log.warning("outbox: %s left for the worker (store error)", key, exc_info=True)
            return False

    async def _run(self, key: str, now: datetime) -> bool:
        doc = await self.db.outbox.find_one_and_update(
            {"_id": key, "state": "pending", "due": {"$lte": now},
             "$or": [{"claimed_until": None}, {"claimed_until": {"$lte": now}}]},
            {"$set": {"claimed_until": now + timedelta(seconds=CLAIM_SECONDS),
                      "claimed_by": self.instance}},
            return_document=ReturnDocument.AFTER)
        if doc is None:
            return False
        try:
            await self.handlers[doc["kind"]](key, doc["payload"])
        except Exception as exc:  # any failure: try again later; the effect is never dropped
            attempts = doc["attempts"] + 1
            log.warning("outbox: %s failed (attempt %d): %s", key, attempts, exc,
                        exc_info=not isinstance(exc, PyMongoError))
            await self.db.outbox.update_one(
                {"_id": key}, {"$set": {"attempts": attempts, "claimed_until": None,
                                        "last_error": f"{type(exc).__name__}: {exc}"[:500],
                                        "due": now + timedelta(seconds=backoff(attempts))}})
            return False
        await self.db.outbox.update_one(
            {"_id": key}, {"$set": {"state": "done", "done_at": self.clock.now(),
                                    "claimed_until": None}})
        return True

    async def drain(self, limit: int = BATCH) -> int:
        """One worker pass: run every effect due now (up to `limit`); returns how many ran."""
        now = self.clock.now()
        due = await self.db.outbox.find({"state": "pending", "due": {"$lte": now}},
                                        {"_id": 1}).sort("due", 1).limit(limit).to_list(None)
        # A few at a time: one slow effect (a bridge asked, a service timing out) must not
        # hold up the others.
        running = asyncio.Semaphore(CONCURRENCY)

        async def run(key: str) -> bool:
            async with running:
                return await self._run(key, now)
        return sum(await asyncio.gather(*(run(doc["_id"]) for doc in due)))

    async def pending(self) -> int:
        """Effects not yet done (stored), for operators and tests."""
        return await self.db.outbox.count_documents({"state": "pending"})

    async def count_pending(self) -> None:
        """Set the pending gauges from the store, for every kind with a handler here (one
        whose effects all ran reads 0; a kind no handler knows is counted as "other")."""
        rows = await (await self.db.outbox.aggregate([
            {"$match": {"state": "pending"}},
            {"$group": {"_id": "$kind", "n": {"$sum": 1}, "oldest": {"$min": "$created_at"}}},
        ])).to_list(None)
        now = self.clock.now()
        counts = {kind: [0, None] for kind in [*self.handlers, "other"]}
        for row in rows:
            count = counts[row["_id"] if row["_id"] in self.handlers else "other"]
            count[0] += row["n"]
            count[1] = row["oldest"] if count[1] is None else min(count[1], row["oldest"])
        for kind, (n, oldest) in counts.items():
            metrics.OUTBOX_PENDING.labels(kind).set(n)
            metrics.OUTBOX_OLDEST.labels(kind).set(
                0 if oldest is None else max(0.0, (now - oldest).total_seconds()))

    async def settled(self) -> None:
        """Wait for the runs this process started (tests, shutdown)."""
        while self.running:
            await asyncio.gather(*list(self.running), return_exceptions=True)

    async def close(self) -> None:
        await self.settled()
        if self.saver is not None:
            self.saver.cancel()
            await asyncio.gather(self.saver, return_exceptions=True)
            if self.unsaved:
                log.error("outbox: %d effects never stored (the store was down at shutdown): %s",
                          len(self.unsaved), [d["_id"] for d in self.unsaved])
