"""Passes: resident codes, visitor and worker passes, and use counting for the gate service.

Tokens are made and read by gate_bridge.passes; the allow/deny rules live only
in gate_bridge.decision. This module adds what needs the server: signing keys
(MongoDB; private keys never leave the server), the pass documents and their
audit trail, revocations, and the atomic use counting in Redis that makes a
resident code single-use across every process.

Use counts are durable in MongoDB, Redis is their fast path: every use taken is recorded on
the access-log line of its entry (its `use`, written before the entry is acknowledged), and a
Redis that lost them (restarted without persistence, flushed) is rebuilt from those lines before
the next use is counted (`uses:seeded` marks a Redis that holds them), so a restart neither
re-opens single-use codes nor resets entry limits. Short codes and rate-limit windows are not
rebuilt: a lost short code is refused (`unknown_code`), the safe way.

Redis keys:
  uses:seeded              present while Redis holds every use still counted
  uses:<claim hex>         scans counted against a claim (INCR; one allow per slot)
  once:<scan>              the count a scan's use got: "<bridge>:scan:<scan id>", or an offline
                           decision's event id "<bridge>:<seq>" from a bridge without scan ids
                           (its online answer and its offline decision, however often resent,
                           take one use)
  used:<community>         zset of claims used, score = expiry; pushed to bridges
  revoked:<community>      set of revoked subject ids, plus "*" once loaded from MongoDB
  short:<community>:<12 digits>  the token a numeric short code stands for
"""

import asyncio
import functools
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import nacl.bindings
from bson import ObjectId
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument
from pymongo.errors import DuplicateKeyError

from gate_bridge.decision import (ENTRY_COUNT_RETENTION, STAFF_GATE_ROLES, Decision, GateInfo,
                                  UseClaim, decide, gate_covers, is_short_code, normalize,
                                  use_claim)
from gate_bridge.passes import (EVERY_DAY, NONCE_BYTES, QUARTERS_PER_DAY, MalformedToken, Payload,
                                community_tag, day_names, days_mask, fit_scope, publish_key, sign,
                                split)
from models.access import Principal, permitted, roles_in
from models.bindings import links_in, rooms_in
from models.common import from_timestamp, iso_utc, object_id
from models.errors import Conflict, Forbidden, Invalid, NotFound
from models.messages import Text
from models.bridges import USED_CHANNEL, announce_config, gate_rules
from models.key_box import KeyBox
from models.places import community_time_zone
from models.read_cache import ReadCache
from models.seeding import TRIES, Seeded, still_empty

log = logging.getLogger("xiaoqu.passes")

INDEXES = {
    "passes": [
        IndexModel([("share_id", ASCENDING)], unique=True),
        IndexModel([("community_id", ASCENDING), ("owner.id", ASCENDING), ("created_at", DESCENDING)]),
        IndexModel([("community_id", ASCENDING), ("kind", ASCENDING), ("created_at", DESCENDING)]),
    ],
    "pass_revocations": [IndexModel([("community_id", ASCENDING), ("until", ASCENDING)])],
}
CACHE_SECONDS = 30  # community settings and the key ring, per process
KEY_RELOAD_SECONDS = 5  # an unknown key id reloads the ring at most this often
SHORT_CODE_TRIES = 5
REVOKED = object()
NOT_LOADED, REVOKED_CODE, NOT_SEEDED = -1, -2, -3
SEEDED = "uses:seeded"
# Revocation check and use count in one round trip, atomically. Storage mechanics only:
# what a revocation or an exhausted claim means is decided by gate_bridge.decision.
# Relative expiry (ARGV[2]): Redis keeps its own time, ours may be a test's manual clock.
# A use that took a slot is published in the same step (ARGV[5] is the message up to its
# count), so gate hubs tell their bridges without another round trip (USED_CHANNEL).
# KEYS[4], when given, makes the use happen once per key (a scan answered online and decided
# offline, an offline decision resent after a crash): a second call returns the first one's
# count. KEYS[5] (SEEDED) missing: the counts must be rebuilt from MongoDB first.
USE_SCRIPT = """
if redis.call('EXISTS', KEYS[5]) == 0 then return -3 end
if redis.call('SISMEMBER', KEYS[1], '*') == 0 then return -1 end
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return -2 end
if ARGV[3] == '' then return 0 end
if KEYS[4] ~= '' then
  local first = redis.call('GET', KEYS[4])
  if first then return tonumber(first) end
end
local count = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
if KEYS[4] ~= '' then redis.call('SET', KEYS[4], count, 'EX', ARGV[2]) end
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
if count <= tonumber(ARGV[6]) then redis.call('PUBLISH', ARGV[7], ARGV[5] .. count .. '}') end
return count
"""
# One use read back from an access-log line: the count goes back unless Redis has a higher one
# (uses taken since), the claim is announced to bridges again, the scan's count remembered.
SEED_SCRIPT = """
local count = tonumber(ARGV[1])
if count > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], count, 'EX', ARGV[2])
end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
if KEYS[3] ~= '' then redis.call('SET', KEYS[3], count, 'EX', ARGV[2], 'NX') end
"""
TRAIL_ORDER = {"created": 0, "used": 1, "cancelled": 2, "expired": 3}  # for equal times


