"""Logins, token refresh, logout, and who am I."""

from typing import Literal

from pydantic import BaseModel, Field

from handlers.base import APIHandler, Strict, api
from models.access import permissions_in, roles_in
from models.places import public_community


# WeChat's codes are printable ASCII; anything else cannot be one (and must not reach a URL).
WECHAT_CODE = r"^[\x21-\x7e]+$"


class WeChatLogin(Strict):
    code: str = Field(min_length=1, max_length=128, pattern=WECHAT_CODE,
                      description="the code from wx.login")
    phone_code: str | None = Field(None, min_length=1, max_length=128, pattern=WECHAT_CODE,
                                   description="the code from getPhoneNumber, to bind a phone")


class StaffLogin(Strict):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class RefreshRequest(Strict):
    refresh_token: str = Field(min_length=1, max_length=256)


class Tokens(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    audience: Literal["staff", "resident"]


class MyCommunity(BaseModel):
    id: str
    name: str
    code: str
    time_zone: str = Field(description="IANA name: show the community's times in it")
    settings: dict
    roles: list[str]
    permissions: list[str] = Field(description="what the caller may do here (models/access.py)")


class Me(BaseModel):
    kind: Literal["staff", "resident"]
    id: str
    roles: dict[str, list[str]] = Field(description="community id -> roles (staff) or relations")
    username: str | None = None
    name: str | None = None
    communities: list[MyCommunity]
    platform_admin: bool = Field(description="staff who act as admin in every community and "
                                             "may create communities")


class WeChatLoginHandler(APIHandler):
    @api("Resident login with a WeChat mini-program code", body=WeChatLogin, response=Tokens,
         public=True)
    async def post(self):
        self.write_json(await self.app.auth.login_resident(self.body.code, self.body.phone_code))


class StaffLoginHandler(APIHandler):
    @api("Staff login with username and password", body=StaffLogin, response=Tokens, public=True,
         rate_limited=True)
    async def post(self):
        self.write_json(await self.app.auth.login_staff(self.body.username, self.body.password,
                                                        self.client_ip))


class RefreshHandler(APIHandler):
    @api("Trade a refresh token for new tokens (each refresh token works once)",
         body=RefreshRequest, response=Tokens, public=True)
    async def post(self):
        self.write_json(await self.app.auth.refresh(self.body.refresh_token))


class LogoutHandler(APIHandler):
    @api("Sign out: revokes this login's refresh and access tokens", body=RefreshRequest,
         status=204)
    async def post(self):
        await self.app.auth.logout(self.body.refresh_token, self.principal)
        self.finish()


class MeHandler(APIHandler):
    @api("The signed-in caller and their communities", response=Me)
    async def get(self):
        p = self.principal
        # A platform admin is an admin in every community, so every one is theirs to switch to.
        ids = None if p.platform_admin else p.communities()
        me = {"kind": p.kind, "id": p.id, "roles": p.roles, "platform_admin": p.platform_admin,
              "communities": [
                  {"id": c["id"], "name": c["name"], "code": c["code"], "time_zone": c["time_zone"],
                   "settings": c["settings"],
                   "roles": sorted(roles_in(p, c["id"])), "permissions": permissions_in(p, c["id"])}
                  for c in map(public_community, await self.app.places.communities(ids))]}
        if p.is_staff and (member := await self.app.staff.active_by_id(p.id)):
            me.update(username=member["username"], name=member.get("name", ""))
        self.write_json(me)


routes = [
    ("/api/auth/wechat", WeChatLoginHandler),
    ("/api/auth/staff", StaffLoginHandler),
    ("/api/auth/refresh", RefreshHandler),
    ("/api/auth/logout", LogoutHandler),
    ("/api/me", MeHandler),
]
