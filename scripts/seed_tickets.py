"""A realistic month of tickets for a community, made by replaying it through the managers.

`seed_tickets(app, community_id, now)` walks 30 days up to `now` with a manual
clock: residents report repairs and complaints, customer service dispatches,
the maintenance worker arrives (mostly on time), residents rate, customer
service calls back. Some jobs are reworked, cancelled, urged, late or still
open, so the KPI endpoint has meaningful numbers. Nobody is notified while
replaying. Does nothing when the community already has tickets.
"""

import random
from datetime import datetime, timedelta

from bson import ObjectId

from models.access import Principal
from models.common import ManualClock
from models.sla import SlaWatcher
from models.tickets import REPAIR_CATEGORIES

TICKETS = 60
DAYS = 30
# (kind, category, area) with weights: what residents of a 200-room community report in a month.
REPORTS = [
    (("repair", "plumbing", "room"), 10), (("repair", "drain", "room"), 6),
    (("repair", "electrical", "room"), 5), (("repair", "water_leak", "room"), 4),
    (("repair", "lock", "room"), 3), (("repair", "door_window", "room"), 4),
    (("repair", "lights", "stairwell"), 6), (("repair", "lift", "lift"), 3),
    (("repair", "gate", "gate"), 2), (("repair", "pipe_burst", "pipe"), 1),
    (("repair", "green_area", "green_area"), 2),
    (("complaint", "hygiene", "stairwell"), 4), (("complaint", "noise", "other"), 4),
    (("complaint", "service", "other"), 2), (("complaint", "fire_lane", "parking"), 2),
    (("complaint", "suggestion", "other"), 2),
]
# How a ticket's story ends, with weights.
ENDINGS = [("closed", 63), ("late", 7), ("rework", 2), ("unfollowed", 7), ("awaiting_rating", 6),
           ("in_progress", 6), ("new", 4), ("cancelled", 5)]
# Minutes from the report to the worker's arrival, by priority: (usual at most, late at least).
ARRIVAL = {"emergency": (4, 9), "urgent": (12, 25), "quick": (45, 95), "normal": (90, 300)}
DESCRIPTIONS = {
    "plumbing": "厨房水龙头漏水", "drain": "卫生间下水道堵塞", "electrical": "卧室插座没电",
    "water_leak": "天花板渗水", "lock": "入户门锁打不开", "door_window": "窗户关不严",
    "lights": "楼道灯不亮", "lift": "电梯运行有异响", "gate": "单元门禁刷码打不开",
    "pipe_burst": "楼道水管爆裂", "green_area": "绿化带喷头损坏", "hygiene": "楼道垃圾未及时清理",
    "noise": "楼上夜间装修噪音", "service": "前台电话无人接听", "fire_lane": "消防通道被车辆占用",
    "suggestion": "建议增加快递柜",
}
COMMENTS = {5: "师傅很专业，谢谢", 4: "处理及时", 3: "还行，等得有点久", 2: "来得太慢了"}


async def seed_tickets(app, community_id: str, now: datetime) -> int:
    """Create the month; returns how many tickets were made (0 if there were some already)."""
    cid = ObjectId(community_id)
    if await app.db.tickets.find_one({"community_id": cid}) is not None:
        return 0
    residents = await app.db.room_links.find({"community_id": cid, "state": "approved"}).to_list(None)
    staff = {role: await _staff(app, community_id, role)
             for role in ("customer_service", "maintenance", "manager")}
    if not residents or not staff["customer_service"] or not staff["maintenance"]:
        return 0
    rng = random.Random("xiaoqu demo month")  # the same month every time
    clock = ManualClock(now - timedelta(days=DAYS))
    story = _Story(app.tickets.replaying(clock), clock, community_id, staff, rng)
    gates = await app.places.gates(community_id)
    times = sorted(now - timedelta(minutes=rng.uniform(30, DAYS * 24 * 60)) for _ in range(TICKETS))
    for at in times:
        clock.current = at
        link = rng.choice(residents)
        kind, category, area = _pick(rng, REPORTS)
        await story.tell(link, kind, category, area, gates, _pick(rng, ENDINGS), now)
    # What the watcher would have flagged on the way (overdue open tickets), quietly.
    clock.current = now
    await SlaWatcher(app.db, app.redis, clock, story.tickets).run_once(now)
    return TICKETS


async def _staff(app, community_id: str, role: str) -> Principal | None:
    doc = await app.db.staff.find_one({f"roles.{community_id}": role, "active": True})
    return doc and Principal("staff", str(doc["_id"]),
                             {community_id: frozenset(doc["roles"][community_id])})


