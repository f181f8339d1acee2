"""The access log as people read it: names, room labels, gate names, local time, words for
codes; filters (gate, person, pass, result, reason, time range), cursor pages and exports."""

import csv
import io
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from bson import ObjectId
from openpyxl import load_workbook

from models.places import community_zone, place_label
from tests.builders import change_directly, make_community, make_resident
from tests.gate_fixtures import *  # noqa: F403 (fixtures)
from tests.gate_fixtures import start_sim_bridge

CHINA = timezone(timedelta(hours=8))


def test_place_paths_read_as_building_unit_room():
    assert place_label("1-2-1201") == "1栋2单元1201室"
    assert place_label("3-2") == "3栋2单元" and place_label("3") == "3栋"
    assert place_label("1-2-0801", "en") == "Bldg 1, Unit 2, Room 0801"
    assert place_label("") == "全小区"
    assert place_label("not a path") == "not a path"  # shown as it is, never garbled


def test_community_clock_from_its_time_zone():
    assert community_zone({"time_zone": "Asia/Urumqi"}) == ZoneInfo("Asia/Urumqi")
    assert community_zone({}) == ZoneInfo("Asia/Shanghai")


async def name_resident(app, rid: str, name: str) -> None:
    await app.db.residents.update_one({"_id": ObjectId(rid)}, {"$set": {"name": name}})


async def scan(api, c, token, gate="main"):
    reply = await api.post(f"/api/communities/{c.id}/gates/{c.gates[gate]}/check",
                           {"token": token, "direction": "in"}, token=c.tokens["security"])
    assert reply.status == 200, reply.body
    return reply.body


async def some_traffic(app, api, c):
    """A resident (张三, 1-1-101) in twice — the second refused —, a walk-in visitor (李四,
    visiting 1-2-101)."""
    rid, token = await make_resident(app, c, "zhang", room="1-1-101")
    await name_resident(app, rid, "张三")
    code = (await api.get(f"/api/communities/{c.id}/code", token=token)).body["token"]
    assert (await scan(api, c, code))["allow"]
    assert (await scan(api, c, code))["reason"] == "replayed"
    walk = await api.post(f"/api/communities/{c.id}/passes/walkins",
                          {"name": "李四", "purpose": "delivery", "room_path": "1-2-101"},
                          token=c.tokens["security"])
    assert walk.status == 201, walk.body
    assert (await scan(api, c, walk.body["token"]))["allow"]
    return rid, walk.body["id"]


@pytest.mark.asyncio
async def test_lines_show_names_rooms_gate_names_local_time_and_words(app, api_client):
    c = await make_community(app, "alp")
    await app.places.update_gate(c.id, c.gates["main"], {"name": "南门"})
    rid, pass_id = await some_traffic(app, api_client, c)
    page = (await api_client.get(f"/api/communities/{c.id}/access-log",
                                 token=c.tokens["security"])).body
    visitor, replayed, entered = page["items"]
    assert (visitor["person"], visitor["room"], visitor["pass_id"]) == ("李四", "1栋2单元101室", pass_id)
    assert (entered["person"], entered["room"], entered["subject"]) == ("张三", "1栋1单元101室", rid)
    assert entered["gate_name"] == "南门"
    assert entered["words"] == {"result": "通过", "reason": "正常", "direction": "进",
                                "source": "保安扫码", "kind": "住户"}
    assert replayed["words"]["reason"] == "码已用过"
    at = datetime.fromisoformat(entered["at"])
    local = datetime.fromisoformat(entered["at_local"])
    assert local == at and local.utcoffset() == timedelta(hours=8)
    english = (await api_client.get(f"/api/communities/{c.id}/access-log?lang=en",
                                    token=c.tokens["security"])).body["items"][1]
    assert english["room"] == "Bldg 1, Unit 1, Room 101" and english["words"]["reason"] == \
        "code already used"


@pytest.mark.asyncio
async def test_filters_by_person_gate_result_reason_and_time(app, api_client):
    c = await make_community(app, "alf")
    rid, pass_id = await some_traffic(app, api_client, c)
    base = f"/api/communities/{c.id}/access-log"

    async def people(query: str) -> list[str]:
        reply = await api_client.get(f"{base}?{query}", token=c.tokens["manager"])
        assert reply.status == 200, reply.body
        return [item["person"] for item in reply.body["items"]]

    assert await people("person=张") == ["张三", "张三"]
    assert await people("person=李四") == ["李四"]
    assert await people("person=nobody") == []
    assert await people(f"subject={rid}&result=allow") == ["张三"]
    assert await people("reason=replayed") == ["张三"]
    assert await people(f"pass_id={pass_id}") == ["李四"]
    assert await people(f"gate_id={c.gates['u1-1']}") == []
    later = (app.clock.now() + timedelta(minutes=1)).isoformat().replace("+", "%2B")
    assert await people(f"since={later}") == []
    assert len(await people(f"until={later}")) == 3
    bad = await api_client.get(f"{base}?reason=Not%20a%20code", token=c.tokens["manager"])
    assert bad.status == 400 and "reason" in bad.error["fields"]
    assert (await api_client.get(base, token=c.tokens["maintenance"])).status == 403


