"""Notices (公告): written by the office, published to an audience, read by residents.

    draft ─schedule→ scheduled ─publish→ published ─withdraw→ withdrawn
      └──────────────publish───────────────┘   (pin / unpin while published)

The workflow (models/workflow.py) is NOTICE_WORKFLOW: editors (staff holding
notices.write) edit drafts and scheduled notices, schedule, publish, pin and
withdraw; the scheduler publishes a scheduled notice when its time comes.

Audience: the whole community or some buildings/units (`places`), owners only
or everyone living there (owners, family, tenants: `who`). On publication the
audience is written down as recipients (`notice_recipients`, one per person,
with their building), so "read by whom, per building" is an indexed count and a
person who moves in later still reads it (their recipient entry is made at the
first read). A read is recorded once per person: the first read sets `read_at`,
later ones change nothing. WeChat subscribe messages go to the recipients who
granted one for the notice template (urgent notices first in every list).

The body is a safe Markdown subset (paragraphs, line breaks, emphasis, lists,
headings, links with http(s)/mailto/tel only), rendered by markdown-it with raw
HTML off, so no markup a writer types reaches a reader's page; images are
uploaded photos (models/photos.py), shown by signed links.
"""

import asyncio
import logging
from datetime import datetime

from bson import ObjectId
from markdown_it import MarkdownIt
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument

from models.access import Principal, permitted
from models.bindings import is_active, RELATIONS
from models.common import insert_new
from models.errors import Invalid, NotFound, Unprocessable
from models.messages import Text
from models.people import office_name
from models.photos import process_upload
from models.places import community_zone, place_kind, split_path
from models.workflow import SAME, Effect, Effects, Records, Required, Step, Workflow, action, \
    created

log = logging.getLogger("xiaoqu.notices")

INDEXES = {
    "notices": [
        IndexModel([("community_id", ASCENDING), ("state", ASCENDING), ("published_at", DESCENDING)]),
        IndexModel([("state", ASCENDING), ("publish_at", ASCENDING)]),
    ],
    "notice_recipients": [
        IndexModel([("notice_id", ASCENDING), ("building", ASCENDING), ("read_at", ASCENDING)]),
        IndexModel([("resident_id", ASCENDING), ("notice_id", ASCENDING)]),
    ],
}

STATES = ("draft", "scheduled", "published", "withdrawn")
WHO = {"owners": ("owner",), "residents": RELATIONS}
MAX_PHOTOS = 9
UNREAD_PAGE = 100  # who has not read, listed per building (the first by room)
WRITE_BATCH = 500  # recipients per insert: each write stays well inside the store's timeout
SYSTEM = Principal("system", "scheduler")  # who publishes a scheduled notice on time

_markdown = MarkdownIt("zero", {"breaks": True, "linkify": False}).enable(
    ["emphasis", "list", "heading", "link", "newline", "backticks", "blockquote"])
SAFE_LINK = ("http://", "https://", "mailto:", "tel:")
_markdown.validateLink = lambda url: url.strip().lower().startswith(SAFE_LINK)


def render(body: str) -> str:
    """The body as HTML a page may show as it is (raw HTML in it is shown as text)."""
    return _markdown.render(body)


def building_of(room_path: str) -> str:
    return split_path(room_path)[0]


def covers(audience: dict, room_path: str) -> bool:
    places = audience["places"]
    parts = split_path(room_path)
    return not places or any(split_path(p) == parts[:len(split_path(p))] for p in places)


def audience_room(principal: Principal, community_id: str, audience: dict) -> str | None:
    """The caller's room that puts them in the audience (None: not in it)."""
    relations = WHO[audience["who"]]
    return next((link["room_path"] for link in principal.links
                 if link["community_id"] == community_id and link["relation"] in relations
                 and covers(audience, link["room_path"])), None)


def editor_roles(principal: Principal, notice: dict) -> set[str]:
    if principal == SYSTEM:
        return {"scheduler"}
    return {"editor"} if principal.is_staff and permitted(
        principal, str(notice["community_id"]), "notices.write") else set()


