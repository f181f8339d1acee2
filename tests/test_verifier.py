"""The gate decision: every deny reason, tampering, keys, skew, replays, random input."""

import asyncio
import base64
from dataclasses import replace
from datetime import UTC, datetime

import base45
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings as hsettings, strategies as st

from gate_bridge.decision import (ENTRY_COUNT_RETENTION, GateInfo, decide, gate_covers,
                                  gate_info, use_claim, verify)
from gate_bridge.passes import HEADER, SIGNATURE_BYTES, Payload, community_tag, days_mask, sign
from models.access_log import AccessLog
from models.gate_access import GateAccess
from models.gate_commands import CommandAudit
from models.common import ManualClock
from models.passes import PassManager
from server.stores import connect_redis
from tests.builders import make_community, make_resident

CID = "65f000000000000000000001"
OTHER_CID = "65f000000000000000000002"
NOW = 1767225600  # 2026-01-01T00:00:00Z = 08:00 in China
KEY = Ed25519PrivateKey.from_private_bytes(bytes(32))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes([7]) * 32)
KEYS = {1: KEY.public_key()}
MAIN = GateInfo(CID, "g1", "main", [""])
UNIT = GateInfo(CID, "g2", "u3-2", ["3-2"])
OTHER_UNIT = GateInfo(CID, "g3", "u3-1", ["3-1"])


def resident(**changes) -> Payload:
    base = Payload("resident", 1, NOW, NOW + 60, bytes(6), community_tag(CID),
                   bytes.fromhex("65f0000000000000000000aa"), 0, (0, 96), ("3-2-1201",))
    return base._replace(**changes)


def visitor(**changes) -> Payload:
    base = Payload("visitor", 1, NOW, NOW + 86400, b"\x01" * 6, community_tag(CID),
                   bytes.fromhex("65f0000000000000000000bb"), 2, (0, 96), ("main",))
    return base._replace(**changes)


def token(payload: Payload, key=KEY, community=CID) -> str:
    return sign(payload, community, key)


def check(text: str, gate=MAIN, now=NOW + 1, keys=KEYS, revoked=(), nonces=None, **kw):
    return decide(text, gate, now, keys, set(revoked), nonces, **kw)


class MemoryNonces:
    """The bridge's store contract (gate_bridge/store.py is SQLite)."""

    def __init__(self):
        self.used: dict[bytes, float] = {}

    def use(self, nonce: bytes, expires: float) -> bool:
        if nonce in self.used:
            return False
        self.used[nonce] = expires
        return True


def test_ok_and_payload_round_trip():
    d = check(token(resident()), UNIT)
    assert (d.allow, d.reason) == (True, "ok")
    assert d.payload == resident()
    assert (d.kind, d.subject, d.pass_id) == ("resident", "65f0000000000000000000aa", None)
    v = check(token(visitor()))
    assert v.allow and v.pass_id == "65f0000000000000000000bb"


@pytest.mark.parametrize("text", ["", "hello", "%%%", "A" * 5, "123456789012",
                                  base45.b45encode(b"\x01" * 50).decode()])
def test_malformed_and_unknown_code(text):
    assert check(text).reason == ("unknown_code" if text.isdigit() else "malformed")
    assert not check(text).allow


def test_structural_problems_are_malformed():
    good = resident().pack()
    sig = bytes(64)
    for data in (b"\x02" + good[1:],  # version
                 good[:1] + b"\x09" + good[1 + 1:],  # kind
                 good[:34] + bytes([0, 0]) + good[36:],  # empty hours
                 good[:3] + (NOW + 60).to_bytes(4, "big") + NOW.to_bytes(4, "big") + good[11:],
                 good + b"xy",  # trailing bytes (one would be the working days)
                 good + b"\x7f",  # every day spelled out: its encoding is no byte
                 good[:-1],  # truncated scope
                 good[:36] + b"\x01\x02\xff\xfe"):  # scope not UTF-8
        assert check(base45.b45encode(data + sig).decode()).reason == "malformed", data.hex()


