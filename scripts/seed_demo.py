"""Seed "Demo Garden": 3 buildings, 204 rooms, residents, one account per staff role, 4 gates.

Runs on every `make run` (scripts/demo.py) and does nothing the second time (the
community's code is unique). The `admin` account is made by the bootstrap tool, as
an operator would (a platform admin), and is also Demo Garden's admin. Residents
log in through the fake WeChat server with the login code `user-<name>-<anything>`;
staff with the username and password printed.
"""

import json
from pathlib import Path

from models.access import STAFF_ROLES, Principal
from models.common import Clock
from scripts.fake_wechat import openid_for
from scripts.seed_tickets import seed_tickets
from server.bootstrap import create_first_admin

CODE = "demo-garden"
STAFF_PASSWORD = "demo-password"
BUILDINGS, UNITS, FLOORS, ROOMS_PER_FLOOR = 3, 2, 17, 2
GATES = (("main", "South main gate 南大门", "pedestrian", [""]),
         ("car", "Car barrier 车行道闸", "barrier", [""]),
         ("u1-1", "Building 1 unit 1 door 1栋1单元", "unit_door", ["1-1"]),
         ("u2-1", "Building 2 unit 1 door 2栋1单元", "unit_door", ["2-1"]))
# (name, room, relation): the first of each room is its owner.
RESIDENTS = [(f"r{b}{u}{f:02d}", f"{b}-{u}-{f:02d}01", "owner")
             for b in range(1, BUILDINGS + 1) for u in range(1, UNITS + 1) for f in (1, 5, 9, 13)]
RESIDENTS += [("zhang", "1-1-0101", "family"), ("li", "1-1-0502", "tenant")]


def room_paths():
    for building in range(1, BUILDINGS + 1):
        for unit in range(1, UNITS + 1):
            for floor in range(1, FLOORS + 1):
                for room in range(1, ROOMS_PER_FLOOR + 1):
                    yield f"{building}-{unit}-{floor:02d}{room:02d}"


async def seed_demo(app) -> None:
    """Create the demo community unless it exists."""
    if await app.db.communities.find_one({"code": CODE}) is None:
        await _create(app)


async def _create(app) -> None:
    community = await app.places.create_community(
        "Demo Garden 演示花园", CODE, address="1 Demo Road, Hangzhou 杭州市演示路1号")
    cid = str(community["_id"])
    for building in range(1, BUILDINGS + 1):
        await app.places.create_place(cid, str(building), name=f"Building {building} {building}栋")
        for unit in range(1, UNITS + 1):
            await app.places.create_place(cid, f"{building}-{unit}", name=f"{building}栋{unit}单元")
    for path in room_paths():
        await app.places.create_place(cid, path, area_m2=89.5 if path.endswith("01") else 118.0)
    for code, name, kind, covers in GATES:
        await app.places.create_gate(cid, code, name, kind, covers)

    staff_ids = {}
    for role in STAFF_ROLES:
        username = role.replace("_", "-")
        if role == "admin":
            await create_first_admin(app.config, username, "Demo admin", STAFF_PASSWORD,
                                     add_another=True)
            member = await app.staff.add_to_community(cid, username, [role])
        else:
            member = await app.staff.create(username, STAFF_PASSWORD, f"Demo {role}", {cid: [role]})
        staff_ids[role] = str(member["_id"])

    office = Principal("staff", staff_ids["admin"], {cid: frozenset({"admin"})})
    lease_end = Clock().now().replace(year=Clock().now().year + 1)
    for index, (name, room, relation) in enumerate(RESIDENTS):
        openid = openid_for(app.config.wechat_appid, name)
        resident = await app.residents.from_wechat(openid, None, f"1380000{index:04d}", name)
        link = await app.bindings.request(str(resident["_id"]), cid, room, relation,
                                          lease_end if relation == "tenant" else None)
        await app.bindings.decide(office, cid, str(link["_id"]), "approve")
    await seed_tickets(app, cid, app.clock.now())


async def demo_bridge_credentials(app, path: Path) -> Path:
    """Fresh secrets for the demo gates' bridges, written where the simulator reads them."""
    community = await app.db.communities.find_one({"code": CODE})
    cid = str(community["_id"])
    creds = [await app.bridges.provision(cid, str(gate["_id"]), "demo")
             for gate in await app.places.gates(cid)]
    path.write_text(json.dumps([{"bridge_id": c["bridge_id"], "secret": c["secret"]}
                                for c in creds]))
    path.chmod(0o600)
    return path


def login_help() -> str:
    """The demo logins, one staff account per role (at /admin or POST /api/auth/staff)."""
    lines = ["Demo logins (staff: at /admin or POST /api/auth/staff; "
             f"every staff password: {STAFF_PASSWORD}):"]
    lines += [f"  {role:<17} username {role.replace('_', '-')}"
              + ("  (also the platform admin: every community)" if role == "admin" else "")
              for role in STAFF_ROLES]
    lines.append("  resident          POST /api/auth/wechat  code: user-zhang-1 (or user-r1101-1, "
                 "user-li-1 ...; each code works once, so change the last part)")
    return "\n".join(lines)
