"""What every route shares: health, errors, metrics, the OpenAPI document."""

import json
import re

import pytest
from openapi_spec_validator import validate
from playwright.async_api import expect

from tornado.web import RequestHandler


pytestmark = pytest.mark.asyncio


async def test_healthz_and_readyz(api_client):
    assert (await api_client.get("/healthz")).body == {"status": "ok"}
    ready = await api_client.get("/readyz")
    assert ready.status == 200
    assert ready.body == {"status": "ready", "mongodb": "ok", "redis": "ok"}


async def test_unknown_route_is_json_404(api_client):
    reply = await api_client.get("/api/nothing-here")
    assert reply.status == 404
    assert reply.error["code"] == "not_found"
    assert reply.headers["X-Request-Id"] == reply.error["request_id"]


async def test_closed_by_default(api_client):
    reply = await api_client.get("/api/communities")
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"] == "Bearer"
    assert (await api_client.get("/api/communities", token="not-a-jwt")).error["code"] == "bad_token"


async def test_bad_json_and_bad_fields_name_the_problem(api_client):
    reply = await api_client.post("/api/auth/staff", raw=b"{not json")
    assert reply.status == 400
    assert reply.error["code"] == "bad_json"
    reply = await api_client.post("/api/auth/staff", {"username": "", "extra": 1})
    assert reply.status == 400
    assert set(reply.error["fields"]) == {"username", "password", "extra"}


async def test_request_id_is_echoed(api_client):
    reply = await api_client.get("/healthz", headers={"X-Request-Id": "abc123"})
    assert reply.headers["X-Request-Id"] == "abc123"


async def test_metrics_count_requests_by_handler(api_client):
    await api_client.get("/healthz")
    metrics = (await api_client.get("/metrics")).body
    assert 'xiaoqu_request_duration_seconds_count{handler="HealthHandler",method="GET",status="200"}' \
        in metrics


async def test_openapi_document_is_valid_and_covers_every_route(app, api_client):
    spec = (await api_client.get("/api/openapi.json")).body
    validate(spec)
    assert spec["openapi"].startswith("3.1")
    for template, handler, *_ in app.routes:
        path = re.sub(r"{(\w+):[^}]+}", r"{\1}", template)  # as the document names it
        for method in ("get", "post", "put", "patch", "delete"):
            if getattr(handler, method) is not getattr(RequestHandler, method):
                assert method in spec["paths"].get(path, {}), f"{method.upper()} {path} undocumented"


async def test_docs_page_works_offline(api_client):
    page = await api_client.get("/docs")
    assert page.status == 200
    assert "/docs/static/swagger-ui-bundle.js" in page.body
    assert "https://" not in page.body
    asset = await api_client.get("/docs/static/swagger-ui-bundle.js")
    assert asset.status == 200 and len(asset.body) > 100_000
    assert asset.headers["Content-Type"] == "text/javascript; charset=UTF-8"
    missing = await api_client.get("/docs/static/nothing.js")  # JSON, like every other error
    assert missing.status == 404 and missing.error["code"] == "not_found"


async def test_docs_page_renders_the_api_in_a_browser(admin):
    # Waiting on the page: a DOM dumped after a fixed virtual-time budget missed the
    # operations once the document grew past ~150 of them.
    page = await admin.open("/docs")
    await expect(page.locator(".opblock").first).to_be_visible()  # drawn from /api/openapi.json
    await expect(page.get_by_text("/api/auth/staff").first).to_be_attached()


async def test_answers_are_written_as_the_standard_library_writes_them():
    """json_bytes (orjson) against json.dumps with the same conversions: times, ids, sets,
    models, keys that are not strings, non-ASCII text."""
    from datetime import UTC, datetime
    from typing import NamedTuple

    from bson import ObjectId
    from bson.tz_util import utc
    from pydantic import BaseModel

    from handlers.base import json_bytes

    class Room(BaseModel):
        path: str
        since: datetime

    class Window(NamedTuple):
        start: int
        end: int

    stored = datetime(2026, 12, 2, 20, 0, 0, 123000, tzinfo=utc)  # as read from MongoDB
    value = {"at": datetime(2026, 12, 2, 20, 0, tzinfo=UTC), "stored": stored,
             "naive": datetime(2026, 1, 1), "id": ObjectId("64b7f0c2a1b2c3d4e5f60718"),
             "roles": {"guard", "admin"}, "counts": {7: 1, 30: 2}, "name": "南门",
             "room": Room(path="1-1-101", since=stored), "scope": ("1-1",), "n": 2.5,
             "hours": Window(32, 72)}

    def default(item):
        if isinstance(item, datetime):
            return item.isoformat()
        if isinstance(item, ObjectId):
            return str(item)
        if isinstance(item, BaseModel):
            return item.model_dump(mode="json")
        return sorted(item)

    expected = json.dumps(value, default=default, ensure_ascii=False, separators=(",", ":"))
    assert json_bytes(value).decode() == expected
