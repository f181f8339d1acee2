"""Smaller holes: headers, request ids, 405s, who reads SLA targets, pages after a pass ends."""

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from models.common import ManualClock
from tests.builders import change_directly, make_community, make_resident

START = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


@pytest.fixture
def clock():
    return ManualClock(START)


@pytest.mark.asyncio
async def test_request_ids_are_bounded_and_plain(api_client):
    assert (await api_client.get("/healthz", headers={"X-Request-Id": "abc-123_x.y"})).headers[
        "X-Request-Id"] == "abc-123_x.y"
    for sent in ("x" * 200, "a b", "<script>", "é"):
        answered = (await api_client.get("/healthz", headers={"X-Request-Id": sent})).headers[
            "X-Request-Id"]
        assert answered != sent and len(answered) == 32 and answered.isalnum()


@pytest.mark.asyncio
async def test_a_method_not_allowed_says_which_are(app, api_client):
    c = await make_community(app, "405")
    reply = await api_client.delete(f"/api/communities/{c.id}/places", token=c.tokens["admin"])
    assert reply.status == 405 and reply.error["code"] == "method_not_allowed"
    assert set(reply.headers["Allow"].split(", ")) == {"GET", "POST"}
    reply = await api_client.call("PATCH", "/api/auth/staff", json_body={})
    assert reply.status == 405 and reply.headers["Allow"] == "POST"


@pytest.mark.asyncio
async def test_residents_cannot_read_sla_targets(app, api_client):
    c = await make_community(app, "sla")
    _, resident = await make_resident(app, c, "sue")
    path = f"/api/communities/{c.id}/sla-targets"
    assert (await api_client.get(path, token=resident)).status == 403
    assert (await api_client.get(path, token=c.tokens["maintenance"])).status == 200


@pytest.mark.asyncio
async def test_pages_forbid_framing_sniffing_and_foreign_scripts(app, api_client):
    c = await make_community(app, "csp")
    _, token = await make_resident(app, c, "cat")
    invite = (await api_client.post(f"/api/communities/{c.id}/invitations", {
        "name": "Visitor", "purpose": "tea", "valid_from": START.isoformat(),
        "valid_to": (START + timedelta(hours=2)).isoformat(), "max_entries": 1},
        token=token)).body
    share = invite["share_url"].rsplit("/p/", 1)[1]
    for path in ("/docs", f"/p/{share}"):
        headers = (await api_client.get(path)).headers
        csp = headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
        assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
    assert (await api_client.get("/healthz")).headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.asyncio
async def test_share_page_shows_only_its_state_once_cancelled_or_expired(app, api_client):
    c = await make_community(app, "end")
    _, token = await make_resident(app, c, "hal", room="1-1-102")
    path = f"/api/communities/{c.id}/invitations"
    shares = []
    for _ in range(2):
        invite = (await api_client.post(path, {
            "name": "Visitor Wang", "purpose": "tea", "valid_from": START.isoformat(),
            "valid_to": (START + timedelta(hours=2)).isoformat(), "max_entries": 1},
            token=token)).body
        shares.append((invite["id"], invite["share_url"].rsplit("/p/", 1)[1]))
    page = (await api_client.get(f"/p/{shares[0][1]}")).body
    assert "Visitor Wang" in page and "1-1-102" in page and "end Road 1" in page

    await api_client.delete(f"{path}/{shares[0][0]}", token=token)
    cancelled = await api_client.get(f"/p/{shares[0][1]}")
    assert cancelled.status == 200 and "已取消" in cancelled.body and "Cancelled" in cancelled.body
    app.clock.advance(3 * 3600)
    expired = await api_client.get(f"/p/{shares[1][1]}")
    assert "已过期" in expired.body and "Expired" in expired.body
    for page in (cancelled.body, expired.body):
        assert "Visitor Wang" not in page and "1-1-102" not in page and "end Road 1" not in page


@pytest.mark.asyncio
async def test_worker_passes_are_capped_by_the_community_setting(app, api_client):
    c = await make_community(app, "cap")
    path = f"/api/communities/{c.id}/passes/workers"
    body = {"name": "Li", "company": "Fix Co", "purpose": "pipes", "approval_ref": "A-1",
            "gates": ["main"], "valid_from": START.isoformat(),
            "hours": {"start": "08:00", "end": "18:00"}}
    ten_years = {**body, "valid_to": (START + timedelta(days=3650)).isoformat()}
    reply = await api_client.post(path, ten_years, token=c.tokens["manager"])
    assert reply.status == 400 and "90 天" in reply.error["fields"]["valid_to"]
    within = {**body, "valid_to": (START + timedelta(days=90)).isoformat()}
    assert (await api_client.post(path, within, token=c.tokens["manager"])).status == 201

    await change_directly(app, "communities", {"code": "cap"},
                          {"$set": {"settings.worker_pass_max_days": 30}})
    app.passes.communities.clear()  # the settings cache, as after its short lifetime
    reply = await api_client.post(path, within, token=c.tokens["manager"])
    assert reply.status == 400 and "30 天" in reply.error["fields"]["valid_to"]


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/metrics", "/api/openapi.json", "/docs"])
async def test_metrics_and_the_api_document_can_require_a_token(app, api_client, path):
    assert (await api_client.get(path)).status == 200  # public unless OPS_TOKEN is set
    app.config = app.config.model_copy(update={"ops_token": SecretStr("s3cret-ops-token")})
    refused = await api_client.get(path)
    assert refused.status == 401 and refused.error["code"] == "ops_token"
    assert (await api_client.get(path, token="wrong")).status == 401
    assert (await api_client.get(path, token="s3cret-ops-token")).status == 200
    assert (await api_client.get(f"{path}?token=s3cret-ops-token")).status == 200


@pytest.mark.asyncio
async def test_the_docs_page_passes_its_token_on_to_the_document(app, api_client):
    app.config = app.config.model_copy(update={"ops_token": SecretStr("s3cret-ops-token")})
    page = (await api_client.get("/docs?token=s3cret-ops-token")).body
    assert "/api/openapi.json?token=s3cret-ops-token" in page


def test_the_embedded_stores_files_are_private(tmp_path):
    import os
    import stat

    import pymongo

    from server.embedded import start_mongo
    with start_mongo(tmp_path / "mongo.sqlite3") as mongo:
        client = pymongo.MongoClient(mongo.url)
        client.xiaoqu.residents.insert_one({"phone": "13800000000"})
        client.close()
    files = [tmp_path / name for name in os.listdir(tmp_path)]
    assert files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
