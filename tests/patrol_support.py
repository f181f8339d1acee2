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

    async def add_plan(self, starts_at: datetime, **over) -> str:
        reply = await self.post("manager", "/patrol-plans", {
            "route_id": self.route, "name": "每 2 小时", "starts_at": starts_at.isoformat(),
            "every_minutes": 120, "window_minutes": 60, "role": "security", **over})
        assert reply.status == 201, reply.body
        return reply.body["id"]

    async def check_in(self, plan_id, code, who="security", **over):
        body = {"code": code, "device": f"{who}-phone", "scanned_at": self.app.clock.now().isoformat(),
                **over}
        return await self.post(who, f"/patrol-plans/{plan_id}/check-ins", body)


async def set_up(app, http, code: str, starts_at: datetime, **plan) -> Patrol:
    """Community `code`: checkpoints A1 北门, A2 1 栋大堂 (at 1-1), A3 东侧围墙, each checking
    lights and locks, on one route; a plan from `starts_at`, every 2 hours in a 60-minute
    window, for the guards (`plan` overrides)."""
    c = await make_community(app, code)
    patrol = Patrol(app, http, c)
    ids = []
    for tag, name, place in (("A1", "北门", None), ("A2", "1 栋大堂", "1-1"), ("A3", "东侧围墙", None)):
        reply = await patrol.post("security_lead", "/patrol-checkpoints",
                                  {"code": tag, "name": name, "place_path": place,
                                   "checklist": ["lights", "locks"]})
        assert reply.status == 201, reply.body
        ids.append(reply.body["id"])
    route = await patrol.post("manager", "/patrol-routes", {"name": "夜间巡更", "checkpoints": ids})
    patrol.route = route.body["id"]
    patrol.plan = await patrol.add_plan(starts_at, **plan)
    return patrol


@pytest_asyncio.fixture
async def p(app, api_client):
    return await set_up(app, api_client, "pt", START)
