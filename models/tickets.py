"""Service tickets (工单): repairs and complaints, one state machine for both.

    submitted → assigned → accepted → on_site → resolved → confirmed → followed_up → closed
                (dispatch)  (worker)   (check-in)  (notes)   (rating)   (return call)

plus: the worker returns a job with a reason (→ returned, to be dispatched again),
dispatch staff reassign, the resident cancels before work starts, reopens after
resolution (rework), and staff may ask the resident something (→ waiting_resident,
the only state where the resident must act, so SLA clocks pause there). Complaints
skip the on-site step. RULES is the whole table: who (by role on the ticket) may
take which action from which state. Every change records who, when and why and
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

from models import sla
from models.access import Principal, permitted
from models.bindings import rooms_in
from models.common import object_id
from models.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, RateLimited, \
    Unprocessable
from models.photos import process_upload

log = logging.getLogger("xiaoqu.tickets")

INDEXES = {
    "tickets": [
        IndexModel([("community_id", ASCENDING), ("created_at", DESCENDING)]),
        IndexModel([("community_id", ASCENDING), ("state", ASCENDING)]),
        IndexModel([("resident_id", ASCENDING), ("created_at", DESCENDING)]),
        IndexModel([("assignee_id", ASCENDING), ("state", ASCENDING)]),
        IndexModel([("sla_next_at", ASCENDING)], sparse=True),
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
PREVIOUS = "<previous>"  # "answer" goes back to the state the question was asked in


@dataclass(frozen=True)
class Rule:
    action: str
    sources: frozenset[str]
    target: str
    actors: frozenset[str]
    kinds: frozenset[str] = frozenset(KINDS)


def _rule(action, sources, target, actors, kinds=KINDS) -> Rule:
    return Rule(action, frozenset(sources), target, frozenset(actors), frozenset(kinds))


RULES = (
    _rule("assign", {"submitted", "returned"}, "assigned", {"dispatcher"}),
    _rule("reassign", {"assigned", "accepted", "on_site"}, "assigned", {"dispatcher"}),
    _rule("accept", {"assigned"}, "accepted", {"assignee"}),
    _rule("return", {"assigned", "accepted"}, "returned", {"assignee"}),
    _rule("check_in", {"accepted"}, "on_site", {"assignee"}, {"repair"}),
    _rule("resolve", {"on_site"}, "resolved", {"assignee"}, {"repair"}),
    _rule("resolve", {"accepted"}, "resolved", {"assignee"}, {"complaint"}),
    _rule("ask", {"submitted", "accepted", "on_site"}, "waiting_resident", {"assignee", "dispatcher"}),
    _rule("answer", {"waiting_resident"}, PREVIOUS, {"resident"}),
    _rule("confirm", {"resolved"}, "confirmed", {"resident"}),
    _rule("reopen", {"resolved", "confirmed"}, "assigned", {"resident"}),
    _rule("cancel", {"submitted", "assigned", "accepted", "returned"}, "cancelled",
          {"resident", "dispatcher"}),
    _rule("follow_up", {"resolved", "confirmed"}, "followed_up", {"followup"}),
    _rule("close", {"followed_up"}, "closed", {"followup"}),
)
ACTIONS = tuple(dict.fromkeys(r.action for r in RULES))
NEEDS_REASON = frozenset({"reassign", "return", "ask", "answer", "reopen"})
# For messages: "a repair that is on site cannot be followed up".
DONE_WORDS = {"assign": "assigned", "reassign": "reassigned", "accept": "accepted",
              "return": "returned", "check_in": "checked in", "resolve": "resolved",
              "ask": "asked about", "answer": "answered", "confirm": "confirmed",
              "reopen": "reopened", "cancel": "cancelled", "follow_up": "followed up",
              "close": "closed"}
STATE_WORDS = {"on_site": "on site", "followed_up": "followed up",
               "waiting_resident": "waiting for the resident"}
STAMPS = {"assign": "assigned_at", "accept": "accepted_at", "check_in": "on_site_at",
          "resolve": "resolved_at", "confirm": "confirmed_at", "follow_up": "followed_up_at",
          "close": "closed_at", "cancel": "cancelled_at", "reopen": "reopened_at"}
# What the resident is told (in-app, and by WeChat when they subscribed): (status word, text).
RESIDENT_NOTICES = {
    "assign": ("已派单", "已安排专人处理您的工单"),
    "reassign": ("已改派", "已改派专人处理您的工单"),
    "check_in": ("已到场", "维修人员已到达现场"),
    "resolve": ("待确认", "工单已处理完成，请确认并评价"),
    "ask": ("待补充", "工作人员需要您补充信息"),
    "cancel": ("已取消", "您的工单已取消"),
    "close": ("已办结", "工单已办结，感谢您的反馈"),
}


def actor_roles(principal: Principal, ticket: dict) -> set[str]:
    """The caller's roles on this ticket, as RULES name them."""
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


