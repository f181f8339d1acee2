"""Decoration permits (装修): a room's owner applies, the office approves, workers get passes.

    submitted ─approve→ approved ─accept→ completed (验收, deposit returned)
        │                 │  ↑
        ├─reject→ rejected │  resume (rectified)
        └─withdraw→ withdrawn  suspend (a violation) → suspended

PERMIT_WORKFLOW (models/workflow.py) is the table. The owner of the room applies
with dates, company, the site manager's phone, the scope of work, the workers
(name, last four digits of the ID card, phone) and the declared forbidden works
acknowledged one by one. The office (decoration.manage) approves with the daily
working hours and a deposit, or rejects with a reason; approval issues one worker
pass per worker (models/passes.py) for the gates leading to the room, inside the
hours, on the working days and the permit's dates. The owner attaches drawings and
photos to the application; staff who inspect (decoration.inspect) record daily site
inspections — a checklist, findings, photos — in the permit's history; a violation
suspends the permit and its passes stop at once; once rectified it resumes with
new passes; final acceptance (验收) closes it, records the deposit's return and
ends the passes. Pass changes are outbox effects keyed by the permit's version.
"""

import logging
from datetime import datetime

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument

from models.access import Principal, permitted
from models.bindings import rooms_in
from models.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, Unprocessable
from models.messages import Text
from models.passes import quarters, working_days
from models.photos import store_uploads
from models.workflow import SAME, Effect, Effects, Records, Required, Step, Workflow, action, \
    created

log = logging.getLogger("xiaoqu.decoration")

INDEXES = {
    "decoration_permits": [
        IndexModel([("community_id", ASCENDING), ("state", ASCENDING), ("created_at", DESCENDING)]),
        IndexModel([("resident_id", ASCENDING), ("created_at", DESCENDING)]),
    ],
}

STATES = ("submitted", "approved", "suspended", "completed", "rejected", "withdrawn")
# What the owner declares they will not do (the plans' forbidden works).
FORBIDDEN_WORKS = ("load_bearing_walls", "closing_balconies", "moving_gas_pipes",
                   "smart_system_wiring")
CHECKLIST = ("fire_safety", "waste_removal", "noise_hours", "structure_untouched",
             "common_areas_clean")
DEFAULT_HOURS = ("08:00", "18:00")
# Photos a permit keeps, by stage: the owner's drawings and photos while the office decides;
# the inspectors' while the work runs (each inspection cites up to INSPECTION_PHOTOS of them).
PHOTO_LIMITS = {"application": 9, "inspection": 60}
PHOTO_STATES = {"application": frozenset({"submitted"}),
                "inspection": frozenset({"approved", "suspended"})}
PHOTO_ROLES = {"application": frozenset({"owner"}), "inspection": frozenset({"inspector", "office"})}
INSPECTION_PHOTOS = 9


def roles_on(principal: Principal, permit: dict) -> set[str]:
    if not principal.is_staff:
        return {"owner"} if str(permit["resident_id"]) == principal.id else set()
    cid = str(permit["community_id"])
    return ({"office"} if permitted(principal, cid, "decoration.manage") else set()) | \
        ({"inspector"} if permitted(principal, cid, "decoration.inspect") else set())


def _approve(step: Step) -> None:
    start, end = step.fields.get("hours_start") or DEFAULT_HOURS[0], \
        step.fields.get("hours_end") or DEFAULT_HOURS[1]
    if end <= start:
        raise Invalid("working hours end after they start", fields={"hours_end": "after hours_start"})
    # Days not chosen: the community's default (DecorationManager.act puts it in the fields).
    step.sets.update(hours=[start, end], days=working_days(step.fields.get("days")),
                     deposit=step.fields.get("deposit"), approved_by=step.principal.id)


