"""What the guard console (the admin view's Gates screen) relies on: gate status and each
remote open's levels on the staff feed as they arrive, alarms dispatched to a person, and a
feed that keeps alarms from those who may not read them."""

import asyncio
import json

import pytest
from bson import ObjectId
from tornado.websocket import websocket_connect

from tests.builders import change_directly, make_community
from tests.gate_fixtures import *  # noqa: F403 (fixtures)
from tests.gate_fixtures import start_sim_bridge

pytestmark = pytest.mark.asyncio


async def feed_events(app, c, kind: str) -> list[dict]:
    return [e for e in await app.notifier.feed_since(c.id, "0-0") if e["type"] == kind]


async def test_remote_open_levels_reach_the_feed_in_order(app, hub, api_client, tmp_path):
    c = await make_community(app, "gc1")
    creds = await app.bridges.provision(c.id, c.gates["main"], c.staff["admin"])
    sim = await start_sim_bridge(tmp_path, hub.port, creds["bridge_id"], creds["secret"])
    try:
        await sim.bridge.wait(lambda: sim.bridge.sessions == 1)
        reply = await api_client.post(f"/api/communities/{c.id}/gates/{c.gates['main']}/open",
                                      {"reason": "visitor without a code"},
                                      token=c.tokens["security"])
        assert reply.status == 200 and reply.body["level"] == "opened", reply.body
    finally:
        await sim.stop()
    commands = [e["command"] for e in await feed_events(app, c, "gate.command")]
    assert [x["level"] for x in commands] == ["sent", "received", "actuated", "opened"]
    assert {x["id"] for x in commands} == {reply.body["command_id"]}
    assert commands[0]["by"] == f"staff:{c.staff['security']}"
    assert commands[0]["gate_id"] == c.gates["main"]
    statuses = [e["gate"] for e in await feed_events(app, c, "gate.status")]
    assert statuses[0] == {"id": c.gates["main"], "bridge_id": creds["bridge_id"], "online": True}


async def test_an_offline_gate_says_so_on_the_feed(app, hub, api_client):
    c = await make_community(app, "gc2")
    await app.bridges.provision(c.id, c.gates["main"], c.staff["admin"])
    reply = await api_client.post(f"/api/communities/{c.id}/gates/{c.gates['main']}/open",
                                  {"reason": "test"}, token=c.tokens["manager"])
    assert reply.status == 504 and reply.error["code"] == "gate_offline"
    levels = [e["command"]["level"] for e in await feed_events(app, c, "gate.command")]
    assert levels == ["sent", "gate_offline"]


async def test_stopping_a_bridge_is_announced_with_its_alarm(app, hub, tmp_path):
    c = await make_community(app, "gc3")
    creds = await app.bridges.provision(c.id, c.gates["main"], c.staff["admin"])
    sim = await start_sim_bridge(tmp_path, hub.port, creds["bridge_id"], creds["secret"])
    await sim.bridge.wait(lambda: sim.bridge.sessions == 1)
    await hub.wait(lambda: hub.idle)  # its coming online fully handled
    await sim.stop()
    await hub.wait(lambda: creds["bridge_id"] not in hub.connections and hub.idle)
    assert [e["gate"]["online"] for e in await feed_events(app, c, "gate.status")] == [True, False]
    [raised] = await feed_events(app, c, "alarm.raised")
    assert raised["alarm"]["kind"] == "bridge_offline" and raised["permission"] == "alarms.read"


async def raise_alarm(app, c, alarm_id="a1"):
    await app.gate_alarms.raise_alarm({"community_id": ObjectId(c.id),
                                       "gate_id": ObjectId(c.gates["main"]), "_id": None},
                                      "door_forced", alarm_id)
    return f"/api/communities/{c.id}/alarms/{alarm_id}"


async def test_an_alarm_is_dispatched_to_someone_who_handles_alarms(app, api_client):
    c = await make_community(app, "gc4")
    await change_directly(app, "staff", {"_id": ObjectId(c.staff["security"])},
                          {"$set": {"name": "巡逻王"}})
    path = await raise_alarm(app, c)
    people = await api_client.get(f"/api/communities/{c.id}/alarms/assignees",
                                  token=c.tokens["security_lead"])
    assert people.status == 200
    assert {p["name"] for p in people.body} == {"admin", "manager", "巡逻王", "security_lead"}
    assert (await api_client.get(f"/api/communities/{c.id}/alarms/assignees",
                                 token=c.tokens["maintenance"])).status == 403

    refused = await api_client.post(path + "/dispatch", {
        "assignee_id": c.staff["maintenance"], "note": "go"}, token=c.tokens["security_lead"])
    assert refused.status == 400 and "assignee_id" in refused.error["fields"]
    nobody = await api_client.post(path + "/dispatch", {
        "assignee_id": str(ObjectId()), "note": "go"}, token=c.tokens["security_lead"])
    assert nobody.status == 404
    assert (await api_client.post(path + "/dispatch", {
        "assignee_id": c.staff["security"], "note": "go"},
        token=c.tokens["maintenance"])).status == 403

    sent = await api_client.post(path + "/dispatch", {
        "assignee_id": c.staff["security"], "note": "去北门看看"}, token=c.tokens["security_lead"])
    assert sent.status == 200, sent.body
    assert sent.body["state"] == "acknowledged"
    assert sent.body["assignee"] == {"id": c.staff["security"], "name": "巡逻王"}
    assert sent.body["history"][-1]["to"] == sent.body["assignee"]
    closed = await api_client.post(path + "/close", {"note": "门已关好"}, token=c.tokens["security"])
    assert closed.status == 200 and closed.body["state"] == "closed"
    again = await api_client.post(path + "/dispatch", {
        "assignee_id": c.staff["security"], "note": "again"}, token=c.tokens["manager"])
    assert again.status == 409
    changes = [e["type"] for e in await app.notifier.feed_since(c.id, "0-0")]
    assert changes == ["alarm.raised", "alarm.dispatch", "alarm.close"]


async def test_alarm_events_reach_only_those_who_may_read_alarms(app, base_url):
    c = await make_community(app, "gc5")
    url = base_url.replace("http://", "ws://") + f"/api/communities/{c.id}/feed"
    sockets = {}
    for role in ("security", "maintenance"):
        ws = await websocket_connect(f"{url}?token={c.tokens[role]}&device={role}")
        assert json.loads(await asyncio.wait_for(ws.read_message(), 30))["type"] == "feed.ready"
        sockets[role] = ws
    try:
        await raise_alarm(app, c)
        await app.notifier.community_event(c.id, "gate.status", permission="gates.read",
                                           gate={"id": c.gates["main"], "online": False})

        async def seen(role):
            return json.loads(await asyncio.wait_for(sockets[role].read_message(), 30))["type"]

        assert [await seen("security"), await seen("security")] == ["alarm.raised", "gate.status"]
        assert await seen("maintenance") == "gate.status"  # the alarm never reached it
    finally:
        for ws in sockets.values():
            ws.close()
