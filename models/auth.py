"""Logins and tokens.

Access tokens: short-lived HS256 JWTs, audience per client type ("staff",
"resident"). Refresh tokens: opaque, stored server-side (only their hash), one
use each; a refresh token used twice means it was stolen, so the whole family
(every token descended from that login) is revoked. Logout revokes the family,
and access tokens of a revoked family stop working at once (Redis denylist). MongoDB is
authoritative (`revoked` on the family's refresh tokens, the staff account's `generation`):
a Redis that lost them is rebuilt from there before a token is accepted (`revocations:seeded`,
models/seeding.py), so signed-out and ended sessions stay ended across a Redis restart.

Browser sessions (the staff admin view, docs/admin.md): the refresh token lives in an
HttpOnly, SameSite=Strict cookie scoped to the session path, so page scripts never see
it; calls that cookie authenticates must carry the CSRF token (an HMAC of the login's
family, also in a readable cookie) as a header; the access token goes to the page's
memory only.
"""

import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from pymongo import ASCENDING, IndexModel, ReturnDocument

from models.access import Principal
from models.bindings import links_key, roles_of
from models.errors import Forbidden, Unauthorized
from models.messages import Text
from models.key_cache import set_announced
from models.seeding import Seeded
from models.people import sessions_key, verify_password
from models.rate_limits import RateLimits, Window

INDEXES = {
    "refresh_tokens": [
        IndexModel([("family", ASCENDING)]),
        IndexModel([("expires_at", ASCENDING)], expireAfterSeconds=0),
        IndexModel([("issued_at", ASCENDING)]),  # rebuilding the denylist
    ],
}

ISSUER = "xiaoqu"
AUDIENCES = ("staff", "resident")
ALGORITHM = "HS256"
SPRAY_FACTOR = 4  # an address may fail this many times the per-account limit in all
VERIFIED_TOKENS = 4096  # claims of recently verified access tokens kept per process
SEEDED = "revocations:seeded"  # present while Redis holds every revocation still in force


SESSION_PATH = "/api/auth/session"  # the only path the refresh cookie is sent to
REFRESH_COOKIE = "xiaoqu_refresh"
CSRF_COOKIE = "xiaoqu_csrf"
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True)
class Cookie:
    name: str
    value: str
    path: str
    http_only: bool
    max_age: int  # seconds; 0 deletes it


