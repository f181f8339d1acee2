"""An entry's audit record and its use: durable before the entry is acknowledged, once per scan
however the scan is answered (online, offline, both), and kept across a Redis that forgets
(issue 12 §1.2, §1.3, §1.4, §1.8). Real stores, restarted or stopped for real."""

import asyncio
from datetime import timedelta

import pytest
from bson import ObjectId
from pymongo.errors import PyMongoError

from gate_bridge import protocol as p
from models.gate_access import scan_line_id
from tests.builders import make_community, make_resident
from tests.gate_fixtures import *  # noqa: F403 (fixtures)

pytestmark = pytest.mark.asyncio


async def connected(peers, app, c, hub):
    creds = await app.bridges.provision(c.id, c.gates["main"], c.staff["admin"])
    peer = await peers()
    _, welcome = await peer.handshake(creds["bridge_id"], creds["secret"])
    assert welcome["op"] == p.WELCOME, welcome
    config = await peer.expect(p.CONFIG)
    peer.send(p.message(p.CONFIG_ACK, version=config["version"]))
    await hub.wait(lambda: hub.idle)  # the session's start-up done (it uses Redis too)
    return peer, creds


async def resident_code(app, c, name) -> tuple[str, str]:
    rid, token = await make_resident(app, c, name)
    principal = await app.auth.principal(token)
    return rid, (await app.passes.resident_code(principal, c.id))["token"]


async def visitor_pass(app, c, host: str, entries: int) -> tuple[dict, str]:
    _, token = await make_resident(app, c, host)
    principal = await app.auth.principal(token)
    now = app.clock.now()
    doc = await app.passes.invite(principal, c.id, name="visitor", phone=None, purpose="visit",
                                  valid_from=now, valid_to=now + timedelta(days=1),
                                  max_entries=entries, gates=["main"], room_path=None)
    return doc, (await app.passes.current_token(doc))["token"]


def offline_decision(app, seq: int, code: str, scan: str | None, allow=True) -> dict:
    item = {"seq": seq, "type": "offline_decision", "at": app.clock.time(), "text": code,
            "direction": "in", "allow": allow, "reason": "ok" if allow else "replayed"}
    return {**item, "scan": scan} if scan else item


async def scan(peer, scan_id: str, code: str) -> dict:
    peer.send(p.message(p.SCAN, id=scan_id, text=code, direction="in"))
    return await peer.expect(p.SCAN_RESULT, id=scan_id)


async def lines(app, c) -> list[dict]:
    return (await app.access_log.query(c.id, gate_id=c.gates["main"], limit=200))["items"]


async def scanner_check(app, c, code) -> str:
    gate = await app.places.gate(c.id, c.gates["main"])
    return (await app.gate_access.check(code, gate, "in", "scanner")).reason


# -- §1.4: one scan, one line, one use -------------------------------------------------------------

async def test_a_scan_answered_online_and_decided_offline_is_logged_and_counted_once(
        app, hub, peers):
    c = await make_community(app, "once")
    doc, pass_code = await visitor_pass(app, c, "host", entries=3)
    rid, code = await resident_code(app, c, "zhang")
    peer, creds = await connected(peers, app, c, hub)
    # The server answered both scans, but too late: the bridge had decided offline already
    # and replays its decisions, naming the same scans.
    assert (await scan(peer, "s1", pass_code))["allow"]
    assert (await scan(peer, "s2", code))["allow"]
    peer.send(p.message(p.EVENTS, items=[offline_decision(app, 1, pass_code, "s1"),
                                         offline_decision(app, 2, code, "s2")]))
    assert (await peer.expect(p.EVENTS_ACK))["upto"] == 2
    await hub.wait(lambda: hub.idle)
    logged = await lines(app, c)
    assert sorted((e["scan"], e["source"], e["result"], e.get("flag")) for e in logged) == [
        ("s1", "offline", "allow", None), ("s2", "offline", "allow", None)]
    assert await app.passes.entries_used(doc) == 1  # one visit, one entry
    assert not [a for a in await app.gate_alarms.alarms(c.id) if a["kind"] == "double_use"]
    assert await scanner_check(app, c, code) == "replayed"  # the code is used, once


