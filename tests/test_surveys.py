"""Surveys over HTTP: questions, one answer per household or person, anonymity, results, KPI."""

import uuid

import pytest
import pytest_asyncio

from tests.builders import make_community, make_resident

pytestmark = pytest.mark.asyncio

SATISFACTION = {"kind": "single", "text": "您对物业服务满意吗？", "satisfaction": True,
                "options": [{"text": "满意", "satisfied": True}, {"text": "基本满意", "satisfied": True},
                            {"text": "不满意"}]}
WISHES = {"kind": "multiple", "text": "希望改进", "required": False,
          "options": [{"text": "保洁"}, {"text": "绿化"}, {"text": "安保"}]}
WORDS = {"kind": "text", "text": "其他建议", "required": False}


@pytest_asyncio.fixture
async def s(app, api_client):
    code = uuid.uuid4().hex[:6]
    c = await make_community(app, code)
    people = {name: await make_resident(app, c, f"{name}-{code}", room, relation)
              for name, room, relation in (("ann", "1-1-101", "owner"), ("amy", "1-1-101", "family"),
                                           ("bob", "1-1-102", "owner"), ("uma", "1-2-101", "owner"))}
    return Surveys(api_client, c, people)


class Surveys:
    def __init__(self, http, c, people):
        self.http, self.c, self.people = http, c, people
        self.base = f"/api/communities/{c.id}/surveys"

    def token(self, who):
        return self.c.tokens[who] if who in self.c.tokens else self.people[who][1]

    async def opened(self, **fields) -> str:
        body = {"title": "2026 年度满意度调查", "questions": [SATISFACTION, WISHES, WORDS], **fields}
        reply = await self.http.post(self.base, body, token=self.token("manager"))
        assert reply.status == 201, reply.body
        opened = await self.act("manager", reply.body["id"], "open")
        assert opened.body["state"] == "open", opened.body
        return reply.body["id"]

    async def act(self, who, survey_id, action, **fields):
        return await self.http.post(f"{self.base}/{survey_id}/actions", {"action": action, **fields},
                                    token=self.token(who))

    async def answer(self, who, survey_id, **answers):
        return await self.http.post(f"{self.base}/{survey_id}/answers", {"answers": answers},
                                    token=self.token(who))

    async def results(self, survey_id):
        reply = await self.http.get(f"{self.base}/{survey_id}/results", token=self.token("manager"))
        assert reply.status == 200, reply.body
        return reply.body


async def test_one_answer_per_household_counted_with_the_satisfaction_rate(s):
    sid = await s.opened()
    assert (await s.answer("ann", sid, q1="o1", q2=["o1", "o3"], q3="楼道灯常坏")).status == 201
    again = await s.answer("amy", sid, q1="o3")  # the same room: the household has answered
    assert again.status == 409 and again.error["code"] == "already_answered"
    assert (await s.answer("bob", sid, q1="o2", q2=["o1"])).status == 201
    assert (await s.answer("uma", sid, q1="o3")).status == 201
    [listed] = (await s.http.get(s.base, token=s.token("amy"))).body
    assert listed["answered"] is True  # for her household
    results = await s.results(sid)
    assert results["responses"] == 3
    q1, q2, q3 = results["questions"]
    assert [o["count"] for o in q1["options"]] == [1, 1, 1]
    assert [o["count"] for o in q2["options"]] == [2, 0, 1]
    assert [(a["text"], a["room_path"]) for a in q3["answers"]] == [("楼道灯常坏", "1-1-101")]
    rate = results["satisfaction_rate"]
    assert (rate["satisfied"], rate["answered"], rate["value"], rate["meets"]) == (2, 3, 0.6667, False)


async def test_per_person_anonymous_answers_keep_no_one(app, s):
    sid = await s.opened(per="person", anonymous=True)
    assert (await s.answer("ann", sid, q1="o1")).status == 201
    assert (await s.answer("amy", sid, q1="o1")).status == 201  # a person each
    assert (await s.answer("amy", sid, q1="o2")).status == 409
    stored = await app.db.survey_answers.find({}).to_list(None)
    assert len(stored) == 2
    for doc in stored:
        assert "resident_id" not in doc and "room_path" not in doc and doc["building"] is None
        assert s.people["ann"][0] not in doc["_id"] and "1-1-101" not in doc["_id"]


async def test_answers_are_checked_and_only_open_surveys_take_them(s):
    sid = await s.opened()
    bad = await s.answer("ann", sid, q1="o9", q2="o1", q4="x")
    assert bad.status == 400
    assert bad.error["fields"] == {"answers.q1": "one of o1, o2, o3", "answers.q2": "a list of o1, o2, o3",
                                   "answers.q4": "no such question"}
    assert (await s.answer("ann", sid, q2=["o1"])).error["fields"] == {"answers.q1": "必填"}
    assert (await s.act("ann", sid, "close")).status == 403
    closed = await s.act("manager", sid, "close")
    assert closed.body["state"] == "closed" and closed.body["allowed_actions"] == []
    late = await s.answer("ann", sid, q1="o1")
    assert late.status == 409 and late.error["code"] == "survey_not_open"
    edit = await s.act("manager", sid, "edit", title="x")
    assert edit.status == 409 and edit.error["message"] == "问卷已关闭，不能修改"  # Chinese unless asked


async def test_a_satisfaction_question_needs_satisfied_options(s):
    reply = await s.http.post(s.base, {"title": "x", "questions": [
        {**SATISFACTION, "options": [{"text": "好"}, {"text": "坏"}]}]}, token=s.token("manager"))
    assert reply.status == 400 and "questions.0.satisfaction" in reply.error["fields"]
    one = await s.http.post(s.base, {"title": "x", "questions": [
        {"kind": "single", "text": "?", "options": [{"text": "only"}]}]}, token=s.token("manager"))
    assert one.status == 400 and one.error["fields"] == {"questions.0.options": "至少两个"}
    assert (await s.http.post(s.base, {"title": "x", "questions": [WORDS]},
                              token=s.token("ann"))).status == 403


async def test_the_kpi_page_shows_the_latest_surveys_satisfaction(s):
    kpi = await s.http.get(f"/api/communities/{s.c.id}/kpi", token=s.token("manager"))
    assert kpi.body["survey_satisfaction"]["value"] is None
    sid = await s.opened()
    for who in ("ann", "bob", "uma"):
        await s.answer(who, sid, q1="o1")
    kpi = await s.http.get(f"/api/communities/{s.c.id}/kpi", token=s.token("manager"))
    figure = kpi.body["survey_satisfaction"]
    assert (figure["value"], figure["meets"], figure["survey_id"], figure["target"]) == \
        (1.0, True, sid, 0.9)


async def test_a_survey_for_one_unit_is_not_shown_elsewhere(s):
    sid = await s.opened(audience={"places": ["1-2"]})
    assert (await s.http.get(s.base, token=s.token("ann"))).body == []
    assert (await s.answer("ann", sid, q1="o1")).status == 404
    assert (await s.answer("uma", sid, q1="o1")).status == 201