# -- the workflow -----------------------------------------------------------------

EDITABLE = ("title", "body", "audience", "urgent")


def _edit(step: Step) -> None:
    changes = {k: v for k, v in step.fields.items() if k in EDITABLE and v is not None}
    if not changes:
        raise Invalid("nothing to change", fields={"body": "give a field to change"})
    if "body" in changes:
        changes["body_html"] = render(changes["body"])
    step.sets.update(changes)
    step.history["changed"] = sorted(changes)


def _schedule(step: Step) -> None:
    at = step.fields["publish_at"]
    if at <= step.now:
        raise Invalid("that time has passed", fields={"publish_at": "must be in the future"})
    step.sets["publish_at"] = at


def _pin(pinned: bool):
    def apply(step: Step) -> None:
        step.sets["pinned"] = pinned
    return apply


def _feed(step: Step, notice: dict) -> dict:
    return {"community_id": str(notice["community_id"]), "kind": f"notice.{step.action.name}",
            "notice": {"id": str(notice["_id"]), "title": notice["title"],
                       "urgent": notice["urgent"], "state": notice["state"]},
            "by": step.principal.id}


def _deliver(step: Step, notice: dict) -> dict:
    return {"notice_id": notice["_id"]}


def _when_due(step: Step, notice: dict) -> dict:
    return {"notice_id": notice["_id"], "publish_at": notice["publish_at"]}


NOTICE_WORKFLOW = Workflow("notice", (
    action("edit", {"draft", "scheduled"}, SAME, {"editor"}, "edited", apply=_edit),
    action("schedule", {"draft", "scheduled"}, "scheduled", {"editor"}, "scheduled",
           requires=(Required("publish_at", "when should it appear?", "required to schedule"),),
           apply=_schedule, effects=(Effect("notice.publish_due", _when_due,
                                            due=lambda step, notice: notice["publish_at"]),)),
    action("publish", {"draft", "scheduled"}, "published", {"editor", "scheduler"}, "published",
           stamp="published_at", effects=(Effect("notice.deliver", _deliver, background=True),)),
    action("pin", {"published"}, SAME, {"editor"}, "pinned", apply=_pin(True)),
    action("unpin", {"published"}, SAME, {"editor"}, "unpinned", apply=_pin(False)),
    action("withdraw", {"scheduled", "published"}, "withdrawn", {"editor"}, "withdrawn",
           stamp="withdrawn_at", requires=(Required("reason", "a reason is required",
                                                    "required to withdraw"),)),
), editor_roles, every=(Effect("notice.feed", _feed),))
ACTIONS = NOTICE_WORKFLOW.names


def public_notice(doc: dict, principal: Principal, photo_links, read_at=None) -> dict:
    view = {"id": str(doc["_id"]), "community_id": str(doc["community_id"]), "title": doc["title"],
            "body": doc["body"], "body_html": doc["body_html"], "urgent": doc["urgent"],
            "pinned": doc["pinned"], "state": doc["state"], "audience": doc["audience"],
            "publish_at": doc.get("publish_at"), "published_at": doc.get("published_at"),
            "photos": [{"id": p["id"], "url": photo_links.url(p["id"]),
                        "thumbnail_url": photo_links.url(p["thumbnail_id"] or p["id"])}
                       for p in doc["photos"]]}
    if principal.is_staff:
        view.update(history=doc["history"], version=doc["version"],
                    read_count=doc.get("read_count", 0), recipient_count=doc["recipient_count"],
                    created_at=doc["created_at"],
                    allowed_actions=NOTICE_WORKFLOW.allowed(principal, doc))
    else:
        view["read_at"] = read_at
    return view


