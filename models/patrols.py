"""Guard patrols (巡更): checkpoints, routes, plans on a schedule, rounds checked in on site.

A checkpoint is a place with a tag (QR or NFC) carrying its `code`; a route is an
ordered list of checkpoints; a plan puts a route on a schedule — a round every
`every_minutes` from `starts_at`, to be walked within `window_minutes` — for a role
or a person. Rounds are records of ROUND_WORKFLOW (models/workflow.py):

    open ─check_in→ open … ─finish (the last checkpoint)→ completed
      └──────────────miss (the window closed first)────→ missed

A check-in names the checkpoint's code and is refused unless it is the next one of
the route (order), inside the round's window (timing), from someone the plan
assigns, sent at once (`scanned_at` near the server's clock: models/check_ins.py, a
queued or replayed scan is refused). The tag's code alone is no proof, so each
check-in records who (the signed-in account), the device and, when the phone gives
it, the location. `sweep(now)` marks rounds whose window closed as missed and raises
`patrol.missed` on the staff feed (the guard console and Today show feed alarms).
"""

import logging
from datetime import datetime, timedelta

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from models.access import Principal, permitted
from models.check_ins import check_answers, failed_items, proof
from models.common import object_id
from models.errors import Conflict, Forbidden, Invalid, NotFound, Unprocessable
from models.messages import Text
from models.photos import store_uploads
from models.tickets import Finding, ended_findings
from models.workflow import SAME, Effect, Effects, Step, Workflow, action, created

log = logging.getLogger("xiaoqu.patrols")

INDEXES = {
    "checkpoints": [IndexModel([("community_id", ASCENDING), ("code", ASCENDING)], unique=True)],
    "patrol_routes": [IndexModel([("community_id", ASCENDING)])],
    "patrol_plans": [IndexModel([("community_id", ASCENDING)])],
    "patrol_rounds": [IndexModel([("plan_id", ASCENDING), ("starts_at", DESCENDING)]),
                      IndexModel([("state", ASCENDING), ("ends_at", ASCENDING)])],
}

MAX_VISIT_PHOTOS = 3
SCHEDULER = Principal("system", "patrols")


def patrol_roles(principal: Principal, round_doc: dict) -> set[str]:
    if principal == SCHEDULER:
        return {"scheduler"}
    assigned = round_doc["assignee"]
    if not principal.is_staff:
        return set()
    roles = principal.roles.get(str(round_doc["community_id"]), frozenset())
    mine = assigned.get("staff_id") == principal.id or assigned.get("role") in roles
    return {"patroller"} if mine and permitted(principal, str(round_doc["community_id"]),
                                               "patrols.check_in") else set()


def _visit(step: Step) -> None:
    visit = step.fields["visit"]
    step.sets["visits"] = [*step.doc["visits"], visit]
    step.history.update(checkpoint=visit["checkpoint_id"], device=visit["device"])


ALARMS = {"miss": "patrol.missed", "late": "patrol.late"}


def _feed_alarm(step: Step, round_doc: dict) -> dict | None:
    if step.action.name not in ALARMS:
        return None
    return {"community_id": str(round_doc["community_id"]), "kind": ALARMS[step.action.name],
            "round": {"id": str(round_doc["_id"]), "plan_id": str(round_doc["plan_id"]),
                      "starts_at": round_doc["starts_at"].isoformat(),
                      "done": len(round_doc["visits"]), "of": len(round_doc["checkpoints"])}}


ROUND_WORKFLOW = Workflow("round", (
    action("check_in", {"open"}, SAME, {"patroller"}, "checked in", apply=_visit),
    action("finish", {"open"}, "completed", {"patroller"}, "finished", apply=_visit,
           stamp="completed_at"),
    # Not started `late_after_minutes` into its window: raised once, the round stays open.
    action("late", {"open"}, SAME, {"scheduler"}, "late", stamp="late_at"),
    action("miss", {"open"}, "missed", {"scheduler"}, "missed", stamp="missed_at"),
), patrol_roles, every=(Effect("patrol.feed", _feed_alarm),))


TAG_PREFIX = "XQCP"  # a checkpoint's tag: models/check_ins.tag_payload


def public(doc: dict) -> dict:
    """Any patrol record as the API shows it (its ObjectIds become strings when written)."""
    return {"id": str(doc["_id"]), **{k: v for k, v in doc.items() if k != "_id"}}


