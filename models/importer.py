"""Bulk import of rooms and residents from an .xlsx or .csv file.

One row = one room, optionally with one resident linked to it. The whole file
is checked first; rows with any problem are reported (spreadsheet row number,
column, problem) and skipped entirely, the others are written. Writing is an
idempotent upsert by natural keys: places by "<community>:<path>", residents
by phone, room links by (resident, room). Re-importing a file changes nothing.

Residents in a file have not logged in yet, so they are stored as
"pre-registered" residents (a phone, a name, no WeChat openid) with approved
room links; the first WeChat login that proves that phone takes the record over
(`ResidentManager.claim_preregistered`).

Speed: the embedded test database costs milliseconds per operation, and its
`$in` costs grow with collection size × list length, so the import reads the
community's places, links and imported residents with one query each, and
writes with `insert_many`/`bulk_write` per chunk of rows. People the office did
not import (WeChat users with a phone, another community's residents) are
found by inserting optimistically: the unique phone index refuses them, and
only those few phones are looked up.
"""

import asyncio
import csv
import io
import itertools
import re
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import openpyxl
import openpyxl.utils
from bson import ObjectId
from pymongo import ASCENDING, IndexModel, UpdateOne
from pymongo.errors import BulkWriteError

from models.bindings import RELATIONS
from models.errors import Conflict, Invalid
from models.people import PHONE
from models.places import SEGMENT

INDEXES = {
    # residents this community's office imported: found again on the next import
    "residents": [IndexModel([("imported_into", ASCENDING)])],
}

# canonical column -> accepted headers (compared after `_header_key`)
COLUMNS = {
    "building": ("building", "bldg", "楼栋", "楼号", "楼栋号", "栋", "楼", "幢"),
    "unit": ("unit", "entrance", "单元", "单元号"),
    "room": ("room", "房号", "房间号", "房间", "门牌号", "室"),
    "area_m2": ("area_m2", "area", "面积", "建筑面积", "房屋面积"),
    "resident_name": ("resident_name", "name", "姓名", "住户姓名", "业主姓名"),
    "phone": ("phone", "mobile", "手机", "手机号", "手机号码", "电话", "联系电话"),
    "relation": ("relation", "关系", "身份", "住户类型"),
    "lease_end": ("lease_end", "租期截止", "租期至", "租约到期", "租期截止日", "到期日期"),
}
REQUIRED = ("building", "unit", "room")
RESIDENT_COLUMNS = ("resident_name", "phone", "relation", "lease_end")
RELATION_ALIASES = {
    **{r: r for r in RELATIONS},
    "业主": "owner", "房主": "owner", "产权人": "owner",
    "家属": "family", "家庭成员": "family", "家人": "family",
    "租户": "tenant", "租客": "tenant",
}
FORMATS = ("xlsx", "csv")
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MAX_ROWS = 50_000
MAX_FILE_BYTES = 16 * 1024 * 1024  # 50,000 rows of CSV fit with room to spare
# An .xlsx of 50,000 rows unpacks to ≈ 30 MiB; a zip bomb to far more.
MAX_UNPACKED_BYTES = 64 * 1024 * 1024
MAX_XLSX_MEMBERS = 1000
MAX_COLUMNS = 32  # the import has 8 columns; office sheets add a few notes
HEADER_SEARCH_ROWS = 10  # a title row or two above the header is common in office sheets
CHUNK_ROWS = 500
LOCK_SECONDS = 600
CHINA = timezone(timedelta(hours=8))  # leases end at midnight local time; no DST in China
DUPLICATE_KEY = 11000
CREATED, UPDATED, UNCHANGED = 2, 1, 0

_SUFFIXES = {"building": "号楼|栋|幢|座|号", "unit": "单元", "room": "室|号"}
_NUMBER_UNIT = re.compile(r"\s*(㎡|m²|m2|平方米|平米)$", re.IGNORECASE)
# 2027-06-30, 2027/6/30, 2027.6.30, 2027年6月30日; a time after it (CSV from Excel) is ignored
_DATE = re.compile(r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"
                   r"(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?$")