class NoticeManager(Records):
    collection = "notices"
    workflow = NOTICE_WORKFLOW

    def __init__(self, db, clock, *, places, bindings, residents, notifier, photos, photo_links,
                 effects: Effects, template: str, page: str = "pages/notices/detail"):
        self.db = db
        self.clock = clock
        self.places = places
        self.bindings = bindings
        self.residents = residents
        self.notifier = notifier
        self.photos = photos
        self.photo_links = photo_links
        self.effects = effects
        self.template = template
        self.page = page
        effects.register("notice.deliver", self._deliver)
        effects.register("notice.publish_due", self._publish_due)
        effects.register("notice.feed", self._feed)

    def view(self, doc: dict, principal: Principal, read_at=None) -> dict:
        return public_notice(doc, principal, self.photo_links, read_at)

    # -- staff --------------------------------------------------------------------

    async def create(self, principal: Principal, community_id: str, *, title: str, body: str,
                     audience: dict, urgent: bool = False) -> dict:
        now = self.clock.now()
        doc = {"community_id": ObjectId(community_id), "title": title, "body": body,
               "body_html": render(body), "audience": await self.check_audience(community_id, audience),
               "urgent": urgent, "pinned": False, "state": "draft", "photos": [],
               "publish_at": None, "published_at": None, "recipient_count": 0,
               "created_by": principal.id, "created_at": now, "updated_at": now, "version": 1,
               "history": [created(principal, now, "draft")]}
        await self.db.notices.insert_one(doc)
        return doc

    async def check_audience(self, community_id: str, audience: dict) -> dict:
        places = sorted(set(audience.get("places") or []))
        for path in places:
            if place_kind(path) == "room":
                raise Invalid("a notice goes to buildings or units",
                              fields={"audience.places": Text("{path} is a room", path=path)})
            if await self.places.place_by_path(community_id, path) is None:
                raise Invalid("no such place", fields={"audience.places": Text("no place {path}", path=repr(path))})
        return {"places": places, "who": audience.get("who", "residents")}

    async def checked(self, community_id: str, fields: dict) -> dict:
        if fields.get("audience") is not None:
            fields["audience"] = await self.check_audience(community_id, fields["audience"])
        return fields

    async def _publish_due(self, key: str, payload: dict) -> None:
        """A scheduled notice's time has come: publish it, unless it was since published,
        withdrawn or moved to another time (that schedule has its own effect)."""
        doc = await self.db.notices.find_one({"_id": payload["notice_id"], "state": "scheduled",
                                              "publish_at": payload["publish_at"]})
        if doc is not None:
            _, effects = await NOTICE_WORKFLOW.run(self.db.notices, SYSTEM, doc, "publish", {},
                                                   self.clock.now(), context=self)
            await self.effects.emit(effects)

    async def list_staff(self, community_id: str, state: str | None, limit: int) -> list[dict]:
        """The community's notices, newest first, each with its `read_count`."""
        query: dict = {"community_id": ObjectId(community_id)}
        if state:
            query["state"] = state
        docs = await self.db.notices.find(query).sort("created_at", DESCENDING).limit(
            limit).to_list(None)
        counts = {r["_id"]: r["read"] for r in await (await self.db.notice_recipients.aggregate([
            {"$match": {"notice_id": {"$in": [d["_id"] for d in docs]}, "read_at": {"$ne": None}}},
            {"$group": {"_id": "$notice_id", "read": {"$sum": 1}}}])).to_list(None)}
        for d in docs:
            d["read_count"] = counts.get(d["_id"], 0)
        return docs

    async def add_photos(self, community_id: str, notice_id: str, uploads: list[bytes]) -> dict:
        doc = await self.get(community_id, notice_id)
        if doc["state"] not in ("draft", "scheduled"):
            raise Invalid("a published notice keeps its photos", fields={"photo": "not now"})
        if not uploads:
            raise Invalid("no photo in the upload", fields={"photo": "required"})
        if len(doc["photos"]) + len(uploads) > MAX_PHOTOS:
            raise Unprocessable(Text("at most {limit} photos per notice", limit=MAX_PHOTOS),
                                code="too_many_photos", fields={"photo": Text(
                                    "{count} more allowed", count=MAX_PHOTOS - len(doc["photos"]))})
        processed = [await process_upload(data) for data in uploads]
        meta = {"notice_id": notice_id, "community_id": community_id}
        entries = []
        for item in processed:
            full = await self.photos.put(item.data, item.content_type, meta)
            thumb = item.thumbnail is not None and await self.photos.put(
                item.thumbnail, "image/jpeg", {**meta, "thumbnail_of": full}) or None
            entries.append({"id": full, "thumbnail_id": thumb, "content_type": item.content_type})
        return await self.db.notices.find_one_and_update(
            {"_id": doc["_id"]}, {"$push": {"photos": {"$each": entries}}},
            return_document=ReturnDocument.AFTER)

    # -- after publication ----------------------------------------------------------

    async def audience_links(self, community_id: ObjectId, audience: dict) -> list[dict]:
        """The active room links in the audience, one per person (their first matching room)."""
        query: dict = {"community_id": community_id, "state": "approved",
                       "relation": {"$in": list(WHO[audience["who"]])}}
        docs = await self.db.room_links.find(query, {"resident_id": 1, "room_path": 1,
                                                     "lease_end": 1, "state": 1}).sort(
            "room_path", ASCENDING).batch_size(WRITE_BATCH).to_list(None)
        now = self.clock.now()
        people: dict = {}
        for d in docs:
            if is_active(d, now) and covers(audience, d["room_path"]):
                people.setdefault(d["resident_id"], d)
        return list(people.values())

    async def _deliver(self, key: str, payload: dict) -> None:
        """Write down the recipients, send WeChat messages to those who granted one, then say
        so on the staff feed. Idempotent: recipients are keyed by notice and person, a
        message settled (`wechat` set) is not tried again, and one whose try died unsettled
        is sent at most once by its send key (models/notifications.py)."""
        notice = await self.db.notices.find_one({"_id": payload["notice_id"]})
        if notice is None or notice["state"] != "published":
            return
        links = await self.audience_links(notice["community_id"], notice["audience"])
        credited = set(await self.notifier.credited(self.template, [d["resident_id"] for d in links]))
        for at in range(0, len(links), WRITE_BATCH):
            # Those without a credit are settled as they are written: no message to try.
            await insert_new(self.db.notice_recipients, [
                self._recipient(notice, d, None if d["resident_id"] in credited else "no_credit")
                for d in links[at:at + WRITE_BATCH]])
        total = await self.db.notice_recipients.count_documents({"notice_id": notice["_id"]})
        await self.db.notices.update_one({"_id": notice["_id"]}, {"$set": {"recipient_count": total}})
        title = ("【紧急】" if notice["urgent"] else "") + notice["title"]
        zone = community_zone(await self.places.community(str(notice["community_id"])))
        data = {"thing1": title[:20],
                "time2": notice["published_at"].astimezone(zone).strftime("%Y-%m-%d %H:%M")}
        page = f"{self.page}?id={notice['_id']}"
        # Every recipient not yet settled: the credited ones, and one an earlier try left
        # unsettled (its credit spent, it is no longer `credited`; its send key says more).
        async for r in self.db.notice_recipients.find({"notice_id": notice["_id"], "wechat": None}):
            outcome = await self.notifier.send_subscribe(
                f"{key}:{r['resident_id']}", r["resident_id"], self.template,
                (str(notice["_id"]), "*"), data, page)
            await self.db.notice_recipients.update_one({"_id": r["_id"]}, {"$set": {"wechat": outcome}})
        await self.notifier.community_event(str(notice["community_id"]), "notice.delivered",
                                            notice={"id": str(notice["_id"]), "title": notice["title"],
                                                    "recipients": total})

    @staticmethod
    def _recipient(notice: dict, link: dict, wechat: str | None) -> dict:
        return {"_id": f"{notice['_id']}:{link['resident_id']}", "notice_id": notice["_id"],
                "resident_id": link["resident_id"], "room_path": link["room_path"],
                "building": building_of(link["room_path"]), "read_at": None, "wechat": wechat}

    async def _feed(self, key: str, payload: dict) -> None:
        await self.notifier.community_event(payload["community_id"], payload["kind"],
                                            notice=payload["notice"], by=payload["by"])

    # -- residents ------------------------------------------------------------------

    async def for_resident(self, principal: Principal, community_id: str, limit: int = 50) -> list[tuple]:
        """Published notices whose audience includes the caller: (notice, read_at), pinned
        and urgent first, then newest."""
        docs = await self.db.notices.find(
            {"community_id": ObjectId(community_id), "state": "published"}).sort(
            [("pinned", DESCENDING), ("urgent", DESCENDING), ("published_at", DESCENDING),
             ("_id", DESCENDING)]).to_list(500)
        mine = [d for d in docs if audience_room(principal, community_id, d["audience"])][:limit]
        reads = {r["notice_id"]: r["read_at"] for r in await self.db.notice_recipients.find(
            {"resident_id": ObjectId(principal.id), "notice_id": {"$in": [d["_id"] for d in mine]}},
            {"notice_id": 1, "read_at": 1}).to_list(None)}
        return [(d, reads.get(d["_id"])) for d in mine]

    async def resident_notice(self, principal: Principal, community_id: str, notice_id: str) -> dict:
        doc = await self.get(community_id, notice_id)
        if doc["state"] != "published" or not audience_room(principal, community_id, doc["audience"]):
            raise NotFound("notice not found")
        return doc

    async def read(self, principal: Principal, community_id: str, notice_id: str) -> tuple[dict, datetime]:
        """Record the caller's read (the first one counts; later ones change nothing)."""
        doc = await self.resident_notice(principal, community_id, notice_id)
        room = audience_room(principal, community_id, doc["audience"])
        rid = ObjectId(principal.id)
        key = f"{doc['_id']}:{rid}"
        # Someone who joined the audience after publication has no recipient entry yet.
        await insert_new(self.db.notice_recipients, [self._recipient(
            doc, {"resident_id": rid, "room_path": room}, "read_first")])
        first = await self.db.notice_recipients.find_one_and_update(
            {"_id": key, "read_at": None}, {"$set": {"read_at": self.clock.now()}},
            return_document=ReturnDocument.AFTER)
        return doc, (first or await self.db.notice_recipients.find_one({"_id": key}))["read_at"]

    # -- who has read --------------------------------------------------------------

    async def reads(self, community_id: str, notice_id: str, building: str | None) -> dict:
        """Read counts per building; with `building`, who there has not read yet."""
        doc = await self.get(community_id, notice_id)
        rows = await (await self.db.notice_recipients.aggregate([
            {"$match": {"notice_id": doc["_id"]}},
            {"$group": {"_id": "$building", "recipients": {"$sum": 1},
                        "read": {"$sum": {"$cond": [{"$eq": ["$read_at", None]}, 0, 1]}}}},
            {"$sort": {"_id": 1}}])).to_list(None)
        report = {"notice_id": notice_id, "recipients": sum(r["recipients"] for r in rows),
                  "read": sum(r["read"] for r in rows),
                  "buildings": [{"building": r["_id"], "recipients": r["recipients"],
                                 "read": r["read"]} for r in rows]}
        if building is not None:
            query = {"notice_id": doc["_id"], "building": building, "read_at": None}
            unread = await self.db.notice_recipients.find(
                query, {"resident_id": 1, "room_path": 1}).sort(
                [("room_path", ASCENDING), ("resident_id", ASCENDING)]).limit(UNREAD_PAGE).to_list(None)
            # One lookup each, by _id: a page of names, and no large `$in` for the store to scan.
            people = await asyncio.gather(*(self.db.residents.find_one(
                {"_id": u["resident_id"]}) for u in unread))
            report["unread"] = [{"resident_id": str(u["resident_id"]), "room_path": u["room_path"],
                                 "name": person and (office_name(person, community_id)
                                                     or person.get("name"))}
                                for u, person in zip(unread, people)]
            report["unread_total"] = next((r["recipients"] - r["read"] for r in rows
                                           if r["_id"] == building), 0)
        return report
