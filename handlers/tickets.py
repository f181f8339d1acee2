"""Service tickets: report, dispatch, work, confirm, follow up; photos; urges; KPIs.

Thin: the rules live in models/tickets.py (state machine), models/sla.py,
models/photos.py, models/notifications.py and models/kpi.py.
"""

from datetime import date, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, Field

from handlers.base import APIHandler, Strict, api
from models.kpi import MAX_SERIES, PERIODS
from models.notifications import public_message
from models.photos import MAX_BYTES
from models.sla import DEFAULT_TARGETS, PRIORITIES
from models.people import public_staff
from models.photos import PhotoLinks
from models.tickets import ACTIONS, AREAS, MAX_PHOTOS, COMPLAINT_CATEGORIES, KINDS, REPAIR_CATEGORIES, STATES

MULTIPART_OVERHEAD = 64 * 1024  # part headers and boundaries around the photos


class TicketIn(Strict):
    kind: Literal[KINDS]
    category: str = Field(description=f"repair: {', '.join(REPAIR_CATEGORIES)}; "
                                      f"complaint: {', '.join(COMPLAINT_CATEGORIES)}")
    description: str = Field(min_length=2, max_length=500)
    area: Literal[AREAS] = Field(description='"room" for in-room repairs, else the shared place')
    place_path: str | None = Field(None, max_length=32, description='e.g. "1-1-101" or "1-1"')
    gate_id: str | None = Field(None, max_length=24, description="for a door or gate ticket")
    preferred_start: AwareDatetime | None = Field(None, description="in-room: visit window")
    preferred_end: AwareDatetime | None = None
    resident_id: str | None = Field(None, min_length=24, max_length=24,
                                    description="staff filing for a resident (phone call)")
    priority: Literal[PRIORITIES] | None = Field(None, description="staff only; else suggested")


class Material(Strict):
    name: str = Field(min_length=1, max_length=64)
    quantity: float = Field(gt=0, le=10000)
    unit: str = Field("", max_length=16)


class TransitionIn(Strict):
    action: Literal[ACTIONS]
    reason: str = Field("", max_length=500, description="required to reassign, return, ask, "
                                                         "answer and reopen")
    assignee_id: str | None = Field(None, min_length=24, max_length=24)
    team: str | None = Field(None, max_length=64)
    appointment_start: AwareDatetime | None = None
    appointment_end: AwareDatetime | None = None
    notes: str = Field("", max_length=1000, description="resolve: what was done; follow_up: the call")
    materials: list[Material] = Field([], max_length=30)
    rating: int | None = Field(None, ge=1, le=5)
    comment: str = Field("", max_length=200)


class PriorityIn(Strict):
    priority: Literal[PRIORITIES]
    reason: str = Field(min_length=1, max_length=200)


class TicketQuery(Strict):
    state: Literal[STATES] | None = None
    kind: Literal[KINDS] | None = None
    priority: Literal[PRIORITIES] | None = None
    assignee_id: str | None = Field(None, max_length=24, description='a staff id, or "me"')
    flagged: bool | None = Field(None, description="only tickets with an SLA escalation")
    limit: int = Field(50, ge=1, le=200)
    offset: int = Field(0, ge=0, le=100_000)


class PhotoQuery(Strict):
    thumbnail: bool = False


class Ticket(BaseModel):
    """A ticket as the caller may see it; `allowed_actions` are the caller's next steps."""
    id: str
    community_id: str
    kind: str
    category: str
    description: str
    area: str
    place_path: str | None
    gate_id: str | None
    resident_id: str | None = Field(description="none for a repair staff found (see `source`)")
    channel: str
    source: dict | None = Field(None, description="the patrol visit or inspection that found it")
    priority: str
    suggested_priority: str
    state: str
    assignee_id: str | None
    rating: int | None
    rework_count: int
    urge_count: int
    photos: list[dict]
    clocks: dict[str, Any]
    history: list[dict]
    created_at: datetime
    version: int
    allowed_actions: list[str]
    flags: list[str] | None = Field(None, description="staff only")
    escalations: list[dict] | None = Field(None, description="staff only")


class SlaTargetsBody(Strict):
    emergency_minutes: int = Field(DEFAULT_TARGETS["emergency_minutes"], ge=1, le=1440)
    urgent_minutes: int = Field(DEFAULT_TARGETS["urgent_minutes"], ge=1, le=1440)
    quick_minutes: int = Field(DEFAULT_TARGETS["quick_minutes"], ge=1, le=2880)
    normal_minutes: int = Field(DEFAULT_TARGETS["normal_minutes"], ge=1, le=20160)
    complaint_response_minutes: int = Field(DEFAULT_TARGETS["complaint_response_minutes"],
                                            ge=1, le=20160)
    followup_minutes: int = Field(DEFAULT_TARGETS["followup_minutes"], ge=1, le=20160)


