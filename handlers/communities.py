"""Communities and their places (buildings, units, rooms). Gates: handlers/gates.py."""

from typing import Literal

from pydantic import BaseModel, Field

from gate_bridge.decision import STAFF_GATE_ROLES
from handlers.base import APIHandler, Strict, api
from handlers.passes import DAYS_HELP, Days
from models.access import STAFF_ROLES, visible_communities
from models.bridges import announce_config
from models.places import (COMMUNITY_CODE, DEFAULT_TIME_ZONE, PATH_FORMAT, PLACE_KINDS,
                           child_kind, public_community, public_place)

PATH_FIELD = f"the place's path: {PATH_FORMAT}"


class CommunitySettings(Strict):
    """Overrides of the deployment's defaults; null (in a change) restores the default."""

    pass_code_seconds: int | None = Field(
        None, ge=10, le=3600, description="how long a resident's gate code lasts "
                                          "(default: PASS_CODE_SECONDS)")
    invitation_max_days: int | None = Field(
        None, ge=1, le=90, description="how far ahead residents may invite visitors "
                                       "(default: INVITATION_MAX_DAYS)")
    worker_pass_max_days: int | None = Field(
        None, ge=1, le=366, description="how far ahead a worker pass may run "
                                        "(default: WORKER_PASS_MAX_DAYS)")
    decoration_days: Days | None = Field(
        None, description="decoration permits' " + DAYS_HELP + " (default; approval may choose "
                          "others)")
    staff_gate_roles: list[Literal[STAFF_ROLES]] | None = Field(
        None, max_length=len(STAFF_ROLES),
        description="the staff roles whose staff codes open the gates (a gate's own "
                    f"rules.staff_roles overrides it); default: {', '.join(STAFF_GATE_ROLES)}")


class Community(BaseModel):
    id: str
    name: str
    code: str
    address: str
    time_zone: str = Field(description="IANA time zone; staff see times in it")
    settings: dict = Field(description="this community's overrides (see CommunitySettings)")


class CommunityIn(Strict):
    name: str = Field(min_length=1, max_length=64)
    code: str = Field(min_length=1, max_length=32, pattern=COMMUNITY_CODE.pattern,
                      description="permanent short name, a-z 0-9 - (operator tools use it, "
                                  "e.g. import_residents --community CODE)")
    address: str = Field("", max_length=200)
    time_zone: str = Field(DEFAULT_TIME_ZONE, max_length=64,
                           description="IANA name, e.g. Asia/Shanghai")
    settings: CommunitySettings = Field(default_factory=CommunitySettings)


class CommunityChanges(Strict):  # the code, for one, never changes
    name: str | None = Field(None, min_length=1, max_length=64)
    address: str | None = Field(None, max_length=200)
    time_zone: str | None = Field(None, max_length=64, description="IANA name, e.g. Asia/Shanghai")
    settings: CommunitySettings | None = Field(
        None, description="only the settings given change; null restores the default")


class PlaceIn(Strict):
    path: str = Field(min_length=1, max_length=32, description=PATH_FIELD)
    name: str | None = Field(None, max_length=64, description='shown to people, e.g. "3栋2单元"; '
                                                              "default: the path")
    area_m2: float | None = Field(None, gt=0, lt=100000, description="rooms: floor area")


class PlaceChanges(Strict):  # the path stays: links and gates refer to it
    name: str | None = Field(None, min_length=1, max_length=64)
    area_m2: float | None = Field(None, gt=0, lt=100000)


class Place(BaseModel):
    id: str
    community_id: str
    kind: Literal[PLACE_KINDS]
    path: str = Field(description=PATH_FIELD)
    name: str
    area_m2: float | None


class PlaceQuery(Strict):
    kind: Literal[PLACE_KINDS] | None = None
    under: str | None = Field(None, max_length=32, description="only places below this path")


class DirectoryQuery(Strict):
    under: str = Field("", max_length=32, description='a building ("3") or unit ("3-2") path; '
                                                      "empty: the buildings")


class DirectoryEntry(BaseModel):
    path: str = Field(description=PATH_FIELD + "; a room's is what POST /api/me/bindings takes "
                                  "as room_path")
    kind: Literal[PLACE_KINDS]
    name: str


class CommunitiesHandler(APIHandler):
    @api("Communities: a platform admin sees all, other staff theirs; residents see all, to "
         "choose where to ask for a room", response=list[Community])
    async def get(self):
        docs = await self.app.places.communities(visible_communities(self.principal))
        self.write_json([public_community(c) for c in docs])

    @api("Create a community (platform admins)", body=CommunityIn, response=Community,
         status=201, permission="communities.create")
    async def post(self):
        b = self.body
        doc = await self.app.places.create_community(
            b.name, b.code, b.address, b.settings.model_dump(exclude_none=True), b.time_zone)
        self.write_json(public_community(doc))


class CommunityHandler(APIHandler):
    @api("One community", response=Community, permission="community.read")
    async def get(self, community_id):
        self.write_json(public_community(await self.app.places.community(community_id)))

    @api("Change a community's name, address, time zone or settings (its code stays)",
         body=CommunityChanges, response=Community, permission="community.write")
    async def patch(self, community_id):
        changes = self.body.model_dump(exclude_unset=True, exclude={"settings"})
        settings = self.body.settings.model_dump(exclude_unset=True) if self.body.settings else {}
        doc = await self.app.places.update_community(community_id, changes, settings)
        if settings or "time_zone" in changes:  # what bridges decide with changed: push it
            self.app.passes.forget_community(community_id)
            await announce_config(self.app.redis, community_id)
        self.write_json(public_community(doc))


class PlacesHandler(APIHandler):
    @api("Places of a community", query=PlaceQuery, response=list[Place], permission="places.read")
    async def get(self, community_id):
        docs = await self.app.places.places(community_id, self.query.kind, self.query.under)
        self.write_json([public_place(d) for d in docs])

    @api("Add a building, unit or room (its parent must exist)", body=PlaceIn, response=Place,
         status=201, permission="places.write")
    async def post(self, community_id):
        doc = await self.app.places.create_place(community_id, self.body.path, self.body.name,
                                                 self.body.area_m2)
        self.write_json(public_place(doc))


class PlaceHandler(APIHandler):
    @api("One place", response=Place, permission="places.read")
    async def get(self, community_id, place_id):
        self.write_json(public_place(await self.app.places.place(community_id, place_id)))

    @api("Rename a place or set a room's area (its path stays)", body=PlaceChanges,
         response=Place, permission="places.write")
    async def patch(self, community_id, place_id):
        doc = await self.app.places.update_place(community_id, place_id,
                                                 self.body.model_dump(exclude_unset=True))
        self.write_json(public_place(doc))


class DirectoryHandler(APIHandler):
    @api("The places directly below a building or unit (the buildings without `under`): "
         "how a resident finds the room to ask for, in any community; nothing about who lives "
         "there", query=DirectoryQuery, response=list[DirectoryEntry],
         permission="places.browse")
    async def get(self, community_id):
        under = self.query.under
        docs = await self.app.places.places(community_id, child_kind(under), under or None)
        self.write_json([{"path": d["path"], "kind": d["kind"], "name": d.get("name", d["path"])}
                         for d in docs])


routes = [
    ("/api/communities", CommunitiesHandler),
    ("/api/communities/{community_id}", CommunityHandler),
    ("/api/communities/{community_id}/places", PlacesHandler),
    ("/api/communities/{community_id}/places/{place_id}", PlaceHandler),
    ("/api/communities/{community_id}/directory", DirectoryHandler),
]