def _inspect(step: Step) -> None:
    checklist = step.fields.get("checklist") or {}
    unknown = set(checklist) - set(CHECKLIST)
    if unknown:
        raise Invalid("unknown checklist item",
                      fields={f"checklist.{k}": f"one of {', '.join(CHECKLIST)}" for k in sorted(unknown)})
    step.sets["last_inspected_at"] = step.now
    photos = step.fields.get("photos") or []
    taken = {p["id"] for p in step.doc.get("photos", []) if p["stage"] == "inspection"}
    if not set(photos) <= taken:
        raise Invalid("photos must be this permit's inspection photos",
                      fields={"photos": "upload them first (stage inspection)"})
    step.history.update(checklist=checklist, findings=step.fields.get("findings") or "",
                        violation=bool(step.fields.get("violation")), photos=photos)
    step.inc["inspections"] = 1


def _accept(step: Step) -> None:
    step.sets["deposit_returned"] = step.fields.get("deposit_returned")
    step.history["notes"] = step.fields.get("notes") or ""


def passes(*, issue: bool = False, end: bool = False) -> Effect:
    def build(step: Step, permit: dict) -> dict:
        return {"permit_id": permit["_id"], "community_id": str(permit["community_id"]),
                "issue": issue, "end": end, "by": step.principal.id}
    return Effect("decoration.passes", build)


def _feed(step: Step, permit: dict) -> dict:
    return {"community_id": str(permit["community_id"]), "kind": f"decoration.{step.action.name}",
            "permit": {"id": str(permit["_id"]), "room_path": permit["room_path"],
                       "state": permit["state"]}, "by": step.principal.id}


def _reason(name: str) -> Required:
    return Required("reason", "a reason is required", Text("required to {action}", action=name))


PERMIT_WORKFLOW = Workflow("permit", (
    action("approve", {"submitted"}, "approved", {"office"}, "approved", stamp="approved_at",
           apply=_approve, effects=(passes(issue=True),)),
    action("reject", {"submitted"}, "rejected", {"office"}, "rejected", stamp="decided_at",
           requires=(_reason("reject"),)),
    action("withdraw", {"submitted"}, "withdrawn", {"owner"}, "withdrawn"),
    action("inspect", {"approved", "suspended"}, SAME, {"inspector", "office"}, "inspected",
           apply=_inspect),
    action("suspend", {"approved"}, "suspended", {"inspector", "office"}, "suspended",
           stamp="suspended_at", requires=(_reason("suspend"),), effects=(passes(end=True),)),
    action("resume", {"suspended"}, "approved", {"office"}, "resumed",
           requires=(_reason("resume"),), effects=(passes(issue=True),)),
    action("accept", {"approved", "suspended"}, "completed", {"office"}, "accepted",
           stamp="completed_at", apply=_accept, effects=(passes(end=True),)),
), roles_on, every=(Effect("decoration.feed", _feed),))
ACTIONS = PERMIT_WORKFLOW.names


def public_permit(doc: dict, principal: Principal, photo_url) -> dict:
    return {"id": str(doc["_id"]), "community_id": str(doc["community_id"]),
            "resident_id": str(doc["resident_id"]), "room_path": doc["room_path"],
            "start": doc["start"], "end": doc["end"], "company": doc["company"],
            "manager_phone": doc["manager_phone"], "scope": doc["scope"], "workers": doc["workers"],
            "acknowledged": doc["acknowledged"], "state": doc["state"], "hours": doc.get("hours"), "days": doc.get("days"),
            "deposit": doc.get("deposit"), "deposit_returned": doc.get("deposit_returned"),
            "passes": doc.get("passes", []), "inspections": doc.get("inspections", 0),
            "photos": [{**p, "url": photo_url(p["id"]),
                        "thumbnail_url": photo_url(p["thumbnail_id"] or p["id"])}
                       for p in doc.get("photos", [])],
            "history": doc["history"], "version": doc["version"], "created_at": doc["created_at"],
            "allowed_actions": PERMIT_WORKFLOW.allowed(principal, doc)}


