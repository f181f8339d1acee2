"""/metrics after a scripted day at the gate: every counter moved by exactly what happened."""

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tornado.websocket import websocket_connect

from gate_bridge import protocol as p
from tests.gate_fixtures import *  # noqa: F403 (fixtures)
from tests.gate_fixtures import OPEN_WAIT, start_sim_bridge
from tests.tickets_support import Api, make_world

async def scrape(api_client) -> dict:
    """{(sample name, frozenset of label pairs): value}"""
    reply = await api_client.get("/metrics")
    assert reply.status == 200
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(reply.body) for s in family.samples}


def moved(before: dict, after: dict, name: str, **labels) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0) - before.get(key, 0)


def total(samples: dict, name: str, **labels) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items()
               if n == name and set(labels.items()) <= ls)


async def wait_for(predicate, timeout: float = 30.0) -> None:
    """Poll a condition that only an outside process (the server's socket) makes true."""
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_counters_move_by_exactly_the_scans_opens_alarms_and_tickets(
        app, hub, api_client, base_url, tmp_path):
    world = await make_world(app, "m1")
    c = world.c
    cid = c.id
    creds = await app.bridges.provision(cid, c.gates["main"], c.staff["admin"])
    # The bridge waits long enough for the server's answer on a loaded machine: every scan
    # here is decided online (an offline decision would be counted as one, correctly).
    reply = await api_client.patch(f"/api/communities/{cid}/gates/{c.gates['main']}",
                                   {"rules": {"budget_ms": 5000}}, token=c.tokens["admin"])
    assert reply.status == 200, reply.body
    code = (await app.passes.resident_code(await app.auth.principal(world.tokens["ann"]), cid))[
        "token"]
    before = await scrape(api_client)

    sim = await start_sim_bridge(tmp_path, hub.port, creds["bridge_id"], creds["secret"],
                                 decision_budget=3.0)
    try:
        await sim.bridge.wait(lambda: sim.bridge.sessions == 1)
        closed = []  # the door's closings: each opening below is its own
        sim.door.on_change(lambda is_open: is_open or closed.append(True))
        connected = await scrape(api_client)
        assert connected[("xiaoqu_gate_bridges_connected", frozenset({("community", cid)}))] == 1
        # Scans: one allowed, its replay refused, one not a code at all.
        assert (await sim.bridge.handle_scan(code))["allow"]
        assert (await sim.bridge.handle_scan(code))["reason"] == "replayed"
        assert (await sim.bridge.handle_scan("NOT-A-CODE"))["reason"] == "malformed"
        await sim.bridge.wait(lambda: closed)
        # A remote open, then a tamper alarm from the box.
        reply = await api_client.post(f"/api/communities/{cid}/gates/{c.gates['main']}/open",
                                      {"reason": "courier", "wait": OPEN_WAIT},
                                      token=c.tokens["security"])
        assert reply.body["level"] == "opened"
        seq = sim.bridge.record("tamper")
        await sim.bridge.wait(lambda: sim.bridge.store.acked_seq >= seq)
        await hub.wait(lambda: hub.idle)
    finally:
        await sim.stop()
    await hub.wait(lambda: not hub.connections and hub.idle)

    # A ticket reported, then its clock past the warning and the breach.
    t = Api(api_client, world)
    tid = (await t.report(category="gas_leak")).body["id"]  # emergency: on site within 5 min
    await t.through(tid, "assign")
    assert await app.sla_watcher.run_once(app.clock.now() + timedelta(minutes=4)) == 1
    assert await app.sla_watcher.run_once(app.clock.now() + timedelta(minutes=5)) == 1

    # A staff member watching the live feed.
    url = base_url.replace("http://", "ws://") + f"/api/communities/{cid}/feed"
    ws = await websocket_connect(f"{url}?token={c.tokens['manager']}&device=m")
    assert json.loads(await ws.read_message())["type"] == "feed.ready"
    watching = await scrape(api_client)
    assert moved(before, watching, "xiaoqu_feed_clients") == 1
    ws.close()

    async def feed_left():
        return moved(before, await scrape(api_client), "xiaoqu_feed_clients") == 0
    await wait_for(feed_left)
    after = await scrape(api_client)

    def gate(source, result, reason):
        return moved(before, after, "xiaoqu_gate_decisions_total", source=source, result=result,
                     reason=reason)
    assert (gate("gate", "allow", "ok"), gate("gate", "deny", "replayed"),
            gate("gate", "deny", "malformed"), gate("remote", "allow", "ok")) == (1, 1, 1, 1)
    assert total(after, "xiaoqu_gate_decisions_total") - total(
        before, "xiaoqu_gate_decisions_total") == 4
    assert moved(before, after, "xiaoqu_gate_decision_seconds_count", source="gate") == 3
    assert moved(before, after, "xiaoqu_gate_commands_total", level="opened") == 1
    assert total(after, "xiaoqu_gate_commands_total") - total(
        before, "xiaoqu_gate_commands_total") == 1
    assert moved(before, after, "xiaoqu_gate_command_seconds_count", level="opened") == 1
    assert after[("xiaoqu_gate_bridges_connected", frozenset({("community", cid)}))] == 0

    # Events: exactly what the store holds from the bridge (its online/offline transitions
    # are the hub's, not ingested), none of them twice.
    stored = Counter(e["type"] for e in await app.db.gate_events.find(
        {"bridge": creds["bridge_id"], "seq": {"$ne": None}}).to_list(None))
    assert stored["tamper"] == 1 and stored["door_opened"] == 2  # the scan's and the open's
    assert {kind: moved(before, after, "xiaoqu_gate_events_total", type=kind)
            for kind in stored} == dict(stored)
    assert moved(before, after, "xiaoqu_gate_events_duplicate_total") == 0

    # Alarms: the tamper, and the bridge going offline when the box stopped.
    alarms = Counter(a["kind"] for a in await app.gate_alarms.alarms(cid))
    assert alarms == {"tamper": 1, "bridge_offline": 1}
    for kind, count in alarms.items():
        assert moved(before, after, "xiaoqu_gate_alarms_raised_total", kind=kind) == count
        assert after[("xiaoqu_gate_alarms_open", frozenset({("kind", kind)}))] == count
    assert after[("xiaoqu_gate_alarms_open", frozenset({("kind", "door_forced")}))] == 0

    assert moved(before, after, "xiaoqu_sla_escalations_total", level="near_breach",
                 clock="on_site") == 1
    assert moved(before, after, "xiaoqu_sla_escalations_total", level="breach",
                 clock="on_site") == 1
    # Every event on the community's staff feed was counted as sent, once.
    feed_events = await app.redis.xlen(f"feed:{cid}")
    assert moved(before, after, "xiaoqu_notifications_total", channel="staff_feed",
                 outcome="sent") == feed_events
    assert moved(before, after, "xiaoqu_request_duration_seconds_count",
                 handler="OpenHandler", method="POST", status="200") == 1

    # The stores answered, were timed, and nothing failed.
    assert total(after, "xiaoqu_store_duration_seconds_count", store="mongodb") > total(
        before, "xiaoqu_store_duration_seconds_count", store="mongodb")
    assert moved(before, after, "xiaoqu_store_duration_seconds_count", store="redis",
                 op="xadd") == feed_events
    assert total(after, "xiaoqu_store_errors_total") == total(before, "xiaoqu_store_errors_total")


