"""Shared by the patrol tests: a community with three checkpoints on a route, a plan every
2 hours for the guards, the injectable clock, and a short way to check in."""

from datetime import UTC, datetime, time

import pytest
import pytest_asyncio

from models.common import ManualClock
from tests.builders import make_community

START = datetime.combine(datetime.now(UTC).date(), time(0, 0), UTC)


@pytest.fixture
def clock():
    return ManualClock(START)


class Patrol:
    def __init__(self, app, http, c):
        self.app, self.http, self.c = app, http, c
        self.base = f"/api/communities/{c.id}"

    async def post(self, who, path, body):
        return await self.http.post(self.base + path, body, token=self.c.tokens[who])

    async def check_in(self, plan_id, code, who="security", **over):
        body = {"code": code, "device": f"{who}-phone", "scanned_at": self.app.clock.now().isoformat(),
                **over}
        return await self.post(who, f"/patrol-plans/{plan_id}/check-ins", body)


@pytest_asyncio.fixture
async def p(app, api_client):
    c = await make_community(app, "pt")
    patrol = Patrol(app, api_client, c)
    ids = []
    for code, name, place in (("A1", "北门", None), ("A2", "1 栋大堂", "1-1"), ("A3", "东侧围墙", None)):
        reply = await patrol.post("security_lead", "/patrol-checkpoints",
                                  {"code": code, "name": name, "place_path": place,
                                   "checklist": ["lights", "locks"]})
        assert reply.status == 201, reply.body
        ids.append(reply.body["id"])
    route = await patrol.post("manager", "/patrol-routes", {"name": "夜间巡更", "checkpoints": ids})
    plan = await patrol.post("manager", "/patrol-plans", {
        "route_id": route.body["id"], "name": "每 2 小时", "starts_at": START.isoformat(),
        "every_minutes": 120, "window_minutes": 60, "role": "security"})
    assert plan.status == 201, plan.body
    patrol.plan = plan.body["id"]
    return patrol