def test_every_deny_reason():
    assert check(token(resident(key_id=9))).reason == "unknown_key"
    assert check(token(resident()), GateInfo(OTHER_CID, "x", "main", [""])).reason == \
        "wrong_community"
    assert check(token(resident(), key=OTHER_KEY)).reason == "bad_signature"
    assert check(token(resident()), now=NOW - 6).reason == "not_yet_valid"
    assert check(token(resident()), now=NOW + 65).reason == "expired"
    assert check(token(resident()), OTHER_UNIT).reason == "gate_not_allowed"
    assert check(token(visitor()), UNIT).reason == "gate_not_allowed"
    # 09:00-18:00 in Asia/Shanghai (quarters 36-72); NOW is 08:00 local.
    worker = token(visitor(kind="worker", hours=(36, 72)))
    assert check(worker).reason == "outside_hours"
    assert check(worker, now=NOW + 3600).reason == "ok"
    assert check(worker, now=NOW + 10 * 3600).reason == "outside_hours"  # 18:00
    assert check(token(resident()), UNIT, revoked={"65f0000000000000000000aa"}).reason == "revoked"
    nonces = MemoryNonces()
    assert check(token(resident()), UNIT, nonces=nonces).reason == "ok"
    assert check(token(resident()), UNIT, nonces=nonces).reason == "replayed"
    twice = token(visitor())
    assert [check(twice, nonces=nonces).reason for _ in range(3)] == ["ok", "ok", "used_up"]


def test_gate_mode_and_hours_refuse_before_anything_is_used():
    locked = replace(MAIN, mode="locked")
    staff = token(resident(kind="staff", scope=("security",)))
    nonces = MemoryNonces()
    assert check(token(resident()), replace(UNIT, mode="locked"), nonces=nonces).reason == "locked"
    assert not nonces.used  # refused, so nothing taken
    assert check(staff, locked).reason == "ok"
    assert check(staff, replace(locked, lockdown_staff=False)).reason == "locked"
    closed = replace(MAIN, hours=(("09:00", "17:00"),))  # NOW is 08:00 local
    assert check(token(visitor()), closed).reason == "gate_closed"
    assert check(token(visitor()), closed, now=NOW + 3600).reason == "ok"
    assert check(staff, closed).reason == "ok"
    assert check(token(visitor()), replace(closed, mode="open")).reason == "ok"  # fire release
    night = replace(MAIN, hours=(("22:00", "07:00"),))
    assert check(token(visitor()), night).reason == "gate_closed"
    earlier = token(visitor(not_before=NOW - 86400))
    assert check(earlier, night, now=NOW - 9 * 3600).reason == "ok"  # 23:00 the day before


def test_local_hours_follow_the_zones_daylight_saving_changes():
    # Berlin moves from UTC+1 to UTC+2 at 01:00 UTC on 2026-03-29, and back at 01:00 UTC on
    # 2026-10-25; New York from UTC-5 to UTC-4 at 07:00 UTC on 2026-03-08.
    berlin = replace(MAIN, time_zone="Europe/Berlin", hours=(("07:00", "20:00"),))
    spring = datetime(2026, 3, 29, tzinfo=UTC).timestamp()
    always = visitor(not_before=int(spring) - 86400 * 30, expires=int(spring) + 86400 * 240)
    at = {  # UTC time of day on the day of the change -> the decision
        "05:30": "ok",  # 07:30 summer time (a fixed UTC+1 would say 06:30: closed)
        "05:00": "ok",  # 07:00: opening
        "04:59": "gate_closed",  # 06:59
        "17:59": "ok",  # 19:59
        "18:30": "gate_closed",  # 20:30 (a fixed UTC+1 would say 19:30: open)
    }
    for utc, reason in at.items():
        hours, minutes = map(int, utc.split(":"))
        assert check(token(always), berlin, now=spring + hours * 3600 + minutes * 60).reason \
            == reason, utc
    autumn = datetime(2026, 10, 25, tzinfo=UTC).timestamp()
    # 06:30 winter time, closed (a fixed UTC+2 from summer would say 07:30: open); 07:30 opens.
    assert check(token(always), berlin, now=autumn + 5.5 * 3600).reason == "gate_closed"
    assert check(token(always), berlin, now=autumn + 6.5 * 3600).reason == "ok"
    york = replace(MAIN, time_zone="America/New_York")
    worker = token(always._replace(kind="worker", hours=(32, 68)))  # 08:00-17:00 local
    march_8 = datetime(2026, 3, 8, tzinfo=UTC).timestamp()
    assert check(worker, york, now=march_8 + 12.5 * 3600).reason == "ok"  # 08:30 EDT
    assert check(worker, york, now=march_8 - 86400 + 12.5 * 3600).reason == "outside_hours"  # 07:30 EST
    assert check(worker, york, now=march_8 + 21.25 * 3600).reason == "outside_hours"  # 17:15 EDT


