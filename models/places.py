"""Communities and their places (building → unit → room) and gates.

A place is known by its `path` inside its community: building "3", unit "3-2",
room "3-2-1201" — segments of 1-8 letters or digits joined by "-". Room numbers
keep the form they are given in ("0101" and "101" are different rooms), so a
community writes them zero-padded to one width (floor + room on the floor,
"0101" … "1702"): paths then sort in building order. A gate `covers` place
paths ("" = the whole community).

Uniqueness keys are single strings ("<community>:<path>") so one string index
enforces them (compound unique indexes are slow on the embedded server and a
single key works the same on MongoDB).
"""

import re
from zoneinfo import ZoneInfo

from bson import ObjectId
from pymongo import ASCENDING, IndexModel, ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError

from gate_bridge.decision import DEFAULT_TIME_ZONE, zone_info
from models.common import insert_new, object_id
from models.errors import Conflict, Invalid, NotFound
from models.key_cache import announce, by_id
from models.messages import Text, in_lang

INDEXES = {
    "communities": [IndexModel([("code", ASCENDING)], unique=True)],
    "places": [
        IndexModel([("key", ASCENDING)], unique=True),
        IndexModel([("community_id", ASCENDING), ("kind", ASCENDING), ("path", ASCENDING)]),
    ],
    "gates": [
        IndexModel([("key", ASCENDING)], unique=True),
        IndexModel([("community_id", ASCENDING)]),
    ],
}

PLACE_KINDS = ("building", "unit", "room")
PATH_FORMAT = ('"<building>-<unit>-<room>": building "3", unit "3-2", room "3-2-1201"; '
               "1-8 letters or digits each, room numbers zero-padded to one width (0101, 1201)")
COMMUNITY_CODE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
# Per-community overrides of deployment settings (models/passes.py reads them).
COMMUNITY_SETTINGS = ("pass_code_seconds", "invitation_max_days", "worker_pass_max_days",
                      "staff_gate_roles", "decoration_days")
COMMUNITY_FIELDS = ("name", "address", "time_zone")
SEGMENT = re.compile(r"^[0-9A-Za-z]{1,8}$")
GATE_KINDS = ("pedestrian", "unit_door", "barrier")
# How a place path reads to people: "1-2-1201" -> 1栋2单元1201室 / Bldg 1, Unit 2, Room 1201.
# Each (Chinese, English), the form of the server's word tables (models/messages.in_lang).
PLACE_LABELS = (("{}栋", "Bldg {}"), ("{}单元", "Unit {}"), ("{}室", "Room {}"))
PLACE_LABEL_JOIN = ("", ", ")
WHOLE_COMMUNITY = ("全小区", "whole community")


def split_path(path: str) -> list[str]:
    return path.split("-") if path else []


def place_kind(path: str) -> str:
    """Depth gives the kind: 1 segment = building, 2 = unit, 3 = room."""
    parts = split_path(path)
    if not 1 <= len(parts) <= 3 or not all(SEGMENT.match(p) for p in parts):
        raise Invalid("bad place path", fields={"path": "expected like 3, 3-2 or 3-2-1201"})
    return PLACE_KINDS[len(parts) - 1]


def child_kind(path: str) -> str:
    """The kind of the places directly below `path` ("" = the community: buildings)."""
    depth = len(split_path(path))
    if depth >= len(PLACE_KINDS):
        raise Invalid("rooms have nothing below them", fields={"under": "a building or unit path"})
    if path:
        place_kind(path)  # refuses a malformed path
    return PLACE_KINDS[depth]


def check_time_zone(name: str) -> None:
    try:
        zone_info(name)
    except ValueError:
        raise Invalid("unknown time zone", fields={"time_zone": "an IANA name like Asia/Shanghai"}) \
            from None


def community_zone(community: dict) -> ZoneInfo:
    """The community's clock: its time zone (China's when none was set). Every local-time
    rule reads it: gate hours and pass windows (gate_bridge.decision), KPI periods, lease
    ends in imports, times in exports and messages."""
    return zone_info(community_time_zone(community))


