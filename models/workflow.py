"""One workflow engine: every action of a workflow is one declaration.

An `Action` says who may take it (roles on the record, as the workflow's
`roles` function names them), from which states (per kind when the kinds
differ), to which state, which fields it requires, which time stamp it sets,
what else it writes (`apply`), its clock effects (`clocks`, read by the
workflow's `prepare` hook) and what follows once the change is saved
(`effects`: notices, feed events, pass changes). `Workflow.run` checks the
declaration, writes the change conditionally on the version read (of two
racing changes one wins, the other gets 409 `stale`) with a history entry, and
returns the record with the effects to deliver. Tickets (models/tickets.py)
and notices and surveys (models/notices.py) are declared with it.

Effects are data — (kind, payload) with an idempotency key made of the record,
its new version and the effect's place — so they are queued in the outbox and
retried; `Effects` is the one place that delivers them, and a failed delivery
never turns a saved change into a failed request. An effect runs within the
request unless it is due later or declared `background` (then this process
starts it at once without the answer waiting for it).
"""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from bson import ObjectId
from pymongo import ReturnDocument

from models.access import Principal
from models.common import object_id
from models.errors import Conflict, Forbidden, Invalid, NotFound
from models.messages import Text

PREVIOUS = "<previous>"  # the target "back to the state recorded in `previous_field`"
SAME = "<same>"  # the target "stay": an edit, a pin


@dataclass(frozen=True)
class Required:
    """An input the action cannot do without: blank or missing is 400 naming the field."""
    field: str
    message: str
    detail: str


@dataclass
class Step:
    """One action being taken: what hooks read and add to."""
    principal: Principal
    doc: dict  # the record as read
    action: "Action"
    fields: dict  # the caller's inputs
    now: datetime
    target: str
    sets: dict = field(default_factory=dict)
    inc: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)  # extra keys of the history entry
    context: Any = None  # the workflow's manager, for hooks that look things up


@dataclass(frozen=True)
class Effect:
    """What follows a saved change: `build(step, updated)` gives the payload, or None to skip;
    `due(step, updated)`, when given, the time it is for (a scheduled publication);
    `background`: a long one (a notice to thousands) that the request does not wait for."""
    kind: str
    build: Callable[[Step, dict], dict | None]
    due: Callable[[Step, dict], datetime] | None = None
    background: bool = False


class Pending(NamedTuple):
    """An effect to deliver: its idempotency key, kind, payload, due time (None: now)."""
    key: str
    kind: str
    payload: dict
    due: datetime | None = None
    background: bool = False


Hook = Callable[[Step], Awaitable[None] | None]


@dataclass(frozen=True)
class Action:
    name: str
    sources: frozenset[str] | Mapping[str, frozenset[str]]  # states, or kind -> states
    target: str
    actors: frozenset[str]
    done: str  # for messages: "a notice that is draft cannot be <done>"
    requires: tuple[Required, ...] = ()
    stamp: str | None = None
    apply: Hook | None = None
    clocks: tuple[str, ...] = ()
    effects: tuple[Effect, ...] = ()
    inc: Mapping[str, int] = field(default_factory=dict)

    def sources_for(self, kind: str | None) -> frozenset[str]:
        if isinstance(self.sources, Mapping):
            return self.sources.get(kind, frozenset())
        return self.sources


def action(name: str, sources, target: str, actors, done: str, **options) -> Action:
    if isinstance(sources, Mapping):
        sources = {kind: frozenset(states) for kind, states in sources.items()}
    else:
        sources = frozenset(sources)
    return Action(name, sources, target, frozenset(actors), done, **options)


