"""The bridge program over real sockets: against a scripted hub (to check the bridge's own
rules) and against the real hub, including one killed with SIGKILL mid-stream."""

import asyncio
import signal
import sys
import time
from datetime import timedelta

import pytest
import pytest_asyncio

from gate_bridge import protocol as p
from gate_bridge import wire
from server.gate_hub import GateHub, HubOptions
from tests.builders import make_community, make_resident
from tests.gate_fixtures import HubProcess, start_sim_bridge

pytestmark = pytest.mark.asyncio

SECRET = p.new_secret()


class ScriptedHub:
    """The server side of the protocol, driven frame by frame by the test."""

    def __init__(self, secret: str = SECRET, replay_challenge: dict | None = None):
        self.key = p.derive_key(secret)
        self.replay_challenge = replay_challenge
        self.sessions: asyncio.Queue = asyncio.Queue()
        self.challenges: list[dict] = []
        self.writers = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()

    async def _serve(self, reader, writer) -> None:
        self.writers.append(writer)
        hello, _ = await wire.read_frame(reader)
        nonce, sn = p.as_bytes(hello["nonce"], "nonce"), p.new_nonce()
        challenge = self.replay_challenge or p.message(
            p.CHALLENGE, v=1, nonce=sn, proof=p.server_proof(self.key, hello["bridge"], nonce, sn))
        self.challenges.append(challenge)
        writer.write(wire.encode(challenge))
        await self.sessions.put(Session(reader, writer, hello))


class Session:
    def __init__(self, reader, writer, hello):
        self.reader, self.writer, self.hello = reader, writer, hello

    def send(self, msg: dict) -> None:
        self.writer.write(wire.encode(msg))

    async def recv(self, op: str | None = None, timeout: float = 3.0) -> dict:
        async with asyncio.timeout(timeout):
            while True:
                msg, _ = await wire.read_frame(self.reader)
                if op is None or msg["op"] == op:
                    return msg

    async def accept(self) -> None:
        """Expect auth, answer welcome."""
        await self.recv(p.AUTH)
        self.send(p.message(p.WELCOME, time=time.time(), heartbeat=0.2, config_version=None))

    def open(self, command_id: str, issued_at: float | None = None) -> None:
        self.send(p.message(p.OPEN, id=command_id, door=0, pulse_ms=50,
                            issued_at=time.time() if issued_at is None else issued_at, ttl=5))

    async def acks(self, command_id: str, count: int) -> list[dict]:
        return [await self.recv(p.ACK) for _ in range(count)]

    def close(self) -> None:
        self.writer.close()


@pytest_asyncio.fixture
async def scripted():
    hubs = []

    async def start(**kw) -> tuple[ScriptedHub, int]:
        hubs.append(ScriptedHub(**kw))
        return hubs[-1], await hubs[-1].start()
    yield start
    for h in hubs:
        await h.stop()


@pytest_asyncio.fixture
async def bridges(tmp_path):
    started = []

    async def start(port: int, bridge_id: str = "br-test", secret: str = SECRET, **kw):
        started.append(await start_sim_bridge(tmp_path, port, bridge_id, secret, **kw))
        return started[-1]
    yield start
    for sim in started:
        await sim.stop()


@pytest_asyncio.fixture
async def connected(scripted, bridges):
    """A bridge (its options given) in session with a scripted hub: (hub, bridge, session)."""
    async def start(**kw):
        fake, port = await scripted()
        sim = await bridges(port, **kw)
        session = await fake.sessions.get()
        await session.accept()
        return fake, sim, session
    return start


async def test_bridge_refuses_a_server_that_cannot_prove_the_key(scripted, bridges):
    fake, port = await scripted(secret=p.new_secret())
    sim = await bridges(port)
    session = await fake.sessions.get()
    with pytest.raises(asyncio.IncompleteReadError):
        await session.recv()  # the bridge hangs up instead of sending its proof
    assert sim.bridge.sessions == 0


