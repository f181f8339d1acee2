"""Residents and staff of a community."""

from datetime import datetime

from pydantic import BaseModel, Field

from handlers.base import APIHandler, Strict, api
from models.access import STAFF_ROLES
from models.people import PASSWORD_MIN_LENGTH, public_resident, public_staff

Role = str


class Resident(BaseModel):
    id: str
    name: str
    phone: str | None
    status: str = Field(description="active (on WeChat), pre-registered (imported, not yet "
                                    "signed in) or invited (has not accepted a room here yet)")


class Occupant(BaseModel):
    room_path: str
    relation: str
    lease_end: datetime | None
    resident: Resident


class StaffIn(Strict):
    username: str = Field(min_length=3, max_length=32, description="3-32 of a-z 0-9 _ . -")
    password: str | None = Field(
        None, min_length=PASSWORD_MIN_LENGTH, max_length=256,
        description="a new account's first password; omit it to give an existing account "
                    "(someone on the staff of another community) roles here")
    name: str | None = Field(None, min_length=1, max_length=64,
                             description="the person's name; required for a new account")
    roles: list[Role] = Field(min_length=1, description=f"any of {', '.join(STAFF_ROLES)}")


class RolesIn(Strict):
    roles: list[Role] = Field(description="empty removes the member from this community")


class ActiveIn(Strict):
    active: bool = Field(description="false disables the account everywhere")


class Staff(BaseModel):
    id: str
    username: str
    name: str
    roles: list[str]
    active: bool


class ResidentsHandler(APIHandler):
    @api("Residents with a room in the community", response=list[Resident],
         permission="residents.read")
    async def get(self, community_id):
        self.write_json([public_resident(r, community_id)
                         for r in await self.app.residents.in_community(community_id)])


class ResidentHandler(APIHandler):
    @api("One resident of the community", response=Resident, permission="residents.read")
    async def get(self, community_id, resident_id):
        docs = await self.app.residents.in_community(community_id, resident_id)
        self.write_json(public_resident(docs[0], community_id))


class OccupantsHandler(APIHandler):
    @api("Who lives in each room now (active links, by room path), with their names",
         response=list[Occupant], permission="residents.read")
    async def get(self, community_id):
        links = await self.app.bindings.occupants(community_id)
        people = {r["_id"]: public_resident(r, community_id)
                  for r in await self.app.residents.in_community(community_id)}
        self.write_json([{"room_path": link["room_path"], "relation": link["relation"],
                          "lease_end": link.get("lease_end"),
                          "resident": people[link["resident_id"]]} for link in links])


class StaffListHandler(APIHandler):
    @api("Staff of the community", response=list[Staff], permission="staff.read")
    async def get(self, community_id):
        self.write_json([public_staff(s, community_id)
                         for s in await self.app.staff.in_community(community_id)])

    @api("Add a staff member with roles in this community: a new account (with a password), or "
         "an existing account by username alone (404 no such username, 409 already here)",
         body=StaffIn, response=Staff,
         status=201, permission="staff.write")
    async def post(self, community_id):
        b = self.body
        if b.password is None:
            doc = await self.app.staff.add_to_community(community_id, b.username, b.roles)
        else:
            doc = await self.app.staff.create(b.username, b.password, b.name or "",
                                              {community_id: b.roles})
        self.write_json(public_staff(doc, community_id))


class StaffHandler(APIHandler):
    @api("One staff member", response=Staff, permission="staff.read")
    async def get(self, community_id, staff_id):
        self.write_json(public_staff(await self.app.staff.get(community_id, staff_id), community_id))

    @api("Change a staff member's roles here; their sessions end at once (409 `last_admin` "
         "when it would leave the community without an admin)",
         body=RolesIn, response=Staff, permission="staff.write")
    async def put(self, community_id, staff_id):
        doc = await self.app.staff.set_roles(community_id, staff_id, self.body.roles)
        self.write_json(public_staff(doc, community_id))


class StaffActiveHandler(APIHandler):
    @api("Disable (every session ends, logins refused) or enable a staff account; only for "
         "an admin of every community the member works in", body=ActiveIn, response=Staff,
         permission="staff.write")
    async def put(self, community_id, staff_id):
        doc = await self.app.staff.set_active(self.principal, community_id, staff_id,
                                              self.body.active)
        self.write_json(public_staff(doc, community_id))


routes = [
    ("/api/communities/{community_id}/residents", ResidentsHandler),
    ("/api/communities/{community_id}/residents/{resident_id}", ResidentHandler),
    ("/api/communities/{community_id}/occupants", OccupantsHandler),
    ("/api/communities/{community_id}/staff", StaffListHandler),
    ("/api/communities/{community_id}/staff/{staff_id}", StaffHandler),
    ("/api/communities/{community_id}/staff/{staff_id}/active", StaffActiveHandler),
]
