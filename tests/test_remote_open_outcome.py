"""A remote open says what the door did, whatever fails after it (issue 12 §1.6): the intent is
in the outbox before the command is sent, the outcome is written after the acks, and a
store that dies in between, or a process that dies, leaves the outcome to the outbox — written
once, the door never moved twice. Real store processes and a real bridge on simulated hardware."""

from datetime import UTC, datetime

import pytest

from models.common import ManualClock
from models.gate_access import OUTCOME_GRACE, command_key
from tests.builders import make_community
from tests.gate_fixtures import *  # noqa: F403 (fixtures)
from tests.gate_fixtures import OPEN_WAIT, start_sim_bridge
from tests.waiting import until

pytestmark = pytest.mark.asyncio


async def open_path(c) -> str:
    return f"/api/communities/{c.id}/gates/{c.gates['main']}/open"


async def lines(app, c) -> list[dict]:
    await app.access_log.flush()
    return (await app.access_log.query(c.id, gate_id=c.gates["main"]))["items"]


async def bridged(app, hub, tmp_path, code="r1"):
    c = await make_community(app, code)
    creds = await app.bridges.provision(c.id, c.gates["main"], c.staff["admin"])
    sim = await start_sim_bridge(tmp_path, hub.port, creds["bridge_id"], creds["secret"])
    await sim.bridge.wait(lambda: sim.bridge.sessions == 1)
    return c, creds, sim


class TestStoreDiesAfterTheDoorActed:
    @pytest.fixture
    def mongo_url(self, mongo_store):
        return mongo_store.url

    async def test_the_answer_says_what_the_door_did_and_the_outcome_follows(
            self, app, hub, api_client, tmp_path, mongo_store):
        c, _, sim = await bridged(app, hub, tmp_path)
        # The moment the lock releases, the store goes: every write after it fails.
        sim.relay.listeners.append(lambda active: active and mongo_store.kill())
        try:
            reply = await api_client.post(await open_path(c),
                                          {"reason": "courier", "wait": OPEN_WAIT},
                                          token=c.tokens["security"])
            assert reply.status == 200, reply.body
            assert "actuated" in reply.body["levels"] and reply.body["recorded"] is False
            assert sim.relay.pulses == 1
            command_id = reply.body["command_id"]
            mongo_store.start()  # same port, same data
            await until(lambda: not app.outbox.unsaved, 30)
            await app.outbox.settled()
            assert (await app.db.outbox.find_one({"_id": command_key(command_id)}))["state"] == "done"
        finally:
            await sim.stop()
        [line] = await lines(app, c)
        assert (line["command_id"], line["result"], line["reason"], line["source"]) == (
            command_id, "allow", "ok", "remote")
        audit = await app.db.gate_commands.find_one({"_id": command_id})
        assert (audit["reason"], audit["level"]) == ("courier", reply.body["level"])
        assert sim.relay.pulses == 1

    async def test_a_store_down_before_the_open_moves_nothing(self, app, hub, api_client,
                                                              tmp_path, mongo_store):
        c, _, sim = await bridged(app, hub, tmp_path)
        try:
            mongo_store.kill()
            reply = await api_client.post(await open_path(c), {"reason": "courier", "wait": 1},
                                          token=c.tokens["security"])
            assert (reply.status, reply.error["code"]) == (503, "store_unavailable")
            assert sim.relay.pulses == 0
        finally:
            await sim.stop()


class Died(Exception):
    """The process that sent the command is gone before it learnt the outcome."""


@pytest.fixture
def clock():
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


@pytest.mark.parametrize("delivered", [True, False])
async def test_a_sender_that_died_leaves_the_outcome_to_the_worker_who_asks_the_bridge(
        app, hub, tmp_path, clock, delivered):
    c, _, sim = await bridged(app, hub, tmp_path)
    gate = hub.held_gate(c.id, c.gates["main"])

    async def send_then_die(bridge, command, wait, on_ack):
        if delivered:
            await hub.send_command(bridge, command, wait, on_ack)
        raise Died()

    try:
        with pytest.raises(Died):
            await app.gate_access.remote_open(send_then_die, gate, f"staff:{c.staff['security']}",
                                              "courier", 3, 5)
        assert sim.relay.pulses == int(delivered)
        assert await lines(app, c) == []  # nobody wrote the outcome
        assert await app.outbox.drain() == 0  # not due while the command may still act
        clock.advance(3 + 5 + OUTCOME_GRACE)
        assert await app.outbox.drain() == 1
    finally:
        await sim.stop()
    [line] = await lines(app, c)
    if delivered:  # it had acted: the bridge says so, and does not act again
        assert (line["result"], line["reason"], line["level"]) == ("allow", "ok", "opened")
    else:  # never had it: refused now as expired, so it never will act on it
        assert (line["result"], line["reason"]) == ("deny", "expired")
    assert sim.relay.pulses == int(delivered)
