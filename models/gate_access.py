"""The gate service: what happens at a gate, from a scan to its access-log line.

It owns scan -> decision -> open command -> access-log line, the remote-open
policy and the outcome of remote opens, the bridges' events (alarms, fire
releases, offline decisions re-checked on the server) and the bridges'
online/offline transitions. It is the one place access-log lines are built.
The decision rules are gate_bridge.decision's; use counting is models/passes.py's.

The gate hub (server/gate_hub.py) is transport only and calls:
  scan(gate, msg, ttl)              -> frames to send back (open?, scan_result)
  bridge_events(bridge, gate, items)   store a batch, raise alarms, reconcile offline decisions
  bridge_status(bridge, online)     an online/offline transition
  clock_drift(bridge, drift, alarmed) -> whether the drift is alarming
HTTP handlers call check() (staff scanners), may_open() and remote_open(); a
remote open reaches the bridge through `send(bridge_id, command, wait, on_ack) -> acks | None`,
the hub's transport (GateHub.send_command).

Every access-log line is written before the entry it records is acknowledged: the open frame
and scan_result, a staff scanner's answer, an HTTP remote open's answer, an events_ack. A
bridge's scan is logged and counted once on its scan id (`scan_line_id`, the `once` of its
use), whether it is answered online, decided offline, or both (the bridge gave up waiting).

On the staff feed (`feed`, models.notifications.Notifier) it announces bridges going online
or offline (`gate.status`) and each remote open's levels as they arrive (`gate.command`:
sent, received, actuated, then opened / not_opened / refused, or offline / no_ack).
"""

import asyncio
import hashlib
import logging
import time
import uuid
from datetime import datetime

import pymongo.errors
import redis.exceptions
from bson import ObjectId

from gate_bridge import protocol as p
from gate_bridge.decision import (REASONS, Decision, GateInfo, gate_covers, gate_info,
                                  gate_refusal, is_short_code, normalize)
from gate_bridge.passes import MalformedToken, split
from models.access import Principal
from models.bindings import rooms_in
from models.bridges import gate_rules
from models.common import from_timestamp
from models.errors import DomainError, Invalid, NotFound, RateLimited
from models.messages import Text
from models.rate_limits import RateLimits, Window
from server import metrics, tracing

log = logging.getLogger("xiaoqu.gate_access")

RESIDENT_OPENS_PER_MINUTE = 6
# Failed short-code lookups allowed per scanner (a staff token at /check) and per bridge
# within SHORT_CODE_WINDOW seconds: 12 digits are guessable only at speed.
SHORT_CODE_FAILURES = 10
SHORT_CODE_WINDOW = 60
ALARM_OF_FLAG = {"invalid_claim": "invalid_offline_claim", "double_use": "double_use"}
COMMAND_EFFECT = "gate.command"
# Seconds past a command's ttl after which a process that sent it and never recorded its
# outcome is taken for dead, and the outbox asks the bridge (GATE_OUTCOME_GRACE).
OUTCOME_GRACE = 30.0
ASK_WAIT = 5.0  # seconds the worker waits for a bridge's answer about a command
# Reasons a bridge may give for refusing offline besides the decision's own.
BRIDGE_REASONS = frozenset(REASONS) | {"no_config"}
# Every reason an access-log line can carry; anything else (a bridge's free text) is counted
# as "other", so the metric's labels stay bounded.
LINE_REASONS = BRIDGE_REASONS | {"rate_limited", "gate_offline", "no_ack", "invalid_claim",
                                 "decided_offline", *p.LEVEL_RANK}


class GateTimeout(DomainError):
    """The gate did not answer in time (offline, or no acknowledgement)."""
    status = 504
    code = "gate_timeout"


class GateRefused(DomainError):
    """The gate's own rules refuse a remote open now (lockdown, outside its hours)."""
    status = 409

    def __init__(self, reason: str):
        super().__init__(Text("the gate refuses opening now: {reason}", reason=reason), code=reason)


def describe(decision: Decision) -> dict:
    return {"kind": decision.kind, "pass_id": decision.pass_id, "subject": decision.subject}


def describe_token(token_text) -> dict:
    """Who a token names, read without trusting it (for refused offline claims)."""
    try:
        return describe(Decision(False, "", split(normalize(token_text))[0]))
    except (MalformedToken, AttributeError, TypeError):  # not a token, or not even text
        return {"kind": None, "pass_id": None, "subject": None}


