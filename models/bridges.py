"""Gate bridges: their credentials (provisioning, re-keying) and the config pushed to them.

Staff provision a bridge for a gate and see its secret once. Both ends derive an
HMAC key from it (gate_bridge.protocol.derive_key); the server must be able to
compute HMACs, so a one-way hash of the secret would be no better than the secret
itself (it would *be* the key). Instead the derived key is sealed in a KeyBox
(models/key_box.py, the bridge id as associated data): a leaked database alone
does not let anyone impersonate a bridge or the server.

Config: what a bridge needs to decide offline (pass keys, revocations, used codes:
models/passes.py), the gate, its rules (defaults: gate_bridge.decision.DEFAULT_RULES)
and its effective emergency mode (models/gate_modes.py). A change is announced on
CONFIG_CHANNEL and every hub re-pushes the configs that changed.
"""

import hashlib
import json
import secrets

from pymongo import ASCENDING, IndexModel

from gate_bridge import protocol as p
from gate_bridge.decision import DEFAULT_RULES, STAFF_GATE_ROLES, effective_mode
from models.errors import Conflict
from models.key_box import KeyBox

INDEXES = {
    "bridges": [IndexModel([("gate_id", ASCENDING)])],
}

# Every hub listens here and re-pushes the community's config to its bridges.
CONFIG_CHANNEL = "gate:config"


async def announce_config(redis_client, community_id: str) -> None:
    """Tell every hub that a community's gate config changed (rules, keys, revocations, modes)."""
    await redis_client.publish(CONFIG_CHANNEL, json.dumps({"community_id": community_id}))


# Every use of a code's slot is published here by the use itself (models/passes.py), and
# every hub tells the community's connected bridges at once (a `used` frame).
USED_CHANNEL = "gate:used"

# Every hub listens here and ends the named bridge's session with bye{reason}.
SESSIONS_CHANNEL = "gate:end_sessions"


def gate_rules(gate: dict, staff_gate_roles=STAFF_GATE_ROLES) -> dict:
    """The gate's rules with defaults; `staff_roles` resolved (its own list, else the
    community's `staff_gate_roles`), as the bridge and the server both decide with."""
    rules = {**DEFAULT_RULES, **gate.get("rules", {})}
    if rules["staff_roles"] is None:
        rules["staff_roles"] = list(staff_gate_roles)
    return rules


