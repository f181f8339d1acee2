"""Communities and their places (buildings, units, rooms). Gates: handlers/gates.py."""

from typing import Literal

from pydantic import BaseModel, Field

from handlers.base import APIHandler, api
from models.places import PLACE_KINDS, public_community, public_place


class Community(BaseModel):
    id: str
    name: str
    code: str
    address: str
    settings: dict


class PlaceIn(BaseModel):
    path: str = Field(min_length=1, max_length=32, description='"3", "3-2" or "3-2-1201"')
    name: str | None = Field(None, max_length=64)
    area_m2: float | None = Field(None, gt=0, lt=100000)


class Place(BaseModel):
    id: str
    community_id: str
    kind: Literal[PLACE_KINDS]
    path: str
    name: str
    area_m2: float | None


class PlaceQuery(BaseModel):
    kind: Literal[PLACE_KINDS] | None = None
    under: str | None = Field(None, max_length=32, description="only places below this path")


class CommunitiesHandler(APIHandler):
    @api("Communities: staff see theirs; residents see all, to choose where to bind a room",
         response=list[Community])
    async def get(self):
        ids = self.principal.communities() if self.principal.is_staff else None
        self.write_json([public_community(c) for c in await self.app.places.communities(ids)])


class CommunityHandler(APIHandler):
    @api("One community", response=Community, permission="community.read")
    async def get(self, community_id):
        self.write_json(public_community(await self.app.places.community(community_id)))


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


routes = [
    ("/api/communities", CommunitiesHandler),
    ("/api/communities/{community_id}", CommunityHandler),
    ("/api/communities/{community_id}/places", PlacesHandler),
    ("/api/communities/{community_id}/places/{place_id}", PlaceHandler),
]