async def test_bridge_refuses_a_replayed_challenge(scripted, connected):
    real, sim, first = await connected()
    await sim.bridge.wait(lambda: sim.bridge.sessions == 1)
    # A man in the middle answers the next hello with the challenge recorded before.
    fake, port2 = await scripted(replay_challenge=real.challenges[0])
    sim.bridge.config.port = port2
    first.close()
    session = await fake.sessions.get()
    with pytest.raises(asyncio.IncompleteReadError):
        await session.recv()
    assert sim.bridge.sessions == 1


async def test_an_open_delivered_late_is_refused_and_not_acted_on(connected):
    _, sim, session = await connected()
    session.open("late", issued_at=time.time() - 6)
    [ack] = await session.acks("late", 1)
    assert (ack["level"], ack["reason"]) == (p.REFUSED, "expired")
    assert sim.relay.pulses == 0


async def test_a_command_id_is_acted_on_once(connected):
    _, sim, session = await connected()
    session.open("c1")
    assert [a["level"] for a in await session.acks("c1", 3)] == ["received", "actuated", "opened"]
    session.open("c1")  # the hub resends (say, after a reconnect): report, do not act
    [dup] = await session.acks("c1", 1)
    assert dup["duplicate"] and dup["level"] == p.OPENED
    assert sim.relay.pulses == 1


async def test_events_are_replayed_after_a_reconnect_until_acknowledged(connected):
    fake, sim, first = await connected()
    for i in range(3):
        sim.bridge.record("door_opened", n=i)
    batch = await first.recv(p.EVENTS)
    seqs = [e["seq"] for e in batch["items"]]
    while len(seqs) < 3:
        seqs += [e["seq"] for e in (await first.recv(p.EVENTS))["items"]]
    first.send(p.message(p.EVENTS_ACK, upto=seqs[0]))  # only the first made it
    await sim.bridge.wait(lambda: sim.bridge.store.acked_seq == seqs[0])
    first.close()  # link drops: the bridge backs off and dials again
    second = await fake.sessions.get()
    assert second.hello["last_seq"] == seqs[0]
    await second.accept()
    replayed = await second.recv(p.EVENTS)
    assert [e["seq"] for e in replayed["items"]] == seqs[1:]
    second.send(p.message(p.EVENTS_ACK, upto=seqs[-1]))
    await sim.bridge.wait(lambda: sim.bridge.store.count == 0)


async def test_a_server_that_does_not_answer_a_scan_in_budget_is_decided_offline(connected):
    _, sim, session = await connected(decision_budget=0.05)
    await sim.bridge.wait(lambda: sim.bridge.sessions == 1)
    outcome = await sim.bridge.handle_scan("garbage-code")
    assert outcome["source"] == "bridge" and not outcome["allow"]
    scan = await session.recv(p.SCAN)
    assert scan["text"] == "garbage-code"


# -- against the real hub, killed with SIGKILL mid-stream --------------------------------------------

async def test_no_event_lost_or_duplicated_when_the_hub_is_killed_mid_stream(app, settings, bridges):
    c = await make_community(app, "k1")
    creds = await app.bridges.provision(c.id, c.gates["main"], c.staff["admin"])
    first = HubProcess(settings)
    second = None
    try:
        port = await first.ready()
        sim = await bridges(port, creds["bridge_id"], creds["secret"])
        await sim.bridge.wait(lambda: sim.bridge.sessions == 1)
        produced = [sim.bridge.record("door_opened", n=i) for i in range(200)]
        # Some acknowledged, some in flight: now the hub dies without a word.
        await sim.bridge.wait(lambda: sim.bridge.store.acked_seq >= 20)
        first.kill()
        # Under load the first hub may have dropped a silent bridge already (200 fsyncs in a
        # row keep its loop busy): what counts is a session with the second hub.
        sessions_with_first = sim.bridge.sessions
        produced += [sim.bridge.record("door_closed", n=i) for i in range(100)]
        second = HubProcess(settings, port)
        await second.ready()
        await sim.bridge.wait(lambda: sim.bridge.sessions > sessions_with_first
                              and sim.bridge.store.count == 0)
    finally:
        first.kill()
        if second is not None:
            second.kill()
    stored = await app.db.gate_events.find(
        {"bridge": creds["bridge_id"], "seq": {"$ne": None}}).to_list(None)
    assert sorted(e["seq"] for e in stored) == produced  # each once, none missing
    assert len(stored) == 300


