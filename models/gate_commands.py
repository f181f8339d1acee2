"""The audit of commands sent to bridges (remote opens): who, why, when, for which gate, and
what the bridge did.

One record per command, written with its outcome once the acknowledgements are in (the
intent, written before the command is sent, is its outbox effect: models/gate_access.py).
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

    async def finished(self, record: dict, levels: list[dict] | None, level: str | None) -> None:
        """The record with its outcome (None levels: the bridge was offline); written again,
        it is the same record."""
        await self.db.gate_commands.replace_one(
            {"_id": record["_id"]},
            {**record, "level": level, "levels": None if levels is None else
             [{k: v for k, v in ack.items() if k != "id"} for ack in levels]}, upsert=True)
