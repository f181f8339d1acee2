"""Bulk import of rooms and residents (.xlsx / .csv) over HTTP, and the WeChat claim of
pre-registered residents."""

import asyncio
import io
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from bson import ObjectId

from models.importer import XLSX_MIME, parse
from tests.builders import make_community, make_resident
from tests.conftest import Reply

HEADER = ["building", "unit", "room", "area_m2", "resident_name", "phone", "relation", "lease_end"]
LEASE = "2099-06-30"
# the lease runs through 30 June (China time): it ends at 1 July 00:00 +08:00
LEASE_ENDS = datetime(2099, 6, 30, 16, 0, tzinfo=UTC)


def xlsx(rows: list[list], title: str | None = None) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    if title:
        sheet.append([title])
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def csv_file(rows: list[list], encoding: str = "utf-8-sig", delimiter: str = ",") -> bytes:
    text = "\r\n".join(delimiter.join("" if v is None else str(v) for v in row) for row in rows)
    return (text + "\r\n").encode(encoding)


async def upload(app, api_client, community, data: bytes, content_type: str = "text/csv",
                 role: str = "admin", query: str = ""):
    """Start an import and follow it to its end: the reply's body is the import's report."""
    token = community.tokens[role]
    started = await api_client.post(f"/api/communities/{community.id}/imports{query}",
                                    raw=data, headers={"Content-Type": content_type},
                                    token=token)
    if started.status != 202:
        return started
    await asyncio.gather(*app.imports.running)  # the rows are written after the answer
    done = await api_client.get(started.headers["Location"], token=token)
    assert done.body["state"] == "done", done.body
    return Reply(started.status, done.body["report"], done.headers)


def no_changes(report: dict) -> bool:
    return all(c == {"created": 0, "updated": 0} for c in report["details"].values())


async def room_paths(app, community) -> set[str]:
    return set(await app.db.places.distinct("path", {"community_id": ObjectId(community.id)}))


async def links_of(app, phone: str) -> list[dict]:
    resident = await app.db.residents.find_one({"phone": phone})
    return await app.db.room_links.find({"resident_id": resident["_id"]}).to_list(None)


@pytest.mark.asyncio
async def test_xlsx_with_chinese_headers_imports_and_reimport_changes_nothing(app, api_client):
    c = await make_community(app, "imp-x")
    data = xlsx([
        ["楼栋", "单元", "房号", "面积（㎡）", "姓名", "手机", "关系", "租期截止"],
        ["2号楼", "1单元", "301室", 89.5, "王芳", 13800138001, "业主", None],
        [2, 1, 301, None, "王小明", "138-0013-8002", "家属", None],
        [2, 1, 302, "120㎡", "李雷", "+8613800138003", "租户", date(2099, 6, 30)],
        [1, 1, 101, None, None, None, None, None],  # a room that exists: unchanged
    ], title="住户信息表")  # a title row above the header, as office sheets often have
    reply = await upload(app, api_client, c, data, XLSX_MIME)
    assert reply.status == 202, reply.body
    report = reply.body
    assert report["errors"] == []
    assert (report["rows"], report["created"], report["updated"], report["unchanged"],
            report["failed"]) == (4, 3, 0, 1, 0)
    assert report["details"] == {"places": {"created": 4, "updated": 0},
                                 "residents": {"created": 3, "updated": 0},
                                 "links": {"created": 3, "updated": 0}}
    assert {"2", "2-1", "2-1-301", "2-1-302"} <= await room_paths(app, c)
    room = await app.places.place_by_path(c.id, "2-1-302")
    assert (room["kind"], room["area_m2"]) == ("room", 120.0)

    wang = await app.db.residents.find_one({"phone": "13800138001"})
    assert (wang["name"], wang["status"], "openid" in wang) == ("王芳", "pre-registered", False)
    [link] = await links_of(app, "13800138003")
    assert (link["room_path"], link["relation"], link["state"], link["lease_end"]) == \
        ("2-1-302", "tenant", "approved", LEASE_ENDS)
    assert link["history"][0]["by"] == c.staff["admin"]
    assert [(d["room_path"], d["relation"]) for d in await links_of(app, "13800138002")] == \
        [("2-1-301", "family")]

    again = (await upload(app, api_client, c, data, XLSX_MIME)).body
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 4)
    assert no_changes(again)
    assert await app.db.room_links.count_documents({"community_id": ObjectId(c.id)}) == 3
    assert await app.db.residents.count_documents({}) == 3