def _header_key(text: object) -> str:
    """Lower case, no spaces/underscores/marks, no bracketed unit: "面积（㎡）*" -> "面积"."""
    key = re.sub(r"[(（\[【].*?[)）\]】]", "", str(text).strip().lower())
    return re.sub(r"[\s*_\-:：]", "", key)


HEADER_ALIASES = {_header_key(alias): column for column, aliases in COLUMNS.items()
                  for alias in aliases}


def error(row: int, column: str, header: str | None, problem: str) -> dict:
    return {"row": row, "column": column, "header": header or column, "problem": problem}


# -- reading the file ----------------------------------------------------------

def detect_format(data: bytes, declared: str | None = None) -> str:
    """The file's format from its content; `declared` (a ?format= or Content-Type) must agree."""
    if not data:
        raise Invalid("the file is empty", fields={"file": "send the .xlsx or .csv file as the body"})
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise Invalid("old Excel .xls files are not supported",
                      fields={"file": "save it as .xlsx (Excel Workbook) or .csv (UTF-8)"})
    actual = "xlsx" if data.startswith(b"PK\x03\x04") else "csv"
    if declared and declared != actual:
        raise Invalid(f"the file is not {declared}", fields={"format": f"the content looks like {actual}"})
    return actual


def _cells(data: bytes, fmt: str) -> list[tuple]:
    rows = _xlsx_cells(data) if fmt == "xlsx" else _csv_cells(data)
    if len(rows) > MAX_ROWS + HEADER_SEARCH_ROWS:
        raise Invalid("too many rows", fields={"file": f"at most {MAX_ROWS} rows per import; split it"})
    return rows


