"""Notices (公告) and surveys (满意度调查): the office writes, residents read and answer.

Thin: the rules live in models/notices.py and models/surveys.py (their workflows in
models/workflow.py).
"""

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, Field

from handlers.base import APIHandler, Strict, api
from models.notices import ACTIONS as NOTICE_ACTIONS, MAX_PHOTOS, STATES, WHO
from models.photos import MAX_BYTES
from models.surveys import ACTIONS as SURVEY_ACTIONS, PER, QUESTION_KINDS

MULTIPART_OVERHEAD = 64 * 1024


class Audience(Strict):
    places: list[str] = Field([], max_length=200,
                              description='building or unit paths ("1", "1-2"); none = whole community')
    who: Literal[tuple(WHO)] = Field("residents", description="owners only, or everyone living there")


class NoticeIn(Strict):
    title: str = Field(min_length=1, max_length=60)
    body: str = Field(min_length=1, max_length=10_000, description="Markdown: emphasis, lists, "
                      "headings, links (http/https/mailto/tel); raw HTML is shown as text")
    audience: Audience = Audience()
    urgent: bool = Field(False, description="water/power outage, emergencies: listed first, marked")


class NoticeActionIn(Strict):
    action: Literal[NOTICE_ACTIONS]
    title: str | None = Field(None, min_length=1, max_length=60, description="edit")
    body: str | None = Field(None, min_length=1, max_length=10_000, description="edit")
    audience: Audience | None = Field(None, description="edit")
    urgent: bool | None = Field(None, description="edit")
    publish_at: AwareDatetime | None = Field(None, description="schedule: when it appears")
    reason: str = Field("", max_length=500, description="required to withdraw")


class NoticeQuery(Strict):
    state: Literal[STATES] | None = None
    limit: int = Field(50, ge=1, le=200)


class ReadsQuery(Strict):
    building: str | None = Field(None, max_length=8, description="list who there has not read")


class Notice(BaseModel):
    """A notice; staff also see its history, counts and their `allowed_actions`."""
    id: str
    community_id: str
    title: str
    body: str
    body_html: str
    urgent: bool
    pinned: bool
    state: str
    audience: dict
    publish_at: datetime | None
    published_at: datetime | None
    photos: list[dict]
    read_at: datetime | None = Field(None, description="residents: when I first read it")
    read_count: int | None = Field(None, description="staff only")
    recipient_count: int | None = Field(None, description="staff only")
    allowed_actions: list[str] | None = Field(None, description="staff only")


class NoticesHandler(APIHandler):
    @api("Notices: staff see all (newest first); residents the published ones addressed to "
         "them (pinned, urgent, then newest), each with their `read_at`", query=NoticeQuery,
         response=list[Notice], permission="notices.read")
    async def get(self, community_id):
        notices = self.app.notices
        if self.principal.is_staff:
            docs = await notices.list_staff(community_id, self.query.state, self.query.limit)
            self.write_json([notices.view(d, self.principal) for d in docs])
        else:
            pairs = await notices.for_resident(self.principal, community_id, self.query.limit)
            self.write_json([notices.view(d, self.principal, read_at) for d, read_at in pairs])

    @api("Write a notice (a draft)", body=NoticeIn, response=Notice, status=201,
         permission="notices.write")
    async def post(self, community_id):
        doc = await self.app.notices.create(self.principal, community_id,
                                            **self.body.model_dump())
        self.write_json(self.app.notices.view(doc, self.principal))


class NoticeHandler(APIHandler):
    @api("One notice (residents: only a published one addressed to them)", response=Notice,
         permission="notices.read")
    async def get(self, community_id, notice_id):
        notices = self.app.notices
        if self.principal.is_staff:
            self.write_json(notices.view(await notices.get(community_id, notice_id), self.principal))
        else:
            doc = await notices.resident_notice(self.principal, community_id, notice_id)
            self.write_json(notices.view(doc, self.principal))


class NoticeActionHandler(APIHandler):
    @api("Edit, schedule, publish, pin, unpin or withdraw a notice; 409 lists the allowed "
         "actions", body=NoticeActionIn, response=Notice, permission="notices.write")
    async def post(self, community_id, notice_id):
        fields = self.body.model_dump(exclude_unset=True)
        doc = await self.app.notices.act(self.principal, community_id, notice_id,
                                         fields.pop("action"), **fields)
        self.write_json(self.app.notices.view(doc, self.principal))


class NoticeReadHandler(APIHandler):
    @api("I read this notice: recorded once (the first read's time is kept)", response=Notice,
         permission="notices.read", audience="resident")
    async def post(self, community_id, notice_id):
        doc, read_at = await self.app.notices.read(self.principal, community_id, notice_id)
        self.write_json(self.app.notices.view(doc, self.principal, read_at))


class NoticeReadsHandler(APIHandler):
    @api("Who has read a notice: counts per building; with `building`, who there has not",
         query=ReadsQuery, response=dict, permission="notices.write")
    async def get(self, community_id, notice_id):
        self.write_json(await self.app.notices.reads(community_id, notice_id, self.query.building))


class NoticePhotosHandler(APIHandler):
    @api(f"Add images to a draft notice (multipart, field `photo`, ≤ {MAX_PHOTOS})", response=Notice,
         status=201, permission="notices.write", max_body=MAX_PHOTOS * MAX_BYTES + MULTIPART_OVERHEAD,
         uploads=("multipart/form-data",), upload_field="photo", upload_many=True)
    async def post(self, community_id, notice_id):
        doc = await self.app.notices.add_photos(community_id, notice_id, self.photo_uploads())
        self.write_json(self.app.notices.view(doc, self.principal))


