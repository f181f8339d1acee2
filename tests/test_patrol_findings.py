"""A problem found on a round becomes a repair ticket in one step: at the checkpoint's place,
with the visit's note and photos, linked both ways, once however often it is asked; the
visit's photos; who may do either; the ticket's life without a resident."""

import pytest

from models.access import Principal
from models.errors import Invalid
from models.tickets import Finding
from tests.patrol_support import clock, p  # noqa: F401 (fixtures)
from tests.test_photos import multipart, phone_photo
from tests.tickets_support import settings  # noqa: F401 (tokens outliving the clock's moves)

pytestmark = pytest.mark.asyncio


async def walk_with_a_problem(p) -> str:
    """Check in at A1 (all fine) and A2 (its lights broken): the round's id."""
    assert (await p.check_in(p.plan, "A1", answers={"lights": "ok"})).status == 201
    reply = await p.check_in(p.plan, "A2", answers={"lights": "problem", "locks": "ok"},
                             note="大堂灯不亮")
    assert reply.status == 201, reply.body
    return reply.body["id"]


async def add_photos(p, round_id, index, who, *files):
    body, headers = multipart(*files)
    return await p.http.call("POST", f"{p.base}/patrol-rounds/{round_id}/visits/{index}/photos",
                             raw=body, headers=headers, token=p.c.tokens[who])


async def make_ticket(p, round_id, index, who="security", **body):
    return await p.post(who, f"/patrol-rounds/{round_id}/visits/{index}/ticket", body)


async def test_a_problem_becomes_one_linked_ticket_with_the_note_and_photo(app, p):
    round_id = await walk_with_a_problem(p)
    photo = await add_photos(p, round_id, 1, "security", phone_photo())
    assert photo.status == 201, photo.body
    [shot] = photo.body["visits"][1]["photos"]
    assert shot["url"].startswith("/api/photos/") and shot["thumbnail_id"]

    made = await make_ticket(p, round_id, 1, category="lights")
    assert made.status == 201, made.body
    ticket = made.body
    assert (ticket["kind"], ticket["category"], ticket["area"], ticket["place_path"]) == \
        ("repair", "lights", "other", "1-1")
    assert (ticket["resident_id"], ticket["channel"], ticket["state"]) == (None, "patrol", "submitted")
    assert ticket["source"] == {"kind": "patrol", "ref": f"{round_id}:1"}
    assert "1 栋大堂" in ticket["description"] and "大堂灯不亮" in ticket["description"]
    assert [ph["id"] for ph in ticket["photos"]] == [shot["id"]]
    assert ticket["photos"][0]["stage"] == "report"

    again = await make_ticket(p, round_id, 1)  # twice: the same ticket
    assert (again.status, again.body["id"]) == (200, ticket["id"])
    assert await app.db.tickets.count_documents({"source_key": f"patrol:{round_id}:1"}) == 1

    rounds = (await p.http.get(f"{p.base}/patrol-plans/{p.plan}/rounds",
                               token=p.c.tokens["manager"])).body
    assert rounds[0]["visits"][1]["ticket_id"] == ticket["id"]  # the finding names its ticket
    desk = await p.http.get(f"{p.base}/tickets/{ticket['id']}", token=p.c.tokens["customer_service"])
    assert desk.status == 200 and desk.body["source"]["ref"] == f"{round_id}:1"
    image = await p.http.http.fetch(p.http.base_url + desk.body["photos"][0]["url"], raise_error=False)
    assert image.code == 200 and image.headers["Content-Type"] == "image/jpeg"
    created = [e for e in await app.notifier.feed_since(p.c.id, "0-0") if e["type"] == "ticket.created"]
    assert [e["ticket"]["id"] for e in created] == [ticket["id"]]


async def test_who_may_make_the_ticket_and_add_photos(app, p):
    round_id = await walk_with_a_problem(p)
    nothing = await make_ticket(p, round_id, 0)  # A1 was fine
    assert nothing.status == 409 and nothing.error["code"] == "no_problem"
    assert (await make_ticket(p, round_id, 1, who="maintenance")).status == 403  # not theirs
    assert (await make_ticket(p, round_id, 2)).status == 404  # no third visit yet
    assert (await make_ticket(p, "nope:0", 0)).status == 404
    unknown = await make_ticket(p, round_id, 1, category="spaceship")
    assert unknown.status == 400 and "category" in unknown.error["fields"]
    desk = await make_ticket(p, round_id, 1, who="customer_service")  # the dispatch desk may
    assert desk.status == 201 and desk.body["history"][0]["by"] == p.c.staff["customer_service"]
    assert (await make_ticket(p, round_id, 1, who="security_lead")).body["id"] == desk.body["id"]

    assert (await add_photos(p, round_id, 1, "security_lead", phone_photo())).status == 403
    empty = await add_photos(p, round_id, 1, "security")
    assert empty.status == 400 and "photo" in empty.error["fields"]
    assert (await add_photos(p, round_id, 1, "security", phone_photo(), phone_photo())).status == 201
    full = await add_photos(p, round_id, 1, "security", phone_photo(), phone_photo())
    assert full.status == 422 and full.error["code"] == "too_many_photos"
    assert (await add_photos(p, round_id, 1, "security", phone_photo())).status == 201  # the third
    assert (await add_photos(p, "other:1", 0, "security", phone_photo())).status == 404


async def test_the_ticket_is_worked_and_closed_by_staff_alone(app, p):
    round_id = await walk_with_a_problem(p)
    ticket = (await make_ticket(p, round_id, 1)).body
    cs, worker = p.c.tokens["customer_service"], p.c.tokens["maintenance"]

    async def act(token, action, **fields):
        reply = await p.http.post(f"{p.base}/tickets/{ticket['id']}/transitions",
                                  {"action": action, **fields}, token=token)
        assert reply.status == 200, reply.body
        return reply.body

    await act(cs, "assign", assignee_id=p.c.staff["maintenance"])
    await act(worker, "accept")
    await act(worker, "check_in")
    resolved = await act(worker, "resolve", notes="换了灯管")
    assert "confirm" not in resolved["allowed_actions"]
    await act(cs, "follow_up", notes="巡更复查正常")
    assert (await act(cs, "close"))["state"] == "closed"
    assert await app.db.messages.count_documents({}) == 0  # no resident to tell


async def test_any_finding_source_uses_the_same_step(app, p):
    """What equipment inspections call: a finding of another source, its place checked."""
    tech = Principal("staff", p.c.staff["maintenance"], {p.c.id: frozenset({"maintenance"})})
    finding = Finding(p.c.id, "inspection", "extinguisher-7:2026-12", "灭火器压力不足", tech.id,
                      place_path="1-1", category="other")
    ticket, made = await app.tickets.from_finding(tech, finding)
    assert made and (ticket["channel"], ticket["place_path"]) == ("inspection", "1-1")
    assert (await app.tickets.from_finding(tech, finding)) == (ticket, False)
    with pytest.raises(Invalid, match="no such place"):
        await app.tickets.from_finding(tech, Finding(p.c.id, "inspection", "x", "y", tech.id,
                                                       place_path="9"))
