"""The equipment register (设备台账) and its inspections (巡检): fire extinguishers, hydrants,
pumps, elevators, gates, smoke detectors … each on an inspection plan.

An item is a record of ITEM_WORKFLOW (models/workflow.py); its history is the audit trail
(who registered, edited, inspected, repaired or retired it, when, why):

    in_service ─fault (an inspection found a problem)→ faulty ─repair→ in_service
        │  └─check (an inspection, all ok)─┘                │
        └──────────────retire──────────→ retired ←──────────┘

Its plan is an interval in days — DEFAULT_INTERVALS by kind (the plans: fire equipment
always usable, so extinguishers and hydrants monthly; elevators every half month; pumps
weekly), overridable per item. `next_due_at` is the last check (or, never checked, the
registration) plus the interval; `due_at`, the earlier of that and the item's expiry (an
extinguisher's pressure/refill date), orders the register and makes the overdue list
(most overdue first). An inspection is made at the item, by scanning its tag: the same
proof as a patrol check-in (models/check_ins.py), the kind's checklist answered ok or
problem, a note and photos. A problem marks the item faulty and stays an open finding
until the item is repaired.
"""

import logging
import re
from datetime import UTC, date, datetime, time, timedelta

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from models.access import Principal, permitted
from models.check_ins import check_answers, failed_items, proof
from models.common import object_id
from models.common import insert_new
from models.errors import Forbidden, Invalid, NotFound, Unprocessable
from models.importer import cell_text, day_of, error as row_error, table
from models.messages import Text, in_lang
from models.photos import store_uploads
from models.places import community_zone
from models.tickets import Finding
from models.workflow import SAME, Effects, Records, Required, Step, Workflow, action, created

log = logging.getLogger("xiaoqu.equipment")

INDEXES = {
    "equipment": [IndexModel([("community_id", ASCENDING), ("tag_code", ASCENDING)], unique=True),
                  IndexModel([("community_id", ASCENDING), ("state", ASCENDING), ("due_at", ASCENDING)])],
    "equipment_inspections": [
        IndexModel([("equipment_id", ASCENDING), ("at", DESCENDING)]),
        IndexModel([("community_id", ASCENDING), ("at", ASCENDING)]),
    ],
}