# -- surveys -------------------------------------------------------------------------

class OptionIn(Strict):
    text: str = Field(min_length=1, max_length=60)
    satisfied: bool = Field(False, description="counts as satisfied (satisfaction questions)")


class QuestionIn(Strict):
    kind: Literal[QUESTION_KINDS]
    text: str = Field(min_length=1, max_length=200)
    options: list[OptionIn] = Field([], max_length=20)
    required: bool = True
    satisfaction: bool = Field(False, description="single choice: its rate feeds the KPI page")


class SurveyIn(Strict):
    title: str = Field(min_length=1, max_length=60)
    intro: str = Field("", max_length=2000)
    questions: list[QuestionIn] = Field(min_length=1, max_length=50)
    per: Literal[PER] = Field("household", description="one answer per household or per person")
    anonymous: bool = Field(False, description="answers keep neither person nor room")
    audience: Audience = Audience()


class SurveyActionIn(Strict):
    action: Literal[SURVEY_ACTIONS]
    title: str | None = Field(None, min_length=1, max_length=60, description="edit")
    intro: str | None = Field(None, max_length=2000, description="edit")
    questions: list[QuestionIn] | None = Field(None, min_length=1, max_length=50, description="edit")
    per: Literal[PER] | None = None
    anonymous: bool | None = None
    audience: Audience | None = None


class AnswerIn(Strict):
    answers: dict[str, str | list[str]] = Field(
        max_length=50, description='question id -> option id (single), option ids (multiple) or text')


class Survey(BaseModel):
    id: str
    community_id: str
    title: str
    intro: str
    questions: list[dict]
    per: str
    anonymous: bool
    audience: dict
    state: str
    opened_at: datetime | None
    closed_at: datetime | None
    answered: bool | None = Field(None, description="residents: answered (by my household)")
    allowed_actions: list[str] | None = Field(None, description="staff only")


class SurveysHandler(APIHandler):
    @api("Surveys: staff see all; residents the open and closed ones addressed to them",
         response=list[Survey], permission="surveys.read")
    async def get(self, community_id):
        surveys = self.app.surveys
        if self.principal.is_staff:
            self.write_json([surveys.view(d, self.principal)
                             for d in await surveys.list_staff(community_id)])
        else:
            self.write_json([surveys.view(d, self.principal, done) for d, done in
                             await surveys.for_resident(self.principal, community_id)])

    @api("Write a survey (a draft)", body=SurveyIn, response=Survey, status=201,
         permission="surveys.write")
    async def post(self, community_id):
        doc = await self.app.surveys.create(self.principal, community_id, **self.body.model_dump())
        self.write_json(self.app.surveys.view(doc, self.principal))


class SurveyHandler(APIHandler):
    @api("One survey", response=Survey, permission="surveys.read")
    async def get(self, community_id, survey_id):
        surveys = self.app.surveys
        if self.principal.is_staff:
            self.write_json(surveys.view(await surveys.get(community_id, survey_id), self.principal))
            return
        doc, room = await surveys.resident_survey(self.principal, community_id, survey_id)
        self.write_json(surveys.view(doc, self.principal,
                                     await surveys.answered(self.principal, doc, room)))


class SurveyActionHandler(APIHandler):
    @api("Edit (draft), open or close a survey", body=SurveyActionIn, response=Survey,
         permission="surveys.write")
    async def post(self, community_id, survey_id):
        fields = self.body.model_dump(exclude_unset=True)
        doc = await self.app.surveys.act(self.principal, community_id, survey_id,
                                         fields.pop("action"), **fields)
        self.write_json(self.app.surveys.view(doc, self.principal))


class SurveyAnswerHandler(APIHandler):
    @api("Answer a survey (once per household or person, as the survey says; 409 after)",
         body=AnswerIn, response=Survey, status=201, permission="surveys.read",
         audience="resident")
    async def post(self, community_id, survey_id):
        doc = await self.app.surveys.answer(self.principal, community_id, survey_id,
                                            self.body.answers)
        self.write_json(self.app.surveys.view(doc, self.principal, True))


class SurveyResultsHandler(APIHandler):
    @api("A survey's results: counts per option, free-text answers, the satisfaction rate",
         response=dict[str, Any], permission="surveys.write")
    async def get(self, community_id, survey_id):
        self.write_json(await self.app.surveys.results(community_id, survey_id))


routes = [
    ("/api/communities/{community_id}/notices", NoticesHandler),
    ("/api/communities/{community_id}/notices/{notice_id}", NoticeHandler),
    ("/api/communities/{community_id}/notices/{notice_id}/actions", NoticeActionHandler),
    ("/api/communities/{community_id}/notices/{notice_id}/read", NoticeReadHandler),
    ("/api/communities/{community_id}/notices/{notice_id}/reads", NoticeReadsHandler),
    ("/api/communities/{community_id}/notices/{notice_id}/photos", NoticePhotosHandler),
    ("/api/communities/{community_id}/surveys", SurveysHandler),
    ("/api/communities/{community_id}/surveys/{survey_id}", SurveyHandler),
    ("/api/communities/{community_id}/surveys/{survey_id}/actions", SurveyActionHandler),
    ("/api/communities/{community_id}/surveys/{survey_id}/answers", SurveyAnswerHandler),
    ("/api/communities/{community_id}/surveys/{survey_id}/results", SurveyResultsHandler),
]
