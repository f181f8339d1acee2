"""Notices over HTTP: writing, publishing, audiences, reads once per person, WeChat, the workflow."""

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from bson import ObjectId

from models.common import ManualClock
from models.notices import NOTICE_WORKFLOW, STATES
from models.outbox import backoff
from tests.builders import make_community, make_resident
from tests.test_photos import image_bytes, multipart, phone_photo
from tests.tickets_support import settings  # noqa: F401 (tokens outliving the clock's moves)

pytestmark = pytest.mark.asyncio


class Site:
    """A community with building 1 (units 1-1, 1-2) and building 2, and residents in it."""

    def __init__(self, app, api, c, people):
        self.app, self.http, self.c, self.people = app, api, c, people  # name -> (id, token)
        self.base = f"/api/communities/{c.id}/notices"

    def token(self, who: str) -> str:
        return self.c.tokens[who] if who in self.c.tokens else self.people[who][1]

    async def write(self, who="customer_service", **fields):
        body = {"title": "停水通知", "body": "明天 **9:00–12:00** 停水", **fields}
        return await self.http.post(self.base, body, token=self.token(who))

    async def act(self, who, notice_id, action, **fields):
        reply = await self.http.post(f"{self.base}/{notice_id}/actions",
                                     {"action": action, **fields}, token=self.token(who))
        await self.app.outbox.settled()  # publication's delivery runs beside the answer
        return reply

    async def published(self, **fields) -> str:
        notice_id = (await self.write(**fields)).body["id"]
        reply = await self.act("customer_service", notice_id, "publish")
        assert reply.status == 200, reply.body
        return notice_id

    async def listed(self, who):
        reply = await self.http.get(self.base, token=self.token(who))
        assert reply.status == 200, reply.body
        return reply.body

    async def read(self, who, notice_id):
        return await self.http.post(f"{self.base}/{notice_id}/read", token=self.token(who))

    async def reads(self, notice_id, building=None):
        query = f"?building={building}" if building else ""
        reply = await self.http.get(f"{self.base}/{notice_id}/reads{query}",
                                    token=self.token("manager"))
        assert reply.status == 200, reply.body
        return reply.body


@pytest.fixture
def clock():
    return ManualClock(datetime.now(UTC).replace(microsecond=0))  # today: the outbox's records expire by the store's time


@pytest_asyncio.fixture
async def site(app, api_client):
    code = uuid.uuid4().hex[:6]
    c = await make_community(app, code)
    for path in ("2", "2-1", "2-1-101"):
        await app.places.create_place(c.id, path)
    people = {}
    for name, room, relation in (("ann", "1-1-101", "owner"), ("amy", "1-1-101", "family"),
                                 ("bob", "1-1-102", "owner"), ("tom", "1-2-101", "tenant"),
                                 ("uma", "1-2-101", "owner"), ("zoe", "2-1-101", "owner")):
        lease = app.clock.now().replace(year=app.clock.now().year + 1) if relation == "tenant" else None
        people[name] = await make_resident(app, c, f"{name}-{code}", room, relation, lease)
    return Site(app, api_client, c, people)


