"""Service tickets (工单): repairs and complaints, one state machine for both.

    submitted → assigned → accepted → on_site → resolved → confirmed → followed_up → closed
                (dispatch)  (worker)   (check-in)  (notes)   (rating)   (return call)

plus: the worker returns a job with a reason (→ returned, to be dispatched again),
dispatch staff reassign, the resident cancels before work starts, reopens after
resolution (rework), and staff may ask the resident something (→ waiting_resident,
the only state where the resident must act, so SLA clocks pause there). Complaints
skip the on-site step. WORKFLOW (models/workflow.py) is the whole table: one
declaration per action says who (by role on the ticket) may take it from which
state, what it requires and writes, its SLA clock effects and what follows. Every change records who, when and why and
is written conditionally on the version read, so of two racing changes one wins
and the other gets 409.

Who is who on a ticket: "resident" is the resident it belongs to; "assignee" the
staff member it is assigned to; "dispatcher" and "followup" are staff holding
tickets.dispatch / tickets.followup (models/access.py) in the ticket's community.
"""

import copy
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from models import sla
from models.access import Principal, permitted
from models.bindings import rooms_in
from models.common import object_id
from models.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, RateLimited, \
    Unprocessable
from models.messages import Text
from models.photos import store_uploads
from models.workflow import PREVIOUS, Effect, Effects, Pending, Required, Step, Workflow, action
from server import metrics

log = logging.getLogger("xiaoqu.tickets")

INDEXES = {
    "tickets": [
        IndexModel([("community_id", ASCENDING), ("created_at", DESCENDING)]),
        IndexModel([("community_id", ASCENDING), ("state", ASCENDING)]),
        IndexModel([("resident_id", ASCENDING), ("created_at", DESCENDING)]),
        IndexModel([("assignee_id", ASCENDING), ("state", ASCENDING)]),
        IndexModel([("sla_next_at", ASCENDING)], sparse=True),
        IndexModel([("source_key", ASCENDING)], unique=True, sparse=True),  # one per finding
    ],
}

KINDS = ("repair", "complaint")
# Repair category -> suggested priority (customer service may change it).
REPAIR_CATEGORIES = {
    "gas_leak": "emergency", "pipe_burst": "emergency", "lift_trapped": "emergency",
    "water_leak": "urgent", "power_outage": "urgent", "lift": "urgent", "gate": "urgent",
    "drain": "quick", "electrical": "quick", "plumbing": "quick", "lock": "quick",
    "lights": "normal", "door_window": "normal", "wall_ceiling": "normal",
    "green_area": "normal", "other": "normal",
}
COMPLAINT_CATEGORIES = ("hygiene", "noise", "service", "building", "fire_lane", "facilities",
                        "suggestion", "other")
AREAS = ("room", "stairwell", "lift", "gate", "pipe", "lights", "green_area", "parking", "roof",
         "other")
STATES = ("submitted", "assigned", "accepted", "on_site", "resolved", "confirmed", "followed_up",
          "closed", "returned", "waiting_resident", "cancelled")
TERMINAL = frozenset({"closed", "cancelled"})
URGEABLE = frozenset({"submitted", "assigned", "accepted", "on_site", "returned"})
URGE_EVERY = timedelta(minutes=5)
MAX_PHOTOS = 9  # per stage: the resident's report, the worker's result
PHOTO_STAGES = {"report": frozenset({"submitted", "assigned", "accepted", "returned", "on_site",
                                     "waiting_resident"}),
                "work": frozenset({"accepted", "on_site"})}


def actor_roles(principal: Principal, ticket: dict) -> set[str]:
    """The caller's roles on this ticket, as the actions name them."""
    if not principal.is_staff:
        return {"resident"} if str(ticket["resident_id"]) == principal.id else set()
    cid = str(ticket["community_id"])
    roles = set()
    if ticket.get("assignee_id") == principal.id and permitted(principal, cid, "tickets.work"):
        roles.add("assignee")
    if permitted(principal, cid, "tickets.dispatch"):
        roles.add("dispatcher")
    if permitted(principal, cid, "tickets.followup"):
        roles.add("followup")
    return roles


# -- what each action writes besides its state and stamp (Step.context is the TicketManager) --

async def _dispatch(step: Step) -> None:
    manager, ticket, f = step.context, step.doc, step.fields
    cid = str(ticket["community_id"])
    assignee = await manager.check_assignee(cid, ticket, f.get("assignee_id"))
    step.history["assignee_id"] = assignee
    step.sets.update(assignee_id=assignee, team=f.get("team"))
    window = manager.check_window(f.get("appointment_start"), f.get("appointment_end"), step.now,
                                  "appointment", ticket["area"] == "room")
    if window:
        step.sets["appointment"] = window


