"""Telling people about tickets: the staff live feed, residents' messages and WeChat.

Staff feed: every event is appended to a Redis stream per community (so a client
that reconnects can resume after the last id it saw) and published on a Redis
channel of the same name (so every server process can push it to its own
WebSocket clients at once). Events addressed to some staff (`to`, e.g. an SLA
escalation for managers) are delivered only to them.

Residents: an in-app message list is always written. WeChat subscribe messages
are one-time: each "accept" in the mini-program allows one send, so the credits
the client reports are counted per resident, template and ticket (or for any
ticket), one is spent per send, and WeChat's 43101 ("no subscription") means
there was none after all.

A subscribe message is sent at most once per key (the outbox effect's key, and the
recipient's where one effect tells many): `wechat_sends` records the attempt before WeChat
is asked and its outcome after (docs/wechat.md, "Sent once").
"""

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from models.common import object_id
from models.errors import DomainError, NotFound
from models.places import community_zone
from server import metrics
from server.stores import connect_redis_pubsub

log = logging.getLogger("xiaoqu.notifications")

INDEXES = {
    "messages": [IndexModel([("resident_id", ASCENDING), ("at", DESCENDING)]),
                 IndexModel([("key", ASCENDING)], unique=True, sparse=True)],
    "subscribe_credits": [IndexModel([("resident_id", ASCENDING)])],
}

FEED_KEEP = 5000  # events kept per community stream for resuming
NO_CREDIT = 43101
ANY_TICKET = "*"
SUBSCRIBE_TIMEOUT = 5.0


def feed_channel(community_id: str) -> str:
    return f"feed:{community_id}"


def device_channel(staff_id: str, device: str) -> str:
    return f"feed-device:{staff_id}:{device}"


def stream_id_key(stream_id: str) -> tuple[int, int]:
    """Stream ids ("<ms>-<seq>") in their order."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def errcode(exc: BaseException) -> int | None:
    """WeChat's errcode behind an error from the WeChat client (its WeChatError is the cause)."""
    for candidate in (exc, exc.__cause__):
        if isinstance(getattr(candidate, "errcode", None), int):
            return candidate.errcode
    return None


def _iso(value):
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def public_message(doc: dict) -> dict:
    return {"id": str(doc["_id"]), "community_id": str(doc["community_id"]),
            "ticket_id": str(doc["ticket_id"]), "kind": doc["kind"], "text": doc["text"],
            "at": doc["at"], "read": doc["read"], "wechat": doc.get("wechat")}