# kind -> (days between inspections, checklist)
KINDS: dict[str, tuple[int, tuple[str, ...]]] = {
    "fire_extinguisher": (30, ("pressure_in_green", "seal_intact", "hose_nozzle", "not_blocked",
                               "label_legible")),
    "hydrant": (30, ("hose_and_nozzle", "valve_turns", "no_leak", "cabinet_not_blocked")),
    "smoke_detector": (30, ("test_alarm", "indicator_light", "clean")),
    "emergency_light": (30, ("lights_on_test", "battery")),
    "pump": (7, ("runs", "no_leak", "pressure_normal", "control_panel")),
    "elevator": (15, ("doors", "alarm_button", "levelling", "lighting", "certificate_valid")),
    "gate": (30, ("opens_and_closes", "lock", "reader")),
    "other": (30, ("condition",)),
}
# checklist item -> (Chinese, English): the words a screen and a repair ticket show
CHECK_WORDS = {
    "pressure_in_green": ("压力指针在绿区", "Pressure in the green"),
    "seal_intact": ("铅封完好", "Seal intact"),
    "hose_nozzle": ("喷管完好", "Hose and nozzle"),
    "not_blocked": ("无遮挡", "Not blocked"),
    "label_legible": ("标识清晰", "Label legible"),
    "hose_and_nozzle": ("水带水枪齐全", "Hose and nozzle"),
    "valve_turns": ("阀门开关灵活", "Valve turns"),
    "no_leak": ("无渗漏", "No leak"),
    "cabinet_not_blocked": ("箱门无遮挡", "Cabinet not blocked"),
    "test_alarm": ("测试报警正常", "Test alarm sounds"),
    "indicator_light": ("指示灯正常", "Indicator light"),
    "clean": ("清洁", "Clean"),
    "lights_on_test": ("试亮正常", "Lights on test"),
    "battery": ("电池正常", "Battery"),
    "runs": ("运转正常", "Runs"),
    "pressure_normal": ("压力正常", "Pressure normal"),
    "control_panel": ("控制柜正常", "Control panel"),
    "doors": ("轿门厅门正常", "Doors"),
    "alarm_button": ("警铃/对讲正常", "Alarm button"),
    "levelling": ("平层准确", "Levelling"),
    "lighting": ("照明正常", "Lighting"),
    "certificate_valid": ("检验合格证有效", "Certificate valid"),
    "opens_and_closes": ("开闭正常", "Opens and closes"),
    "lock": ("锁具正常", "Lock"),
    "reader": ("读卡/扫码正常", "Reader"),
    "condition": ("外观状况良好", "Condition"),
}
# the repair ticket's category for a finding (its priority follows: models/tickets.py)
TICKET_CATEGORIES = {"elevator": "lift", "gate": "gate", "pump": "plumbing"}
DEFAULT_INTERVALS = {kind: days for kind, (days, _) in KINDS.items()}
STATES = ("in_service", "faulty", "retired")
MAX_PHOTOS = 6
TAG_CODE = re.compile(r"^[A-Za-z0-9-]{1,16}$")
TAG_PREFIX = "XQEQ"  # an item's printed tag: models/check_ins.tag_payload
MAX_IMPORT_ROWS = 5000
# Bulk import of the register (models/importer.py reads the sheet within its bounds):
# column -> accepted headers (the third is named when a required one is missing).
IMPORT_COLUMNS = {
    "kind": ("kind", "type", "类型", "设备类型", "种类"),
    "name": ("name", "名称", "设备名称"),
    "tag_code": ("tag_code", "tag", "标签编号", "编号", "标签", "二维码编号"),
    "place_path": ("place_path", "place", "位置", "安装位置"),
    "serial": ("serial", "出厂编号", "序列号"),
    "model": ("model", "型号", "规格型号"),
    "installed_on": ("installed_on", "installed", "安装日期"),
    "expires_on": ("expires_on", "expires", "有效期至", "有效期", "到期日期"),
    "interval_days": ("interval_days", "interval", "巡检周期", "周期"),
}
KIND_WORDS = {**{k: k for k in KINDS}, "灭火器": "fire_extinguisher", "消火栓": "hydrant",
              "烟感": "smoke_detector", "烟感探测器": "smoke_detector", "应急灯": "emergency_light",
              "水泵": "pump", "消防泵": "pump", "生活水泵": "pump", "电梯": "elevator",
              "门禁": "gate", "道闸": "gate", "其他": "other"}
EDITABLE = ("name", "place_path", "serial", "model", "installed_on", "expires_on",
            "interval_days", "tag_code")


def roles_on(principal: Principal, item: dict) -> set[str]:
    cid = str(item["community_id"])
    return {role for role, permission in (("office", "equipment.manage"),
                                          ("inspector", "equipment.inspect"),
                                          ("technician", "equipment.repair"))
            if permitted(principal, cid, permission)}


def interval(item: dict) -> timedelta:
    return timedelta(days=item.get("interval_days") or DEFAULT_INTERVALS[item["kind"]])


def checklist(item: dict) -> tuple[str, ...]:
    return KINDS[item["kind"]][1]


def due_fields(item: dict) -> dict:
    """next_due_at and due_at of an item as it now reads (None when retired)."""
    if item["state"] == "retired":
        return {"next_due_at": None, "due_at": None}
    next_due = (item.get("last_checked_at") or item["created_at"]) + interval(item)
    expires = item.get("expires_at")
    return {"next_due_at": next_due, "due_at": min(next_due, expires) if expires else next_due}


def _recompute(step: Step) -> None:
    """Every action: the due dates follow what it wrote."""
    step.sets.update(due_fields({**step.doc, **step.sets}))


def _edit(step: Step) -> None:
    changes = step.fields["changes"]
    step.sets.update(changes)
    step.history["changes"] = sorted(changes)


def _inspected(step: Step) -> None:
    record = step.fields["inspection"]
    step.sets.update(last_checked_at=record["at"], last_result=record["result"])
    step.history.update(inspection=record["_id"], device=record["device"])
    if record["result"] == "problem":
        step.inc["open_findings"] = 1


def _repaired(step: Step) -> None:
    step.sets["open_findings"] = 0


