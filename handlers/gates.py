"""Gates: live status, rules, bridge provisioning, remote open, access log, alarms."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, Field

from gate_bridge.decision import DEFAULT_RULES, MODES, effective_mode
from models.access import STAFF_ROLES
from handlers.base import APIHandler, Strict, api
from models.access_log import code_words
from models.messages import LANGS
from models.bridges import announce_config
from models.errors import Unavailable
from models.gate_alarms import ALARM_KINDS, ALARM_STATES, public_alarm
from models.gate_modes import public_mode_change
from models.places import GATE_KINDS, public_gate

GateKind = Literal[GATE_KINDS]
Mode = Literal[MODES]
Lang = Literal[LANGS]
EXPORT_MAX_ROWS = 100_000
EXPORT_TYPES = {"csv": "text/csv; charset=UTF-8",
                "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
TimeOfDay = Annotated[str, Field(pattern=r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")]


class Rules(Strict):
    hours: list[tuple[TimeOfDay, TimeOfDay]] | None = Field(
        DEFAULT_RULES["hours"], max_length=8,
        description='local open hours, e.g. [["06:00", "23:00"]]; null = always. Staff codes '
                    'pass outside them; refused: reason gate_closed')
    budget_ms: int = Field(DEFAULT_RULES["budget_ms"], ge=50, le=5000,
                           description="how long the bridge waits for the server before deciding offline")
    pulse_ms: int = Field(DEFAULT_RULES["pulse_ms"], ge=100, le=30000,
                          description="lock release time per open")
    lockdown_staff: bool = Field(DEFAULT_RULES["lockdown_staff"],
                                 description="whether staff codes still open the gate in lockdown")
    staff_roles: list[Literal[STAFF_ROLES]] | None = Field(
        DEFAULT_RULES["staff_roles"], max_length=len(STAFF_ROLES),
        description="the staff roles whose staff codes open this gate; null = the community's "
                    "settings.staff_gate_roles. Refused: reason gate_not_allowed")


class GateIn(Strict):
    code: str = Field(pattern=r"^[a-z0-9-]{1,16}$")
    name: str = Field(min_length=1, max_length=64)
    kind: GateKind
    covers: list[str] = Field(min_length=1, max_length=50,
                              description='place paths; "" is the whole community')
    rules: Rules | None = None


class GatePatch(Strict):
    name: str | None = Field(None, min_length=1, max_length=64)
    covers: list[str] | None = Field(None, min_length=1, max_length=50)
    rules: Rules | None = None


class Gate(BaseModel):
    id: str
    community_id: str
    code: str
    name: str
    kind: GateKind
    covers: list[str]
    bridge_id: str | None
    rules: Rules
    mode: Mode = Field(description="the emergency mode in force (gate, community and their ranking)")
    online: bool
    last_seen: datetime | None


class Disabled(BaseModel):
    bridge_id: str
    gate_id: str
    disabled_at: datetime


class Provisioned(BaseModel):
    bridge_id: str
    secret: str = Field(description="shown once: put it in the bridge's bridge.toml")
    gate_id: str
    provisioned_at: datetime
    hub_port: int = Field(description="GATE_PORT: where the bridge connects")
    hub_tls: bool = Field(description="whether the hub speaks TLS (GATE_TLS_CERT is set)")


class OpenIn(Strict):
    reason: str = Field("", max_length=200, description="required for staff; audited")
    wait: float = Field(8.0, gt=0, le=30, description="seconds to wait for the door")


class OpenResult(BaseModel):
    command_id: str
    level: Literal["received", "actuated", "opened", "not_opened", "refused"]
    levels: list[str]
    reason: str | None
    recorded: bool = Field(description="whether the outcome was stored before this answer; false "
                                       "when the store failed after the door acted: it is "
                                       "stored once the store is back")


class AccessLogQuery(Strict):
    gate_id: str | None = None
    subject: str | None = Field(None, max_length=64, description="resident/visitor/worker id")
    person: str | None = Field(None, min_length=1, max_length=64,
                               description="part of a name, username or phone")
    pass_id: str | None = Field(None, max_length=64)
    result: Literal["allow", "deny"] | None = None
    flag: Literal["invalid_claim", "double_use"] | None = Field(
        None, description="offline decisions the server did not confirm")
    reason: str | None = Field(None, pattern=r"^[a-z_]{1,32}$", description="a reason code")
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None
    cursor: str | None = Field(None, max_length=200)
    limit: int = Field(50, ge=1, le=500)
    lang: Lang | None = Field(None, description="words and headers; default from Accept-Language, "
                                                "else Chinese")


class ExportQuery(AccessLogQuery):
    format: Literal["csv", "xlsx"] = "csv"


class AccessLogPage(BaseModel):
    items: list[dict]
    next_cursor: str | None


class AlarmQuery(Strict):
    state: Literal[ALARM_STATES] | None = None


class AlarmNote(Strict):
    note: str = Field(min_length=1, max_length=500)


class AlarmDispatch(AlarmNote):
    assignee_id: str = Field(pattern=r"^[0-9a-f]{24}$", description="a staff member's id")


class Assignee(BaseModel):
    id: str
    name: str
    roles: list[str]


class Alarm(BaseModel):
    id: str
    community_id: str
    gate_id: str | None
    bridge_id: str | None
    kind: Literal[ALARM_KINDS]
    state: Literal[ALARM_STATES]
    raised_at: datetime
    data: dict
    history: list[dict]
    assignee: dict | None = Field(None, description="{id, name} of whom it was dispatched to")


class ModeIn(Strict):
    mode: Mode = Field(description="normal ends an emergency; locked = lockdown; open = fire release")
    reason: str = Field(min_length=1, max_length=200, description="audited")


class ModeChange(BaseModel):
    id: str
    community_id: str
    gate_id: str | None
    mode: Mode
    previous: Mode | None
    reason: str
    by: str
    at: datetime


class Modes(BaseModel):
    community: Mode
    gates: dict[str, Mode]
    changes: list[ModeChange]


async def _with_status(app, gates: list[dict]) -> list[dict]:
    presence = await app.gate_presence.presence([g["bridge_id"] for g in gates if g.get("bridge_id")])
    offline = {"online": False, "last_seen": None}
    modes = {}
    for cid in {str(g["community_id"]) for g in gates}:
        modes[cid] = await app.gate_modes.modes(cid)
    return [{**public_gate(g), "rules": {**DEFAULT_RULES, **g.get("rules", {})},
             "mode": effective_mode(modes[str(g["community_id"])]["community"],
                                    modes[str(g["community_id"])]["gates"].get(str(g["_id"]))),
             **presence.get(g.get("bridge_id"), offline)} for g in gates]


class GatesHandler(APIHandler):
    @api("Gates of a community, with live bridge status", response=list[Gate], permission="gates.read")
    async def get(self, community_id):
        self.write_json(await _with_status(self.app, await self.app.places.gates(community_id)))

    @api("Add a gate", body=GateIn, response=Gate, status=201, permission="gates.write")
    async def post(self, community_id):
        b = self.body
        doc = await self.app.places.create_gate(community_id, b.code, b.name, b.kind, b.covers)
        if b.rules is not None:
            doc = await self.app.places.update_gate(community_id, str(doc["_id"]),
                                                    {"rules": b.rules.model_dump()})
        self.write_json((await _with_status(self.app, [doc]))[0])


class GateHandler(APIHandler):
    @api("One gate, with live bridge status", response=Gate, permission="gates.read")
    async def get(self, community_id, gate_id):
        gate = await self.app.places.gate(community_id, gate_id)
        self.write_json((await _with_status(self.app, [gate]))[0])

    @api("Rename a gate, change what it covers or its rules (pushed to the bridge)",
         body=GatePatch, response=Gate, permission="gates.write")
    async def patch(self, community_id, gate_id):
        changes = self.body.model_dump(exclude_none=True)
        gate = await self.app.places.update_gate(community_id, gate_id, changes)
        await announce_config(self.app.redis, community_id)
        self.write_json((await _with_status(self.app, [gate]))[0])


class BridgeHandler(APIHandler):
    @api("Provision (or re-key) the gate's bridge: the secret is shown only in this answer",
         response=Provisioned, status=201, permission="gates.write")
    async def post(self, community_id, gate_id):
        provisioned = await self.app.bridges.provision(community_id, gate_id, self.principal.id)
        self.write_json({**provisioned, "hub_port": self.app.config.gate_port,
                         "hub_tls": bool(self.app.config.gate_tls_cert)})

    @api("Disable the gate's bridge: its secret stops working and its open session is closed "
         "at once; provisioning again re-enables it with a new secret",
         response=Disabled, permission="gates.write")
    async def delete(self, community_id, gate_id):
        self.write_json(await self.app.bridges.disable(community_id, gate_id, self.principal.id))


class OpenHandler(APIHandler):
    @api("Open a gate remotely and wait for the bridge: staff give a reason; residents may open "
         "gates covering their room. 409 locked / gate_closed when the gate's mode or hours "
         "refuse the caller (as they would the caller's code); 504 gate_offline / no_ack when "
         "the bridge does not answer",
         body=OpenIn, response=OpenResult, permission="gates.open", rate_limited=True,
         errors=((409, "the gate's mode or hours refuse the caller (`locked`, `gate_closed`)"),
                 (503, "a backing store or the gate hub is not answering"),
                 (504, "the bridge is offline or did not acknowledge (`gate_offline`, `no_ack`)")))
    async def post(self, community_id, gate_id):
        hub = self.app.gate_hub
        # A gate whose bridge is connected to this process is already in memory.
        gate = hub and hub.held_gate(community_id, gate_id)
        if gate is None:
            gate, _ = await self.app.bridges.bridge_for_gate(community_id, gate_id)
        if hub is None:
            raise Unavailable("the gate hub is not running in this process", code="no_gate_hub")
        access = self.app.gate_access
        reason = await access.may_open(self.principal, gate, self.body.reason)
        self.write_json(await access.remote_open(
            hub.send_command, gate, f"{self.principal.kind}:{self.principal.id}", reason,
            self.body.wait, hub.options.command_ttl))


def _query_args(q: AccessLogQuery) -> dict:
    return {"gate_id": q.gate_id, "subject": q.subject, "person": q.person, "pass_id": q.pass_id,
            "result": q.result, "reason": q.reason, "flag": q.flag, "since": q.since,
            "until": q.until}


class AccessLogHandler(APIHandler):
    @api("Access log: who passed (or was refused) at which gate; newest first, cursor paginated. "
         "Lines come with gate_name, person, room (1栋2单元1201室), by_name, at_local (the "
         "community's time) and words for their codes",
         query=AccessLogQuery, response=AccessLogPage, permission="access_log.read")
    async def get(self, community_id):
        q = self.query
        self.write_json(await self.app.access_log_reader.page(
            community_id, self.lang(q.lang), **_query_args(q), cursor=q.cursor, limit=q.limit))


class AccessLogExportHandler(APIHandler):
    @api("Access log export as CSV or XLSX (same filters; at most 100,000 rows): names, room "
         "labels, gate names and local times, headers in Chinese (lang=en or Accept-Language "
         "for English)", query=ExportQuery, permission="access_log.read", content_type="text/csv")
    async def get(self, community_id):
        q = self.query
        body = await self.app.access_log_reader.export(
            community_id, q.format, self.lang(q.lang), max_rows=EXPORT_MAX_ROWS, **_query_args(q))
        name = await self.app.access_log_reader.export_name(community_id, q.format,
                                                               self.app.clock.now())
        self.set_header("Content-Type", EXPORT_TYPES[q.format])
        self.set_header("Content-Disposition", f'attachment; filename="{name}"')
        self.finish(body)


class LangQuery(Strict):
    lang: Lang | None = None


class AccessLogWordsHandler(APIHandler):
    @api("Words for the access log's codes (result, direction, source, kind, flag, reason), "
         "for filter choices", query=LangQuery, response=dict[str, dict[str, str]],
         permission="access_log.read")
    async def get(self, community_id):
        self.write_json(code_words(self.lang(self.query.lang)))


class AlarmsHandler(APIHandler):
    @api("Alarms of a community (forced/held doors, tamper, offline bridges, ...), newest first",
         query=AlarmQuery, response=list[Alarm], permission="alarms.read")
    async def get(self, community_id):
        docs = await self.app.gate_alarms.alarms(community_id, self.query.state)
        self.write_json([public_alarm(d) for d in docs])


class _AlarmAction(APIHandler):
    async def act(self, community_id: str, alarm_id: str, action: str,
                  assignee: dict | None = None) -> None:
        doc = await self.app.gate_alarms.alarm_action(community_id, alarm_id, action,
                                                      self.principal.id, self.body.note, assignee)
        self.write_json(public_alarm(doc))


class DispatchAlarmHandler(_AlarmAction):
    @api("Dispatch an alarm to a person (one who handles alarms here) with a note; "
         "acknowledges it", body=AlarmDispatch, response=Alarm, permission="alarms.dispatch")
    async def post(self, community_id, alarm_id):
        assignee = await self.app.staff.get(community_id, self.body.assignee_id)
        await self.act(community_id, alarm_id, "dispatch", assignee)


class AlarmAssigneesHandler(APIHandler):
    @api("Who an alarm may be dispatched to: staff here who handle alarms (names and roles)",
         response=list[Assignee], permission="alarms.dispatch")
    async def get(self, community_id):
        staff = await self.app.staff.in_community(community_id)
        self.write_json([{"id": str(s["_id"]), "name": s.get("name") or s["username"],
                          "roles": sorted(s["roles"][community_id])}
                         for s in staff if self.app.gate_alarms.may_handle(s, community_id)])


class AcknowledgeAlarmHandler(_AlarmAction):
    @api("Acknowledge an alarm (someone is on it) with a note", body=AlarmNote, response=Alarm,
         permission="alarms.manage")
    async def post(self, community_id, alarm_id):
        await self.act(community_id, alarm_id, "acknowledge")


class CloseAlarmHandler(_AlarmAction):
    @api("Close an alarm with a note (what was found, what was done)", body=AlarmNote,
         response=Alarm, permission="alarms.manage")
    async def post(self, community_id, alarm_id):
        await self.act(community_id, alarm_id, "close")


class CommunityModeHandler(APIHandler):
    @api("Emergency modes in force (community and gates) and their recent changes",
         response=Modes, permission="gates.read")
    async def get(self, community_id):
        modes = await self.app.gate_modes.modes(community_id, fresh=True)
        changes = await self.app.gate_modes.changes(community_id)
        self.write_json({**modes, "changes": [public_mode_change(c) for c in changes]})

    @api("Start or end a community-wide emergency mode (lockdown, fire release) with a reason; "
         "audited, raises an alarm, reaches every bridge at once", body=ModeIn,
         response=ModeChange, permission="gates.emergency")
    async def post(self, community_id):
        change = await self.app.gate_modes.set_mode(community_id, None, self.body.mode,
                                                    self.body.reason, f"staff:{self.principal.id}")
        self.write_json(public_mode_change(change))


class GateModeHandler(APIHandler):
    @api("Start or end one gate's emergency mode with a reason (a community-wide fire release "
         "outranks it)", body=ModeIn, response=ModeChange, permission="gates.emergency")
    async def post(self, community_id, gate_id):
        change = await self.app.gate_modes.set_mode(community_id, gate_id, self.body.mode,
                                                    self.body.reason, f"staff:{self.principal.id}")
        self.write_json(public_mode_change(change))


routes = [
    ("/api/communities/{community_id}/gates", GatesHandler),
    ("/api/communities/{community_id}/gates/{gate_id}", GateHandler),
    ("/api/communities/{community_id}/gates/{gate_id}/bridge", BridgeHandler),
    ("/api/communities/{community_id}/gates/{gate_id}/open", OpenHandler),
    ("/api/communities/{community_id}/gates/{gate_id}/mode", GateModeHandler),
    ("/api/communities/{community_id}/mode", CommunityModeHandler),
    ("/api/communities/{community_id}/access-log", AccessLogHandler),
    ("/api/communities/{community_id}/access-log/export", AccessLogExportHandler),
    ("/api/communities/{community_id}/access-log/words", AccessLogWordsHandler),
    ("/api/communities/{community_id}/alarms", AlarmsHandler),
    ("/api/communities/{community_id}/alarms/assignees", AlarmAssigneesHandler),
    ("/api/communities/{community_id}/alarms/{alarm_id}/acknowledge", AcknowledgeAlarmHandler),
    ("/api/communities/{community_id}/alarms/{alarm_id}/dispatch", DispatchAlarmHandler),
    ("/api/communities/{community_id}/alarms/{alarm_id}/close", CloseAlarmHandler),
]