def _resolve(step: Step) -> None:
    step.sets["resolution"] = {"notes": step.fields["notes"],
                               "materials": step.fields.get("materials") or [], "at": step.now,
                               "by": step.principal.id}


def _confirm(step: Step) -> None:
    step.sets.update(rating=step.fields["rating"], comment=step.fields.get("comment", ""))
    step.history["rating"] = step.fields["rating"]


def _follow_up(step: Step) -> None:
    f = step.fields
    step.sets["followup"] = {"notes": f["notes"], "at": step.now, "by": step.principal.id}
    if f.get("rating") is not None and step.doc.get("rating") is None:
        # Rated on the phone: recorded as the resident's rating, marked as such.
        step.sets.update(rating=f["rating"], comment=f.get("comment", ""), rated_by_phone=True)
        step.history["rating"] = f["rating"]


def _reopen(step: Step) -> None:
    step.sets.update(rating=None, comment=None)


def _ask(step: Step) -> None:
    step.sets["waiting_from"] = step.doc["state"]


# -- what follows a saved change (payloads are plain data: they can wait in a queue) --

def tell(word: str, text: str, *, with_reason: bool = False) -> Effect:
    """The resident is told (in-app, and by WeChat when they subscribed) — of staff's doing."""
    def build(step: Step, ticket: dict) -> dict | None:
        if not step.principal.is_staff or ticket["resident_id"] is None:  # (staff found it)
            return None
        said = f"{text}：{ticket['history'][-1]['reason']}" if with_reason else text
        return {"ticket": {k: ticket[k] for k in ("_id", "resident_id", "community_id")},
                "kind": word, "text": said}
    return Effect("ticket.tell_resident", build)


def worker_pass(*, revoke: bool = False, issue: bool = False) -> Effect:
    """In-room work: a door pass for the assigned worker's visit window, while it lasts."""
    def build(step: Step, ticket: dict) -> dict | None:
        old = step.doc.get("worker_pass_id") if revoke else None
        window = ticket.get("appointment")
        wanted = issue and window and ticket["area"] == "room"
        if not old and not wanted:
            return None
        return {"ticket_id": ticket["_id"], "community_id": str(ticket["community_id"]),
                "revoke": old, "issue": wanted and {
                    "staff_id": ticket["assignee_id"], "place_path": ticket["place_path"],
                    "start": window["start"], "end": window["end"]}}
    return Effect("ticket.worker_pass", build)


def _feed(step: Step, ticket: dict) -> dict:
    return {"community_id": str(ticket["community_id"]), "kind": f"ticket.{step.action.name}",
            "ticket": ticket_summary(ticket), "details": {"by": step.principal.id}}


FEED = Effect("ticket.feed", _feed)


def _reason(action_name: str) -> Required:
    return Required("reason", "a reason is required", Text("required to {action}", action=action_name))


def history_entry(principal: Principal, now: datetime, action_name: str, source, target, reason,
                  **extra) -> dict:
    return {"at": now, "by": principal.id, "by_kind": principal.kind, "action": action_name,
            "from": source, "to": target, "reason": reason, **extra}


def _entry(step: Step) -> dict:
    reason = step.fields.get("reason") or step.fields.get("notes") or ""
    return history_entry(step.principal, step.now, step.action.name, step.doc["state"],
                         step.target, reason)


async def _clocks(step: Step) -> None:
    """The SLA clocks of every action (pause while the resident must act, the first staff
    action answers a complaint, an agreed visit re-targets a normal repair) and the
    action's own `clocks`: "stop:<clock>", "start:<clock>", "clear:<clock>",
    "restart:<clock>" (only a clock the ticket has), "drop:*" (stop all, uncounted)."""
    ticket, principal, now = step.doc, step.principal, step.now
    if principal.is_staff and ticket.get("first_response_at") is None:
        step.sets["first_response_at"] = now
    clocks = copy.deepcopy(ticket["clocks"])
    running = [c for c in clocks.values() if c]
    if ticket["state"] in sla.RESIDENT_STATES:
        for clock in running:
            sla.resume(clock, now)
    if principal.is_staff and clocks.get("response"):
        sla.stop(clocks["response"], now)
    for effect in step.action.clocks:
        verb, _, name = effect.partition(":")
        if verb == "stop":
            sla.stop(clocks[name], now)
        elif verb == "clear":
            clocks[name] = None
        elif verb == "drop":
            for clock in running:
                sla.stop(clock, now, counted=False)
        elif verb == "start" or verb == "restart" and clocks.get(name):
            targets = await step.context.targets.get(str(ticket["community_id"]))
            budget = sla.on_site_budget(ticket["priority"], targets, now, None) \
                if name == "on_site" else timedelta(minutes=targets[f"{name}_minutes"])
            clocks[name] = sla.new_clock(now, budget)
    appointment = step.sets.get("appointment")
    if appointment and ticket["priority"] == "normal" and clocks.get("on_site"):
        # "Normal" repairs are due at the agreed visit time.
        on_site = clocks["on_site"]
        sla.retarget(on_site, appointment["end"] - on_site["start"], now)
    if step.target in sla.RESIDENT_STATES:
        for clock in clocks.values():
            if clock:
                sla.pause(clock, now)
    step.sets.update(clocks=clocks, sla_next_at=sla.sla_next_at(clocks))


