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
its new version and the effect's place — so they can be queued and retried;
`Effects` is the one place that delivers them, and a failed delivery never
turns a saved change into a failed request.
"""

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo import ReturnDocument

from models.access import Principal
from models.errors import Conflict, Forbidden, Invalid

log = logging.getLogger("xiaoqu.workflow")

PREVIOUS = "<previous>"  # the target "back to the state recorded in `previous_field`"


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
    """What follows a saved change: `build(step, updated)` gives the payload, or None to skip."""
    kind: str
    build: Callable[[Step, dict], dict | None]


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
            raise Conflict(f"a {noun} that is {self.state_words.get(doc['state'], doc['state'])}"
                           f" cannot be {done}", code="illegal_transition",
                           extra={"state": doc["state"], "allowed": self.allowed(principal, doc)})
        if not chosen.actors & self.roles(principal, doc):
            raise Forbidden(f"{name} is for the {' or '.join(sorted(chosen.actors))}")
        return chosen

    async def run(self, collection, principal: Principal, doc: dict, name: str, fields: dict,
                  now: datetime, context: Any = None) -> tuple[dict, list[tuple[str, str, dict]]]:
        """Take the action: the updated record and its effects as (key, kind, payload)."""
        chosen = self.choose(principal, doc, name)
        for need in chosen.requires:
            value = fields.get(need.field)
            if value is None or isinstance(value, str) and not value.strip():
                raise Invalid(need.message, fields={need.field: need.detail})
        target = doc.get(self.previous_field) if chosen.target == PREVIOUS else chosen.target
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
            raise Conflict(f"the {self.noun} changed meanwhile; reload it", code="stale")
        return updated, self.effects_of(step, updated)

    def effects_of(self, step: Step, updated: dict) -> list[tuple[str, str, dict]]:
        effects = []
        for i, effect in enumerate((*step.action.effects, *self.every)):
            payload = effect.build(step, updated)
            if payload is not None:
                key = f"{self.noun}:{updated['_id']}:{updated['version']}:{i}"
                effects.append((key, effect.kind, payload))
        return effects


Handler = Callable[[str, dict], Awaitable[Any]]  # (idempotency key, payload)


class Effects:
    """Delivers effects by kind. The one switch between delivering at once and a queue:
    a failure is logged with its key and never raised, since the change it follows is saved."""

    def __init__(self):
        self.handlers: dict[str, Handler] = {}

    def register(self, kind: str, handler: Handler) -> None:
        if kind in self.handlers:
            raise ValueError(f"effect {kind!r} registered twice")
        self.handlers[kind] = handler

    async def emit(self, effects: list[tuple[str, str, dict]]) -> None:
        for key, kind, payload in effects:
            try:
                await self.handlers[kind](key, payload)
            except Exception:
                log.exception("effect %s (%s) failed", key, kind)
