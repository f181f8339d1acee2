"""Passes: resident codes, invitations, worker and walk-in passes, the share page, the scanner check."""

import asyncio
import base64
import functools
import html
import io
import json
from datetime import datetime
from pathlib import Path
from string import Template
from typing import Literal

import qrcode
import qrcode.image.svg
from pydantic import AwareDatetime, BaseModel, Field, conlist, field_validator

from gate_bridge.decision import zone_info
from gate_bridge.passes import WEEKDAYS
from handlers.base import APIHandler, Strict, api, to_json
from models.passes import hhmm, quarters


def pass_page(part: str) -> Template:
    """A share-link page: pass_frame.html (the head, the styles both pages share) around
    `part`, whose styles, main and script are split by `<!-- main -->` and `<!-- script -->`."""
    here = Path(__file__).parent
    style, _, rest = (here / part).read_text().partition("<!-- main -->\n")
    main, _, script = rest.partition("<!-- script -->\n")
    # Filled now, from our own files; the request's fields are substituted later.
    frame = Template((here / "pass_frame.html").read_text())
    return Template(frame.safe_substitute(style=style, main=main, script=script))


PAGE = pass_page("pass_page.html")
ENDED_PAGE = pass_page("pass_ended.html")
PAGE_CSP = ("default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
            "base-uri 'none'; form-action 'none'")
# A pass that can no longer be used shows only that: not who was invited, to which room, where.
ENDED = {"cancelled": ("已取消", "Cancelled"), "expired": ("已过期", "Expired"),
         "used_up": ("次数已用完", "No entries left")}
HHMM = r"^([01][0-9]|2[0-3]):(00|15|30|45)$|^24:00$"