class Notifier:
    def __init__(self, db, redis, clock, wechat, residents, places, ticket_template: str,
                 page: str = "pages/tickets/detail"):
        self.db = db
        self.redis = redis
        self.clock = clock
        self.wechat = wechat
        self.residents = residents
        self.places = places
        self.template = ticket_template
        self.page = page

    # -- staff feed -------------------------------------------------------------

    async def community_event(self, community_id: str, kind: str, to: list[str] | None = None,
                              **details) -> str:
        """Publish an event on the community's staff feed (kept in its stream for resuming)."""
        event = {"type": kind, "at": self.clock.now().isoformat(), "to": to, **details}
        stream = feed_channel(community_id)
        event_id = await self.redis.xadd(stream, {"event": json.dumps(event, ensure_ascii=False,
                                                                      default=_iso)},
                                         maxlen=FEED_KEEP, approximate=True)
        await self.redis.publish(stream, json.dumps({"id": event_id, **event}, ensure_ascii=False,
                                                    default=_iso))
        metrics.NOTIFICATIONS.labels("staff_feed", "sent").inc()
        return event_id

    async def feed_since(self, community_id: str, last_id: str, count: int = 500) -> list[dict]:
        """Events after `last_id` (exclusive), oldest first."""
        entries = await self.redis.xrange(feed_channel(community_id), min=f"({last_id}",
                                          count=count)
        return [{"id": entry_id, **json.loads(fields["event"])} for entry_id, fields in entries]

    # -- residents --------------------------------------------------------------

    async def tell_resident(self, key: str, ticket: dict, kind: str, text: str) -> None:
        """In-app message always; a WeChat subscribe message when a credit allows one. Once
        per `key` (the outbox effect's): a retry writes no second message and sends no
        second WeChat message."""
        now = self.clock.now()
        doc = {"key": key, "resident_id": ticket["resident_id"],
               "community_id": ticket["community_id"], "ticket_id": ticket["_id"], "kind": kind,
               "text": text, "at": now, "read": False, "wechat": None}
        try:
            await self.db.messages.insert_one(doc)
            metrics.NOTIFICATIONS.labels("in_app", "sent").inc()
        except DuplicateKeyError:  # written by an earlier try of this effect
            doc = await self.db.messages.find_one({"key": key})
        if doc["wechat"] is not None:
            return
        zone = community_zone(await self.places.community(str(ticket["community_id"])))
        data = {"character_string1": str(ticket["_id"])[-8:], "phrase2": kind,
                "thing3": text[:20], "time4": doc["at"].astimezone(zone).strftime("%Y-%m-%d %H:%M")}
        outcome = await self.send_subscribe(key, ticket["resident_id"], self.template,
                                            (str(ticket["_id"]), ANY_TICKET), data,
                                            f"{self.page}?id={ticket['_id']}")
        await self.db.messages.update_one({"_id": doc["_id"]}, {"$set": {"wechat": outcome}})

    async def send_subscribe(self, key: str, resident_id: ObjectId, template: str,
                             scopes: tuple[str, ...], data: dict, page: str) -> str:
        """Send one subscribe message for `key`, spending a credit (the first scope that has
        one), at most once: the outcome ("sent", "no_credit", "no_openid", "failed", or
        "unknown") is recorded under the key, and a key asked again answers it unsent.

        The attempt is written before WeChat is asked ("sending") and its outcome after. A
        key found "sending" is one whose earlier try died while WeChat was asked: WeChat's
        send has no idempotency key, so it may have been delivered, and it is settled
        "unknown" rather than sent again (the in-app message tells the resident either way)."""
        send = await self.db.wechat_sends.find_one_and_update(
            {"_id": key}, {"$setOnInsert": {"state": "claimed", "resident_id": resident_id,
                                            "template": template, "at": self.clock.now()}},
            upsert=True, return_document=ReturnDocument.AFTER)
        if send["state"] == "sending":
            return await self._settle(key, "sending", "unknown")
        if send["state"] != "claimed":
            return send["state"]
        # Claimed, WeChat not asked yet: a try that died here left nothing to repeat.
        resident = await self.db.residents.find_one({"_id": resident_id})
        if not resident or not resident.get("openid"):
            return await self._settle(key, "claimed", "no_openid")
        credit = None
        for scope in scopes:
            credit = await self.db.subscribe_credits.find_one_and_update(
                {"_id": f"{resident_id}:{template}:{scope}", "count": {"$gt": 0}},
                {"$inc": {"count": -1}}, return_document=ReturnDocument.AFTER)
            if credit is not None:
                break
        if credit is None:
            return await self._settle(key, "claimed", "no_credit")
        began = await self.db.wechat_sends.update_one(
            {"_id": key, "state": "claimed"}, {"$set": {"state": "sending", "credit": credit["_id"]}})
        if not began.modified_count:  # another runner of this key began first: it sends
            await self._return_credit(credit["_id"])
            return (await self.db.wechat_sends.find_one({"_id": key}))["state"]
        try:
            await self.wechat.send_subscribe_message(resident["openid"], template, data, page=page)
        except DomainError as exc:
            if errcode(exc) == NO_CREDIT:
                # WeChat says the user has none: our count was stale, forget it.
                await self.db.subscribe_credits.update_one({"_id": credit["_id"]},
                                                           {"$set": {"count": 0}})
                return await self._settle(key, "sending", "no_credit")
            # Not delivered for another reason: the credit is still the user's.
            await self._return_credit(credit["_id"])
            log.warning("WeChat subscribe message not sent: %s", exc.message)
            return await self._settle(key, "sending", "failed")
        return await self._settle(key, "sending", "sent")

    async def _settle(self, key: str, state: str, outcome: str) -> str:
        await self.db.wechat_sends.update_one(
            {"_id": key, "state": state}, {"$set": {"state": outcome, "settled_at": self.clock.now()}})
        metrics.NOTIFICATIONS.labels("wechat", outcome).inc()
        return outcome

    async def _return_credit(self, credit_id: str) -> None:
        await self.db.subscribe_credits.update_one({"_id": credit_id}, {"$inc": {"count": 1}})

    async def credited(self, template: str, resident_ids: list[ObjectId]) -> list[ObjectId]:
        """Those of `resident_ids` holding a credit for `template` (any scope)."""
        docs = await self.db.subscribe_credits.find(
            {"resident_id": {"$in": resident_ids}, "count": {"$gt": 0}},
            {"resident_id": 1}).to_list(None)
        return sorted({d["resident_id"] for d in docs
                       if d["_id"].startswith(f"{d['resident_id']}:{template}:")})

    async def add_credits(self, resident_id: str, ticket_id: str | None,
                          results: dict[str, str]) -> dict[str, int]:
        """Record wx.requestSubscribeMessage results: one credit per accepted template."""
        scope = ticket_id or ANY_TICKET
        counts = {}
        for template, result in results.items():
            key = f"{resident_id}:{template}:{scope}"
            if result == "accept":
                doc = await self.db.subscribe_credits.find_one_and_update(
                    {"_id": key}, {"$inc": {"count": 1},
                                   "$setOnInsert": {"resident_id": ObjectId(resident_id)}},
                    upsert=True, return_document=ReturnDocument.AFTER)
            else:
                doc = await self.db.subscribe_credits.find_one({"_id": key})
            counts[template] = doc["count"] if doc else 0
        return counts

    async def messages(self, resident_id: str, limit: int = 50) -> list[dict]:
        return await self.db.messages.find({"resident_id": object_id(resident_id, "resident")}).sort(
            [("at", DESCENDING), ("_id", DESCENDING)]).limit(limit).to_list(None)

    async def mark_read(self, resident_id: str, message_id: str) -> dict:
        doc = await self.db.messages.find_one_and_update(
            {"_id": object_id(message_id, "message"), "resident_id": ObjectId(resident_id)},
            {"$set": {"read": True}}, return_document=ReturnDocument.AFTER)
        if doc is None:
            raise NotFound("message not found")
        return doc


