"""Emergency modes: `normal`, `locked` (lockdown) and `open` (fire release), per gate and per
community. How they rank and what they mean for a credential: gate_bridge.decision.

`gate_modes` holds the mode in force per scope (`_id` "<community>" or
"<community>:<gate>"); `gate_mode_changes` is the audit trail, one record per change,
including fire releases a bridge's fire-panel input triggered on its own. Every
change raises an alarm and is announced to the hubs, which push it to their bridges
(the bridge keeps the last mode it was told while its link is down).
"""

from datetime import datetime

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel

from gate_bridge.decision import MODES
from models.bridges import announce_config
from models.errors import Invalid
from models.messages import Text
from models.read_cache import ReadCache

INDEXES = {
    "gate_modes": [IndexModel([("community_id", ASCENDING)])],
    "gate_mode_changes": [IndexModel([("community_id", ASCENDING), ("at", DESCENDING)])],
}
# A scan reads modes from this per-process cache; a change made in this process clears it,
# one made elsewhere is seen within this long (and pushed to bridges at once by the hubs).
CACHE_SECONDS = 1.0


def public_mode_change(doc: dict) -> dict:
    return {"id": str(doc["_id"]), "community_id": str(doc["community_id"]),
            "gate_id": doc["gate_id"] and str(doc["gate_id"]), "mode": doc["mode"],
            "previous": doc["previous"], "reason": doc["reason"], "by": doc["by"],
            "at": doc["at"]}


class ModeManager:
    def __init__(self, db, redis, clock, places, alarms):
        self.db = db
        self.redis = redis
        self.clock = clock
        self.places = places
        self.alarms = alarms
        self.cache = ReadCache(self._read_modes, CACHE_SECONDS)

    async def modes(self, community_id: str, fresh: bool = False) -> dict:
        """{"community": mode, "gates": {gate id: mode}} for the modes not `normal`."""
        if fresh:
            self.cache.forget(community_id)
        return await self.cache.get(community_id)

    async def _read_modes(self, community_id: str) -> dict:
        docs = await self.db.gate_modes.find({"community_id": ObjectId(community_id)}).to_list(None)
        value = {"community": "normal", "gates": {}}
        for doc in docs:
            if doc["gate_id"] is None:
                value["community"] = doc["mode"]
            else:
                value["gates"][str(doc["gate_id"])] = doc["mode"]
        return value

    async def modes_at(self, community_id: str, gate_id: str, at: datetime) -> tuple[str, str]:
        """(community mode, gate mode) as they were at `at` (re-checking offline decisions)."""
        found = []
        for gate in (None, ObjectId(gate_id)):
            last = await self.db.gate_mode_changes.find(
                {"community_id": ObjectId(community_id), "gate_id": gate, "source": "staff",
                 "at": {"$lte": at}}).sort([("at", DESCENDING), ("_id", DESCENDING)]).limit(
                1).to_list(None)
            found.append(last[0]["mode"] if last else "normal")
        return found[0], found[1]

    async def set_mode(self, community_id: str, gate_id: str | None, mode: str, reason: str,
                       by: str) -> dict:
        """Start or end an emergency mode for a community or one of its gates (audited,
        alarmed, pushed to the bridges)."""
        if mode not in MODES:
            raise Invalid("unknown mode", fields={"mode": Text("one of {choices}", choices=", ".join(MODES))})
        if not reason.strip():
            raise Invalid("a reason is required", fields={"reason": "required"})
        cid = ObjectId(community_id)
        gid = (await self.places.gate(community_id, gate_id))["_id"] if gate_id else None
        scope = f"{community_id}:{gid}" if gid else community_id
        now = self.clock.now()
        current = await self.db.gate_modes.find_one({"_id": scope})
        previous = current["mode"] if current else "normal"
        if mode == "normal":
            await self.db.gate_modes.delete_one({"_id": scope})
        else:
            await self.db.gate_modes.replace_one(
                {"_id": scope}, {"community_id": cid, "gate_id": gid, "mode": mode,
                                 "reason": reason, "by": by, "since": now}, upsert=True)
        change = {"_id": ObjectId(), "community_id": cid, "gate_id": gid, "mode": mode,
                  "previous": previous, "reason": reason, "by": by, "at": now, "source": "staff"}
        await self.db.gate_mode_changes.insert_one(change)
        self.cache.forget(community_id)
        await self.alarms.raise_alarm({"community_id": cid, "gate_id": gid, "_id": None},
                                      "mode_changed", f"mode:{change['_id']}",
                                      {"mode": mode, "previous": previous, "reason": reason,
                                       "by": by}, at=now)
        await announce_config(self.redis, community_id)
        return change

    async def bridge_fire_release(self, bridge: dict, active: bool, at: datetime) -> None:
        """A bridge's fire-panel input held its gate open (or let go) on its own: audited;
        its alarm comes with the event (gate_bridge.protocol.ALARM_EVENTS)."""
        await self.db.gate_mode_changes.insert_one({
            "_id": ObjectId(), "community_id": bridge["community_id"], "gate_id": bridge["gate_id"],
            "mode": "open" if active else "normal", "previous": None,
            "reason": "fire panel input", "by": f"bridge:{bridge['_id']}", "at": at,
            "source": "bridge"})

    async def changes(self, community_id: str, limit: int = 100) -> list[dict]:
        return await self.db.gate_mode_changes.find({"community_id": ObjectId(community_id)}).sort(
            [("at", DESCENDING), ("_id", DESCENDING)]).limit(limit).to_list(None)