@pytest.mark.asyncio
async def test_csv_rows_with_errors_are_reported_and_write_nothing_of_themselves(app, api_client):
    c = await make_community(app, "imp-c")
    rows = [
        HEADER,
        [1, 1, 103, 80, "Amy", "13800000001", "owner", ""],          # 2: fine
        [9, 9, 901, "", "Bob", "12345", "owner", ""],                 # 3: bad phone
        [1, 1, 104, "", "Cat", "13800000003", "tenant", ""],          # 4: tenant, no lease
        [1, 1, "1-05", "", "Dan", "13800000004", "boss", ""],         # 5: bad room, relation
        ["", "", "", "", "", "", "", ""],                              # 6: blank, skipped
        [1, 1, 103, 81, "Eve", "13800000005", "family", ""],          # 7: area disagrees
        [1, 2, 102, 55, "", "", "", ""],                               # 8: a room alone
        [1, 1, 105, "", "Fay", "13800000006", "tenant", "2020-01-31"],  # 9: lease over
        [1, 1, 106, "", "Amy", "13800000001", "", ""],                # 10: no relation
    ]
    reply = await upload(app, api_client, c, csv_file(rows))
    assert reply.status == 202, reply.body
    report = reply.body
    assert [(e["row"], e["column"], e["problem"]) for e in report["errors"]] == [  # Chinese by default
        (3, "phone", "应为 11 位大陆手机号，例如 13800138000"),
        (4, "lease_end", "租户必填"),
        (5, "room", "应为 1-8 个字母或数字，例如 3 或 1201"),
        (5, "relation", "应为业主、家属或租户"),
        (7, "area_m2", "room 1-1-103 has area 80.0 in row 2"),
        (9, "lease_end", "租期已结束"),
        (10, "relation", "填写了住户时必填"),
    ]
    assert (report["rows"], report["created"], report["unchanged"], report["failed"]) == (8, 2, 0, 6)
    paths = await room_paths(app, c)
    assert {"1-1-103", "1-2-102"} <= paths
    assert not {"9", "9-9", "9-9-901", "1-1-104", "1-1-105", "1-1-106"} & paths
    for phone in ("13800000003", "13800000004", "13800000005", "13800000006"):
        assert await app.db.residents.find_one({"phone": phone}) is None
    assert [d["room_path"] for d in await links_of(app, "13800000001")] == ["1-1-103"]

    # The fixed rows import; what changed is updated, the rest stays as it is.
    fixed = [HEADER, [1, 1, 103, 81, "Amy Li", "13800000001", "owner", ""],
             [1, 1, 105, "", "Fay", "13800000006", "tenant", LEASE], [1, 2, 102, 55, "", "", "", ""]]
    report = (await upload(app, api_client, c, csv_file(fixed))).body
    assert (report["created"], report["updated"], report["unchanged"], report["errors"]) == \
        (1, 1, 1, [])
    assert report["details"]["places"] == {"created": 1, "updated": 1}
    assert report["details"]["residents"] == {"created": 1, "updated": 1}
    assert (await app.places.place_by_path(c.id, "1-1-103"))["area_m2"] == 81.0


@pytest.mark.asyncio
async def test_changed_relation_updates_the_link_with_history(app, api_client):
    c = await make_community(app, "imp-u")
    await upload(app, api_client, c, csv_file([HEADER, [1, 1, 101, "", "Gus", "13700000001", "owner", ""]]))
    report = (await upload(app, api_client, c, csv_file(
        [HEADER, [1, 1, 101, "", "Gus", "13700000001", "tenant", LEASE]]))).body
    assert (report["updated"], report["details"]["links"]) == (1, {"created": 0, "updated": 1})
    [link] = await links_of(app, "13700000001")
    assert (link["relation"], link["lease_end"]) == ("tenant", LEASE_ENDS)
    assert [h["action"] for h in link["history"]] == ["import", "import"]