def community_time_zone(community: dict) -> str:
    return community.get("time_zone") or DEFAULT_TIME_ZONE


def place_label(path: str, lang: str = "zh") -> str:
    """The words for a place path (the one place this is done): "1-2-1201" -> 1栋2单元1201室.
    A path that is not building-unit-room shaped is shown as it is."""
    parts = split_path(path)
    if not parts:
        return in_lang(WHOLE_COMMUNITY, lang)
    if len(parts) > 3 or not all(SEGMENT.match(p) for p in parts):
        return path
    return in_lang(PLACE_LABEL_JOIN, lang).join(
        in_lang(label, lang).format(part) for label, part in zip(PLACE_LABELS, parts))


def public_community(doc: dict) -> dict:
    return {"id": str(doc["_id"]), "name": doc["name"], "code": doc["code"],
            "address": doc.get("address", ""),
            "time_zone": community_time_zone(doc),
            "settings": doc.get("settings", {})}


def public_place(doc: dict) -> dict:
    return {"id": str(doc["_id"]), "community_id": str(doc["community_id"]), "kind": doc["kind"],
            "path": doc["path"], "name": doc.get("name", doc["path"]), "area_m2": doc.get("area_m2")}


def public_gate(doc: dict) -> dict:
    return {"id": str(doc["_id"]), "community_id": str(doc["community_id"]), "code": doc["code"],
            "name": doc["name"], "kind": doc["kind"], "covers": doc["covers"],
            "bridge_id": doc.get("bridge_id")}


