"""An events_ack means "stored up to here, with no gap": the MongoDB-protocol server killed
under a streaming bridge, and batches refused after a gap. Counted from what the store holds."""

import asyncio

import pytest

from gate_bridge import protocol as p
from server.gate_hub import GateHub, HubOptions
from tests.builders import make_community
from tests.gate_fixtures import *  # noqa: F403 (fixtures)
from tests.gate_fixtures import start_sim_bridge

pytestmark = pytest.mark.asyncio


@pytest.fixture
def mongo_url(mongo_store):
    return mongo_store.url


async def stored_seqs(app, bridge_id: str) -> list[int]:
    docs = await app.db.gate_events.find({"bridge": bridge_id, "seq": {"$ne": None}}).to_list(None)
    return sorted(d["seq"] for d in docs)


async def test_no_event_lost_when_the_store_dies_between_two_batches(app, tmp_path, mongo_store):
    # Heartbeats far apart: the link must outlive the outage (a new session needs the store).
    hub = GateHub(app, HubOptions(heartbeat=10.0))
    await hub.start(0, "127.0.0.1")
    c = await make_community(app, "m1")
    creds = await app.bridges.provision(c.id, c.gates["main"], c.staff["admin"])
    sim = await start_sim_bridge(tmp_path, hub.port, creds["bridge_id"], creds["secret"])
    bridge = sim.bridge
    try:
        await bridge.wait(lambda: bridge.sessions == 1)
        produced = [bridge.record("door_opened", n=i) for i in range(20)]
        await bridge.wait(lambda: bridge.store.count == 0)
        conn = hub.connections[creds["bridge_id"]]
        mongo_store.kill()
        # One batch that will fail to store, and a second one queued behind it, which the
        # store, back by then, would take: acknowledging it must not skip the first.
        produced += [bridge.record("door_closed", n=i) for i in range(30)]
        await hub.wait(lambda: conn.worker is not None)
        produced += [bridge.record("door_opened", n=i) for i in range(30)]
        await hub.wait(lambda: bool(conn.inbox))
        await bridge.wait(lambda: bridge.events_refused >= 1)
        await asyncio.to_thread(mongo_store.start)
        produced += [bridge.record("door_closed", n=i) for i in range(10)]
        await bridge.wait(lambda: bridge.store.count == 0)
    finally:
        await sim.stop()
        await hub.stop()
    assert await stored_seqs(app, creds["bridge_id"]) == produced  # each once, none missing


async def test_a_batch_after_a_gap_is_refused_until_the_gap_is_sent(peers, app, hub):
    c = await make_community(app, "m2")
    creds = await app.bridges.provision(c.id, c.gates["main"], c.staff["admin"])
    peer = await peers()
    _, welcome = await peer.handshake(creds["bridge_id"], creds["secret"])
    assert welcome["op"] == p.WELCOME

    def batch(after, *seqs):
        return p.message(p.EVENTS, after=after,
                         items=[{"seq": s, "type": "door_opened", "at": 1.0} for s in seqs])
    peer.send(batch(4, 5, 6))  # the first batch of a session says where it starts
    assert (await peer.expect(p.EVENTS_ACK))["upto"] == 6
    peer.send(batch(8, 9))  # 7 and 8 never arrived
    refused = await peer.expect(p.ERROR)
    assert (refused["code"], refused["ref_op"], refused["upto"]) == (
        p.EVENTS_NOT_STORED, p.EVENTS, 6)
    peer.send(batch(6, 7, 8, 9))
    assert (await peer.expect(p.EVENTS_ACK))["upto"] == 9
    assert await stored_seqs(app, creds["bridge_id"]) == [5, 6, 7, 8, 9]
    peer.send(batch(9, 9))
    assert (await peer.expect(p.ERROR))["code"] == "bad_field"  # a seq must follow `after`