@pytest.mark.asyncio
async def test_import_links_a_known_resident_and_refreshes_their_cached_links(app, api_client):
    c = await make_community(app, "imp-k")
    rid, _ = await make_resident(app, c, "amy", "1-1-101")
    await app.db.residents.update_one({"_id": ObjectId(rid)}, {"$set": {"phone": "13600000001"}})
    assert [link["room_path"] for link in await app.bindings.active_links(rid)] == ["1-1-101"]

    rows = [HEADER, [1, 2, 101, "", "Amy", "13600000001", "family", ""],
            [1, 1, 101, "", "Amy", "13600000001", "owner", ""]]  # the link she has already
    report = (await upload(app, api_client, c, csv_file(rows))).body
    assert (report["created"], report["unchanged"], report["errors"]) == (1, 1, [])
    assert report["details"]["residents"] == {"created": 0, "updated": 1}  # her name
    assert sorted(link["room_path"] for link in await app.bindings.active_links(rid)) == \
        ["1-1-101", "1-2-101"]
    assert await app.db.residents.count_documents({"phone": "13600000001"}) == 1
    assert no_changes((await upload(app, api_client, c, csv_file(rows))).body)


@pytest.mark.asyncio
async def test_preregistered_resident_is_claimed_at_wechat_login(app, api_client):
    c = await make_community(app, "imp-w")
    rows = [HEADER, [1, 1, 102, "", "Lily", "13900000001", "owner", ""],
            [1, 2, 101, "", "Max", "13900000002", "tenant", LEASE]]
    await upload(app, api_client, c, csv_file(rows))
    lily = await app.db.residents.find_one({"phone": "13900000001"})

    # First login ever, with the phone: the pre-registered record becomes hers.
    tokens = (await api_client.post("/api/auth/wechat", {"code": "user-lily-1",
                                                         "phone_code": "phone-13900000001-1"})).body
    me = (await api_client.get("/api/me", token=tokens["access_token"])).body
    assert (me["id"], me["roles"]) == (str(lily["_id"]), {c.id: ["owner"]})
    claimed = await app.db.residents.find_one({"_id": lily["_id"]})
    assert (claimed["status"], claimed["name"]) == ("active", "Lily")

    # Max used the mini-program before, without a phone: his account gets the links.
    first = (await api_client.post("/api/auth/wechat", {"code": "user-max-1"})).body
    assert (await api_client.get("/api/me", token=first["access_token"])).body["roles"] == {}
    second = (await api_client.post("/api/auth/wechat", {"code": "user-max-2",
                                                         "phone_code": "phone-13900000002-1"})).body
    me = (await api_client.get("/api/me", token=second["access_token"])).body
    assert me["roles"] == {c.id: ["tenant"]}
    [max_doc] = await app.db.residents.find({"phone": "13900000002"}).to_list(None)
    assert (str(max_doc["_id"]), max_doc["name"], max_doc["status"]) == (me["id"], "Max", "active")

    # Both are now known to the community: importing the file again changes nothing.
    assert no_changes((await upload(app, api_client, c, csv_file(rows))).body)


@pytest.mark.asyncio
async def test_unusable_files_are_refused_naming_the_problem(app, api_client):
    c = await make_community(app, "imp-f")
    cases = [
        (b"", "text/csv", "", "file"),
        (b"\xd0\xcf\x11\xe0old excel", "application/vnd.ms-excel", "", "file"),
        (csv_file([HEADER]), "text/csv", "?format=xlsx", "format"),
        (b"PK\x03\x04 not really a zip", XLSX_MIME, "", "file"),
        (csv_file([["building", "unit", "phone"], [1, 1, "13800000001"]]), "text/csv", "", "file"),
    ]
    for data, content_type, query, field in cases:
        reply = await upload(app, api_client, c, data, content_type, query=query)
        assert (reply.status, list(reply.error["fields"])) == (400, [field]), (data, reply.body)
    assert await app.db.places.count_documents({"community_id": ObjectId(c.id)}) == 6


@pytest.mark.asyncio
async def test_multipart_upload(app, api_client):
    c = await make_community(app, "imp-m")
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"rooms.csv\""
            f"\r\nContent-Type: application/octet-stream\r\n\r\n").encode() + \
        csv_file([HEADER, [5, 1, 101, 70, "", "", "", ""]]) + f"\r\n--{boundary}--\r\n".encode()
    reply = await upload(app, api_client, c, body, f"multipart/form-data; boundary={boundary}")
    assert (reply.status, reply.body["created"]) == (202, 1)
    assert "5-1-101" in await room_paths(app, c)


