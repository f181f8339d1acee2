"""Opinion surveys (满意度调查): questions to an audience, answers counted.

    draft ─open→ open ─close→ closed        (edit while draft)

SURVEY_WORKFLOW (models/workflow.py) is the table; editors hold surveys.write.
Questions are single choice, multiple choice or free text. One answer per
household (room) or per person, as the survey says: the answer's key is the
survey and the room (or person), so a second answer is refused whoever sends it.
An anonymous survey stores neither who answered nor the room — only an HMAC of
the key, so uniqueness holds without the office learning who said what.

A single-choice question marked `satisfaction` has options marked `satisfied`;
its rate (satisfied / answered) is the survey's satisfaction rate, and the
latest survey's rate is on the KPI page beside the plans' target (≥ 90 %).
"""

import hashlib
import hmac
from datetime import datetime

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from models.access import Principal, permitted
from models.errors import Conflict, Invalid, NotFound
from models.messages import Text
from models.notices import audience_room, building_of
from models.workflow import SAME, Effect, Effects, Records, Step, Workflow, action, created

INDEXES = {
    "surveys": [IndexModel([("community_id", ASCENDING), ("created_at", DESCENDING)]),
                IndexModel([("community_id", ASCENDING), ("satisfaction", ASCENDING),
                            ("opened_at", DESCENDING)])],
    "survey_answers": [IndexModel([("survey_id", ASCENDING)])],
}

QUESTION_KINDS = ("single", "multiple", "text")
PER = ("household", "person")
TARGET = 0.9  # the plans: satisfaction ≥ 90 %


def editor_roles(principal: Principal, survey: dict) -> set[str]:
    return {"editor"} if principal.is_staff and permitted(
        principal, str(survey["community_id"]), "surveys.write") else set()


def check_questions(questions: list[dict]) -> list[dict]:
    """Number the questions and options; a satisfaction question is single choice with at
    least one option marked satisfied."""
    if not questions:
        raise Invalid("a survey asks something", fields={"questions": "at least one"})
    checked = []
    for i, q in enumerate(questions):
        where = f"questions.{i}"
        options = [{"id": f"o{j + 1}", "text": o["text"], "satisfied": bool(o.get("satisfied"))}
                   for j, o in enumerate(q.get("options") or [])]
        if q["kind"] != "text" and len(options) < 2:
            raise Invalid("a choice needs options", fields={f"{where}.options": "at least two"})
        if q["kind"] == "text" and options:
            raise Invalid("a free-text question has no options", fields={f"{where}.options": "none"})
        if q.get("satisfaction") and (q["kind"] != "single" or not any(o["satisfied"] for o in options)):
            raise Invalid("a satisfaction question is single choice with satisfied options",
                          fields={f"{where}.satisfaction": "single choice, an option satisfied"})
        checked.append({"id": f"q{i + 1}", "kind": q["kind"], "text": q["text"],
                        "required": q.get("required", True), "options": options,
                        "satisfaction": bool(q.get("satisfaction"))})
    return checked


def _edit(step: Step) -> None:
    changes = {k: v for k, v in step.fields.items()
               if k in ("title", "intro", "questions", "per", "anonymous", "audience") and v is not None}
    if not changes:
        raise Invalid("nothing to change", fields={"title": "give a field to change"})
    if "questions" in changes:
        changes["questions"] = check_questions(changes["questions"])
        changes["satisfaction"] = any(q["satisfaction"] for q in changes["questions"])
    step.sets.update(changes)
    step.history["changed"] = sorted(changes)


def _feed(step: Step, survey: dict) -> dict:
    return {"community_id": str(survey["community_id"]), "kind": f"survey.{step.action.name}",
            "survey": {"id": str(survey["_id"]), "title": survey["title"], "state": survey["state"]},
            "by": step.principal.id}


SURVEY_WORKFLOW = Workflow("survey", (
    action("edit", {"draft"}, SAME, {"editor"}, "edited", apply=_edit),
    action("open", {"draft"}, "open", {"editor"}, "opened", stamp="opened_at"),
    action("close", {"open"}, "closed", {"editor"}, "closed", stamp="closed_at"),
), editor_roles, every=(Effect("survey.feed", _feed),))
ACTIONS = SURVEY_WORKFLOW.names


def public_survey(doc: dict, principal: Principal, answered: bool | None = None) -> dict:
    view = {"id": str(doc["_id"]), "community_id": str(doc["community_id"]), "title": doc["title"],
            "intro": doc["intro"], "questions": doc["questions"], "per": doc["per"],
            "anonymous": doc["anonymous"], "audience": doc["audience"], "state": doc["state"],
            "opened_at": doc.get("opened_at"), "closed_at": doc.get("closed_at")}
    if principal.is_staff:
        view.update(history=doc["history"], version=doc["version"], created_at=doc["created_at"],
                    allowed_actions=SURVEY_WORKFLOW.allowed(principal, doc))
    else:
        view["answered"] = answered
    return view


