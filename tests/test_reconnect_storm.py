"""A reconnect storm: every bridge of a hub that lost them all comes back at once. The hub
works on a bounded number of handshakes; the rest are told `busy` with a retry-after, and
come back then (plus jitter) instead of waiting out their handshake deadline."""

import logging
import time

import pytest

from server.gate_hub import Connection, GateHub, HubOptions
from tests.builders import make_community
from tests.gate_fixtures import start_sim_bridge

pytestmark = pytest.mark.asyncio

BRIDGES = 60
LIMIT = 5


async def provisioned_bridges(app, count: int) -> list[dict]:
    c = await make_community(app, "storm")
    creds = []
    for i in range(count):
        gate = await app.places.create_gate(c.id, f"s{i}", f"storm {i}", "pedestrian", [""])
        creds.append(await app.bridges.provision(c.id, str(gate["_id"]), c.staff["admin"]))
    return creds


def watch_handshakes(hub: GateHub) -> dict:
    """Spy on the hub's real handshake steps: the most connections between the start of
    their hello's handling and the end of their auth's, at once."""
    seen = {"now": set(), "most": 0}
    on_hello, on_auth = hub.on_hello, hub.on_auth

    async def hello(conn, event):
        seen["now"].add(conn)
        seen["most"] = max(seen["most"], len(seen["now"]))
        await on_hello(conn, event)

    async def auth(conn, event):
        try:
            await on_auth(conn, event)
        finally:
            seen["now"].discard(conn)
    hub.on_hello, hub.on_auth = hello, auth
    return seen


def count_calls(owner, name: str) -> dict:
    """Count the calls of the real `owner.name` (it still runs)."""
    count, method = {"calls": 0}, getattr(owner, name)

    async def counted(*args):
        count["calls"] += 1
        return await method(*args)
    setattr(owner, name, counted)
    return count


async def test_bridges_reconnecting_at_once_all_get_in_without_a_timeout(app, tmp_path, caplog):
    creds = await provisioned_bridges(app, BRIDGES)
    hub = GateHub(app, HubOptions(max_handshakes=LIMIT, busy_retry=0.2))
    await hub.start(0, "127.0.0.1")
    app.gate_hub = hub
    seen = watch_handshakes(hub)
    reads = count_calls(app.bridges, "credentials")  # the store reads, counted as they go by
    config_reads = count_calls(app.bridges, "community_config")
    caplog.set_level(logging.WARNING, logger="gate_bridge")
    bridges = [await start_sim_bridge(tmp_path, hub.port, c["bridge_id"], c["secret"],
                                      connect_timeout=5.0)
               for c in creds]
    try:
        for sessions in (1, 2):
            for b in bridges:
                await b.bridge.wait(lambda b=b: b.bridge.sessions == sessions, timeout=60)
            assert len(hub.connections) == BRIDGES
            if sessions == 1:
                first_reads = reads["calls"]
                for conn in list(hub.all):  # as if its process died: no bye, sockets reset
                    conn.transport.abort()
        ended = [r.getMessage() for r in caplog.records if "session ended" in r.getMessage()]
        assert len(ended) == BRIDGES, ended  # the abort's, and nothing else: no timeout
        assert all("connection_lost" in e or "ConnectionResetError" in e for e in ended), ended
        assert seen["most"] <= LIMIT, f"{seen['most']} handshakes at once"
        assert hub.busy_refused > 0
        assert sum(b.bridge.busy_refusals for b in bridges) == hub.busy_refused
        # The second storm opened no sealed key: every one came from the hub's copies; and
        # the community's config was read once, not once per bridge arriving together.
        assert first_reads == BRIDGES and reads["calls"] == first_reads
        assert config_reads["calls"] == 1
    finally:
        for bridge in bridges:
            await bridge.stop()
        await hub.stop()


async def test_the_hub_takes_more_at_once_while_handshakes_are_fast_and_fewer_when_not(app):
    """Slow handshakes (a slow store) would only queue there and miss the deadline together:
    the window starts small, grows while they are fast, halves when one is slow."""
    hub = GateHub(app, HubOptions(max_handshakes=16, auth_timeout=4.0))

    def handshake(took: float, welcomed: bool = True) -> None:
        conn = Connection(hub)
        if welcomed:
            conn.session.state = "ready"
        hub.handshaking[conn] = time.monotonic() - took
        hub.handshake_done(conn)
    assert hub.admitting() == 4
    for _ in range(20):
        handshake(0.1)
    assert hub.admitting() == 16  # never above the limit
    handshake(2.0)  # over a quarter of the deadline
    assert hub.admitting() == 8
    handshake(0.1, welcomed=False)  # a quick refusal (wrong key) says nothing of the store
    assert hub.admitting() == 8
    for _ in range(5):
        handshake(5.0, welcomed=False)  # timed out
    assert hub.admitting() == 4  # a few at once always


async def test_a_re_keyed_bridge_is_read_again_on_every_process(app, tmp_path):
    """A hub's copy of a key is dropped by the re-key's announcement, on every hub: the old
    secret is refused and the new one let in there at once, not once the copy expires."""
    [old] = await provisioned_bridges(app, 1)
    bridge_id = old["bridge_id"]
    hubs = [GateHub(app, HubOptions()) for _ in range(2)]
    for hub in hubs:
        await hub.start(0, "127.0.0.1")
    app.gate_hub = hubs[0]
    other = hubs[1]
    bridge = await start_sim_bridge(tmp_path, other.port, bridge_id, old["secret"])
    try:
        await other.wait(lambda: bridge_id in other.connections)
        await bridge.stop()
        await other.wait(lambda: bridge_id not in other.connections)
        assert bridge_id in other.credentials  # the copy the next handshake there would use
        community = str(other.credentials[bridge_id][1][2]["community_id"])
        new = await app.bridges.provision(community, old["gate_id"], "staff")
        bridge = await start_sim_bridge(tmp_path, other.port, bridge_id, old["secret"])
        await bridge.bridge.wait(lambda: bridge.bridge.failures >= 1)
        assert "server_auth_failed" in bridge.bridge.last_failure
        assert bridge.bridge.sessions == 0
        await bridge.stop()
        bridge = await start_sim_bridge(tmp_path, other.port, bridge_id, new["secret"])
        await other.wait(lambda: bridge_id in other.connections)
    finally:
        await bridge.stop()
        for hub in hubs:
            await hub.stop()