ALL_OPEN = {"submitted", "assigned", "accepted", "returned"}
WORKFLOW = Workflow("ticket", (
    action("assign", {"submitted", "returned"}, "assigned", {"dispatcher"}, "assigned",
           stamp="assigned_at", apply=_dispatch,
           effects=(worker_pass(issue=True), tell("已派单", "已安排专人处理您的工单"))),
    action("reassign", {"assigned", "accepted", "on_site"}, "assigned", {"dispatcher"},
           "reassigned", requires=(_reason("reassign"),), apply=_dispatch,
           effects=(worker_pass(revoke=True, issue=True), tell("已改派", "已改派专人处理您的工单"))),
    action("accept", {"assigned"}, "accepted", {"assignee"}, "accepted", stamp="accepted_at"),
    action("return", {"assigned", "accepted"}, "returned", {"assignee"}, "returned",
           requires=(_reason("return"),), effects=(worker_pass(revoke=True),)),
    action("check_in", {"repair": {"accepted"}}, "on_site", {"assignee"}, "checked in",
           stamp="on_site_at", clocks=("stop:on_site",),
           effects=(tell("已到场", "维修人员已到达现场"),)),
    action("resolve", {"repair": {"on_site"}, "complaint": {"accepted"}}, "resolved", {"assignee"},
           "resolved", stamp="resolved_at", apply=_resolve, clocks=("start:followup",),
           requires=(Required("notes", "say what was done", "required to resolve"),),
           effects=(worker_pass(revoke=True), tell("待确认", "工单已处理完成，请确认并评价"))),
    action("ask", {"submitted", "accepted", "on_site"}, "waiting_resident",
           {"assignee", "dispatcher"}, "asked about", requires=(_reason("ask"),), apply=_ask,
           effects=(tell("待补充", "工作人员需要您补充信息", with_reason=True),)),
    action("answer", {"waiting_resident"}, PREVIOUS, {"resident"}, "answered",
           requires=(_reason("answer"),)),
    action("confirm", {"resolved"}, "confirmed", {"resident"}, "confirmed", stamp="confirmed_at",
           apply=_confirm, requires=(Required("rating", "a rating is required", "1 to 5"),)),
    action("reopen", {"resolved", "confirmed"}, "assigned", {"resident"}, "reopened",
           stamp="reopened_at", requires=(_reason("reopen"),), apply=_reopen,
           clocks=("clear:followup", "restart:on_site"), inc={"rework_count": 1}),
    action("cancel", ALL_OPEN, "cancelled", {"resident", "dispatcher"}, "cancelled",
           stamp="cancelled_at", clocks=("drop:*",),
           effects=(worker_pass(revoke=True), tell("已取消", "您的工单已取消"))),
    action("follow_up", {"resolved", "confirmed"}, "followed_up", {"followup"}, "followed up",
           stamp="followed_up_at", apply=_follow_up, clocks=("stop:followup",),
           requires=(Required("notes", "record the call", "required for a follow-up"),)),
    action("close", {"followed_up"}, "closed", {"followup"}, "closed", stamp="closed_at",
           effects=(tell("已办结", "工单已办结，感谢您的反馈"),)),
), actor_roles, kind_field="kind", previous_field="waiting_from",
    state_words={"on_site": "on site", "followed_up": "followed up",
                 "waiting_resident": "waiting for the resident"},
    prepare=_clocks, entry=_entry, every=(FEED,))
ACTIONS = WORKFLOW.names


def allowed_actions(principal: Principal, ticket: dict) -> list[str]:
    return WORKFLOW.allowed(principal, ticket)


def ticket_summary(ticket: dict) -> dict:
    """A ticket as the staff feed carries it."""
    return {"id": str(ticket["_id"]), "kind": ticket["kind"], "category": ticket["category"],
            "state": ticket["state"], "priority": ticket["priority"],
            "assignee_id": ticket.get("assignee_id"),
            "place": ticket.get("place_path") or ticket.get("area")}
def _clock_view(clock: dict | None) -> dict | None:
    if not clock:
        return None
    return {"due": clock["due"], "paused": clock["paused_at"] is not None,
            "stopped_at": clock["stopped_at"], "result": clock["result"],
            "near_breach": clock["near_flagged"]}


