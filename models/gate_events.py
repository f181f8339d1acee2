"""Events bridges report (door, tamper, power, offline decisions, ...) and bridge online/offline
transitions, stored as they came.

Stored with `_id = "<bridge>:<seq>"`, so a replay after a reconnect is an
insert-or-ignore and only new events have side effects (the gate service,
models/gate_access.py, raises their alarms and access-log lines).
"""

import uuid

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel

from models.common import from_timestamp, insert_new, object_id

INDEXES = {
    "gate_events": [IndexModel([("community_id", ASCENDING), ("gate_id", ASCENDING),
                                ("at", DESCENDING)])],
}


class GateEventManager:
    def __init__(self, db, clock, notifier=None):
        self.db = db
        self.clock = clock
        self.notifier = notifier  # staff feed: gate.online / gate.offline

    def event_docs(self, bridge: dict, items: list[dict]) -> list[dict]:
        now = self.clock.now()
        return [{"_id": f"{bridge['_id']}:{item['seq']}", "bridge": bridge["_id"],
                 "community_id": bridge["community_id"], "gate_id": bridge["gate_id"],
                 "seq": item["seq"], "type": item["type"], "at": from_timestamp(item["at"]),
                 "received_at": now,
                 "data": {k: v for k, v in item.items() if k not in ("seq", "type", "at")}}
                for item in items]

    async def store_events(self, bridge: dict, items: list[dict]) -> list[dict]:
        """Insert-or-ignore a batch; returns the docs that were new (for side effects)."""
        return await insert_new(self.db.gate_events, self.event_docs(bridge, items))

    async def store_status(self, bridge: dict, online: bool, key: str | None = None):
        """An online/offline transition; returns its time. With `key` (what caused it, e.g.
        the death of the hub holding the bridge) it is stored once however often told."""
        now = self.clock.now()
        await insert_new(self.db.gate_events, [{
            "_id": f"{bridge['_id']}:status:{key or uuid.uuid4().hex}", "bridge": bridge["_id"],
            "community_id": bridge["community_id"], "gate_id": bridge["gate_id"], "seq": None,
            "type": "online" if online else "offline", "at": now, "received_at": now,
            "data": {}}])
        if self.notifier is not None and bridge["gate_id"] is not None:
            await self.notifier.community_event(
                str(bridge["community_id"]), "gate.online" if online else "gate.offline",
                gate={"id": str(bridge["gate_id"]), "online": online})
        return now

    async def events(self, community_id: str, gate_id: str, limit: int = 100) -> list[dict]:
        return await self.db.gate_events.find(
            {"community_id": ObjectId(community_id), "gate_id": object_id(gate_id, "gate")}
        ).sort("at", DESCENDING).limit(limit).to_list(None)
