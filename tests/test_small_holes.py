"""Smaller holes: headers, request ids, 405s, who reads SLA targets, pages after a pass ends."""

from datetime import UTC, datetime, timedelta

import pytest

from models.common import ManualClock
from tests.builders import make_community, make_resident

pytestmark = pytest.mark.asyncio
START = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


@pytest.fixture
def clock():
    return ManualClock(START)


async def test_request_ids_are_bounded_and_plain(api_client):
    assert (await api_client.get("/healthz", headers={"X-Request-Id": "abc-123_x.y"})).headers[
        "X-Request-Id"] == "abc-123_x.y"
    for sent in ("x" * 200, "a b", "<script>", "é"):
        answered = (await api_client.get("/healthz", headers={"X-Request-Id": sent})).headers[
            "X-Request-Id"]
        assert answered != sent and len(answered) == 32 and answered.isalnum()


async def test_a_method_not_allowed_says_which_are(app, api_client):
    c = await make_community(app, "405")
    reply = await api_client.delete(f"/api/communities/{c.id}/places", token=c.tokens["admin"])
    assert reply.status == 405 and reply.error["code"] == "method_not_allowed"
    assert set(reply.headers["Allow"].split(", ")) == {"GET", "POST"}
    reply = await api_client.call("PATCH", "/api/auth/staff", json_body={})
    assert reply.status == 405 and reply.headers["Allow"] == "POST"


async def test_residents_cannot_read_sla_targets(app, api_client):
    c = await make_community(app, "sla")
    _, resident = await make_resident(app, c, "sue")
    path = f"/api/communities/{c.id}/sla-targets"
    assert (await api_client.get(path, token=resident)).status == 403
    assert (await api_client.get(path, token=c.tokens["maintenance"])).status == 200


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
