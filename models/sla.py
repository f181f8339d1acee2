"""SLA clocks: priorities, per-community targets, pausing, breach and near-breach.

A ticket carries up to three clocks in `clocks` (plain dicts stored in the
ticket document, so they survive restarts):
- `on_site`  repairs: from the report until the worker checks in on site;
- `response` complaints: from the report until staff first act on it;
- `followup` every ticket: from resolution until customer service records the return call.

A clock stores its absolute `due` and `near` (80 % of the budget) times. While a
ticket waits for the resident (RESIDENT_STATES) its clocks are paused; on resume
both times move later by the pause. `sla_next_at` on the ticket is the earliest
moment any running clock needs attention; `SlaWatcher` polls that indexed field,
so nothing depends on in-memory timers and a restarted process picks up where
the last one stopped. One watcher works at a time, under a lease
(models/leases.py: a crashed holder's lease lapses and another process takes over).
"""

from datetime import datetime, timedelta

from models.errors import Invalid
from models.leases import DEFAULT_TTL, PREFIX, LeasedJob

PRIORITIES = ("emergency", "urgent", "quick", "normal", "complaint")
REPAIR_PRIORITIES = ("emergency", "urgent", "quick", "normal")
NEAR_RATIO = 0.8
# States where the resident is the one to act: every running clock pauses there.
RESIDENT_STATES = frozenset({"waiting_resident"})

# Minutes. "normal" repairs are due at the agreed visit time; without one, after
# `normal_minutes`.
DEFAULT_TARGETS = {
    "emergency_minutes": 5,
    "urgent_minutes": 15,
    "quick_minutes": 60,
    "normal_minutes": 24 * 60,
    "complaint_response_minutes": 24 * 60,
    "followup_minutes": 48 * 60,
}


# -- clocks (pure functions on the stored dicts) --------------------------------

def new_clock(now: datetime, budget: timedelta) -> dict:
    return {"start": now, "budget_s": budget.total_seconds(), "due": now + budget,
            "near": now + budget * NEAR_RATIO, "paused_at": None, "stopped_at": None,
            "result": None, "near_flagged": False}


def pause(clock: dict, now: datetime) -> None:
    if clock["stopped_at"] is None and clock["paused_at"] is None:
        clock["paused_at"] = now


def resume(clock: dict, now: datetime) -> None:
    if clock["paused_at"] is not None:
        shift = now - clock["paused_at"]
        clock["due"] += shift
        clock["near"] += shift
        clock["paused_at"] = None


def stop(clock: dict, now: datetime, counted: bool = True) -> None:
    """Stop a running clock; `counted=False` (cancelled) leaves it without a result."""
    if clock["stopped_at"] is not None:
        return
    resume(clock, now)
    clock["stopped_at"] = now
    if counted and clock["result"] is None:
        clock["result"] = "met" if now <= clock["due"] else "missed"


def retarget(clock: dict, budget: timedelta, now: datetime) -> None:
    """A new budget (priority changed, visit time agreed), keeping the pauses so far."""
    paused = clock["due"] - clock["start"] - timedelta(seconds=clock["budget_s"])
    clock["budget_s"] = budget.total_seconds()
    clock["due"] = clock["start"] + budget + paused
    clock["near"] = clock["start"] + budget * NEAR_RATIO + paused
    if clock["stopped_at"] is None:
        # Re-arm the warnings if the new budget moved them into the future.
        if clock["result"] == "missed" and now < clock["due"]:
            clock["result"] = None
        if now < clock["near"]:
            clock["near_flagged"] = False


def next_check(clock: dict) -> datetime | None:
    if clock["stopped_at"] is not None or clock["paused_at"] is not None or clock["result"]:
        return None
    return clock["due"] if clock["near_flagged"] else clock["near"]


def sla_next_at(clocks: dict) -> datetime | None:
    times = [t for c in clocks.values() if c and (t := next_check(c)) is not None]
    return min(times, default=None)


def tick(clock: dict, now: datetime) -> str | None:
    """Advance a clock to `now`: "breach", "near_breach" or None (nothing new)."""
    if next_check(clock) is None or now < next_check(clock):
        return None
    clock["near_flagged"] = True
    if now >= clock["due"]:
        clock["result"] = "missed"
        return "breach"
    return "near_breach"


def on_site_budget(priority: str, targets: dict, created_at: datetime,
                   agreed_end: datetime | None) -> timedelta:
    if priority == "normal" and agreed_end is not None:
        return max(agreed_end - created_at, timedelta(0))
    return timedelta(minutes=targets[f"{priority}_minutes"])


# -- targets --------------------------------------------------------------------

class SlaTargets:
    """Per-community targets, stored in `sla_targets` (id = community id); defaults otherwise."""

    def __init__(self, db):
        self.db = db

    async def get(self, community_id: str) -> dict:
        doc = await self.db.sla_targets.find_one({"_id": community_id}) or {}
        return {key: doc.get(key, default) for key, default in DEFAULT_TARGETS.items()}

    async def set(self, community_id: str, values: dict) -> dict:
        unknown = set(values) - set(DEFAULT_TARGETS)
        if unknown:
            raise Invalid("unknown target", fields={k: "unknown" for k in unknown})
        await self.db.sla_targets.update_one({"_id": community_id}, {"$set": values}, upsert=True)
        return await self.get(community_id)


# -- the watcher ----------------------------------------------------------------

class SlaWatcher:
    """Escalates due clocks. `run_once(now)` is one pass; `start()` runs passes under the
    `sla-watcher` lease (models/leases.py), so one instance works at a time."""

    LEASE = "sla-watcher"
    LOCK_KEY = PREFIX + LEASE
    LOCK_SECONDS = DEFAULT_TTL
    INTERVAL_SECONDS = 10.0
    BATCH = 200

    def __init__(self, db, redis, clock, tickets, interval: float | None = None,
                 lease_seconds: float | None = None, instance: str | None = None):
        self.db = db
        self.clock = clock
        self.tickets = tickets
        self.job = LeasedJob(redis, self.LEASE, self._pass,
                             interval=interval or self.INTERVAL_SECONDS,
                             ttl=lease_seconds or self.LOCK_SECONDS, instance=instance)

    async def lead(self) -> bool:
        """Take or keep the lease; True when this process should do the work."""
        return await self.job.lease.keep()

    async def run_once(self, now: datetime) -> int:
        """Escalate every clock that is due by `now`; returns how many escalations happened."""
        due = await self.db.tickets.find({"sla_next_at": {"$lte": now}}).sort(
            "sla_next_at", 1).limit(self.BATCH).to_list(None)
        escalations = 0
        for ticket in due:
            escalations += await self.tickets.escalate(ticket, now)
        return escalations

    async def _pass(self) -> None:
        await self.run_once(self.clock.now())

    def start(self) -> None:
        self.job.start()

    async def stop(self) -> None:
        await self.job.stop()