def test_a_reader_line_ending_is_stripped_but_base45_spaces_are_kept():
    text = token(resident())
    assert check(text + "\r\n").reason == "ok"
    assert check("\t" + text + "\n").reason == "ok"
    assert check(" 1234 5678 9012\r\n").reason == "unknown_code"  # a short code, offline
    assert check(text + " ").reason == "malformed"  # a space is a Base45 letter: not stripped


def test_night_window_wraps_midnight():
    night = token(visitor(kind="worker", hours=(88, 24)))  # 22:00-06:00 local
    assert check(night, now=NOW + 15 * 3600).reason == "ok"  # 23:00 local
    assert check(night, now=NOW + 21 * 3600).reason == "ok"  # 05:00 local
    assert check(night, now=NOW + 3600).reason == "outside_hours"  # 09:00 local


def test_working_days_are_local_and_a_night_shift_belongs_to_the_day_it_starts():
    # NOW is Thursday 2026-01-01, 08:00 in China (Wednesday 19:00 in New York).
    week = visitor(kind="worker", not_before=NOW - 7 * 86400, expires=NOW + 14 * 86400,
                   days=days_mask(("mon", "tue", "wed", "thu", "fri")))
    day = 86400
    assert check(token(week)).reason == "ok"  # Thursday
    assert check(token(week), now=NOW + 2 * day).reason == "outside_days"  # Saturday
    assert check(token(week), now=NOW + 3 * day).reason == "outside_days"  # Sunday
    assert check(token(week), now=NOW + 4 * day).reason == "ok"  # Monday
    saturdays = token(week._replace(days=days_mask(("sat",))))
    assert check(saturdays, now=NOW + 2 * day).reason == "ok"
    york = replace(MAIN, time_zone="America/New_York")
    assert check(saturdays, york, now=NOW + 2 * day).reason == "outside_days"  # Friday there
    assert check(saturdays, york, now=NOW + 3 * day).reason == "ok"  # Saturday 19:00 there
    night = token(week._replace(hours=(88, 24)))  # Monday to Friday, 22:00-06:00
    assert check(night, now=NOW + day + 15 * 3600).reason == "ok"  # Friday 23:00
    assert check(night, now=NOW + day + 21 * 3600).reason == "ok"  # Saturday 05:00: Friday's
    assert check(night, now=NOW + 2 * day + 15 * 3600).reason == "outside_days"  # Saturday 23:00
    assert check(night, now=NOW + 3 * day + 21 * 3600).reason == "outside_days"  # Monday 05:00
    assert check(night, now=NOW + 4 * day + 15 * 3600).reason == "ok"  # Monday 23:00
    assert check(night, now=NOW + 2 * day + 12 * 3600).reason == "outside_hours"  # hours first
    nonces = MemoryNonces()
    counted = token(week._replace(max_entries=1))
    assert check(counted, now=NOW + 2 * day, nonces=nonces).reason == "outside_days"
    assert check(counted, nonces=nonces).reason == "ok"  # the refusal took no entry


def test_exits_do_not_use_entries_but_resident_codes_are_single_use_both_ways():
    nonces = MemoryNonces()
    one = token(visitor(max_entries=1))
    assert check(one, nonces=nonces, direction="in").allow
    assert check(one, nonces=nonces, direction="out").allow
    assert check(one, nonces=nonces, direction="in").reason == "used_up"
    code = token(resident())
    assert check(code, UNIT, nonces=nonces, direction="out").allow
    assert check(code, UNIT, nonces=nonces, direction="in").reason == "replayed"


def test_claims_outlive_codes_and_slot_keys_are_distinct():
    claim = use_claim(visitor(), "in")
    assert claim.expires == NOW + 86400 + 5 + ENTRY_COUNT_RETENTION
    assert {claim.slot_key(0), claim.slot_key(1)} == {claim.key + b"\0", claim.key + b"\1"}
    single = use_claim(resident(), "out")
    assert single.slot_key(0) == single.key and single.limit == 1
    assert use_claim(visitor(), "out") is None
    assert use_claim(visitor(max_entries=0), "in") is None


@pytest.mark.parametrize("skew", [0, 5, 30])
def test_skew_boundaries(skew):
    text = token(resident())
    at = lambda now: check(text, UNIT, now=now, skew=skew).reason  # noqa: E731
    assert at(NOW - skew - 1) == "not_yet_valid"
    assert at(NOW - skew) == "ok"
    assert at(NOW + 60 + skew - 0.001) == "ok"
    assert at(NOW + 60 + skew) == "expired"