ITEM_WORKFLOW = Workflow("equipment", (
    action("edit", {"in_service", "faulty"}, SAME, {"office"}, "edited", apply=_edit),
    action("check", {"in_service", "faulty"}, SAME, {"inspector"}, "inspected", apply=_inspected),
    action("fault", {"in_service", "faulty"}, "faulty", {"inspector"}, "inspected",
           apply=_inspected, stamp="faulty_at"),
    action("repair", {"faulty"}, "in_service", {"technician", "office"}, "repaired",
           requires=(Required("reason", "say what was done", "required to repair"),),
           apply=_repaired, stamp="repaired_at"),
    action("retire", {"in_service", "faulty"}, "retired", {"office"}, "retired",
           requires=(Required("reason", "say why it is retired", "required to retire"),),
           stamp="retired_at"),
), roles_on, state_words={"in_service": "in service", "faulty": "faulty", "retired": "retired"},
    prepare=_recompute)


def public(doc: dict, now: datetime) -> dict:
    """An item as the API shows it: its plan, and how overdue it is (days, rounded down)."""
    shown = {"id": str(doc["_id"]), **{k: v for k, v in doc.items() if k != "_id"}}
    due = doc.get("due_at")
    shown["interval_days"] = interval(doc).days
    shown["interval_overridden"] = bool(doc.get("interval_days"))
    shown["kind_interval_days"] = DEFAULT_INTERVALS[doc["kind"]]
    shown["checklist"] = list(checklist(doc))
    shown["check_words"] = {item: CHECK_WORDS[item] for item in shown["checklist"]}
    shown["overdue"] = due is not None and due < now
    shown["overdue_days"] = (now - due).days if shown["overdue"] else 0
    shown["expired"] = bool(doc.get("expires_at")) and doc["expires_at"] <= now
    return shown


