"""Ticket KPIs per community and period, computed by the database.

A period is a calendar day, ISO week (Monday first) or month on the community's
wall clock (its time zone: a day across a daylight-saving change lasts 23 or 25
hours); it covers the tickets *reported* in it. One
aggregation with $facet does the counting; first-response percentiles come from
a sorted projection and are computed here (nearest-rank), because $percentile
needs MongoDB 7 and is approximate there.

Definitions (the figures the property plans promise, side by side):
- on-site timeliness (及时率) per priority: on-site clocks met / decided (met or missed);
- first response: report → first staff action, p50 / p90 in minutes;
- follow-up rate (回访率): followed-up / resolved (target 100 %);
- satisfaction: ratings ≥ 4 / rated (target ≥ 90 %, second grade 75 %);
- rework rate (返修率): reopened at least once / resolved (target ≤ 2 %);
- closed-loop rate (闭环率): closed / reported and not cancelled (target 100 %);
- urges: total urges, and tickets urged at least once.
"""

import math
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from bson import ObjectId

from models.errors import Invalid
from models.messages import Text
from models.places import community_zone
from models.sla import PRIORITIES
from models.equipment import figures as equipment_figures
from models.patrols import kpi_figures as patrol_figures
from models.surveys import latest_satisfaction

PERIODS = ("day", "week", "month")
MAX_SERIES = 31  # periods in one series (a month of days)
TARGETS = {
    "followup_rate": (">=", 1.0),
    "satisfaction_rate": (">=", 0.9),
    "rework_rate": ("<=", 0.02),
    "closed_loop_rate": (">=", 1.0),
    "on_site_timeliness": (">=", 1.0),
}


def window(period: str, day: date, zone: tzinfo) -> tuple[datetime, datetime]:
    """[start, end) of the period containing `day` in `zone`, as UTC datetimes."""
    if period == "day":
        first, last = day, day + timedelta(days=1)
    elif period == "week":
        first = day - timedelta(days=day.weekday())
        last = first + timedelta(days=7)
    elif period == "month":
        first = day.replace(day=1)
        last = (first + timedelta(days=32)).replace(day=1)
    else:
        raise Invalid("unknown period", fields={"period": Text("one of {choices}", choices=", ".join(PERIODS))})
    # A local midnight that a daylight-saving jump skips reads as the first moment after it.
    return (datetime.combine(first, time(), zone).astimezone(UTC),
            datetime.combine(last, time(), zone).astimezone(UTC))


def previous_periods(period: str, day: date, count: int, zone: tzinfo) -> list[date]:
    """A day in each of the `count` periods ending with the one containing `day`, oldest first."""
    days = [day]
    for _ in range(count - 1):
        start, _ = window(period, days[-1], zone)
        days.append(start.astimezone(zone).date() - timedelta(days=1))
    return days[::-1]


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    return sorted_values[max(math.ceil(q * len(sorted_values)), 1) - 1]


