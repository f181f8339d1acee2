"""Gate bridges: credentials, presence, events, alarms and the audit of remote opens.

Credentials: staff provision a bridge for a gate and see its secret once. Both
ends derive an HMAC key from it (gate_bridge.protocol.derive_key); the server
must be able to compute HMACs, so a one-way hash of the secret would be no
better than the secret itself (it would *be* the key). Instead the derived key
is stored encrypted with AES-GCM under GATE_SECRET_KEY (a deployment secret
outside the database, the bridge id as associated data): a leaked database
alone does not let anyone impersonate a bridge or the server.

Events: stored with `_id = "<bridge>:<seq>"`, so a replay after a reconnect is
an insert-or-ignore and only new events have side effects (alarms, access log).

Presence lives in Redis so every process can answer "is this gate online":
`gate:presence:<bridge>` = hub instance id, expiring after 3 heartbeats unless
the hub refreshes it, and `gate:last_seen` (hash bridge -> unix time).
"""

import hashlib
import json
import os
import secrets
import uuid

from bson import ObjectId
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import BulkWriteError

from gate_bridge import protocol as p
from gate_bridge.decision import gate_covers as covers
from models.common import from_timestamp, object_id
from models.access import Principal
from models.errors import Conflict, DomainError, Invalid, NotFound, RateLimited

INDEXES = {
    "bridges": [IndexModel([("gate_id", ASCENDING)])],
    "gate_events": [IndexModel([("community_id", ASCENDING), ("gate_id", ASCENDING),
                                ("at", DESCENDING)])],
    "gate_alarms": [IndexModel([("community_id", ASCENDING), ("state", ASCENDING),
                                ("raised_at", DESCENDING)])],
    "gate_commands": [IndexModel([("community_id", ASCENDING), ("gate_id", ASCENDING),
                                  ("issued_at", DESCENDING)])],
    "gate_commands_issued": [IndexModel([("community_id", ASCENDING), ("gate_id", ASCENDING),
                                         ("issued_at", DESCENDING)])],
}

ALARM_KINDS = tuple(sorted(p.ALARM_EVENTS | {"bridge_offline"}))
ALARM_STATES = ("open", "acknowledged", "closed")
ALARM_TRANSITIONS = {"acknowledge": ({"open"}, "acknowledged"),
                     "close": ({"open", "acknowledged"}, "closed")}
DEFAULT_RULES = {"mode": "normal", "hours": None, "budget_ms": 300, "pulse_ms": p.DEFAULT_PULSE_MS}
RESIDENT_OPENS_PER_MINUTE = 6

PRESENCE = "gate:presence:"
LAST_SEEN = "gate:last_seen"
# Delete presence only if it still names this instance (the bridge may have moved on).
_CLEAR_PRESENCE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


# Every hub listens here and re-pushes the community's config to its bridges.
CONFIG_CHANNEL = "gate:config"


async def announce_config(redis_client, community_id: str) -> None:
    """Tell every hub that a community's gate config changed (rules, keys, revocations)."""
    await redis_client.publish(CONFIG_CHANNEL, json.dumps({"community_id": community_id}))


class GateTimeout(DomainError):
    """The gate did not answer in time (offline, or no acknowledgement)."""
    status = 504
    code = "gate_timeout"


def public_alarm(doc: dict) -> dict:
    return {"id": doc["_id"], "community_id": str(doc["community_id"]),
            "gate_id": str(doc["gate_id"]), "bridge_id": doc["bridge"], "kind": doc["kind"],
            "state": doc["state"], "raised_at": doc["raised_at"], "data": doc.get("data", {}),
            "history": doc.get("history", [])}


def gate_rules(gate: dict) -> dict:
    return {**DEFAULT_RULES, **gate.get("rules", {})}