async def test_a_notice_goes_from_draft_to_published_to_withdrawn_with_its_history(site):
    reply = await site.write(body="**停水**\n\n<script>alert(1)</script> [说明](javascript:alert(1))")
    assert reply.status == 201, reply.body
    notice = reply.body
    assert notice["state"] == "draft" and notice["allowed_actions"] == ["edit", "publish", "schedule"]
    # Raw HTML is shown as text; a javascript: link is no link.
    assert "<strong>停水</strong>" in notice["body_html"]
    assert "<script>" not in notice["body_html"] and "&lt;script&gt;" in notice["body_html"]
    assert "href" not in notice["body_html"]
    assert await site.listed("ann") == []  # drafts are the office's

    edited = await site.act("customer_service", notice["id"], "edit", title="停水通知（更正）")
    assert edited.body["title"] == "停水通知（更正）" and edited.body["state"] == "draft"
    published = await site.act("customer_service", notice["id"], "publish")
    assert published.body["state"] == "published" and published.body["published_at"]
    again = await site.act("customer_service", notice["id"], "edit", title="x")
    assert again.status == 409 and again.error["code"] == "illegal_transition"
    assert again.error["allowed"] == ["pin", "unpin", "withdraw"]
    assert again.error["message"] == "通知已发布，不能修改"  # Chinese unless asked

    [listed] = await site.listed("ann")
    assert (listed["id"], listed["read_at"]) == (notice["id"], None)
    no_reason = await site.act("manager", notice["id"], "withdraw")
    assert no_reason.status == 400 and no_reason.error["fields"] == {"reason": "撤回时必填"}
    withdrawn = await site.act("manager", notice["id"], "withdraw", reason="时间有误")
    assert withdrawn.body["state"] == "withdrawn"
    assert await site.listed("ann") == []
    assert (await site.read("ann", notice["id"])).status == 404
    assert [(h["action"], h["to"]) for h in withdrawn.body["history"]] == [
        ("create", "draft"), ("edit", "draft"), ("publish", "published"), ("withdraw", "withdrawn")]
    assert withdrawn.body["history"][-1]["reason"] == "时间有误"


async def test_who_may_write_publish_and_read(site):
    assert (await site.write("ann")).status == 403  # residents read notices only
    assert (await site.write("maintenance")).status == 403
    notice_id = (await site.write()).body["id"]
    assert (await site.act("security", notice_id, "publish")).status == 403
    assert (await site.act("ann", notice_id, "publish")).status == 403
    assert (await site.http.get(site.base, token=site.token("maintenance"))).status == 200
    assert (await site.http.get(f"{site.base}/{notice_id}/reads",
                                token=site.token("maintenance"))).status == 403
    bad = await site.write(audience={"places": ["1-1-101"]})
    assert bad.status == 400 and "audience.places" in bad.error["fields"]
    unknown = await site.write(audience={"places": ["9"]})
    assert unknown.status == 400 and unknown.error["fields"] == {"audience.places": "没有地点 '9'"}


async def test_the_audience_is_buildings_units_owners_or_everyone(site):
    whole = await site.published(title="全体")
    unit_owners = await site.published(title="1-2 业主", audience={"places": ["1-2"], "who": "owners"})
    building_two = await site.published(title="2 栋", audience={"places": ["2"]})
    seen = {name: {n["title"] for n in await site.listed(name)} for name in site.people}
    assert seen == {"ann": {"全体"}, "amy": {"全体"}, "bob": {"全体"}, "tom": {"全体"},
                    "uma": {"全体", "1-2 业主"}, "zoe": {"全体", "2 栋"}}
    assert (await site.read("tom", unit_owners)).status == 404  # a tenant, not an owner
    assert (await site.read("zoe", unit_owners)).status == 404
    assert (await site.read("zoe", building_two)).status == 200
    assert (await site.reads(whole))["recipients"] == 6


async def test_a_read_is_recorded_once_and_counted_per_building(site):
    notice_id = await site.published()
    first = await site.read("ann", notice_id)
    assert first.status == 200 and first.body["read_at"]
    second = await site.read("ann", notice_id)
    assert second.body["read_at"] == first.body["read_at"]  # the first read stands
    await site.read("zoe", notice_id)
    report = await site.reads(notice_id)
    assert (report["recipients"], report["read"]) == (6, 2)
    assert report["buildings"] == [{"building": "1", "recipients": 5, "read": 1},
                                   {"building": "2", "recipients": 1, "read": 1}]
    in_one = await site.reads(notice_id, building="1")
    assert in_one["unread_total"] == 4
    unread = in_one["unread"]
    assert sorted((u["room_path"], u["resident_id"]) for u in unread) == sorted(
        [("1-1-101", site.people["amy"][0]), ("1-1-102", site.people["bob"][0]),
         ("1-2-101", site.people["tom"][0]), ("1-2-101", site.people["uma"][0])])
    [staff_view] = await site.listed("manager")
    assert (staff_view["read_count"], staff_view["recipient_count"]) == (2, 6)
    [mine] = await site.listed("ann")
    assert mine["read_at"] == first.body["read_at"]


