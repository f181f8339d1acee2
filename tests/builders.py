"""Test data: a small community with places, gates, staff of every role and residents.

Staff tokens are minted through the real token path (AuthManager.start_session);
the login endpoints themselves are covered by test_auth.py.
"""

from dataclasses import dataclass, field

from models.access import STAFF_ROLES, Principal
from models.key_cache import announce
from models.people import _hasher

STAFF_PASSWORD = "correct horse battery"
_PASSWORD_HASH = _hasher.hash(STAFF_PASSWORD)  # once: argon2 is slow on purpose


@dataclass
class Community:
    id: str
    code: str
    staff: dict[str, str] = field(default_factory=dict)  # role -> staff id
    tokens: dict[str, str] = field(default_factory=dict)  # role -> access token
    gates: dict[str, str] = field(default_factory=dict)  # code -> gate id
    places: dict[str, str] = field(default_factory=dict)  # path -> place id


async def make_community(app, code: str) -> Community:
    """Community `code` with building 1, unit 1-1, rooms 1-1-101/102, a main and a unit gate."""
    doc = await app.places.create_community(f"Garden {code}", code, address=f"{code} Road 1")
    c = Community(id=str(doc["_id"]), code=code)
    for path in ("1", "1-1", "1-1-101", "1-1-102", "1-2", "1-2-101"):
        c.places[path] = str((await app.places.create_place(c.id, path))["_id"])
    for gate_code, kind, covers in (("main", "pedestrian", [""]), ("u1-1", "unit_door", ["1-1"])):
        gate = await app.places.create_gate(c.id, gate_code, gate_code, kind, covers)
        c.gates[gate_code] = str(gate["_id"])
    for role in STAFF_ROLES:
        result = await app.db.staff.insert_one({
            "username": f"{code}-{role}".replace("_", "-"), "password_hash": _PASSWORD_HASH,
            "name": role, "roles": {c.id: [role]}, "active": True})
        c.staff[role] = str(result.inserted_id)
        c.tokens[role] = (await app.auth.start_session(c.staff[role], "staff"))["access_token"]
    return c


async def make_resident(app, community: Community, name: str, room: str = "1-1-101",
                        relation: str = "owner", lease_end=None) -> tuple[str, str]:
    """A resident with an approved link to `room`; returns (resident id, access token)."""
    resident = await app.residents.from_wechat(f"openid-{name}", None, None)
    rid = str(resident["_id"])
    link = await app.bindings.request(rid, community.id, room, relation, lease_end)
    admin = Principal("staff", community.staff["admin"], {community.id: frozenset({"admin"})})
    await app.bindings.decide(admin, community.id, str(link["_id"]), "approve")
    return rid, (await app.auth.start_session(rid, "resident"))["access_token"]


async def make_platform_admin(app, username: str = "boss") -> str:
    """A platform admin (what `python -m server bootstrap` creates); returns an access token."""
    doc = await app.staff.create(username, STAFF_PASSWORD, username, {}, platform_admin=True)
    return (await app.auth.start_session(str(doc["_id"]), "staff"))["access_token"]


async def change_directly(app, collection: str, query: dict, update: dict) -> None:
    """A change no manager offers (a test's set-up: a staff member's name…), announced as its
    manager would, so no process answers from its copy (models/key_cache.py)."""
    doc = await app.db[collection].find_one_and_update(query, update)
    await announce(app.redis, f"{collection}:{doc['_id']}")