def public_ticket(doc: dict, principal: Principal) -> dict:
    view = {
        "id": str(doc["_id"]), "community_id": str(doc["community_id"]), "kind": doc["kind"],
        "category": doc["category"], "description": doc["description"], "area": doc["area"],
        "place_path": doc.get("place_path"), "gate_id": doc.get("gate_id"),
        "resident_id": doc["resident_id"] and str(doc["resident_id"]), "channel": doc["channel"],
        "source": doc.get("source"),
        "preferred_time": doc.get("preferred_time"), "appointment": doc.get("appointment"),
        "priority": doc["priority"], "suggested_priority": doc["suggested_priority"],
        "state": doc["state"], "assignee_id": doc.get("assignee_id"), "team": doc.get("team"),
        "rating": doc.get("rating"), "comment": doc.get("comment"),
        "resolution": doc.get("resolution"), "followup": doc.get("followup"),
        "rework_count": doc["rework_count"], "urge_count": doc["urge_count"],
        "last_urge_at": doc.get("last_urge_at"),
        "photos": [{k: p[k] for k in ("id", "thumbnail_id", "content_type", "stage", "at")}
                   for p in doc.get("photos", [])],
        "clocks": {name: _clock_view(c) for name, c in doc["clocks"].items() if c},
        "history": doc["history"], "created_at": doc["created_at"], "version": doc["version"],
        "allowed_actions": allowed_actions(principal, doc),
    }
    if principal.is_staff:  # escalations are the office's business
        view.update(flags=doc.get("flags", []), escalations=doc.get("escalations", []),
                    urges=doc.get("urges", []), worker_pass_id=doc.get("worker_pass_id"))
    return view


@dataclass(frozen=True)
class Finding:
    """A problem staff found on a round or an inspection, to be repaired: `source` names
    what found it ("patrol", "inspection": the ticket's channel) and `ref` the finding
    there, so one finding makes one ticket; `found_by`, who found it. `photos` are entries
    already stored (as models/photos.store_uploads makes them): the ticket shows the same
    files. `problem` false: the check found nothing wrong, so there is nothing to repair."""
    community_id: str
    source: str
    ref: str
    title: str
    found_by: str
    note: str = ""
    place_path: str | None = None
    photos: tuple[dict, ...] = ()
    category: str = "other"
    problem: bool = True


async def ended_findings(db, ticket_ids: list) -> dict[str, int]:
    """How many of these finding tickets have ended, by end state: `closed` (repaired and
    followed up) or `cancelled` (the office decided no repair is due). Either ends the
    finding: its ticket is the one it can have (`from_finding`), so nothing else could."""
    ended = dict.fromkeys(sorted(TERMINAL), 0)
    if ticket_ids:
        for row in await (await db.tickets.aggregate([
                {"$match": {"_id": {"$in": ticket_ids}, "state": {"$in": sorted(TERMINAL)}}},
                {"$group": {"_id": "$state", "n": {"$sum": 1}}}])).to_list(None):
            ended[row["_id"]] = row["n"]
    return ended


def _new_ticket(principal: Principal, now: datetime, reason: str, **fields) -> dict:
    """A submitted ticket's document: `fields` over the defaults of a new one."""
    return {"appointment": None, "state": "submitted", "assignee_id": None, "team": None,
            "rating": None, "comment": None, "rework_count": 0, "urge_count": 0, "urges": [],
            "last_urge_at": None, "photos": [], "photo_counts": {stage: 0 for stage in PHOTO_STAGES},
            "flags": [], "flagged": False, "escalations": [], "created_at": now,
            "updated_at": now, "version": 1,
            "history": [history_entry(principal, now, "submit", None, "submitted", reason)],
            **fields, "sla_next_at": sla.sla_next_at(fields["clocks"])}


