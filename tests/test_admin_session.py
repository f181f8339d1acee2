"""The admin view's session scheme over HTTP: cookies the page cannot read, CSRF, sign-out."""

from http.cookies import SimpleCookie

import pytest
import tornado.httpserver
import tornado.netutil

from tests.builders import STAFF_PASSWORD, make_community
from tests.conftest import ApiClient

pytestmark = pytest.mark.asyncio


def cookies_of(reply) -> SimpleCookie:
    jar = SimpleCookie()
    for header in reply.headers.get_list("Set-Cookie"):
        jar.load(header)
    return jar


async def sign_in(api_client, username):
    return await api_client.post("/api/auth/session", {"username": username,
                                                       "password": STAFF_PASSWORD})


def cookie_header(jar: SimpleCookie) -> str:
    return "; ".join(f"{name}={morsel.value}" for name, morsel in jar.items())


async def test_sign_in_keeps_the_refresh_token_out_of_page_scripts(app, api_client):
    c = await make_community(app, "ss")
    reply = await sign_in(api_client, "ss-manager")
    assert reply.status == 200, reply.body
    assert set(reply.body) == {"access_token", "token_type", "expires_in", "audience"}
    jar = cookies_of(reply)
    refresh, csrf = jar["xiaoqu_refresh"], jar["xiaoqu_csrf"]
    assert refresh["httponly"] and refresh["path"] == "/api/auth/session"
    assert refresh["samesite"] == "Strict" and csrf["samesite"] == "Strict"
    assert not csrf["httponly"] and csrf["path"] == "/"
    assert not refresh["secure"]  # plain HTTP here; over TLS the flag is set
    me = await api_client.get("/api/me", token=reply.body["access_token"])
    [mine] = me.body["communities"]
    assert mine["id"] == c.id and mine["roles"] == ["manager"]
    assert "tickets.dispatch" in mine["permissions"] and "staff.write" not in mine["permissions"]


async def test_refresh_needs_the_csrf_header_and_rotates_the_cookie(app, api_client):
    await make_community(app, "sr")
    jar = cookies_of(await sign_in(api_client, "sr-security"))
    cookie = cookie_header(jar)
    for header in ({}, {"X-CSRF-Token": "forged"}):
        refused = await api_client.post("/api/auth/session/refresh", headers={"Cookie": cookie,
                                                                                **header})
        assert (refused.status, refused.error["code"]) == (403, "csrf_failed")
    csrf = {"X-CSRF-Token": jar["xiaoqu_csrf"].value}
    renewed = await api_client.post("/api/auth/session/refresh", headers={"Cookie": cookie, **csrf})
    assert renewed.status == 200, renewed.body
    assert cookies_of(renewed)["xiaoqu_refresh"].value != jar["xiaoqu_refresh"].value
    assert cookies_of(renewed)["xiaoqu_csrf"].value == csrf["X-CSRF-Token"]  # same login
    # The spent cookie again: theft is assumed and the login revoked.
    reused = await api_client.post("/api/auth/session/refresh", headers={"Cookie": cookie, **csrf})
    assert (reused.status, reused.error["code"]) == (401, "refresh_reused")
    me = await api_client.get("/api/me", token=renewed.body["access_token"])
    assert me.status == 401


async def test_sign_out_revokes_the_login_and_clears_the_cookies(app, api_client):
    await make_community(app, "so")
    signed_in = await sign_in(api_client, "so-admin")
    jar = cookies_of(signed_in)
    headers = {"Cookie": cookie_header(jar), "X-CSRF-Token": jar["xiaoqu_csrf"].value}
    out = await api_client.post("/api/auth/session/logout", headers=headers)
    assert out.status == 204
    cleared = cookies_of(out)
    assert cleared["xiaoqu_refresh"].value == "" and cleared["xiaoqu_csrf"].value == ""
    assert (await api_client.get("/api/me", token=signed_in.body["access_token"])).status == 401
    again = await api_client.post("/api/auth/session/refresh", headers=headers)
    assert again.status == 401


async def test_shell_and_assets_cache_and_security_headers(api_client):
    shell = await api_client.get("/admin/tickets/123", headers={"Accept-Encoding": "gzip"})
    assert shell.status == 200 and shell.headers["Cache-Control"] == "no-cache"
    assert "text/html" in shell.headers["Content-Type"]
    csp = shell.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert shell.headers["X-Content-Type-Options"] == "nosniff"
    asset = shell.body.split('src="/admin/', 1)[1].split('"', 1)[0]
    js = await api_client.get("/admin/" + asset, headers={"Accept-Encoding": "gzip"})
    assert js.status == 200
    assert js.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert js.headers["Content-Security-Policy"] == csp
    missing = await api_client.get("/admin/assets/nope-123.js")
    assert missing.status == 404
    redirect = await api_client.call("GET", "/admin", headers={})
    assert redirect.status == 200  # followed to /admin/


async def test_cookies_are_secure_behind_a_tls_proxy(app, http_client):
    await make_community(app, "tls")
    [sock] = tornado.netutil.bind_sockets(0, "127.0.0.1")
    proxied = tornado.httpserver.HTTPServer(app, xheaders=True)  # as with TRUST_PROXY_HEADERS
    proxied.add_sockets([sock])
    try:
        api = ApiClient(http_client, f"http://127.0.0.1:{sock.getsockname()[1]}")
        reply = await api.post("/api/auth/session", {"username": "tls-manager",
                                                     "password": STAFF_PASSWORD},
                               headers={"X-Forwarded-Proto": "https"})
        assert reply.status == 200, reply.body
        jar = cookies_of(reply)
        assert jar["xiaoqu_refresh"]["secure"] and jar["xiaoqu_csrf"]["secure"]
    finally:
        proxied.stop()
        await proxied.close_all_connections()


async def test_api_answers_are_compressed_for_clients_that_accept_it(http_client, base_url):
    for accept, encoding in (("gzip", "gzip"), ("identity", None)):
        reply = await http_client.fetch(f"{base_url}/api/openapi.json", decompress_response=False,
                                        headers={"Accept-Encoding": accept})
        assert reply.headers.get("Content-Encoding") == encoding
