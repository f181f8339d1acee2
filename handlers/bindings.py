"""Room bindings: residents ask to be linked to a room; staff or the owner decide."""

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

from handlers.base import APIHandler, Strict, api
from models.bindings import RELATIONS, public_link

Action = Literal["approve", "reject", "revoke"]
State = Literal["pending", "approved", "rejected", "cancelled", "revoked", "offered", "declined"]


class BindingRequest(Strict):
    community_id: str = Field(min_length=24, max_length=24)
    room_path: str = Field(min_length=1, max_length=32, description='e.g. "3-2-1201"')
    relation: Literal[RELATIONS]
    lease_end: AwareDatetime | None = Field(None, description="required for tenants")
    note: str = Field("", max_length=200)


class Decision(Strict):
    action: Action
    reason: str = Field("", max_length=200, description="required to reject or revoke")


class Answer(Strict):
    accept: bool = Field(description="true takes the offered room, false declines it")


class HistoryEntry(BaseModel):
    at: datetime
    by: str
    action: str
    reason: str


class Binding(BaseModel):
    id: str
    community_id: str
    resident_id: str
    room_path: str
    relation: Literal[RELATIONS]
    lease_end: datetime | None
    state: State
    active: bool
    reason: str | None
    history: list[HistoryEntry]


class BindingQuery(Strict):
    state: State | None = None


class MyBindingsHandler(APIHandler):
    @api("My room bindings and their states", response=list[Binding], audience="resident")
    async def get(self):
        now = self.app.clock.now()
        self.write_json([public_link(d, now) for d in await self.app.bindings.of_resident(self.principal.id)])

    @api("Ask to be linked to a room", body=BindingRequest, response=Binding, status=201,
         audience="resident")
    async def post(self):
        b = self.body
        doc = await self.app.bindings.request(self.principal.id, b.community_id, b.room_path,
                                              b.relation, b.lease_end, b.note)
        self.write_json(public_link(doc, self.app.clock.now()))


class MyBindingHandler(APIHandler):
    @api("Withdraw my pending binding request", response=Binding, audience="resident")
    async def delete(self, binding_id):
        doc = await self.app.bindings.cancel(self.principal.id, binding_id)
        self.write_json(public_link(doc, self.app.clock.now()))


class MyBindingAnswerHandler(APIHandler):
    @api("Accept or decline a room an office's import offered me", body=Answer, response=Binding,
         audience="resident")
    async def post(self, binding_id):
        doc = await self.app.bindings.answer(self.principal.id, binding_id, self.body.accept)
        self.write_json(public_link(doc, self.app.clock.now()))


class BindingsHandler(APIHandler):
    @api("Binding requests to decide: staff see all, owners those for their rooms",
         query=BindingQuery, response=list[Binding], permission="bindings.read")
    async def get(self, community_id):
        docs = await self.app.bindings.visible_to(self.principal, community_id, self.query.state)
        now = self.app.clock.now()
        self.write_json([public_link(d, now) for d in docs])


class BindingDecisionHandler(APIHandler):
    @api("Approve, reject or revoke (moved out) a binding", body=Decision, response=Binding,
         permission="bindings.decide")
    async def post(self, community_id, binding_id):
        doc = await self.app.bindings.decide(self.principal, community_id, binding_id,
                                             self.body.action, self.body.reason)
        self.write_json(public_link(doc, self.app.clock.now()))


routes = [
    ("/api/me/bindings", MyBindingsHandler),
    ("/api/me/bindings/{binding_id}", MyBindingHandler),
    ("/api/me/bindings/{binding_id}/answer", MyBindingAnswerHandler),
    ("/api/communities/{community_id}/bindings", BindingsHandler),
    ("/api/communities/{community_id}/bindings/{binding_id}/decision", BindingDecisionHandler),
]
