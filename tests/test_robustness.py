"""Hostile input gets a 4xx naming the problem: never a 500, a traceback or a whole body read."""

import asyncio
import logging

import pytest

from gate_bridge.wire import BadPayload, decode_payload
from models.access import PLATFORM_PERMISSIONS
from tests.builders import make_community, make_platform_admin, make_resident
from tests.test_tenancy import METHODS, fill

DEEP = b"[" * 30_000 + b"]" * 30_000  # deeper than any parser recurses, within the limit


def json_routes(app):
    for template, handler, *_ in app.routes:
        for method in METHODS:
            spec = getattr(getattr(handler, method, None), "api", None)
            if spec is not None and spec.body is not None:
                yield template, method, spec


@pytest.mark.asyncio
async def test_deeply_nested_json_is_refused_on_every_json_route(app, api_client, caplog):
    c = await make_community(app, "deep")
    _, resident = await make_resident(app, c, "dee")
    platform_admin = await make_platform_admin(app)
    routes = list(json_routes(app))
    assert len(routes) >= 20
    for template, method, spec in routes:
        token = (resident if spec.audience == "resident" else
                 platform_admin if spec.permission in PLATFORM_PERMISSIONS else c.tokens["admin"])
        reply = await api_client.call(method.upper(), fill(template, c.id, {}), raw=DEEP,
                                      token=token)
        assert reply.status == 400, (template, method, reply.body)
        assert reply.error["code"] == "bad_json" and "嵌套" in reply.error["message"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_gate_frames_nested_too_deeply_are_bad_payloads():
    with pytest.raises(BadPayload):
        decode_payload(b'{"op":' + b"[" * 30_000 + b"]" * 30_000 + b"}")


@pytest.mark.asyncio
async def test_invalid_utf8_in_a_query_string_names_the_parameter(app, api_client):
    c = await make_community(app, "utf")
    reply = await api_client.get(f"/api/communities/{c.id}/places?kind=%ff%fe",
                                 token=c.tokens["admin"])
    assert reply.status == 400
    assert reply.error["fields"] == {"kind": "不是有效的 UTF-8"}


@pytest.mark.asyncio
async def test_a_login_code_of_control_characters_is_a_bad_field(api_client, caplog):
    reply = await api_client.post("/api/auth/wechat", {"code": "\x00\x01\r\n\x7f"})
    assert reply.status == 400
    assert set(reply.error["fields"]) == {"code"}
    reply = await api_client.post("/api/auth/wechat", {"code": "abc", "phone_code": "\n"})
    assert reply.status == 400 and set(reply.error["fields"]) == {"phone_code"}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def send_head(port: int, head: str) -> bytes:
    """Send only a request's head (no body) and return what the server answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode())
        await writer.drain()
        # The server must answer without waiting for the body; a guard, not a synchronisation.
        status = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        length = int(next(line.split(b":")[1] for line in status.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        return status + await asyncio.wait_for(reader.readexactly(length), timeout=10)
    finally:
        writer.close()


@pytest.mark.asyncio
async def test_a_json_body_over_the_limit_is_refused_before_it_is_read(http_server):
    answer = await send_head(http_server.port,
                             "POST /api/auth/staff HTTP/1.1\r\nHost: x\r\n"
                             "Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413")
    assert b'"too_large"' in answer and b"65536" in answer


@pytest.mark.asyncio
async def test_the_token_is_checked_before_an_upload_is_read(app, http_server):
    c = await make_community(app, "upl")
    head = (f"POST /api/communities/{c.id}/imports HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: text/csv\r\nContent-Length: 5000000\r\n")
    answer = await send_head(http_server.port, head + "\r\n")
    assert answer.startswith(b"HTTP/1.1 401")
    # A security guard may not import: refused before the body too.
    answer = await send_head(http_server.port,
                             head + f"Authorization: Bearer {c.tokens['security']}\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 403")


@pytest.mark.asyncio
async def test_a_chunked_body_is_checked_before_it_is_read_too(app, http_server):
    # No Content-Length: only Transfer-Encoding says a body follows (a request without either
    # has none, and is run unstreamed: server/app.py, BodilessDelegate).
    c = await make_community(app, "chunk")
    answer = await send_head(http_server.port,
                             f"POST /api/communities/{c.id}/imports HTTP/1.1\r\nHost: x\r\n"
                             "Content-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 401")


@pytest.mark.asyncio
async def test_uploads_may_be_larger_than_json_but_are_bounded(app, http_server):
    c = await make_community(app, "big")
    head = (f"POST /api/communities/{c.id}/imports HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {c.tokens['admin']}\r\nContent-Type: text/csv\r\n")
    answer = await send_head(http_server.port, head + "Content-Length: 900000000\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413")


@pytest.mark.asyncio
async def test_a_body_within_the_limit_still_works(app, api_client):
    reply = await api_client.post("/api/auth/staff", {"username": "x" * 60, "password": "y" * 200})
    assert reply.status == 401
