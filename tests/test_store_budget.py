"""MongoDB commands per request of the soak's mix (scripts/drills/soak.py), counted on the wire
by PyMongo's command monitoring and told apart by each request's id: the soak failed because
1,000 app clients asked the embedded store for ≈ 325 operations a second (`/api/me` two reads,
an access-log page seven, a remote open a dozen). Warm — once a first request has read what
the process keeps copies of — these are the budgets. The copies are dropped by the change's
announcement: tests/test_key_cache.py and tests/test_revocation_restart.py keep that true
across processes."""

import collections

import pytest
from pymongo import monitoring

from gate_bridge import logs
from tests.builders import make_community, make_resident
from tests.gate_fixtures import *  # noqa: F403 (fixtures)
from tests.gate_fixtures import start_sim_bridge

pytestmark = pytest.mark.asyncio


class Commands(monitoring.CommandListener):
    """The commands each request sent (by the request id its handler binds to its task)."""

    def __init__(self):
        self.sent: dict[str, list[str]] = collections.defaultdict(list)

    def started(self, event) -> None:
        if request := logs.bound("request_id"):
            self.sent[request].append(
                f"{event.command_name} {event.command.get(event.command_name)}")

    def succeeded(self, event) -> None:
        pass

    def failed(self, event) -> None:
        pass


@pytest.fixture
def commands():
    return Commands()


@pytest.fixture
def mongo_listeners(commands):
    return (commands,)


async def test_the_soaks_requests_stay_within_their_store_budgets(app, hub, api_client,
                                                                  tmp_path, commands):
    c = await make_community(app, "budget")
    creds = await app.bridges.provision(c.id, c.gates["main"], c.staff["admin"])
    sim = await start_sim_bridge(tmp_path, hub.port, creds["bridge_id"], creds["secret"])
    await sim.bridge.wait(lambda: sim.bridge.sessions == 1)
    _, resident = await make_resident(app, c, "ann")
    admin = c.tokens["admin"]
    open_path = f"/api/communities/{c.id}/gates/{c.gates['main']}/open"
    log_path = f"/api/communities/{c.id}/access-log?limit=20"

    async def call(request_id, method, path, token, body=None):
        reply = await api_client.call(method, path, body, token=token,
                                      headers={"X-Request-Id": request_id})
        assert reply.status == 200, reply.body
        return reply.body

    try:
        for warm in ("cold", "warm"):  # the first of each reads what later ones find copied
            await call(f"me-{warm}", "GET", "/api/me", admin)
            await call(f"resident-me-{warm}", "GET", "/api/me", resident)
            opened = await call(f"open-{warm}", "POST", open_path, admin,
                                {"reason": "budget", "wait": 5})
            assert opened["level"] == "opened" and opened["recorded"]
            page = await call(f"log-{warm}", "GET", log_path, admin)
            assert page["items"][0]["gate_name"] == "main"
            assert page["items"][0]["by_name"] == "admin"
    finally:
        await sim.stop()
    sent = commands.sent
    assert sent["me-warm"] == [], sent
    assert sent["resident-me-warm"] == [], sent
    assert sent["log-warm"] == ["find access_log"], sent
    # A remote open: its intent (the outbox), its line, and its audit record and intent done
    # after the answer; the community's emergency modes are a copy of at most a second.
    assert [c for c in sent["open-warm"] if c != "find gate_modes"] == [
        "insert outbox", "insert access_log", "update gate_commands", "update outbox"], sent