async def test_an_offline_allow_of_a_scan_the_server_refused_takes_the_use_then(app, hub, peers):
    c = await make_community(app, "late")
    doc, pass_code = await visitor_pass(app, c, "host", entries=1)
    peer, creds = await connected(peers, app, c, hub)
    assert (await scan(peer, "s1", pass_code))["allow"]
    # s2 was refused online (no entry left) but the bridge, offline by then, let them in.
    assert (await scan(peer, "s2", pass_code))["reason"] == "used_up"
    peer.send(p.message(p.EVENTS, items=[offline_decision(app, 1, pass_code, "s2")]))
    await peer.expect(p.EVENTS_ACK)
    await hub.wait(lambda: hub.idle)
    by_scan = {e["scan"]: e for e in await lines(app, c)}
    assert (by_scan["s2"]["source"], by_scan["s2"]["result"], by_scan["s2"]["flag"]) == (
        "offline", "deny", "double_use")
    assert len(by_scan) == 2 and await app.passes.entries_used(doc) == 1


async def test_a_bridge_without_scan_ids_is_reconciled_once_per_event(app, hub, peers):
    c = await make_community(app, "old")
    doc, pass_code = await visitor_pass(app, c, "host", entries=3)
    peer, creds = await connected(peers, app, c, hub)
    item = offline_decision(app, 1, pass_code, scan=None)
    for _ in range(2):  # resent: the first ack was lost
        peer.send(p.message(p.EVENTS, items=[item], after=0))
        await peer.expect(p.EVENTS_ACK)
        peer.close()
        peer = await peers()
        await peer.handshake(creds["bridge_id"], creds["secret"])
    await hub.wait(lambda: hub.idle)
    [line] = await lines(app, c)
    assert (line["source"], line["result"], "scan" in line) == ("offline", "allow", False)
    assert await app.passes.entries_used(doc) == 1


# -- §1.2: no acknowledgement without the line -------------------------------------------------------

async def test_a_scan_whose_line_cannot_be_written_is_not_answered(app, hub, peers):
    c = await make_community(app, "nolog")
    rid, code = await resident_code(app, c, "wang")
    peer, creds = await connected(peers, app, c, hub)
    # The store refuses this resident's lines (a validator): everything else works.
    await app.db.access_log.drop()
    await app.db.create_collection("access_log", validator={"subject": {"$ne": rid}})
    peer.send(p.message(p.SCAN, id="s1", text=code, direction="in"))
    frames = [await peer.recv()]
    while frames[-1]["op"] != p.ERROR:
        frames.append(await peer.recv())
    assert (frames[-1]["code"], frames[-1]["ref_op"]) == ("scan_failed", p.SCAN)
    # No open went out before the error: the door stays shut, the bridge decides offline.
    assert not [f for f in frames if f["op"] in (p.OPEN, p.SCAN_RESULT)], frames
    peer.send(p.message(p.SCAN, id="s2", text="not a code", direction="in"))
    assert (await peer.expect(p.SCAN_RESULT))["reason"] == "malformed"
    assert [line["scan"] for line in await lines(app, c)] == ["s2"]
    # The use was taken (Redis) and waits for the bridge's offline decision of s1, logged
    # under that scan: it will count as the same use, not as a second one.
    assert await app.redis.get(f"once:{creds['bridge_id']}:scan:s1") == "1"


async def test_a_line_the_store_refuses_fails_alone_in_its_group_commit(app):
    c = await make_community(app, "batch")
    await app.db.access_log.drop()
    await app.db.create_collection("access_log", validator={"subject": {"$ne": "refused"}})

    def line(subject: str) -> dict:
        return {"community_id": ObjectId(c.id), "gate_id": ObjectId(c.gates["main"]),
                "direction": "in", "at": app.clock.now(), "result": "allow", "reason": "ok",
                "source": "scanner", "kind": "resident", "pass_id": None, "subject": subject}
    # Recorded together: one insert for both.
    results = await asyncio.gather(app.access_log.record(line("fine")),
                                   app.access_log.record(line("refused")),
                                   return_exceptions=True)
    assert results[0] is None and isinstance(results[1], PyMongoError), results
    assert [e["subject"] for e in await lines(app, c)] == ["fine"]


