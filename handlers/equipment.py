"""The equipment register (设备台账) and inspections (巡检) over HTTP.

Thin: the rules live in models/equipment.py (items are a workflow of models/workflow.py; an
inspection's proof is models/check_ins.py's, as a patrol check-in's).
"""

from datetime import date
from typing import Literal

from pydantic import BaseModel, Field

from handlers.base import APIHandler, Strict, api
from handlers.imports import UPLOADS, ImportQuery, ImportsHandler, RowError
from handlers.patrols import CheckInIn
from handlers.tag_sheet import tag_sheet
from handlers.tickets import MULTIPART_OVERHEAD, Ticket
from models.equipment import CHECK_WORDS, ITEM_WORKFLOW, KINDS, MAX_PHOTOS, STATES, TAG_CODE, TAG_PREFIX, public
from models.importer import MAX_FILE_BYTES
from models.messages import say
from models.photos import MAX_BYTES
from models.tickets import REPAIR_CATEGORIES

KIND = Literal[tuple(KINDS)]


class ItemIn(Strict):
    kind: KIND
    name: str = Field(min_length=1, max_length=60)
    tag_code: str = Field(pattern=TAG_CODE.pattern, description="on its tag (QR/NFC), unique here")
    place_path: str | None = Field(None, max_length=32)
    serial: str = Field("", max_length=60)
    model: str = Field("", max_length=60)
    installed_on: date | None = None
    expires_on: date | None = Field(None, description="an extinguisher's pressure/refill date, a "
                                                      "certificate's end: due then at the latest")
    interval_days: int | None = Field(None, ge=1, le=366,
                                      description="days between inspections; default by kind")


class ItemChange(Strict):
    name: str | None = Field(None, min_length=1, max_length=60)
    tag_code: str | None = Field(None, pattern=TAG_CODE.pattern)
    place_path: str | None = Field(None, max_length=32)
    serial: str | None = Field(None, max_length=60)
    model: str | None = Field(None, max_length=60)
    installed_on: date | None = None
    expires_on: date | None = None
    interval_days: int | None = Field(None, ge=1, le=366, description="null: the kind's default")


class ListQuery(Strict):
    kind: KIND | None = None
    state: Literal[STATES] | None = None
    overdue: bool = False


class ReasonIn(Strict):
    reason: str = Field(min_length=1, max_length=500)


class InspectionIn(CheckInIn):
    equipment_id: str | None = Field(None, min_length=24, max_length=24,
                                     description="when inspecting from the item: its tag must match")


class ItemView:
    def view(self, doc: dict) -> dict:
        return {**public(doc, self.app.clock.now()),
                "allowed_actions": ITEM_WORKFLOW.allowed(self.principal, doc)}


class RegisterImport(BaseModel):
    rows: int
    created: int
    existing: int = Field(description="tag codes already in the register: left as they are")
    failed: int = Field(description="rows refused because of errors; nothing of them was written")
    errors: list[RowError]


class RegisterImportHandler(ImportsHandler):
    @api("Register items from an .xlsx or .csv sheet (columns kind, name, tag_code, place_path, "
         "serial, model, installed_on, expires_on, interval_days, or their Chinese headers); "
         "rows with a problem are reported and skipped", query=ImportQuery,
         response=RegisterImport, permission="equipment.manage", uploads=UPLOADS,
         max_body=MAX_FILE_BYTES)
    async def post(self, community_id):
        data, hint = self._upload()
        report = await self.app.equipment.import_register(self.principal, community_id, data,
                                                          self.query.format or hint)
        lang = self.lang()
        report["errors"] = [{**e, "problem": say(e["problem"], lang)} for e in report["errors"]]
        self.write_json(report)


class ItemsHandler(ItemView, APIHandler):
    @api("The register: overdue first, then by due date (filter by kind, state, overdue)",
         query=ListQuery, response=list[dict], permission="equipment.read")
    async def get(self, community_id):
        now = self.app.clock.now()
        docs = await self.app.equipment.items(community_id, **self.query.model_dump())
        self.write_json([public(d, now) for d in docs])

    @api("Register an item", body=ItemIn, response=dict, status=201, permission="equipment.manage")
    async def post(self, community_id):
        doc = await self.app.equipment.register(self.principal, community_id,
                                                **self.body.model_dump())
        self.write_json(self.view(doc))



class EquipmentSheetHandler(APIHandler):
    @api("The items' tags to print (all but the retired): each with the text its QR code "
         "carries (`XQEQ:<tag code>`) and the QR as an SVG data URL", response=list[dict],
         permission="equipment.manage")
    async def get(self, community_id):
        self.write_json(await tag_sheet(TAG_PREFIX, [
            {"id": str(d["_id"]), "code": d["tag_code"], "name": d["name"], "place_path": d["place_path"]}
            for d in await self.app.equipment.tagged(community_id)]))


class KindsHandler(APIHandler):
    @api("The kinds of equipment with their default interval (days), checklist and its words "
         "([Chinese, English] per item)",
         response=dict, permission="equipment.read")
    async def get(self, community_id):
        self.write_json({k: {"interval_days": days, "checklist": list(items),
                             "check_words": {i: CHECK_WORDS[i] for i in items}}
                         for k, (days, items) in KINDS.items()})