class KpiQuery(Strict):
    period: Literal[PERIODS] = "month"
    day: date | None = Field(None, description="any day in the period; default today on the "
                                               "community's clock (its time zone)")


class KpiSeriesQuery(KpiQuery):
    count: int = Field(12, ge=1, le=MAX_SERIES, description="periods, ending with `day`'s")


class SubscriptionsIn(Strict):
    ticket_id: str | None = Field(None, min_length=24, max_length=24,
                                  description="the ticket the user subscribed for; none = any")
    results: dict[str, Literal["accept", "reject", "ban", "filter"]] = Field(
        min_length=1, max_length=10, description="wx.requestSubscribeMessage's result per template")


class Message(BaseModel):
    id: str
    community_id: str
    ticket_id: str
    kind: str
    text: str
    at: datetime
    read: bool
    wechat: str | None


class TicketsHandler(APIHandler):
    @api("Tickets: staff see the community's, residents their own", query=TicketQuery,
         response=list[Ticket], permission="tickets.read")
    async def get(self, community_id):
        q = self.query.model_dump()
        if q["assignee_id"] == "me":
            q["assignee_id"] = self.principal.id
        docs = await self.app.tickets.search(self.principal, community_id, **q)
        self.write_json([self.app.tickets.view(d, self.principal) for d in docs])

    @api("Report a repair or complaint (residents; customer service for a resident's call)",
         body=TicketIn, response=Ticket, status=201, permission="tickets.create")
    async def post(self, community_id):
        doc = await self.app.tickets.create(self.principal, community_id, **self.body.model_dump())
        self.write_json(self.app.tickets.view(doc, self.principal))


class TicketHandler(APIHandler):
    @api("One ticket with its history and SLA clocks", response=Ticket, permission="tickets.read")
    async def get(self, community_id, ticket_id):
        doc = await self.app.tickets.get(self.principal, community_id, ticket_id)
        self.write_json(self.app.tickets.view(doc, self.principal))


class TransitionHandler(APIHandler):
    @api("Move a ticket on (assign, accept, check_in, resolve, confirm, follow_up, close, "
         "return, reassign, cancel, reopen, ask, answer); 409 lists the allowed actions",
         body=TransitionIn, response=Ticket, permission="tickets.read")
    async def post(self, community_id, ticket_id):
        b = self.body.model_dump()
        doc = await self.app.tickets.transition(self.principal, community_id, ticket_id,
                                                b.pop("action"), **b)
        self.write_json(self.app.tickets.view(doc, self.principal))


class UrgeHandler(APIHandler):
    @api("Urge (催单) my open ticket: at most once per 5 minutes", response=Ticket,
         permission="tickets.read", audience="resident", rate_limited=True)
    async def post(self, community_id, ticket_id):
        doc = await self.app.tickets.urge(self.principal, community_id, ticket_id)
        self.write_json(self.app.tickets.view(doc, self.principal))


class PriorityHandler(APIHandler):
    @api("Change a ticket's priority (its SLA clock follows)", body=PriorityIn, response=Ticket,
         permission="tickets.dispatch")
    async def put(self, community_id, ticket_id):
        doc = await self.app.tickets.set_priority(self.principal, community_id, ticket_id,
                                                  self.body.priority, self.body.reason)
        self.write_json(self.app.tickets.view(doc, self.principal))


class PhotosHandler(APIHandler):
    @api(f"Add photos (multipart, field `photo`, JPEG/PNG/WebP/HEIC, ≤ {MAX_BYTES >> 20} MB each, "
         f"≤ {MAX_PHOTOS} per stage)", response=Ticket, status=201, permission="tickets.read",
         max_body=MAX_PHOTOS * MAX_BYTES + MULTIPART_OVERHEAD, uploads=("multipart/form-data",),
         upload_field="photo", upload_many=True)
    async def post(self, community_id, ticket_id):
        doc = await self.app.tickets.add_photos(self.principal, community_id, ticket_id,
                                                self.photo_uploads())
        self.write_json(self.app.tickets.view(doc, self.principal))


class PhotoHandler(APIHandler):
    @api("A ticket photo (or its thumbnail), for those who may see the ticket", query=PhotoQuery,
         response=str, permission="tickets.read", content_type="image/*")
    async def get(self, community_id, ticket_id, photo_id):
        data, content_type = await self.app.tickets.photo(self.principal, community_id, ticket_id,
                                                          photo_id, self.query.thumbnail)
        self.set_header("Content-Type", content_type)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "private, max-age=3600")
        self.finish(data)