class KeyBox:
    """AES-GCM for bridge keys at rest."""

    def __init__(self, secret: str):
        self.aead = AESGCM(hashlib.sha256(b"xiaoqu-bridge-keys/1" + secret.encode()).digest())

    def seal(self, key: bytes, bridge_id: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self.aead.encrypt(nonce, key, bridge_id.encode())

    def open(self, sealed: bytes, bridge_id: str) -> bytes:
        return self.aead.decrypt(sealed[:12], sealed[12:], bridge_id.encode())


class GateEventManager:
    def __init__(self, db, redis, clock, places, key_secret: str):
        self.db = db
        self.redis = redis
        self.clock = clock
        self.places = places
        self.box = KeyBox(key_secret)
        self._clear_presence = redis.register_script(_CLEAR_PRESENCE)

    # -- credentials ----------------------------------------------------------------

    async def provision(self, community_id: str, gate_id: str, by: str) -> dict:
        """A new secret for the gate's bridge (a new bridge id the first time).

        The old secret stops working at once: re-provisioning is also how a
        stolen bridge is locked out.
        """
        gate = await self.places.gate(community_id, gate_id)
        bridge_id = gate.get("bridge_id") or f"br-{secrets.token_hex(6)}"
        secret = p.new_secret()
        now = self.clock.now()
        await self.db.bridges.update_one({"_id": bridge_id}, {
            "$set": {"community_id": gate["community_id"], "gate_id": gate["_id"],
                     "key": self.box.seal(p.derive_key(secret), bridge_id),
                     "provisioned_at": now, "provisioned_by": by},
        }, upsert=True)
        if not gate.get("bridge_id"):
            await self.places.update_gate(community_id, gate_id, {"bridge_id": bridge_id})
        return {"bridge_id": bridge_id, "secret": secret, "gate_id": str(gate["_id"]),
                "provisioned_at": now}

    async def credentials(self, bridge_id: str) -> tuple[bytes, dict, dict] | None:
        """(HMAC key, bridge doc, gate doc) for a bridge id, or None if unknown."""
        bridge = await self.db.bridges.find_one({"_id": bridge_id})
        if bridge is None:
            return None
        gate = await self.db.gates.find_one({"_id": bridge["gate_id"]})
        if gate is None:
            return None
        return self.box.open(bridge["key"], bridge_id), bridge, gate

    async def bridge_for_gate(self, community_id: str, gate_id: str) -> tuple[dict, str]:
        """The gate doc and its bridge id; 409 when no bridge was provisioned."""
        gate = await self.places.gate(community_id, gate_id)
        if not gate.get("bridge_id"):
            raise Conflict("this gate has no bridge yet", code="no_bridge")
        return gate, gate["bridge_id"]

    # -- presence ---------------------------------------------------------------------

    async def set_present(self, bridges: list[str], instance: str, ttl: float) -> None:
        """Mark bridges held by this hub instance as online for `ttl` seconds (one round trip)."""
        if not bridges:
            return
        now = self.clock.time()
        async with self.redis.pipeline(transaction=False) as pipe:
            for bridge in bridges:
                pipe.set(PRESENCE + bridge, instance, px=int(ttl * 1000))
            pipe.hset(LAST_SEEN, mapping={b: now for b in bridges})
            await pipe.execute()

    async def clear_present(self, bridge: str, instance: str) -> None:
        await self._clear_presence(keys=[PRESENCE + bridge], args=[instance])

    async def owner(self, bridge: str) -> str | None:
        """The hub instance holding the bridge's connection, or None when offline."""
        return await self.redis.get(PRESENCE + bridge)

    async def presence(self, bridges: list[str]) -> dict[str, dict]:
        if not bridges:
            return {}
        owners = await self.redis.mget([PRESENCE + b for b in bridges])
        seen = await self.redis.hmget(LAST_SEEN, bridges)
        return {b: {"online": o is not None,
                    "last_seen": from_timestamp(float(s)) if s else None}
                for b, o, s in zip(bridges, owners, seen)}

    # -- events ---------------------------------------------------------------------------

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
        docs = self.event_docs(bridge, items)
        try:
            await self.db.gate_events.insert_many(docs, ordered=False)
            return docs
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != 11000 for e in errors):
                raise
            dup = {e["index"] for e in errors}
            return [d for i, d in enumerate(docs) if i not in dup]

    async def status_changed(self, bridge: dict, online: bool) -> None:
        """Online/offline transitions are events too; going offline raises an alarm."""
        now = self.clock.now()
        await self.db.gate_events.insert_one({
            "_id": f"{bridge['_id']}:status:{uuid.uuid4().hex}", "bridge": bridge["_id"],
            "community_id": bridge["community_id"], "gate_id": bridge["gate_id"], "seq": None,
            "type": "online" if online else "offline", "at": now, "received_at": now, "data": {}})
        if not online:
            await self.raise_alarm(bridge, "bridge_offline", f"offline:{bridge['_id']}:{now.timestamp()}")

    async def events(self, community_id: str, gate_id: str, limit: int = 100) -> list[dict]:
        return await self.db.gate_events.find(
            {"community_id": ObjectId(community_id), "gate_id": object_id(gate_id, "gate")}
        ).sort("at", DESCENDING).limit(limit).to_list(None)

    # -- alarms ---------------------------------------------------------------------------

    async def raise_alarm(self, bridge: dict, kind: str, alarm_id: str, data: dict | None = None,
                          at=None) -> bool:
        """Idempotent by id (an event replayed after a reconnect raises nothing new)."""
        result = await self.db.gate_alarms.update_one({"_id": alarm_id}, {"$setOnInsert": {
            "community_id": bridge["community_id"], "gate_id": bridge["gate_id"],
            "bridge": bridge["_id"], "kind": kind, "state": "open", "data": data or {},
            "raised_at": at or self.clock.now(), "history": []}}, upsert=True)
        return result.upserted_id is not None

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
        return result

    # -- remote opens: audit and resident rate limit -------------------------------------------

    @staticmethod
    def command_record(gate: dict, command: dict, by: str, reason: str) -> dict:
        return {"_id": command["id"], "community_id": gate["community_id"], "gate_id": gate["_id"],
                "bridge": gate.get("bridge_id"), "op": command["op"], "by": by, "reason": reason,
                "issued_at": from_timestamp(command["issued_at"])}

    async def audit_command(self, record: dict) -> None:
        """The record of a command being issued, kept apart from its outcome: a command found
        here but not in gate_commands is one whose outcome was never learnt (the process died
        while waiting). Two inserts rather than insert-then-update, because an update costs
        the embedded store a scan of the collection."""
        await self.db.gate_commands_issued.insert_one(record)

    async def audit_result(self, record: dict, result: dict) -> None:
        """The whole record with its outcome, so it is complete even if the first write failed."""
        await self.db.gate_commands.insert_one({**record, "result": result})

    async def may_open(self, principal: Principal, gate: dict, reason: str) -> str:
        """The reason to audit a remote open with, if the caller may open: staff (their role
        was checked by the route's permission) must say why; a resident opens only gates
        covering one of their rooms, a few times a minute."""
        if principal.is_staff:
            if not reason.strip():
                raise Invalid("a reason is required", fields={"reason": "required for staff"})
            return reason
        cid = str(gate["community_id"])
        if not any(link["community_id"] == cid and covers(gate["covers"], link["room_path"])
                   for link in principal.links):
            raise NotFound("gate not found")
        key = f"gate_open_rate:{principal.id}"
        async with self.redis.pipeline(transaction=True) as pipe:
            count, _ = await pipe.incr(key).expire(key, 60, nx=True).execute()
        if count > RESIDENT_OPENS_PER_MINUTE:
            raise RateLimited("too many remote opens; try again in a minute",
                              retry_after=max(await self.redis.ttl(key), 1))
        return reason or "resident remote open"

    # -- config for bridges ---------------------------------------------------------------------

    @staticmethod
    def bridge_config(gate: dict, base: dict) -> dict:
        """The versioned config push for one gate: the passes' keys/revocations plus gate rules."""
        info = {"community_id": str(gate["community_id"]), "gate_id": str(gate["_id"]),
                "code": gate["code"], "kind": gate["kind"], "covers": gate["covers"]}
        if "utc_offset_minutes" in base:  # worker-pass hours are local time at the gate
            info["utc_offset_minutes"] = base["utc_offset_minutes"]
        content = {**base, "gate": info, "rules": gate_rules(gate)}
        canonical = json.dumps(content, sort_keys=True, default=repr).encode()
        return {**content, "version": hashlib.sha256(canonical).hexdigest()[:16]}
