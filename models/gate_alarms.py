"""Alarms at gates: forced or held doors, tamper, power, offline bridges, clock drift, invalid
offline claims, short-code guessing, emergency mode changes. Raised idempotently by id;
staff acknowledge them, dispatch them to a person (who may then handle them) and close them,
each with a note. Every change is announced on the staff feed, to those who may read alarms."""

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument

from gate_bridge import protocol as p
from models.access import Principal, permitted
from models.errors import Conflict, Invalid, NotFound
from models.messages import Text
from server import metrics

INDEXES = {
    "gate_alarms": [IndexModel([("community_id", ASCENDING), ("state", ASCENDING),
                                ("raised_at", DESCENDING)])],
}

# Raised by the server itself (the rest come from bridge events).
SERVER_ALARMS = {"bridge_offline", "invalid_offline_claim", "double_use", "code_guessing",
                 "mode_changed"}
ALARM_KINDS = tuple(sorted(p.ALARM_EVENTS | SERVER_ALARMS))
ALARM_STATES = ("open", "acknowledged", "closed")
# action -> (states it applies to, state it leads to). Dispatching someone acknowledges too.
ALARM_TRANSITIONS = {"acknowledge": ({"open"}, "acknowledged"),
                     "dispatch": ({"open", "acknowledged"}, "acknowledged"),
                     "close": ({"open", "acknowledged"}, "closed")}
# Who an alarm may be dispatched to: those who may then handle it.
HANDLER_PERMISSION = "alarms.manage"


def public_alarm(doc: dict) -> dict:
    return {"id": doc["_id"], "community_id": str(doc["community_id"]),
            "gate_id": doc["gate_id"] and str(doc["gate_id"]), "bridge_id": doc["bridge"],
            "kind": doc["kind"], "state": doc["state"], "raised_at": doc["raised_at"],
            "data": doc.get("data", {}), "history": doc.get("history", []),
            "assignee": doc.get("assignee")}


class AlarmManager:
    def __init__(self, db, clock, notifier=None):
        self.db = db
        self.clock = clock
        self.notifier = notifier  # staff feed: alarm.raised / alarm.<action>

    async def _announce(self, doc: dict, kind: str) -> None:
        if self.notifier is not None:
            await self.notifier.community_event(str(doc["community_id"]), kind,
                                                permission="alarms.read", alarm=public_alarm(doc))

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
        metrics.ALARMS_RAISED.labels(kind).inc()
        await self._announce(await self.db.gate_alarms.find_one({"_id": alarm_id}), "alarm.raised")
        return True

    async def count_open(self) -> None:
        """Set the open-alarms gauge from the store (every kind: one that closed reads 0)."""
        counts = {row["_id"]: row["n"] async for row in await self.db.gate_alarms.aggregate(
            [{"$match": {"state": "open"}}, {"$group": {"_id": "$kind", "n": {"$sum": 1}}}])}
        for kind in ALARM_KINDS:
            metrics.ALARMS_OPEN.labels(kind).set(counts.get(kind, 0))

    async def alarms(self, community_id: str, state: str | None = None, limit: int = 100) -> list[dict]:
        query: dict = {"community_id": ObjectId(community_id)}
        if state:
            query["state"] = state
        return await self.db.gate_alarms.find(query).sort("raised_at", DESCENDING).limit(
            limit).to_list(None)

    @staticmethod
    def may_handle(staff: dict, community_id: str) -> bool:
        """Whether a staff member (their record) may be dispatched to a community's alarms."""
        roles = frozenset((staff.get("roles") or {}).get(community_id, []))
        return staff.get("active", True) and permitted(
            Principal("staff", str(staff["_id"]), {community_id: roles}), community_id,
            HANDLER_PERMISSION)

    async def alarm_action(self, community_id: str, alarm_id: str, action: str, by: str,
                           note: str, assignee: dict | None = None) -> dict:
        """Acknowledge, close, or dispatch to `assignee` (a staff record: see may_handle)."""
        allowed, target = ALARM_TRANSITIONS[action]
        entry = {"at": self.clock.now(), "by": by, "action": action, "note": note}
        update: dict = {"state": target}
        if action == "dispatch":
            if assignee is None or not self.may_handle(assignee, community_id):
                raise Invalid("dispatch to someone who handles alarms here",
                              fields={"assignee_id": "not a guard or manager of this community"})
            update["assignee"] = entry["to"] = {"id": str(assignee["_id"]),
                                                "name": assignee.get("name") or assignee["username"]}
        result = await self.db.gate_alarms.find_one_and_update(
            {"_id": alarm_id, "community_id": ObjectId(community_id), "state": {"$in": list(allowed)}},
            {"$set": update, "$push": {"history": entry}}, return_document=ReturnDocument.AFTER)
        if result is None:
            current = await self.db.gate_alarms.find_one(
                {"_id": alarm_id, "community_id": ObjectId(community_id)})
            if current is None:
                raise NotFound("alarm not found")
            raise Conflict(Text("cannot {action} an alarm that is {state}", action=action,
                                state=current["state"]),
                           code="bad_transition")
        await self._announce(result, f"alarm.{action}")
        return result