@dataclass(frozen=True)
class BrowserSession:
    """A staff login as a browser holds it: cookies to set, and what page scripts may see."""

    access: dict  # access_token, token_type, expires_in, audience — never the refresh token
    cookies: tuple[Cookie, ...]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AuthManager:
    def __init__(self, db, redis, clock, settings, residents, staff, bindings, wechat, keys):
        self.db = db
        self.redis = redis
        self.keys = keys
        self.clock = clock
        self.settings = settings
        self.key = settings.jwt_secret.get_secret_value()
        self.residents = residents
        self.staff = staff
        self.bindings = bindings
        self.wechat = wechat
        self.limits = RateLimits(redis)
        # A client reuses its access token for many requests (a resident's phone re-fetches its
        # gate code all day), and the signature check is the costliest step of `principal`.
        # Claims of a verified token are kept; expiry and revocation are still checked each time.
        # Failures raise, so they are never cached.
        self._verified_claims = functools.lru_cache(maxsize=VERIFIED_TOKENS)(self._decode)
        # token -> (the room links' cache entry it was built from, valid from, until, caller)
        self._residents: dict[str, tuple[str, float, float, Principal]] = {}
        self.revocations = Seeded(redis, SEEDED, self._seed_revocations)

    # -- logins ---------------------------------------------------------------

    async def login_staff(self, username: str, password: str, ip: str) -> dict:
        """Password login. Failures lock the (username, address) pair, so an attacker
        cannot lock a colleague out from elsewhere; an address failing across many
        usernames (password spraying) is locked as a whole. Each attempt is counted
        before its password is checked, and given back only when it was right."""
        limit, seconds = self.settings.login_max_failures, self.settings.login_lockout_seconds
        account = Window("login", (username, ip), limit, seconds)
        address = Window("login_address", (ip,), limit * SPRAY_FACTOR, seconds)
        await self.limits.take(account, address, message="too many failed logins; try later",
                               code="locked_out")
        member = await self.staff.by_username(username)
        if not await verify_password(member and member["password_hash"], password):
            raise Unauthorized("wrong username or password", code="bad_credentials")
        await self.limits.reset(account)
        await self.limits.give_back(address)
        return await self.start_session(str(member["_id"]), "staff")

    async def login_resident(self, code: str, phone_code: str | None) -> dict:
        session = await self.wechat.code_to_session(code)
        phone = await self.wechat.phone_number(phone_code) if phone_code else None
        if phone and (claimed := await self.residents.claim_preregistered(
                session.openid, phone, self.bindings.move_links)):
            await self.bindings.forget(claimed)
        resident = await self.residents.from_wechat(session.openid, session.unionid, phone)
        return await self.start_session(str(resident["_id"]), "resident")

    # -- browser sessions (cookie-held refresh token, CSRF header) -------------------

    async def open_browser_session(self, username: str, password: str, ip: str) -> BrowserSession:
        return await self._browser_session(await self.login_staff(username, password, ip))

    async def refresh_browser_session(self, refresh_token: str | None,
                                      csrf: str | None) -> BrowserSession:
        await self._check_csrf(refresh_token, csrf)
        return await self._browser_session(await self.refresh(refresh_token))

    async def close_browser_session(self, refresh_token: str | None,
                                    csrf: str | None) -> BrowserSession:
        """Sign out: the login is revoked and the browser told to drop both cookies."""
        family = await self._check_csrf(refresh_token, csrf)
        await self.revoke_family(family)
        return BrowserSession(access={}, cookies=(
            Cookie(REFRESH_COOKIE, "", SESSION_PATH, True, 0), Cookie(CSRF_COOKIE, "", "/", False, 0)))

    def _csrf_token(self, family: str) -> str:
        return hmac.new(self.key.encode(), f"csrf:{family}".encode(), hashlib.sha256).hexdigest()

    async def _check_csrf(self, refresh_token: str | None, csrf: str | None) -> str:
        """The login family the cookie belongs to, once the header proves a page of ours sent it."""
        if not refresh_token:
            raise Unauthorized("no session: sign in first", code="bad_refresh_token")
        doc = await self.db.refresh_tokens.find_one({"_id": _digest(refresh_token)})
        if doc is None or doc["aud"] != "staff":
            raise Unauthorized("refresh token is invalid or expired", code="bad_refresh_token")
        if not csrf or not hmac.compare_digest(csrf, self._csrf_token(doc["family"])):
            raise Forbidden(Text("missing or wrong {header} header", header=CSRF_HEADER), code="csrf_failed")
        return doc["family"]

    async def _browser_session(self, tokens: dict) -> BrowserSession:
        doc = await self.db.refresh_tokens.find_one({"_id": _digest(tokens["refresh_token"])})
        max_age = self.settings.refresh_token_days * 86400
        access = {k: v for k, v in tokens.items() if k != "refresh_token"}
        return BrowserSession(access=access, cookies=(
            Cookie(REFRESH_COOKIE, tokens["refresh_token"], SESSION_PATH, True, max_age),
            Cookie(CSRF_COOKIE, self._csrf_token(doc["family"]), "/", False, max_age)))

    # -- tokens ---------------------------------------------------------------

    async def refresh(self, refresh_token: str) -> dict:
        now = self.clock.now()
        digest = _digest(refresh_token)
        # Marking it used is the atomic step: of two concurrent refreshes, one wins.
        doc = await self.db.refresh_tokens.find_one_and_update(
            {"_id": digest, "used_at": None, "revoked": False, "expires_at": {"$gt": now}},
            {"$set": {"used_at": now}}, return_document=ReturnDocument.AFTER)
        if doc is None:
            stale = await self.db.refresh_tokens.find_one({"_id": digest})
            if stale is not None and stale["used_at"] is not None and not stale["revoked"]:
                await self.revoke_family(stale["family"])
                raise Unauthorized("refresh token was already used; this login is revoked",
                                   code="refresh_reused")
            raise Unauthorized("refresh token is invalid or expired", code="bad_refresh_token")
        return await self._issue(doc["sub"], doc["aud"], doc["family"], doc.get("gen"))

    async def logout(self, refresh_token: str, principal: Principal) -> None:
        doc = await self.db.refresh_tokens.find_one({"_id": _digest(refresh_token)})
        if doc is None or doc["sub"] != principal.id:
            raise Unauthorized("refresh token is invalid", code="bad_refresh_token")
        await self.revoke_family(doc["family"])

    async def revoke_family(self, family: str) -> None:
        await self.db.refresh_tokens.update_many({"family": family}, {"$set": {"revoked": True}})
        # Access tokens of this family live at most this long; deny them until then.
        await set_announced(self.redis, f"revoked_family:{family}", 1,
                            ex=self.settings.access_token_seconds, here=self.keys)

    async def _seed_revocations(self, pipe) -> None:
        """Deny again every revoked family that may still have a live access token: one is
        issued with each refresh token (same `issued_at`) and lives ACCESS_TOKEN_SECONDS."""
        lifetime = timedelta(seconds=self.settings.access_token_seconds)
        now = self.clock.now()
        last_issued: dict[str, datetime] = {}
        recent = {"revoked": True, "issued_at": {"$gt": now - lifetime}}
        async for doc in self.db.refresh_tokens.find(recent, {"family": 1, "issued_at": 1}):
            family, issued = doc["family"], doc["issued_at"]
            last_issued[family] = max(issued, last_issued.get(family, issued))
        for family, issued in last_issued.items():
            pipe.set(f"revoked_family:{family}", 1,
                     ex=max(1, int((issued + lifetime - now).total_seconds()) + 1))
        await self.staff.seed_generations(pipe)

    async def _revocation_state(self, *keys: str) -> list:
        """The keys' values with the denylist known to be complete (rebuilt if Redis lost it)."""
        return await self.revocations.mget(*keys, first=self.keys.mget)

    async def principal(self, access_token: str) -> Principal:
        """Verify an access token and build the caller it proves."""
        try:
            claims = self._verified_claims(access_token)
        except jwt.InvalidTokenError:
            raise Unauthorized("access token is invalid", code="bad_token") from None
        if claims["exp"] <= self.clock.time():
            raise Unauthorized("access token expired", code="token_expired")
        revoked_key = f"revoked_family:{claims['fam']}"
        if claims["aud"] == "staff":
            revoked, generation = await self._revocation_state(revoked_key,
                                                               sessions_key(claims["sub"]))
            if revoked:
                raise Unauthorized("this login was signed out", code="token_revoked")
            if generation is not None and int(generation) > claims.get("gen", 0):
                raise Unauthorized("your access was changed; sign in again", code="session_ended")
            roles = {cid: frozenset(r) for cid, r in claims.get("roles", {}).items()}
            return Principal(kind="staff", id=claims["sub"], roles=roles, expires=claims["exp"],
                             platform_admin=claims.get("plat", False))
        # The revocation flag and the cached room links: on every resident request's path,
        # answered from this process's copies while they are current (models/key_cache.py).
        revoked, cached = await self._revocation_state(revoked_key, links_key(claims["sub"]))
        if revoked:
            raise Unauthorized("this login was signed out", code="token_revoked")
        # The caller is a function of the token, the room links read just now and the time
        # (a lease ending): built again only when one of those changes it.
        now = self.clock.time()
        built = self._residents.get(access_token)
        if built is not None and built[0] == cached and built[1] <= now < built[2]:
            return built[3]
        links = await self.bindings.active_links(claims["sub"], cached=cached)
        principal = Principal(kind="resident", id=claims["sub"], roles=roles_of(links),
                              links=tuple(links), expires=claims["exp"])
        if cached is not None:
            ends = min((link["lease_end"] for link in links if link["lease_end"] is not None),
                       default=float("inf"))
            self._residents[access_token] = (cached, now, ends, principal)
            if len(self._residents) > VERIFIED_TOKENS:
                del self._residents[next(iter(self._residents))]  # the oldest
        return principal

    def _decode(self, access_token: str) -> dict:
        # PyJWT checks times against the wall clock; ours is app.clock (tests move it).
        return jwt.decode(access_token, self.key, algorithms=[ALGORITHM],
                          audience=list(AUDIENCES), issuer=ISSUER,
                          options={"require": ["exp", "sub", "aud", "fam"],
                                   "verify_exp": False, "verify_iat": False})

    async def start_session(self, sub: str, aud: str) -> dict:
        """New tokens for a fresh login (a new refresh-token family)."""
        return await self._issue(sub, aud, secrets.token_urlsafe(12))

    async def _issue(self, sub: str, aud: str, family: str, generation: int | None = None) -> dict:
        """Tokens for `sub`; a refresh passes the staff generation its login started under."""
        now = self.clock.now()
        claims = {"iss": ISSUER, "sub": sub, "aud": aud, "fam": family, "iat": now,
                  "exp": now + timedelta(seconds=self.settings.access_token_seconds)}
        if aud == "staff":
            # Roles ride in the token (read fresh at every refresh), so staff requests need no
            # lookup; the generation ends the login when the member's access changes.
            member = await self.staff.active_by_id(sub)
            if member is None:
                raise Unauthorized("account disabled", code="account_disabled")
            claims["gen"] = member.get("generation", 0)
            if generation is not None and generation != claims["gen"]:
                await self.revoke_family(family)
                raise Unauthorized("your access was changed; sign in again", code="session_ended")
            claims["roles"] = member.get("roles", {})
            if member.get("platform_admin"):
                claims["plat"] = True
        refresh_token = secrets.token_urlsafe(32)
        await self.db.refresh_tokens.insert_one(
            {"_id": _digest(refresh_token), "family": family, "sub": sub, "aud": aud,
             "gen": claims.get("gen"), "issued_at": now, "used_at": None, "revoked": False,
             "expires_at": now + timedelta(days=self.settings.refresh_token_days)})
        return {"access_token": jwt.encode(claims, self.key, algorithm=ALGORITHM),
                "refresh_token": refresh_token, "token_type": "Bearer",
                "expires_in": self.settings.access_token_seconds, "audience": aud}