def line_id(key: str) -> ObjectId:
    """The access-log line's id for what happened once (an event, a command): written again,
    it is the same line."""
    return ObjectId(hashlib.blake2b(key.encode(), digest_size=12).digest())


def scan_line_id(bridge_id: str, scan_id: str) -> ObjectId:
    """The one line of a bridge's scan, answered online or decided offline."""
    return line_id(f"{bridge_id}:scan:{scan_id}")


def command_key(command_id: str) -> str:
    return f"gate.command:{command_id}"


def outcome(levels: list[dict] | None) -> tuple[bool, str, str | None]:
    """(allow, reason, best level) of a command's acknowledgements (None: the bridge was
    offline), as its access-log line says it."""
    if levels is None:
        return False, "gate_offline", None
    best = max(levels, key=lambda a: p.LEVEL_RANK[a["level"]], default=None)
    if best is None:
        return False, "no_ack", None
    # The lock let go, whoever walked through. A repeat's answer (`duplicate`: the command
    # was re-delivered after its acks were lost) names only the last level reached, and
    # opened / not_opened come after actuated.
    released = any(a["level"] == p.ACTUATED or (a.get("duplicate") and a["level"] in (
        p.OPENED, p.NOT_OPENED)) for a in levels)
    return released, "ok" if released else str(best.get("reason") or best["level"]), best["level"]


def command_result(record: dict, levels: list[dict] | None) -> dict:
    """The HTTP answer for a command's acknowledgements; raises GateTimeout when there was
    none."""
    _, reason, level = outcome(levels)
    if levels is None:
        raise GateTimeout("the gate's bridge is offline", code="gate_offline")
    if level is None:
        raise GateTimeout("the bridge did not acknowledge the command", code="no_ack",
                          extra={"command_id": record["_id"]})
    best = max(levels, key=lambda a: p.LEVEL_RANK[a["level"]])
    return {"command_id": record["_id"], "level": level, "levels": [a["level"] for a in levels],
            "reason": best.get("reason")}


class CommandProgress:
    """A remote open's levels on the staff feed, published in the order they arrive, off the
    path of the command itself. `arrived` is called by the transport as each one comes."""

    def __init__(self, feed, record: dict):
        self.feed = feed
        self.record = record
        self.queue: list[dict] = []
        self.task: asyncio.Task | None = None

    def arrived(self, ack: dict) -> None:
        if self.feed is None:
            return
        self.queue.append(ack)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._publish())

    async def _publish(self) -> None:
        record = self.record
        while self.queue:
            ack = self.queue.pop(0)
            try:
                await self.feed.community_event(
                    str(record["community_id"]), "gate.command", permission="gates.read",
                    command={"id": record["_id"], "gate_id": str(record["gate_id"]),
                             "by": record["by"], "level": ack["level"],
                             "reason": ack.get("reason")})
            except redis.exceptions.RedisError:
                log.warning("gate access: progress of %s not published", record["_id"],
                            exc_info=True)

    async def finished(self, level: str | None = None) -> None:
        """Publish a last level the bridge could not send (offline, no_ack); wait for all."""
        if level:
            self.arrived({"level": level})
        if self.task is not None:
            await self.task