# -- §1.3 and §1.8: Redis down, Redis restarted without its data ------------------------------------

@pytest.fixture
def redis_url(restartable_redis):
    return restartable_redis.url


async def test_use_counts_survive_a_redis_that_restarts_empty(app, hub, peers, api_client,
                                                              restartable_redis):
    c = await make_community(app, "amnesia")
    doc, pass_code = await visitor_pass(app, c, "host", entries=3)
    _, code = await resident_code(app, c, "zhao")
    peer, creds = await connected(peers, app, c, hub)
    assert (await scan(peer, "s1", code))["allow"]
    assert (await scan(peer, "s2", pass_code))["allow"]
    assert await scanner_check(app, c, pass_code) == "ok"
    peer.close()
    await hub.wait(lambda: not hub.connections)
    restartable_redis.restart()

    assert await scanner_check(app, c, code) == "replayed"  # single-use: still used
    assert await app.passes.entries_used(doc) == 2  # the entries taken are still taken
    assert await scanner_check(app, c, pass_code) == "ok"
    assert await scanner_check(app, c, pass_code) == "used_up"
    shown = await api_client.get(f"/api/communities/{c.id}/passes/{doc['_id']}",
                                 token=c.tokens["admin"])
    assert (shown.body["entries_used"], shown.body["state"]) == (3, "used_up")
    # A bridge connecting now is told the code is used (refused offline too).
    peer = await peers()
    await peer.handshake(creds["bridge_id"], creds["secret"])
    config = await peer.expect(p.CONFIG)
    used = {nonce for nonce, _ in config["nonces"]}
    line = await app.access_log.line(scan_line_id(creds["bridge_id"], "s1"))
    assert line["use"]["claim"] in used


async def test_an_offline_decision_replayed_across_a_redis_outage_is_logged_and_counted_once(
        app, hub, peers, restartable_redis):
    c = await make_community(app, "outage")
    doc, pass_code = await visitor_pass(app, c, "host", entries=3)
    peer, creds = await connected(peers, app, c, hub)
    items = [offline_decision(app, 1, pass_code, "s1")]
    restartable_redis.stop()
    peer.send(p.message(p.EVENTS, items=items, after=0))
    refused = await peer.expect(p.ERROR)  # not acknowledged: the bridge keeps it, resends
    assert (refused["code"], refused["upto"]) == (p.EVENTS_NOT_STORED, 0)
    assert not await lines(app, c)
    restartable_redis.start()  # back, empty
    for _ in range(2):  # resent, and once more (an ack lost)
        peer.send(p.message(p.EVENTS, items=items, after=0))
        assert (await peer.expect(p.EVENTS_ACK))["upto"] == 1
    await hub.wait(lambda: hub.idle)
    [line] = await lines(app, c)
    assert (line["scan"], line["source"], line["result"]) == ("s1", "offline", "allow")
    assert await app.passes.entries_used(doc) == 1


async def test_a_redis_that_forgets_again_while_its_counts_are_rebuilt_counts_nothing_twice(
        app, restartable_redis):
    c = await make_community(app, "twice")
    _, code = await resident_code(app, c, "qian")
    assert await scanner_check(app, c, code) == "ok"
    restartable_redis.restart()
    # Redis restarts again just after the counts were put back, before the use that needed
    # them is counted: that use finds them missing a second time.
    restartable_redis.restart_after_rebuild(app.passes.uses)
    assert await scanner_check(app, c, code) == "replayed"  # single-use: still used
    assert await scanner_check(app, c, code) == "replayed"
    uses = [d["use"]["count"] async for d in app.db.access_log.find({"use": {"$exists": True}})]
    assert uses == [1]