@pytest.mark.asyncio
async def test_pages_follow_the_cursor(app, api_client):
    c = await make_community(app, "alc")
    for i in range(3):
        await app.access_log.record({
            "community_id": ObjectId(c.id), "gate_id": ObjectId(c.gates["main"]), "direction": "in",
            "result": "allow", "source": "gate", "reason": "ok", "kind": "resident",
            "pass_id": None, "subject": f"r{i}", "at": app.clock.now() - timedelta(minutes=3 - i)})
    base = f"/api/communities/{c.id}/access-log"
    first = await api_client.get(base + "?limit=2", token=c.tokens["security"])
    assert [e["subject"] for e in first.body["items"]] == ["r2", "r1"]
    rest = await api_client.get(f"{base}?limit=2&cursor={first.body['next_cursor']}",
                                token=c.tokens["security"])
    assert [e["subject"] for e in rest.body["items"]] == ["r0"] and rest.body["next_cursor"] is None
    bad = await api_client.get(base + "?since=yesterday", token=c.tokens["admin"])
    assert bad.status == 400 and "since" in bad.error["fields"]


@pytest.mark.asyncio
async def test_exports_in_chinese_by_default_english_on_request(app, api_client, http_client,
                                                               base_url):
    c = await make_community(app, "ale")
    await some_traffic(app, api_client, c)
    base = f"/api/communities/{c.id}/access-log/export"
    exported = await api_client.get(base + "?format=csv&person=张三", token=c.tokens["admin"])
    assert exported.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.body.lstrip("\ufeff"))))
    assert [(r["姓名"], r["房间"], r["结果"], r["原因"]) for r in rows] == [
        ("张三", "1栋1单元101室", "拒绝", "码已用过"), ("张三", "1栋1单元101室", "通过", "正常")]
    local = datetime.strptime(rows[0]["时间"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA)
    assert abs(local - app.clock.now()) < timedelta(minutes=1)
    assert rows[0]["门禁"] == "main" and rows[0]["方式"] == "保安扫码"
    # The file is named by the same local time as its rows, not UTC.
    assert exported.headers["Content-Disposition"] == \
        f'attachment; filename="access-log-{app.clock.now().astimezone(CHINA):%Y%m%d-%H%M%S}.csv"'

    english = await api_client.get(base + "?format=csv", token=c.tokens["admin"],
                                   headers={"Accept-Language": "en-GB,en;q=0.9"})
    header = english.body.lstrip("\ufeff").splitlines()[0]
    assert header.startswith("Time,Gate,Direction,Result,Reason")
    forced = await api_client.get(base + "?format=csv&lang=zh", token=c.tokens["admin"],
                                  headers={"Accept-Language": "en"})
    assert forced.body.lstrip("\ufeff").startswith("时间")

    xlsx = await http_client.fetch(base_url + base + "?format=xlsx",
                                   headers={"Authorization": f"Bearer {c.tokens['admin']}"})
    sheet = load_workbook(io.BytesIO(xlsx.body)).active
    header, *values = list(sheet.values)
    assert header[:5] == ("时间", "门禁", "方向", "结果", "原因")
    assert [v[header.index("姓名")] for v in values] == ["李四", "张三", "张三"]
    first_time = values[0][header.index("时间")]
    assert isinstance(first_time, datetime)
    assert abs(first_time.replace(tzinfo=CHINA) - app.clock.now()) < timedelta(minutes=1)
    assert (await api_client.get(base, token=c.tokens["maintenance"])).status == 403


@pytest.mark.asyncio
async def test_remote_opens_show_who_opened_and_why(app, api_client, hub, tmp_path):
    c = await make_community(app, "alr")
    await change_directly(app, "staff", {"_id": ObjectId(c.staff["security"])},
                          {"$set": {"name": "王保安"}})
    creds = await app.bridges.provision(c.id, c.gates["main"], c.staff["admin"])
    sim = await start_sim_bridge(tmp_path, hub.port, creds["bridge_id"], creds["secret"])
    try:
        await sim.bridge.wait(lambda: sim.bridge.sessions == 1)
        opened = await api_client.post(f"/api/communities/{c.id}/gates/{c.gates['main']}/open",
                                       {"reason": "快递员没带码"}, token=c.tokens["security"])
        assert opened.status == 200 and opened.body["level"] == "opened", opened.body
    finally:
        await sim.stop()
    [line] = (await api_client.get(f"/api/communities/{c.id}/access-log",
                                   token=c.tokens["manager"])).body["items"]
    assert (line["by_name"], line["open_reason"], line["words"]["source"]) == \
        ("王保安", "快递员没带码", "远程开门")
    exported = await api_client.get(f"/api/communities/{c.id}/access-log/export?format=csv",
                                    token=c.tokens["manager"])
    [row] = csv.DictReader(io.StringIO(exported.body.lstrip("\ufeff")))
    assert (row["开门人"], row["开门理由"], row["方式"]) == ("王保安", "快递员没带码", "远程开门")
    assert datetime.fromisoformat(line["at"]).astimezone(UTC) <= app.clock.now()


@pytest.mark.asyncio
async def test_the_words_for_filter_choices_come_from_the_server(app, api_client):
    c = await make_community(app, "alw")
    words = (await api_client.get(f"/api/communities/{c.id}/access-log/words",
                                  token=c.tokens["security"])).body
    assert words["reason"]["replayed"] == "码已用过" and words["result"]["deny"] == "拒绝"
    english = (await api_client.get(f"/api/communities/{c.id}/access-log/words?lang=en",
                                    token=c.tokens["security"])).body
    assert english["reason"]["replayed"] == "code already used"
    assert (await api_client.get(f"/api/communities/{c.id}/access-log/words",
                                 token=c.tokens["maintenance"])).status == 403