class GateAccess:
    def __init__(self, redis, clock, passes, access_log, events, alarms, modes, commands,
                 feed=None, outbox=None, outcome_grace: float = OUTCOME_GRACE):
        self.redis = redis
        self.clock = clock
        self.passes = passes
        self.access_log = access_log
        self.events = events
        self.alarms = alarms
        self.modes = modes
        self.commands = commands
        self.feed = feed
        self.limits = RateLimits(redis)
        self.outbox = outbox
        self.outcome_grace = outcome_grace
        self.send = None  # the gate hub's transport once one runs here (GateHub.send_command)
        if outbox is not None:
            outbox.handle(COMMAND_EFFECT, self._command_effect)

    # -- access-log lines: built here only ---------------------------------------------------

    def _line(self, gate: dict, direction: str, allow: bool, reason: str, source: str, *,
              at: datetime | None = None, **extra) -> dict:
        metrics.DECISIONS.labels(source, "allow" if allow else "deny",
                                 reason if reason in LINE_REASONS else "other").inc()
        return {
            "community_id": gate["community_id"], "gate_id": gate["_id"], "direction": direction,
            "at": at or self.clock.now(), "result": "allow" if allow else "deny",
            "reason": reason, "source": source,
            **{"kind": None, "pass_id": None, "subject": None, **extra}}

    async def _log(self, *args, **kwargs) -> None:
        """Write a line (durably: see the module's docstring)."""
        await self.access_log.record(self._line(*args, **kwargs))

    # -- decisions ---------------------------------------------------------------------------------

    async def gate_info(self, gate: dict, modes: tuple[str, str] | None = None) -> GateInfo:
        """The gate as the rules see it: coverage, local time, rules, effective mode."""
        community_id = str(gate["community_id"])
        conf = await self.passes.community_settings(community_id)
        if modes is None:
            current = await self.modes.modes(community_id)
            modes = (current["community"], current["gates"].get(str(gate["_id"])))
        section = {"community_id": community_id, "gate_id": str(gate["_id"]),
                   "code": gate["code"], "covers": list(gate["covers"]),
                   "time_zone": conf.time_zone}
        return gate_info(section, {**gate_rules(gate, conf.staff_gate_roles), "mode": None}, *modes)

    async def check(self, token_text: str, gate: dict, direction: str, source: str,
                    scanner: str | None = None, scan: str | None = None) -> Decision:
        """Decide at `gate`, take the use atomically, log it (staff scanners and hub scans).
        `scanner`: who scans ("staff:<id>" for a staff token, "bridge:<id>"; default: the
        gate); its failed short-code lookups are limited (RateLimited, after an alarm and a
        log line). `scan`: a bridge's scan id (its line and use are once per scan)."""
        scanner = scanner or f"gate:{gate['_id']}"
        started = time.perf_counter()
        ids = self._scan_ids(gate, scan)
        short = is_short_code(normalize(token_text))
        window = Window("short_code_failures", (scanner,), SHORT_CODE_FAILURES, SHORT_CODE_WINDOW)
        if short:
            await self._take_short_code_try(gate, direction, source, scanner, window, ids)
        decision, use = await self.passes.decide(token_text, await self.gate_info(gate),
                                                 direction, ids.get("once", ""))
        if short and decision.reason != "unknown_code":
            await self.limits.give_back(window)  # only failed lookups count
        metrics.DECISION_SECONDS.labels(source).observe(time.perf_counter() - started)
        await self._log(gate, direction, decision.allow, decision.reason, source,
                        **describe(decision), **ids.get("line", {}),
                        **({"use": use} if use else {}))
        return decision

    @staticmethod
    def _scan_ids(gate: dict, scan: str | None) -> dict:
        """A scan's identity: its use's `once` and, for a bridge's scan, its line's fields
        (the id derived from the scan's, the scan id)."""
        if scan is None:  # a staff scanner: once per check still (a retried use script)
            return {"once": f"check:{uuid.uuid4().hex}"}
        once = f"{gate.get('bridge_id')}:scan:{scan}"
        return {"once": once, "line": {"_id": scan_line_id(gate.get("bridge_id"), scan),
                                       "scan": scan}}

    async def _take_short_code_try(self, gate: dict, direction: str, source: str, scanner: str,
                                   window: Window, ids: dict) -> None:
        try:
            await self.limits.take(window, message="too many unknown short codes; try later")
        except RateLimited:
            await self._log(gate, direction, False, "rate_limited", source, by=scanner,
                            **ids.get("line", {}))
            # One alarm per scanner and window, however long the burst goes on.
            slot = int(self.clock.time() // SHORT_CODE_WINDOW)
            await self.alarms.raise_alarm(
                {"community_id": gate["community_id"], "gate_id": gate["_id"],
                 "_id": gate.get("bridge_id")}, "code_guessing",
                f"guessing:{gate['community_id']}:{scanner}:{slot}",
                {"scanner": scanner, "failures": SHORT_CODE_FAILURES,
                 "seconds": SHORT_CODE_WINDOW})
            raise

    async def scan(self, gate: dict, msg: dict, ttl: float) -> list[dict]:
        """A bridge's scan frame (its fields checked by the session, gate_bridge/session.py)
        -> the frames to answer with: an open when allowed, then the result."""
        scan_id, text, direction = msg["id"], msg["text"], msg["direction"]
        try:
            decision = await self.check(text, gate, direction, "gate",
                                        f"bridge:{gate.get('bridge_id')}", scan_id)
        except RateLimited:
            decision = Decision(False, "rate_limited")
        frames = []
        if decision.allow:
            frames.append(p.message(p.OPEN, id=uuid.uuid4().hex, door=0,
                                    pulse_ms=gate_rules(gate)["pulse_ms"],
                                    issued_at=self.clock.time(), ttl=ttl, scan=scan_id))
        frames.append(p.message(p.SCAN_RESULT, id=scan_id, allow=decision.allow,
                                reason=decision.reason))
        return frames

    # -- remote opens ------------------------------------------------------------------------------

    async def may_open(self, principal: Principal, gate: dict, reason: str) -> str:
        """The reason to audit a remote open with, if the caller may open now: staff (their
        role was checked by the route's permission) must say why; a resident opens only gates
        covering one of their rooms, a few times a minute. Either way the gate's own rules
        (mode, hours) apply as for a code of the caller's kind."""
        if principal.is_staff:
            if not reason.strip():
                raise Invalid("a reason is required", fields={"reason": "required for staff"})
        else:
            cid = str(gate["community_id"])
            if not any(gate_covers(gate["covers"], room)
                       for room in rooms_in(principal.links, cid)):
                raise NotFound("gate not found")
        refusal = gate_refusal(principal.kind, await self.gate_info(gate), self.clock.time())
        if refusal:
            await self._log(gate, "in", False, refusal, "remote", kind=principal.kind,
                            subject=principal.id, by=f"{principal.kind}:{principal.id}",
                            open_reason=reason)
            raise GateRefused(refusal)
        if principal.is_staff:
            return reason
        await self.limits.take(Window("resident_opens", (principal.id,), RESIDENT_OPENS_PER_MINUTE,
                                      60), message="too many remote opens; try again in a minute")
        return reason or "resident remote open"

    async def remote_open(self, send, gate: dict, by: str, reason: str, wait: float,
                          ttl: float) -> dict:
        """Send an open to the gate's bridge through `send` and wait for its final
        acknowledgement. `by` is "<staff|resident>:<id>". Returns {command_id, level, levels,
        reason, recorded}; raises GateTimeout (gate_offline / no_ack).

        The intent is durable before the command is sent: an outbox effect (COMMAND_EFFECT)
        due once the command can no longer act. The outcome is written after the acks (the
        command's audit record and its access-log line, source "remote"); when the store fails
        there the door has still done what it did, so the answer says so, with `recorded`
        false, and the outcome waits in the outbox. Should this process die meanwhile, the
        worker runs the intent at its due time and asks the bridge what it did."""
        command = p.message(p.OPEN, id=uuid.uuid4().hex, door=0,
                            pulse_ms=gate_rules(gate)["pulse_ms"], issued_at=self.clock.time(),
                            ttl=ttl)
        if parent := tracing.traceparent():  # the request's trace, followed to the door
            command["trace"] = parent
        started = time.perf_counter()
        record = self.commands.record(gate, command, by, reason)
        key = command_key(command["id"])
        due = from_timestamp(command["issued_at"] + wait + ttl + self.outcome_grace)
        await self.outbox.put(key, COMMAND_EFFECT,
                              {"record": record, "command": command, "known": False}, due=due)
        progress = CommandProgress(self.feed, record)
        progress.arrived({"level": "sent"})
        levels = await send(gate["bridge_id"], command, wait, progress.arrived)
        try:
            result = command_result(record, levels)
        except GateTimeout as exc:
            self._command_done(command["id"], exc.code, time.perf_counter() - started)
            await self.record_outcome(key, record, levels)
            await progress.finished(exc.code)
            raise
        self._command_done(command["id"], result["level"], time.perf_counter() - started)
        result["recorded"] = await self.record_outcome(key, record, levels)
        await progress.finished()
        return result

    @staticmethod
    def _command_done(command_id: str, level: str, seconds: float) -> None:
        metrics.COMMANDS.labels(level).inc()
        metrics.COMMAND_SECONDS.labels(level).observe(seconds)
        log.info("gate access: open %s ended %s", command_id, level,
                 extra={"command_id": command_id, "reached": level, "ms": round(seconds * 1000)})

    async def record_outcome(self, key: str, record: dict, levels: list[dict] | None) -> bool:
        """Write a command's outcome now; True when written. On a store error it goes into its
        outbox effect instead (kept in this process until the store answers), whose worker
        writes it: never raises for that, since the door has acted already. An outcome not
        final yet (no acknowledgement, or none of the last level: the bridge may still act,
        or has acted and its last acks are lost) is not written: its outbox effect asks the
        bridge once the command has expired."""
        if levels is not None and not any(a["level"] in p.FINAL_LEVELS for a in levels):
            return False
        try:
            # The line is the outcome, durable before the answer; the audit record follows
            # from the outbox effect, off the answer's path.
            await self._write_line(record, levels)
        except pymongo.errors.PyMongoError:
            log.warning("gate access: outcome of %s left to the outbox", record["_id"],
                        exc_info=True)
            await self.outbox.update(key, {"known": True, "levels": levels})
            return False
        self.outbox.done_after(key, self.commands.finished(record, levels, outcome(levels)[2]))
        return True

    async def _write_outcome(self, record: dict, levels: list[dict] | None) -> None:
        """The audit record and the line (one per command, however often its outcome is
        told) in one round trip."""
        await asyncio.gather(self.commands.finished(record, levels, outcome(levels)[2]),
                             self._write_line(record, levels))

    async def _write_line(self, record: dict, levels: list[dict] | None) -> None:
        allow, reason, level = outcome(levels)
        kind, _, subject = record["by"].partition(":")
        gate = {"community_id": record["community_id"], "_id": record["gate_id"]}
        await self._log(gate, "in", allow, reason, "remote", at=record["issued_at"],
                        kind=kind, subject=subject, by=record["by"], _id=line_id(record["_id"]),
                        command_id=record["_id"], open_reason=record["reason"],
                        trace_id=record.get("trace_id"), **({"level": level} if level else {}))

    async def _command_effect(self, key: str, payload: dict) -> None:
        """The outbox effect of a remote open: its outcome written, learnt from the bridge if
        the process that sent it died before it knew."""
        record, levels = payload["record"], payload.get("levels")
        if not payload["known"]:
            levels = await self._ask_bridge(record, payload["command"])
        await self._write_outcome(record, levels)

    async def _ask_bridge(self, record: dict, command: dict) -> list[dict]:
        """What the bridge did with a command, asked by sending it again as issued at the
        epoch: the bridge acts on a command id at most once and never on an expired one, so
        the question cannot open the door. It answers a command it had with its last level
        (`duplicate`), and one it never had with `refused: expired` (now it never will)."""
        if self.send is None:
            raise GateTimeout("no gate hub in this process to ask the bridge", code="no_gate_hub")
        levels = await self.send(record["bridge"], {**command, "issued_at": 0.0}, ASK_WAIT, None)
        # Offline or silent: the worker asks again later.
        if levels is None:
            raise GateTimeout("the bridge is offline: asked again later", code="gate_offline")
        if not levels:
            raise GateTimeout("the bridge did not answer: asked again later", code="no_ack")
        return levels

    # -- bridge events -----------------------------------------------------------------------------

    async def bridge_events(self, bridge: dict, gate: dict, items: list[dict],
                            resent: int = 0) -> None:
        """Store a batch (insert-or-ignore) and act on it. Alarms and offline decisions are
        idempotent by event id, so they are acted on for resent events too (a crash between
        the insert and here must not lose one); fire releases only for events new to the store.
        `resent`: events of the frame the hub left out, known stored (counted as duplicates)."""
        new = await self.events.store_events(bridge, items) if items else []
        for doc in new:
            metrics.EVENTS.labels(doc["type"]).inc()
        metrics.EVENTS_DUPLICATE.inc(resent + len(items) - len(new))
        for item in items:
            if item["type"] in p.ALARM_EVENTS:
                await self.alarms.raise_alarm(
                    bridge, item["type"], f"{bridge['_id']}:{item['seq']}",
                    {k: v for k, v in item.items() if k not in ("seq", "type", "at")},
                    at=from_timestamp(item["at"]))
        decisions = [item for item in items if item["type"] == "offline_decision"]
        for doc in self.events.event_docs(bridge, decisions):
            await self.offline_decision(bridge, gate, doc)
        for doc in new:
            if doc["type"] == "fire_release":
                await self.modes.bridge_fire_release(bridge, bool(doc["data"].get("active")),
                                                     doc["at"])

    async def offline_decision(self, bridge: dict, gate: dict, doc: dict) -> None:
        """Re-check what a bridge decided offline, at the time it claims (signature, key,
        scope, hours, mode, revocation, uses). The line keeps what the bridge did (`bridge`)
        and says what the server concludes; a claimed allow the rules refuse is flagged
        `invalid_claim`, an entry whose use was already taken `double_use`, each with an alarm.
        Once per scan (the event's `scan`; the event id from a bridge that sends none): the
        scan's line — written first by a late online answer, or by this decision resent after
        a crash — is replaced by this verdict (what the bridge did is what happened at the
        door), and the use is the one the scan took already, if it did. Raises when a store
        fails before the line is written: the batch is then not acknowledged, and the resent
        event gets the same verdict."""
        # A time claimed past the moment it arrived is judged at that moment.
        data, at = doc["data"], min(doc["at"], doc["received_at"])
        text, direction = data.get("text"), data.get("direction", "in")
        direction = direction if direction in p.DIRECTIONS else "in"
        claimed_allow, claimed_reason = data.get("allow") is True, str(data.get("reason"))
        claim = {"allow": claimed_allow, "reason": claimed_reason}
        scan = data.get("scan")
        if isinstance(scan, str) and 0 < len(scan) <= 64:
            once, ids = f"{bridge['_id']}:scan:{scan}", {
                "_id": scan_line_id(bridge["_id"], scan), "scan": scan}
        else:  # a bridge without scan ids: once per event
            once, ids = doc["_id"], {"_id": line_id(doc["_id"])}
        if not claimed_allow:  # nobody passed: the refusal stands as the bridge gave it
            reason = claimed_reason if claimed_reason in BRIDGE_REASONS else "invalid_claim"
            metrics.OFFLINE_DECISIONS.labels("deny", "refused").inc()
            # A use the late online answer took stays counted (its slot was announced).
            online = await self.access_log.line(ids["_id"])
            use = online and online.get("use")
            await self.access_log.replace(self._line(
                gate, direction, False, reason, "offline", at=at, bridge=claim,
                **describe_token(text), **ids, **({"use": use} if use else {})))
            return
        modes = await self.modes.modes_at(str(gate["community_id"]), str(gate["_id"]), at)
        info = await self.gate_info(gate, modes)
        decision, use = await self.passes.recheck(text, info, direction, at.timestamp(), once)
        flag = None
        if not decision.allow:
            flag = "double_use" if decision.reason in ("replayed", "used_up") else "invalid_claim"
            await self.alarms.raise_alarm(
                bridge, ALARM_OF_FLAG[flag], f"{doc['_id']}:{flag}",
                {"reason": decision.reason, "scan": scan, **describe(decision)}, at=at)
        metrics.OFFLINE_DECISIONS.labels("allow", flag or "ok").inc()
        await self.access_log.replace(self._line(
            gate, direction, decision.allow, decision.reason, "offline", at=at, bridge=claim,
            flag=flag, **ids, **(describe(decision) if decision.payload else describe_token(text)),
            **({"use": use} if use else {})))

    async def bridge_status(self, bridge: dict, online: bool, key: str | None = None) -> None:
        """Online/offline transitions are events too; going offline raises an alarm. `key`:
        what caused it, when it may be told more than once (event and alarm once per key)."""
        at = await self.events.store_status(bridge, online, key)
        if self.feed is not None:
            try:  # the board's news; a feed that fails must not fail the bridge's session
                await self.feed.community_event(
                    str(bridge["community_id"]), "gate.status", permission="gates.read",
                    gate={"id": str(bridge["gate_id"]), "bridge_id": bridge["_id"], "online": online})
            except Exception:
                log.exception("gate access: status of %s not published", bridge["_id"])
        if not online:
            await self.alarms.raise_alarm(bridge, "bridge_offline",
                                          f"offline:{bridge['_id']}:{key or at.timestamp()}")

    async def clock_drift(self, bridge: dict, drift: float) -> None:
        await self.alarms.raise_alarm(bridge, "clock_drift",
                                      f"drift:{bridge['_id']}:{self.clock.time()}", {"drift": drift})