async def test_someone_who_moves_in_after_publication_still_reads_it(app, site):
    notice_id = await site.published()
    late = await make_resident(app, site.c, f"late-{site.c.code}", "1-1-102", "family")
    site.people["late"] = late
    assert (await site.read("late", notice_id)).status == 200
    assert (await site.read("late", notice_id)).status == 200
    report = await site.reads(notice_id)
    assert (report["recipients"], report["read"]) == (7, 1)


async def test_pinned_and_urgent_notices_come_first(site, clock):
    old = await site.published(title="旧")
    clock.advance(60)
    await site.published(title="新")
    clock.advance(60)
    await site.published(title="停电", urgent=True)
    assert [n["title"] for n in await site.listed("ann")] == ["停电", "新", "旧"]
    pinned = await site.act("manager", old, "pin")
    assert pinned.body["pinned"] is True and pinned.body["state"] == "published"
    assert [n["title"] for n in await site.listed("ann")] == ["旧", "停电", "新"]
    await site.act("manager", old, "unpin")
    assert [n["title"] for n in await site.listed("ann")] == ["停电", "新", "旧"]


async def _sent(http_client, settings, openids):
    reply = await http_client.fetch(f"{settings.wechat_base_url}/_fake/stats")
    return [m for m in json.loads(reply.body)["sent"]
            if m["touser"] in openids and m["template_id"] == settings.wechat_notice_template]


async def test_wechat_messages_go_to_those_who_granted_one_and_only_once(app, site, http_client,
                                                                         settings):
    template = settings.wechat_notice_template
    granted = ["ann", "zoe"]
    openids = {f"openid-{name}-{site.c.code}" for name in site.people}
    for name in granted:
        reply = await site.http.post("/api/me/subscriptions", {"results": {template: "accept"}},
                                     token=site.token(name))
        assert reply.body == {template: 1}
        await http_client.fetch(f"{settings.wechat_base_url}/_fake/credits", method="POST",
                                body=json.dumps({"openid": f"openid-{name}-{site.c.code}",
                                                 "template_id": template, "count": 1}))
    notice_id = await site.published(title="紧急停电", urgent=True)
    sent = await _sent(http_client, settings, openids)
    assert sorted(m["touser"] for m in sent) == sorted(f"openid-{n}-{site.c.code}" for n in granted)
    assert sent[0]["data"]["thing1"]["value"] == "【紧急】紧急停电"
    assert sent[0]["page"] == f"pages/notices/detail?id={notice_id}"
    outcomes = {str(r["resident_id"]): r["wechat"] async for r in app.db.notice_recipients.find(
        {"notice_id": ObjectId(notice_id)})}
    assert outcomes == {rid: "sent" if name in granted else "no_credit"
                        for name, (rid, _) in site.people.items()}
    # Delivering the same effect again (a retry) sends nothing more.
    doc = await app.db.notices.find_one({"title": "紧急停电"})
    await app.notices._deliver("again", {"notice_id": doc["_id"]})
    assert len(await _sent(http_client, settings, openids)) == 2