class DecorationManager(Records):
    collection = "decoration_permits"
    workflow = PERMIT_WORKFLOW

    def __init__(self, db, clock, *, bindings, passes_manager, access_log, notifier,
                 effects: Effects, photos, photo_links):
        self.db = db
        self.photos = photos
        self.photo_links = photo_links
        self.access_log = access_log  # the gate log: the workers' entries
        self.clock = clock
        self.bindings = bindings
        self.passes = passes_manager
        self.notifier = notifier
        self.effects = effects
        effects.register("decoration.passes", self._passes)
        effects.register("decoration.feed", self._feed)

    def view(self, doc: dict, principal: Principal) -> dict:
        return public_permit(doc, principal, self.photo_links.url)

    async def apply(self, principal: Principal, community_id: str, *, room_path: str,
                    start: datetime, end: datetime, company: str, manager_phone: str, scope: str,
                    workers: list[dict], acknowledged: list[str]) -> dict:
        """The owner's application (a resident who is not the room's owner is refused)."""
        owned = rooms_in(await self.bindings.active_links(principal.id), community_id, "owner")
        if room_path not in owned:
            raise Invalid("only the room's owner applies", fields={"room_path": "a room you own"})
        if end <= start:
            raise Invalid("the work ends before it starts", fields={"end": "after start"})
        if end <= self.clock.now():
            raise Invalid("the dates are over", fields={"end": "must be in the future"})
        missing = [w for w in FORBIDDEN_WORKS if w not in acknowledged]
        if missing:
            raise Invalid("each forbidden work must be acknowledged",
                          fields={"acknowledged": Text("missing {items}", items=", ".join(missing))})
        now = self.clock.now()
        doc = {"community_id": ObjectId(community_id), "resident_id": ObjectId(principal.id),
               "room_path": room_path, "start": start, "end": end, "company": company,
               "manager_phone": manager_phone, "scope": scope, "workers": workers,
               "acknowledged": sorted(acknowledged), "state": "submitted", "passes": [],
               "photos": [], "photo_counts": dict.fromkeys(PHOTO_LIMITS, 0),
               "inspections": 0, "created_at": now, "updated_at": now, "version": 1,
               "history": [created(principal, now, "submitted")]}
        await self.db.decoration_permits.insert_one(doc)
        await self._feed("", {"community_id": community_id, "kind": "decoration.submitted",
                              "permit": {"id": str(doc["_id"]), "room_path": room_path,
                                         "state": "submitted"}, "by": principal.id})
        return doc

    async def visible(self, principal: Principal, community_id: str, record_id: str) -> dict:
        doc = await self.get(community_id, record_id)
        if not principal.is_staff and str(doc["resident_id"]) != principal.id:
            raise NotFound("permit not found")
        return doc

    async def act(self, principal: Principal, community_id: str, record_id: str,
                  action_name: str, **fields) -> dict:
        await self.visible(principal, community_id, record_id)  # residents: only their own
        if action_name == "approve" and fields.get("days") is None:
            fields["days"] = (await self.passes.community_settings(community_id)).decoration_days
        return await super().act(principal, community_id, record_id, action_name, **fields)

    async def add_photos(self, principal: Principal, community_id: str, permit_id: str,
                         stage: str, uploads: list[bytes]) -> dict:
        """The owner's drawings and photos (while submitted) or an inspector's (while the
        work runs), at most PHOTO_LIMITS[stage] per permit; all kept or none."""
        permit = await self.visible(principal, community_id, permit_id)
        if not roles_on(principal, permit) & PHOTO_ROLES[stage]:
            raise Forbidden(Text("no {stage} photos from you", stage=stage))
        if permit["state"] not in PHOTO_STATES[stage]:
            raise Conflict(Text("no {stage} photos on a {state} permit", stage=stage,
                                state=permit["state"]), code="illegal_transition",
                           extra={"state": permit["state"], "allowed": []})
        if not uploads:
            raise Invalid("no photo in the upload", fields={"photo": "required"})
        limit = PHOTO_LIMITS[stage]
        left = limit - permit.get("photo_counts", {}).get(stage, 0)
        too_many = Unprocessable(Text("at most {limit} {stage} photos per permit", limit=limit,
                                      stage=stage), code="too_many_photos",
                                 fields={"photo": Text("{count} more allowed", count=max(left, 0))})
        if len(uploads) > left:
            raise too_many
        stored, entries = await store_uploads(
            self.photos, uploads, {"permit_id": permit_id, "community_id": community_id},
            stage=stage, by=principal.id, at=self.clock.now())
        # The count is checked again as it is raised: a concurrent upload cannot overfill.
        updated = await self.db.decoration_permits.find_one_and_update(
            {"_id": permit["_id"], f"photo_counts.{stage}": {"$not": {"$gt": limit - len(entries)}}},
            {"$push": {"photos": {"$each": entries}}, "$inc": {f"photo_counts.{stage}": len(entries)}},
            return_document=ReturnDocument.AFTER)
        if updated is None:
            for file_id in stored:
                await self.photos.delete(file_id)
            raise too_many
        return updated

    async def search(self, principal: Principal, community_id: str, state: str | None) -> list[dict]:
        query: dict = {"community_id": ObjectId(community_id)}
        if not principal.is_staff:
            query["resident_id"] = ObjectId(principal.id)
        if state:
            query["state"] = state
        return await self.db.decoration_permits.find(query).sort("created_at", DESCENDING).to_list(200)

    async def entries(self, community_id: str, permit_id: str, limit: int = 200) -> list[dict]:
        """The gate log's lines of the permit's passes (allowed and refused), newest first,
        each with the worker it belongs to."""
        permit = await self.get(community_id, permit_id)
        lines = []
        for entry in permit["passes"]:
            worker = permit["workers"][entry["worker"]]
            page = await self.access_log.query(community_id, pass_id=entry["id"], limit=limit)
            lines += [{**line, "worker": worker["name"]} for line in page["items"]]
        return sorted(lines, key=lambda line: line["at"], reverse=True)[:limit]

    async def _passes(self, key: str, payload: dict) -> None:
        """End the permit's active passes and/or issue one per worker. Idempotent: ended
        passes are marked so, and a worker's pass issued under this key is not issued again."""
        permit = await self.db.decoration_permits.find_one({"_id": payload["permit_id"]})
        cid = payload["community_id"]
        if payload["end"]:
            for entry in permit["passes"]:
                if entry["active"]:
                    try:
                        await self.passes.revoke_worker_pass(cid, entry["id"])
                    except DomainError as exc:  # already cancelled: the same end
                        log.info("permit %s pass %s: %s", permit["_id"], entry["id"], exc.message)
                    await self.db.decoration_permits.update_one(
                        {"_id": permit["_id"], "passes.id": entry["id"]},
                        {"$set": {"passes.$.active": False}})
        if payload["issue"]:
            staff = Principal("staff", payload["by"])
            done = {p["worker"] for p in permit["passes"] if p["key"] == key}
            for i, worker in enumerate(permit["workers"]):
                if i in done:  # issued by an earlier try
                    continue
                try:
                    doc = await self.passes.worker_pass(
                        staff, cid, name=worker["name"], phone=worker.get("phone"),
                        company=permit["company"], purpose=f"装修 {permit['room_path']}",
                        room_path=permit["room_path"], gates=None, valid_from=permit["start"],
                        valid_to=permit["end"], hours=tuple(quarters(h) for h in permit["hours"]),
                        days=permit.get("days"), max_entries=0,
                        approval_ref=f"permit {permit['_id']}")
                except DomainError as exc:  # e.g. longer than the community allows: said, not retried
                    log.warning("permit %s worker %d: no pass: %s", permit["_id"], i, exc.message)
                    continue
                await self.db.decoration_permits.update_one({"_id": permit["_id"]}, {"$push": {
                    "passes": {"id": str(doc["_id"]), "worker": i, "key": key, "active": True}}})

    async def _feed(self, key: str, payload: dict) -> None:
        await self.notifier.community_event(payload["community_id"], payload["kind"],
                                            permit=payload["permit"], by=payload["by"])