def test_tampering_with_any_payload_byte_is_refused():
    raw = base45.b45decode(token(resident()))
    size = len(raw) - SIGNATURE_BYTES
    for i in range(size):
        for flip in (0x01, 0x80):
            bad = bytearray(raw)
            bad[i] ^= flip
            d = check(base45.b45encode(bytes(bad)).decode(), UNIT)
            assert not d.allow, (i, flip)
            # Header bytes that the checks read before the signature may give their own
            # reason; every other change must fail the signature.
            expected = {2: "unknown_key"}.get(i) or ("wrong_community" if 17 <= i < 21 else None)
            if expected:
                assert d.reason == expected, (i, d.reason)
            else:
                assert d.reason in ("bad_signature", "malformed"), (i, d.reason)
    for i in range(size, len(raw)):  # and the signature
        bad = bytearray(raw)
        bad[i] ^= 0x01
        assert check(base45.b45encode(bytes(bad)).decode(), UNIT).reason == "bad_signature"


def test_signature_from_another_key_with_the_same_id_and_swapped_signatures():
    assert check(token(resident(), key=OTHER_KEY), UNIT).reason == "bad_signature"
    a = base45.b45decode(token(resident()))
    b = base45.b45decode(token(resident(nonce=b"\x09" * 6)))
    swapped = a[:-SIGNATURE_BYTES] + b[-SIGNATURE_BYTES:]
    assert check(base45.b45encode(swapped).decode(), UNIT).reason == "bad_signature"
    # A signature made for another community does not verify even if the tag is forged.
    forged = sign(resident(), OTHER_CID, KEY)
    assert check(forged, UNIT).reason == "bad_signature"


def test_keys_may_come_as_in_the_config_push():
    pushed = {"1": base64.b64encode(KEY.public_key().public_bytes_raw()).decode(),
              "2": "not base64!"}
    assert check(token(resident()), UNIT, keys=pushed).allow
    assert check(token(resident(key_id=2)), UNIT, keys=pushed).reason == "unknown_key"


def test_gate_coverage_is_by_segments():
    assert gate_covers([""], "3-2-1201")
    assert gate_covers(["3"], "3-2-1201") and gate_covers(["3-2"], "3-2")
    assert not gate_covers(["3"], "31-2-1201")
    assert not gate_covers(["3-2-1201"], "3-2")
    assert check(token(resident(scope=())), MAIN).reason == "gate_not_allowed"  # no rooms, no gate


def test_staff_codes_open_only_gates_that_let_their_roles_through():
    guard = token(resident(kind="staff", scope=("security",)))
    fixer = token(resident(kind="staff", scope=("maintenance",)))
    assert check(guard, OTHER_UNIT).allow  # staff scope is roles, not places
    assert check(fixer, OTHER_UNIT).reason == "gate_not_allowed"  # not a default gate role
    plant_room = replace(OTHER_UNIT, staff_roles=frozenset({"maintenance"}))
    assert check(fixer, plant_room).allow
    assert check(guard, plant_room).reason == "gate_not_allowed"
    assert check(token(resident(kind="staff", scope=())), MAIN).reason == "gate_not_allowed"
    # What a bridge is pushed decides the same: the gate's list, or the default when unset.
    pushed = gate_info({"community_id": CID, "gate_id": "g", "code": "pr", "covers": [""]},
                       {"staff_roles": ["maintenance", "security"]})
    assert check(fixer, pushed).allow and check(guard, pushed).allow
    unset = gate_info({"community_id": CID, "gate_id": "g", "code": "pr", "covers": [""]}, {})
    assert check(guard, unset).allow and check(fixer, unset).reason == "gate_not_allowed"
    # A refused staff code used nothing: it still opens a gate that lets its role through.
    nonces = MemoryNonces()
    assert check(fixer, MAIN, nonces=nonces).reason == "gate_not_allowed" and not nonces.used
    assert check(fixer, plant_room, nonces=nonces).allow


@hsettings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash_the_decoder(data):
    d = check(base45.b45encode(data).decode())
    assert not d.allow and d.reason in ("malformed", "unknown_key", "wrong_community",
                                        "bad_signature")


@hsettings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_text_never_crashes(text):
    assert not verify(text, MAIN, NOW, KEYS, set()).allow


@hsettings(max_examples=200, deadline=None)
@given(st.binary(min_size=HEADER.size, max_size=120))
def test_random_payloads_with_valid_signatures_never_crash(data):
    sig = KEY.sign(b"XQP1" + bytes.fromhex(CID) + data)
    d = check(base45.b45encode(data + sig).decode())
    assert d.reason in ("ok", "malformed", "unknown_key", "wrong_community", "not_yet_valid",
                        "expired", "gate_not_allowed", "outside_hours", "bad_signature")


