"""Room links ("bindings"): a resident asks to be linked to a room, someone approves.

States: pending → approved | rejected | cancelled; approved → revoked (moved out).
Staff with `bindings.decide` decide any request; an approved owner of the room
decides family and tenant requests for it. A tenant link lapses at its lease end
without anyone acting: `active` is computed at read time.
"""

import json
from datetime import datetime

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument

from models.access import Principal, permitted
from models.common import object_id
from models.errors import Conflict, Forbidden, Invalid, NotFound

INDEXES = {
    "room_links": [
        IndexModel([("resident_id", ASCENDING)]),
        IndexModel([("community_id", ASCENDING), ("state", ASCENDING), ("room_path", ASCENDING)]),
    ],
}

RELATIONS = ("owner", "family", "tenant")
# (from state, action) -> to state
TRANSITIONS = {
    ("pending", "approve"): "approved",
    ("pending", "reject"): "rejected",
    ("pending", "cancel"): "cancelled",
    ("approved", "revoke"): "revoked",
}
NEEDS_REASON = {"reject", "revoke"}
LINKS_CACHE_SECONDS = 300
UNREAD = object()


def links_key(resident_id: str) -> str:
    """The Redis key of a resident's cached links (auth reads it with the revocation flag)."""
    return f"links:{resident_id}"


def is_active(link: dict, now: datetime) -> bool:
    lease_end = link.get("lease_end")
    return link["state"] == "approved" and (lease_end is None or lease_end > now)


def public_link(doc: dict, now: datetime) -> dict:
    return {"id": str(doc["_id"]), "community_id": str(doc["community_id"]),
            "resident_id": str(doc["resident_id"]), "room_path": doc["room_path"],
            "relation": doc["relation"], "lease_end": doc.get("lease_end"), "state": doc["state"],
            "active": is_active(doc, now), "reason": doc.get("reason"),
            "history": doc.get("history", [])}


def roles_of(links: list[dict]) -> dict[str, frozenset[str]]:
    """Community id -> the resident's relations there, for the Principal."""
    roles: dict[str, set[str]] = {}
    for link in links:
        roles.setdefault(link["community_id"], set()).add(link["relation"])
    return {cid: frozenset(r) for cid, r in roles.items()}


def links_in(links, community_id: str) -> list[dict]:
    """Of a resident's active links (e.g. `principal.links`), those in one community."""
    return [link for link in links if link["community_id"] == community_id]


def rooms_in(links, community_id: str, relation: str | None = None) -> list[str]:
    """The rooms of those links (only where the resident is `relation`, when given)."""
    return sorted({link["room_path"] for link in links_in(links, community_id)
                   if relation is None or link["relation"] == relation})


def owned_rooms(principal: Principal, community_id: str) -> list[str]:
    """Rooms the resident owns there, from the links their token check already read."""
    return rooms_in(principal.links, community_id, "owner")