class SignedPhotoQuery(Strict):
    expires: int = Field(ge=0)
    sig: str = Field(pattern=r"^[0-9a-f]{1,64}$", description="hex, as the link gave it")


class SignedPhotoHandler(APIHandler):
    @api("A ticket photo by the signed link a ticket answer gave (`url`, `thumbnail_url`), so an "
         "<img> can show it without a bearer header", query=SignedPhotoQuery, response=str,
         public=True, content_type="image/*")
    async def get(self, file_id):
        data, content_type, left = await self.app.tickets.linked_photo(
            file_id, self.query.expires, self.query.sig)
        self.set_header("Content-Type", content_type)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", f"private, max-age={int(left)}")
        self.finish(data)


class Assignee(BaseModel):
    id: str
    name: str
    roles: list[str]


class AssigneesHandler(APIHandler):
    @api("Staff a ticket may be assigned to (active members of the community: names and roles)",
         response=list[Assignee], permission="staff.assignable")
    async def get(self, community_id):
        members = [public_staff(d, community_id) for d in
                   await self.app.staff.in_community(community_id)]
        self.write_json([{"id": m["id"], "name": m["name"] or m["username"], "roles": m["roles"]}
                         for m in members if m["active"] and m["roles"]])


class SlaTargetsHandler(APIHandler):
    @api("The community's SLA targets (minutes; staff only)", response=SlaTargetsBody,
         permission="sla.read")
    async def get(self, community_id):
        self.write_json(await self.app.sla_targets.get(community_id))

    @api("Set the community's SLA targets; applies to tickets reported from now on",
         body=SlaTargetsBody, response=SlaTargetsBody, permission="sla.write")
    async def put(self, community_id):
        self.write_json(await self.app.sla_targets.set(community_id, self.body.model_dump()))


class KpiHandler(APIHandler):
    @api("Ticket KPIs for a day, week or month, with the office's targets", query=KpiQuery,
         response=dict, permission="kpi.read")
    async def get(self, community_id):
        self.write_json(await self.app.kpi.report(community_id, self.query.period, self.query.day))


class KpiSeriesHandler(APIHandler):
    @api("The KPIs of consecutive periods (oldest first), for charts and downloads",
         query=KpiSeriesQuery, response=list[dict], permission="kpi.read")
    async def get(self, community_id):
        q = self.query
        self.write_json(await self.app.kpi.series(community_id, q.period, q.day, q.count))


class SubscriptionsHandler(APIHandler):
    @api("Report wx.requestSubscribeMessage results: each accept allows one message",
         body=SubscriptionsIn, response=dict[str, int], audience="resident")
    async def post(self):
        if self.body.ticket_id:  # credits for a ticket only make sense for one's own
            await self.app.tickets.own_ticket(self.principal, self.body.ticket_id)
        self.write_json(await self.app.notifier.add_credits(self.principal.id, self.body.ticket_id,
                                                            self.body.results))


class MessagesHandler(APIHandler):
    @api("My ticket messages, newest first", response=list[Message], audience="resident")
    async def get(self):
        self.write_json([public_message(m) for m in await self.app.notifier.messages(self.principal.id)])


class MessageReadHandler(APIHandler):
    @api("Mark a message read", response=Message, audience="resident")
    async def post(self, message_id):
        self.write_json(public_message(await self.app.notifier.mark_read(self.principal.id, message_id)))

routes = [
    ("/api/communities/{community_id}/tickets", TicketsHandler),
    ("/api/communities/{community_id}/tickets/{ticket_id}", TicketHandler),
    ("/api/communities/{community_id}/tickets/{ticket_id}/transitions", TransitionHandler),
    ("/api/communities/{community_id}/tickets/{ticket_id}/urge", UrgeHandler),
    ("/api/communities/{community_id}/tickets/{ticket_id}/priority", PriorityHandler),
    ("/api/communities/{community_id}/tickets/{ticket_id}/photos", PhotosHandler),
    ("/api/communities/{community_id}/tickets/{ticket_id}/photos/{photo_id}", PhotoHandler),
    (PhotoLinks.PATH + "{file_id}", SignedPhotoHandler),
    ("/api/communities/{community_id}/assignees", AssigneesHandler),
    ("/api/communities/{community_id}/sla-targets", SlaTargetsHandler),
    ("/api/communities/{community_id}/kpi", KpiHandler),
    ("/api/communities/{community_id}/kpi/series", KpiSeriesHandler),
    ("/api/me/subscriptions", SubscriptionsHandler),
    ("/api/me/messages", MessagesHandler),
    ("/api/me/messages/{message_id}/read", MessageReadHandler),
]