@pytest.mark.asyncio
async def test_events_sent_again_are_counted_as_duplicates(app, hub, peers, api_client):
    world = await make_world(app, "m2")
    creds = await app.bridges.provision(world.c.id, world.c.gates["main"],
                                        world.c.staff["admin"])
    items = [{"seq": 1, "type": "door_opened", "at": 1.0}, {"seq": 2, "type": "door_closed",
                                                             "at": 2.0}]
    before = await scrape(api_client)
    # The second session sends the batch again (its ack was lost: the store has them), and
    # once more before that ack arrives (the hub knows them stored).
    for session in range(2):
        peer = await peers()
        await peer.handshake(creds["bridge_id"], creds["secret"])
        for _ in range(session + 1):
            peer.send(p.message(p.EVENTS, items=items, after=0))
            await peer.expect(p.EVENTS_ACK)
        peer.close()
    after = await scrape(api_client)
    assert moved(before, after, "xiaoqu_gate_events_total", type="door_opened") == 1
    assert moved(before, after, "xiaoqu_gate_events_duplicate_total") == 4


def test_processes_sum_their_metrics_in_multiprocess_mode(tmp_path):
    """Two processes count, a third serves the scrape: it sees both (PROMETHEUS_MULTIPROC_DIR)."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    count = ("from server import metrics; metrics.DECISIONS.labels('gate', 'allow', 'ok').inc(2);"
             "metrics.BRIDGES_CONNECTED.labels('c1').inc()")
    for _ in range(2):
        subprocess.run([sys.executable, "-c", count], env=env, check=True, timeout=60)
    scrape_text = subprocess.run(
        [sys.executable, "-c", "from server import metrics; print(metrics.exposition().decode())"],
        env=env, check=True, timeout=60, capture_output=True, text=True).stdout
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for f in text_string_to_metric_families(scrape_text) for s in f.samples}
    assert samples[("xiaoqu_gate_decisions_total", frozenset(
        {("source", "gate"), ("result", "allow"), ("reason", "ok")}))] == 4
    # livesum: the processes' own gauges (none called process_exited, as none served)
    assert samples[("xiaoqu_gate_bridges_connected", frozenset({("community", "c1")}))] == 2