class BridgeManager:
    def __init__(self, db, redis, clock, places, passes, modes, box: KeyBox):
        self.db = db
        self.redis = redis
        self.clock = clock
        self.places = places
        self.passes = passes
        self.modes = modes
        self.box = box

    async def provision(self, community_id: str, gate_id: str, by: str) -> dict:
        """A new secret for the gate's bridge (a new bridge id the first time).

        The old secret stops working at once, and a session opened with it ends at once
        (bye{reason: "reprovisioned"}): re-provisioning is also how a stolen bridge is
        locked out. It re-enables a disabled bridge.
        """
        gate = await self.places.gate(community_id, gate_id)
        bridge_id = gate.get("bridge_id") or f"br-{secrets.token_hex(6)}"
        secret, fields = self._credentials(gate, bridge_id, by)
        await self.db.bridges.update_one({"_id": bridge_id}, {
            "$set": fields, "$unset": {"disabled_at": "", "disabled_by": ""}}, upsert=True)
        if gate.get("bridge_id"):
            await self.end_sessions(bridge_id, "reprovisioned")
        else:
            await self.places.update_gate(community_id, gate_id, {"bridge_id": bridge_id})
        return {"bridge_id": bridge_id, "secret": secret, "gate_id": str(gate["_id"]),
                "provisioned_at": fields["provisioned_at"]}

    async def provision_new(self, community_id: str, gates: list[tuple[str, str, str, list[str]]],
                            by: str) -> list[dict]:
        """New gates ((code, name, kind, covers) each) with a first bridge each, in one write
        per collection, the gates naming their bridges from the start: a simulated site of
        thousands (benchmarks, drills; setting the bridges on the gates afterwards took as long
        again as both inserts on the embedded store)."""
        if not gates:
            return []
        bridge_ids = [f"br-{secrets.token_hex(6)}" for _ in gates]
        made, docs = [], []
        for gate, bridge_id in zip(await self.places.create_gates(community_id, gates, bridge_ids),
                                   bridge_ids, strict=True):
            secret, fields = self._credentials(gate, bridge_id, by)
            docs.append({"_id": bridge_id, **fields})
            made.append({"bridge_id": bridge_id, "secret": secret, "gate_id": str(gate["_id"]),
                         "code": gate["code"], "provisioned_at": fields["provisioned_at"]})
        await self.db.bridges.insert_many(docs)
        return made

    def _credentials(self, gate: dict, bridge_id: str, by: str) -> tuple[str, dict]:
        """A new secret and the bridge's fields: its key sealed (see the module's docstring)."""
        secret = p.new_secret()
        return secret, {"community_id": gate["community_id"], "gate_id": gate["_id"],
                        "key": self.box.seal(p.derive_key(secret), bridge_id),
                        "provisioned_at": self.clock.now(), "provisioned_by": by}

    async def disable(self, community_id: str, gate_id: str, by: str) -> dict:
        """Lock the gate's bridge out until it is provisioned again: its key is deleted and
        its session ends at once (bye{reason: "disabled"}), on whichever hub holds it."""
        gate, bridge_id = await self.bridge_for_gate(community_id, gate_id)
        now = self.clock.now()
        await self.db.bridges.update_one({"_id": bridge_id}, {
            "$set": {"disabled_at": now, "disabled_by": by}, "$unset": {"key": ""}})
        await self.end_sessions(bridge_id, "disabled")
        return {"bridge_id": bridge_id, "gate_id": str(gate["_id"]), "disabled_at": now}

    async def end_sessions(self, bridge_id: str, reason: str) -> None:
        await self.redis.publish(SESSIONS_CHANNEL, json.dumps({"bridge": bridge_id,
                                                               "reason": reason}))

    async def bridge(self, bridge_id: str) -> dict | None:
        return await self.db.bridges.find_one({"_id": bridge_id})

    async def credentials(self, bridge_id: str) -> tuple[bytes, dict, dict] | None:
        """(HMAC key, bridge doc, gate doc) for a bridge id, or None if unknown or disabled."""
        bridge = await self.db.bridges.find_one({"_id": bridge_id})
        if bridge is None or "key" not in bridge:
            return None
        gate = await self.db.gates.find_one({"_id": bridge["gate_id"]})
        if gate is None:
            return None
        return self.box.open(bridge["key"], bridge_id), bridge, gate

    async def reseal(self, old: KeyBox) -> int:
        """Re-seal every bridge key from the `old` box into this one (secret rotation)."""
        done = 0
        for doc in await self.db.bridges.find({}, {"key": 1}).to_list(None):
            key = self.box.reseal(doc["key"], doc["_id"], old)
            if key is not None:
                await self.db.bridges.update_one({"_id": doc["_id"]}, {"$set": {"key": key}})
                done += 1
        return done

    async def bridge_for_gate(self, community_id: str, gate_id: str) -> tuple[dict, str]:
        """The gate doc and its bridge id; 409 when no bridge was provisioned."""
        gate = await self.places.gate(community_id, gate_id)
        if not gate.get("bridge_id"):
            raise Conflict("this gate has no bridge yet", code="no_bridge")
        return gate, gate["bridge_id"]

    async def community_config(self, community_id: str) -> dict:
        """The part of the config push shared by a community's gates, without the used codes:
        hubs cache this part, and the used codes go with each push as read at that moment
        (used_codes) and between pushes as `used` deltas."""
        config = await self.passes.bridge_config(community_id)
        del config["nonces"]
        conf = await self.passes.community_settings(community_id)
        return {**config, "modes": await self.modes.modes(community_id, fresh=True),
                "staff_gate_roles": list(conf.staff_gate_roles)}

    async def used_codes(self, community_id: str) -> list[list]:
        """[slot key hex, expires] of the community's codes used and not expired."""
        return await self.passes.used_nonces(community_id)

    @staticmethod
    def bridge_config(gate: dict, base: dict) -> dict:
        """The versioned config push for one gate: the community's part plus gate and rules.
        `rules.mode` is the gate's effective emergency mode; `modes` says where it comes from."""
        info = {"community_id": str(gate["community_id"]), "gate_id": str(gate["_id"]),
                "code": gate["code"], "kind": gate["kind"], "covers": gate["covers"]}
        if "time_zone" in base:  # worker-pass and gate hours are local time at the gate
            info["time_zone"] = base["time_zone"]
        modes = base.get("modes") or {}
        own = {"community": modes.get("community", "normal"),
               "gate": modes.get("gates", {}).get(info["gate_id"], "normal")}
        rules = gate_rules(gate, base.get("staff_gate_roles", STAFF_GATE_ROLES))
        content = {**{k: v for k, v in base.items() if k not in ("modes", "staff_gate_roles")},
                   "gate": info, "modes": own,
                   "rules": {**rules, "mode": effective_mode(*own.values())}}
        canonical = json.dumps(content, sort_keys=True, default=repr).encode()
        return {**content, "version": hashlib.sha256(canonical).hexdigest()[:16]}