def _satisfaction(survey: dict, counts: dict) -> dict | None:
    """Satisfied / answered over the survey's satisfaction questions."""
    satisfied = answered = 0
    for q in survey["questions"]:
        if q["satisfaction"]:
            tally = counts.get(q["id"], {})
            answered += sum(tally.values())
            satisfied += sum(tally.get(o["id"], 0) for o in q["options"] if o["satisfied"])
    value = round(satisfied / answered, 4) if answered else None
    return {"value": value, "target": TARGET, "comparison": ">=",
            "meets": None if value is None else value >= TARGET,
            "satisfied": satisfied, "answered": answered}


async def answer_counts(db, survey: dict) -> dict[str, dict[str, int]]:
    """question id -> option id -> answers choosing it."""
    rows = await (await db.survey_answers.aggregate([
        {"$match": {"survey_id": survey["_id"]}},
        {"$project": {"pairs": {"$objectToArray": "$answers"}}},
        {"$unwind": "$pairs"},
        {"$unwind": "$pairs.v"},
        {"$group": {"_id": {"q": "$pairs.k", "o": "$pairs.v"}, "n": {"$sum": 1}}}])).to_list(None)
    choice = {q["id"] for q in survey["questions"] if q["kind"] != "text"}
    counts: dict = {}
    for r in rows:
        if r["_id"]["q"] in choice:
            counts.setdefault(r["_id"]["q"], {})[r["_id"]["o"]] = r["n"]
    return counts


