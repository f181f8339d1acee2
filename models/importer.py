"""Bulk import of rooms and residents from an .xlsx or .csv file.

One row = one room, optionally with one resident linked to it. The whole file
is checked first; rows with any problem are reported (spreadsheet row number,
column, problem) and skipped entirely, the others are written. Writing is an
idempotent upsert by natural keys: places by "<community>:<path>", residents
by phone, room links by (resident, room). Re-importing a file changes nothing.

Residents in a file have not logged in yet, so they are stored as
"pre-registered" residents (a phone, a name, no WeChat openid) with approved
room links; the first WeChat login that proves that phone takes the record over
(`ResidentManager.claim_preregistered`). An import changes only its own
community's records: a person already on record elsewhere keeps their record
(the office's name for them is kept apart) and is offered the room, which they
accept or decline themselves (models/bindings.py); the report reads the same
either way, so it does not tell who is registered elsewhere. The writes go
through the managers owning places, residents and room links.

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
import logging
import re
import warnings
import zipfile
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

import openpyxl
import openpyxl.utils
from bson import ObjectId
from pymongo import ASCENDING, IndexModel

from models.bindings import RELATIONS
from models.common import object_id
from models.errors import Conflict, Invalid, NotFound
from models.messages import Text
from models.people import PHONE, registered_by
from models.places import SEGMENT, community_zone

log = logging.getLogger("xiaoqu.import")

INDEXES = {
    # residents this community's office imported: found again on the next import
    "residents": [IndexModel([("imported_into", ASCENDING)])],
    "imports": [IndexModel([("community_id", ASCENDING), ("started_at", ASCENDING)])],
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
# A running import stamps its record after every chunk (well under a minute even on the
# embedded store); a record not stamped for this long belongs to a process that died.
STALE_SECONDS = 120
Progress = Callable[[int, int], Awaitable[None]]
CREATED, UPDATED, UNCHANGED = 2, 1, 0
TOO_MANY_ROWS = Text("at most {limit} rows per import; split it", limit=MAX_ROWS)

_SUFFIXES = {"building": "号楼|栋|幢|座|号", "unit": "单元", "room": "室|号"}
_NUMBER_UNIT = re.compile(r"\s*(㎡|m²|m2|平方米|平米)$", re.IGNORECASE)
# 2027-06-30, 2027/6/30, 2027.6.30, 2027年6月30日; a time after it (CSV from Excel) is ignored
_DATE = re.compile(r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"
                   r"(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?$")


def _header_key(text: object) -> str:
    """Lower case, no spaces/underscores/marks, no bracketed unit: "面积（㎡）*" -> "面积"."""
    key = re.sub(r"[(（\[【].*?[)）\]】]", "", str(text).strip().lower())
    return re.sub(r"[\s*_\-:：]", "", key)


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
        raise Invalid(Text("the file is not {declared}", declared=declared),
                      fields={"format": Text("the content looks like {actual}", actual=actual)})
    return actual


def _cells(data: bytes, fmt: str) -> list[tuple]:
    rows = _xlsx_cells(data) if fmt == "xlsx" else _csv_cells(data)
    if len(rows) > MAX_ROWS + HEADER_SEARCH_ROWS:
        raise Invalid("too many rows", fields={"file": TOO_MANY_ROWS})
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
            "file": Text("unpacks to more than {size} MiB (or more than {parts} parts)",
                         size=MAX_UNPACKED_BYTES >> 20, parts=MAX_XLSX_MEMBERS)})


def _check_size(sheet) -> None:
    """The sheet's declared size: a cell far to the right (column XFD) would otherwise make
    every row that wide. Reading is bounded to MAX_COLUMNS as well, whatever is declared."""
    columns, rows = sheet.max_column or 0, sheet.max_row or 0
    if columns > MAX_COLUMNS:
        raise Invalid("the sheet is too wide", fields={
            "file": Text("at most {limit} columns; this sheet reaches column {column}: delete "
                         "the columns right of the table", limit=MAX_COLUMNS,
                         column=openpyxl.utils.get_column_letter(min(columns, 16384)))})
    if rows > MAX_ROWS + HEADER_SEARCH_ROWS:
        raise Invalid("too many rows", fields={"file": TOO_MANY_ROWS})


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


def _find_header(rows: list[tuple], columns: dict[str, tuple[str, ...]],
                 required: tuple[str, ...]) -> tuple[int, dict[str, int], dict[str, str]]:
    """(index of the header row, column -> position, column -> header text as written);
    `columns`: column -> accepted headers, its third one named when the header is missing."""
    aliases = {_header_key(alias): column for column, names in columns.items() for alias in names}
    for index, row in enumerate(rows[:HEADER_SEARCH_ROWS]):
        positions: dict[str, int] = {}
        headers: dict[str, str] = {}
        for position, cell in enumerate(row):
            column = aliases.get(_header_key(cell)) if cell is not None else None
            if column and column not in positions:
                positions[column] = position
                headers[column] = str(cell).strip()
        if all(c in positions for c in required):
            return index, positions, headers
    wanted = ", ".join(f"{c} ({columns[c][2]})" for c in required)
    raise Invalid("no header row with the required columns",
                  fields={"file": Text("the first row must name the columns; required: {wanted}",
                                       wanted=wanted)})


# -- checking cells ------------------------------------------------------------

def cell_text(value: object) -> str | None:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # Excel stores 101 and 13800138000 as floats
    text = "" if value is None else str(value).strip()
    return text or None


def _segment(column: str) -> Callable[[object], str]:
    suffix = re.compile(rf"(?:{_SUFFIXES[column]})$")

    def check(value: object) -> str:
        text = suffix.sub("", cell_text(value) or "")
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
    text = cell_text(value) or ""
    if len(text) > 64:
        raise ValueError("at most 64 characters")
    return text


def _phone(value: object) -> str:
    text = cell_text(value) or ""
    if re.search(r"\d[.,]?\d*[eE]\+?\d+$", text):
        raise ValueError("the phone was saved as a number in scientific notation; "
                         "format the column as text")
    digits = re.sub(r"[\s\-()]", "", text)
    digits = re.sub(r"^(\+?86)(?=1\d{10}$)", "", digits)
    if not PHONE.match(digits):
        raise ValueError("expected an 11-digit mainland mobile number, like 13800138000")
    return digits


def _relation(value: object) -> str:
    relation = RELATION_ALIASES.get((cell_text(value) or "").lower())
    if relation is None:
        raise ValueError("expected owner, family or tenant (业主, 家属, 租户)")
    return relation


def day_of(value: object) -> date:
    """A day from a cell: a date, or text like 2027-06-30 (a lease's last day: _check_row
    makes it the moment the lease ends)."""
    if isinstance(value, datetime):
        day = value.date()
    elif isinstance(value, date):
        day = value
    else:
        match = _DATE.match(cell_text(value) or "")
        try:
            day = date(*map(int, match.groups())) if match else None
        except ValueError:
            day = None
        if day is None:
            raise ValueError("expected a date, like 2027-06-30")
    return day


CHECKS: dict[str, Callable[[object], object]] = {
    "building": _segment("building"), "unit": _segment("unit"), "room": _segment("room"),
    "area_m2": _area, "resident_name": _name, "phone": _phone, "relation": _relation,
    "lease_end": day_of,
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
               now: datetime, zone: tzinfo) -> tuple[Row | None, list[dict]]:
    values: dict[str, object] = {}
    errors = []

    def problem(column: str, text: str) -> None:
        errors.append(error(number, column, headers.get(column), text))

    for column, check in CHECKS.items():
        cell = raw.get(column)
        if cell_text(cell) is None:
            continue
        try:
            values[column] = check(cell)
        except ValueError as exc:
            problem(column, str(exc))
    if "lease_end" in values:  # it runs through its last day: it ends at the next local midnight
        last_day = values["lease_end"]
        values["lease_end"] = datetime.combine(last_day + timedelta(days=1), time(), zone).astimezone(UTC)
    for column in REQUIRED:
        if cell_text(raw.get(column)) is None:
            problem(column, "required")
    if any(cell_text(raw.get(c)) is not None for c in RESIDENT_COLUMNS):
        for column in ("resident_name", "phone", "relation"):
            if cell_text(raw.get(column)) is None:
                problem(column, "required when the row names a resident")
        relation, lease_end = values.get("relation"), values.get("lease_end")
        if relation == "tenant" and cell_text(raw.get("lease_end")) is None:
            problem("lease_end", "required for a tenant")
        if relation == "owner" and lease_end is not None:
            problem("lease_end", "an owner has no lease end; leave it empty")
        if lease_end is not None and lease_end <= now:
            problem("lease_end", "the lease has already ended")
    if errors:
        return None, errors
    return Row(number=number, **values), []


def table(data: bytes, fmt: str | None, columns: dict[str, tuple[str, ...]],
          required: tuple[str, ...]) -> tuple[list[tuple[int, dict[str, object]]], dict[str, str]]:
    """A sheet's data rows within the import's bounds — (row number as the spreadsheet shows
    it, column -> cell), blank rows left out — and the headers as written. Raises Invalid
    when the file as a whole is unusable."""
    cells = _cells(data, detect_format(data, fmt))
    header_index, positions, headers = _find_header(cells, columns, required)
    rows = []
    for index, cells_of_row in enumerate(cells[header_index + 1:], start=header_index + 2):
        raw = {c: cells_of_row[p] for c, p in positions.items() if p < len(cells_of_row)}
        if any(cell_text(v) is not None for v in raw.values()):
            rows.append((index, raw))
    return rows, headers


def parse(data: bytes, fmt: str | None, now: datetime, zone: tzinfo) -> Parsed:
    """Read and check every row (dates are days on `zone`'s calendar, the community's).
    Raises Invalid when the file as a whole is unusable."""
    cells, headers = table(data, fmt, COLUMNS, REQUIRED)
    rows: list[Row] = []
    errors: list[dict] = []
    total = failed = 0
    # The first valid row's values for a room / phone / pair; later rows must agree.
    areas: dict[str, tuple[float, int]] = {}
    names: dict[str, tuple[str, int]] = {}
    pairs: dict[tuple[str, str], int] = {}
    for index, raw in cells:
        total += 1
        row, row_errors = _check_row(index, raw, headers, now, zone)
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

class _Run:
    """One import into one community: what it knows, what each row did. Every write goes
    through the manager owning the collection (places, residents, room links)."""

    def __init__(self, places, residents, bindings, community_id: ObjectId, by: str):
        self.places_manager = places
        self.residents_manager = residents
        self.bindings = bindings
        self.cid = community_id
        self.by = by
        self.outcome: dict[int, int] = {}  # row number -> CREATED/UPDATED/UNCHANGED
        self.counts: Counter = Counter()  # (kind, "created"|"updated") -> n

    async def load(self) -> None:
        self.places = await self.places_manager.by_path(self.cid)
        self.links = await self.bindings.open_links(self.cid)
        # People who took a room here themselves (or accepted one) have consented to it.
        self.consenting = {rid for (rid, _), link in self.links.items()
                           if link["state"] != "offered"}
        self.residents = await self.residents_manager.known_to(self.cid, self.consenting)

    def mark(self, row: Row, outcome: str | None, kind: str) -> None:
        if outcome is None:
            return
        self.outcome[row.number] = max(self.outcome.get(row.number, UNCHANGED),
                                       CREATED if outcome == "created" else UPDATED)
        self.counts[(kind, outcome)] += 1

    async def write(self, rows: list[Row]) -> None:
        """Places, then residents, then links: a row's link is written after its parts."""
        await self._places(rows)
        people = [r for r in rows if r.phone]
        outcomes = await self.residents_manager.import_people(
            self.cid, {r.phone: r.resident_name for r in people}, self.residents)
        for row in people:
            self.mark(row, outcomes.pop(row.phone, None), "residents")  # once per phone
        wanted = []
        for row in people:
            resident = self.residents[row.phone]
            consented = resident["_id"] in self.consenting or \
                registered_by(resident) == str(self.cid)
            wanted.append((resident["_id"], row.room_path, row.relation, row.lease_end, consented))
        for row, outcome in zip(people, await self.bindings.import_links(
                self.cid, wanted, self.links, self.by)):
            self.mark(row, outcome, "links")

    async def _places(self, rows: list[Row]) -> None:
        new, areas = [], {}
        for row in rows:
            for path in row.paths:
                if path not in self.places:
                    is_room = path == row.room_path
                    self.places[path] = doc = self.places_manager.place_doc(
                        self.cid, path, area_m2=row.area_m2 if is_room else None)
                    new.append(doc)
                    self.mark(row, "created", "places")
            room = self.places[row.room_path]
            if row.area_m2 is not None and room.get("area_m2") != row.area_m2:
                room["area_m2"] = areas[room["key"]] = row.area_m2
                self.mark(row, "updated", "places")
        await self.places_manager.add_places(new)
        await self.places_manager.set_areas(areas)

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
    """Runs imports, and owns the `imports` collection: one record per import started
    through the API, so a caller can follow a large file's progress instead of holding
    one HTTP request open for as long as the writes take."""

    def __init__(self, db, redis, clock, places, residents, bindings):
        self.jobs = db.imports
        self.redis = redis
        self.clock = clock
        self.places = places
        self.residents = residents
        self.bindings = bindings
        self.running: dict[asyncio.Task, str] = {}  # import task -> its community

    async def run(self, community_id: str, data: bytes, fmt: str | None = None, *, by: str,
                  progress: Progress | None = None) -> dict:
        """Import a file into a community and wait for it; returns the report (see
        docs/import.md). `progress(done, total)` is awaited after each chunk of valid rows."""
        parsed = await self._parse(community_id, data, fmt)
        await self._lock(community_id, by)
        try:
            return await self._write(community_id, parsed, by, progress)
        finally:
            await self._unlock(community_id)

    async def start(self, community_id: str, data: bytes, fmt: str | None = None, *,
                    by: str) -> dict:
        """Check the file and start writing it in the background; returns the import's
        record at once. A file that cannot be read, or a second import into the same
        community, is refused here, before anything is written."""
        parsed = await self._parse(community_id, data, fmt)
        await self._lock(community_id, by)
        now = self.clock.now()
        job = {"_id": ObjectId(), "community_id": ObjectId(community_id), "by": by,
               "state": "running", "rows": parsed.total, "written": 0,
               "started_at": now, "alive_at": now}
        try:
            await self.jobs.insert_one(job)
        except BaseException:
            await self._unlock(community_id)
            raise
        task = asyncio.create_task(self._run_job(job, parsed))
        self.running[task] = community_id
        task.add_done_callback(self.running.pop)
        return public_import(job, now)

    async def get(self, community_id: str, import_id: str) -> dict:
        job = await self.jobs.find_one({"_id": object_id(import_id, "import"),
                                        "community_id": ObjectId(community_id)})
        if job is None:
            raise NotFound("import not found")
        return public_import(job, self.clock.now())

    async def close(self) -> None:
        """Stop imports still writing (a stopped one reads `interrupted`; running the same
        file again finishes it, since an import is idempotent)."""
        stopped = dict(self.running)
        for task in stopped:
            task.cancel()
        await asyncio.gather(*stopped, return_exceptions=True)
        for community_id in stopped.values():  # a task cancelled before it ran kept its lock
            await self._unlock(community_id)

    async def _run_job(self, job: dict, parsed: "Parsed") -> None:
        async def stamp(done: int, total: int) -> None:
            await self.jobs.update_one({"_id": job["_id"]}, {"$set": {
                "written": done, "alive_at": self.clock.now()}})

        community_id = str(job["community_id"])
        try:
            report = await self._write(community_id, parsed, job["by"], stamp)
            outcome = {"state": "done", "written": len(parsed.rows), "report": report}
        except Exception as exc:  # recorded on the import: nobody awaits this task
            log.exception("import %s failed", job["_id"])
            outcome = {"state": "failed", "error": str(exc) or type(exc).__name__}
        finally:
            await self._unlock(community_id)
        now = self.clock.now()
        await self.jobs.update_one({"_id": job["_id"]}, {"$set": {
            **outcome, "alive_at": now, "finished_at": now}})

    async def _parse(self, community_id: str, data: bytes, fmt: str | None) -> "Parsed":
        zone = community_zone(await self.places.community(community_id))
        # Parsing 5,000 rows is CPU work: off the event loop.
        return await asyncio.to_thread(parse, data, fmt, self.clock.now(), zone)

    async def _lock(self, community_id: str, by: str) -> None:
        # Two imports into one community at once could both create the same new link.
        if not await self.redis.set(f"import_lock:{community_id}", by, nx=True,
                                    ex=LOCK_SECONDS):
            raise Conflict("another import into this community is running; try again when it ends")

    async def _unlock(self, community_id: str) -> None:
        await self.redis.delete(f"import_lock:{community_id}")

    async def _write(self, community_id: str, parsed: "Parsed", by: str,
                     progress: Progress | None) -> dict:
        run = _Run(self.places, self.residents, self.bindings, ObjectId(community_id), by)
        await run.load()
        for start in range(0, len(parsed.rows), CHUNK_ROWS):
            await run.write(parsed.rows[start:start + CHUNK_ROWS])
            if progress:
                await progress(min(start + CHUNK_ROWS, len(parsed.rows)), len(parsed.rows))
        return run.report(parsed)


def public_import(job: dict, now: datetime) -> dict:
    state = job["state"]
    if state == "running" and (now - job["alive_at"]).total_seconds() > STALE_SECONDS:
        state = "interrupted"
    return {"id": str(job["_id"]), "state": state, "rows": job["rows"],
            "written": job["written"], "by": job["by"], "started_at": job["started_at"],
            "finished_at": job.get("finished_at"), "report": job.get("report"),
            "error": job.get("error")}
