"""Remote opens under faults: every command actuates at most once and never after its ttl, every
answer says what the door did, and every command's outcome is recorded once — through bridge
kills, late delivery, lost acknowledgements and server kills (issue 12 §1.6, §3).

    python -m scripts.drills.opens [--short]

Real bridges (gate_bridge.Bridge on simulated hardware, in this process, each watched where it
actuates: after its claim of the command id and its ttl check) behind a real server on real
stores. Rounds of HTTP remote opens while:
  1. a bridge is killed mid-round and started again on its store (a new Bridge object: nothing
     kept in memory);
  2. a bridge is away while opens are issued, and comes back after their ttl (they must never
     act) or within it (they act once, late);
  3. a bridge's connection is cut right after it actuates, so its acknowledgements are lost
     (the hub re-delivers; the bridge answers the repeat without acting);
  4. the server is killed -9 with opens in flight and started again (the outbox asks the
     bridges what they did once the commands have expired).
Counting: actuations per command id from the bridges; intents and outcomes from the stores
(outbox, gate_commands, access_log); answers from HTTP.
"""

import asyncio
import contextlib
import logging
from collections import Counter, defaultdict
from pathlib import Path

from bson import ObjectId

from gate_bridge import protocol as p
from scripts.drills.common import Drill, main
from scripts.simulate_bridges import make_bridge

# GATE_COMMAND_TTL for the drill's server: short, since commands past their ttl are waited
# for (late deliveries, the outcomes of opens cut off by the kill) — the default 5 s made
# the short drill take a minute. Clocks on one host agree to far less than a second.
TTL = 1.5
GRACE = 2.0  # GATE_OUTCOME_GRACE for the drill's server: outcomes asked for soon after


class Doors:
    """The drill's bridges, each watched where it actuates a command."""

    def __init__(self, d: Drill, site, gate_port: int):
        self.d, self.site, self.port = d, site, gate_port
        self.data = d.dir / "open-bridges"
        self.data.mkdir(exist_ok=True)
        self.acted: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
        self.cut_after_acting: set[str] = set()  # bridges whose link drops after their next act
        self.delay: dict[str, float] = {}  # bridge -> seconds its commands take to reach it
        self.delivered_late = 0
        self.in_flight: set[asyncio.Task] = set()
        self.bridges: dict[str, object] = {}

    async def start(self, bridge_id: str) -> None:
        creds = next(c for c in self.site.creds if c["bridge_id"] == bridge_id)
        bridge = make_bridge(bridge_id, creds["secret"], "127.0.0.1", self.port, Path(self.data),
                             door={"open_after": 0.0, "close_after": 0.001}, backoff_base=0.05,
                             backoff_max=0.5, door_open_timeout=0.2)
        acting = bridge._open_door

        async def open_door(command_id, msg):
            if command_id is not None:  # a command passed its claim and ttl check: it acts
                self.acted[command_id].append((bridge.server_now(), msg["issued_at"], msg["ttl"]))
                if bridge_id in self.cut_after_acting and bridge.writer is not None:
                    self.cut_after_acting.discard(bridge_id)
                    bridge.writer.transport.abort()  # its acks are lost with the link
            await acting(command_id, msg)
        bridge._open_door = open_door
        receive = bridge._on_command

        async def on_command(msg):
            if bridge_id not in self.delay:
                return await receive(msg)

            async def later(seconds=self.delay[bridge_id]):
                await asyncio.sleep(seconds)  # the frame was that long in flight
                self.delivered_late += 1
                with contextlib.suppress(Exception):  # its session may have ended meanwhile
                    await receive(msg)
            task = asyncio.create_task(later())
            self.in_flight.add(task)
            task.add_done_callback(self.in_flight.discard)
        bridge._on_command = on_command
        bridge.running = asyncio.create_task(bridge.run())
        self.bridges[bridge_id] = bridge
        await bridge.wait(lambda: bridge.writer is not None and bridge.store.config(), 60)

    async def kill(self, bridge_id: str) -> None:
        """Gone at once, in-memory state and all (its SQLite store stays)."""
        bridge = self.bridges.pop(bridge_id)
        bridge.running.cancel()
        await asyncio.gather(bridge.running, return_exceptions=True)
        bridge.store.close()

    async def close(self) -> None:
        for bridge_id in list(self.bridges):
            await self.kill(bridge_id)