Listener = Callable[[str, str], Awaitable[None] | None]


class FeedHub:
    """One Redis pub/sub connection per process, fanned out to local listeners.

    `join` returns once Redis has confirmed the subscription, so whatever is
    published afterwards reaches the listener: callers subscribe first, then
    read the backlog from the stream, and drop duplicates by id.
    """

    def __init__(self, redis_url: str):
        self.redis_url = redis_url
        self.client = None
        self.pubsub = None
        self.reader: asyncio.Task | None = None
        self.listeners: dict[str, set[Listener]] = defaultdict(set)
        self.confirmed: dict[str, asyncio.Event] = {}

    async def join(self, channel: str, listener: Listener) -> None:
        if self.pubsub is None:
            self.client = connect_redis_pubsub(self.redis_url)
            self.pubsub = self.client.pubsub()
        first = not self.listeners[channel]
        self.listeners[channel].add(listener)
        if first:
            self.confirmed[channel] = asyncio.Event()
            await self.pubsub.subscribe(channel)
            if self.reader is None:
                self.reader = asyncio.create_task(self._read())
        await asyncio.wait_for(self.confirmed[channel].wait(), SUBSCRIBE_TIMEOUT)

    async def leave(self, channel: str, listener: Listener) -> None:
        listeners = self.listeners.get(channel)
        if listeners is None:
            return
        listeners.discard(listener)
        if not listeners:
            del self.listeners[channel]
            self.confirmed.pop(channel, None)
            with contextlib.suppress(Exception):  # the connection may already be gone
                await self.pubsub.unsubscribe(channel)

    async def _read(self) -> None:
        while True:
            try:
                message = await self.pubsub.get_message(timeout=None)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("feed subscriber lost its Redis connection; dropping live listeners")
                await self._lost()
                return
            if message is None:
                continue
            channel = message["channel"]
            if message["type"] == "subscribe" and channel in self.confirmed:
                self.confirmed[channel].set()
            elif message["type"] == "message":
                for listener in list(self.listeners.get(channel, ())):
                    result = listener(channel, message["data"])
                    if asyncio.iscoroutine(result):
                        await result

    async def _lost(self) -> None:
        """Tell every listener (data None) and start afresh at the next join.

        Events published meanwhile are in the stream, so a client that
        reconnects with its last id misses nothing.
        """
        listeners = [(channel, listener) for channel, group in self.listeners.items()
                     for listener in group]
        self.listeners.clear()
        self.confirmed.clear()
        pubsub, client = self.pubsub, self.client
        self.pubsub = self.client = self.reader = None
        for channel, listener in listeners:
            listener(channel, None)
        with contextlib.suppress(Exception):
            await pubsub.aclose()
            await client.aclose()

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
        if self.pubsub is not None:
            await self.pubsub.aclose()
            await self.client.aclose()