class SurveyManager(Records):
    collection = "surveys"
    workflow = SURVEY_WORKFLOW

    def __init__(self, db, clock, *, notices, notifier, effects: Effects, secret: str):
        self.db = db
        self.clock = clock
        self.notices = notices  # its audience checks
        self.notifier = notifier
        self.effects = effects
        self.secret = secret.encode()
        effects.register("survey.feed", self._feed)

    def view(self, doc: dict, principal: Principal, answered: bool | None = None) -> dict:
        return public_survey(doc, principal, answered)

    async def _feed(self, key: str, payload: dict) -> None:
        await self.notifier.community_event(payload["community_id"], payload["kind"],
                                            survey=payload["survey"], by=payload["by"])

    async def create(self, principal: Principal, community_id: str, *, title: str, intro: str,
                     questions: list[dict], per: str, anonymous: bool, audience: dict) -> dict:
        now = self.clock.now()
        checked = check_questions(questions)
        doc = {"community_id": ObjectId(community_id), "title": title, "intro": intro,
               "questions": checked, "satisfaction": any(q["satisfaction"] for q in checked),
               "per": per, "anonymous": anonymous,
               "audience": await self.notices.check_audience(community_id, audience),
               "state": "draft", "opened_at": None, "closed_at": None, "created_by": principal.id,
               "created_at": now, "updated_at": now, "version": 1,
               "history": [created(principal, now, "draft")]}
        await self.db.surveys.insert_one(doc)
        return doc

    async def checked(self, community_id: str, fields: dict) -> dict:
        if fields.get("audience") is not None:
            fields["audience"] = await self.notices.check_audience(community_id, fields["audience"])
        return fields

    async def list_staff(self, community_id: str, limit: int = 50) -> list[dict]:
        return await self.db.surveys.find({"community_id": ObjectId(community_id)}).sort(
            "created_at", DESCENDING).limit(limit).to_list(None)

    # -- residents ------------------------------------------------------------------

    def _key(self, survey: dict, principal: Principal, room: str) -> str:
        who = room if survey["per"] == "household" else principal.id
        key = f"{survey['_id']}:{who}"
        if survey["anonymous"]:
            return hmac.new(self.secret, key.encode(), hashlib.sha256).hexdigest()
        return key

    async def for_resident(self, principal: Principal, community_id: str) -> list[tuple[dict, bool]]:
        docs = await self.db.surveys.find({"community_id": ObjectId(community_id),
                                           "state": {"$in": ["open", "closed"]}}).sort(
            "opened_at", DESCENDING).to_list(100)
        mine = [(d, room) for d in docs if (room := audience_room(principal, community_id, d["audience"]))]
        keys = {self._key(d, principal, room): d["_id"] for d, room in mine}
        done = {a["_id"] for a in await self.db.survey_answers.find(
            {"_id": {"$in": list(keys)}}, {"_id": 1}).to_list(None)}
        return [(d, self._key(d, principal, room) in done) for d, room in mine]

    async def resident_survey(self, principal: Principal, community_id: str, survey_id: str) -> tuple[dict, str]:
        doc = await self.get(community_id, survey_id)
        room = doc["state"] != "draft" and audience_room(principal, community_id, doc["audience"])
        if not room:
            raise NotFound("survey not found")
        return doc, room

    async def answered(self, principal: Principal, doc: dict, room: str) -> bool:
        return await self.db.survey_answers.find_one({"_id": self._key(doc, principal, room)},
                                                     {"_id": 1}) is not None

    async def answer(self, principal: Principal, community_id: str, survey_id: str,
                     answers: dict) -> dict:
        doc, room = await self.resident_survey(principal, community_id, survey_id)
        if doc["state"] != "open":
            raise Conflict(Text("the survey is {state}", state=doc["state"]), code="survey_not_open")
        checked = self._check_answers(doc, answers)
        entry = {"_id": self._key(doc, principal, room), "survey_id": doc["_id"],
                 "answers": checked, "at": self.clock.now(),
                 "building": None if doc["anonymous"] else building_of(room)}
        if not doc["anonymous"]:
            entry.update(resident_id=ObjectId(principal.id), room_path=room)
        try:
            await self.db.survey_answers.insert_one(entry)
        except DuplicateKeyError:  # the key says someone (of the household) answered already
            raise Conflict("this survey has been answered" +
                           (" for your household" if doc["per"] == "household" else ""),
                           code="already_answered") from None
        return doc

    @staticmethod
    def _check_answers(survey: dict, answers: dict) -> dict:
        checked, bad = {}, {}
        for q in survey["questions"]:
            value = answers.get(q["id"])
            options = {o["id"] for o in q["options"]}
            if value in (None, "", []):
                if q["required"]:
                    bad[f"answers.{q['id']}"] = "required"
                continue
            if q["kind"] == "text":
                if not isinstance(value, str) or len(value) > 1000:
                    bad[f"answers.{q['id']}"] = "text up to 1000 characters"
                    continue
                checked[q["id"]] = value.strip()
            elif q["kind"] == "single":
                if value not in options:
                    bad[f"answers.{q['id']}"] = f"one of {', '.join(sorted(options))}"
                    continue
                checked[q["id"]] = value
            else:
                if not isinstance(value, list) or not set(value) <= options:
                    bad[f"answers.{q['id']}"] = f"a list of {', '.join(sorted(options))}"
                    continue
                checked[q["id"]] = sorted(set(value))
        unknown = set(answers) - {q["id"] for q in survey["questions"]}
        bad.update({f"answers.{k}": "no such question" for k in unknown})
        if bad:
            raise Invalid("invalid " + ", ".join(bad), fields=bad)
        return checked

    # -- results ------------------------------------------------------------------

    async def results(self, community_id: str, survey_id: str) -> dict:
        survey = await self.get(community_id, survey_id)
        counts = await answer_counts(self.db, survey)
        texts = {q["id"]: [] for q in survey["questions"] if q["kind"] == "text"}
        if texts:
            async for a in self.db.survey_answers.find({"survey_id": survey["_id"]}):
                for qid in texts:
                    if a["answers"].get(qid):
                        texts[qid].append({"text": a["answers"][qid],
                                           "room_path": a.get("room_path"), "at": a["at"]})
        questions = []
        for q in survey["questions"]:
            row = {"id": q["id"], "kind": q["kind"], "text": q["text"]}
            if q["kind"] == "text":
                row["answers"] = texts[q["id"]]
            else:
                row["options"] = [{**o, "count": counts.get(q["id"], {}).get(o["id"], 0)}
                                  for o in q["options"]]
            questions.append(row)
        return {"survey_id": survey_id, "state": survey["state"],
                "responses": await self.db.survey_answers.count_documents({"survey_id": survey["_id"]}),
                "questions": questions,
                "satisfaction_rate": _satisfaction(survey, counts) if survey["satisfaction"] else None}


async def latest_satisfaction(db, community_id: str, before: datetime) -> dict:
    """The satisfaction rate of the community's latest survey opened before `before` that
    asks it (the KPI page's survey figure); value None when there is none."""
    survey = await db.surveys.find_one(
        {"community_id": ObjectId(community_id), "satisfaction": True,
         "state": {"$in": ["open", "closed"]}, "opened_at": {"$lt": before}},
        sort=[("opened_at", DESCENDING)])
    if survey is None:
        return {**_satisfaction({"questions": []}, {}), "survey_id": None}
    return {**_satisfaction(survey, await answer_counts(db, survey)), "survey_id": str(survey["_id"])}
