"""The audit of commands sent to bridges (remote opens): who, why, when, for which gate.

One record per command, written while the command travels (not in front of it);
its outcome is the command's access-log line (models/gate_access.py). A command
found here without an access-log line is one whose outcome was never learnt (the
process died while waiting).
"""

from pymongo import ASCENDING, DESCENDING, IndexModel

from gate_bridge import protocol as p
from models.common import from_timestamp

INDEXES = {
    "gate_commands": [IndexModel([("community_id", ASCENDING), ("gate_id", ASCENDING),
                                  ("issued_at", DESCENDING)])],
}


class CommandAudit:
    def __init__(self, db):
        self.db = db

    @staticmethod
    def record(gate: dict, command: dict, by: str, reason: str) -> dict:
        return {"_id": command["id"], "community_id": gate["community_id"], "gate_id": gate["_id"],
                "bridge": gate.get("bridge_id"), "op": command["op"], "by": by, "reason": reason,
                "issued_at": from_timestamp(command["issued_at"]),
                "trace_id": p.trace_id(command.get("trace"))}

    async def issued(self, record: dict) -> None:
        await self.db.gate_commands.insert_one(record)
