"""A hub instance killed outright (SIGKILL: no cleanup) while holding bridges: another
instance notices by the dead one's lapsed lease and declares its bridges offline within one
heartbeat — event, alarm, the gate list — and an open waiting on such a bridge fails fast."""

import asyncio
import contextlib
import time

import pytest

from gate_bridge import protocol as p
from server.gate_hub import GateHub, HubOptions
from tests.builders import make_community
from tests.gate_fixtures import HubProcess, RawPeer

pytestmark = pytest.mark.asyncio

HEARTBEAT = 3.0  # seconds: the bound under test; leases are half of it


async def test_a_killed_instance_s_bridges_are_declared_offline_by_another(app, settings,
                                                                           api_client):
    c = await make_community(app, "d1")
    gates = [c.gates["main"], c.gates["u1-1"]]
    creds = [await app.bridges.provision(c.id, g, c.staff["admin"]) for g in gates]
    doomed = HubProcess(settings, heartbeat=HEARTBEAT)
    survivor = GateHub(app, HubOptions(heartbeat=HEARTBEAT))
    peers = []
    try:
        port = await doomed.ready()  # started first: it holds the watcher's lease
        await survivor.start(0, "127.0.0.1")
        app.gate_hub = survivor
        for cred in creds:
            peers.append(peer := await RawPeer.connect(port))
            _, welcome = await peer.handshake(cred["bridge_id"], cred["secret"])
            assert welcome["op"] == p.WELCOME
        # An open through the survivor, delivered to the doomed instance's bridge, unanswered.
        opening = asyncio.create_task(api_client.post(
            f"/api/communities/{c.id}/gates/{gates[0]}/open", {"reason": "t", "wait": 30},
            token=c.tokens["admin"]))
        await peers[0].expect(p.OPEN)
        killed_at = app.clock.time()
        doomed.kill()
        await survivor.wait(lambda: survivor.declared_offline == 2, timeout=HEARTBEAT)
        reply = await opening
        answered_at = app.clock.time()
    finally:
        for peer in peers:
            peer.close()
        doomed.kill()
        await survivor.stop()
    for cred in creds:
        [offline] = await app.db.gate_events.find(
            {"bridge": cred["bridge_id"], "type": "offline"}).to_list(None)
        assert offline["at"].timestamp() - killed_at < HEARTBEAT
        [alarm] = await app.db.gate_alarms.find(
            {"bridge": cred["bridge_id"], "kind": "bridge_offline"}).to_list(None)
        assert alarm["state"] == "open"
    listed = await api_client.get(f"/api/communities/{c.id}/gates", token=c.tokens["admin"])
    assert {g["id"]: g["online"] for g in listed.body if g["id"] in gates} == {
        gates[0]: False, gates[1]: False}
    # Failed fast (not after its 30 s wait), and never delivered later.
    assert (reply.status, reply.error["code"]) == (504, "gate_offline")
    assert answered_at - killed_at < HEARTBEAT
    assert not await app.redis.hlen(f"gate:pending:{creds[0]['bridge_id']}")


@contextlib.asynccontextmanager
async def watched_by_the_test(app, code):
    """A hub whose watcher the test plays, holding a raw peer's bridge: (hub, community, bridge)."""
    c = await make_community(app, code)
    cred = await app.bridges.provision(c.id, c.gates["main"], c.staff["admin"])
    hub = GateHub(app, HubOptions(heartbeat=HEARTBEAT))
    await hub.start(0, "127.0.0.1")
    await hub.watcher.stop()
    peer = await RawPeer.connect(hub.port)
    try:
        _, welcome = await peer.handshake(cred["bridge_id"], cred["secret"])
        assert welcome["op"] == p.WELCOME
        await hub.wait(lambda: hub.idle)
        yield hub, c, cred["bridge_id"]
    finally:
        peer.close()
        await hub.stop()


async def test_an_instance_whose_lease_lapsed_takes_it_again_and_its_bridges_back(app):
    async with watched_by_the_test(app, "d2") as (hub, _, bridge):
        async def statuses():
            return [e["type"] for e in await app.db.gate_events.find(
                {"bridge": bridge, "seq": None}).sort("at", 1).to_list(None)]
        # The process stalled past its lease, nobody noticed: it takes the lease again.
        await app.redis.delete(f"gate:instance:{hub.instance}")
        await hub.wait(lambda: hub.lapses == 1 and hub.idle, timeout=HEARTBEAT)
        assert await app.redis.exists(f"gate:instance:{hub.instance}")
        assert await app.gate_presence.owner(bridge) == hub.instance
        assert await statuses() == ["online"]
        # This time a watcher took its bridge (declared offline): online again.
        async with app.redis.pipeline(transaction=True) as pipe:
            await pipe.delete(f"gate:instance:{hub.instance}", f"gate:presence:{bridge}").execute()
        await hub.wait(lambda: hub.lapses == 2 and hub.idle, timeout=HEARTBEAT)
        assert await app.gate_presence.owner(bridge) == hub.instance
        assert await statuses() == ["online", "online"]


async def test_an_instance_stalled_past_its_lease_does_not_declare_its_own_bridges_offline(app):
    async with watched_by_the_test(app, "d3") as (hub, c, bridge):
        # The loop stalled past the lease (renewals included) and, on waking, the watcher's
        # pass runs before the lease keeper's renewal: the lapsed holder is this live process.
        await app.redis.delete(f"gate:instance:{hub.instance}")
        hub.renewing_since = time.monotonic() - hub.options.lease
        await hub._watch()
        assert hub.declared_offline == 0
        assert await app.gate_presence.owner(bridge) == hub.instance
        assert not [a for a in await app.gate_alarms.alarms(c.id) if a["kind"] == "bridge_offline"]
        await hub.wait(lambda: hub.lapses == 1 and hub.idle, timeout=HEARTBEAT)  # the keeper
        assert await app.redis.exists(f"gate:instance:{hub.instance}")