async def test_dying_after_one_wechat_send_the_retry_sends_the_others_once(
        app, site, http_client, settings, clock, monkeypatch):
    template = settings.wechat_notice_template
    granted = ["ann", "zoe"]
    openids = {f"openid-{name}-{site.c.code}" for name in site.people}
    for name in granted:
        await site.http.post("/api/me/subscriptions", {"results": {template: "accept"}},
                             token=site.token(name))
        await http_client.fetch(f"{settings.wechat_base_url}/_fake/credits", method="POST",
                                body=json.dumps({"openid": f"openid-{name}-{site.c.code}",
                                                 "template_id": template, "count": 2}))
    send = app.notifier.wechat.send_subscribe_message

    async def dies_after_sending(*args, **kwargs):
        await send(*args, **kwargs)
        raise ConnectionError("the process died before it recorded the send")
    monkeypatch.setattr(app.notifier.wechat, "send_subscribe_message", dies_after_sending)
    await site.published(title="停电")
    monkeypatch.undo()
    assert len(await _sent(http_client, settings, openids)) == 1  # the first, then death

    clock.advance(backoff(1))
    assert await app.outbox.drain() == 1  # the delivery's retry
    await app.outbox.settled()
    sent = await _sent(http_client, settings, openids)
    assert sorted(m["touser"] for m in sent) == sorted(f"openid-{n}-{site.c.code}" for n in granted)
    outcomes = sorted([r["wechat"] async for r in app.db.notice_recipients.find(
        {"resident_id": {"$in": [ObjectId(site.people[n][0]) for n in granted]}})])
    assert outcomes == ["sent", "unknown"]  # the one that died: maybe delivered, never twice


async def test_a_scheduled_notice_appears_when_its_time_comes(app, site, clock):
    notice_id = (await site.write(title="消防演练")).body["id"]
    past = await site.act("manager", notice_id, "schedule", publish_at=clock.now().isoformat())
    assert past.status == 400 and past.error["fields"] == {"publish_at": "须晚于现在"}
    first = (clock.now() + timedelta(hours=2)).isoformat()
    assert (await site.act("manager", notice_id, "schedule", publish_at=first)).status == 200
    later = (clock.now() + timedelta(hours=3)).isoformat()
    moved = await site.act("manager", notice_id, "schedule", publish_at=later)
    assert moved.body["state"] == "scheduled" and moved.body["publish_at"] == later
    assert await site.listed("ann") == []
    clock.advance(2 * 3600)
    await app.outbox.drain()  # the first time has passed: it was moved, so nothing happens
    assert (await site.listed("manager"))[0]["state"] == "scheduled"
    clock.advance(3600)
    await app.outbox.drain()
    await app.outbox.settled()
    [shown] = await site.listed("ann")
    assert shown["title"] == "消防演练" and shown["published_at"] == later
    staff = (await site.http.get(f"{site.base}/{notice_id}", token=site.token("manager"))).body
    assert staff["history"][-1]["by"] == "scheduler" and staff["recipient_count"] == 6


async def test_images_go_with_a_draft_and_are_shown_by_signed_links(site, http_client, base_url):
    notice_id = (await site.write()).body["id"]
    body, headers = multipart(image_bytes("PNG"), phone_photo())
    path = f"{site.base}/{notice_id}/photos"
    reply = await site.http.call("POST", path, raw=body, headers=headers, token=site.token("manager"))
    assert reply.status == 201, reply.body
    assert len(reply.body["photos"]) == 2
    await site.act("manager", notice_id, "publish")
    [shown] = await site.listed("ann")
    image = await http_client.fetch(base_url + shown["photos"][1]["url"])  # no bearer: signed
    assert image.headers["Content-Type"] == "image/jpeg" and b"GPS" not in image.body
    late = await site.http.call("POST", path, raw=body, headers=headers, token=site.token("manager"))
    assert late.status == 400 and late.error["fields"] == {"photo": "现在不行"}
    refused = await site.http.call("POST", path, raw=body, headers=headers, token=site.token("ann"))
    assert refused.status == 403


async def test_every_notice_action_names_known_states():
    from models.workflow import SAME
    for act in NOTICE_WORKFLOW.actions:
        assert act.sources <= set(STATES) and act.target in set(STATES) | {SAME}
        assert act.actors <= {"editor", "scheduler"}