@dataclass(frozen=True)
class PassSettings:
    code_seconds: int
    invitation_max_days: int
    worker_pass_max_days: int
    time_zone: str  # IANA name (gate_bridge.decision.local_minute)
    name: str
    address: str
    staff_gate_roles: tuple[str, ...]  # whose staff codes open gates without their own list
    decoration_days: list[str] | None  # a decoration permit's working days unless approval says


@dataclass(frozen=True)
class SigningKey:
    key_id: int
    private: Ed25519PrivateKey | None
    public: Ed25519PublicKey
    state: str
    created_at: datetime

    @functools.cached_property
    def signer(self) -> "Signer":
        return Signer(self.private.private_bytes_raw())


class Signer:
    """Signs with libsodium: Ed25519 signatures are deterministic (RFC 8032), so these are
    the very bytes `cryptography`'s OpenSSL key makes, for 58% of its instructions — the
    signature is the largest single cost of issuing a code (scripts/bench_passes.py)."""

    def __init__(self, private_bytes: bytes):
        # libsodium's own form of the key (seed and public key); PyNaCl's SigningKey wrapper
        # would build a SignedMessage around each signature only to be taken apart here.
        self._secret = nacl.bindings.crypto_sign_seed_keypair(private_bytes)[1]

    def sign(self, message: bytes) -> bytes:
        return nacl.bindings.crypto_sign(message, self._secret)[:nacl.bindings.crypto_sign_BYTES]


def key_owner(key_id: int) -> str:
    """The associated data a pass key is sealed with (models/key_box.py)."""
    return f"pass-key:{key_id}"


def quarters(hhmm: str) -> int:
    """"08:30" -> 34 (quarter hours since midnight; "24:00" -> 96)."""
    hours, minutes = (int(x) for x in hhmm.split(":"))
    return hours * 4 + minutes // 15


def working_days(days) -> list[str] | None:
    """Days in week order, None for every day (a pass's one form of "every day")."""
    if days is None:
        return None
    mask = days_mask(days)
    return None if mask == EVERY_DAY else day_names(mask)


def hhmm(quarter: int) -> str:
    return f"{quarter // 4:02d}:{quarter % 4 * 15:02d}"


def _use_announcement(community_id: str, claim: UseClaim) -> str:
    """The USED_CHANNEL message of a use up to its count, which the use script appends."""
    body = json.dumps({"community_id": community_id, "claim": claim.key.hex(),
                       "limit": claim.limit, "expires": claim.expires})
    return body[:-1] + ', "count": '