def _pick(rng: random.Random, weighted: list[tuple]):
    return rng.choices([item for item, _ in weighted], [w for _, w in weighted])[0]


class _Story:
    """One ticket's life, told step by step at the clock's times."""

    def __init__(self, tickets, clock, community_id, staff, rng):
        self.tickets = tickets
        self.clock = clock
        self.cid = community_id
        self.cs = staff["customer_service"]
        self.worker = staff["maintenance"]
        self.rng = rng

    async def tell(self, link, kind, category, area, gates, ending, now) -> None:
        resident = Principal("resident", str(link["resident_id"]),
                             {self.cid: frozenset({link["relation"]})})
        if area == "gate" and not gates:
            kind, category, area = "repair", "lights", "stairwell"
        unit = "-".join(link["room_path"].split("-")[:2])
        fields = {"kind": kind, "category": category, "area": area,
                  "description": DESCRIPTIONS[category],
                  "place_path": {"room": link["room_path"], "stairwell": unit, "lift": unit,
                                 "gate": unit}.get(area)}
        if area == "gate":
            fields["gate_id"] = str(self.rng.choice(gates)["_id"])
        if kind == "repair" and REPAIR_CATEGORIES[category] == "normal" and area == "room":
            start = self.clock.now() + timedelta(hours=self.rng.choice((3, 20, 26)))
            fields.update(preferred_start=start, preferred_end=start + timedelta(hours=2))
        ticket = await self.tickets.create(resident, self.cid, **fields)
        tid = str(ticket["_id"])
        self.ticket, self.resident, self.now = ticket, resident, now
        if ending == "new":
            return
        if ending == "cancelled":
            await self.step(resident, tid, "cancel", self.rng.uniform(2, 30), reason="solved it myself")
            return
        quick = ticket["priority"] in ("emergency", "urgent")  # a phone call, not the queue
        await self.step(self.cs, tid, "assign", self.rng.uniform(0.5, 3) if quick else
                        self.rng.uniform(2, 25),
                        assignee_id=self.worker.id if kind == "repair" else self.cs.id)
        if self.rng.random() < 0.15 and self.clock.now() < now:  # some urge while they wait
            await self.tickets.urge(resident, self.cid, tid)
        worker = self.worker if kind == "repair" else self.cs
        await self.step(worker, tid, "accept", self.rng.uniform(1, 3))
        if ending == "in_progress":
            return
        if kind == "repair":
            await self.arrive(worker, tid, ticket["priority"], late=ending == "late")
        await self.step(worker, tid, "resolve", self.rng.uniform(20, 120), notes="done, tested")
        if ending == "rework":
            await self.step(resident, tid, "reopen", self.rng.uniform(60, 600), reason="broke again")
            await self.step(worker, tid, "accept", 5)
            if kind == "repair":
                await self.arrive(worker, tid, ticket["priority"], late=False)
            await self.step(worker, tid, "resolve", 40, notes="replaced the part")
        if ending == "awaiting_rating":
            return
        rating = _pick(self.rng, [(5, 60), (4, 27), (3, 9), (2, 4)]) if ending != "late" else \
            _pick(self.rng, [(4, 40), (3, 40), (2, 20)])
        await self.step(resident, tid, "confirm", self.rng.uniform(30, 600), rating=rating,
                        comment=COMMENTS[rating])
        if ending == "unfollowed":
            return
        await self.step(self.cs, tid, "follow_up", self.rng.uniform(60, 1440), notes="回访：满意")
        await self.step(self.cs, tid, "close", 1)

    async def arrive(self, worker, tid, priority, late: bool) -> None:
        usual, slow = ARRIVAL[priority]
        if priority == "normal" and self.ticket.get("preferred_time"):
            # At the agreed time: arrive within the window.
            window = self.ticket["preferred_time"]
            target = window["start"] + timedelta(minutes=self.rng.uniform(0, 100 if not late else 180))
            minutes = max((target - self.clock.now()).total_seconds() / 60, 1)
        else:  # counted from the report, as the promise is
            after = self.rng.uniform(slow, slow * 2) if late else self.rng.uniform(usual * 0.4, usual)
            target = self.ticket["created_at"] + timedelta(minutes=after)
            minutes = max((target - self.clock.now()).total_seconds() / 60, 1)
        await self.step(worker, tid, "check_in", minutes)

    async def step(self, who, tid, action, after_minutes, **fields) -> None:
        self.clock.advance(after_minutes * 60)
        if self.clock.now() >= self.now:  # the story has not happened yet
            return
        await self.tickets.transition(who, self.cid, tid, action, **fields)
