"""Secrets and codes never reach the logs: every line of the process is captured (at DEBUG)
while passwords, tokens, pass codes, a bridge secret and the operators' token are used,
right and wrong."""

import secrets
from datetime import timedelta

import pytest
from pydantic import SecretStr
from tornado.httpclient import HTTPClientError
from tornado.websocket import websocket_connect

from tests.builders import STAFF_PASSWORD, make_community, make_resident
from tests.gate_fixtures import *  # noqa: F403 (fixtures)
from tests.gate_fixtures import start_sim_bridge

pytestmark = pytest.mark.asyncio
OPS_TOKEN = secrets.token_urlsafe(32)


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"ops_token": SecretStr(OPS_TOKEN)})


async def test_no_secret_or_code_is_logged(app, hub, api_client, base_url, tmp_path,
                                          logged, monkeypatch):
    c = await make_community(app, "sec")
    _, resident = await make_resident(app, c, "zhao")
    used: list[str] = [STAFF_PASSWORD, OPS_TOKEN, resident, c.tokens["security"]]

    # Staff sign in (right and wrong passwords), refresh, sign out.
    username = "sec-security"
    tokens = (await api_client.post("/api/auth/staff", {"username": username,
                                                        "password": STAFF_PASSWORD})).body
    wrong = "wrong-" + secrets.token_hex(8)
    assert (await api_client.post("/api/auth/staff", {"username": username,
                                                      "password": wrong})).status == 401
    refreshed = (await api_client.post("/api/auth/refresh",
                                       {"refresh_token": tokens["refresh_token"]})).body
    await api_client.post("/api/auth/logout", {"refresh_token": refreshed["refresh_token"]},
                          token=refreshed["access_token"])
    forged = "eyJ" + secrets.token_urlsafe(40)
    assert (await api_client.get("/api/me", token=forged)).status == 401
    used += [wrong, forged, tokens["access_token"], tokens["refresh_token"],
             refreshed["access_token"], refreshed["refresh_token"]]
    wechat_code = "wxcode" + secrets.token_hex(8)
    await api_client.post("/api/auth/wechat", {"code": wechat_code})
    used.append(wechat_code)

    # The operators' token, in the header and in the query; a wrong one.
    assert (await api_client.get(f"/metrics?token={OPS_TOKEN}")).status == 200
    assert (await api_client.get("/api/openapi.json", token=OPS_TOKEN)).status == 200
    assert (await api_client.get(f"/docs?token={forged}")).status == 401

    # Pass codes: a QR code and a short code at a staff scanner, a QR code at a bridge (online
    # and, with the hub gone, decided offline), and a bridge secret.
    code = (await api_client.get(f"/api/communities/{c.id}/code?profile=short",
                                 token=resident)).body
    used += [code["token"], code["short_code"]]
    check = f"/api/communities/{c.id}/gates/{c.gates['main']}/check"
    for text in (code["token"], code["short_code"]):
        await api_client.post(check, {"token": text}, token=c.tokens["security"])
    bridge = (await api_client.post(f"/api/communities/{c.id}/gates/{c.gates['main']}/bridge",
                                    token=c.tokens["admin"])).body
    used.append(bridge["secret"])
    fresh = (await api_client.get(f"/api/communities/{c.id}/code", token=resident)).body["token"]
    offline = (await api_client.get(f"/api/communities/{c.id}/code", token=resident)).body["token"]
    used += [fresh, offline]
    sim = await start_sim_bridge(tmp_path, hub.port, bridge["bridge_id"], bridge["secret"],
                                 decision_budget=3.0, auto_door=False)
    try:
        await sim.bridge.wait(lambda: sim.bridge.sessions == 1)
        await sim.bridge.handle_scan(fresh)  # online, or offline if the answer is late
        await sim.bridge.decide_offline("s1", offline, "in")
        # Every event stored by the hub, the offline decision (with its code) re-checked.
        await sim.bridge.wait(lambda: not sim.bridge.store.unacked(sim.bridge.store.acked_seq, 1))
        await hub.wait(lambda: hub.idle)
    finally:
        await sim.stop()

    # The live feed, with its token in the query, refused and accepted.
    url = base_url.replace("http://", "ws://") + f"/api/communities/{c.id}/feed"
    with pytest.raises(HTTPClientError):
        await websocket_connect(f"{url}?token={forged}&device=d")
    ws = await websocket_connect(f"{url}?token={c.tokens['security']}&device=d")
    assert "feed.ready" in await ws.read_message()
    ws.close()
    await api_client.get(f"/api/communities/{c.id}/feed?token={c.tokens['manager']}")
    used.append(c.tokens["manager"])

    # A visitor's share link (its id lets anyone show the visitor's codes), page and code.
    now = app.clock.now()
    invite = (await api_client.post(f"/api/communities/{c.id}/invitations", {
        "name": "Wang", "phone": "13800000000", "purpose": "dinner",
        "valid_from": now.isoformat(), "valid_to": (now + timedelta(hours=2)).isoformat(),
        "max_entries": 1}, token=resident)).body
    share = invite["share_url"].rsplit("/p/", 1)[1]
    assert (await api_client.get(f"/p/{share}")).status == 200
    assert (await api_client.get(f"/p/{share}/code")).status == 200
    used.append(share)

    # The feed failing inside (a fault in its sign-in): the error is logged, its token is not.
    def broken(token):
        raise RuntimeError("the sign-in broke")
    monkeypatch.setattr(app.auth, "principal", broken)
    with pytest.raises(HTTPClientError):
        await websocket_connect(f"{url}?token={c.tokens['customer_service']}&device=e")
    used.append(c.tokens["customer_service"])
    assert "the sign-in broke" in logged.text

    text = logged.text
    assert "xiaoqu.access" in text and "gate_bridge" in text  # the capture saw the traffic
    leaked = [value for value in used if value and value in text]
    assert not leaked, f"logged: {leaked}"
