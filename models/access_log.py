"""The access log: every gate decision (allowed or refused), newest first.

Lines are built by the gate service (models/gate_access.py); this module stores
and reads them. A line is the audit record of an entry, so it is durable before the entry is
acknowledged to anyone (the open frame, an HTTP answer, an events_ack): `record` returns once
the line is written. Writes are group-committed: while one `insert_many` is in flight the lines
recorded meanwhile gather, and go in together next, so a busy gate costs one store round trip
per batch rather than per scan, and a quiet one waits for just its own insert.

A line for a bridge's scan has an id derived from the bridge and the scan's id
(models/gate_access.py, `scan_line_id`), and a line that took a use carries it (`use`: the
claim, its slot count, and the key that makes the count once per scan): the scan is logged
once however often its online answer and its offline decision arrive, and the use counts in
Redis can be rebuilt from here (models/passes.py) when Redis loses them.

`AccessLogReader` presents lines to people (screens and exports): names instead of ids,
room labels (models.places.place_label), gate names, the community's local time, and
words for the codes, in Chinese or English.
"""

import asyncio
import base64
import csv
import io
import logging
import re
from datetime import UTC, datetime

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import BulkWriteError

from models.common import DUPLICATE_KEY, insert_new
from models.errors import Invalid
from models.messages import Text, in_lang
from models.places import community_zone, place_label

log = logging.getLogger("xiaoqu.access_log")

INDEXES = {
    "access_log": [
        IndexModel([("community_id", ASCENDING), ("at", DESCENDING), ("_id", DESCENDING)]),
        IndexModel([("community_id", ASCENDING), ("gate_id", ASCENDING), ("at", DESCENDING)]),
        IndexModel([("community_id", ASCENDING), ("pass_id", ASCENDING), ("at", DESCENDING)]),
        IndexModel([("community_id", ASCENDING), ("subject", ASCENDING), ("at", DESCENDING)]),
        # The uses still counted (models/passes.py rebuilds Redis from them).
        IndexModel([("use.expires", ASCENDING)], sparse=True),
    ],
}
SOURCES = ("gate", "scanner", "remote", "offline")
# Present on some lines: remote opens (command_id, level, by, open_reason: the reason the
# opener gave), offline decisions (bridge: what the bridge did, flag: "invalid_claim" or
# "double_use" when the server disagrees), a bridge's scans (scan: the bridge's scan id);
# trace_id: the trace of the request behind a remote open (docs/operations.md, "Tracing").
OPTIONAL_FIELDS = ("command_id", "level", "by", "open_reason", "bridge", "flag", "scan",
                   "trace_id")


def public_entry(doc: dict) -> dict:
    return {"id": str(doc["_id"]), "community_id": str(doc["community_id"]),
            "gate_id": doc["gate_id"] and str(doc["gate_id"]), "direction": doc["direction"],
            "at": doc["at"], "result": doc["result"], "reason": doc["reason"],
            "kind": doc.get("kind"), "pass_id": doc.get("pass_id"),
            "subject": doc.get("subject"), "source": doc["source"],
            **{k: doc[k] for k in OPTIONAL_FIELDS if doc.get(k) is not None}}


def _cursor(doc: dict) -> str:
    millis = int(doc["at"].timestamp() * 1000)
    return base64.urlsafe_b64encode(f"{millis}:{doc['_id']}".encode()).decode()


def _parse_cursor(cursor: str) -> tuple[datetime, ObjectId]:
    try:
        millis, _, oid = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        return datetime.fromtimestamp(int(millis) / 1000, UTC), ObjectId(oid)
    except (ValueError, InvalidId, UnicodeDecodeError):
        raise Invalid("bad cursor", fields={"cursor": "use next_cursor from a page"}) from None


def _oid(value: str, field: str) -> ObjectId:
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        raise Invalid(Text("bad {field}", field=field), fields={field: "expected a 24-hex id"}) from None


