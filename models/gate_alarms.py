"""Alarms at gates: forced or held doors, tamper, power, offline bridges, clock drift, invalid
offline claims, short-code guessing, emergency mode changes. Raised idempotently by id;
staff acknowledge and close them with a note."""

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument

from gate_bridge import protocol as p
from models.errors import Conflict, NotFound

INDEXES = {
    "gate_alarms": [IndexModel([("community_id", ASCENDING), ("state", ASCENDING),
                                ("raised_at", DESCENDING)])],
}

# Raised by the server itself (the rest come from bridge events).
SERVER_ALARMS = {"bridge_offline", "invalid_offline_claim", "double_use", "code_guessing",
                 "mode_changed"}
ALARM_KINDS = tuple(sorted(p.ALARM_EVENTS | SERVER_ALARMS))
ALARM_STATES = ("open", "acknowledged", "closed")
ALARM_TRANSITIONS = {"acknowledge": ({"open"}, "acknowledged"),
                     "close": ({"open", "acknowledged"}, "closed")}


def public_alarm(doc: dict) -> dict:
    return {"id": doc["_id"], "community_id": str(doc["community_id"]),
            "gate_id": doc["gate_id"] and str(doc["gate_id"]), "bridge_id": doc["bridge"],
            "kind": doc["kind"], "state": doc["state"], "raised_at": doc["raised_at"],
            "data": doc.get("data", {}), "history": doc.get("history", [])}


class AlarmManager:
    def __init__(self, db, clock, notifier=None):
        self.db = db
        self.clock = clock
        self.notifier = notifier  # staff feed: alarm.raised / alarm.<action>

    async def _announce(self, doc: dict, kind: str) -> None:
        if self.notifier is not None:
            await self.notifier.community_event(str(doc["community_id"]), kind,
                                                alarm=public_alarm(doc))

    async def raise_alarm(self, where: dict, kind: str, alarm_id: str, data: dict | None = None,
                          at=None) -> bool:
        """Idempotent by id (an event replayed after a reconnect raises nothing new).
        `where`: a bridge doc, or {"community_id", "gate_id" (may be None), "_id" (bridge or None)}."""
        result = await self.db.gate_alarms.update_one({"_id": alarm_id}, {"$setOnInsert": {
            "community_id": where["community_id"], "gate_id": where.get("gate_id"),
            "bridge": where.get("_id"), "kind": kind, "state": "open", "data": data or {},
            "raised_at": at or self.clock.now(), "history": []}}, upsert=True)
        if result.upserted_id is None:
            return False
        await self._announce(await self.db.gate_alarms.find_one({"_id": alarm_id}), "alarm.raised")
        return True

    async def alarms(self, community_id: str, state: str | None = None, limit: int = 100) -> list[dict]:
        query: dict = {"community_id": ObjectId(community_id)}
        if state:
            query["state"] = state
        return await self.db.gate_alarms.find(query).sort("raised_at", DESCENDING).limit(
            limit).to_list(None)

    async def alarm_action(self, community_id: str, alarm_id: str, action: str, by: str,
                           note: str) -> dict:
        allowed, target = ALARM_TRANSITIONS[action]
        entry = {"at": self.clock.now(), "by": by, "action": action, "note": note}
        result = await self.db.gate_alarms.find_one_and_update(
            {"_id": alarm_id, "community_id": ObjectId(community_id), "state": {"$in": list(allowed)}},
            {"$set": {"state": target}, "$push": {"history": entry}}, return_document=ReturnDocument.AFTER)
        if result is None:
            current = await self.db.gate_alarms.find_one(
                {"_id": alarm_id, "community_id": ObjectId(community_id)})
            if current is None:
                raise NotFound("alarm not found")
            raise Conflict(f"cannot {action} an alarm that is {current['state']}",
                           code="bad_transition")
        await self._announce(result, f"alarm.{action}")
        return result
