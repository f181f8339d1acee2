"""Residents (WeChat users) and staff (username + password, roles per community)."""

import asyncio
import re

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from bson import ObjectId
from pymongo import ASCENDING, IndexModel, ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError

from models.access import STAFF_ROLES, Principal, may_manage_account
from models.common import insert_new, object_id
from models.key_cache import CHANNEL as CHANGED_CHANNEL
from models.key_cache import announce, by_id
from models.errors import Conflict, Forbidden, Invalid, NotFound
from models.messages import Text

INDEXES = {
    "residents": [
        IndexModel([("openid", ASCENDING)], unique=True, sparse=True),
        IndexModel([("phone", ASCENDING)], unique=True, sparse=True),
    ],
    "staff": [IndexModel([("username", ASCENDING)], unique=True)],
}

USERNAME = re.compile(r"^[a-z0-9_.-]{3,32}$")
PASSWORD_MIN_LENGTH = 10
PHONE = re.compile(r"^1[3-9][0-9]{9}$")  # mainland mobile numbers

_hasher = PasswordHasher()  # argon2id with the library's current defaults
# Verifying a dummy hash for unknown users keeps login timing from revealing who exists.
_DUMMY_HASH = _hasher.hash("not a real password")


async def hash_password(password: str) -> str:
    # ~0.2 s of CPU: off the event loop so other requests keep flowing.
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(stored_hash: str | None, password: str) -> bool:
    try:
        return await asyncio.to_thread(_hasher.verify, stored_hash or _DUMMY_HASH, password) \
            and stored_hash is not None
    except VerificationError:
        return False


def public_resident(doc: dict, community_id: str) -> dict:
    """A resident as one community's office sees them: the name it gave them (another
    office's or the person's own are not its business), "invited" while they have not
    accepted any room there."""
    return {"id": str(doc["_id"]), "name": office_name(doc, community_id) or doc.get("name", ""),
            "phone": doc.get("phone"),
            "status": "invited" if doc.get("invited") else doc.get("status", "active")}


def office_name(doc: dict, community_id) -> str | None:
    """The name a community's import gave the person, if any."""
    cid = str(community_id)
    name = doc.get("office_names", {}).get(cid)
    if name is None and registered_by(doc) == cid:
        name = doc.get("name")
    return name


def registered_by(doc: dict) -> str | None:
    """The community whose import created this record (the first it was imported into)."""
    creator = doc.get("registered_by") or next(iter(doc.get("imported_into", [])), None)
    return creator and str(creator)


def public_staff(doc: dict, community_id: str) -> dict:
    """Staff as seen from one community: their roles elsewhere are not its business."""
    return {"id": str(doc["_id"]), "username": doc["username"], "name": doc.get("name", ""),
            "roles": sorted(doc.get("roles", {}).get(community_id, [])),
            "active": doc.get("active", True)}


def check_roles(roles: list[str]) -> None:
    unknown = sorted(set(roles) - set(STAFF_ROLES))
    if unknown or not roles:
        raise Invalid("unknown staff role",
                      fields={"roles": Text("choose from {choices}", choices=", ".join(STAFF_ROLES))})