# -- offline decisions with the real verifier's rules ----------------------------------------------

async def test_offline_decisions_refuse_revoked_and_replayed_codes_and_are_replayed_later(
        app, bridges):
    c = await make_community(app, "o1")
    creds = await app.bridges.provision(c.id, c.gates["main"], c.staff["admin"])
    codes = {}
    for name, room in (("ok", "1-1-101"), ("gone", "1-1-102")):
        rid, token = await make_resident(app, c, name, room=room)
        principal = await app.auth.principal(token)
        codes[name] = ((await app.passes.resident_code(principal, c.id))["token"], rid)
    await app.passes.revoke(c.id, codes["gone"][1], app.clock.now() + timedelta(days=1),
                            "moved out", c.staff["admin"])
    hub = GateHub(app, HubOptions())
    port = await hub.start(0, "127.0.0.1")
    sim = await bridges(port, creds["bridge_id"], creds["secret"])
    try:
        await sim.bridge.wait(lambda: (sim.bridge.store.config() or {}).get("revoked"))
        await hub.stop()  # the network is down
        await sim.bridge.wait(lambda: sim.bridge.writer is None)
        outcomes = [await sim.bridge.handle_scan(text) for text in
                    (codes["ok"][0], codes["ok"][0], codes["gone"][0])]
        assert [(o["source"], o["allow"], o["reason"]) for o in outcomes] == [
            ("bridge", True, "ok"), ("bridge", False, "replayed"), ("bridge", False, "revoked")]
        assert sim.relay.pulses == 1
        hub = GateHub(app, HubOptions())  # the network is back
        await hub.start(port, "127.0.0.1")
        await sim.bridge.wait(lambda: sim.bridge.sessions == 2 and sim.bridge.store.count == 0)
        await hub.wait(lambda: hub.idle)
    finally:
        await hub.stop()
    page = await app.access_log.query(c.id, gate_id=c.gates["main"])
    assert sorted((e["source"], e["result"], e["reason"]) for e in page["items"]) == [
        ("offline", "allow", "ok"), ("offline", "deny", "replayed"), ("offline", "deny", "revoked")]
    # The code used offline counts on the server too: another gate, online, refuses it.
    unit_door = await app.places.gate(c.id, c.gates["u1-1"])
    again = await app.gate_access.check(codes["ok"][0], unit_door, "in", "gate")
    assert (again.allow, again.reason) == (False, "replayed")


# -- door hardware: exit button, tamper, power and fire-panel inputs, against the real hub -----------

async def stored_events(app, bridge_id: str) -> list[dict]:
    docs = await app.db.gate_events.find({"bridge": bridge_id, "seq": {"$ne": None}}).to_list(None)
    return sorted(docs, key=lambda d: d["seq"])


async def test_the_exit_button_opens_the_door_without_a_forced_alarm(app, bridges):
    c = await make_community(app, "x1")
    creds = await app.bridges.provision(c.id, c.gates["main"], c.staff["admin"])
    hub = GateHub(app, HubOptions())
    port = await hub.start(0, "127.0.0.1")
    try:
        now = [time.time()]
        sim = await bridges(port, creds["bridge_id"], creds["secret"], clock=lambda: now[0])
        await sim.bridge.wait(lambda: sim.bridge.store.config() is not None)
        sim.bridge.inputs["exit"].set(True)  # pushed: the lock releases, the door swings open
        sim.bridge.inputs["exit"].set(False)
        await sim.bridge.wait(lambda: sim.bridge.store.acked_seq == 3)  # the door closed again
        assert sim.relay.pulses == 1
        now[0] += 60  # a minute later nobody released it: this opening is forced
        sim.door.set(True)
        await sim.bridge.wait(lambda: sim.bridge.store.acked_seq == 4)
        await hub.wait(lambda: hub.idle)
        assert [a["kind"] for a in await app.gate_alarms.alarms(c.id)] == ["door_forced"]
    finally:
        await hub.stop()
    assert [e["type"] for e in await stored_events(app, creds["bridge_id"])] == [
        "exit_request", "door_opened", "door_closed", "door_forced"]


