"""Scans arriving together cost the store about one read of each cached document and one
group commit of their access-log lines, not one of each per scan (counted by the store
commands the app's clients sent: xiaoqu_store_duration_seconds, not timed)."""

import asyncio

import pytest
from prometheus_client import REGISTRY

from models.access import Principal
from tests.builders import make_community

SCANS = 20


def store_commands(store: str, op: str) -> float:
    return REGISTRY.get_sample_value("xiaoqu_store_duration_seconds_count",
                                     {"store": store, "op": op}) or 0.0


@pytest.mark.asyncio
async def test_concurrent_scans_share_their_reads_and_one_group_commit(app):
    c = await make_community(app, "load")
    creds = await app.bridges.provision(c.id, c.gates["main"], "main gate")
    gate = await app.places.gate(c.id, creds["gate_id"])
    guard = Principal("staff", c.staff["security"], {c.id: frozenset({"security"})})
    codes = [(await app.passes.resident_code(guard, c.id))["token"] for _ in range(SCANS)]
    assert (await app.gate_access.check(codes.pop(), gate, "in", "gate")).allow  # Redis warm
    await asyncio.gather(*(app.redis.ping() for _ in codes))  # as many connections as scans
    # Every copy a scan reads has just expired, as it does every few seconds under traffic.
    app.passes.communities.clear()
    app.keys.forget(f"communities:{c.id}")  # the community's document, under the settings
    app.gate_modes.cache.clear()
    app.passes._ring_at = float("-inf")
    finds, inserts = store_commands("mongodb", "find"), store_commands("mongodb", "insert")

    answers = await asyncio.gather(*(
        app.gate_access.scan(gate, {"id": f"s{i}", "text": code, "direction": "in"}, 5.0)
        for i, code in enumerate(codes)))

    assert [frames[-1]["allow"] for frames in answers] == [True] * len(codes)
    # The community's settings, its modes and the key ring: read once each for all of them.
    assert store_commands("mongodb", "find") - finds == 3
    # Their lines: group commits (the first scan's alone, then those decided while it was in
    # flight, ...: 3 here), not an insert per scan.
    assert store_commands("mongodb", "insert") - inserts < len(codes) / 3
    assert await app.db.access_log.count_documents({"scan": {"$exists": True}}) == len(codes)
