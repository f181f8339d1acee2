"""Guard patrols (巡更): checkpoints, routes, plans, check-ins on site, rounds and figures.

Thin: the rules live in models/patrols.py (rounds are a workflow of models/workflow.py).
"""

from datetime import timedelta
from typing import Literal

from pydantic import AwareDatetime, Field

from handlers.base import APIHandler, Strict, api
from handlers.tag_sheet import tag_sheet
from handlers.tickets import MULTIPART_OVERHEAD, Ticket
from models.access import STAFF_ROLES
from models.check_ins import ANSWERS
from models.patrols import MAX_VISIT_PHOTOS, TAG_PREFIX, public
from models.photos import MAX_BYTES
from models.tickets import REPAIR_CATEGORIES


class CheckpointIn(Strict):
    code: str = Field(pattern=r"^[A-Za-z0-9-]{1,16}$", description="on its tag (QR/NFC) and sheet")
    name: str = Field(min_length=1, max_length=60)
    place_path: str | None = Field(None, max_length=32)
    checklist: list[str] = Field([], max_length=20, description="items answered ok / problem")


class RouteIn(Strict):
    name: str = Field(min_length=1, max_length=60)
    checkpoints: list[str] = Field(min_length=1, max_length=100, description="checkpoint ids, in order")


class PlanIn(Strict):
    route_id: str = Field(min_length=24, max_length=24)
    name: str = Field(min_length=1, max_length=60)
    starts_at: AwareDatetime = Field(description="the first round's start")
    every_minutes: int = Field(ge=15, le=60 * 24 * 31, description="120: every 2 hours")
    window_minutes: int = Field(ge=5, le=60 * 24 * 31, description="a round is walked within this")
    late_after_minutes: int | None = Field(None, ge=1, le=60 * 24 * 31, description=(
        "a round not started this far into its window is raised as late (once)"))
    role: Literal[STAFF_ROLES] | None = None
    staff_id: str | None = Field(None, min_length=24, max_length=24)


class Location(Strict):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    accuracy_m: float | None = Field(None, ge=0)


class CheckInIn(Strict):
    code: str = Field(min_length=1, max_length=16, description="scanned from the tag or typed")
    device: str = Field(min_length=1, max_length=64, description="this phone's id in the admin view")
    scanned_at: AwareDatetime = Field(description="when the phone read the tag")
    location: Location | None = None
    answers: dict[str, Literal[ANSWERS]] = Field({}, max_length=20)
    note: str = Field("", max_length=500)


class FindingTicketIn(Strict):
    category: Literal[tuple(REPAIR_CATEGORIES)] = Field("other", description="sets its priority")


class AlarmsQuery(Strict):
    hours: int = Field(24, ge=1, le=24 * 31)


class StatsQuery(Strict):
    days: int = Field(7, ge=1, le=366)


class CheckpointsHandler(APIHandler):
    @api("The community's checkpoints", response=list[dict], permission="patrols.read")
    async def get(self, community_id):
        self.write_json([public(d) for d in await self.app.patrols.checkpoints(community_id)])

    @api("Add a checkpoint", body=CheckpointIn, response=dict, status=201,
         permission="patrols.manage")
    async def post(self, community_id):
        self.write_json(public(await self.app.patrols.add_checkpoint(
            community_id, **self.body.model_dump())))


class TagSheetHandler(APIHandler):
    @api("The checkpoints' tags to print: each with the text its QR code carries and the QR "
         "as an SVG data URL", response=list[dict], permission="patrols.manage")
    async def get(self, community_id):
        self.write_json(await tag_sheet(TAG_PREFIX, [
            {"id": str(d["_id"]), "code": d["code"], "name": d["name"], "place_path": d["place_path"]}
            for d in await self.app.patrols.checkpoints(community_id)]))


class RoutesHandler(APIHandler):
    @api("The community's routes", response=list[dict], permission="patrols.read")
    async def get(self, community_id):
        self.write_json([public(d) for d in await self.app.patrols.routes(community_id)])

    @api("Add a route: checkpoints in order", body=RouteIn, response=dict, status=201,
         permission="patrols.manage")
    async def post(self, community_id):
        self.write_json(public(await self.app.patrols.add_route(community_id,
                                                                 **self.body.model_dump())))