class PlaceManager:
    """Communities, places and gates. Every request reads its communities and the gates it
    names: those documents are copied in the process (`keys`, models/key_cache.py) and each
    change to one is announced, so every process sees it on its next request."""

    def __init__(self, db, clock, keys=None):
        self.db = db
        self.clock = clock
        self.keys = keys

    async def _announce(self, *keys: str) -> None:
        if self.keys is not None and keys:
            await announce(self.keys.redis, *keys, here=self.keys)

    async def _copies(self, collection: str, ids) -> dict[str, dict]:
        return await by_id(self.keys, self.db[collection], ids)

    async def create_community(self, name: str, code: str, address: str = "",
                               settings: dict | None = None,
                               time_zone: str = DEFAULT_TIME_ZONE) -> dict:
        """A new community; `code` is its permanent short name (operator tools use it)."""
        if not COMMUNITY_CODE.match(code):
            raise Invalid("bad community code",
                          fields={"code": "1-32 of a-z 0-9 -, starting with a letter or digit"})
        check_time_zone(time_zone)
        settings = {k: v for k, v in (settings or {}).items() if v is not None}
        self._check_settings(settings)
        doc = {"name": name, "code": code, "address": address, "time_zone": time_zone,
               "settings": settings, "created_at": self.clock.now()}
        try:
            await self.db.communities.insert_one(doc)
        except DuplicateKeyError:
            raise Conflict(Text("community code {code} exists", code=repr(code)),
                           fields={"code": "taken"}) from None
        return doc

    async def update_community(self, community_id: str, changes: dict,
                               settings: dict | None = None) -> dict:
        """Change name, address or time zone, and settings (a None value drops an override,
        so the deployment's default applies again). The code never changes."""
        unknown = set(changes) - set(COMMUNITY_FIELDS)
        if unknown:
            raise Invalid("not editable", fields={k: "cannot be changed" for k in sorted(unknown)})
        if "time_zone" in changes:
            check_time_zone(changes["time_zone"])
        settings = settings or {}
        self._check_settings(settings)
        update: dict = {"$set": {**changes, "updated_at": self.clock.now(),
                                 **{f"settings.{k}": v for k, v in settings.items()
                                    if v is not None}}}
        if dropped := {f"settings.{k}": "" for k, v in settings.items() if v is None}:
            update["$unset"] = dropped
        doc = await self.db.communities.find_one_and_update(
            {"_id": object_id(community_id, "community")}, update,
            return_document=ReturnDocument.AFTER)
        if doc is None:
            raise NotFound("community not found")
        await self._announce(f"communities:{doc['_id']}")
        return doc

    @staticmethod
    def _check_settings(settings: dict) -> None:
        if unknown := sorted(set(settings) - set(COMMUNITY_SETTINGS)):
            raise Invalid("unknown setting", fields={f"settings.{k}": "unknown" for k in unknown})

    async def community(self, community_id: str) -> dict:
        cid = str(object_id(community_id, "community"))
        doc = (await self._copies("communities", [cid])).get(cid)
        if doc is None:
            raise NotFound("community not found")
        return doc

    async def communities(self, ids: set[str] | None = None) -> list[dict]:
        """These communities (all of them when None: a platform admin's, read each time) by name."""
        if ids is None:
            return await self.db.communities.find({}).sort("name", ASCENDING).to_list(None)
        return sorted((await self._copies("communities", ids)).values(), key=lambda c: c["name"])

    def place_doc(self, community_id: ObjectId, path: str, name: str | None = None,
                  area_m2: float | None = None) -> dict:
        """A new place's document (checked path, uniqueness key): the one shape of a place."""
        return {"_id": ObjectId(), "community_id": community_id, "key": f"{community_id}:{path}",
                "kind": place_kind(path), "path": path, "name": name or path,
                "area_m2": area_m2, "created_at": self.clock.now()}

    async def create_place(self, community_id: str, path: str, name: str | None = None,
                           area_m2: float | None = None) -> dict:
        doc = self.place_doc(ObjectId(community_id), path, name, area_m2)
        parent = "-".join(split_path(path)[:-1])
        if parent and not await self.place_by_path(community_id, parent):
            raise Invalid("parent place does not exist", fields={"path": Text("no place {path}", path=repr(parent))})
        try:
            await self.db.places.insert_one(doc)
        except DuplicateKeyError:
            raise Conflict(Text("place {path} exists", path=repr(path)), fields={"path": "taken"}) from None
        return doc

    # -- bulk import (models/importer.py) ------------------------------------------------

    async def by_path(self, community_id: ObjectId) -> dict[str, dict]:
        """Path -> place of the whole community (its key and area), for one import run."""
        return {d["path"]: d for d in await self.db.places.find(
            {"community_id": community_id}, {"path": 1, "key": 1, "area_m2": 1}).to_list(None)}

    async def add_places(self, docs: list[dict]) -> None:
        """Insert `place_doc`s; one another writer added meanwhile exists, as wanted."""
        await insert_new(self.db.places, docs)

    async def set_areas(self, areas: dict[str, float]) -> None:
        """Place key -> its new floor area."""
        if areas:
            now = self.clock.now()
            await self.db.places.bulk_write(
                [UpdateOne({"key": key}, {"$set": {"area_m2": area, "updated_at": now}})
                 for key, area in areas.items()], ordered=False)

    async def place(self, community_id: str, place_id: str) -> dict:
        doc = await self.db.places.find_one(
            {"_id": object_id(place_id, "place"), "community_id": ObjectId(community_id)})
        if doc is None:
            raise NotFound("place not found")
        return doc

    async def update_place(self, community_id: str, place_id: str, changes: dict) -> dict:
        """Rename a place or set its area; its path (what links and gates refer to) stays."""
        if unknown := sorted(set(changes) - {"name", "area_m2"}):
            raise Invalid("not editable", fields={k: "cannot be changed" for k in unknown})
        doc = await self.db.places.find_one_and_update(
            {"_id": object_id(place_id, "place"), "community_id": ObjectId(community_id)},
            {"$set": {**changes, "updated_at": self.clock.now()}},
            return_document=ReturnDocument.AFTER)
        if doc is None:
            raise NotFound("place not found")
        return doc

    async def place_by_path(self, community_id: str, path: str) -> dict | None:
        return await self.db.places.find_one({"key": f"{community_id}:{path}"})

    async def room(self, community_id: str, path: str) -> dict:
        """The room at `path`, or a 400 naming `room_path` (it is what callers were sent)."""
        room = await self.place_by_path(community_id, path)
        if room is None or room["kind"] != "room":
            raise Invalid("no such room", fields={"room_path": Text("no room {path}", path=repr(path))})
        return room

    async def places(self, community_id: str, kind: str | None = None, under: str | None = None,
                     limit: int = 500) -> list[dict]:
        query: dict = {"community_id": ObjectId(community_id)}
        if kind:
            query["kind"] = kind
        if under:
            query["path"] = {"$regex": f"^{re.escape(under)}-"}
        return await self.db.places.find(query).sort("path", ASCENDING).limit(limit).to_list(None)

    async def create_gate(self, community_id: str, code: str, name: str, kind: str,
                          covers_paths: list[str]) -> dict:
        await self._check_covers(community_id, covers_paths)
        doc = self._gate_doc(community_id, code, name, kind, covers_paths)
        try:
            await self.db.gates.insert_one(doc)
        except DuplicateKeyError:
            raise Conflict(Text("gate {code} exists", code=repr(code)), fields={"code": "taken"}) from None
        return doc

    async def create_gates(self, community_id: str, gates: list[tuple[str, str, str, list[str]]],
                           bridge_ids: list[str]) -> list[dict]:
        """Many new gates ((code, name, kind, covers) each) in one insert, each with its
        bridge's id (BridgeManager.provision_new): a simulated site of thousands (benchmarks,
        drills). Raises BulkWriteError when a code is taken."""
        for covers in {tuple(gate[3]) for gate in gates}:
            await self._check_covers(community_id, list(covers))
        docs = [{**self._gate_doc(community_id, *gate), "bridge_id": bridge_id}
                for gate, bridge_id in zip(gates, bridge_ids, strict=True)]
        await self.db.gates.insert_many(docs)
        return docs

    def _gate_doc(self, community_id: str, code: str, name: str, kind: str,
                  covers_paths: list[str]) -> dict:
        cid = ObjectId(community_id)
        return {"community_id": cid, "key": f"{cid}:{code}", "code": code, "name": name,
                "kind": kind, "covers": covers_paths, "created_at": self.clock.now()}

    async def _check_covers(self, community_id: str, paths: list[str]) -> None:
        for path in paths:
            if path and not await self.place_by_path(community_id, path):
                raise Invalid("gate covers an unknown place",
                              fields={"covers": Text("no place {path}", path=repr(path))})

    async def gate(self, community_id: str, gate_id: str) -> dict:
        gid = str(object_id(gate_id, "gate"))
        doc = (await self._copies("gates", [gid])).get(gid)
        if doc is None or str(doc["community_id"]) != community_id:
            raise NotFound("gate not found")
        return doc

    async def gates(self, community_id: str) -> list[dict]:
        return await self.db.gates.find({"community_id": ObjectId(community_id)}).sort(
            "code", ASCENDING).to_list(None)

    async def gate_names(self, community_id: str, gate_ids) -> dict[str, str]:
        """id -> name of these gates of the community. A page of lines names a few gates; a
        community can have thousands (reading them all per page overloaded the store)."""
        return {gate_id: gate["name"] for gate_id, gate in
                (await self._copies("gates", gate_ids)).items()
                if str(gate["community_id"]) == community_id}

    async def update_gate(self, community_id: str, gate_id: str, changes: dict) -> dict:
        gate = await self.gate(community_id, gate_id)
        if "covers" in changes:
            await self._check_covers(community_id, changes["covers"])
        changes["updated_at"] = self.clock.now()
        await self.db.gates.update_one({"_id": gate["_id"]}, {"$set": changes})
        await self._announce(f"gates:{gate['_id']}")
        return {**gate, **changes}