# -- the server's check: Redis makes single use atomic across processes ------------------------


@pytest.fixture
def clock():
    return ManualClock(datetime(2026, 3, 2, 2, 0, tzinfo=UTC))  # 10:00 in China


@pytest.mark.asyncio
async def test_concurrent_double_scan_allows_exactly_once(app, settings):
    c = await make_community(app, "dbl")
    rid, _ = await make_resident(app, c, "dbl")
    principal = await app.auth.principal(
        (await app.auth.start_session(rid, "resident"))["access_token"])
    code = (await app.passes.resident_code(principal, c.id))["token"]
    gate = await app.places.gate(c.id, c.gates["main"])
    # A second "process": its own manager and Redis connection over the same stores.
    other_redis = connect_redis(settings.redis_url)
    try:
        other_log = AccessLog(app.db)
        passes = PassManager(app.db, other_redis, app.clock, settings, app.places, app.bindings,
                             app.staff, other_log, app.passes.box)
        other = GateAccess(other_redis, app.clock, passes, other_log, app.gate_events,
                           app.gate_alarms, app.gate_modes, CommandAudit(app.db))
        results = await asyncio.gather(*(m.check(code, gate, "in", "gate")
                                         for m in (app.gate_access, other) * 4))
    finally:
        await other_redis.aclose()
    assert sorted(r.reason for r in results) == ["ok"] + ["replayed"] * 7
    log = await app.access_log.query(c.id, subject=rid, limit=20)
    assert sorted(i["reason"] for i in log["items"]) == ["ok"] + ["replayed"] * 7


@pytest.mark.asyncio
async def test_server_check_reasons_time_and_revocation(app):
    c = await make_community(app, "srv")
    rid, _ = await make_resident(app, c, "srv", room="1-2-101")
    principal = await app.auth.principal(
        (await app.auth.start_session(rid, "resident"))["access_token"])
    main = await app.places.gate(c.id, c.gates["main"])
    unit = await app.places.gate(c.id, c.gates["u1-1"])
    code = (await app.passes.resident_code(principal, c.id))["token"]
    assert (await app.gate_access.check(code, unit, "in", "scanner")).reason == "gate_not_allowed"
    app.clock.advance(66)
    assert (await app.gate_access.check(code, main, "in", "scanner")).reason == "expired"
    await app.passes.suspend(c.id, rid, "unpaid", "staff:x")
    fresh = (await app.passes.resident_code(principal, c.id))["token"]
    assert (await app.gate_access.check(fresh, main, "in", "scanner")).reason == "revoked"
    # After a Redis restart the revocation is reloaded from MongoDB.
    await app.redis.delete(f"revoked:{c.id}")
    assert (await app.gate_access.check(fresh, main, "in", "scanner")).reason == "revoked"
    assert rid in (await app.passes.bridge_config(c.id))["revoked"]
    await app.passes.lift(c.id, rid)
    assert (await app.gate_access.check(fresh, main, "in", "scanner")).reason == "ok"


@pytest.mark.asyncio
async def test_key_rotation_keeps_codes_in_flight(app):
    c = await make_community(app, "rot")
    rid, _ = await make_resident(app, c, "rot")
    principal = await app.auth.principal(
        (await app.auth.start_session(rid, "resident"))["access_token"])
    main = await app.places.gate(c.id, c.gates["main"])
    old = (await app.passes.resident_code(principal, c.id))["token"]
    old_id = (await app.passes.signing_key()).key_id
    new_id = await app.passes.rotate_key()
    new = (await app.passes.resident_code(principal, c.id))["token"]
    assert base45.b45decode(new)[2] == new_id != old_id
    assert set((await app.passes.bridge_config(c.id))["keys"]) == {str(old_id), str(new_id)}
    assert (await app.gate_access.check(old, main, "in", "gate")).reason == "ok"
    assert (await app.gate_access.check(new, main, "in", "gate")).reason == "ok"
    with pytest.raises(Exception, match="rotate first"):
        await app.passes.retire_key(new_id)
    await app.passes.retire_key(old_id)
    again = (await app.passes.resident_code(principal, c.id))["token"]
    assert (await app.gate_access.check(again, main, "in", "gate")).reason == "ok"
    app.passes._ring_at = float("-inf")  # as another process would after its cache time
    assert (await app.gate_access.check(old, main, "out", "gate")).reason == "unknown_key"