def rules_from(ticket: dict) -> list[Rule]:
    return [r for r in RULES if ticket["state"] in r.sources and ticket["kind"] in r.kinds]


def allowed_actions(principal: Principal, ticket: dict) -> list[str]:
    roles = actor_roles(principal, ticket)
    return sorted({r.action for r in rules_from(ticket) if r.actors & roles})


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
        "resident_id": str(doc["resident_id"]), "channel": doc["channel"],
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


class TicketManager:
    def __init__(self, db, redis, clock, *, places, bindings, staff, notifier, targets, photos,
                 photo_links, passes=None):
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
        preferred = self._check_window(preferred_start, preferred_end, now, "preferred",
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
        doc = {
            "community_id": ObjectId(community_id), "kind": kind, "category": category,
            "description": description, **place, "resident_id": ObjectId(resident_id),
            "channel": "phone" if on_behalf else "app", "preferred_time": preferred,
            "appointment": None, "priority": priority, "suggested_priority": suggested,
            "state": "submitted", "assignee_id": None, "team": None, "rating": None,
            "comment": None, "rework_count": 0, "urge_count": 0, "urges": [], "last_urge_at": None,
            "photos": [], "photo_counts": {stage: 0 for stage in PHOTO_STAGES}, "flags": [],
            "flagged": False, "escalations": [], "clocks": clocks,
            "sla_next_at": sla.sla_next_at(clocks),
            "first_response_at": now if on_behalf else None, "created_at": now,
            "updated_at": now, "version": 1,
            "history": [self._entry(principal, now, "submit", None, "submitted",
                                    "phone call" if on_behalf else "")],
        }
        await self.db.tickets.insert_one(doc)
        await self._staff_event(doc, "ticket.created")
        return doc

    @staticmethod
    def _suggest(kind: str, category: str) -> str:
        if kind == "repair" and category in REPAIR_CATEGORIES:
            return REPAIR_CATEGORIES[category]
        if kind == "complaint" and category in COMPLAINT_CATEGORIES:
            return "complaint"
        choices = REPAIR_CATEGORIES if kind == "repair" else COMPLAINT_CATEGORIES
        raise Invalid("unknown category", fields={"category": f"one of {', '.join(choices)}"})

    @staticmethod
    def _check_priority(kind: str, priority: str) -> None:
        allowed = sla.REPAIR_PRIORITIES if kind == "repair" else ("complaint",)
        if priority not in allowed:
            raise Invalid("priority does not fit the ticket",
                          fields={"priority": f"one of {', '.join(allowed)} for a {kind}"})

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
            raise Invalid("no such place", fields={"place_path": f"no place {place_path!r}"})
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
    def _check_window(start, end, now, name, allowed=True) -> dict | None:
        if start is None and end is None:
            return None
        if not allowed:
            raise Invalid("a visit time is only for in-room work", fields={f"{name}_start": "not here"})
        if start is None or end is None or end <= start or end - start > timedelta(days=1):
            raise Invalid("bad time window", fields={f"{name}_end": "after the start, within a day"})
        if end <= now:
            raise Invalid("time window is over", fields={f"{name}_end": "must be in the future"})
        return {"start": start, "end": end}

    # -- the state machine ------------------------------------------------------

    async def transition(self, principal: Principal, community_id: str, ticket_id: str,
                         action: str, *, reason: str = "", assignee_id: str | None = None,
                         team: str | None = None, appointment_start: datetime | None = None,
                         appointment_end: datetime | None = None, notes: str = "",
                         materials: list[dict] | None = None, rating: int | None = None,
                         comment: str = "") -> dict:
        ticket = await self.get(principal, community_id, ticket_id)
        rule = self._rule_for(principal, ticket, action)
        now = self.clock.now()
        target = ticket.get("waiting_from") if rule.target == PREVIOUS else rule.target
        if action in NEEDS_REASON and not reason.strip():
            raise Invalid("a reason is required", fields={"reason": f"required to {action}"})
        sets: dict = {"state": target, "updated_at": now}
        extra: dict = {}
        if action in ("assign", "reassign"):
            extra["assignee_id"] = await self._check_assignee(community_id, ticket, assignee_id)
            sets.update(assignee_id=extra["assignee_id"], team=team)
            window = self._check_window(appointment_start, appointment_end, now, "appointment",
                                        ticket["area"] == "room")
            if window:
                sets["appointment"] = window
        elif action == "resolve":
            if not notes.strip():
                raise Invalid("say what was done", fields={"notes": "required to resolve"})
            sets["resolution"] = {"notes": notes, "materials": materials or [], "at": now,
                                  "by": principal.id}
        elif action == "confirm":
            if rating is None:
                raise Invalid("a rating is required", fields={"rating": "1 to 5"})
            sets.update(rating=rating, comment=comment)
            extra["rating"] = rating
        elif action == "follow_up":
            if not notes.strip():
                raise Invalid("record the call", fields={"notes": "required for a follow-up"})
            sets["followup"] = {"notes": notes, "at": now, "by": principal.id}
            if rating is not None and ticket.get("rating") is None:
                # Rated on the phone: recorded as the resident's rating, marked as such.
                sets.update(rating=rating, comment=comment, rated_by_phone=True)
                extra["rating"] = rating
        elif action == "reopen":
            sets.update(rating=None, comment=None)
        elif action == "ask":
            sets["waiting_from"] = ticket["state"]
        if action in STAMPS:
            sets[STAMPS[action]] = now
        if principal.is_staff and ticket.get("first_response_at") is None:
            sets["first_response_at"] = now
        clocks = await self._advance_clocks(ticket, principal, action, target, now,
                                            sets.get("appointment"))
        sets.update(clocks=clocks, sla_next_at=sla.sla_next_at(clocks))
        entry = self._entry(principal, now, action, ticket["state"], target, reason or notes, **extra)
        update: dict = {"$set": sets, "$push": {"history": entry}, "$inc": {"version": 1}}
        if action == "reopen":
            update["$inc"]["rework_count"] = 1
        updated = await self.db.tickets.find_one_and_update(
            {"_id": ticket["_id"], "version": ticket["version"]}, update,
            return_document=ReturnDocument.AFTER)
        if updated is None:
            raise Conflict("the ticket changed meanwhile; reload it", code="stale")
        await self._after(principal, action, ticket, updated)
        return updated

    def _rule_for(self, principal: Principal, ticket: dict, action: str) -> Rule:
        possible = rules_from(ticket)
        rule = next((r for r in possible if r.action == action), None)
        if rule is None:
            raise Conflict(f"a {ticket['kind']} that is {STATE_WORDS.get(ticket['state'], ticket['state'])}"
                           f" cannot be {DONE_WORDS[action]}",
                           code="illegal_transition",
                           extra={"state": ticket["state"],
                                  "allowed": allowed_actions(principal, ticket)})
        if not rule.actors & actor_roles(principal, ticket):
            raise Forbidden(f"{action} is for the {' or '.join(sorted(rule.actors))}")
        return rule

    async def _check_assignee(self, community_id: str, ticket: dict, assignee_id: str | None) -> str:
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

    async def _advance_clocks(self, ticket, principal, action, target, now, appointment) -> dict:
        clocks = copy.deepcopy(ticket["clocks"])
        running = [c for c in clocks.values() if c]
        if ticket["state"] in sla.RESIDENT_STATES:
            for clock in running:
                sla.resume(clock, now)
        if principal.is_staff and clocks.get("response"):
            sla.stop(clocks["response"], now)
        if action == "check_in":
            sla.stop(clocks["on_site"], now)
        elif action == "resolve":
            targets = await self.targets.get(str(ticket["community_id"]))
            clocks["followup"] = sla.new_clock(now, timedelta(minutes=targets["followup_minutes"]))
        elif action == "follow_up":
            sla.stop(clocks["followup"], now)
        elif action == "reopen":
            clocks["followup"] = None
            if ticket["kind"] == "repair":  # rework: the worker must come again, on the clock
                targets = await self.targets.get(str(ticket["community_id"]))
                clocks["on_site"] = sla.new_clock(
                    now, sla.on_site_budget(ticket["priority"], targets, now, None))
        elif action == "cancel":
            for clock in running:
                sla.stop(clock, now, counted=False)
        if appointment and ticket["priority"] == "normal" and clocks.get("on_site"):
            # "Normal" repairs are due at the agreed visit time.
            on_site = clocks["on_site"]
            sla.retarget(on_site, appointment["end"] - on_site["start"], now)
        if target in sla.RESIDENT_STATES:
            for clock in clocks.values():
                if clock:
                    sla.pause(clock, now)
        return clocks

    @staticmethod
    def _entry(principal: Principal, now: datetime, action: str, source, target, reason,
               **extra) -> dict:
        return {"at": now, "by": principal.id, "by_kind": principal.kind, "action": action,
                "from": source, "to": target, "reason": reason, **extra}

    async def _after(self, principal: Principal, action: str, before: dict, ticket: dict) -> None:
        """What follows a change: the feed, the resident, the worker's door pass."""
        await self._worker_pass(action, before, ticket)
        await self._staff_event(ticket, f"ticket.{action}", by=principal.id)
        if action in RESIDENT_NOTICES and principal.is_staff and not self.quiet:
            word, text = RESIDENT_NOTICES[action]
            if action == "ask":
                text = f"{text}：{ticket['history'][-1]['reason']}"
            await self.notifier.tell_resident(ticket, word, text)

    async def _worker_pass(self, action: str, before: dict, ticket: dict) -> None:
        """In-room work: a door pass for the assigned worker's visit window, while it lasts.

        The ticket's change is already made: a pass that cannot be issued or revoked
        is logged, not turned into a failed request.
        """
        if self.passes is None or self.quiet:
            return
        cid = str(ticket["community_id"])
        old = before.get("worker_pass_id")
        window = ticket.get("appointment")
        try:
            if old and action in ("reassign", "return", "resolve", "cancel"):
                await self.passes.revoke_worker_pass(cid, old)
                await self._set_pass(ticket, None)
            if action in ("assign", "reassign") and window and ticket["area"] == "room":
                await self._set_pass(ticket, await self.passes.issue_worker_pass(
                    cid, ticket["assignee_id"], ticket["place_path"], window["start"],
                    window["end"], f"ticket {ticket['_id']}"))
        except DomainError as exc:
            log.warning("worker pass for ticket %s: %s", ticket["_id"], exc.message)

    async def _set_pass(self, ticket: dict, pass_id: str | None) -> None:
        await self.db.tickets.update_one({"_id": ticket["_id"]}, {"$set": {"worker_pass_id": pass_id}})
        ticket["worker_pass_id"] = pass_id

    async def _staff_event(self, ticket: dict, kind: str, to: list[str] | None = None,
                           **details) -> None:
        if not self.quiet:
            await self.notifier.staff_event(str(ticket["community_id"]), kind, ticket, to, **details)

    # -- priority, urges --------------------------------------------------------

    async def set_priority(self, principal: Principal, community_id: str, ticket_id: str,
                           priority: str, reason: str) -> dict:
        ticket = await self.get(principal, community_id, ticket_id)
        self._check_priority(ticket["kind"], priority)
        if ticket["state"] in TERMINAL:
            raise Conflict(f"the ticket is {ticket['state']}", code="illegal_transition",
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
        entry = self._entry(principal, now, "priority", ticket["state"], ticket["state"], reason,
                            priority_from=ticket["priority"], priority_to=priority)
        updated = await self.db.tickets.find_one_and_update(
            {"_id": ticket["_id"], "version": ticket["version"]},
            {"$set": {"priority": priority, "clocks": clocks, "sla_next_at": sla.sla_next_at(clocks),
                      "updated_at": now},
             "$push": {"history": entry}, "$inc": {"version": 1}},
            return_document=ReturnDocument.AFTER)
        if updated is None:
            raise Conflict("the ticket changed meanwhile; reload it", code="stale")
        await self._staff_event(updated, "ticket.priority", by=principal.id)
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
                raise Conflict(f"a {fresh['state']} ticket cannot be urged", code="not_urgeable")
            wait = fresh["last_urge_at"] + URGE_EVERY - now
            raise RateLimited("you urged this ticket a moment ago",
                              retry_after=max(int(wait.total_seconds()) + 1, 1))
        await self._staff_event(updated, "ticket.urged", urge_count=updated["urge_count"])
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
            await self._staff_event(updated, f"sla.{level}", to=notify, clock=name,
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
            raise Conflict(f"no {stage} photos on a {ticket['state']} ticket", code="illegal_transition",
                           extra={"state": ticket["state"], "allowed": []})
        if not uploads:
            raise Invalid("no photo in the upload", fields={"photo": "required"})
        room = MAX_PHOTOS - ticket["photo_counts"][stage]
        if len(uploads) > room:
            raise Unprocessable(f"at most {MAX_PHOTOS} {stage} photos per ticket",
                                code="too_many_photos", fields={"photo": f"{room} more allowed"})
        processed = [await process_upload(data) for data in uploads]  # all checked before any is kept
        now = self.clock.now()
        stored, entries = [], []
        meta = {"ticket_id": str(ticket["_id"]), "community_id": community_id}
        for item in processed:
            full = await self.photos.put(item.data, item.content_type, meta)
            stored.append(full)
            thumb = None
            if item.thumbnail is not None:
                thumb = await self.photos.put(item.thumbnail, "image/jpeg",
                                              {**meta, "thumbnail_of": full})
                stored.append(thumb)
            entries.append({"id": full, "thumbnail_id": thumb, "content_type": item.content_type,
                            "stage": stage, "by": principal.id, "at": now,
                            "width": item.width, "height": item.height})
        updated = await self.db.tickets.find_one_and_update(
            {"_id": ticket["_id"], f"photo_counts.{stage}": {"$lte": MAX_PHOTOS - len(entries)}},
            {"$push": {"photos": {"$each": entries}},
             "$inc": {f"photo_counts.{stage}": len(entries)}},
            return_document=ReturnDocument.AFTER)
        if updated is None:  # someone else's upload took the last places: keep nothing
            for file_id in stored:
                await self.photos.delete(file_id)
            raise Unprocessable(f"at most {MAX_PHOTOS} {stage} photos per ticket",
                                code="too_many_photos", fields={"photo": "no more allowed"})
        return updated

    async def photo(self, principal: Principal, community_id: str, ticket_id: str, photo_id: str,
                    thumbnail: bool = False) -> tuple[bytes, str]:
        ticket = await self.get(principal, community_id, ticket_id)
        entry = next((p for p in ticket.get("photos", []) if p["id"] == photo_id), None)
        if entry is None:
            raise NotFound("photo not found")
        file_id = entry["thumbnail_id"] if thumbnail and entry["thumbnail_id"] else entry["id"]
        return await self.photos.get(file_id)