class EquipmentManager(Records):
    collection = "equipment"
    workflow = ITEM_WORKFLOW

    def __init__(self, db, clock, *, places, staff, tickets, photos, photo_links, effects: Effects):
        self.db = db
        self.staff = staff
        self.tickets = tickets
        self.clock = clock
        self.places = places
        self.photos = photos
        self.photo_links = photo_links
        self.effects = effects

    async def _stored(self, community_id: str, fields: dict, zone=None) -> dict:
        """Field values as stored: the place exists, the expiry as a time on the community's
        clock (`zone` given: an import, which checked the places itself)."""
        if zone is None and fields.get("place_path") and await self.places.place_by_path(
                community_id, fields["place_path"]) is None:
            raise Invalid("no such place", fields={"place_path": Text(
                "no place {path}", path=repr(fields["place_path"]))})
        out = dict(fields)
        for name in ("installed_on", "expires_on"):
            if isinstance(out.get(name), date):
                out[name] = out[name].isoformat()
        if "expires_on" in fields:
            out["expires_at"] = None
            if fields["expires_on"]:
                zone = zone or community_zone(await self.places.community(community_id))
                out["expires_at"] = datetime.combine(fields["expires_on"], time(), zone).astimezone(UTC)
        return out

    async def names(self, item: dict, inspections: list[dict]) -> dict[str, str]:
        """Who is named in an item's history and inspections: staff id -> name."""
        return await self.staff.names([h["by"] for h in item.get("history", [])] +
                                      [i["by"] for i in inspections])

    def view_inspection(self, doc: dict) -> dict:
        """An inspection as the API shows it, its photos with signed links for an <img>."""
        shown = {"id": str(doc["_id"]), **{k: v for k, v in doc.items() if k != "_id"}}
        shown["photos"] = self.photo_links.linked(doc["photos"])
        return shown

    # -- the register (equipment.manage) ------------------------------------------------

    async def register(self, principal: Principal, community_id: str, *, kind: str, name: str,
                       tag_code: str, place_path: str | None = None, serial: str = "",
                       model: str = "", installed_on: date | None = None,
                       expires_on: date | None = None, interval_days: int | None = None) -> dict:
        doc = await self._new(principal, community_id, {
            "kind": kind, "name": name, "tag_code": tag_code, "serial": serial, "model": model,
            "interval_days": interval_days, "place_path": place_path,
            "installed_on": installed_on, "expires_on": expires_on})
        try:
            await self.db.equipment.insert_one(doc)
        except DuplicateKeyError:
            raise Invalid("that tag code is taken here", fields={"tag_code": "already an item's tag"}) from None
        return doc

    async def _new(self, principal: Principal, community_id: str, fields: dict, zone=None) -> dict:
        now = self.clock.now()
        doc = {"community_id": ObjectId(community_id), "state": "in_service",
               "last_checked_at": None, "last_result": None, "open_findings": 0,
               "created_at": now, "updated_at": now, "version": 1,
               "history": [created(principal, now, "in_service")],
               **await self._stored(community_id, fields, zone)}
        return doc | due_fields(doc)

    async def import_register(self, principal: Principal, community_id: str, data: bytes,
                              fmt: str | None) -> dict:
        """Register the items of a sheet: rows with a problem are reported and skipped, the
        others registered; a tag code already in the register is left as it is, so sending
        the file again changes nothing."""
        rows, headers = table(data, fmt, IMPORT_COLUMNS, ("kind", "name", "tag_code"))
        if len(rows) > MAX_IMPORT_ROWS:
            raise Invalid("too many rows", fields={"file": Text(
                "at most {limit} rows per import; split it", limit=MAX_IMPORT_ROWS)})
        places = set(await self.places.by_path(ObjectId(community_id)))
        zone = community_zone(await self.places.community(community_id))
        docs, errors, failed, seen = [], [], 0, set()
        for number, raw in rows:
            fields, problems = _import_row(raw, places, seen)
            errors += [row_error(number, column, headers.get(column), text)
                       for column, text in problems]
            if problems:
                failed += 1
                continue
            seen.add(fields["tag_code"])
            docs.append(await self._new(principal, community_id, fields, zone))
        made = await insert_new(self.db.equipment, docs)
        return {"rows": len(rows), "created": len(made), "existing": len(docs) - len(made),
                "failed": failed, "errors": errors}

    async def edit(self, principal: Principal, community_id: str, item_id: str, changes: dict) -> dict:
        if not changes:
            raise Invalid("nothing to change", fields={"body": "give a field to change"})
        try:
            return await self.act(principal, community_id, item_id, "edit",
                                  changes=await self._stored(community_id, changes))
        except DuplicateKeyError:
            raise Invalid("that tag code is taken here", fields={"tag_code": "already an item's tag"}) from None

    async def items(self, community_id: str, *, kind: str | None = None, state: str | None = None,
                    overdue: bool = False) -> list[dict]:
        """The register, what is due first first (the overdue on top); retired items last."""
        query: dict = {"community_id": ObjectId(community_id)}
        if kind:
            query["kind"] = kind
        if state:
            query["state"] = state
        if overdue:
            query["due_at"] = {"$lt": self.clock.now(), "$ne": None}
        docs = await self.db.equipment.find(query, {"history": 0}).sort(
            [("due_at", ASCENDING), ("name", ASCENDING)]).to_list(2000)
        return sorted(docs, key=lambda d: d["due_at"] is None)  # (None sorts first in MongoDB)

    async def tagged(self, community_id: str) -> list[dict]:
        """The items whose tags hang on them, for the print sheet: all but the retired (a
        faulty item is still inspected after its repair), by place then tag code."""
        return await self.db.equipment.find(
            {"community_id": ObjectId(community_id), "state": {"$ne": "retired"}},
            {"history": 0}).sort([("place_path", ASCENDING), ("tag_code", ASCENDING)]).to_list(None)

    async def by_code(self, community_id: str, code: str) -> dict:
        doc = await self.db.equipment.find_one({"community_id": ObjectId(community_id),
                                                "tag_code": code})
        if doc is None:
            raise NotFound("no item has this tag code")
        return doc

    # -- inspections (equipment.inspect) -----------------------------------------------

    async def inspect(self, principal: Principal, community_id: str, *, code: str, device: str,
                      scanned_at: datetime, location: dict | None, answers: dict[str, str],
                      note: str, equipment_id: str | None = None) -> tuple[dict, dict]:
        """Record an inspection at the item whose tag was scanned: (inspection, item)."""
        now = self.clock.now()
        proven = proof(principal, now, device=device, scanned_at=scanned_at, location=location)
        item = await self.db.equipment.find_one({"community_id": ObjectId(community_id),
                                                 "tag_code": code})
        if item is None:
            raise Invalid("no such item", fields={"code": "unknown tag code"})
        if equipment_id is not None and str(item["_id"]) != equipment_id:
            raise Invalid("this is another item's tag", fields={"code": "not this item's tag"})
        problem = check_answers(answers, checklist(item),
                                "answer the item's checklist with ok or problem")
        if problem and not note.strip():
            raise Invalid("say what the problem is", fields={"note": "required for a problem"})
        record = {"_id": ObjectId(), "community_id": item["community_id"],
                  "equipment_id": item["_id"], "kind": item["kind"], **proven,
                  "answers": answers, "note": note, "result": "problem" if problem else "ok",
                  "photos": [], "ticket_id": None, "resolved_at": None}
        # The record first: an item never shows a check that has no record behind it.
        await self.db.equipment_inspections.insert_one(record)
        try:
            updated, effects = await ITEM_WORKFLOW.run(
                self.db.equipment, principal, item, "fault" if problem else "check",
                {"inspection": record}, now, context=self)
        except Exception:
            await self.db.equipment_inspections.delete_one({"_id": record["_id"]})
            raise
        await self.effects.emit(effects)
        return record, updated

    async def repair(self, principal: Principal, community_id: str, item_id: str, reason: str) -> dict:
        updated = await self.act(principal, community_id, item_id, "repair", reason=reason)
        await self.db.equipment_inspections.update_many(
            {"equipment_id": updated["_id"], "result": "problem", "resolved_at": None},
            {"$set": {"resolved_at": updated["repaired_at"]}})
        return updated

    async def inspection(self, community_id: str, inspection_id: str) -> dict:
        doc = await self.db.equipment_inspections.find_one(
            {"_id": object_id(inspection_id, "inspection"), "community_id": ObjectId(community_id)})
        if doc is None:
            raise NotFound("inspection not found")
        return doc

    async def inspections(self, community_id: str, item_id: str, limit: int = 100) -> list[dict]:
        item = await self.get(community_id, item_id)
        return await self.db.equipment_inspections.find({"equipment_id": item["_id"]}).sort(
            [("at", DESCENDING), ("_id", DESCENDING)]).limit(limit).to_list(None)

    async def add_photos(self, principal: Principal, community_id: str, inspection_id: str,
                         uploads: list[bytes]) -> dict:
        """Photos of an inspection, by the inspector who made it."""
        doc = await self.inspection(community_id, inspection_id)
        if doc["by"] != principal.id:
            raise Forbidden("only the inspector adds photos to an inspection")
        if not uploads:
            raise Invalid("no photo in the upload", fields={"photo": "required"})
        room = MAX_PHOTOS - len(doc["photos"])
        if len(uploads) > room:
            raise Unprocessable(Text("at most {limit} photos per inspection", limit=MAX_PHOTOS),
                                code="too_many_photos",
                                fields={"photo": Text("{count} more allowed", count=room)})
        _, entries = await store_uploads(self.photos, uploads, {
            "inspection_id": inspection_id, "community_id": community_id},
            by=principal.id, at=self.clock.now())
        return await self.db.equipment_inspections.find_one_and_update(
            {"_id": doc["_id"]}, {"$push": {"photos": {"$each": entries}}},
            return_document=ReturnDocument.AFTER)

    async def ticket_for(self, principal: Principal, community_id: str, inspection_id: str,
                         category: str | None) -> tuple[dict, bool]:
        """The repair ticket of an inspection's problem, in one step (the ticket manager's
        `from_finding`): at the item's place, with the note and photos, linked both ways.
        Asked again, the same ticket."""
        doc = await self.inspection(community_id, inspection_id)
        item = await self.db.equipment.find_one({"_id": doc["equipment_id"]})
        failed = [in_lang(CHECK_WORDS[name], "zh") for name in failed_items(doc["answers"])]
        ticket, made = await self.tickets.from_finding(principal, Finding(
            community_id, "inspection", str(doc["_id"]),
            f"巡检发现：{item['name']}（{item['tag_code']}）{'、'.join(failed)}", doc["by"],
            doc["note"], item.get("place_path"), tuple(doc["photos"]),
            category or TICKET_CATEGORIES.get(item["kind"], "other"), doc["result"] == "problem"))
        if doc.get("ticket_id") != ticket["_id"]:
            await self.db.equipment_inspections.update_one({"_id": doc["_id"]},
                                                           {"$set": {"ticket_id": ticket["_id"]}})
        return ticket, made


