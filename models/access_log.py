"""The access log: every gate decision (allowed or refused), newest first.

Lines are built by the gate service (models/gate_access.py); this module stores
and reads them. Writes are batched off the decision's path: `record` queues the line and a
background task inserts the lines queued within 50 ms with one `insert_many`, so a gate's answer
never waits for the database (the verifier's latency budget is about 1 ms, an
insert on the embedded server takes several). `flush` waits for the queue;
`query` flushes first, so a process always reads its own decisions.
"""

import asyncio
import base64
import logging
from datetime import UTC, datetime

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import BulkWriteError, PyMongoError

from models.common import insert_new
from models.errors import Invalid

log = logging.getLogger("xiaoqu.access_log")

INDEXES = {
    "access_log": [
        IndexModel([("community_id", ASCENDING), ("at", DESCENDING), ("_id", DESCENDING)]),
        IndexModel([("community_id", ASCENDING), ("gate_id", ASCENDING), ("at", DESCENDING)]),
        IndexModel([("community_id", ASCENDING), ("pass_id", ASCENDING), ("at", DESCENDING)]),
        IndexModel([("community_id", ASCENDING), ("subject", ASCENDING), ("at", DESCENDING)]),
    ],
}
SOURCES = ("gate", "scanner", "remote", "offline")
# Present on some lines: remote opens (command_id, level, by), offline decisions (bridge: what
# the bridge did, flag: "invalid_claim" or "double_use" when the server disagrees).
OPTIONAL_FIELDS = ("command_id", "level", "by", "bridge", "flag")
MAX_QUEUED = 50_000  # while MongoDB is down; beyond this the oldest lines are dropped
BATCH_SECONDS = 0.05


def public_entry(doc: dict) -> dict:
    return {"id": str(doc["_id"]), "community_id": str(doc["community_id"]),
            "gate_id": doc["gate_id"] and str(doc["gate_id"]), "direction": doc["direction"],
            "at": doc["at"], "result": doc["result"], "reason": doc["reason"],
            "kind": doc.get("kind"), "pass_id": doc.get("pass_id"),
            "subject": doc.get("subject"), "source": doc["source"],
            **{k: doc[k] for k in OPTIONAL_FIELDS if doc.get(k) is not None}}


def _cursor(doc: dict) -> str:
    millis = int(doc["at"].timestamp() * 1000)
    return base64.urlsafe_b64encode(f"{millis}:{doc['_id']}".encode()).decode()


def _parse_cursor(cursor: str) -> tuple[datetime, ObjectId]:
    try:
        millis, _, oid = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        return datetime.fromtimestamp(int(millis) / 1000, UTC), ObjectId(oid)
    except (ValueError, InvalidId, UnicodeDecodeError):
        raise Invalid("bad cursor", fields={"cursor": "use next_cursor from a page"}) from None


def _oid(value: str, field: str) -> ObjectId:
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        raise Invalid(f"bad {field}", fields={field: "expected a 24-hex id"}) from None


class AccessLog:
    def __init__(self, db):
        self.db = db
        self.queued: list[dict] = []
        self.writer: asyncio.Task | None = None

    def append(self, line: dict) -> None:
        """Queue one line, as built by the gate service (models/gate_access.py, the one
        place access-log lines are made)."""
        at = line["at"]
        # Milliseconds: what MongoDB keeps, so cursors compare equal to stored values.
        self.queued.append({"_id": ObjectId(), **line,
                            "at": at.replace(microsecond=at.microsecond // 1000 * 1000)})
        if len(self.queued) > MAX_QUEUED:
            del self.queued[: len(self.queued) - MAX_QUEUED]
            log.error("access log queue full: dropped the oldest lines")
        if self.writer is None or self.writer.done():
            self.writer = asyncio.create_task(self._write())

    async def _write(self) -> None:
        # Let a batch gather: one insert per ~BATCH_SECONDS instead of one per decision.
        await asyncio.sleep(BATCH_SECONDS)
        while self.queued:
            batch, self.queued = self.queued, []
            try:
                # A retried batch may be partly in already; those lines are done.
                await insert_new(self.db.access_log, batch)
            except BulkWriteError:
                log.exception("access log: some lines were not written")
            except PyMongoError:
                log.exception("access log: write failed; keeping %d lines for later", len(batch))
                self.queued[:0] = batch
                return

    async def flush(self) -> None:
        """Wait until every queued line is written (retrying once if a write failed)."""
        if self.writer is not None:
            await self.writer
        if self.queued:
            self.writer = asyncio.create_task(self._write())
            await self.writer

    async def query(self, community_id: str, gate_id: str | None = None,
                    subject: str | None = None, pass_id: str | None = None,
                    result: str | None = None, flag: str | None = None, since: datetime | None = None,
                    until: datetime | None = None, cursor: str | None = None,
                    limit: int = 50) -> dict:
        """Newest first; `next_cursor` continues after the last item (None at the end)."""
        await self.flush()
        query: dict = {"community_id": ObjectId(community_id)}
        if gate_id:
            query["gate_id"] = _oid(gate_id, "gate_id")
        for name, value in (("subject", subject), ("pass_id", pass_id), ("result", result),
                            ("flag", flag)):
            if value:
                query[name] = value
        at: dict = {}
        if since:
            at["$gte"] = since
        if until:
            at["$lt"] = until
        if at:
            query["at"] = at
        if cursor:
            before, last_id = _parse_cursor(cursor)
            query["$or"] = [{"at": {"$lt": before}}, {"at": before, "_id": {"$lt": last_id}}]
        docs = await self.db.access_log.find(query).sort(
            [("at", DESCENDING), ("_id", DESCENDING)]).limit(limit + 1).to_list(None)
        more = len(docs) > limit
        docs = docs[:limit]
        return {"items": [public_entry(d) for d in docs],
                "next_cursor": _cursor(docs[-1]) if more else None}