async def test_tamper_power_and_fire_inputs_report_and_fire_holds_the_gate_open(app, bridges):
    c = await make_community(app, "x2")
    creds = await app.bridges.provision(c.id, c.gates["main"], c.staff["admin"])
    hub = GateHub(app, HubOptions())
    port = await hub.start(0, "127.0.0.1")
    try:
        sim = await bridges(port, creds["bridge_id"], creds["secret"], auto_door=False)
        await sim.bridge.wait(lambda: sim.bridge.store.config() is not None)
        inputs = sim.bridge.inputs
        inputs["tamper"].set(True)
        inputs["power"].set(True)
        inputs["power"].set(False)
        inputs["fire"].set(True)  # the fire panel releases every door, link or no link
        await sim.bridge.wait(lambda: sim.relay.active and sim.bridge.mode == "open")
        sim.door.set(True)  # people stream out: not forced, not held
        inputs["fire"].set(False)
        await sim.bridge.wait(lambda: not sim.relay.active and sim.bridge.mode == "normal")
        await sim.bridge.wait(lambda: sim.bridge.store.count == 0 and sim.bridge.store.acked_seq >= 8)
        await hub.wait(lambda: hub.idle)
        assert sorted(a["kind"] for a in await app.gate_alarms.alarms(c.id)) == [
            "fire_release", "fire_release", "power_lost", "tamper"]
    finally:
        await hub.stop()
    events = await stored_events(app, creds["bridge_id"])
    assert [(e["type"], e["data"].get("active", e["data"].get("mode"))) for e in events] == [
        ("tamper", None), ("power_lost", None), ("power_restored", None), ("fire_release", True),
        ("mode_changed", "open"), ("door_opened", None), ("fire_release", False),
        ("mode_changed", "normal")]


async def test_the_bridge_program_logs_refusals_says_bye_and_exits_in_time_on_sigterm(
        scripted, tmp_path):
    bound = 0.5  # its shutdown_timeout; one second is what an operator is promised
    fake, port = await scripted()
    config = tmp_path / "bridge.toml"
    config.write_text(f'[bridge]\nbridge_id = "br-test"\nsecret = "{SECRET}"\nport = {port}\n'
                      f'tls = false\nallow_plain = true\nshutdown_timeout = {bound}\n'
                      f'store_path = "{tmp_path / "bridge.sqlite"}"\n'
                      '[scanner]\nkind = "stdin"\n[relay]\nkind = "simulated"\n')
    program = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gate_bridge", "--config", str(config),
        stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        session = await fake.sessions.get()
        await session.accept()
        session.open("late", issued_at=time.time() - 6)
        [ack] = await session.acks("late", 1)
        assert (ack["level"], ack["reason"]) == (p.REFUSED, "expired")
        async with asyncio.timeout(10):
            while b"open late refused: expired" not in await program.stderr.readline():
                pass
        program.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert (await session.recv(p.BYE))["reason"] == "shutdown"
        await asyncio.wait_for(program.wait(), 2 * bound)  # the deadline: 1 s from SIGTERM
        assert program.returncode == 0
        assert time.monotonic() - signalled < 2 * bound
        rest = await program.stderr.read()
        assert b"stopped" in rest and b"Traceback" not in rest
    finally:
        if program.returncode is None:
            program.kill()
            await program.wait()