def _import_row(raw: dict, places: set[str], seen: set[str]) -> tuple[dict, list[tuple[str, str]]]:
    """One sheet row's fields, or its problems as (column, problem)."""
    text = {column: cell_text(raw.get(column)) for column in IMPORT_COLUMNS}
    fields: dict = {"serial": text["serial"] or "", "model": text["model"] or "",
                    "place_path": text["place_path"], "interval_days": None}
    problems = []
    for column in ("kind", "name", "tag_code"):
        if text[column] is None:
            problems.append((column, "required"))
    if text["kind"]:
        fields["kind"] = KIND_WORDS.get(text["kind"].lower())
        if fields["kind"] is None:
            problems.append(("kind", Text("one of {choices}", choices=", ".join(KINDS))))
    if text["name"]:
        fields["name"] = text["name"][:60]
    if text["tag_code"]:
        fields["tag_code"] = text["tag_code"]
        if not TAG_CODE.match(text["tag_code"]):
            problems.append(("tag_code", "1-16 letters, digits or -"))
        elif text["tag_code"] in seen:
            problems.append(("tag_code", "already in an earlier row"))
    if text["place_path"] and text["place_path"] not in places:
        problems.append(("place_path", Text("no place {path}", path=repr(text["place_path"]))))
    for column in ("installed_on", "expires_on"):
        fields[column] = None
        if text[column]:
            try:
                fields[column] = day_of(raw[column])
            except ValueError as exc:
                problems.append((column, str(exc)))
    if text["interval_days"]:
        if not text["interval_days"].isdigit() or not 1 <= int(text["interval_days"]) <= 366:
            problems.append(("interval_days", "a number of days, 1 to 366"))
        else:
            fields["interval_days"] = int(text["interval_days"])
    return fields, problems


