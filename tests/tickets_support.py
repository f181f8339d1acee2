"""Shared by the ticket tests: a community with two residents, and short ways to act."""

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import pytest_asyncio

from models.access import Principal
from models.common import ManualClock
from tests.builders import Community, make_community, make_resident

START = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)  # a Monday, 09:00 in China


@pytest.fixture
def settings(settings):
    """Tokens that outlive the hours these tests move the clock (import into the test module)."""
    return settings.model_copy(update={"access_token_seconds": 86400})


@dataclass
class World:
    c: Community
    ann: str  # resident ids
    bob: str
    tokens: dict  # role or resident name -> access token

    def staff(self, role: str) -> Principal:
        return Principal("staff", self.c.staff[role], {self.c.id: frozenset({role})})

    def resident(self, name: str) -> Principal:
        rid = getattr(self, name)
        return Principal("resident", rid, {self.c.id: frozenset({"owner"})})

    async def renew(self, app) -> None:
        """Fresh tokens after the clock moved past their life."""
        for who in list(self.tokens):
            sub, aud = (self.c.staff[who], "staff") if who in self.c.staff else (getattr(self, who),
                                                                                  "resident")
            self.tokens[who] = (await app.auth.start_session(sub, aud))["access_token"]


async def make_world(app, code: str = "t", tag: str = "") -> World:
    """`tag` ends the residents' names (and so their openids): the fake WeChat's credits
    for an openid outlive a test."""
    c = await make_community(app, code)
    ann, ann_token = await make_resident(app, c, f"ann{tag}", "1-1-101")
    bob, bob_token = await make_resident(app, c, f"bob{tag}", "1-1-102")
    return World(c, ann, bob, {**c.tokens, "ann": ann_token, "bob": bob_token})


def repair(**over) -> dict:
    return {"kind": "repair", "category": "plumbing", "area": "room", "place_path": "1-1-101",
            "description": "kitchen tap drips", **over}


class Api:
    """The ticket routes of one community, called as a given person."""

    def __init__(self, api_client, world: World):
        self.http = api_client
        self.w = world
        self.base = f"/api/communities/{world.c.id}/tickets"

    async def report(self, who: str = "ann", **fields):
        return await self.http.post(self.base, repair(**fields), token=self.w.tokens[who])

    async def act(self, who: str, ticket_id: str, action: str, **fields):
        return await self.http.post(f"{self.base}/{ticket_id}/transitions",
                                    {"action": action, **fields}, token=self.w.tokens[who])

    async def get(self, who: str, ticket_id: str):
        return await self.http.get(f"{self.base}/{ticket_id}", token=self.w.tokens[who])

    async def through(self, ticket_id: str, *steps: str):
        """Walk a ticket along the happy path; each step must succeed."""
        fields = {"assign": ("customer_service", {"assignee_id": self.w.c.staff["maintenance"]}),
                  "accept": ("maintenance", {}), "check_in": ("maintenance", {}),
                  "resolve": ("maintenance", {"notes": "new washer"}),
                  "confirm": ("ann", {"rating": 5}),
                  "follow_up": ("customer_service", {"notes": "called, all fine"}),
                  "close": ("customer_service", {})}
        reply = None
        for step in steps:
            who, body = fields[step]
            reply = await self.act(who, ticket_id, step, **body)
            assert reply.status == 200, (step, reply.body)
        return reply


# Fixtures the ticket test modules share (import the ones a module wants).

@pytest.fixture
def clock():
    return ManualClock(START)


@pytest_asyncio.fixture
async def world(app):
    return await make_world(app)


@pytest.fixture
def t(api_client, world):
    return Api(api_client, world)