async def drill(d: Drill) -> None:
    logging.getLogger("gate_bridge").setLevel(logging.ERROR)
    mongo, redis = await d.mongo(), await d.redis()
    env = {"LEASE_SECONDS": "2", "GATE_OUTCOME_GRACE": str(GRACE), "GATE_HEARTBEAT": "1",
           "GATE_COMMAND_TTL": str(TTL)}
    server = await d.server(mongo, redis, **env)
    site = await d.seed(gates=3 if d.short else 8)
    doors = Doors(d, site, server.gate_port)
    for creds in site.creds:
        await doors.start(creds["bridge_id"])
    answers: dict[str, tuple[int, dict]] = {}  # command id -> (status, body) when answered
    unanswered = Counter()
    per_round = 2 if d.short else 10
    gates = site.gates

    async def open_gate(gate: dict, wait: float = 3.0) -> None:
        status, body = await d.call("POST", site.api(server.base, f"/gates/{gate['id']}/open"),
                                    site.token, {"reason": "drill", "wait": wait}, timeout=30)
        command_id = (body or {}).get("command_id") or ((body or {}).get("error") or {}).get(
            "command_id")
        if command_id:
            answers[command_id] = (status, body)
        else:
            unanswered[status] += 1

    async def opens(count: int, wait: float = 3.0) -> None:
        await asyncio.gather(*(open_gate(gates[i % len(gates)], wait) for i in range(count)))

    try:
        await opens(per_round)
        d.say(f"plain: {per_round} opens")

        # 1. a bridge killed mid-round, started again on its store
        victim = gates[0]["bridge_id"]
        round_ = asyncio.create_task(opens(per_round * len(gates)))
        await d.until(lambda: _now(len(doors.acted) > per_round), 30, 0.01)
        await doors.kill(victim)
        await doors.start(victim)
        await round_
        d.say("bridge killed and restarted during a round of opens")

        # 2. late delivery: commands reaching a bridge after their ttl, or late within it
        before = set(answers)
        doors.delay[victim] = TTL + 0.5
        await opens(1, wait=0.3)  # answered no_ack; reaches the bridge expired
        expired = set(answers) - before
        await d.until(lambda: _now(doors.delivered_late >= 1), 30, 0.05)
        before = set(answers)
        doors.delay[victim] = TTL / 2
        await opens(1, wait=0.3)  # answered no_ack; reaches the bridge late but in time
        late = set(answers) - before
        await d.until(lambda: _now(all(doors.acted.get(c) for c in late)), 30, 0.05)
        doors.delay.pop(victim)
        d.say(f"late delivery: {len(expired)} open reached its bridge past its ttl, "
              f"{len(late)} late within it")

        # 3. lost acks: the link cut right after the bridge acts
        for creds in site.creds:
            doors.cut_after_acting.add(creds["bridge_id"])
        await opens(len(gates))
        d.say("acks lost: each bridge's link cut right after it acted")

        # 4. the server killed -9 with opens in flight (a short wait: their intents are due,
        # and asked about, at issue + wait + ttl + grace)
        round_ = asyncio.create_task(opens(per_round * len(gates), wait=1.0))
        await d.until(lambda: _now(len(doors.acted) > len(answers)), 30, 0.005)
        await server.kill9()
        await round_
        await server.start()
        d.say(f"server killed -9 with opens in flight ({sum(unanswered.values())} unanswered)")
        # Outcomes nobody recorded are asked for once the commands expired (+ GRACE).
        async with d.app() as app:
            await d.until(lambda: _settled(app), 60, 0.2)
    finally:
        await doors.close()
    await check(d, site, doors, answers, expired, unanswered)


async def _now(value: bool) -> bool:
    return value


async def _settled(app) -> bool:
    return await app.db.outbox.count_documents(
        {"kind": "gate.command", "state": "pending"}) == 0


async def check(d: Drill, site, doors: Doors, answers: dict, expired: set,
                unanswered: Counter) -> None:
    acted = doors.acted
    twice = [c for c, times in acted.items() if len(times) > 1]
    d.check(f"no command actuated twice ({len(acted)} actuations)", not twice, f"{twice[:3]}")
    after_ttl = [c for c, times in acted.items() if any(at > issued + ttl for at, issued, ttl
                                                         in times)]
    d.check("no command actuated after its ttl", not after_ttl, f"{after_ttl[:3]}")
    d.check(f"opens past their ttl never acted ({len(expired)})",
            expired and not any(acted.get(c) for c in expired))
    said = {c: body for c, (status, body) in answers.items() if status == 200}
    # A 200 says the lock released (actuated, opened, not_opened), or that the bridge refused,
    # or only that it received the command (its later acks lost with the link): never wrong.
    wrong = [c for c, body in said.items()
             if ("actuated" in body["levels"] or body["level"] in ("opened", "not_opened"))
             != bool(acted.get(c)) and not (body["level"] == "received" and acted.get(c))]
    partial = sum(body["level"] == "received" for body in said.values())
    d.check(f"every 200 says what the door did ({len(said)} answered 200, {partial} of them "
            "only 'received')", not wrong, f"{[(c, said[c]['levels']) for c in wrong[:3]]}")
    async with d.app() as app:
        intents = [doc["_id"].split(":", 1)[1] for doc in await app.db.outbox.find(
            {"kind": "gate.command"}, {"_id": 1}).to_list(None)]
        pending = await app.db.outbox.count_documents({"kind": "gate.command",
                                                       "state": "pending"})
        lines = await app.db.access_log.find(
            {"community_id": ObjectId(site.community_id), "source": "remote"}).to_list(None)
        audits = {doc["_id"] for doc in await app.db.gate_commands.find({}, {"_id": 1})
                  .to_list(None)}
    per_command = Counter(line["command_id"] for line in lines)
    d.check(f"every open's intent was stored before it acted ({len(intents)} intents)",
            set(acted) <= set(intents), f"{sorted(set(acted) - set(intents))[:3]}")
    d.check("every intent resolved", pending == 0, f"{pending} pending")
    missing = [c for c in intents if per_command[c] != 1 or c not in audits]
    d.check("every command has one access-log line and its audit record", not missing,
            f"{len(missing)}: {missing[:3]}")
    mismatch = [line["command_id"] for line in lines
                if (line["result"] == "allow") != bool(acted.get(line["command_id"]))]
    d.check("every line says what the door did", not mismatch, f"{mismatch[:3]}")
    d.say(f"answers: {Counter(s for s, _ in answers.values())}, without an id: "
          f"{dict(unanswered)}")


if __name__ == "__main__":
    main(drill)