class BindingManager:
    def __init__(self, db, redis, clock, places):
        self.db = db
        self.redis = redis
        self.clock = clock
        self.places = places

    async def request(self, resident_id: str, community_id: str, room_path: str, relation: str,
                      lease_end: datetime | None, note: str = "") -> dict:
        await self.places.community(community_id)
        room = await self.places.room(community_id, room_path)
        if relation == "tenant" and lease_end is None:
            raise Invalid("a tenant link needs a lease end", fields={"lease_end": "required for tenants"})
        if lease_end is not None and lease_end <= self.clock.now():
            raise Invalid("lease already ended", fields={"lease_end": "must be in the future"})
        rid = object_id(resident_id, "resident")
        open_link = await self.db.room_links.find_one(
            {"resident_id": rid, "community_id": room["community_id"], "room_path": room_path,
             "state": {"$in": ["pending", "approved"]}})
        if open_link is not None:
            raise Conflict(f"you already have a {open_link['state']} link to this room",
                           fields={"room_path": open_link["state"]})
        now = self.clock.now()
        doc = {"community_id": room["community_id"], "resident_id": rid, "room_path": room_path,
               "relation": relation, "lease_end": lease_end, "state": "pending", "note": note,
               "requested_at": now,
               "history": [{"at": now, "by": resident_id, "action": "request", "reason": note}]}
        await self.db.room_links.insert_one(doc)
        return doc

    async def is_resident_of(self, resident_id: str, community_id: str) -> bool:
        """Whether the resident has an approved link to a room of the community."""
        return await self.db.room_links.find_one(
            {"resident_id": object_id(resident_id, "resident"),
             "community_id": ObjectId(community_id), "state": "approved"}) is not None

    async def of_resident(self, resident_id: str) -> list[dict]:
        return await self.db.room_links.find(
            {"resident_id": object_id(resident_id, "resident")}).sort(
            "requested_at", DESCENDING).to_list(None)

    async def visible_to(self, principal: Principal, community_id: str,
                         state: str | None = None) -> list[dict]:
        """Staff see the community's links; a resident sees the links of rooms they own."""
        query: dict = {"community_id": ObjectId(community_id)}
        if state:
            query["state"] = state
        if not principal.is_staff:
            query["room_path"] = {"$in": owned_rooms(principal, community_id)}
        return await self.db.room_links.find(query).sort("requested_at", DESCENDING).to_list(500)

    async def decide(self, principal: Principal, community_id: str, link_id: str, action: str,
                     reason: str = "") -> dict:
        link = await self.db.room_links.find_one(
            {"_id": object_id(link_id, "binding"), "community_id": ObjectId(community_id)})
        if link is None:
            raise NotFound("binding not found")
        if not await self._may_decide(principal, community_id, link):
            raise Forbidden("only staff or the room's owner can decide this")
        return await self._transition(link, action, principal.id, reason)

    async def cancel(self, resident_id: str, link_id: str) -> dict:
        """The resident withdraws their own request."""
        link = await self.db.room_links.find_one(
            {"_id": object_id(link_id, "binding"), "resident_id": ObjectId(resident_id)})
        if link is None:
            raise NotFound("binding not found")
        return await self._transition(link, "cancel", resident_id, "")

    async def _transition(self, link: dict, action: str, by: str, reason: str) -> dict:
        target = TRANSITIONS.get((link["state"], action))
        if target is None:
            allowed = sorted(a for (s, a) in TRANSITIONS if s == link["state"])
            raise Conflict(f"cannot {action} a {link['state']} binding",
                           extra={"allowed": allowed})
        if action in NEEDS_REASON and not reason.strip():
            raise Invalid("a reason is required", fields={"reason": "required"})
        entry = {"at": self.clock.now(), "by": by, "action": action, "reason": reason}
        # Conditional on the state we read: of two racing deciders, one wins, the other gets 409.
        updated = await self.db.room_links.find_one_and_update(
            {"_id": link["_id"], "state": link["state"]},
            {"$set": {"state": target, "reason": reason or None}, "$push": {"history": entry}},
            return_document=ReturnDocument.AFTER)
        if updated is None:
            raise Conflict("binding changed meanwhile; reload it")
        await self.forget(str(link["resident_id"]))
        return updated

    async def _may_decide(self, principal: Principal, community_id: str, link: dict) -> bool:
        if principal.is_staff:
            return permitted(principal, community_id, "bindings.decide")
        return link["relation"] != "owner" and \
            link["room_path"] in owned_rooms(principal, community_id)

    async def active_links(self, resident_id: str, cached: str | None | object = UNREAD) -> list[dict]:
        """The resident's active links, cached: this is on every resident request's path.
        `cached` is the cache entry when the caller has already read it (None: a miss)."""
        key = links_key(resident_id)
        if cached is UNREAD:
            cached = await self.redis.get(key)
        if cached is None:
            docs = await self.db.room_links.find(
                {"resident_id": object_id(resident_id, "resident"), "state": "approved"}).to_list(None)
            links = [{"community_id": str(d["community_id"]), "room_path": d["room_path"],
                      "relation": d["relation"],
                      "lease_end": d["lease_end"].timestamp() if d.get("lease_end") else None}
                     for d in docs]
            await self.redis.set(key, json.dumps(links), ex=LINKS_CACHE_SECONDS)
        else:
            links = json.loads(cached)
        now = self.clock.time()
        return [link for link in links if link["lease_end"] is None or link["lease_end"] > now]

    async def forget(self, resident_id: str) -> None:
        await self.redis.delete(links_key(resident_id))