class TicketManager:
    def __init__(self, db, redis, clock, *, places, bindings, staff, notifier, targets, photos,
                 photo_links, effects: Effects, passes=None):
        self.db = db
        self.redis = redis
        self.clock = clock
        self.places = places
        self.bindings = bindings
        self.staff = staff
        self.notifier = notifier
        self.targets = targets
        self.photos = photos
        self.photo_links = photo_links
        self.passes = passes
        self.effects = effects
        for kind, handler in (("ticket.feed", self._feed), ("ticket.tell_resident", self._tell_resident),
                              ("ticket.worker_pass", self._worker_pass)):
            effects.register(kind, handler)
        self.quiet = False  # True while replaying history (seeding): nobody is told

    def view(self, doc: dict, principal: Principal) -> dict:
        """The ticket as the caller may see it, its photos with signed links for an <img>."""
        ticket = public_ticket(doc, principal)
        for photo in ticket["photos"]:
            photo["url"] = self.photo_links.url(photo["id"])
            photo["thumbnail_url"] = self.photo_links.url(photo["thumbnail_id"] or photo["id"])
        return ticket

    async def linked_photo(self, file_id: str, expires: int, signature: str) -> tuple[bytes, str, float]:
        """A photo by its signed link: (bytes, content type, seconds the link has left)."""
        left = self.photo_links.check(file_id, expires, signature)
        data, content_type = await self.photos.get(file_id)
        return data, content_type, left

    def replaying(self, clock) -> "TicketManager":
        """A copy that acts at the times of `clock` and notifies nobody (demo seeding)."""
        twin = copy.copy(self)
        twin.clock = clock
        twin.quiet = True
        return twin

    # -- reading ----------------------------------------------------------------

    @staticmethod
    def scope(principal: Principal, community_id: str) -> dict:
        """The tickets a caller may see here: residents only their own."""
        query: dict = {"community_id": ObjectId(community_id)}
        if not principal.is_staff:
            query["resident_id"] = ObjectId(principal.id)
        return query

    async def get(self, principal: Principal, community_id: str, ticket_id: str) -> dict:
        doc = await self.db.tickets.find_one(
            {**self.scope(principal, community_id), "_id": object_id(ticket_id, "ticket")})
        if doc is None:
            raise NotFound("ticket not found")
        return doc

    async def own_ticket(self, principal: Principal, ticket_id: str) -> dict:
        doc = await self.db.tickets.find_one({"_id": object_id(ticket_id, "ticket"),
                                              "resident_id": ObjectId(principal.id)})
        if doc is None:
            raise NotFound("ticket not found")
        return doc

    async def search(self, principal: Principal, community_id: str, *, state=None, kind=None,
                   priority=None, assignee_id=None, flagged=None, limit=50, offset=0) -> list[dict]:
        query = self.scope(principal, community_id)
        for field, value in (("state", state), ("kind", kind), ("priority", priority),
                             ("assignee_id", assignee_id)):
            if value is not None:
                query[field] = value
        if flagged is not None:
            query["flagged"] = flagged
        return await self.db.tickets.find(query).sort("created_at", DESCENDING).skip(offset).limit(
            limit).to_list(None)

    # -- creating ---------------------------------------------------------------

    async def create(self, principal: Principal, community_id: str, *, kind: str, category: str,
                     description: str, area: str, place_path: str | None = None,
                     gate_id: str | None = None, preferred_start: datetime | None = None,
                     preferred_end: datetime | None = None, resident_id: str | None = None,
                     priority: str | None = None) -> dict:
        now = self.clock.now()
        on_behalf = principal.is_staff
        if on_behalf:  # customer service, for a phone call (the route checked tickets.create)
            if resident_id is None:
                raise Invalid("whose ticket is it?", fields={"resident_id": "required for staff"})
            await self._check_resident(community_id, resident_id)
        else:
            resident_id = principal.id
            priority = None  # residents do not pick priorities
        suggested = self._suggest(kind, category)
        if priority is not None:
            self._check_priority(kind, priority)
        place = await self._check_place(community_id, resident_id, kind, category, area, place_path,
                                        gate_id)
        preferred = self.check_window(preferred_start, preferred_end, now, "preferred",
                                       area == "room")
        targets = await self.targets.get(community_id)
        priority = priority or suggested
        clocks: dict = {"on_site": None, "response": None, "followup": None}
        if kind == "repair":
            clocks["on_site"] = sla.new_clock(now, sla.on_site_budget(
                priority, targets, now, preferred and preferred["end"]))
        else:
            clocks["response"] = sla.new_clock(now, timedelta(
                minutes=targets["complaint_response_minutes"]))
            if on_behalf:  # a person took the call: that is the first response
                sla.stop(clocks["response"], now)
        doc = _new_ticket(
            principal, now, "phone call" if on_behalf else "", community_id=ObjectId(community_id),
            kind=kind, category=category, description=description, **place,
            resident_id=ObjectId(resident_id), channel="phone" if on_behalf else "app",
            preferred_time=preferred, priority=priority, suggested_priority=suggested,
            clocks=clocks, first_response_at=now if on_behalf else None)
        await self.db.tickets.insert_one(doc)
        await self._staff_event(doc, "ticket.created", "created")
        return doc

    async def from_finding(self, principal: Principal, finding: Finding) -> tuple[dict, bool]:
        """The repair ticket of a finding — made now, or the one made before: (ticket, made).
        It belongs to no resident: staff found it, so nobody is told but the staff feed, and
        it is closed by the office's follow-up rather than a resident's confirmation. Who
        found it makes it, or the office (`findings.ticket`)."""
        cid, key = finding.community_id, f"{finding.source}:{finding.ref}"
        if finding.found_by != principal.id and not permitted(principal, cid, "findings.ticket"):
            raise Forbidden("only who found it or the office makes its ticket")
        if not finding.problem:
            raise Conflict("nothing was found wrong here", code="no_problem")
        if made := await self.db.tickets.find_one({"source_key": key}):
            return made, False
        suggested = self._suggest("repair", finding.category)
        if finding.place_path and await self.places.place_by_path(cid, finding.place_path) is None:
            raise Invalid("no such place", fields={"place_path": Text("no place {path}",
                                                                      path=repr(finding.place_path))})
        now = self.clock.now()
        targets = await self.targets.get(cid)
        clocks = {"on_site": sla.new_clock(now, sla.on_site_budget(suggested, targets, now, None)),
                  "response": None, "followup": None}
        photos = [{**p, "stage": "report"} for p in finding.photos[:MAX_PHOTOS]]
        description = f"{finding.title}：{finding.note}" if finding.note else finding.title
        doc = _new_ticket(
            principal, now, key, community_id=ObjectId(cid), kind="repair",
            category=finding.category, description=description, area="other",
            place_path=finding.place_path, gate_id=None, resident_id=None,
            channel=finding.source, source={"kind": finding.source, "ref": finding.ref},
            source_key=key, preferred_time=None, priority=suggested,
            suggested_priority=suggested, clocks=clocks, first_response_at=now, photos=photos,
            photo_counts={"report": len(photos), "work": 0})
        try:
            await self.db.tickets.insert_one(doc)
        except DuplicateKeyError:  # the same finding, sent twice at once: the other made it
            return await self.db.tickets.find_one({"source_key": key}), False
        await self._staff_event(doc, "ticket.created", "created")
        return doc, True

    @staticmethod
    def _suggest(kind: str, category: str) -> str:
        if kind == "repair" and category in REPAIR_CATEGORIES:
            return REPAIR_CATEGORIES[category]
        if kind == "complaint" and category in COMPLAINT_CATEGORIES:
            return "complaint"
        choices = REPAIR_CATEGORIES if kind == "repair" else COMPLAINT_CATEGORIES
        raise Invalid("unknown category",
                      fields={"category": Text("one of {choices}", choices=", ".join(choices))})

    @staticmethod
    def _check_priority(kind: str, priority: str) -> None:
        allowed = sla.REPAIR_PRIORITIES if kind == "repair" else ("complaint",)
        if priority not in allowed:
            raise Invalid("priority does not fit the ticket",
                          fields={"priority": Text("{choices} for a {noun}",
                                                   choices=", ".join(allowed), noun=kind)})

    async def _check_resident(self, community_id: str, resident_id: str) -> None:
        if not await self.bindings.is_resident_of(resident_id, community_id):
            raise Invalid("not a resident here", fields={"resident_id": "no room in this community"})

    async def _check_place(self, community_id, resident_id, kind, category, area, place_path,
                           gate_id) -> dict:
        if area == "room":
            rooms = rooms_in(await self.bindings.active_links(resident_id), community_id)
            if place_path not in rooms:
                raise Invalid("not the resident's room",
                              fields={"place_path": "one of the resident's rooms"})
        elif place_path and await self.places.place_by_path(community_id, place_path) is None:
            raise Invalid("no such place", fields={"place_path": Text("no place {path}", path=repr(place_path))})
        if area == "gate" or category == "gate":
            if not gate_id:
                raise Invalid("which gate?", fields={"gate_id": "required for a gate ticket"})
            try:
                await self.places.gate(community_id, gate_id)
            except NotFound:
                raise Invalid("no such gate", fields={"gate_id": "unknown gate"}) from None
        elif gate_id:
            raise Invalid("only gate tickets name a gate", fields={"gate_id": "set area to gate"})
        return {"area": area, "place_path": place_path, "gate_id": gate_id}

    @staticmethod
    def check_window(start, end, now, name, allowed=True) -> dict | None:
        if start is None and end is None:
            return None
        if not allowed:
            raise Invalid("a visit time is only for in-room work", fields={f"{name}_start": "not here"})
        if start is None or end is None or end <= start or end - start > timedelta(days=1):
            raise Invalid("bad time window", fields={f"{name}_end": "after the start, within a day"})
        if end <= now:
            raise Invalid("time window is over", fields={f"{name}_end": "must be in the future"})
        return {"start": start, "end": end}

    # -- the state machine (WORKFLOW) -------------------------------------------

    async def transition(self, principal: Principal, community_id: str, ticket_id: str,
                         action: str, **fields) -> dict:
        ticket = await self.get(principal, community_id, ticket_id)
        updated, effects = await WORKFLOW.run(self.db.tickets, principal, ticket, action, fields,
                                              self.clock.now(), context=self)
        await self._emit(effects)
        return updated

    async def check_assignee(self, community_id: str, ticket: dict, assignee_id: str | None) -> str:
        if not assignee_id:
            raise Invalid("who should do it?", fields={"assignee_id": "required"})
        member = await self.staff.active_member(community_id, assignee_id)
        worker = member and Principal("staff", assignee_id, {
            community_id: frozenset(member["roles"][community_id])})
        if not worker or not permitted(worker, community_id, "tickets.work"):
            raise Invalid("not a worker here", fields={"assignee_id": "no such worker here"})
        if assignee_id == ticket.get("assignee_id") and ticket["state"] != "returned":
            raise Invalid("already assigned to them", fields={"assignee_id": "choose someone else"})
        return assignee_id

    async def _emit(self, effects: list) -> None:
        if not self.quiet:  # replaying history: nobody is told, no pass is made
            await self.effects.emit(effects)

    async def _tell_resident(self, key: str, payload: dict) -> None:
        await self.notifier.tell_resident(key, payload["ticket"], payload["kind"], payload["text"])

    async def _feed(self, key: str, payload: dict) -> None:
        await self.notifier.community_event(payload["community_id"], payload["kind"],
                                            payload.get("to"), ticket=payload["ticket"],
                                            **payload["details"])

    async def _worker_pass(self, key: str, payload: dict) -> None:
        """Revoke the old pass, issue the new one. A pass that cannot be issued or revoked
        is logged: the ticket's change stands."""
        if self.passes is None:
            return
        cid, ticket_id = payload["community_id"], payload["ticket_id"]
        try:
            if payload["revoke"]:
                await self.passes.revoke_worker_pass(cid, payload["revoke"])
                await self.db.tickets.update_one({"_id": ticket_id, "worker_pass_id": payload["revoke"]},
                                                 {"$set": {"worker_pass_id": None}})
            if issue := payload["issue"]:
                ticket = await self.db.tickets.find_one({"_id": ticket_id})
                if ticket.get("worker_pass_key") == key:
                    return  # issued by an earlier try
                pass_id = await self.passes.issue_worker_pass(
                    cid, issue["staff_id"], issue["place_path"], issue["start"], issue["end"],
                    f"ticket {ticket_id}")
                await self.db.tickets.update_one(
                    {"_id": ticket_id}, {"$set": {"worker_pass_id": pass_id, "worker_pass_key": key}})
        except DomainError as exc:
            log.warning("worker pass for ticket %s: %s", ticket_id, exc.message)

    async def _staff_event(self, ticket: dict, kind: str, key: str, to: list[str] | None = None,
                           **details) -> None:
        await self._emit([Pending(f"ticket:{ticket['_id']}:{key}", "ticket.feed", {
            "community_id": str(ticket["community_id"]), "kind": kind, "to": to,
            "ticket": ticket_summary(ticket), "details": details})])

    # -- priority, urges --------------------------------------------------------

    async def set_priority(self, principal: Principal, community_id: str, ticket_id: str,
                           priority: str, reason: str) -> dict:
        ticket = await self.get(principal, community_id, ticket_id)
        self._check_priority(ticket["kind"], priority)
        if ticket["state"] in TERMINAL:
            raise Conflict(Text("the ticket is {state}", state=ticket["state"]), code="illegal_transition",
                           extra={"state": ticket["state"], "allowed": []})
        if priority == ticket["priority"]:
            return ticket
        now = self.clock.now()
        clocks = copy.deepcopy(ticket["clocks"])
        on_site = clocks.get("on_site")
        if on_site and on_site["stopped_at"] is None:
            targets = await self.targets.get(community_id)
            agreed = (ticket.get("appointment") or ticket.get("preferred_time") or {}).get("end")
            sla.retarget(on_site, sla.on_site_budget(priority, targets, on_site["start"], agreed), now)
        entry = history_entry(principal, now, "priority", ticket["state"], ticket["state"], reason,
                            priority_from=ticket["priority"], priority_to=priority)
        updated = await self.db.tickets.find_one_and_update(
            {"_id": ticket["_id"], "version": ticket["version"]},
            {"$set": {"priority": priority, "clocks": clocks, "sla_next_at": sla.sla_next_at(clocks),
                      "updated_at": now},
             "$push": {"history": entry}, "$inc": {"version": 1}},
            return_document=ReturnDocument.AFTER)
        if updated is None:
            raise Conflict("the ticket changed meanwhile; reload it", code="stale")
        await self._staff_event(updated, "ticket.priority", updated["version"], by=principal.id)
        return updated

    async def urge(self, principal: Principal, community_id: str, ticket_id: str) -> dict:
        """催单: at most once per URGE_EVERY per ticket, only while work is pending."""
        ticket = await self.get(principal, community_id, ticket_id)
        now = self.clock.now()
        # Urges leave `version` alone: they do not conflict with a concurrent transition.
        updated = await self.db.tickets.find_one_and_update(
            {"_id": ticket["_id"], "state": {"$in": sorted(URGEABLE)},
             "$or": [{"last_urge_at": None}, {"last_urge_at": {"$lte": now - URGE_EVERY}}]},
            {"$set": {"last_urge_at": now}, "$inc": {"urge_count": 1},
             "$push": {"urges": {"at": now, "by": principal.id}}},
            return_document=ReturnDocument.AFTER)
        if updated is None:
            fresh = await self.get(principal, community_id, ticket_id)
            if fresh["state"] not in URGEABLE:
                raise Conflict(Text("a {state} ticket cannot be urged", state=fresh["state"]),
                               code="not_urgeable")
            wait = fresh["last_urge_at"] + URGE_EVERY - now
            raise RateLimited("you urged this ticket a moment ago",
                              retry_after=max(int(wait.total_seconds()) + 1, 1))
        await self._staff_event(updated, "ticket.urged", f"urge:{updated['urge_count']}",
                                urge_count=updated["urge_count"])
        return updated

    # -- SLA escalation (called by the SlaWatcher) -------------------------------

    async def escalate(self, ticket: dict, now: datetime) -> int:
        clocks = copy.deepcopy(ticket["clocks"])
        events = [(name, level) for name, clock in clocks.items()
                  if clock and (level := sla.tick(clock, now))]
        cid = str(ticket["community_id"])
        notify = sorted(set(await self._managers(cid)) |
                        ({ticket["assignee_id"]} if ticket.get("assignee_id") else set()))
        update: dict = {"$set": {"clocks": clocks, "sla_next_at": sla.sla_next_at(clocks)},
                        "$inc": {"version": 1}}
        if events:
            update["$set"]["flagged"] = True
            update["$addToSet"] = {"flags": {"$each": [f"{lvl}:{name}" for name, lvl in events]}}
            update["$push"] = {"escalations": {"$each": [
                {"at": now, "clock": name, "level": lvl, "notified": notify} for name, lvl in events]}}
        updated = await self.db.tickets.find_one_and_update(
            {"_id": ticket["_id"], "version": ticket["version"]}, update,
            return_document=ReturnDocument.AFTER)
        if updated is None:  # changed meanwhile: the next pass sees the new state
            return 0
        for name, level in events:
            metrics.SLA_ESCALATIONS.labels(level, name).inc()
            await self._staff_event(updated, f"sla.{level}", f"{updated['version']}:{name}:{level}",
                                    to=notify, clock=name,
                                    due=clocks[name]["due"].isoformat())
        return len(events)

    async def _managers(self, community_id: str) -> list[str]:
        return await self.staff.holding(community_id, "manager")

    # -- photos -----------------------------------------------------------------

    async def add_photos(self, principal: Principal, community_id: str, ticket_id: str,
                         uploads: list[bytes]) -> dict:
        ticket = await self.get(principal, community_id, ticket_id)
        roles = actor_roles(principal, ticket)
        stage = "work" if "assignee" in roles else "report" if roles & {"resident", "dispatcher"} \
            else None
        if stage is None:
            raise Forbidden("only the resident, customer service or the worker add photos")
        if ticket["state"] not in PHOTO_STAGES[stage]:
            raise Conflict(Text("no {stage} photos on a {state} ticket", stage=stage, state=ticket["state"]),
                           code="illegal_transition",
                           extra={"state": ticket["state"], "allowed": []})
        if not uploads:
            raise Invalid("no photo in the upload", fields={"photo": "required"})
        room = MAX_PHOTOS - ticket["photo_counts"][stage]
        if len(uploads) > room:
            raise Unprocessable(Text("at most {limit} {stage} photos per ticket", limit=MAX_PHOTOS,
                                     stage=stage), code="too_many_photos",
                                fields={"photo": Text("{count} more allowed", count=room)})
        stored, entries = await store_uploads(
            self.photos, uploads, {"ticket_id": str(ticket["_id"]), "community_id": community_id},
            stage=stage, by=principal.id, at=self.clock.now())
        updated = await self.db.tickets.find_one_and_update(
            {"_id": ticket["_id"], f"photo_counts.{stage}": {"$lte": MAX_PHOTOS - len(entries)}},
            {"$push": {"photos": {"$each": entries}},
             "$inc": {f"photo_counts.{stage}": len(entries)}},
            return_document=ReturnDocument.AFTER)
        if updated is None:  # someone else's upload took the last places: keep nothing
            for file_id in stored:
                await self.photos.delete(file_id)
            raise Unprocessable(Text("at most {limit} {stage} photos per ticket", limit=MAX_PHOTOS,
                                     stage=stage), code="too_many_photos",
                                fields={"photo": "no more allowed"})
        return updated

    async def photo(self, principal: Principal, community_id: str, ticket_id: str, photo_id: str,
                    thumbnail: bool = False) -> tuple[bytes, str]:
        ticket = await self.get(principal, community_id, ticket_id)
        entry = next((p for p in ticket.get("photos", []) if p["id"] == photo_id), None)
        if entry is None:
            raise NotFound("photo not found")
        file_id = entry["thumbnail_id"] if thumbnail and entry["thumbnail_id"] else entry["id"]
        return await self.photos.get(file_id)