def _check_package(data: bytes) -> None:
    """An .xlsx is a zip: refuse one that unpacks too large before anything parses it (zipfile
    stops each member at its declared size, so the declared sizes bound the real ones)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as package:
            members = package.infolist()
    except (zipfile.BadZipFile, ValueError) as exc:
        raise Invalid("cannot read the .xlsx file", fields={"file": str(exc)[:200]}) from None
    if len(members) > MAX_XLSX_MEMBERS or \
            sum(m.file_size for m in members) > MAX_UNPACKED_BYTES:
        raise Invalid("the .xlsx file is too large unpacked", fields={
            "file": f"unpacks to more than {MAX_UNPACKED_BYTES >> 20} MiB "
                    f"(or more than {MAX_XLSX_MEMBERS} parts)"})


def _check_size(sheet) -> None:
    """The sheet's declared size: a cell far to the right (column XFD) would otherwise make
    every row that wide. Reading is bounded to MAX_COLUMNS as well, whatever is declared."""
    columns, rows = sheet.max_column or 0, sheet.max_row or 0
    if columns > MAX_COLUMNS:
        raise Invalid("the sheet is too wide", fields={
            "file": f"at most {MAX_COLUMNS} columns; this sheet reaches column "
                    f"{openpyxl.utils.get_column_letter(min(columns, 16384))}: delete the "
                    "columns right of the table"})
    if rows > MAX_ROWS + HEADER_SEARCH_ROWS:
        raise Invalid("too many rows", fields={"file": f"at most {MAX_ROWS} rows per import; split it"})


def _xlsx_cells(data: bytes) -> list[tuple]:
    _check_package(data)
    try:
        with warnings.catch_warnings():
            # openpyxl warns about styles/extensions of other programs' files; not our concern
            warnings.filterwarnings("ignore", category=UserWarning, module="openpyxl")
            book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
            try:
                sheet = book.worksheets[0]
                _check_size(sheet)
                return list(itertools.islice(sheet.iter_rows(max_col=MAX_COLUMNS, values_only=True),
                                             MAX_ROWS + HEADER_SEARCH_ROWS + 1))
            finally:
                book.close()
    except Invalid:
        raise
    except Exception as exc:  # a damaged upload makes openpyxl raise almost anything
        raise Invalid("cannot read the .xlsx file",
                      fields={"file": f"{type(exc).__name__}: {exc}"[:200]}) from None


def _csv_cells(data: bytes) -> list[tuple]:
    # Excel on Chinese Windows saves "CSV" in GB18030/GBK unless told UTF-8.
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise Invalid("the .csv file is neither UTF-8 nor GB18030 text", fields={"file": "bad encoding"})
    first_line = text.split("\n", 1)[0]
    delimiter = max(",\t;", key=first_line.count)
    try:
        return [tuple(r) for r in itertools.islice(
            csv.reader(io.StringIO(text, newline=""), delimiter=delimiter),
            MAX_ROWS + HEADER_SEARCH_ROWS + 1)]
    except csv.Error as exc:
        raise Invalid("cannot read the .csv file", fields={"file": str(exc)}) from None


def _find_header(rows: list[tuple]) -> tuple[int, dict[str, int], dict[str, str]]:
    """(index of the header row, column -> position, column -> header text as written)."""
    for index, row in enumerate(rows[:HEADER_SEARCH_ROWS]):
        positions: dict[str, int] = {}
        headers: dict[str, str] = {}
        for position, cell in enumerate(row):
            column = HEADER_ALIASES.get(_header_key(cell)) if cell is not None else None
            if column and column not in positions:
                positions[column] = position
                headers[column] = str(cell).strip()
        if all(c in positions for c in REQUIRED):
            return index, positions, headers
    wanted = ", ".join(f"{c} ({COLUMNS[c][2]})" for c in REQUIRED)
    raise Invalid("no header row with the required columns",
                  fields={"file": f"the first row must name the columns; required: {wanted}"})


# -- checking cells ------------------------------------------------------------

def _text(value: object) -> str | None:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # Excel stores 101 and 13800138000 as floats
    text = "" if value is None else str(value).strip()
    return text or None


def _segment(column: str) -> Callable[[object], str]:
    suffix = re.compile(rf"(?:{_SUFFIXES[column]})$")

    def check(value: object) -> str:
        text = suffix.sub("", _text(value) or "")
        if not SEGMENT.match(text):
            raise ValueError("expected 1-8 letters or digits, like 3 or 1201")
        return text
    return check


def _area(value: object) -> float:
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        try:
            number = float(_NUMBER_UNIT.sub("", str(value)).strip())
        except ValueError:
            raise ValueError("expected a number of square metres, like 89.5") from None
    if not 0 < number < 100_000:
        raise ValueError("must be between 0 and 100000 square metres")
    return round(number, 2)


def _name(value: object) -> str:
    text = _text(value) or ""
    if len(text) > 64:
        raise ValueError("at most 64 characters")
    return text


def _phone(value: object) -> str:
    text = _text(value) or ""
    if re.search(r"\d[.,]?\d*[eE]\+?\d+$", text):
        raise ValueError("the phone was saved as a number in scientific notation; "
                         "format the column as text")
    digits = re.sub(r"[\s\-()]", "", text)
    digits = re.sub(r"^(\+?86)(?=1\d{10}$)", "", digits)
    if not PHONE.match(digits):
        raise ValueError("expected an 11-digit mainland mobile number, like 13800138000")
    return digits


def _relation(value: object) -> str:
    relation = RELATION_ALIASES.get((_text(value) or "").lower())
    if relation is None:
        raise ValueError("expected owner, family or tenant (业主, 家属, 租户)")
    return relation


def _lease_end(value: object) -> datetime:
    """The lease runs through the given day: it ends at the next midnight, China time."""
    if isinstance(value, datetime):
        day = value.date()
    elif isinstance(value, date):
        day = value
    else:
        match = _DATE.match(_text(value) or "")
        try:
            day = date(*map(int, match.groups())) if match else None
        except ValueError:
            day = None
        if day is None:
            raise ValueError("expected a date, like 2027-06-30")
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), CHINA).astimezone(timezone.utc)


CHECKS: dict[str, Callable[[object], object]] = {
    "building": _segment("building"), "unit": _segment("unit"), "room": _segment("room"),
    "area_m2": _area, "resident_name": _name, "phone": _phone, "relation": _relation,
    "lease_end": _lease_end,
}


@dataclass(frozen=True)
class Row:
    number: int  # as the spreadsheet shows it (header = row 1 unless titles sit above)
    building: str
    unit: str
    room: str
    area_m2: float | None = None
    resident_name: str | None = None
    phone: str | None = None
    relation: str | None = None
    lease_end: datetime | None = None

    @property
    def room_path(self) -> str:
        return f"{self.building}-{self.unit}-{self.room}"

    @property
    def paths(self) -> tuple[str, str, str]:
        return self.building, f"{self.building}-{self.unit}", self.room_path


@dataclass
class Parsed:
    total: int  # data rows (blank rows skipped)
    rows: list[Row]  # the rows without any problem
    errors: list[dict]
    failed: int  # rows with at least one problem


def _check_row(number: int, raw: dict[str, object], headers: dict[str, str],
               now: datetime) -> tuple[Row | None, list[dict]]:
    values: dict[str, object] = {}
    errors = []

    def problem(column: str, text: str) -> None:
        errors.append(error(number, column, headers.get(column), text))

    for column, check in CHECKS.items():
        cell = raw.get(column)
        if _text(cell) is None:
            continue
        try:
            values[column] = check(cell)
        except ValueError as exc:
            problem(column, str(exc))
    for column in REQUIRED:
        if _text(raw.get(column)) is None:
            problem(column, "required")
    if any(_text(raw.get(c)) is not None for c in RESIDENT_COLUMNS):
        for column in ("resident_name", "phone", "relation"):
            if _text(raw.get(column)) is None:
                problem(column, "required when the row names a resident")
        relation, lease_end = values.get("relation"), values.get("lease_end")
        if relation == "tenant" and _text(raw.get("lease_end")) is None:
            problem("lease_end", "required for a tenant")
        if relation == "owner" and lease_end is not None:
            problem("lease_end", "an owner has no lease end; leave it empty")
        if lease_end is not None and lease_end <= now:
            problem("lease_end", "the lease has already ended")
    if errors:
        return None, errors
    return Row(number=number, **values), []


def parse(data: bytes, fmt: str | None, now: datetime) -> Parsed:
    """Read and check every row. Raises Invalid when the file as a whole is unusable."""
    cells = _cells(data, detect_format(data, fmt))
    header_index, positions, headers = _find_header(cells)
    rows: list[Row] = []
    errors: list[dict] = []
    total = failed = 0
    # The first valid row's values for a room / phone / pair; later rows must agree.
    areas: dict[str, tuple[float, int]] = {}
    names: dict[str, tuple[str, int]] = {}
    pairs: dict[tuple[str, str], int] = {}
    for index, cells_of_row in enumerate(cells[header_index + 1:], start=header_index + 2):
        raw = {c: cells_of_row[p] for c, p in positions.items() if p < len(cells_of_row)}
        if all(_text(v) is None for v in raw.values()):
            continue
        total += 1
        row, row_errors = _check_row(index, raw, headers, now)
        if row is not None:
            row_errors = _disagreements(row, areas, names, pairs, headers)
        if row_errors:
            errors += row_errors
            failed += 1
            continue
        rows.append(row)
        if row.area_m2 is not None:
            areas.setdefault(row.room_path, (row.area_m2, row.number))
        if row.phone:
            names.setdefault(row.phone, (row.resident_name, row.number))
            pairs[(row.room_path, row.phone)] = row.number
    return Parsed(total, rows, errors, failed)


def _disagreements(row: Row, areas: dict, names: dict, pairs: dict, headers: dict) -> list[dict]:
    """A row contradicting an earlier row of the same file is refused (which one is right?)."""
    found = []
    area = areas.get(row.room_path)
    if area and row.area_m2 is not None and area[0] != row.area_m2:
        found.append(error(row.number, "area_m2", headers.get("area_m2"),
                           f"room {row.room_path} has area {area[0]} in row {area[1]}"))
    if row.phone:
        name = names.get(row.phone)
        if name and name[0] != row.resident_name:
            found.append(error(row.number, "resident_name", headers.get("resident_name"),
                               f"phone {row.phone} is {name[0]!r} in row {name[1]}"))
        if (row.room_path, row.phone) in pairs:
            found.append(error(row.number, "phone", headers.get("phone"),
                               f"same room and phone as row {pairs[(row.room_path, row.phone)]}"))
    return found


# -- writing -------------------------------------------------------------------

async def _insert(collection, docs: list[dict]) -> list[dict]:
    """Insert all; return the docs refused as duplicates (they exist already)."""
    if not docs:
        return []
    try:
        await collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        refused = exc.details["writeErrors"]
        if any(e["code"] != DUPLICATE_KEY for e in refused):
            raise
        return [docs[e["index"]] for e in refused]
    return []


class _Run:
    """One import into one community: what exists, what each row did, and the writes."""

    def __init__(self, db, bindings, community_id: ObjectId, now: datetime, by: str):
        self.db = db
        self.bindings = bindings
        self.cid = community_id
        self.now = now
        self.history = {"at": now, "by": by, "action": "import", "reason": "bulk import"}
        self.outcome: dict[int, int] = {}  # row number -> CREATED/UPDATED/UNCHANGED
        self.counts: Counter = Counter()  # (kind, "created"|"updated") -> n

    async def load(self) -> None:
        cid = self.cid
        self.places = {d["path"]: d for d in await self.db.places.find(
            {"community_id": cid}, {"path": 1, "key": 1, "area_m2": 1}).to_list(None)}
        self.residents = {d["phone"]: d for d in await self.db.residents.find(
            {"imported_into": cid}, {"phone": 1, "name": 1}).to_list(None)}
        self.links = {(d["resident_id"], d["room_path"]): d for d in await self.db.room_links.find(
            {"community_id": cid, "state": {"$in": ["pending", "approved"]}},
            {"resident_id": 1, "room_path": 1, "relation": 1, "lease_end": 1, "state": 1}).to_list(None)}

    def mark(self, row: Row, outcome: int, kind: str) -> None:
        self.outcome[row.number] = max(self.outcome.get(row.number, UNCHANGED), outcome)
        self.counts[(kind, "created" if outcome == CREATED else "updated")] += 1

    async def write(self, rows: list[Row]) -> None:
        """Places, then residents, then links: a row's link is written after its parts."""
        await self._places(rows)
        people = [r for r in rows if r.phone]
        await self._residents(people)
        await self._links(people)

    async def _places(self, rows: list[Row]) -> None:
        new, changes = [], []
        for row in rows:
            for path in row.paths:
                if path not in self.places:
                    kind = ("building", "unit", "room")[path.count("-")]
                    self.places[path] = doc = {
                        "_id": ObjectId(), "community_id": self.cid, "key": f"{self.cid}:{path}",
                        "kind": kind, "path": path, "name": path,
                        "area_m2": row.area_m2 if kind == "room" else None, "created_at": self.now}
                    new.append(doc)
                    self.mark(row, CREATED, "places")
            room = self.places[row.room_path]
            if row.area_m2 is not None and room.get("area_m2") != row.area_m2:
                room["area_m2"] = row.area_m2
                changes.append(UpdateOne({"key": room["key"]}, {
                    "$set": {"area_m2": row.area_m2, "updated_at": self.now}}))
                self.mark(row, UPDATED, "places")
        # A place refused as a duplicate was just added by someone else: it exists, as wanted.
        await _insert(self.db.places, new)
        if changes:
            await self.db.places.bulk_write(changes, ordered=False)

    async def _residents(self, rows: list[Row]) -> None:
        new = {}
        for row in rows:
            if row.phone not in self.residents and row.phone not in new:
                new[row.phone] = {"_id": ObjectId(), "phone": row.phone, "name": row.resident_name,
                                  "status": "pre-registered", "imported_into": [self.cid],
                                  "created_at": self.now}
        refused = await _insert(self.db.residents, list(new.values()))
        for doc in refused:
            del new[doc["phone"]]
        self.residents.update(new)
        changes = []
        if refused:
            # Already known elsewhere (a WeChat user with this phone, another community's import).
            for doc in await self.db.residents.find(
                    {"phone": {"$in": [d["phone"] for d in refused]}}, {"phone": 1, "name": 1}).to_list(None):
                self.residents[doc["phone"]] = doc
                changes.append(UpdateOne({"_id": doc["_id"]}, {"$addToSet": {"imported_into": self.cid}}))
        for row in rows:
            resident = self.residents[row.phone]
            if new.pop(row.phone, None) is not None:
                self.mark(row, CREATED, "residents")
            elif resident.get("name") != row.resident_name:
                resident["name"] = row.resident_name
                changes.append(UpdateOne({"_id": resident["_id"]}, {"$set": {"name": row.resident_name}}))
                self.mark(row, UPDATED, "residents")
        if changes:
            await self.db.residents.bulk_write(changes, ordered=False)

    async def _links(self, rows: list[Row]) -> None:
        new, changes, cached = [], [], set()
        for row in rows:
            resident_id = self.residents[row.phone]["_id"]
            link = self.links.get((resident_id, row.room_path))
            wanted = {"relation": row.relation, "lease_end": row.lease_end, "state": "approved"}
            if link is None:
                self.links[(resident_id, row.room_path)] = doc = {
                    "_id": ObjectId(), "community_id": self.cid, "resident_id": resident_id,
                    "room_path": row.room_path, **wanted, "note": "imported",
                    "requested_at": self.now, "history": [self.history]}
                new.append(doc)
                self.mark(row, CREATED, "links")
            elif any(link.get(k) != v for k, v in wanted.items()):
                # Conditional on the state read: a decision made meanwhile wins over the file.
                changes.append(UpdateOne({"_id": link["_id"], "state": link["state"]},
                                         {"$set": wanted, "$push": {"history": self.history}}))
                link.update(wanted)
                self.mark(row, UPDATED, "links")
            else:
                continue
            cached.add(str(resident_id))
        await _insert(self.db.room_links, new)
        if changes:
            await self.db.room_links.bulk_write(changes, ordered=False)
        for resident_id in cached:
            await self.bindings.forget(resident_id)

    def report(self, parsed: Parsed) -> dict:
        outcomes = Counter(self.outcome.get(r.number, UNCHANGED) for r in parsed.rows)
        return {
            "rows": parsed.total, "created": outcomes[CREATED], "updated": outcomes[UPDATED],
            "unchanged": outcomes[UNCHANGED], "failed": parsed.failed, "errors": parsed.errors,
            "details": {kind: {"created": self.counts[(kind, "created")],
                               "updated": self.counts[(kind, "updated")]}
                        for kind in ("places", "residents", "links")},
        }


