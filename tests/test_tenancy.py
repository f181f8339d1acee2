"""Staff of community A must not reach community B's data through any route.

The walk is generated from the application's own route table, so a route added
later is covered without editing this file.
"""

import re

import pytest
from bson import ObjectId

from models.access import OPEN_TO_RESIDENTS, PLATFORM_PERMISSIONS
from tests.builders import make_community, make_resident

METHODS = ("get", "post", "put", "patch", "delete")


def community_routes(app):
    """(path template, method) of every protected community-scoped method."""
    for template, handler, *_ in app.routes:
        if "{community_id}" not in template:
            continue
        for method in METHODS:
            spec = getattr(getattr(handler, method, None), "api", None)
            if spec is not None and not spec.public:
                yield template, method


def route_permission(app, template: str, method: str) -> str | None:
    [handler] = [r[1] for r in app.routes if r[0] == template]
    return getattr(handler, method).api.permission


def fill(template: str, community_id: str, ids: dict[str, str]) -> str:
    def value(match):
        name, pattern = match[1], match[2] or "[^/]+"
        if name == "community_id":
            return community_id
        # A parameter with its own pattern (a visit's {index:[0-9]+}, an {action:repair|retire})
        # gets a value it accepts.
        return next(v for v in (ids.get(name), str(ObjectId()), "0", pattern.split("|")[0])
                    if v is not None and re.fullmatch(pattern, v))
    return re.sub(r"{(\w+)(?::([^}]+))?}", value, template)


@pytest.mark.asyncio
async def test_every_route_denies_staff_of_another_community(app, api_client):
    a = await make_community(app, "a")
    b = await make_community(app, "b")
    b_resident, _ = await make_resident(app, b, "bob")
    _, a_resident_token = await make_resident(app, a, "ann")
    a_tokens = [a.tokens["admin"], a.tokens["security"], a.tokens["maintenance"], a_resident_token]
    b_ids = {"place_id": b.places["1-1-101"], "gate_id": b.gates["main"],
             "staff_id": b.staff["manager"], "resident_id": b_resident}
    routes = list(community_routes(app))
    assert len(routes) >= 10, "the walk found too few routes to mean anything"

    for template, method in routes:
        # B's community id with A's tokens: B does not exist for A (a resident may browse its
        # rooms — tests/test_onboarding.py checks that nothing else comes with them).
        open_to_residents = route_permission(app, template, method) in OPEN_TO_RESIDENTS
        for token in a_tokens[:3] if open_to_residents else a_tokens:
            reply = await api_client.call(method.upper(), fill(template, b.id, b_ids),
                                          json_body={}, token=token)
            assert reply.status in (403, 404), (template, method, reply.body)

        # A's community id with B's object ids: the object is not in A.
        path = fill(template, a.id, b_ids)
        if path == fill(template, a.id, {}):
            continue  # no object in the path: a list or create route of A itself
        reply = await api_client.call(method.upper(), path, json_body={}, token=a.tokens["admin"])
        allowed = {403, 404} if method in ("get", "delete") else {400, 403, 404}
        assert reply.status in allowed, (template, method, reply.body)


@pytest.mark.asyncio
async def test_lists_show_only_own_community(app, api_client):
    a = await make_community(app, "a")
    b = await make_community(app, "b")
    await make_resident(app, b, "bob")
    await make_resident(app, a, "ann")

    reply = await api_client.get("/api/communities", token=a.tokens["admin"])
    assert [c["code"] for c in reply.body] == ["a"]
    residents = await api_client.get(f"/api/communities/{a.id}/residents", token=a.tokens["admin"])
    assert [r["name"] for r in residents.body] == [""] and len(residents.body) == 1
    bindings = await api_client.get(f"/api/communities/{a.id}/bindings", token=a.tokens["admin"])
    assert {x["community_id"] for x in bindings.body} == {a.id}


@pytest.mark.asyncio
async def test_resident_cannot_reach_another_residents_binding(app, api_client):
    a = await make_community(app, "a")
    b = await make_community(app, "b")
    _, ann = await make_resident(app, a, "ann")
    _, bob = await make_resident(app, b, "bob")
    [bobs_link] = (await api_client.get("/api/me/bindings", token=bob)).body

    reply = await api_client.delete(f"/api/me/bindings/{bobs_link['id']}", token=ann)
    assert reply.status == 404
    assert (await api_client.get("/api/me/bindings", token=bob)).body[0]["state"] == "approved"
    reply = await api_client.get(f"/api/communities/{b.id}/residents", token=ann)
    assert reply.status == 404


@pytest.mark.asyncio
async def test_roles_are_checked_within_own_community(app, api_client):
    a = await make_community(app, "a")
    reply = await api_client.get(f"/api/communities/{a.id}/staff", token=a.tokens["maintenance"])
    assert reply.status == 403 and reply.error["code"] == "forbidden"
    reply = await api_client.post(f"/api/communities/{a.id}/places", {"path": "9"},
                                  token=a.tokens["security"])
    assert reply.status == 403
    assert (await app.places.place_by_path(a.id, "9")) is None


def test_every_protected_route_is_scoped(app):
    """Outside /api/communities/{community_id}/, only the caller's own things are reachable.

    Community-scoped routes are walked above; everything else must be about the
    caller ("/api/me/..."), signing in, or the list of the caller's communities.
    """
    own = ("/api/me", "/api/auth/")
    for template, handler, *_ in app.routes:
        for method in METHODS:
            spec = getattr(getattr(handler, method, None), "api", None)
            if spec is None or spec.public or template.startswith("/api/communities/{community_id}"):
                continue
            if spec.permission in PLATFORM_PERMISSIONS:
                continue  # for platform admins alone (models.access.authorize)
            assert template.startswith(own) or template == "/api/communities", (template, method)