@functools.lru_cache(maxsize=512)
def qr_image(token: str, fmt: str) -> bytes:
    """The token as a QR code (level M; alphanumeric mode, the densest, when it fits — pass
    tokens do — else bytes). Cached: tokens repeat on refresh."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4, box_size=8)
    data = token.encode()
    code.add_data(qrcode.util.QRData(data, mode=qrcode.util.MODE_ALPHA_NUM
                                     if qrcode.util.RE_ALPHA_NUM.match(data) else qrcode.util.MODE_8BIT_BYTE))
    code.make(fit=True)
    out = io.BytesIO()
    if fmt == "svg":
        code.make_image(image_factory=qrcode.image.svg.SvgPathImage).save(out)
    else:
        code.make_image().save(out, format="PNG")
    return out.getvalue()


IMAGE_TYPES = {"svg": "image/svg+xml", "png": "image/png"}
# ?format= values: the image itself, or the JSON answer with the image as a data URL.
DataUrlFormat = Literal["json", "svg_data_url", "png_data_url"]
CodeFormat = Literal["json", "svg", "png", "svg_data_url", "png_data_url"]


async def image_url(token: str, fmt: str) -> str:
    """A data URL of the QR image ("png_data_url" -> a PNG's); rendering takes ~10 ms, so
    not on the event loop."""
    image = fmt.removesuffix("_data_url")
    data = await asyncio.to_thread(qr_image, token, image)
    return f"data:{IMAGE_TYPES[image]};base64,{base64.b64encode(data).decode()}"


# -- schemas -----------------------------------------------------------------------------------


class CodeQuery(Strict):
    format: CodeFormat = Field("json", description="svg / png: the QR image itself (its expiry in "
                                                   "`X-Expires-At`); svg_data_url / png_data_url: "
                                                   "the JSON answer with `image` as a data URL")
    profile: Literal["qr", "short"] = Field("qr", description="short adds a 12-digit one-time code")


class Code(BaseModel):
    token: str
    kind: Literal["resident", "staff"]
    scope: list[str]
    not_before: datetime
    expires_at: datetime
    lifetime_seconds: int
    short_code: str | None = None
    image: str | None = None


class Hours(Strict):
    start: str = Field(pattern=HHMM, description='"08:00"; quarter hours, community local time')
    end: str = Field(pattern=HHMM, description='"18:00"; before start = across midnight')

    def as_quarters(self) -> tuple[int, int]:
        return quarters(self.start), quarters(self.end)


# Working days of a worker pass, e.g. ["mon", "tue", "wed", "thu", "fri"]; null = every day.
Days = conlist(Literal[WEEKDAYS], min_length=1, max_length=7)
DAY_ZH = dict(zip(WEEKDAYS, "一二三四五六日"))
DAYS_HELP = f"working days, community local time: some of {', '.join(WEEKDAYS)}; null = every day"


class InvitationIn(Strict):
    name: str = Field(min_length=1, max_length=40)
    phone: str | None = Field(None, pattern=r"^\+?[0-9-]{5,20}$")
    purpose: str = Field("", max_length=100)
    valid_from: AwareDatetime
    valid_to: AwareDatetime
    max_entries: int = Field(1, ge=1, le=50)
    gates: list[str] | None = Field(None, min_length=1, max_length=10,
                                    description="gate codes; default: main gate and unit door")
    room_path: str | None = Field(None, max_length=32, description="which of your rooms")


class WorkerIn(Strict):
    name: str = Field(min_length=1, max_length=40)
    phone: str | None = Field(None, pattern=r"^\+?[0-9-]{5,20}$")
    company: str | None = Field(None, max_length=60)
    purpose: str = Field(min_length=1, max_length=100)
    approval_ref: str = Field(min_length=1, max_length=64, description="the approval record")
    room_path: str | None = Field(None, max_length=32)
    gates: list[str] = Field(min_length=1, max_length=10)
    valid_from: AwareDatetime
    valid_to: AwareDatetime
    hours: Hours
    days: Days | None = Field(None, description=DAYS_HELP)
    max_entries: int = Field(0, ge=0, le=255, description="0 = unlimited")

    @field_validator("hours")
    @classmethod
    def _not_empty(cls, value: Hours) -> Hours:
        if value.start == value.end:
            raise ValueError("start and end must differ")
        return value


class WalkInIn(Strict):
    name: str = Field(min_length=1, max_length=40)
    phone: str | None = Field(None, pattern=r"^\+?[0-9-]{5,20}$")
    purpose: str = Field(min_length=1, max_length=100)
    room_path: str = Field(min_length=1, max_length=32, description="the room visited")
    hours_valid: int = Field(4, ge=1, le=24)
    gates: list[str] | None = Field(None, min_length=1, max_length=10)


class Visitor(BaseModel):
    name: str
    phone: str | None
    company: str | None


class Pass(BaseModel):
    id: str
    community_id: str
    kind: Literal["visitor", "worker"]
    origin: Literal["invitation", "walkin", "worker", "ticket"]
    state: Literal["active", "not_yet_valid", "expired", "cancelled", "used_up"]
    owner: dict
    visitor: Visitor
    purpose: str
    room_path: str | None = Field(description="the room visited (visitors) or worked in")
    gates: list[str]
    valid_from: datetime
    valid_to: datetime
    max_entries: int
    entries_used: int
    hours: Hours | None
    days: list[str] | None = Field(description="working days; null = every day")
    approval_ref: str | None
    share_url: str
    token: str | None = Field(description="printable passes only (walk-in, worker)")
    image: str | None = None
    created_at: datetime


class TrailEntry(BaseModel):
    at: datetime
    by: str
    action: Literal["created", "used", "cancelled", "expired"]
    reason: str
    result: str | None = None
    gate_id: str | None = None
    direction: str | None = None


class PassDetail(Pass):
    trail: list[TrailEntry]


class PassQuery(Strict):
    kind: Literal["visitor", "worker"] | None = None


class ImageQuery(Strict):
    format: DataUrlFormat = Field("json", description="svg_data_url / png_data_url add `image`, "
                                                      "the QR code as a data URL")


class CancelQuery(Strict):
    reason: str = Field("", max_length=200)


class CheckIn(Strict):
    token: str = Field(min_length=1, max_length=1024, description="the scanned text")
    direction: Literal["in", "out"] = "in"


class CheckResult(BaseModel):
    allow: bool
    reason: str
    kind: str | None
    pass_id: str | None
    subject: str | None


class SuspensionIn(Strict):
    subject_id: str = Field(pattern=r"^[0-9a-f]{24}$", description="resident or staff id")
    reason: str = Field(min_length=1, max_length=200)
    days: int = Field(365, ge=1, le=3650)


class PassConfig(BaseModel):
    format: int
    keys: dict[str, str] = Field(description="key id -> Base64 of the raw Ed25519 public key")
    revoked: list[str]
    nonces: list[list]
    skew_seconds: int
    time_zone: str = Field(description="IANA name: gate hours and pass daily windows are its "
                                       "wall-clock time, daylight saving included")
    code_seconds: int


class ShareCode(BaseModel):
    state: str
    token: str | None
    expires_at: datetime | None
    svg: str | None


# -- handlers ----------------------------------------------------------------------------------


class PassHandler(APIHandler):
    """Shared: a pass document as the API shows it."""

    async def show(self, doc: dict, trail: bool = False, fmt: str = "json") -> dict:
        passes = self.app.passes
        hours = doc["hours"] and {"start": hhmm(doc["hours"][0]), "end": hhmm(doc["hours"][1])}
        out = {"id": str(doc["_id"]), "community_id": str(doc["community_id"]),
               "kind": doc["kind"], "origin": doc["origin"], "state": await passes.state(doc),
               "owner": doc["owner"], "visitor": doc["visitor"], "purpose": doc["purpose"],
               "room_path": doc["host_room"], "gates": doc["gates"],
               "valid_from": doc["valid_from"], "valid_to": doc["valid_to"],
               "max_entries": doc["max_entries"], "entries_used": await passes.entries_used(doc),
               "hours": hours, "days": doc.get("days"), "approval_ref": doc["approval_ref"],
               "share_url": f"{self.app.config.public_base_url}/p/{doc['share_id']}",
               "token": doc["token"], "created_at": doc["created_at"]}
        if doc["token"] and fmt != "json":
            out["image"] = await image_url(doc["token"], fmt)
        if trail:
            out["trail"] = await passes.trail(doc)
        return out


class CodeHandler(APIHandler):
    @api("A fresh single-use gate code (resident: gates of your rooms; staff: every gate)",
         query=CodeQuery, response=Code, permission="passes.code")
    async def get(self, community_id):
        code = await self.app.passes.resident_code(self.principal, community_id,
                                                   short=self.query.profile == "short")
        fmt = self.query.format
        if fmt in IMAGE_TYPES:
            self.set_header("Content-Type", IMAGE_TYPES[fmt])
            self.set_header("X-Expires-At", code["expires_at"])
            self.finish(await asyncio.to_thread(qr_image, code["token"], fmt))
            return
        if fmt != "json":
            code["image"] = await image_url(code["token"], fmt)
        self.write_json(code)


class InvitationsHandler(PassHandler):
    @api("My visitor invitations", response=list[Pass], permission="invitations.manage",
         audience="resident")
    async def get(self, community_id):
        docs = await self.app.passes.find_passes(self.principal, community_id, "visitor")
        self.write_json([await self.show(d) for d in docs])

    @api("Invite a visitor: returns the pass and its share link", body=InvitationIn,
         response=Pass, status=201, permission="invitations.manage", audience="resident")
    async def post(self, community_id):
        b = self.body
        doc = await self.app.passes.invite(
            self.principal, community_id, name=b.name, phone=b.phone, purpose=b.purpose,
            valid_from=b.valid_from, valid_to=b.valid_to, max_entries=b.max_entries,
            gates=b.gates, room_path=b.room_path)
        self.write_json(await self.show(doc))


class InvitationHandler(PassHandler):
    @api("One invitation with its trail (created, each use, cancelled, expired)",
         response=PassDetail, permission="invitations.manage", audience="resident")
    async def get(self, community_id, pass_id):
        doc = await self.app.passes.get(self.principal, community_id, pass_id)
        self.write_json(await self.show(doc, trail=True))

    @api("Cancel an invitation (refused from the next scan on)", response=Pass,
         permission="invitations.manage", audience="resident")
    async def delete(self, community_id, pass_id):
        doc = await self.app.passes.cancel(self.principal, community_id, pass_id)
        self.write_json(await self.show(doc))


class PassesHandler(PassHandler):
    @api("Visitor and worker passes of the community", query=PassQuery, response=list[Pass],
         permission="passes.read")
    async def get(self, community_id):
        docs = await self.app.passes.find_passes(self.principal, community_id, self.query.kind)
        self.write_json([await self.show(d) for d in docs])


class WorkerPassesHandler(PassHandler):
    @api("Issue a worker pass: daily hours within a date range, listed gates", body=WorkerIn,
         query=ImageQuery, response=Pass, status=201, permission="passes.issue")
    async def post(self, community_id):
        b = self.body
        doc = await self.app.passes.worker_pass(
            self.principal, community_id, name=b.name, phone=b.phone, company=b.company,
            purpose=b.purpose, room_path=b.room_path, gates=b.gates, valid_from=b.valid_from,
            valid_to=b.valid_to, hours=b.hours.as_quarters(), max_entries=b.max_entries,
            approval_ref=b.approval_ref, days=b.days)
        self.write_json(await self.show(doc, fmt=self.query.format))


class WalkInsHandler(PassHandler):
    @api("Register a walk-in visitor at the gatehouse; the pass can be printed", body=WalkInIn,
         query=ImageQuery, response=Pass, status=201, permission="passes.walkin")
    async def post(self, community_id):
        b = self.body
        doc = await self.app.passes.walk_in(
            self.principal, community_id, name=b.name, phone=b.phone, purpose=b.purpose,
            room_path=b.room_path, hours_valid=b.hours_valid, gates=b.gates)
        self.write_json(await self.show(doc, fmt=self.query.format))


class StaffPassHandler(PassHandler):
    @api("One pass with its trail", query=ImageQuery, response=PassDetail,
         permission="passes.read")
    async def get(self, community_id, pass_id):
        doc = await self.app.passes.get(self.principal, community_id, pass_id)
        self.write_json(await self.show(doc, trail=True, fmt=self.query.format))

    @api("Cancel a pass", query=CancelQuery, response=Pass, permission="passes.revoke")
    async def delete(self, community_id, pass_id):
        doc = await self.app.passes.cancel(self.principal, community_id, pass_id,
                                           self.query.reason)
        self.write_json(await self.show(doc))


class SuspensionsHandler(APIHandler):
    @api("Suspend a resident's (or staff member's) codes at once", body=SuspensionIn,
         status=204, permission="passes.revoke")
    async def post(self, community_id):
        b = self.body
        await self.app.passes.suspend(community_id, b.subject_id, b.reason,
                                      f"staff:{self.principal.id}", b.days)
        self.finish()


class SuspensionHandler(APIHandler):
    @api("Lift a suspension (or a pass revocation)", status=204, permission="passes.revoke")
    async def delete(self, community_id, subject_id):
        await self.app.passes.lift(community_id, subject_id)
        self.finish()


class CheckHandler(APIHandler):
    @api("Check a scanned code at a gate (staff scanners); the decision is logged", body=CheckIn,
         response=CheckResult, permission="gates.check")
    async def post(self, community_id, gate_id):
        gate = await self.app.places.gate(community_id, gate_id)
        d = await self.app.gate_access.check(self.body.token, gate, self.body.direction,
                                             "scanner", f"staff:{self.principal.id}")
        self.write_json({"allow": d.allow, "reason": d.reason, "kind": d.kind,
                         "pass_id": d.pass_id, "subject": d.subject})


class PassConfigHandler(APIHandler):
    @api("Published pass keys and the offline-decision config, as pushed to gate bridges",
         response=PassConfig, permission="gates.read")
    async def get(self, community_id):
        self.write_json(await self.app.passes.bridge_config(community_id))


class SharePageHandler(APIHandler):
    secret_params = ("share_id",)  # whoever holds the link shows the visitor's codes
    @api("The visitor's pass page (share link; mobile; Chinese and English)", response=str,
         public=True, content_type="text/html")
    async def get(self, share_id):
        doc = await self.app.passes.by_share_id(share_id)
        nonce = self.page_headers(PAGE_CSP)
        self.set_header("Cache-Control", "no-store")
        state = await self.app.passes.state(doc)
        if state in ENDED:
            chinese, english = ENDED[state]
            self.finish(ENDED_PAGE.substitute(nonce=nonce, chinese=chinese, english=english))
            return
        conf = await self.app.passes.community_settings(str(doc["community_id"]))
        zone = zone_info(conf.time_zone)

        def local(value: datetime) -> str:
            return value.astimezone(zone).strftime("%Y-%m-%d %H:%M")

        hours = doc["hours"] and f"{hhmm(doc['hours'][0])}–{hhmm(doc['hours'][1])}"
        if doc.get("days"):
            hours = (f"{hours or '00:00–24:00'} · {'、'.join('周' + DAY_ZH[d] for d in doc['days'])}"
                     f" ({', '.join(d.capitalize() for d in doc['days'])})")
        fields = {"name": doc["visitor"]["name"], "community": conf.name,
                  "address": conf.address, "room": doc["host_room"] or "",
                  "valid_from": local(doc["valid_from"]), "valid_to": local(doc["valid_to"]),
                  "entries": str(doc["max_entries"] or "∞"), "hours": hours or "00:00–24:00",
                  "gates": ", ".join(doc["gates"])}
        self.finish(PAGE.substitute({k: html.escape(v) for k, v in fields.items()}, nonce=nonce,
                                    code_url=json.dumps(f"/p/{share_id}/code")))


class ShareCodeHandler(APIHandler):
    secret_params = ("share_id",)
    @api("The code to show on the pass page now (refreshed per code lifetime)",
         response=ShareCode, public=True)
    async def get(self, share_id):
        doc = await self.app.passes.by_share_id(share_id)
        current = await self.app.passes.current_token(doc)
        svg = None
        if current["token"]:
            svg = (await asyncio.to_thread(qr_image, current["token"], "svg")).decode()
        self.finish(to_json({**current, "svg": svg}))


routes = [
    ("/api/communities/{community_id}/code", CodeHandler),
    ("/api/communities/{community_id}/invitations", InvitationsHandler),
    ("/api/communities/{community_id}/invitations/{pass_id}", InvitationHandler),
    ("/api/communities/{community_id}/passes", PassesHandler),
    ("/api/communities/{community_id}/passes/workers", WorkerPassesHandler),
    ("/api/communities/{community_id}/passes/walkins", WalkInsHandler),
    ("/api/communities/{community_id}/passes/{pass_id}", StaffPassHandler),
    ("/api/communities/{community_id}/suspensions", SuspensionsHandler),
    ("/api/communities/{community_id}/suspensions/{subject_id}", SuspensionHandler),
    ("/api/communities/{community_id}/gates/{gate_id}/check", CheckHandler),
    ("/api/communities/{community_id}/pass-config", PassConfigHandler),
    ("/p/{share_id}", SharePageHandler),
    ("/p/{share_id}/code", ShareCodeHandler),
]