@pytest.mark.asyncio
async def test_only_office_staff_of_the_community_import_and_one_at_a_time(app, api_client):
    c = await make_community(app, "imp-p")
    other = await make_community(app, "imp-o")
    data = csv_file([HEADER, [7, 1, 101, "", "", "", "", ""]])
    assert (await upload(app, api_client, c, data, role="customer_service")).status == 403
    reply = await api_client.post(f"/api/communities/{c.id}/imports", raw=data,
                                  token=other.tokens["admin"])
    assert reply.status == 404
    await app.redis.set(f"import_lock:{c.id}", "someone", ex=60)
    assert (await upload(app, api_client, c, data, role="manager")).status == 409
    await app.redis.delete(f"import_lock:{c.id}")
    assert (await upload(app, api_client, c, data, role="manager")).body["created"] == 1
    assert "7" not in await room_paths(app, other)


@pytest.mark.asyncio
async def test_five_thousand_rows(app, api_client):
    c = await make_community(app, "imp-5k")
    rows = [HEADER]
    for n in range(5000):
        building, unit, room = 10 + n // 1000, 1 + n // 250 % 4, 101 + n % 250
        person = ["", "", "", ""] if n % 10 == 9 else \
            [f"R{n}", f"1{n % 7 + 3}{n:09d}", ("owner", "family", "tenant")[n % 3],
             LEASE if n % 3 == 2 else ""]
        rows.append([building, unit, room, 60 + n % 50, *person])
    data = csv_file(rows)
    report = (await upload(app, api_client, c, data)).body
    assert (report["rows"], report["created"], report["failed"]) == (5000, 5000, 0)
    assert report["details"] == {"places": {"created": 5 + 20 + 5000, "updated": 0},
                                 "residents": {"created": 4500, "updated": 0},
                                 "links": {"created": 4500, "updated": 0}}
    for n in (0, 1, 2, 2500, 4998):
        path = f"{10 + n // 1000}-{1 + n // 250 % 4}-{101 + n % 250}"
        assert (await app.places.place_by_path(c.id, path))["area_m2"] == 60 + n % 50
        [link] = await links_of(app, f"1{n % 7 + 3}{n:09d}")
        assert (link["room_path"], link["relation"], link["state"]) == \
            (path, ("owner", "family", "tenant")[n % 3], "approved")
    assert await app.places.place_by_path(c.id, "14-4-350") is not None  # row 5001, room only

    again = (await upload(app, api_client, c, data)).body
    assert (again["unchanged"], again["created"], again["updated"]) == (5000, 0, 0)


def test_parse_accepts_common_spellings():
    data = csv_file([
        ["楼号*", "单元 ", "门牌号", "建筑面积(m²)", "业主姓名", "联系电话", "身份", "租期至"],
        ["3栋", "02单元", "1201", "89.5平米", "张三", "+86 138 0013 8000", "Tenant", "2099年6月30日"],
        ["3", "2", "1202", "", "李四", "1.38001E+10", "业主", ""],
    ], encoding="gb18030", delimiter="\t")
    parsed = parse(data, None, datetime.now(UTC), ZoneInfo("Asia/Shanghai"))
    [row] = parsed.rows
    assert (row.number, row.room_path, row.area_m2, row.phone, row.relation, row.lease_end) == \
        (2, "3-02-1201", 89.5, "13800138000", "tenant", LEASE_ENDS)
    assert [(e["row"], e["column"], e["header"]) for e in parsed.errors] == [(3, "phone", "联系电话")]
    assert "scientific notation" in parsed.errors[0]["problem"]


