"""Decoration permits (装修): owners apply, the office decides, inspectors inspect.

Thin: the rules live in models/decoration.py (its workflow in models/workflow.py).
"""

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

from handlers.base import APIHandler, Strict, api
from handlers.passes import DAYS_HELP, Days
from handlers.tickets import MULTIPART_OVERHEAD
from models.decoration import (ACTIONS, CHECKLIST, FORBIDDEN_WORKS, INSPECTION_PHOTOS,
                               PHOTO_LIMITS, STATES)
from models.photos import MAX_BYTES

HHMM = r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$"


class Worker(Strict):
    name: str = Field(min_length=1, max_length=32)
    id_last4: str = Field(pattern=r"^[0-9]{3}[0-9Xx]$", description="ID card's last four")
    phone: str = Field(pattern=r"^\+?[0-9 -]{6,20}$")


class PermitIn(Strict):
    room_path: str = Field(max_length=32, description="a room you own")
    start: AwareDatetime
    end: AwareDatetime
    company: str = Field(min_length=1, max_length=64)
    manager_phone: str = Field(pattern=r"^\+?[0-9 -]{6,20}$")
    scope: str = Field(min_length=1, max_length=1000, description="the scope of the work")
    workers: list[Worker] = Field(min_length=1, max_length=30)
    acknowledged: list[Literal[FORBIDDEN_WORKS]] = Field(
        description="each forbidden work, acknowledged: " + ", ".join(FORBIDDEN_WORKS))


class PermitActionIn(Strict):
    action: Literal[ACTIONS]
    reason: str = Field("", max_length=500, description="reject, suspend, resume")
    hours_start: str | None = Field(None, pattern=HHMM, description='approve: daily, e.g. "08:00"')
    hours_end: str | None = Field(None, pattern=HHMM, description='approve: e.g. "18:00"')
    days: Days | None = Field(None, description="approve: " + DAYS_HELP + "; default: the "
                                                "community's decoration_days")
    deposit: float | None = Field(None, ge=0, le=1_000_000, description="approve: yuan, if charged")
    checklist: dict[str, Literal["ok", "problem"]] | None = Field(
        None, description="inspect: " + ", ".join(CHECKLIST))
    findings: str = Field("", max_length=1000, description="inspect")
    violation: bool = Field(False, description="inspect: a violation was found")
    photos: list[str] = Field([], max_length=INSPECTION_PHOTOS,
                              description="inspect: ids of the permit's inspection photos")
    deposit_returned: float | None = Field(None, ge=0, le=1_000_000, description="accept")
    notes: str = Field("", max_length=1000, description="accept")


class PermitQuery(Strict):
    state: Literal[STATES] | None = None


class Permit(BaseModel):
    id: str
    community_id: str
    resident_id: str
    room_path: str
    start: datetime
    end: datetime
    company: str
    manager_phone: str
    scope: str
    workers: list[dict]
    acknowledged: list[str]
    state: str
    hours: list[str] | None
    days: list[str] | None
    deposit: float | None
    deposit_returned: float | None
    passes: list[dict]
    inspections: int
    photos: list[dict] = Field(description="drawings and photos: stage application (the owner's) "
                                           "or inspection; `url`/`thumbnail_url` signed links")
    history: list[dict]
    allowed_actions: list[str]


class PermitsHandler(APIHandler):
    @api("Decoration permits: staff see the community's, residents their own", query=PermitQuery,
         response=list[Permit], permission="decoration.read")
    async def get(self, community_id):
        docs = await self.app.decoration.search(self.principal, community_id, self.query.state)
        self.write_json([self.app.decoration.view(d, self.principal) for d in docs])

    @api("Apply for a decoration permit (the room's owner)", body=PermitIn, response=Permit,
         status=201, permission="decoration.read", audience="resident")
    async def post(self, community_id):
        doc = await self.app.decoration.apply(self.principal, community_id,
                                              **self.body.model_dump())
        self.write_json(self.app.decoration.view(doc, self.principal))


class PermitHandler(APIHandler):
    @api("One permit with its history (inspections included) and passes", response=Permit,
         permission="decoration.read")
    async def get(self, community_id, permit_id):
        doc = await self.app.decoration.visible(self.principal, community_id, permit_id)
        self.write_json(self.app.decoration.view(doc, self.principal))


class PermitActionHandler(APIHandler):
    @api("Approve, reject, withdraw, inspect, suspend, resume or accept (验收) a permit; 409 "
         "lists the allowed actions", body=PermitActionIn, response=Permit,
         permission="decoration.read")
    async def post(self, community_id, permit_id):
        fields = self.body.model_dump(exclude_unset=True)
        doc = await self.app.decoration.act(self.principal, community_id, permit_id,
                                            fields.pop("action"), **fields)
        self.write_json(self.app.decoration.view(doc, self.principal))


class PhotoStageQuery(Strict):
    stage: Literal[tuple(PHOTO_LIMITS)] = Field(
        "application", description="application: the owner's drawings and photos while "
                                   "submitted; inspection: an inspector's while the work runs")


class PermitPhotosHandler(APIHandler):
    @api(f"Add drawings/photos (multipart, field `photo`, ≤ {MAX_BYTES >> 20} MB each; "
         f"per permit ≤ {PHOTO_LIMITS['application']} application, "
         f"≤ {PHOTO_LIMITS['inspection']} inspection)", query=PhotoStageQuery, response=Permit,
         status=201, permission="decoration.read",
         max_body=PHOTO_LIMITS["application"] * MAX_BYTES + MULTIPART_OVERHEAD,
         uploads=("multipart/form-data",), upload_field="photo", upload_many=True)
    async def post(self, community_id, permit_id):
        doc = await self.app.decoration.add_photos(self.principal, community_id, permit_id,
                                                   self.query.stage, self.photo_uploads())
        self.write_json(self.app.decoration.view(doc, self.principal))


class PermitEntriesHandler(APIHandler):
    @api("The gate log's lines of the permit's worker passes, newest first, with the worker, "
         "gate_name, at_local and words for their codes (as the access log shows them)",
         response=list[dict], permission="decoration.read", audience="staff")
    async def get(self, community_id, permit_id):
        lines = await self.app.decoration.entries(community_id, permit_id)
        self.write_json(await self.app.access_log_reader.present(community_id, lines, self.lang()))


routes = [
    ("/api/communities/{community_id}/decoration-permits", PermitsHandler),
    ("/api/communities/{community_id}/decoration-permits/{permit_id}", PermitHandler),
    ("/api/communities/{community_id}/decoration-permits/{permit_id}/actions", PermitActionHandler),
    ("/api/communities/{community_id}/decoration-permits/{permit_id}/entries", PermitEntriesHandler),
    ("/api/communities/{community_id}/decoration-permits/{permit_id}/photos", PermitPhotosHandler),
]