class ResidentManager:
    def __init__(self, db, clock):
        self.db = db
        self.clock = clock

    async def from_wechat(self, openid: str, unionid: str | None, phone: str | None,
                          name: str = "") -> dict:
        """Find the resident behind a WeChat login, creating them (named `name`) on first login."""
        update: dict = {"$setOnInsert": {"openid": openid, "created_at": self.clock.now(),
                                         "status": "active", "name": name},
                        "$set": {"last_login_at": self.clock.now()}}
        if unionid:
            update["$set"]["unionid"] = unionid
        if phone:
            update["$set"]["phone"] = phone
        try:
            return await self.db.residents.find_one_and_update(
                {"openid": openid}, update, upsert=True, return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:
            raise Conflict("phone number belongs to another account",
                           fields={"phone_code": "phone already bound"}) from None

    async def claim_preregistered(self, openid: str, phone: str, move_links) -> str | None:
        """Give a WeChat user the pre-registered resident (bulk import) holding their phone.

        Returns the id whose room links changed (to drop their cache), or None.
        A first-time user takes the record over; a user who logged in before
        without a phone gets its links (`move_links(from, to)`, the binding manager's
        — it owns them), and the placeholder record goes.
        """
        pre = await self.db.residents.find_one({"phone": phone, "status": "pre-registered"})
        if pre is None:
            return None
        user = await self.db.residents.find_one({"openid": openid})
        if user is None:
            await self.db.residents.update_one(
                {"_id": pre["_id"], "status": "pre-registered"},
                {"$set": {"openid": openid, "status": "active", "claimed_at": self.clock.now()}})
            return str(pre["_id"])
        await move_links(pre["_id"], user["_id"])
        await self.db.residents.delete_one({"_id": pre["_id"]})
        # The offices' names for the person come along, except where the user has one.
        names = {f"office_names.{cid}": name for cid, name in pre.get("office_names", {}).items()
                 if cid not in user.get("office_names", {})}
        await self.db.residents.update_one(
            {"_id": user["_id"]},
            {"$set": {"name": user.get("name") or pre.get("name", ""), **names},
             "$addToSet": {"imported_into": {"$each": pre.get("imported_into", [])}}})
        return str(user["_id"])

    async def get(self, resident_id: str) -> dict:
        doc = await self.db.residents.find_one({"_id": object_id(resident_id, "resident")})
        if doc is None:
            raise NotFound("resident not found")
        return doc

    async def in_community(self, community_id: str, resident_id: str | None = None) -> list[dict]:
        """Residents with a room link (any state but rejected or declined) in the community;
        `invited` marks those who have only offers there."""
        query: dict = {"community_id": ObjectId(community_id),
                       "state": {"$nin": ["rejected", "declined"]}}
        if resident_id:
            query["resident_id"] = object_id(resident_id, "resident")
        ids = await self.db.room_links.distinct("resident_id", query)
        if resident_id and not ids:
            raise NotFound("resident not found")
        query["state"] = {"$nin": ["rejected", "declined", "offered"]}
        accepted = set(await self.db.room_links.distinct("resident_id", query))
        docs = await self.db.residents.find({"_id": {"$in": ids}}).sort("_id", ASCENDING).to_list(None)
        return [{**doc, "invited": doc["_id"] not in accepted} for doc in docs]

    # -- bulk import (models/importer.py): only this community's records change ----------

    async def known_to(self, community_id: ObjectId, also: set[ObjectId]) -> dict[str, dict]:
        """Phone -> record of everyone the community's imports know, and of residents `also`
        (those with rooms there already)."""
        fields = {"phone": 1, "name": 1, "office_names": 1, "registered_by": 1, "imported_into": 1}
        known = {d["phone"]: d for d in await self.db.residents.find(
            {"imported_into": community_id}, fields).to_list(None)}
        rest = also - {d["_id"] for d in known.values()}
        if rest:
            known.update({d["phone"]: d for d in await self.db.residents.find(
                {"_id": {"$in": list(rest)}, "phone": {"$ne": None}}, fields).to_list(None)})
        return known

    async def import_people(self, community_id: ObjectId, names: dict[str, str],
                            known: dict[str, dict]) -> dict[str, str | None]:
        """Give each phone this community's name: phone -> "created", "updated" or None.

        A phone the community did not know becomes a pre-registered record of its own
        (claimed at the person's first WeChat login with it). A person already on record
        elsewhere is left as they are: only this community's name for them is kept, and
        the outcome reads the same, so an import cannot tell who exists elsewhere.
        `known` (from `known_to`) is updated with what was written."""
        cid = str(community_id)
        now = self.clock.now()
        fresh = {phone: {"_id": ObjectId(), "phone": phone, "name": name,
                         "status": "pre-registered", "imported_into": [community_id],
                         "registered_by": community_id, "office_names": {cid: name},
                         "created_at": now}
                 for phone, name in names.items() if phone not in known}
        inserted = await insert_new(self.db.residents, list(fresh.values()))
        known.update({doc["phone"]: doc for doc in inserted})
        outcome: dict[str, str | None] = {doc["phone"]: "created" for doc in inserted}
        elsewhere = [phone for phone in fresh if phone not in outcome]
        changes = []
        for doc in await self.db.residents.find({"phone": {"$in": elsewhere}}).to_list(None):
            known[doc["phone"]] = doc
            outcome[doc["phone"]] = "created"
            changes.append(UpdateOne({"_id": doc["_id"]}, {
                "$addToSet": {"imported_into": community_id},
                "$set": {f"office_names.{cid}": names[doc["phone"]]}}))
            doc.setdefault("office_names", {})[cid] = names[doc["phone"]]
        for phone, name in names.items():
            doc = known[phone]
            if phone in outcome or office_name(doc, cid) == name:
                outcome.setdefault(phone, None)
                continue
            update = {f"office_names.{cid}": name}
            if registered_by(doc) == cid:
                update["name"] = name  # its own record: the name the person will take over
                doc["name"] = name
            changes.append(UpdateOne({"_id": doc["_id"]}, {"$set": update}))
            doc.setdefault("office_names", {})[cid] = name
            outcome[phone] = "updated"
        if changes:
            await self.db.residents.bulk_write(changes, ordered=False)
        return outcome


def sessions_key(staff_id: str) -> str:
    """Redis mirror of a staff member's access generation (see StaffManager)."""
    return f"staff_generation:{staff_id}"


# Raise the mirrored generation only: a slower, older change must not lower it.
_RAISE_GENERATION = """
if tonumber(redis.call('GET', KEYS[1]) or '-1') < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('PUBLISH', ARGV[2], KEYS[1])
end
"""


class StaffManager:
    """Staff accounts. Every change to what a member may do (roles, disabling) raises the
    account's `generation`; tokens carry the generation they were issued under, and
    models/auth.py refuses older ones, so the change ends the member's sessions at once.
    Accounts are read by id on every `/api/me` and in every page naming staff: those
    reads come from the process's copies (`keys`, models/key_cache.py), and every change to
    an account is announced, so every process reads it again at its next request."""

    def __init__(self, db, redis, clock, keys=None):
        self.db = db
        self.redis = redis
        self.clock = clock
        self.keys = keys
        self._raise_generation = redis.register_script(_RAISE_GENERATION)

    async def create(self, username: str, password: str, name: str,
                     roles: dict[str, list[str]], platform_admin: bool = False) -> dict:
        """A new account; `platform_admin` makes it the company's (an admin everywhere)."""
        if not USERNAME.match(username):
            raise Invalid("bad username", fields={"username": "3-32 of a-z 0-9 _ . -"})
        if len(password) < PASSWORD_MIN_LENGTH:
            raise Invalid("password too short",
                          fields={"password": Text("at least {count} characters", count=PASSWORD_MIN_LENGTH)})
        if not name:
            raise Invalid("a new account needs the person's name", fields={"name": "required"})
        for community_roles in roles.values():
            check_roles(community_roles)
        doc = {"username": username, "password_hash": await hash_password(password), "name": name,
               "roles": roles, "active": True, "generation": 0, "created_at": self.clock.now()}
        if platform_admin:
            doc["platform_admin"] = True
        try:
            await self.db.staff.insert_one(doc)
        except DuplicateKeyError:
            raise Conflict("username taken", fields={"username": "taken"}) from None
        return doc

    async def platform_admins(self) -> list[dict]:
        return await self.db.staff.find({"platform_admin": True}).to_list(None)

    async def add_to_community(self, community_id: str, username: str, roles: list[str]) -> dict:
        """Give an existing account roles in one more community (staff of several)."""
        check_roles(roles)
        doc = await self.db.staff.find_one_and_update(
            {"username": username, f"roles.{community_id}": {"$exists": False}},
            {"$set": {f"roles.{community_id}": roles}}, return_document=ReturnDocument.AFTER)
        if doc is None:
            if await self.db.staff.find_one({"username": username}) is None:
                raise NotFound("no such username", fields={"username": "no such account"})
            raise Conflict("already on this community's staff",
                           fields={"username": "already a member: change their roles instead"})
        await announce(self.redis, f"staff:{doc['_id']}", here=self.keys)
        return doc

    async def get(self, community_id: str, staff_id: str) -> dict:
        doc = await self.db.staff.find_one({"_id": object_id(staff_id, "staff member"),
                                            f"roles.{community_id}": {"$exists": True}})
        if doc is None:
            raise NotFound("staff member not found")
        return doc

    async def active_by_id(self, staff_id: str) -> dict | None:
        doc = (await by_id(self.keys, self.db.staff, [staff_id])).get(staff_id)
        return doc if doc and doc.get("active") else None

    async def active_member(self, community_id: str, staff_id: str) -> dict | None:
        """The member if their account is active and they have a role in the community."""
        return await self.db.staff.find_one(
            {"_id": object_id(staff_id, "staff member"), "active": True,
             f"roles.{community_id}": {"$exists": True}})

    async def names(self, ids) -> dict[str, str]:
        """Staff id -> name (the username when no name is set), for records that say who."""
        return {i: d.get("name") or d["username"]
                for i, d in (await by_id(self.keys, self.db.staff, ids)).items()}

    async def holding(self, community_id: str, role: str) -> list[str]:
        """Ids of the community's active members with `role`."""
        docs = await self.db.staff.find({f"roles.{community_id}": role, "active": True},
                                        {"_id": 1}).to_list(None)
        return [str(d["_id"]) for d in docs]

    async def by_username(self, username: str) -> dict | None:
        return await self.db.staff.find_one({"username": username, "active": True})

    async def in_community(self, community_id: str) -> list[dict]:
        return await self.db.staff.find({f"roles.{community_id}": {"$exists": True}}).sort(
            "username", ASCENDING).to_list(None)

    async def set_roles(self, community_id: str, staff_id: str, roles: list[str]) -> dict:
        """Change a community's staff member's roles there (an empty list removes them)."""
        if roles:
            check_roles(roles)
        member = await self.get(community_id, staff_id)
        if "admin" not in roles:
            await self._keep_an_admin(member, [community_id])
        update = ({"$set": {f"roles.{community_id}": roles}} if roles
                  else {"$unset": {f"roles.{community_id}": ""}})
        return await self._change_access(member["_id"], {f"roles.{community_id}": {"$exists": True}},
                                         update)

    async def set_active(self, principal: Principal, community_id: str, staff_id: str,
                         active: bool) -> dict:
        """Disable an account (every session ends, logins are refused) or enable it again.
        The account is the person's in every community, so only someone who administers
        all of those may do it."""
        member = await self.get(community_id, staff_id)
        if not may_manage_account(principal, member["roles"]):
            raise Forbidden("this member works in other communities too; "
                            "remove their roles here instead")
        if not active:
            if str(member["_id"]) == principal.id:
                raise Conflict("you cannot disable your own account", code="own_account")
            await self._keep_an_admin(member, list(member["roles"]))
        return await self._change_access(member["_id"], {}, {"$set": {"active": active}})

    async def _keep_an_admin(self, member: dict, community_ids: list[str]) -> None:
        for cid in community_ids:
            if "admin" not in member["roles"].get(cid, []):
                continue
            others = await self.db.staff.count_documents(
                {"_id": {"$ne": member["_id"]}, "active": True, f"roles.{cid}": "admin"})
            if not others:
                raise Conflict("a community needs an admin: make someone else admin first",
                               code="last_admin")

    async def seed_generations(self, pipe) -> None:
        """Queue the Redis mirror of every changed account's generation (it is durable here,
        on the account): a Redis that restarted empty still ends the sessions it ended."""
        async for doc in self.db.staff.find({"generation": {"$gt": 0}}, {"generation": 1}):
            await self._raise_generation(keys=[sessions_key(str(doc["_id"]))],
                                         args=[doc["generation"], CHANGED_CHANNEL], client=pipe)

    async def _change_access(self, staff_id: ObjectId, condition: dict, update: dict) -> dict:
        doc = await self.db.staff.find_one_and_update(
            {"_id": staff_id, **condition}, {**update, "$inc": {"generation": 1}},
            return_document=ReturnDocument.AFTER)
        if doc is None:
            raise NotFound("staff member not found")
        await self._raise_generation(keys=[sessions_key(str(staff_id))], args=[doc["generation"], CHANGED_CHANNEL])
        if self.keys is not None:
            self.keys.forget(sessions_key(str(staff_id)))  # the script announced it elsewhere
        await announce(self.redis, f"staff:{staff_id}", here=self.keys)
        return doc