def far_column_file(rows: int) -> bytes:
    """A small file whose every row has one cell in the last column Excel has (XFD)."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(HEADER)
    for r in range(2, rows + 2):
        sheet.append(["1", "1", str(100 + r)])
        sheet.cell(row=r, column=16384, value="x")
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def unpacking_bomb() -> bytes:
    """A valid .xlsx of a few hundred KB that unpacks to over 100 MB (one long shared string)."""
    import zipfile
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(xlsx([HEADER, ["1", "1", "101"]]))) as source, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bomb:
        for item in source.infolist():
            bomb.writestr(item, source.read(item))
        bomb.writestr("xl/padding.xml", b" " * (100 * 1024 * 1024))
    return out.getvalue()


@pytest.mark.asyncio
async def test_a_far_column_per_row_is_refused_naming_the_limit(app, api_client):
    c = await make_community(app, "imp-xfd")
    data = far_column_file(1500)
    assert len(data) < 64 * 1024
    reply = await upload(app, api_client, c, data, XLSX_MIME)
    assert reply.status == 400
    assert "最多 32 列" in reply.error["fields"]["file"]
    assert await room_paths(app, c) == set(c.places)


@pytest.mark.asyncio
async def test_a_file_that_unpacks_too_large_is_refused_naming_the_limit(app, api_client):
    c = await make_community(app, "imp-zip")
    reply = await upload(app, api_client, c, unpacking_bomb(), XLSX_MIME)
    assert reply.status == 400
    assert "解压后超过 64 MiB" in reply.error["fields"]["file"]


async def resident_elsewhere(app, api_client, phone: str, name: str):
    """A resident of another community: a WeChat user with `phone` and an approved room there,
    and that community's own import of a second person."""
    other = await make_community(app, f"else-{phone[-4:]}")
    rid, token = await make_resident(app, other, f"user-{phone}")
    await app.db.residents.update_one({"_id": ObjectId(rid)}, {"$set": {"phone": phone}})
    await upload(app, api_client, other, csv_file(
        [HEADER, [1, 1, 102, "", name, "1" + phone[1:-1] + "9", "owner", ""]]))
    return other, rid, token


@pytest.mark.asyncio
async def test_an_import_never_rewrites_or_links_a_person_known_elsewhere(app, api_client):
    other, rid, token = await resident_elsewhere(app, api_client, "13500000001", "Wen")
    imported_elsewhere = "13500000009"
    before = {d["_id"]: d for d in await app.db.residents.find().to_list(None)}
    c = await make_community(app, "imp-a")
    rows = [HEADER, [1, 1, 101, "", "Mallory", "13500000001", "owner", ""],
            [1, 2, 101, "", "Eve", imported_elsewhere, "owner", ""]]
    report = (await upload(app, api_client, c, csv_file(rows))).body
    assert report["errors"] == []

    # Neither person's record changed, nor does either get a room here without consent.
    after = {d["_id"]: d for d in await app.db.residents.find().to_list(None)}
    for _id, doc in before.items():
        assert (after[_id].get("name"), after[_id].get("status")) == \
            (doc.get("name"), doc.get("status"))
    assert await app.bindings.active_links(rid) == [
        link for link in await app.bindings.active_links(rid) if link["community_id"] == other.id]
    links = await app.db.room_links.find({"community_id": ObjectId(c.id)}).to_list(None)
    assert {link["state"] for link in links} == {"offered"}
    listed = (await api_client.get(f"/api/communities/{c.id}/residents",
                                   token=c.tokens["admin"])).body
    assert sorted(r["name"] for r in listed) == ["Eve", "Mallory"]  # this office's names
    assert {r["status"] for r in listed} == {"invited"}
    assert no_changes((await upload(app, api_client, c, csv_file(rows))).body)

    # The person sees the offer and accepts it: only then is the room theirs.
    [offer] = [b for b in (await api_client.get("/api/me/bindings", token=token)).body
               if b["community_id"] == c.id]
    assert offer["state"] == "offered"
    staff_approval = await api_client.post(
        f"/api/communities/{c.id}/bindings/{offer['id']}/decision", {"action": "approve"},
        token=c.tokens["admin"])
    assert staff_approval.status == 409  # the office cannot consent for them
    reply = await api_client.post(f"/api/me/bindings/{offer['id']}/answer", {"accept": True},
                                  token=token)
    assert reply.status == 200 and reply.body["state"] == "approved"
    assert c.id in {link["community_id"] for link in await app.bindings.active_links(rid)}


@pytest.mark.asyncio
async def test_import_counts_do_not_tell_whether_a_phone_is_known_elsewhere(app, api_client):
    await resident_elsewhere(app, api_client, "13500000002", "Wu")
    known = await make_community(app, "imp-kn")
    unknown = await make_community(app, "imp-un")
    reports = []
    for community, phone in ((known, "13500000002"), (unknown, "13500000003")):
        rows = [HEADER, [1, 1, 101, "", "Name", phone, "owner", ""]]
        reports.append((await upload(app, api_client, community, csv_file(rows))).body)
        rows[1][4] = "New name"
        reports.append((await upload(app, api_client, community, csv_file(rows))).body)
    assert reports[0] == reports[2] and reports[1] == reports[3]
    assert reports[0]["details"]["residents"] == {"created": 1, "updated": 0}
    assert reports[1]["details"]["residents"] == {"created": 0, "updated": 1}
