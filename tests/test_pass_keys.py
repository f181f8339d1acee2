"""The operator's key rotation, run as the command it is, against the app's stores."""

import asyncio
import os
import sys

import pytest

from tests.builders import make_community, make_resident

pytestmark = pytest.mark.asyncio


async def pass_keys(settings, *args) -> tuple[int, str, str]:
    env = {**os.environ, "MONGODB_URI": settings.mongodb_uri, "REDIS_URL": settings.redis_url,
           "MONGODB_DB": settings.mongodb_db, "XIAOQU_DATA_DIR": str(settings.data_dir)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scripts.pass_keys", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


async def test_rotate_keeps_old_codes_then_retire_refuses_them(app, settings):
    c = await make_community(app, "keys")
    _, token = await make_resident(app, c, "kim")
    principal = await app.auth.principal(token)
    gate = await app.places.gate(c.id, c.gates["main"])
    old_code = (await app.passes.resident_code(principal, c.id))["token"]

    status, out, _ = await pass_keys(settings, "rotate")
    assert status == 0 and out.count("key ") == 2 and "key 2 (signing)" in out
    await app.passes.key_ring(reload=True)
    assert (await app.gate_access.check(old_code, gate, "in", "scanner")).allow  # in flight: still good

    status, _, err = await pass_keys(settings, "retire", "2")
    assert status == 1 and "signing key" in err  # the key in use cannot go
    status, out, _ = await pass_keys(settings, "retire", "1")
    assert status == 0 and out.strip().startswith("key 2 (signing)") and "key 1" not in out
    app.passes._ring_at = float("-inf")  # this process's 60 s cache, as after its expiry
    retry = (await app.passes.resident_code(principal, c.id))["token"]
    assert (await app.gate_access.check(retry, gate, "in", "scanner")).allow
    assert (await app.gate_access.check(old_code, gate, "in", "scanner")).reason == "unknown_key"