class PatrolManager:
    def __init__(self, db, clock, *, places, notifier, effects: Effects, tickets, photos,
                 photo_links):
        self.db = db
        self.clock = clock
        self.places = places
        self.notifier = notifier
        self.effects = effects
        self.tickets = tickets
        self.photos = photos
        self.photo_links = photo_links
        effects.register("patrol.feed", self._feed)

    async def _feed(self, key: str, payload: dict) -> None:
        await self.notifier.community_event(payload["community_id"], payload["kind"],
                                            round=payload["round"], permission="patrols.read")

    # -- set-up (patrols.manage) -------------------------------------------------

    async def add_checkpoint(self, community_id: str, *, code: str, name: str,
                             place_path: str | None, checklist: list[str]) -> dict:
        if place_path and await self.places.place_by_path(community_id, place_path) is None:
            raise Invalid("no such place", fields={"place_path": Text("no place {path}", path=repr(place_path))})
        doc = {"community_id": ObjectId(community_id), "code": code, "name": name,
               "place_path": place_path, "checklist": checklist, "created_at": self.clock.now()}
        try:
            await self.db.checkpoints.insert_one(doc)
        except DuplicateKeyError:
            raise Invalid("that code is taken here", fields={"code": "already a checkpoint"}) from None
        return doc

    async def add_route(self, community_id: str, *, name: str, checkpoints: list[str]) -> dict:
        ids = [object_id(c, "checkpoint") for c in checkpoints]
        found = await self.db.checkpoints.count_documents(
            {"community_id": ObjectId(community_id), "_id": {"$in": ids}})
        if found != len(set(ids)) or len(set(ids)) != len(ids):
            raise Invalid("each checkpoint once, of this community",
                          fields={"checkpoints": "unknown or repeated checkpoint"})
        doc = {"community_id": ObjectId(community_id), "name": name, "checkpoints": ids,
               "created_at": self.clock.now()}
        await self.db.patrol_routes.insert_one(doc)
        return doc

    async def add_plan(self, community_id: str, *, route_id: str, name: str, starts_at: datetime,
                       every_minutes: int, window_minutes: int, role: str | None,
                       staff_id: str | None, late_after_minutes: int | None = None) -> dict:
        route = await self.db.patrol_routes.find_one(
            {"_id": object_id(route_id, "route"), "community_id": ObjectId(community_id)})
        if route is None:
            raise Invalid("no such route", fields={"route_id": "unknown route"})
        if window_minutes > every_minutes:
            raise Invalid("a round ends before the next starts",
                          fields={"window_minutes": Text("at most every_minutes ({minutes})",
                                                            minutes=every_minutes)})
        if late_after_minutes is not None and late_after_minutes >= window_minutes:
            raise Invalid("a round is late before its window closes",
                          fields={"late_after_minutes": Text("less than window_minutes ({minutes})",
                                                                minutes=window_minutes)})
        if (role is None) == (staff_id is None):
            raise Invalid("assign a role or a person", fields={"role": "role or staff_id, one"})
        doc = {"community_id": ObjectId(community_id), "route_id": route["_id"], "name": name,
               "starts_at": starts_at, "every_minutes": every_minutes,
               "window_minutes": window_minutes, "late_after_minutes": late_after_minutes,
               "assignee": {"role": role, "staff_id": staff_id}, "created_at": self.clock.now()}
        await self.db.patrol_plans.insert_one(doc)
        return doc

    async def plans(self, community_id: str) -> list[dict]:
        return await self.db.patrol_plans.find({"community_id": ObjectId(community_id)}).to_list(200)

    async def checkpoints(self, community_id: str) -> list[dict]:
        return await self.db.checkpoints.find({"community_id": ObjectId(community_id)}).sort(
            "code", ASCENDING).to_list(1000)

    # -- rounds -------------------------------------------------------------------

    async def _plan(self, community_id: str, plan_id: str) -> dict:
        plan = await self.db.patrol_plans.find_one(
            {"_id": object_id(plan_id, "plan"), "community_id": ObjectId(community_id)})
        if plan is None:
            raise NotFound("plan not found")
        return plan

    @staticmethod
    def _window(plan: dict, now: datetime) -> tuple[datetime, datetime] | None:
        """[start, end) of the plan's round whose window holds `now`, if one does."""
        if now < plan["starts_at"]:
            return None
        every = timedelta(minutes=plan["every_minutes"])
        start = plan["starts_at"] + every * ((now - plan["starts_at"]) // every)
        end = start + timedelta(minutes=plan["window_minutes"])
        return (start, end) if now < end else None

    async def current_round(self, plan: dict, now: datetime) -> dict | None:
        """The round whose window holds `now` (made on first use: its id is plan + start)."""
        window = self._window(plan, now)
        return window and await self._round(plan, *window)

    async def round_now(self, community_id: str, plan_id: str) -> dict | None:
        """The plan's open window's round as it stands — unsaved if nobody has started it."""
        plan = await self._plan(community_id, plan_id)
        window = self._window(plan, self.clock.now())
        if window is None:
            return None
        doc = await self._new_round(plan, *window)
        return await self.db.patrol_rounds.find_one({"_id": doc["_id"]}) or doc

    async def _round(self, plan: dict, start: datetime, end: datetime) -> dict:
        doc = await self._new_round(plan, start, end)
        try:
            await self.db.patrol_rounds.insert_one(doc)
        except DuplicateKeyError:
            doc = await self.db.patrol_rounds.find_one({"_id": doc["_id"]})
        return doc

    async def _new_round(self, plan: dict, start: datetime, end: datetime) -> dict:
        route = await self.db.patrol_routes.find_one({"_id": plan["route_id"]})
        key = f"{plan['_id']}:{int(start.timestamp())}"
        late = plan.get("late_after_minutes")
        return {"_id": key, "community_id": plan["community_id"], "plan_id": plan["_id"],
               "plan_name": plan["name"], "starts_at": start, "ends_at": end,
               "late_by": late and start + timedelta(minutes=late), "checkpoints": route["checkpoints"],
               "assignee": plan["assignee"], "visits": [], "state": "open", "version": 1,
               "history": [created(SCHEDULER, self.clock.now(), "open")]}

    async def check_in(self, principal: Principal, community_id: str, plan_id: str, *, code: str,
                       device: str, scanned_at: datetime, location: dict | None,
                       answers: dict[str, str], note: str) -> dict:
        now = self.clock.now()
        proven = proof(principal, now, device=device, scanned_at=scanned_at, location=location)
        plan = await self._plan(community_id, plan_id)
        round_doc = await self.current_round(plan, now)
        if round_doc is None:
            raise Conflict("no round of this plan is open now", code="outside_window")
        if not patrol_roles(principal, round_doc):
            raise Forbidden("this plan is assigned to someone else")
        checkpoint = await self.db.checkpoints.find_one({"community_id": ObjectId(community_id),
                                                         "code": code})
        if checkpoint is None:
            raise Invalid("no such checkpoint", fields={"code": "unknown checkpoint code"})
        done = len(round_doc["visits"])
        expected = round_doc["checkpoints"][done] if done < len(round_doc["checkpoints"]) else None
        if checkpoint["_id"] != expected:
            raise Conflict("not the next checkpoint of the route", code="wrong_order",
                           extra={"expected": str(expected) if expected else None})
        problem = check_answers(answers, checkpoint["checklist"],
                                "answer the checkpoint's checklist with ok or problem")
        visit = {"checkpoint_id": checkpoint["_id"], **proven, "answers": answers, "note": note,
                 "problem": problem}
        last = done + 1 == len(round_doc["checkpoints"])
        updated, effects = await ROUND_WORKFLOW.run(self.db.patrol_rounds, principal, round_doc,
                                                    "finish" if last else "check_in",
                                                    {"visit": visit}, now, context=self)
        await self.effects.emit(effects)
        return updated

    # -- a visit's photos and the repair ticket of its problem ------------------------

    async def _visit(self, community_id: str, round_id: str, index: int) -> tuple[dict, dict]:
        doc = await self.db.patrol_rounds.find_one({"_id": round_id,
                                                    "community_id": ObjectId(community_id)})
        if doc is None:
            raise NotFound("round not found")
        if not 0 <= index < len(doc["visits"]):
            raise NotFound("visit not found")
        return doc, doc["visits"][index]

    async def _change_visit(self, doc: dict, index: int, change) -> dict:
        """Write `change(visit)` into the round, conditional on its version like the
        workflow's writes (a check-in rewrites the visits it read); re-read on a race."""
        for _ in range(5):
            visits = [dict(v) for v in doc["visits"]]
            change(visits[index])
            updated = await self.db.patrol_rounds.find_one_and_update(
                {"_id": doc["_id"], "version": doc["version"]},
                {"$set": {"visits": visits}, "$inc": {"version": 1}},
                return_document=ReturnDocument.AFTER)
            if updated is not None:
                return updated
            doc = await self.db.patrol_rounds.find_one({"_id": doc["_id"]})
        raise Conflict("the round changed meanwhile: try again", code="version_conflict")

    async def add_visit_photos(self, principal: Principal, community_id: str, round_id: str,
                               index: int, uploads: list[bytes]) -> dict:
        doc, visit = await self._visit(community_id, round_id, index)
        if visit["by"] != principal.id:
            raise Forbidden("only who checked in adds the visit's photos")
        if not uploads:
            raise Invalid("no photo in the upload", fields={"photo": "required"})
        room = MAX_VISIT_PHOTOS - len(visit.get("photos", []))
        if len(uploads) > room:
            raise Unprocessable(Text("at most {limit} photos per visit", limit=MAX_VISIT_PHOTOS),
                                code="too_many_photos",
                                fields={"photo": Text("{count} more allowed", count=room)})
        stored, entries = await store_uploads(
            self.photos, uploads, {"round_id": round_id, "community_id": community_id},
            by=principal.id, at=self.clock.now())

        def add(v: dict) -> None:
            v["photos"] = [*v.get("photos", []), *entries][:MAX_VISIT_PHOTOS]
        return await self._change_visit(doc, index, add)

    async def ticket_for_visit(self, principal: Principal, community_id: str, round_id: str,
                               index: int, category: str) -> tuple[dict, bool]:
        """The repair ticket of a visit's problem, in one step: made by the ticket manager at
        the checkpoint's place with the visit's note and photos, and linked both ways (the
        ticket's `source`, the visit's `ticket_id`). Asked again, the same ticket."""
        doc, visit = await self._visit(community_id, round_id, index)
        checkpoint = await self.db.checkpoints.find_one({"_id": visit["checkpoint_id"]})
        failed = failed_items(visit["answers"])
        ticket, made = await self.tickets.from_finding(principal, Finding(
            community_id, "patrol", f"{round_id}:{index}",
            f"巡更发现：{checkpoint['name']}（{checkpoint['code']}）{'、'.join(failed)}", visit["by"],
            visit["note"], checkpoint["place_path"], tuple(visit.get("photos", ())), category,
            visit["problem"]))
        if visit.get("ticket_id") != ticket["_id"]:
            await self._change_visit(doc, index, lambda v: v.update(ticket_id=ticket["_id"]))
        return ticket, made

    def view(self, doc: dict) -> dict:
        """A round as the API shows it: its visits' photos with signed links for an <img>."""
        shown = public(doc)
        shown["visits"] = [{**v, "photos": self.photo_links.linked(v.get("photos", []))}
                           for v in doc.get("visits", [])]
        return shown

    async def sweep(self, now: datetime) -> int:
        """Raise the rounds not started `late_after_minutes` into their window as late (once);
        mark the rounds whose window closed as missed; make the rounds nobody started so
        they are late and missed too (a plan's rounds since its last known one, and the
        open one). Answers how many were missed."""
        for plan in await self.db.patrol_plans.find({}).to_list(None):
            last = await self.db.patrol_rounds.find_one({"plan_id": plan["_id"]},
                                                        sort=[("starts_at", DESCENDING)])
            every = timedelta(minutes=plan["every_minutes"])
            start = last["starts_at"] + every if last else plan["starts_at"]
            while start + timedelta(minutes=plan["window_minutes"]) <= now:
                await self._round(plan, start, start + timedelta(minutes=plan["window_minutes"]))
                start += every
            late = plan.get("late_after_minutes")
            if late is not None and start + timedelta(minutes=late) <= now:
                await self.current_round(plan, now)
        for doc in await self.db.patrol_rounds.find(
                {"state": "open", "late_by": {"$lte": now}, "ends_at": {"$gt": now},
                 "late_at": None}).to_list(500):
            if doc["visits"]:
                continue  # started in time
            try:
                _, effects = await ROUND_WORKFLOW.run(self.db.patrol_rounds, SCHEDULER, doc, "late",
                                                      {}, now, context=self)
            except Conflict:  # checked in meanwhile
                continue
            await self.effects.emit(effects)
        missed = 0
        for doc in await self.db.patrol_rounds.find({"state": "open", "ends_at": {"$lte": now}}).to_list(500):
            try:
                _, effects = await ROUND_WORKFLOW.run(self.db.patrol_rounds, SCHEDULER, doc, "miss",
                                                      {}, now, context=self)
            except Conflict:  # checked in meanwhile: the next sweep sees it
                continue
            await self.effects.emit(effects)
            missed += 1
        return missed

    async def alarms(self, community_id: str, since: datetime) -> list[dict]:
        """Rounds raised late or missed since `since`, newest first: what the guard console
        and Today show (a late round that was then walked shows as such)."""
        docs = await self.db.patrol_rounds.find(
            {"community_id": ObjectId(community_id),
             "$or": [{"missed_at": {"$gte": since}}, {"late_at": {"$gte": since}}]},
            {"history": 0}).sort("starts_at", DESCENDING).to_list(200)
        return [{"round_id": d["_id"], "plan_id": d["plan_id"], "plan_name": d.get("plan_name"),
                 "kind": "missed" if d["state"] == "missed" else "late",
                 "at": d.get("missed_at") or d["late_at"], "state": d["state"],
                 "starts_at": d["starts_at"], "ends_at": d["ends_at"],
                 "done": len(d["visits"]), "of": len(d["checkpoints"])} for d in docs]

    async def routes(self, community_id: str) -> list[dict]:
        return await self.db.patrol_routes.find({"community_id": ObjectId(community_id)}).to_list(200)

    async def rounds(self, community_id: str, plan_id: str, limit: int = 50) -> list[dict]:
        plan = await self._plan(community_id, plan_id)
        return await self.db.patrol_rounds.find({"plan_id": plan["_id"]}).sort(
            "starts_at", DESCENDING).limit(limit).to_list(None)

    async def stats(self, community_id: str, plan_id: str, since: datetime) -> dict:
        """Completion and on-time figures of a plan's rounds that ended since `since`."""
        plan = await self._plan(community_id, plan_id)
        docs = await self.db.patrol_rounds.find(
            {"plan_id": plan["_id"], "ends_at": {"$gte": since, "$lte": self.clock.now()}},
            {"state": 1, "visits": 1, "late_by": 1}).to_list(None)
        completed = sum(d["state"] == "completed" for d in docs)
        return {"rounds": len(docs), "completed": completed,
                "missed": sum(d["state"] == "missed" for d in docs),
                "on_time": sum(map(on_time, docs)),
                "completion_rate": _rate(completed, len(docs)),
                "on_time_rate": _rate(sum(map(on_time, docs)), len(docs)),
                "problems_found": sum(v["problem"] for d in docs for v in d["visits"])}


def on_time(round_doc: dict) -> bool:
    """Walked whole, and started before the plan's `late_after_minutes` passed (if it has one)."""
    if round_doc["state"] != "completed":
        return False
    return not round_doc.get("late_by") or round_doc["visits"][0]["at"] < round_doc["late_by"]


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _judged(value: float | None, target: float, comparison: str, **counts) -> dict:
    meets = None if value is None else value >= target if comparison == ">=" else value <= target
    return {"value": value, "target": target, "comparison": comparison, "meets": meets, **counts}


async def kpi_figures(db, community_id: str, start: datetime, end: datetime) -> dict:
    """The KPI page's patrol figures for [start, end), beside the plans' promise (every round,
    on time, every problem repaired): over the rounds whose window closed in the period,
    completion (completed / all) and on-time rate (on_time / all), target 100 %; and the
    problems found in the period whose ticket has not ended (none made, or not closed or
    cancelled yet), target 0."""
    docs = await db.patrol_rounds.find(
        {"community_id": ObjectId(community_id), "ends_at": {"$gte": start, "$lt": end},
         "state": {"$in": ["completed", "missed"]}},
        {"state": 1, "visits": 1, "late_by": 1}).to_list(None)
    completed, timely = sum(d["state"] == "completed" for d in docs), sum(map(on_time, docs))
    found = await db.patrol_rounds.find(
        {"community_id": ObjectId(community_id), "starts_at": {"$gte": start, "$lt": end},
         "visits.problem": True}, {"visits": 1}).to_list(None)
    problems = [v for d in found for v in d["visits"] if v["problem"]]
    tickets = [v["ticket_id"] for v in problems if v.get("ticket_id")]
    ended = await ended_findings(db, tickets)
    return {
        "patrol_completion": _judged(_rate(completed, len(docs)), 1.0, ">=", completed=completed,
                                     rounds=len(docs)),
        "patrol_on_time": _judged(_rate(timely, len(docs)), 1.0, ">=", on_time=timely,
                                  rounds=len(docs)),
        "patrol_open_findings": _judged(len(problems) - sum(ended.values()), 0, "<=",
                                        found=len(problems), ticketed=len(tickets), **ended),
    }
