"""The operator's key rotation, run as the command it is, against the app's stores."""

import asyncio
import os
import sys

from datetime import timedelta

import pytest
from cryptography.exceptions import InvalidTag

from gate_bridge import protocol as p
from models.key_box import KeyBox
from models.passes import key_owner

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


async def test_retire_refuses_while_a_printed_pass_depends_on_the_key_unless_forced(app, settings):
    c = await make_community(app, "dep")
    old_id = (await app.passes.signing_key()).key_id
    staff = await app.auth.principal(c.tokens["manager"])
    worker = await app.passes.worker_pass(
        staff, c.id, name="Wu", phone=None, company=None, purpose="pipes", room_path="1-1-101",
        gates=["main"], valid_from=app.clock.now(), valid_to=app.clock.now() + timedelta(days=3),
        hours=(0, 96), max_entries=0, approval_ref="A-1")
    status, _, _ = await pass_keys(settings, "rotate")
    assert status == 0
    status, _, err = await pass_keys(settings, "retire", str(old_id))
    assert status == 1 and str(worker["_id"]) in err and "worker pass" in err
    gate = await app.places.gate(c.id, c.gates["main"])
    app.passes._ring_at = float("-inf")
    assert (await app.gate_access.check(worker["token"], gate, "in", "scanner")).allow  # kept
    status, out, _ = await pass_keys(settings, "retire", str(old_id), "--force")
    assert status == 0 and f"key {old_id}" not in out


async def test_signing_keys_are_sealed_at_rest_and_raw_ones_sealed_at_start_up(app):
    await app.passes.signing_key()
    [doc] = await app.db.pass_keys.find({}).to_list(None)
    private = app.passes._open_private(doc)
    assert "private" not in doc and private not in doc["sealed"]
    # A key stored raw by an older version is sealed at the next start-up, and still signs.
    await app.db.pass_keys.update_one({"_id": doc["_id"]},
                                      {"$set": {"private": private}, "$unset": {"sealed": ""}})
    await app.startup()
    migrated = await app.db.pass_keys.find_one({"_id": doc["_id"]})
    assert "private" not in migrated and app.passes._open_private(migrated) == private
    app.passes._ring_at = float("-inf")
    assert (await app.passes.signing_key()).private.private_bytes_raw() == private


async def test_rotating_the_sealing_secret_reseals_bridge_and_pass_keys(app, settings):
    c = await make_community(app, "seal")
    creds = await app.bridges.provision(c.id, c.gates["main"], c.staff["admin"])
    signing = await app.passes.signing_key()
    old_secret, new_secret = settings.gate_secret_key.get_secret_value(), "a new sealing secret " * 2
    env = {**os.environ, "MONGODB_URI": settings.mongodb_uri, "REDIS_URL": settings.redis_url,
           "MONGODB_DB": settings.mongodb_db, "XIAOQU_DATA_DIR": str(settings.data_dir),
           "OLD_GATE_SECRET_KEY": old_secret, "GATE_SECRET_KEY": new_secret}
    for _ in range(2):  # a second run (after an interruption) changes nothing
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "scripts.reseal_keys", env=env, stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        assert proc.returncode == 0
    assert out.decode().strip() == "re-sealed 0 bridge key(s) and 0 pass signing key(s)"
    new = KeyBox(new_secret)
    bridge = await app.db.bridges.find_one({"_id": creds["bridge_id"]})
    assert new.open(bridge["key"], creds["bridge_id"]) == p.derive_key(creds["secret"])
    key_doc = await app.db.pass_keys.find_one({"_id": signing.key_id})
    assert new.open(key_doc["sealed"], key_owner(signing.key_id)) == signing.private.private_bytes_raw()
    with pytest.raises(InvalidTag):
        KeyBox(old_secret).open(bridge["key"], creds["bridge_id"])