class Workflow:
    def __init__(self, noun: str, actions: tuple[Action, ...], roles: Callable[[Principal, dict], set],
                 *, kind_field: str | None = None, state_words: Mapping[str, str] | None = None,
                 previous_field: str | None = None, prepare: Hook | None = None,
                 every: tuple[Effect, ...] = (), entry: Callable[[Step], dict] | None = None):
        self.noun = noun
        self.actions = actions
        self.roles = roles
        self.kind_field = kind_field
        self.state_words = state_words or {}
        self.previous_field = previous_field
        self.prepare = prepare
        self.every = every  # effects of every action, after its own
        self.entry = entry  # a history entry other than the default
        self.names = tuple(dict.fromkeys(a.name for a in actions))
        self.by_name = {a.name: a for a in actions}
        if len(self.by_name) != len(actions):
            raise ValueError(f"{noun}: one declaration per action")

    def kind_of(self, doc: dict) -> str | None:
        return doc.get(self.kind_field) if self.kind_field else None

    def possible(self, doc: dict) -> list[Action]:
        kind = self.kind_of(doc)
        return [a for a in self.actions if doc["state"] in a.sources_for(kind)]

    def allowed(self, principal: Principal, doc: dict) -> list[str]:
        roles = self.roles(principal, doc)
        return sorted({a.name for a in self.possible(doc) if a.actors & roles})

    def choose(self, principal: Principal, doc: dict, name: str) -> Action:
        """The action if the caller may take it now: 409 when not from this state, 403 when
        it is someone else's."""
        chosen = next((a for a in self.possible(doc) if a.name == name), None)
        if chosen is None:
            noun = self.kind_of(doc) or self.noun
            done = self.by_name[name].done if name in self.by_name else name
            raise Conflict(Text("a {noun} that is {state} cannot be {done}", noun=noun,
                                state=self.state_words.get(doc["state"], doc["state"]), done=done),
                           code="illegal_transition",
                           extra={"state": doc["state"], "allowed": self.allowed(principal, doc)})
        if not chosen.actors & self.roles(principal, doc):
            raise Forbidden(Text("{action} is for the {actors}", action=name,
                                 actors=tuple(sorted(chosen.actors))))
        return chosen

    async def run(self, collection, principal: Principal, doc: dict, name: str, fields: dict,
                  now: datetime, context: Any = None) -> tuple[dict, list[Pending]]:
        """Take the action: the updated record and its effects."""
        chosen = self.choose(principal, doc, name)
        for need in chosen.requires:
            value = fields.get(need.field)
            if value is None or isinstance(value, str) and not value.strip():
                raise Invalid(need.message, fields={need.field: need.detail})
        target = {PREVIOUS: doc.get(self.previous_field), SAME: doc["state"]}.get(chosen.target,
                                                                                 chosen.target)
        step = Step(principal, doc, chosen, fields, now, target, context=context)
        step.sets.update(state=target, updated_at=now)
        if chosen.stamp:
            step.sets[chosen.stamp] = now
        step.inc.update(chosen.inc)
        for hook in (chosen.apply, self.prepare):
            if hook is not None and (pending := hook(step)) is not None:
                await pending
        entry = self.entry(step) if self.entry else {
            "at": now, "by": principal.id, "by_kind": principal.kind, "action": name,
            "from": doc["state"], "to": target, "reason": fields.get("reason") or None}
        updated = await collection.find_one_and_update(
            {"_id": doc["_id"], "version": doc["version"]},
            {"$set": step.sets, "$push": {"history": {**entry, **step.history}},
             "$inc": {**step.inc, "version": 1}},
            return_document=ReturnDocument.AFTER)
        if updated is None:
            raise Conflict(Text("the {noun} changed meanwhile; reload it", noun=self.noun), code="stale")
        return updated, self.effects_of(step, updated)

    def effects_of(self, step: Step, updated: dict) -> list[Pending]:
        effects = []
        for i, effect in enumerate((*step.action.effects, *self.every)):
            payload = effect.build(step, updated)
            if payload is not None:
                key = f"{self.noun}:{updated['_id']}:{updated['version']}:{i}"
                effects.append(Pending(key, effect.kind, payload,
                                       effect.due(step, updated) if effect.due else None,
                                       effect.background))
        return effects


def created(principal: Principal, now: datetime, state: str) -> dict:
    """The first history entry of a record made in `state`."""
    return {"at": now, "by": principal.id, "by_kind": principal.kind, "action": "create",
            "from": None, "to": state, "reason": None}


class Records:
    """A manager of one workflow's records, each in a community (notices, surveys):
    `collection`, `workflow`, and `db`, `clock`, `effects` set by the subclass."""

    collection: str
    workflow: Workflow

    async def get(self, community_id: str, record_id: str) -> dict:
        doc = await self.db[self.collection].find_one(
            {"_id": object_id(record_id, self.workflow.noun),
             "community_id": ObjectId(community_id)})
        if doc is None:
            raise NotFound(Text("{what} not found", what=self.workflow.noun))
        return doc

    async def checked(self, community_id: str, fields: dict) -> dict:
        """The inputs of an action, checked against the community (override)."""
        return fields

    async def act(self, principal: Principal, community_id: str, record_id: str,
                  action_name: str, **fields) -> dict:
        doc = await self.get(community_id, record_id)
        fields = await self.checked(community_id, fields)
        updated, effects = await self.workflow.run(self.db[self.collection], principal, doc,
                                                   action_name, fields, self.clock.now(),
                                                   context=self)
        await self.effects.emit(effects)
        return updated


Handler = Callable[[str, dict], Awaitable[Any]]  # (idempotency key, payload)


class Effects:
    """The one door from a saved change to what follows it: each effect is stored in the
    durable outbox (models/outbox.py) under its key, then run at once in this request —
    so a reader sees it as soon as the answer arrives. An effect that fails (Redis down,
    WeChat slow) stays in the outbox for its worker to retry; the change still answers
    as the success it is, and the key makes a repeat harmless."""

    def __init__(self, outbox, clock):
        self.outbox = outbox
        self.clock = clock
        self.kinds: set[str] = set()

    def register(self, kind: str, handler: Handler) -> None:
        if kind in self.kinds:
            raise ValueError(f"effect {kind!r} registered twice")
        self.kinds.add(kind)
        self.outbox.handle(kind, handler)

    async def emit(self, effects: list[Pending]) -> None:
        for e in effects:
            stored = await self.outbox.add(e.key, e.kind, e.payload, due=e.due, run=e.background)
            if stored and not e.background and (e.due is None or e.due <= self.clock.now()):
                await self.outbox.run(e.key)