class PassManager:
    def __init__(self, db, redis, clock, settings, places, bindings, staff, access_log,
                 box: KeyBox):
        self.db = db
        self.box = box
        self.redis = redis
        self.clock = clock
        self.settings = settings
        self.places = places
        self.bindings = bindings
        self.staff = staff
        self.access_log = access_log
        self.skew = settings.pass_skew_seconds
        self._ring: dict[int, SigningKey] = {}
        self._ring_at = float("-inf")
        self._ring_lock = asyncio.Lock()
        self._signing: SigningKey | None = None  # the ring's newest key, found as it is read
        self.communities = ReadCache(self._read_settings, CACHE_SECONDS)
        # community id -> its PassSettings (cached per process): the cache's own method, as
        # every code issued asks and a coroutine wrapping it cost ~3k instructions a call
        self.community_settings = self.communities.get
        self._use_script = redis.register_script(USE_SCRIPT)
        self._seed_script = redis.register_script(SEED_SCRIPT)
        self.uses = Seeded(redis, SEEDED, self._seed_uses)

    # -- settings and keys ----------------------------------------------------------------------

    async def _read_settings(self, community_id: str) -> PassSettings:
        doc = await self.places.community(community_id)
        own = doc.get("settings") or {}
        return PassSettings(
            code_seconds=int(own.get("pass_code_seconds", self.settings.pass_code_seconds)),
            invitation_max_days=int(own.get("invitation_max_days",
                                            self.settings.invitation_max_days)),
            worker_pass_max_days=int(own.get("worker_pass_max_days",
                                             self.settings.worker_pass_max_days)),
            time_zone=community_time_zone(doc),
            name=doc["name"], address=doc.get("address", ""),
            staff_gate_roles=tuple(own.get("staff_gate_roles", STAFF_GATE_ROLES)),
            decoration_days=working_days(own.get("decoration_days")))

    def forget_community(self, community_id: str) -> None:
        """Drop this process's copy of a community's settings (they changed)."""
        self.communities.forget(community_id)

    async def key_ring(self, reload: bool = False) -> dict[int, SigningKey]:
        """Active keys by id (cached); creates the first key of a fresh deployment."""
        if self._ring_fresh(reload):
            return self._ring
        stale_at = self._ring_at
        async with self._ring_lock:
            if self._ring_at > stale_at:  # read while this caller waited: one read for all
                return self._ring
            docs = await self.db.pass_keys.find({"state": "active"}).to_list(None)
            if not docs:
                await self.rotate_key()
                docs = await self.db.pass_keys.find({"state": "active"}).to_list(None)
            self._ring = {d["_id"]: SigningKey(
                d["_id"], Ed25519PrivateKey.from_private_bytes(self._open_private(d)),
                Ed25519PublicKey.from_public_bytes(d["public"]), d["state"], d["created_at"])
                for d in docs}
            self._signing = max(self._ring.values(), key=lambda k: (k.created_at, k.key_id))
            self._ring_at = time.monotonic()
        return self._ring

    def _ring_fresh(self, reload: bool = False) -> bool:
        age = time.monotonic() - self._ring_at
        return age < CACHE_SECONDS and not (reload and age > KEY_RELOAD_SECONDS)

    async def signing_key(self) -> SigningKey:
        if not self._ring_fresh():  # (no key_ring call per code while the ring is fresh)
            await self.key_ring()
        return self._signing

    async def rotate_key(self) -> int:
        """Add a new signing key; older keys keep verifying until retired. Returns its id."""
        while True:
            used = {d["_id"] for d in await self.db.pass_keys.find({}, {"_id": 1}).to_list(None)}
            free = [i for i in range(1, 256) if i not in used]
            if not free:  # recycle the oldest retired id
                oldest = await self.db.pass_keys.find_one_and_delete(
                    {"state": "retired"}, sort=[("retired_at", ASCENDING)])
                if oldest is None:
                    raise Conflict("255 active keys: retire some first")
                free = [oldest["_id"]]
            private = Ed25519PrivateKey.generate()
            sealed = self.box.seal(private.private_bytes_raw(), key_owner(free[0]))
            try:
                await self.db.pass_keys.insert_one(
                    {"_id": free[0], "sealed": sealed, "public": private.public_key().public_bytes_raw(),
                     "state": "active", "created_at": self.clock.now(), "retired_at": None})
            except DuplicateKeyError:  # another process took the id first
                continue
            self._ring_at = float("-inf")
            return free[0]

    def _open_private(self, doc: dict) -> bytes:
        return self.box.open(doc["sealed"], key_owner(doc["_id"]))

    async def seal_raw_keys(self) -> int:
        """Start-up migration: seal private keys stored raw by older versions. Returns how many."""
        docs = await self.db.pass_keys.find({"private": {"$exists": True}}).to_list(None)
        for doc in docs:
            await self.db.pass_keys.update_one(
                {"_id": doc["_id"]},
                {"$set": {"sealed": self.box.seal(doc["private"], key_owner(doc["_id"]))},
                 "$unset": {"private": ""}})
        if docs:
            self._ring_at = float("-inf")
        return len(docs)

    async def reseal(self, old: KeyBox) -> int:
        """Re-seal every private key from the `old` box into this one (secret rotation)."""
        done = 0
        for doc in await self.db.pass_keys.find({}, {"sealed": 1}).to_list(None):
            sealed = self.box.reseal(doc["sealed"], key_owner(doc["_id"]), old)
            if sealed is not None:
                await self.db.pass_keys.update_one({"_id": doc["_id"]}, {"$set": {"sealed": sealed}})
                done += 1
        self._ring_at = float("-inf")
        return done

    async def passes_signed_by(self, key_id: int) -> list[dict]:
        """Active passes whose one printed token was signed by `key_id` (they fail as
        unknown_key once it is retired). Refreshed passes are re-signed with the newest key."""
        docs = await self.db.passes.find(
            {"state": "active", "token": {"$ne": None}, "valid_to": {"$gt": self.clock.now()}},
            {"token": 1, "kind": 1, "community_id": 1, "valid_to": 1}).to_list(None)
        return [d for d in docs if split(d["token"])[0].key_id == key_id]

    async def retire_key(self, key_id: int, force: bool = False) -> None:
        """Stop accepting codes signed by `key_id` (after its codes in flight have expired).
        Refused while an active pass depends on it, unless forced (those passes then fail)."""
        if (await self.signing_key()).key_id == key_id:
            raise Conflict("rotate first: this is the signing key")
        dependent = await self.passes_signed_by(key_id)
        if dependent and not force:
            listed = ", ".join(f"{d['kind']} pass {d['_id']} (community {d['community_id']}, "
                               f"valid to {d['valid_to']:%Y-%m-%d %H:%M} UTC)" for d in dependent)
            raise Conflict(Text("{count} active pass(es) depend on key {key_id}: {listed}; cancel "
                                "and reissue them, wait until they end, or force",
                                count=len(dependent), key_id=key_id, listed=listed),
                           code="key_in_use", extra={"passes": [str(d["_id"]) for d in dependent]})
        result = await self.db.pass_keys.update_one(
            {"_id": key_id, "state": "active"},
            {"$set": {"state": "retired", "retired_at": self.clock.now()}})
        if result.matched_count == 0:
            raise NotFound("no such active key")
        self._ring_at = float("-inf")

    async def published_keys(self) -> dict[str, str]:
        return {str(k): publish_key(v.public) for k, v in sorted((await self.key_ring()).items())}

    # -- tokens -----------------------------------------------------------------------------------

    async def _sign(self, community_id: str, kind: str, subject: str, not_before: int,
                    expires: int, scope: tuple[str, ...], max_entries: int = 0,
                    hours: tuple[int, int] = (0, QUARTERS_PER_DAY),
                    days: list[str] | None = None) -> str:
        key = await self.signing_key()
        # os.urandom is what secrets.token_bytes returns, less its two calls
        payload = Payload(kind, key.key_id, not_before, expires, os.urandom(NONCE_BYTES),
                          community_tag(community_id), bytes.fromhex(subject), max_entries, hours,
                          scope, days_mask(days))
        return sign(payload, community_id, key.signer)

    async def resident_code(self, principal: Principal, community_id: str,
                            short: bool = False) -> dict:
        """A fresh single-use code: residents for their rooms; staff carry their roles that
        open gates here (the community's `staff_gate_roles` or a gate's own `staff_roles`),
        and each gate lets through only the roles it names (gate_bridge.decision)."""
        conf = await self.community_settings(community_id)
        now = int(self.clock.time())
        expires = now + conf.code_seconds
        if principal.is_staff:
            openers = set(conf.staff_gate_roles)
            for gate in await self.places.gates(community_id):
                openers.update(gate_rules(gate, conf.staff_gate_roles)["staff_roles"])
            kind = "staff"
            scope = tuple(sorted((roles_in(principal, community_id) or frozenset()) & openers))
            if not scope:
                raise Forbidden("none of your roles opens a gate in this community",
                                code="no_gate_role")
        else:
            links = links_in(principal.links, community_id)
            if not links:
                raise Forbidden("no active room link in this community", code="no_room")
            kind, scope = "resident", fit_scope(tuple(link["room_path"] for link in links))
            # A lease ending sooner ends the code with it.
            expires = min([expires] + [int(link["lease_end"]) for link in links
                                       if link["lease_end"] is not None])
        token = await self._sign(community_id, kind, principal.id, now, expires, scope)
        answer = {"token": token, "kind": kind, "scope": list(scope),
                  "not_before": iso_utc(now), "expires_at": iso_utc(expires),
                  "lifetime_seconds": expires - now}
        if short:
            answer["short_code"] = await self._short_code(community_id, token, expires - now)
        return answer

    async def _short_code(self, community_id: str, token: str, seconds: int) -> str:
        for _ in range(SHORT_CODE_TRIES):
            digits = f"{secrets.randbelow(10**12):012d}"
            if await self.redis.set(f"short:{community_id}:{digits}", token, ex=max(seconds, 1),
                                    nx=True):
                return digits
        raise Conflict("could not allocate a short code; try again")

    # -- the check ----------------------------------------------------------------------------------

    async def decide(self, token_text: str, info: GateInfo, direction: str,
                     once: str = "") -> tuple[Decision, dict | None]:
        """Decide now at a gate (rules: gate_bridge.decision) and take the use atomically;
        a denied code takes nothing. Short codes are resolved here (only the server can).
        Returns the decision and the use it took (for its access-log line: see `_take`);
        `once`: the scan, which takes one use however often it is decided."""
        community_id = info.community_id
        token_text = normalize(token_text)
        short_key = None
        if is_short_code(token_text):
            short_key = f"short:{community_id}:{token_text}"
            token_text = await self.redis.get(short_key)
            if token_text is None:
                return Decision(False, "unknown_code"), None
        decision, use = await self._take(token_text, info, direction, self.clock.time(), None,
                                         once)
        if decision.allow and short_key:
            await self.redis.delete(short_key)  # one-time: the handle is gone once used
        return decision, use

    async def recheck(self, token_text, info: GateInfo, direction: str, at: float,
                      once: str) -> tuple[Decision, dict | None]:
        """An entry a bridge allowed offline, decided again at the time it claims; allowed, it
        takes its use here too, so a single-use code or a pass's entry limit also holds at the
        gates that were online (and a use already taken shows as replayed / used_up). Once
        per `once` (the scan, or the bridge's event id): the same scan answered online, or a
        resent event, gets the first count again."""
        if not isinstance(token_text, str):
            return Decision(False, "malformed"), None
        return await self._take(token_text, info, direction, at,
                                await self.revoked_since(info.community_id), once)

    async def _take(self, token_text: str, info: GateInfo, direction: str, at: float,
                    revoked_at: dict | None, once: str = "") -> tuple[Decision, dict | None]:
        """decide() then the use. `revoked_at` (subject -> unix time) judges revocations as of
        `at`; None: as of now, atomically with the use (in Redis). `once`: see USE_SCRIPT.
        The use taken comes back as the record its access-log line keeps (claim, limit,
        expires, count, once): what rebuilds Redis (`_seed_uses`)."""
        ring = await self._ring_for(token_text)
        keys = {k: v.public for k, v in ring.items()}
        revoked = () if revoked_at is None else {s for s, t in revoked_at.items() if t <= at}
        decision = decide(token_text, info, at, keys, revoked, direction=direction, skew=self.skew)
        if not decision.allow:
            return decision, None
        claim = use_claim(decision.payload, direction, self.skew)
        # Judged as of `at` already: the use script then checks no (current) revocation.
        subject = decision.payload.subject_id if revoked_at is None else ""
        once_key = f"once:{once}" if once and claim else ""
        count = await self._use(info.community_id, subject, claim, once_key)
        if count is REVOKED:  # the rules say what that means (and in which order)
            return decide(token_text, info, at, keys, {subject}, direction=direction,
                          skew=self.skew), None
        if claim is None:
            return decision, None
        if count > claim.limit:
            return Decision(False, claim.exhausted, decision.payload), None
        return decision, {"claim": claim.key.hex(), "limit": claim.limit,
                          "expires": claim.expires, "count": count, "once": once_key or None}

    async def _ring_for(self, token_text: str) -> dict[int, SigningKey]:
        """The key ring, reloaded (rate-limited) when a code names a key we do not know."""
        ring = await self.key_ring()
        try:
            key_id = split(token_text)[0].key_id
        except MalformedToken:
            return ring
        return ring if key_id in ring else await self.key_ring(reload=True)

    async def _load_revocations(self, community_id: str) -> list[str]:
        """Fill the Redis set from MongoDB (after a Redis restart, or daily to prune it)."""
        subjects = await self.revoked_subjects(community_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(f"revoked:{community_id}", "*", *subjects)
            pipe.expire(f"revoked:{community_id}", 86400)
            await pipe.execute()
        return subjects

    async def revoked_subjects(self, community_id: str) -> list[str]:
        return sorted(await self.revoked_since(community_id))

    async def revoked_since(self, community_id: str) -> dict[str, float]:
        """Every subject refused now -> since when (unix time): revocations and suspensions,
        and passes whose own state is cancelled, so lifting a suspension by a pass's id does
        not bring a cancelled pass back."""
        cid, now = ObjectId(community_id), self.clock.now()
        docs = await self.db.pass_revocations.find(
            {"community_id": cid, "until": {"$gt": now}}).to_list(None)
        since = {d["subject"]: d["at"].timestamp() for d in docs}
        cancelled = await self.db.passes.find(
            {"community_id": cid, "state": "cancelled",
             "valid_to": {"$gt": now - timedelta(seconds=ENTRY_COUNT_RETENTION)}},
            {"history": 1}).to_list(None)
        for doc in cancelled:
            at = max(e["at"] for e in doc["history"] if e["action"] == "cancelled")
            since[str(doc["_id"])] = min(since.get(str(doc["_id"]), at.timestamp()), at.timestamp())
        return since

    async def _use(self, community_id: str, subject: str, claim: UseClaim | None,
                   once: str = ""):
        """In one atomic step: REVOKED if the subject is revoked, else take a slot of the
        claim: its count (more than its limit: none was left; 0 when nothing is taken)."""
        keys = [f"revoked:{community_id}", f"uses:{claim.key.hex()}" if claim else "",
                f"used:{community_id}", once, SEEDED]
        args = [subject, max(1, int(claim.expires - self.clock.time()) + 1) if claim else 0,
                f"{claim.key.hex()}:{claim.limit}" if claim else "", claim.expires if claim else 0,
                _use_announcement(community_id, claim) if claim else "",
                claim.limit if claim else 0, USED_CHANNEL]
        for _ in range(TRIES):  # Redis may lose its data again after a refill (models/seeding.py)
            count = await self._use_script(keys=keys, args=args)
            if count == NOT_SEEDED:  # Redis lost its data (restart without persistence, flush)
                await self.uses.seed()
            elif count == NOT_LOADED:  # Redis lost the set (restart) or it aged out: reload
                await self._load_revocations(community_id)
            elif count == REVOKED_CODE:
                return REVOKED
            else:
                return count
        raise still_empty()

    async def _seed_uses(self, pipe) -> None:
        """Put every use still counted back into Redis from the access-log lines that took
        them (models/seeding.py; a count only ever goes up, none is counted before SEEDED)."""
        now = self.clock.time()
        lines = await self.access_log.uses(now)
        for line in lines:
            use = line["use"]
            await self._seed_script(
                keys=[f"uses:{use['claim']}", f"used:{line['community_id']}",
                      use.get("once") or ""],
                args=[use["count"], max(1, int(use["expires"] - now) + 1),
                      f"{use['claim']}:{use['limit']}", use["expires"]], client=pipe)
        if lines:
            log.warning("use counts were missing from Redis: %d uses rebuilt from the "
                        "access log", len(lines))

    async def used_nonces(self, community_id: str) -> list[list]:
        """[slot key hex, expires] of every claim slot used and not expired, for bridges."""
        key = f"used:{community_id}"
        now = self.clock.time()
        await self.uses.ensure()
        await self.redis.zremrangebyscore(key, "-inf", now)
        members = await self.redis.zrangebyscore(key, now, "+inf", withscores=True)
        counts = await self.redis.mget([f"uses:{m.split(':')[0]}" for m, _ in members]) if members else []
        out = []
        for (member, expires), count in zip(members, counts, strict=True):
            hexkey, limit = member.split(":")
            claim = UseClaim(bytes.fromhex(hexkey), int(limit), expires, "")
            out += [[claim.slot_key(s).hex(), expires] for s in range(min(int(count or 0), claim.limit))]
        return out

    async def bridge_config(self, community_id: str) -> dict:
        """What a gate bridge needs to decide offline (pushed by the gate hub)."""
        conf = await self.community_settings(community_id)
        return {"format": 1, "keys": await self.published_keys(),
                "revoked": await self.revoked_subjects(community_id),
                "nonces": await self.used_nonces(community_id),
                "skew_seconds": self.skew, "time_zone": conf.time_zone,
                "code_seconds": conf.code_seconds}

    # -- revocation ---------------------------------------------------------------------------------

    async def revoke(self, community_id: str, subject: str, until: datetime, reason: str,
                     by: str) -> None:
        """Refuse every code of `subject` (a pass id, or a resident/staff id) until `until`."""
        cid = ObjectId(community_id)
        await self.db.pass_revocations.update_one(
            {"_id": f"{community_id}:{subject}"},
            {"$set": {"community_id": cid, "subject": subject, "reason": reason, "by": by,
                      "at": self.clock.now()}, "$max": {"until": until}}, upsert=True)
        # Written to MongoDB first: a set without "*" is reloaded from there on the next check.
        await self.redis.sadd(f"revoked:{community_id}", subject)
        await announce_config(self.redis, community_id)

    async def lift(self, community_id: str, subject: str) -> None:
        result = await self.db.pass_revocations.delete_one({"_id": f"{community_id}:{subject}"})
        if result.deleted_count == 0:
            raise NotFound("no such revocation")
        await self.redis.delete(f"revoked:{community_id}")  # reloaded from MongoDB at next check
        await announce_config(self.redis, community_id)

    async def suspend(self, community_id: str, subject_id: str, reason: str, by: str,
                      days: int = 365) -> None:
        """Suspend a resident's (or staff member's) codes at once."""
        object_id(subject_id, "subject")
        await self.revoke(community_id, subject_id, self.clock.now() + timedelta(days=days), reason, by)

    # -- visitor and worker passes -----------------------------------------------------------------

    async def _gates_for(self, community_id: str, room_path: str | None,
                         codes: list[str] | None) -> list[str]:
        """Gate codes for a pass: given ones must exist (and cover the room when there is one);
        default: the non-barrier gates covering the room (main gate and unit door)."""
        gates = await self.places.gates(community_id)
        by_code = {g["code"]: g for g in gates}
        if codes is None:
            chosen = [g["code"] for g in gates if g["kind"] != "barrier"
                      and (room_path is None or gate_covers(g["covers"], room_path))]
        else:
            bad = [c for c in codes if c not in by_code or (
                room_path is not None and not gate_covers(by_code[c]["covers"], room_path))]
            if bad:
                raise Invalid("unknown gate or one not leading to the room",
                              fields={"gates": Text("not allowed: {gates}", gates=", ".join(bad))})
            chosen = sorted(set(codes))
        if not chosen:
            raise Invalid("no gate for this pass", fields={"gates": "choose at least one"})
        return chosen

    def _check_window(self, valid_from: datetime, valid_to: datetime, max_days: int | None) -> None:
        now = self.clock.now()
        if valid_to <= valid_from:
            raise Invalid("the pass ends before it starts", fields={"valid_to": "after valid_from"})
        if valid_to <= now:
            raise Invalid("the pass is already over", fields={"valid_to": "must be in the future"})
        if max_days is not None and valid_to > now + timedelta(days=max_days):
            raise Invalid(Text("at most {days} days ahead", days=max_days),
                          fields={"valid_to": Text("within {days} days", days=max_days)})

    async def _create(self, community_id: str, *, kind: str, origin: str, owner: dict,
                      visitor: dict, purpose: str, room_path: str | None, gates: list[str],
                      valid_from: datetime, valid_to: datetime, max_entries: int,
                      hours: tuple[int, int] | None, refresh: bool, approval_ref: str | None = None,
                      reason: str = "", days: list[str] | None = None) -> dict:
        now = self.clock.now()
        doc = {"_id": ObjectId(), "community_id": ObjectId(community_id), "kind": kind,
               "origin": origin, "owner": owner, "visitor": visitor, "purpose": purpose,
               "host_room": room_path, "gates": gates, "valid_from": valid_from,
               "valid_to": valid_to, "max_entries": max_entries,
               "hours": list(hours) if hours else None, "refresh": refresh,
               "days": working_days(days),
               "share_id": secrets.token_urlsafe(18), "approval_ref": approval_ref,
               "state": "active", "token": None, "created_at": now,
               "history": [{"at": now, "by": f"{owner['kind']}:{owner['id']}", "action": "created",
                            "reason": reason or purpose}]}
        if not refresh:
            # Printed or shown once: one token for the whole validity.
            doc["token"] = await self._pass_token(doc, int(valid_from.timestamp()),
                                                  int(valid_to.timestamp()))
        await self.db.passes.insert_one(doc)
        return doc

    async def _pass_token(self, doc: dict, not_before: int, expires: int) -> str:
        return await self._sign(str(doc["community_id"]), doc["kind"], str(doc["_id"]),
                                not_before, expires, tuple(doc["gates"]), doc["max_entries"],
                                tuple(doc["hours"]) if doc["hours"] else (0, QUARTERS_PER_DAY),
                                doc.get("days"))

    async def invite(self, principal: Principal, community_id: str, *, name: str,
                     phone: str | None, purpose: str, valid_from: datetime, valid_to: datetime,
                     max_entries: int, gates: list[str] | None, room_path: str | None) -> dict:
        """A resident invites a visitor; the pass page shows a code refreshed per lifetime."""
        conf = await self.community_settings(community_id)
        self._check_window(valid_from, valid_to, conf.invitation_max_days)
        rooms = rooms_in(principal.links, community_id)
        if room_path is None and len(rooms) == 1:
            room_path = rooms[0]
        if room_path not in rooms:
            raise Invalid("choose one of your rooms", fields={"room_path": ", ".join(rooms)})
        chosen = await self._gates_for(community_id, room_path, gates)
        return await self._create(community_id, kind="visitor", origin="invitation",
                                  owner={"kind": "resident", "id": principal.id},
                                  visitor={"name": name, "phone": phone, "company": None},
                                  purpose=purpose, room_path=room_path, gates=chosen,
                                  valid_from=valid_from, valid_to=valid_to,
                                  max_entries=max_entries, hours=None, refresh=True)

    async def walk_in(self, principal: Principal, community_id: str, *, name: str,
                      phone: str | None, purpose: str, room_path: str, hours_valid: int,
                      gates: list[str] | None) -> dict:
        """Security registers a visitor at the gatehouse; the pass is printed (one token)."""
        await self.places.room(community_id, room_path)
        now = self.clock.now()
        chosen = await self._gates_for(community_id, room_path, gates)
        return await self._create(community_id, kind="visitor", origin="walkin",
                                  owner={"kind": "staff", "id": principal.id},
                                  visitor={"name": name, "phone": phone, "company": None},
                                  purpose=purpose, room_path=room_path, gates=chosen,
                                  valid_from=now, valid_to=now + timedelta(hours=hours_valid),
                                  max_entries=1, hours=None, refresh=False)

    async def worker_pass(self, principal: Principal, community_id: str, *, name: str,
                          phone: str | None, company: str | None, purpose: str,
                          room_path: str | None, gates: list[str], valid_from: datetime,
                          valid_to: datetime, hours: tuple[int, int], max_entries: int,
                          approval_ref: str, days: list[str] | None = None) -> dict:
        """Decoration workers, cleaners, contractors: daily hours on working days (None:
        every day) within a date range."""
        conf = await self.community_settings(community_id)
        self._check_window(valid_from, valid_to, conf.worker_pass_max_days)
        if room_path is not None and await self.places.place_by_path(community_id, room_path) is None:
            raise Invalid("no such place", fields={"room_path": Text("no place {path}", path=repr(room_path))})
        chosen = await self._gates_for(community_id, room_path, gates)
        return await self._create(community_id, kind="worker", origin="worker",
                                  owner={"kind": "staff", "id": principal.id},
                                  visitor={"name": name, "phone": phone, "company": company},
                                  purpose=purpose, room_path=room_path, gates=chosen,
                                  valid_from=valid_from, valid_to=valid_to,
                                  max_entries=max_entries, hours=hours, refresh=False,
                                  approval_ref=approval_ref, days=days)

    async def issue_worker_pass(self, community_id: str, staff_id: str, place_path: str,
                                start: datetime, end: datetime, reason: str) -> str | None:
        """For a repair ticket: the assigned worker's pass to the room's doors for the visit."""
        staff = await self.staff.active_member(community_id, staff_id) or {}
        try:
            chosen = await self._gates_for(community_id, place_path, None)
        except Invalid:  # no gate leads there: the visit needs no pass
            return None
        doc = await self._create(community_id, kind="worker", origin="ticket",
                                 owner={"kind": "system", "id": "tickets"},
                                 visitor={"name": staff.get("name", ""), "phone": None,
                                          "company": None},
                                 purpose=reason, room_path=place_path, gates=chosen,
                                 valid_from=start, valid_to=end, max_entries=0, hours=None,
                                 refresh=False, approval_ref=reason)
        return str(doc["_id"])

    async def revoke_worker_pass(self, community_id: str, pass_id: str) -> None:
        doc = await self._find(community_id, pass_id)
        await self._cancel(doc, "system:tickets", "ticket changed")

    async def _find(self, community_id: str, pass_id: str) -> dict:
        doc = await self.db.passes.find_one({"_id": object_id(pass_id, "pass"),
                                             "community_id": ObjectId(community_id)})
        if doc is None:
            raise NotFound("pass not found")
        return doc

    async def get(self, principal: Principal, community_id: str, pass_id: str) -> dict:
        """Staff with passes.read see any pass; a resident only their own invitations."""
        doc = await self._find(community_id, pass_id)
        if not principal.is_staff and doc["owner"] != {"kind": "resident", "id": principal.id}:
            raise NotFound("pass not found")
        return doc

    async def find_passes(self, principal: Principal, community_id: str, kind: str | None = None,
                   limit: int = 200) -> list[dict]:
        query: dict = {"community_id": ObjectId(community_id)}
        if not principal.is_staff:
            query["owner.id"] = principal.id
        if kind:
            query["kind"] = kind
        return await self.db.passes.find(query).sort("created_at", DESCENDING).limit(limit).to_list(None)

    async def cancel(self, principal: Principal, community_id: str, pass_id: str,
                     reason: str = "") -> dict:
        doc = await self.get(principal, community_id, pass_id)
        if principal.is_staff and not permitted(principal, community_id, "passes.revoke"):
            raise Forbidden("passes.revoke is not allowed for your role here")
        return await self._cancel(doc, f"{principal.kind}:{principal.id}", reason or "cancelled")

    async def _cancel(self, doc: dict, by: str, reason: str) -> dict:
        entry = {"at": self.clock.now(), "by": by, "action": "cancelled", "reason": reason}
        updated = await self.db.passes.find_one_and_update(
            {"_id": doc["_id"], "state": "active"},
            {"$set": {"state": "cancelled"}, "$push": {"history": entry}},
            return_document=ReturnDocument.AFTER)
        if updated is None:
            raise Conflict("the pass is already cancelled")
        await self.revoke(str(doc["community_id"]), str(doc["_id"]),
                          doc["valid_to"] + timedelta(seconds=ENTRY_COUNT_RETENTION), reason, by)
        return updated

    async def entries_used(self, doc: dict) -> int:
        """Entries taken (refused attempts beyond the limit also count in Redis: not shown)."""
        [used] = await self.uses.mget(f"uses:{doc['_id']}")  # the claim key is the id
        used = int(used or 0)
        return min(used, doc["max_entries"]) if doc["max_entries"] else used

    async def state(self, doc: dict) -> str:
        now = self.clock.now()
        if doc["state"] == "cancelled":
            return "cancelled"
        if now >= doc["valid_to"]:
            return "expired"
        if doc["max_entries"] and await self.entries_used(doc) >= doc["max_entries"]:
            return "used_up"
        return "not_yet_valid" if now < doc["valid_from"] else "active"

    async def trail(self, doc: dict) -> list[dict]:
        """Created, each use (gate, time, result), cancelled, expired: oldest first."""
        uses = await self.access_log.query(str(doc["community_id"]), pass_id=str(doc["_id"]),
                                           limit=200)
        events = [*doc["history"],
                  *({"at": u["at"], "by": f"gate:{u['gate_id']}", "action": "used",
                     "reason": u["reason"], "result": u["result"], "gate_id": u["gate_id"],
                     "direction": u["direction"]} for u in uses["items"])]
        if doc["state"] == "active" and self.clock.now() >= doc["valid_to"]:
            events.append({"at": doc["valid_to"], "by": "system", "action": "expired", "reason": ""})
        return sorted(events, key=lambda e: (e["at"], TRAIL_ORDER[e["action"]]))

    async def by_share_id(self, share_id: str) -> dict:
        doc = await self.db.passes.find_one({"share_id": share_id})
        if doc is None:
            raise NotFound("no such pass")
        return doc

    async def current_token(self, doc: dict) -> dict:
        """The code to show now: the static token, or one minted for this lifetime window."""
        state = await self.state(doc)
        if state != "active":
            return {"state": state, "token": None, "expires_at": None}
        if doc["token"]:
            return {"state": state, "token": doc["token"], "expires_at": doc["valid_to"]}
        conf = await self.community_settings(str(doc["community_id"]))
        now = int(self.clock.time())
        expires = min(now + conf.code_seconds, int(doc["valid_to"].timestamp()))
        return {"state": state, "token": await self._pass_token(doc, now, expires),
                "expires_at": from_timestamp(expires)}