class ItemHandler(ItemView, APIHandler):
    @api("One item with its history (the audit trail), its latest inspections, and `names`: "
         "staff id -> name of everyone they mention", response=dict, permission="equipment.read")
    async def get(self, community_id, item_id):
        doc = await self.app.equipment.get(community_id, item_id)
        inspections = await self.app.equipment.inspections(community_id, item_id)
        self.write_json({**self.view(doc),
                         "inspections": [self.app.equipment.view_inspection(i) for i in inspections],
                         "names": await self.app.equipment.names(doc, inspections)})

    @api("Edit an item (the office)", body=ItemChange, response=dict, permission="equipment.read")
    async def patch(self, community_id, item_id):
        doc = await self.app.equipment.edit(self.principal, community_id, item_id,
                                            self.body.model_dump(exclude_unset=True))
        self.write_json(self.view(doc))


class ByCodeHandler(ItemView, APIHandler):
    @api("The item a tag code names (what a scan opens)", response=dict, permission="equipment.read")
    async def get(self, community_id, code):
        self.write_json(self.view(await self.app.equipment.by_code(community_id, code)))


class ActionHandler(ItemView, APIHandler):
    @api("Repair (back in service) or retire an item, with a reason; 409 lists the allowed "
         "actions", body=ReasonIn, response=dict, permission="equipment.read")
    async def post(self, community_id, item_id, action):
        if action == "repair":
            doc = await self.app.equipment.repair(self.principal, community_id, item_id,
                                                  self.body.reason)
        else:
            doc = await self.app.equipment.act(self.principal, community_id, item_id, action,
                                               reason=self.body.reason)
        self.write_json(self.view(doc))


class InspectionTicketIn(Strict):
    category: Literal[tuple(REPAIR_CATEGORIES)] | None = Field(
        None, description="sets its priority; default by kind (elevator: lift, gate, pump: plumbing)")


class InspectionsHandler(ItemView, APIHandler):
    @api("Inspect the item whose tag was scanned (a problem marks it faulty)",
         body=InspectionIn, response=dict, status=201, permission="equipment.inspect")
    async def post(self, community_id):
        record, item = await self.app.equipment.inspect(self.principal, community_id,
                                                        **self.body.model_dump())
        self.write_json({"inspection": self.app.equipment.view_inspection(record),
                         "item": self.view(item)})


class ItemInspectionsHandler(APIHandler):
    @api("An item's inspections, newest first", response=list[dict], permission="equipment.read")
    async def get(self, community_id, item_id):
        docs = await self.app.equipment.inspections(community_id, item_id)
        self.write_json([self.app.equipment.view_inspection(d) for d in docs])


class InspectionPhotosHandler(APIHandler):
    @api(f"Add photos to one's inspection (multipart, field `photo`, ≤ {MAX_PHOTOS})",
         response=dict, status=201, permission="equipment.inspect",
         max_body=MAX_PHOTOS * MAX_BYTES + MULTIPART_OVERHEAD, uploads=("multipart/form-data",),
         upload_field="photo", upload_many=True)
    async def post(self, community_id, inspection_id):
        doc = await self.app.equipment.add_photos(self.principal, community_id, inspection_id,
                                                  self.photo_uploads())
        self.write_json(self.app.equipment.view_inspection(doc))


class InspectionTicketHandler(APIHandler):
    @api("Make the repair ticket of an inspection's problem (201), or show the one made (200)",
         body=InspectionTicketIn, response=Ticket, status=201, permission="equipment.read")
    async def post(self, community_id, inspection_id):
        doc, made = await self.app.equipment.ticket_for(self.principal, community_id,
                                                         inspection_id, self.body.category)
        self.set_status(201 if made else 200)
        self.write_json(self.app.tickets.view(doc, self.principal))


ITEM = "{item_id:[0-9a-f]+}"  # (not "by-code", "inspections", "sheet")
routes = [
    ("/api/communities/{community_id}/equipment", ItemsHandler),
    ("/api/communities/{community_id}/equipment-kinds", KindsHandler),
    ("/api/communities/{community_id}/equipment/import", RegisterImportHandler),
    ("/api/communities/{community_id}/equipment/by-code/{code}", ByCodeHandler),
    ("/api/communities/{community_id}/equipment/sheet", EquipmentSheetHandler),
    ("/api/communities/{community_id}/equipment/inspections", InspectionsHandler),
    ("/api/communities/{community_id}/equipment/inspections/{inspection_id}/photos",
     InspectionPhotosHandler),
    ("/api/communities/{community_id}/equipment/inspections/{inspection_id}/ticket",
     InspectionTicketHandler),
    (f"/api/communities/{{community_id}}/equipment/{ITEM}", ItemHandler),
    (f"/api/communities/{{community_id}}/equipment/{ITEM}/{{action:repair|retire}}", ActionHandler),
    (f"/api/communities/{{community_id}}/equipment/{ITEM}/inspections", ItemInspectionsHandler),
]
