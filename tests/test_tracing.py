"""One trace id for a remote open: from the HTTP request's traceparent, through Redis to the
hub process holding the bridge, onto the open frame, and into the request's log line and
the command's access-log line."""

import asyncio
import secrets

import pytest

from gate_bridge import protocol as p
from tests.builders import make_community
from tests.gate_fixtures import *  # noqa: F403 (fixtures)
from tests.gate_fixtures import OPEN_WAIT, HubProcess, RawPeer, start_sim_bridge

pytestmark = pytest.mark.asyncio


def traceparent() -> tuple[str, str]:
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


async def test_a_traceparent_reaches_the_bridge_through_another_process_and_the_logs(
        app, hub, api_client, settings, logged):
    c = await make_community(app, "tr1")
    creds = await app.bridges.provision(c.id, c.gates["main"], c.staff["admin"])
    # The bridge's session is in another process (on the default heartbeat: this peer is
    # silent between its frames).
    holder = HubProcess(settings, heartbeat=20.0)
    peer = None
    try:
        peer = await RawPeer.connect(await holder.ready())
        assert (await peer.handshake(creds["bridge_id"], creds["secret"]))[1]["op"] == p.WELCOME
        trace_id, parent = traceparent()
        opening = asyncio.create_task(api_client.post(
            f"/api/communities/{c.id}/gates/{c.gates['main']}/open",
            {"reason": "courier", "wait": OPEN_WAIT},
            token=c.tokens["security"], headers={"traceparent": parent}))
        command = await peer.expect(p.OPEN)
        assert p.trace_id(command["trace"]) == trace_id
        for level in (p.RECEIVED, p.ACTUATED, p.OPENED):
            peer.send(p.message(p.ACK, id=command["id"], level=level))
        reply = await opening
    finally:
        if peer is not None:
            peer.close()
        holder.kill()
    assert reply.status == 200 and reply.body["level"] == "opened"
    # The request id is the trace id; the request's log line and the open's outcome carry it.
    assert reply.headers["X-Request-Id"] == trace_id
    [request] = logged.lines(logger="xiaoqu.access", handler="OpenHandler")
    assert (request["trace_id"], request["request_id"], request["status"]) == (trace_id, trace_id, 200)
    [outcome] = logged.lines(logger="xiaoqu.gate_access", command_id=command["id"])
    assert (outcome["trace_id"], outcome["level"], outcome["reached"]) == (trace_id, "INFO", "opened")
    [line] = (await app.access_log.query(c.id, gate_id=c.gates["main"]))["items"]
    assert (line["command_id"], line["trace_id"]) == (command["id"], trace_id)
    await app.outbox.settled()  # the audit record follows the answer
    audit = await app.db.gate_commands.find_one({"_id": command["id"]})
    assert audit["trace_id"] == trace_id


async def test_a_request_that_continues_no_trace_sends_its_own_id_to_the_bridge(app, hub,
                                                                               api_client):
    """No traceparent and no SDK: the request has only its id (no OpenTelemetry context), and
    that id is the trace the open frame carries."""
    c = await make_community(app, "tr3")
    creds = await app.bridges.provision(c.id, c.gates["main"], c.staff["admin"])
    peer = await RawPeer.connect(hub.port)
    try:
        assert (await peer.handshake(creds["bridge_id"], creds["secret"]))[1]["op"] == p.WELCOME
        opening = asyncio.create_task(api_client.post(
            f"/api/communities/{c.id}/gates/{c.gates['main']}/open",
            {"reason": "courier", "wait": OPEN_WAIT}, token=c.tokens["security"]))
        command = await peer.expect(p.OPEN)
        for level in (p.RECEIVED, p.ACTUATED, p.OPENED):
            peer.send(p.message(p.ACK, id=command["id"], level=level))
        reply = await opening
    finally:
        peer.close()
    assert reply.status == 200
    assert p.trace_id(command["trace"]) == reply.headers["X-Request-Id"]
    assert len(reply.headers["X-Request-Id"]) == 32


async def test_the_bridge_and_the_hub_log_the_open_under_its_trace(app, hub, api_client,
                                                                    tmp_path, logged):
    c = await make_community(app, "tr2")
    creds = await app.bridges.provision(c.id, c.gates["main"], c.staff["admin"])
    sim = await start_sim_bridge(tmp_path, hub.port, creds["bridge_id"], creds["secret"])
    try:
        await sim.bridge.wait(lambda: sim.bridge.sessions == 1)
        trace_id, parent = traceparent()
        reply = await api_client.post(f"/api/communities/{c.id}/gates/{c.gates['main']}/open",
                                      {"reason": "courier", "wait": OPEN_WAIT},
                                      token=c.tokens["security"],
                                      headers={"traceparent": parent})
        assert reply.body["level"] == "opened"
    finally:
        await sim.stop()
    traced = {(line["logger"], line["message"]) for line in logged.lines(trace_id=trace_id)}
    command = reply.body["command_id"]
    assert {("xiaoqu.gate_hub", f"gate hub: open {command} sent to bridge {creds['bridge_id']}"),
            ("gate_bridge", f"{creds['bridge_id']}: open {command} arrived"),
            ("gate_bridge", f"{creds['bridge_id']}: open {command} opened"),
            ("xiaoqu.gate_access", f"gate access: open {command} ended opened")} <= traced


async def test_without_a_traceparent_each_request_gets_a_fresh_trace_id(api_client, logged):
    first, second = [(await api_client.get("/healthz")).headers["X-Request-Id"] for _ in range(2)]
    assert first != second and len(first) == 32
    assert [line["trace_id"] for line in logged.lines(logger="xiaoqu.access")] == [first, second]