class AccessLog:
    def __init__(self, db):
        self.db = db
        self.waiting: list[tuple[dict, asyncio.Future]] = []  # lines for the next insert
        self.writer: asyncio.Task | None = None

    @staticmethod
    def _doc(line: dict) -> dict:
        at = line["at"]
        # Milliseconds: what MongoDB keeps, so cursors compare equal to stored values.
        return {"_id": ObjectId(), **line,
                "at": at.replace(microsecond=at.microsecond // 1000 * 1000)}

    async def record(self, line: dict) -> None:
        """Write one line, as built by the gate service (models/gate_access.py, the one place
        access-log lines are made); returns once it is stored. A line whose id is there
        already (a scan's second answer) is not written again. Raises PyMongoError when the
        store fails: the caller must not acknowledge the entry then."""
        done = asyncio.get_running_loop().create_future()
        self.waiting.append((self._doc(line), done))
        if self.writer is None or self.writer.done():
            self.writer = asyncio.create_task(self._write())
        await done

    async def replace(self, line: dict) -> None:
        """Write a line over the one with its id (an offline decision's verdict replaces the
        late online answer to the same scan: what the bridge did is what happened)."""
        doc = self._doc(line)
        await self.db.access_log.replace_one({"_id": doc["_id"]}, doc, upsert=True)

    async def line(self, line_id: ObjectId) -> dict | None:
        return await self.db.access_log.find_one({"_id": line_id})

    async def _write(self) -> None:
        while self.waiting:
            batch, self.waiting = self.waiting, []
            try:
                await insert_new(self.db.access_log, [doc for doc, _ in batch])
                failed: dict[int, Exception] = {}
            except BulkWriteError as exc:  # unordered: the lines not named went in
                failed = {e["index"]: exc for e in exc.details.get("writeErrors", [])
                          if e.get("code") != DUPLICATE_KEY}
            except Exception as exc:  # whatever it is, the waiting callers must hear of it
                failed = dict.fromkeys(range(len(batch)), exc)
            if failed:
                log.warning("access log: %d of %d lines not written", len(failed), len(batch))
            for i, (_, done) in enumerate(batch):
                if done.done():
                    continue
                if i in failed:
                    done.set_exception(failed[i])
                else:
                    done.set_result(None)

    async def flush(self) -> None:
        """Wait for the writes in flight (at shutdown: no caller is left waiting)."""
        if self.writer is not None:
            await self.writer

    async def uses(self, now: float) -> list[dict]:
        """The `use` of every line whose claim has not expired at `now` (unix time), with its
        community."""
        return await self.db.access_log.find(
            {"use.expires": {"$gt": now}}, {"use": 1, "community_id": 1}).to_list(None)

    async def query(self, community_id: str, gate_id: str | None = None,
                    subject: str | None = None, pass_id: str | None = None,
                    result: str | None = None, reason: str | None = None,
                    flag: str | None = None, subjects: list[str] | None = None,
                    since: datetime | None = None,
                    until: datetime | None = None, cursor: str | None = None,
                    limit: int = 50) -> dict:
        """Newest first; `next_cursor` continues after the last item (None at the end).
        `subjects`: any of these subjects (a person filter resolved to ids)."""
        query: dict = {"community_id": ObjectId(community_id)}
        if gate_id:
            query["gate_id"] = _oid(gate_id, "gate_id")
        for name, value in (("subject", subject), ("pass_id", pass_id), ("result", result),
                            ("reason", reason), ("flag", flag)):
            if value:
                query[name] = value
        if subjects is not None:
            query.setdefault("$and", []).append({"subject": {"$in": subjects}})
        at: dict = {}
        if since:
            at["$gte"] = since
        if until:
            at["$lt"] = until
        if at:
            query["at"] = at
        if cursor:
            before, last_id = _parse_cursor(cursor)
            query["$or"] = [{"at": {"$lt": before}}, {"at": before, "_id": {"$lt": last_id}}]
        docs = await self.db.access_log.find(query).sort(
            [("at", DESCENDING), ("_id", DESCENDING)]).limit(limit + 1).to_list(None)
        more = len(docs) > limit
        docs = docs[:limit]
        return {"items": [public_entry(d) for d in docs],
                "next_cursor": _cursor(docs[-1]) if more else None}



# -- presentation --------------------------------------------------------------------------

# Words for the codes a line carries, each (Chinese, English) as every word table here
# (models/messages.in_lang); a code without words here is shown as it is.
WORDS = {
    "result": {"allow": ("通过", "allowed"), "deny": ("拒绝", "refused")},
    "direction": {"in": ("进", "in"), "out": ("出", "out")},
    "source": {
        "gate": ("门禁扫码", "gate scan"), "scanner": ("保安扫码", "guard scan"),
        "remote": ("远程开门", "remote open"), "offline": ("离线判定", "decided offline")},
    "kind": {
        "resident": ("住户", "resident"), "visitor": ("访客", "visitor"),
        "worker": ("工人", "worker"), "staff": ("员工", "staff")},
    "flag": {
        "invalid_claim": ("离线放行无效", "invalid offline entry"),
        "double_use": ("重复使用", "used twice")},
    "reason": {
        "ok": ("正常", "ok"), "malformed": ("无法识别的码", "unreadable code"),
        "unknown_code": ("未知的码", "unknown code"),
        "unknown_key": ("码的密钥已失效", "code key retired"),
        "wrong_community": ("不是本小区的码", "another community's code"),
        "bad_signature": ("码被篡改", "tampered code"),
        "not_yet_valid": ("尚未生效", "not valid yet"), "expired": ("已过期", "expired"),
        "gate_not_allowed": ("此门不在通行范围", "gate not on the pass"),
        "outside_hours": ("不在通行时段", "outside the pass's hours"),
        "outside_days": ("非通行日", "not a working day"),
        "revoked": ("已作废或停用", "cancelled or suspended"), "locked": ("封闭管控中", "lockdown"),
        "gate_closed": ("不在开放时间", "gate closed at this hour"),
        "used_up": ("次数已用完", "no entries left"), "replayed": ("码已用过", "code already used"),
        "rate_limited": ("尝试过于频繁", "too many tries"),
        "gate_offline": ("门禁离线", "gate offline"), "no_ack": ("门禁无回应", "gate did not answer"),
        "not_opened": ("门未打开", "door did not open"), "refused": ("门禁拒绝执行", "gate refused"),
        "received": ("门禁已收到，未动作", "received, not actuated"),
        "invalid_claim": ("无效", "invalid"), "no_config": ("门禁未获配置", "bridge had no config")},
}
CODED = tuple(WORDS)


def code_words(lang: str) -> dict[str, dict[str, str]]:
    """WORDS in one language: what a line's `words` and the filter choices show."""
    return {field: {code: in_lang(pair, lang) for code, pair in codes.items()}
            for field, codes in WORDS.items()}


# Export columns: field of a presented line -> its header.
EXPORT_COLUMNS = {
    "at_local": ("时间", "Time"), "gate_name": ("门禁", "Gate"), "direction": ("方向", "Direction"),
    "result": ("结果", "Result"), "reason": ("原因", "Reason"), "kind": ("类型", "Kind"),
    "person": ("姓名", "Name"), "room": ("房间", "Room"), "source": ("方式", "Source"),
    "by_name": ("开门人", "Opened by"), "open_reason": ("开门理由", "Reason given"), "flag": ("核对", "Check"),
}
SHEET_TITLE = ("通行记录", "access log")
LOCAL_TIME = "%Y-%m-%d %H:%M:%S"
EXPORT_PAGE = 500
# Where the people a line names are, by its kind (a remote open's `by`: "staff:<id>"); a line
# of another kind is looked for in all of them.
PEOPLE_IN = {"staff": ("staff",), "resident": ("residents",), "visitor": ("passes",),
             "worker": ("passes",)}


def _oids(values) -> list[ObjectId]:
    return [ObjectId(v) for v in values if v and ObjectId.is_valid(v)]


class AccessLogReader:
    """Access-log lines as people read them. Reads (never writes) the communities, gates,
    residents, staff, room links and passes it names."""

    def __init__(self, db, places, staff, access_log: AccessLog):
        self.db = db
        self.places = places
        self.staff = staff
        self.access_log = access_log

    async def subjects_named(self, community_id: str, text: str) -> list[str]:
        """Ids of the people in the community whose name (or username, phone) contains `text`:
        residents linked there, staff working there, visitors and workers of its passes."""
        cid = ObjectId(community_id)
        like = {"$regex": re.escape(text.strip()), "$options": "i"}
        linked = await self.db.room_links.distinct("resident_id", {"community_id": cid})
        residents = await self.db.residents.find(
            {"_id": {"$in": linked}, "$or": [{"name": like}, {"phone": like}]},
            {"_id": 1}).to_list(None)
        staff = await self.db.staff.find(
            {f"roles.{community_id}": {"$exists": True},
             "$or": [{"name": like}, {"username": like}]}, {"_id": 1}).to_list(None)
        passes = await self.db.passes.find(
            {"community_id": cid, "$or": [{"visitor.name": like}, {"visitor.phone": like}]},
            {"_id": 1}).to_list(None)
        return [str(d["_id"]) for d in residents + staff + passes]

    async def page(self, community_id: str, lang: str = "zh", person: str | None = None,
                   **filters) -> dict:
        """A page of `AccessLog.query` with every line presented; `person` filters by name."""
        if person:
            filters["subjects"] = await self.subjects_named(community_id, person)
        page = await self.access_log.query(community_id, **filters)
        return {**page, "items": await self.present(community_id, page["items"], lang)}

    async def present(self, community_id: str, items: list[dict], lang: str = "zh") -> list[dict]:
        """Each line with gate_name, person, room, by_name, at_local and `words` for its codes.
        A line's kind says where its people are (staff accounts, residents, passes), so a page
        reads only the collections it names, and the community, gates and staff from the
        process's copies: a page of remote opens by staff reads nothing but its lines."""
        cid = ObjectId(community_id)
        zone = community_zone(await self.places.community(community_id))
        gates = await self.places.gate_names(community_id, {item["gate_id"] for item in items})
        wanted: dict[str, set[str]] = {"staff": set(), "residents": set(), "passes": set()}
        for item in items:
            kind, _, opener = (item.get("by") or "").partition(":")
            for who, of in ((item.get("subject"), item.get("kind")), (opener, kind)):
                for collection in PEOPLE_IN.get(of, tuple(wanted)) if who else ():
                    wanted[collection].add(who)
        names = await self.staff.names(wanted["staff"])
        residents = _oids(wanted["residents"])
        rooms: dict[str, list[str]] = {}
        if residents:
            for doc in await self.db.residents.find(
                    {"_id": {"$in": residents}}, {"name": 1}).to_list(None):
                names[str(doc["_id"])] = doc.get("name") or ""
            for link in await self.db.room_links.find(
                    {"community_id": cid, "resident_id": {"$in": residents}, "state": "approved"},
                    {"resident_id": 1, "room_path": 1}).to_list(None):
                rooms.setdefault(str(link["resident_id"]), []).append(link["room_path"])
        if passes := _oids(wanted["passes"]):
            for doc in await self.db.passes.find(
                    {"community_id": cid, "_id": {"$in": passes}},
                    {"visitor": 1, "host_room": 1}).to_list(None):
                names[str(doc["_id"])] = (doc.get("visitor") or {}).get("name") or ""
                if doc.get("host_room"):
                    rooms[str(doc["_id"])] = [doc["host_room"]]
        words = code_words(lang)
        presented = []
        for item in items:
            subject = item.get("subject")
            opener = item.get("by", "").partition(":")[2] if item.get("by") else None
            presented.append({
                **item, "gate_name": gates.get(item["gate_id"], ""),
                "person": names.get(subject, "") if subject else "",
                "room": "、".join(place_label(p, lang) for p in sorted(rooms.get(subject, []))),
                "by_name": names.get(opener, "") if item.get("source") == "remote" else "",
                "at_local": item["at"].replace(tzinfo=item["at"].tzinfo or UTC).astimezone(zone),
                "words": {field: words[field].get(item.get(field), item.get(field))
                          for field in CODED if item.get(field)}})
        return presented

    async def export_name(self, community_id: str, fmt: str, now: datetime) -> str:
        """The export's file name, stamped with the community's local time like its rows."""
        zone = community_zone(await self.places.community(community_id))
        return f"access-log-{now.astimezone(zone):%Y%m%d-%H%M%S}.{fmt}"

    async def export(self, community_id: str, fmt: str, lang: str = "zh",
                     person: str | None = None, max_rows: int = 100_000, **filters) -> bytes:
        """The filtered lines as CSV or XLSX, with headers and words in `lang`."""
        rows, cursor = [], None
        while len(rows) < max_rows:
            page = await self.page(community_id, lang, person, **filters, cursor=cursor,
                                   limit=EXPORT_PAGE)
            rows += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                break
        headers = [in_lang(header, lang) for header in EXPORT_COLUMNS.values()]
        table = [[_cell(row, field) for field in EXPORT_COLUMNS] for row in rows[:max_rows]]
        if fmt == "csv":
            return _csv(headers, table)
        return await asyncio.get_running_loop().run_in_executor(
            None, _xlsx, in_lang(SHEET_TITLE, lang), headers, table)


def _cell(row: dict, field: str):
    if field in CODED:
        return row["words"].get(field, "")
    value = row.get(field)
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)  # local wall-clock time: what the header says
    return "" if value is None else value


def _csv(headers: list[str], table: list[list]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(headers)
    for row in table:
        writer.writerow([v.strftime(LOCAL_TIME) if isinstance(v, datetime) else v for v in row])
    return ("\ufeff" + out.getvalue()).encode()  # BOM: Excel then reads the UTF-8 names right


def _xlsx(title: str, headers: list[str], table: list[list]) -> bytes:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    book = Workbook(write_only=True)
    sheet = book.create_sheet(title)
    sheet.append(headers)
    for row in table:
        cells = []
        for value in row:
            cell = WriteOnlyCell(sheet, value)
            if isinstance(value, datetime):
                cell.number_format = "yyyy-mm-dd hh:mm:ss"
            cells.append(cell)
        sheet.append(cells)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
