"""Logins, token refresh, logout, and who am I."""

from typing import Literal

from pydantic import BaseModel, Field

from handlers.base import APIHandler, api


# WeChat's codes are printable ASCII; anything else cannot be one (and must not reach a URL).
WECHAT_CODE = r"^[\x21-\x7e]+$"


class WeChatLogin(BaseModel):
    code: str = Field(min_length=1, max_length=128, pattern=WECHAT_CODE,
                      description="the code from wx.login")
    phone_code: str | None = Field(None, min_length=1, max_length=128, pattern=WECHAT_CODE,
                                   description="the code from getPhoneNumber, to bind a phone")


class StaffLogin(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=256)


class Tokens(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    audience: Literal["staff", "resident"]


class Me(BaseModel):
    kind: Literal["staff", "resident"]
    id: str
    roles: dict[str, list[str]] = Field(description="community id -> roles (staff) or relations")


class WeChatLoginHandler(APIHandler):
    @api("Resident login with a WeChat mini-program code", body=WeChatLogin, response=Tokens,
         public=True)
    async def post(self):
        self.write_json(await self.app.auth.login_resident(self.body.code, self.body.phone_code))


class StaffLoginHandler(APIHandler):
    @api("Staff login with username and password", body=StaffLogin, response=Tokens, public=True)
    async def post(self):
        self.write_json(await self.app.auth.login_staff(self.body.username, self.body.password,
                                                        self.request.remote_ip))


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
        self.write_json({"kind": p.kind, "id": p.id, "roles": p.roles})


routes = [
    ("/api/auth/wechat", WeChatLoginHandler),
    ("/api/auth/staff", StaffLoginHandler),
    ("/api/auth/refresh", RefreshHandler),
    ("/api/auth/logout", LogoutHandler),
    ("/api/me", MeHandler),
]