class PlansHandler(APIHandler):
    @api("The community's patrol plans", response=list[dict], permission="patrols.read")
    async def get(self, community_id):
        self.write_json([public(d) for d in await self.app.patrols.plans(community_id)])

    @api("Put a route on a schedule for a role or a person", body=PlanIn, response=dict,
         status=201, permission="patrols.manage")
    async def post(self, community_id):
        self.write_json(public(await self.app.patrols.add_plan(community_id,
                                                                **self.body.model_dump())))


class CheckInHandler(APIHandler):
    @api("Check in at the next checkpoint of the open round (409 wrong_order / outside_window)",
         body=CheckInIn, response=dict, status=201, permission="patrols.check_in")
    async def post(self, community_id, plan_id):
        doc = await self.app.patrols.check_in(self.principal, community_id, plan_id,
                                              **self.body.model_dump())
        self.write_json(self.app.patrols.view(doc))


class VisitPhotosHandler(APIHandler):
    @api(f"Add photos to your visit (multipart, field `photo`, ≤ {MAX_VISIT_PHOTOS} per visit)",
         response=dict, status=201, permission="patrols.check_in",
         max_body=MAX_VISIT_PHOTOS * MAX_BYTES + MULTIPART_OVERHEAD,
         uploads=("multipart/form-data",), upload_field="photo", upload_many=True)
    async def post(self, community_id, round_id, index):
        doc = await self.app.patrols.add_visit_photos(self.principal, community_id, round_id,
                                                      int(index), self.photo_uploads())
        self.write_json(self.app.patrols.view(doc))


class VisitTicketHandler(APIHandler):
    @api("Make the repair ticket of a visit's problem (201), or show the one made (200)",
         body=FindingTicketIn, response=Ticket, status=201, permission="patrols.read")
    async def post(self, community_id, round_id, index):
        doc, made = await self.app.patrols.ticket_for_visit(self.principal, community_id, round_id,
                                                            int(index), self.body.category)
        self.set_status(201 if made else 200)
        self.write_json(self.app.tickets.view(doc, self.principal))


class PatrolAlarmsHandler(APIHandler):
    @api("Rounds raised late or missed in the last hours, newest first", query=AlarmsQuery,
         response=list[dict], permission="patrols.read")
    async def get(self, community_id):
        since = self.app.clock.now() - timedelta(hours=self.query.hours)
        self.write_json(await self.app.patrols.alarms(community_id, since))


class CurrentRoundHandler(APIHandler):
    @api("The round open now (`null` between windows): its visits and the checkpoints to go",
         response=dict, permission="patrols.read")
    async def get(self, community_id, plan_id):
        doc = await self.app.patrols.round_now(community_id, plan_id)
        self.write_json(doc and self.app.patrols.view(doc))


class RoundsHandler(APIHandler):
    @api("A plan's rounds, newest first", response=list[dict], permission="patrols.read")
    async def get(self, community_id, plan_id):
        self.write_json([self.app.patrols.view(d)
                         for d in await self.app.patrols.rounds(community_id, plan_id)])


class StatsHandler(APIHandler):
    @api("A plan's completion over the last days", query=StatsQuery, response=dict,
         permission="patrols.read")
    async def get(self, community_id, plan_id):
        since = self.app.clock.now() - timedelta(days=self.query.days)
        self.write_json(await self.app.patrols.stats(community_id, plan_id, since))


routes = [
    ("/api/communities/{community_id}/patrol-checkpoints", CheckpointsHandler),
    ("/api/communities/{community_id}/patrol-checkpoints/sheet", TagSheetHandler),
    ("/api/communities/{community_id}/patrol-routes", RoutesHandler),
    ("/api/communities/{community_id}/patrol-alarms", PatrolAlarmsHandler),
    ("/api/communities/{community_id}/patrol-plans", PlansHandler),
    ("/api/communities/{community_id}/patrol-plans/{plan_id}/check-ins", CheckInHandler),
    ("/api/communities/{community_id}/patrol-plans/{plan_id}/rounds", RoundsHandler),
    ("/api/communities/{community_id}/patrol-plans/{plan_id}/round", CurrentRoundHandler),
    ("/api/communities/{community_id}/patrol-rounds/{round_id}/visits/{index:[0-9]+}/photos",
     VisitPhotosHandler),
    ("/api/communities/{community_id}/patrol-rounds/{round_id}/visits/{index:[0-9]+}/ticket",
     VisitTicketHandler),
    ("/api/communities/{community_id}/patrol-plans/{plan_id}/stats", StatsHandler),
]