async def figures(db, community_id: str, start: datetime, end: datetime, now: datetime) -> dict:
    """The KPI page's inspection figures at the period's end (or now, if sooner), beside
    their targets: coverage — items in the register (not retired then) checked within
    their interval (target 100 %: fire equipment always usable); overdue items (target 0);
    open findings — problems found and not yet repaired."""
    cut = min(end, now)
    cid = ObjectId(community_id)
    items = await db.equipment.find(
        {"community_id": cid, "created_at": {"$lt": cut},
         "$or": [{"retired_at": None}, {"retired_at": {"$gt": cut}}]},
        {"kind": 1, "interval_days": 1, "created_at": 1, "expires_at": 1}).to_list(None)
    last = {r["_id"]: r["at"] for r in await (await db.equipment_inspections.aggregate([
        {"$match": {"community_id": cid, "at": {"$lte": cut}}},
        {"$group": {"_id": "$equipment_id", "at": {"$max": "$at"}}}])).to_list(None)}
    covered = overdue = 0
    for item in items:
        checked = last.get(item["_id"])
        covered += checked is not None and checked > cut - interval(item)
        due = (checked or item["created_at"]) + interval(item)
        overdue += due < cut or bool(item.get("expires_at")) and item["expires_at"] <= cut
    findings = await db.equipment_inspections.count_documents(
        {"community_id": cid, "result": "problem", "at": {"$lte": cut},
         "$or": [{"resolved_at": None}, {"resolved_at": {"$gt": cut}}]})
    coverage = round(covered / len(items), 4) if items else None
    return {
        "inspection_coverage": {"value": coverage, "target": 1.0, "comparison": ">=",
                                "meets": None if coverage is None else coverage >= 1.0,
                                "covered": covered, "items": len(items)},
        "equipment_overdue": {"value": overdue, "target": 0, "comparison": "<=",
                              "meets": overdue == 0 if items else None},
        "equipment_open_findings": {"value": findings, "target": 0, "comparison": "<=",
                                    "meets": findings == 0 if items else None},
    }
