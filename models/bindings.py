"""Room links ("bindings"): a resident asks to be linked to a room, someone approves.

States: pending → approved | rejected | cancelled; approved → revoked (moved out).
Staff with `bindings.decide` decide any request; an approved owner of the room
decides family and tenant requests for it. A tenant link lapses at its lease end
without anyone acting: `active` is computed at read time.

An office's import offers a room to a person it does not know (who may be on
record elsewhere): offered → approved | declined, answered by that person only
(the same consent a self-registration gives); the office may revoke an offer.
"""

import json
from datetime import datetime

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument, UpdateOne

from models.access import Principal, permitted
from models.common import insert_new, object_id
from models.key_cache import delete_announced
from models.errors import Conflict, Forbidden, Invalid, NotFound
from models.messages import Text

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
    ("offered", "accept"): "approved",
    ("offered", "decline"): "declined",
    ("offered", "revoke"): "revoked",
}
DONE_WORDS = {"approve": "approved", "reject": "rejected", "cancel": "cancelled",
              "revoke": "revoked", "accept": "accepted", "decline": "declined"}
ANSWERS = {"accept", "decline"}  # the resident's own, never staff's
OPEN_STATES = ("pending", "approved", "offered")
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
    def __init__(self, db, redis, clock, places, keys):
        self.db = db
        self.redis = redis
        self.keys = keys
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
             "state": {"$in": list(OPEN_STATES)}})
        if open_link is not None:
            raise Conflict(Text("you already have a {state} link to this room", state=open_link["state"]),
                           fields={"room_path": open_link["state"]})
        doc = self.link_doc(room["community_id"], rid, room_path, relation, lease_end, "pending",
                            note, by=resident_id, action="request")
        await self.db.room_links.insert_one(doc)
        return doc

    def link_doc(self, community_id: ObjectId, resident_id: ObjectId, room_path: str,
                 relation: str, lease_end: datetime | None, state: str, note: str, *, by: str,
                 action: str, reason: str | None = None) -> dict:
        """A new link's document: the one shape of a room link."""
        now = self.clock.now()
        return {"_id": ObjectId(), "community_id": community_id, "resident_id": resident_id,
                "room_path": room_path, "relation": relation, "lease_end": lease_end,
                "state": state, "note": note, "requested_at": now,
                "history": [{"at": now, "by": by, "action": action,
                             "reason": note if reason is None else reason}]}

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

    async def occupants(self, community_id: str) -> list[dict]:
        """The community's active links, room by room: who lives where now."""
        docs = await self.db.room_links.find(
            {"community_id": ObjectId(community_id), "state": "approved"}).sort(
            [("room_path", ASCENDING), ("relation", ASCENDING)]).to_list(None)
        now = self.clock.now()
        return [d for d in docs if is_active(d, now)]

    async def decide(self, principal: Principal, community_id: str, link_id: str, action: str,
                     reason: str = "") -> dict:
        link = await self.db.room_links.find_one(
            {"_id": object_id(link_id, "binding"), "community_id": ObjectId(community_id)})
        if link is None:
            raise NotFound("binding not found")
        if action in ANSWERS or not await self._may_decide(principal, community_id, link):
            raise Forbidden("only staff or the room's owner can decide this")
        return await self._transition(link, action, principal.id, reason)

    async def cancel(self, resident_id: str, link_id: str) -> dict:
        """The resident withdraws their own request."""
        return await self._transition(await self._own(resident_id, link_id), "cancel",
                                      resident_id, "")

    async def answer(self, resident_id: str, link_id: str, accept: bool) -> dict:
        """The resident accepts or declines a room an office's import offered them."""
        return await self._transition(await self._own(resident_id, link_id),
                                      "accept" if accept else "decline", resident_id, "")

    async def _own(self, resident_id: str, link_id: str) -> dict:
        link = await self.db.room_links.find_one(
            {"_id": object_id(link_id, "binding"), "resident_id": ObjectId(resident_id)})
        if link is None:
            raise NotFound("binding not found")
        return link

    async def _transition(self, link: dict, action: str, by: str, reason: str) -> dict:
        target = TRANSITIONS.get((link["state"], action))
        if target is None:
            allowed = sorted(a for (s, a) in TRANSITIONS if s == link["state"])
            raise Conflict(Text("a binding that is {state} cannot be {done}", state=link["state"],
                                done=DONE_WORDS[action]),
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
            [cached] = await self.keys.mget(key)
        if cached is None:
            seen = self.keys.changes  # a change announced after this may not be in what we read
            docs = await self.db.room_links.find(
                {"resident_id": object_id(resident_id, "resident"), "state": "approved"}).to_list(None)
            links = [{"community_id": str(d["community_id"]), "room_path": d["room_path"],
                      "relation": d["relation"],
                      "lease_end": d["lease_end"].timestamp() if d.get("lease_end") else None}
                     for d in docs]
            cached = json.dumps(links)
            await self.redis.set(key, cached, ex=LINKS_CACHE_SECONDS)
            self.keys.remember({key: cached}, seen)
        else:
            links = json.loads(cached)
        now = self.clock.time()
        return [link for link in links if link["lease_end"] is None or link["lease_end"] > now]

    async def move_links(self, from_id: ObjectId, to_id: ObjectId) -> None:
        """A pre-registered placeholder's links become those of the person who claimed it."""
        await self.db.room_links.update_many({"resident_id": from_id},
                                             {"$set": {"resident_id": to_id}})

    # -- bulk import (models/importer.py) --------------------------------------------------

    async def open_links(self, community_id: ObjectId) -> dict[tuple, dict]:
        """(resident id, room path) -> the community's pending, approved or offered link."""
        return {(d["resident_id"], d["room_path"]): d for d in await self.db.room_links.find(
            {"community_id": community_id, "state": {"$in": list(OPEN_STATES)}},
            {"resident_id": 1, "room_path": 1, "relation": 1, "lease_end": 1,
             "state": 1}).to_list(None)}

    async def import_links(self, community_id: ObjectId, wanted: list[tuple],
                           links: dict[tuple, dict], by: str) -> list[str | None]:
        """Make each (resident id, room path, relation, lease end, consented) true; the
        outcome of each: "created", "updated" or None.

        A person who has not consented to this community (none of its rooms, not its own
        pre-registration) is offered the room instead of linked. An open link takes the
        file's relation and lease; a pending request it confirms is approved, an offer stays
        one. `links` (from `open_links`) is updated with what was written."""
        history = {"at": self.clock.now(), "by": by, "action": "import", "reason": "bulk import"}
        new, changes, outcomes, touched = [], [], [], set()
        for resident_id, room_path, relation, lease_end, consented in wanted:
            link = links.get((resident_id, room_path))
            if link is None:
                state = "approved" if consented else "offered"
                links[(resident_id, room_path)] = doc = self.link_doc(
                    community_id, resident_id, room_path, relation, lease_end, state, "imported",
                    by=by, action="import", reason="bulk import")
                new.append(doc)
                outcomes.append("created")
            else:
                target = {"relation": relation, "lease_end": lease_end,
                          "state": "offered" if link["state"] == "offered" else "approved"}
                if all(link.get(k) == v for k, v in target.items()):
                    outcomes.append(None)
                    continue
                # Conditional on the state read: a decision made meanwhile wins over the file.
                changes.append(UpdateOne({"_id": link["_id"], "state": link["state"]},
                                         {"$set": target, "$push": {"history": history}}))
                link.update(target)
                outcomes.append("updated")
            touched.add(str(resident_id))
        await insert_new(self.db.room_links, new)
        if changes:
            await self.db.room_links.bulk_write(changes, ordered=False)
        for resident_id in touched:
            await self.forget(resident_id)
        return outcomes

    async def forget(self, resident_id: str) -> None:
        await delete_announced(self.redis, links_key(resident_id), here=self.keys)