class Importer:
    def __init__(self, db, redis, clock, bindings):
        self.db = db
        self.redis = redis
        self.clock = clock
        self.bindings = bindings

    async def run(self, community_id: str, data: bytes, fmt: str | None = None, *, by: str,
                  progress: Callable[[int, int], None] | None = None) -> dict:
        """Import a file into a community; returns the report (see docs/import.md).

        `progress(done, total)` is called after each chunk of valid rows is written.
        """
        now = self.clock.now()
        # Parsing 5,000 rows is CPU work: off the event loop.
        parsed = await asyncio.to_thread(parse, data, fmt, now)
        lock = f"import_lock:{community_id}"
        # Two imports into one community at once could both create the same new link.
        if not await self.redis.set(lock, by, nx=True, ex=LOCK_SECONDS):
            raise Conflict("another import into this community is running; try again when it ends")
        try:
            run = _Run(self.db, self.bindings, ObjectId(community_id), now, by)
            await run.load()
            for start in range(0, len(parsed.rows), CHUNK_ROWS):
                await run.write(parsed.rows[start:start + CHUNK_ROWS])
                if progress:
                    progress(min(start + CHUNK_ROWS, len(parsed.rows)), len(parsed.rows))
        finally:
            await self.redis.delete(lock)
        return run.report(parsed)
