"""What a mini-program developer relies on: one name per thing, unknown fields refused, one
error code for a bad field, readable messages, images served as images, a complete document."""

from datetime import timedelta

import pytest
from pydantic import BaseModel

from models.tickets import WORKFLOW
from tests.builders import make_community, make_resident
from tests.test_robustness import json_routes

pytestmark = pytest.mark.asyncio


def nested_models(model: type[BaseModel]):
    yield model
    for field in model.model_fields.values():
        for candidate in (field.annotation, *getattr(field.annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                yield from nested_models(candidate)


async def test_every_request_schema_refuses_unknown_fields(app):
    for template, method, spec in json_routes(app):
        for model in nested_models(spec.body):
            assert model.model_config.get("extra") == "forbid", (template, method, model)
    for template, handler, *_ in app.routes:
        for method in ("get", "post", "put", "patch", "delete"):
            spec = getattr(getattr(handler, method, None), "api", None)
            if spec is not None and spec.query is not None:
                assert spec.query.model_config.get("extra") == "forbid", (template, method)


async def test_an_unknown_field_is_named(app, api_client):
    reply = await api_client.post("/api/auth/staff", {"username": "a", "password": "b",
                                                      "pasword": "typo"})
    assert reply.status == 400 and reply.error["code"] == "invalid_field"
    assert reply.error["fields"] == {"pasword": "未知字段"}  # Chinese unless asked (test_messages)
    c = await make_community(app, "unk")
    reply = await api_client.get(f"/api/communities/{c.id}/places?kinds=room",
                                 token=c.tokens["admin"])
    assert reply.status == 400 and reply.error["fields"] == {"kinds": "未知字段"}


async def test_one_error_code_for_a_bad_field(app, api_client):
    c = await make_community(app, "code")
    reply = await api_client.post(f"/api/communities/{c.id}/places", {"path": "2-1-301"},
                                  token=c.tokens["admin"])  # refused by the model, not the schema
    assert reply.status == 400 and "path" in reply.error["fields"]
    assert reply.error["code"] == "invalid_field"


async def test_an_empty_body_is_an_empty_object(app, api_client):
    c = await make_community(app, "empty")
    reply = await api_client.post(f"/api/communities/{c.id}/gates/{c.gates['main']}/open",
                                  token=c.tokens["security"])  # no body at all
    assert reply.error["code"] == "no_bridge"  # past the body: {} is a valid open request
    reply = await api_client.post("/api/auth/staff")
    assert reply.error["code"] == "invalid_field"
    assert set(reply.error["fields"]) == {"username", "password"}


async def test_conflict_messages_read_as_sentences(app, api_client):
    c = await make_community(app, "msg")
    _, resident = await make_resident(app, c, "mia")
    ticket = (await api_client.post(f"/api/communities/{c.id}/tickets", {
        "kind": "repair", "category": "plumbing", "description": "tap drips", "area": "room",
        "place_path": "1-1-101"}, token=resident)).body
    reply = await api_client.post(f"/api/communities/{c.id}/tickets/{ticket['id']}/transitions",
                                  {"action": "follow_up"}, token=c.tokens["manager"])
    assert reply.status == 409
    assert reply.error["message"] == "报修已提交，不能回访"
    english = await api_client.post(f"/api/communities/{c.id}/tickets/{ticket['id']}/transitions",
                                    {"action": "follow_up"}, token=c.tokens["manager"],
                                    headers={"Accept-Language": "en"})
    assert english.error["message"] == "a repair that is submitted cannot be followed up"
    assert all(a.done for a in WORKFLOW.actions)  # every action has its words


async def test_an_image_format_answers_the_image_itself(app, api_client, http_client, base_url):
    c = await make_community(app, "img")
    _, resident = await make_resident(app, c, "ivy")
    path = f"{base_url}/api/communities/{c.id}/code"
    auth = {"Authorization": f"Bearer {resident}"}
    png = await http_client.fetch(f"{path}?format=png", headers=auth)
    assert png.headers["Content-Type"] == "image/png" and png.body.startswith(b"\x89PNG")
    svg = await http_client.fetch(f"{path}?format=svg", headers=auth)
    assert svg.headers["Content-Type"].startswith("image/svg+xml") and b"<svg" in svg.body
    data = (await api_client.get(f"/api/communities/{c.id}/code?format=png_data_url",
                                 token=resident)).body
    assert data["image"].startswith("data:image/png;base64,") and data["token"]


async def test_passes_name_their_room_as_everywhere_else(app, api_client):
    c = await make_community(app, "room")
    _, resident = await make_resident(app, c, "rae", room="1-1-102")
    now = app.clock.now()
    invite = (await api_client.post(f"/api/communities/{c.id}/invitations", {
        "name": "V", "purpose": "tea", "valid_from": now.isoformat(),
        "valid_to": (now + timedelta(hours=1)).isoformat(), "room_path": "1-1-102"},
        token=resident)).body
    assert invite["room_path"] == "1-1-102" and "host_room" not in invite
    spec = (await api_client.get("/api/openapi.json")).body
    assert "room_path" in spec["components"]["schemas"]["Pass"]["properties"]


async def test_the_document_describes_uploads_query_limits_and_each_error(api_client):
    spec = (await api_client.get("/api/openapi.json")).body
    photos = spec["paths"]["/api/communities/{community_id}/tickets/{ticket_id}/photos"]["post"]
    form = photos["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["photo"]["items"]["format"] == "binary"
    imports = spec["paths"]["/api/communities/{community_id}/imports"]["post"]
    assert "text/csv" in imports["requestBody"]["content"]
    listing = spec["paths"]["/api/communities/{community_id}/access-log"]["get"]
    limit = next(p for p in listing["parameters"] if p["name"] == "limit")
    assert limit["schema"]["minimum"] >= 1 and "maximum" in limit["schema"]
    staff_login = spec["paths"]["/api/auth/staff"]["post"]["responses"]
    assert {"400", "401", "413", "429"} <= set(staff_login)
    places = spec["paths"]["/api/communities/{community_id}/places"]["post"]["responses"]
    assert {"400", "401", "403", "404", "413"} <= set(places)
    assert places["403"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}