def rate(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def judged(name: str, value: float | None) -> dict:
    op, target = TARGETS[name]
    meets = None if value is None else (value >= target if op == ">=" else value <= target)
    return {"value": value, "target": target, "comparison": op, "meets": meets}


def _count_if(condition) -> dict:
    return {"$sum": {"$cond": [condition, 1, 0]}}


def _is_set(field: str) -> dict:
    return {"$gt": [{"$ifNull": [field, None]}, None]}


class KpiManager:
    def __init__(self, db, clock, places):
        self.db = db
        self.clock = clock
        self.places = places

    async def _zone_and_day(self, community_id: str, day: date | None) -> tuple[tzinfo, date]:
        """The community's zone, and `day` or else today on its wall clock."""
        zone = community_zone(await self.places.community(community_id))
        return zone, day or self.clock.now().astimezone(zone).date()

    async def report(self, community_id: str, period: str, day: date | None = None) -> dict:
        """The KPIs of the period containing `day` (default: the community's today)."""
        zone, day = await self._zone_and_day(community_id, day)
        return await self._report(community_id, period, window(period, day, zone))

    async def _report(self, community_id: str, period: str,
                      bounds: tuple[datetime, datetime]) -> dict:
        start, end = bounds
        match = {"community_id": ObjectId(community_id), "created_at": {"$gte": start, "$lt": end}}
        facets = {
            "by_kind": [{"$group": {"_id": "$kind", "n": {"$sum": 1}}}],
            "by_state": [{"$group": {"_id": "$state", "n": {"$sum": 1}}}],
            "by_priority": [{"$group": {"_id": "$priority", "n": {"$sum": 1}}}],
            "on_site": [
                {"$match": {"clocks.on_site.result": {"$in": ["met", "missed"]}}},
                {"$group": {"_id": "$priority", "decided": {"$sum": 1},
                            "met": _count_if({"$eq": ["$clocks.on_site.result", "met"]})}}],
            "response": [
                {"$match": {"first_response_at": {"$ne": None}}},
                {"$project": {"_id": 0, "minutes": {"$divide": [
                    {"$subtract": ["$first_response_at", "$created_at"]}, 60_000]}}},
                {"$sort": {"minutes": 1}}],
            "totals": [{"$group": {
                "_id": None,
                "tickets": {"$sum": 1},
                "cancelled": _count_if({"$eq": ["$state", "cancelled"]}),
                "closed": _count_if({"$eq": ["$state", "closed"]}),
                "resolved": _count_if(_is_set("$resolved_at")),
                "followed_up": _count_if(_is_set("$followed_up_at")),
                "rated": _count_if(_is_set("$rating")),
                "satisfied": _count_if({"$gte": [{"$ifNull": ["$rating", 0]}, 4]}),
                "reworked": _count_if({"$gt": ["$rework_count", 0]}),
                "urges": {"$sum": "$urge_count"},
                "urged_tickets": _count_if({"$gt": ["$urge_count", 0]}),
                "breached": _count_if({"$in": ["breach:on_site", {"$ifNull": ["$flags", []]}]}),
            }}],
        }
        cursor = await self.db.tickets.aggregate([{"$match": match}, {"$facet": facets}])
        [result] = await cursor.to_list(None)
        totals = Counter((result["totals"] or [{}])[0])  # a missing count is 0
        minutes = [round(r["minutes"], 2) for r in result["response"]]
        on_site = {r["_id"]: r for r in result["on_site"]}
        timeliness = {p: judged("on_site_timeliness", rate(on_site[p]["met"], on_site[p]["decided"]))
                      | {"met": on_site[p]["met"], "decided": on_site[p]["decided"]}
                      for p in PRIORITIES if p in on_site}
        return {
            "community_id": community_id, "period": period,
            "start": start, "end": end,
            "tickets": totals["tickets"],
            "by_kind": {r["_id"]: r["n"] for r in result["by_kind"]},
            "by_state": {r["_id"]: r["n"] for r in result["by_state"]},
            "by_priority": {r["_id"]: r["n"] for r in result["by_priority"]},
            "on_site_timeliness": timeliness,
            "first_response_minutes": {"count": len(minutes), "p50": percentile(minutes, 0.5),
                                       "p90": percentile(minutes, 0.9)},
            "followup_rate": judged("followup_rate", rate(totals["followed_up"], totals["resolved"])),
            "satisfaction_rate": judged("satisfaction_rate", rate(totals["satisfied"], totals["rated"])),
            "rework_rate": judged("rework_rate", rate(totals["reworked"], totals["resolved"])),
            "closed_loop_rate": judged("closed_loop_rate",
                                       rate(totals["closed"], totals["tickets"] - totals["cancelled"])),
            "urges": {"total": totals["urges"], "tickets": totals["urged_tickets"]},
            # the latest satisfaction survey opened before the period's end (models/surveys.py)
            "survey_satisfaction": await latest_satisfaction(self.db, community_id, end),
            # patrol completion, on-time rate and open findings (models/patrols.py)
            **await patrol_figures(self.db, community_id, start, end),
            # inspection_coverage, equipment_overdue, equipment_open_findings at the period's
            # end or now (models/equipment.py)
            **await equipment_figures(self.db, community_id, start, end, self.clock.now()),
            "counts": {k: totals[k] for k in ("resolved", "followed_up", "rated", "satisfied",
                                           "reworked", "closed", "cancelled", "breached")},
        }

    async def series(self, community_id: str, period: str, day: date | None,
                     count: int) -> list[dict]:
        """Reports for `count` consecutive periods ending with the one containing `day`."""
        zone, day = await self._zone_and_day(community_id, day)
        return [await self._report(community_id, period, window(period, d, zone))
                for d in previous_periods(period, day, count, zone)]
