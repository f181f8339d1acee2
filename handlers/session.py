"""Browser sessions for the staff admin view: the refresh token rides in an HttpOnly cookie.

The rules (cookies, CSRF) are models/auth.py's; this module only moves them to HTTP.
See docs/admin.md.
"""

from typing import Literal

from pydantic import BaseModel

from handlers.auth import StaffLogin
from handlers.base import APIHandler, api
from models.auth import CSRF_HEADER, REFRESH_COOKIE, SESSION_PATH, BrowserSession


class AccessToken(BaseModel):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    audience: Literal["staff"]


class SessionHandler(APIHandler):
    def write_session(self, session: BrowserSession, status: int = 200) -> None:
        # Secure when the page came over TLS (behind a TLS proxy: X-Forwarded-Proto counts).
        secure = self.scheme == "https"
        for cookie in session.cookies:
            options = dict(path=cookie.path, httponly=cookie.http_only, secure=secure,
                           samesite="Strict")
            if cookie.max_age:
                self.set_cookie(cookie.name, cookie.value, max_age=cookie.max_age, **options)
            else:
                self.clear_cookie(cookie.name, **options)
        self.set_status(status)
        if status == 204:
            self.finish()
        else:
            self.write_json(session.access)

    def cookie_and_header(self) -> tuple[str | None, str | None]:
        return self.get_cookie(REFRESH_COOKIE), self.request.headers.get(CSRF_HEADER)


class SignInHandler(SessionHandler):
    @api("Admin view sign-in: sets the session cookies, answers the access token",
         body=StaffLogin, response=AccessToken, public=True)
    async def post(self):
        self.write_session(await self.app.auth.open_browser_session(
            self.body.username, self.body.password, self.client_ip))


class RenewHandler(SessionHandler):
    @api(f"Admin view: a new access token from the session cookie ({CSRF_HEADER} header required)",
         response=AccessToken, public=True)
    async def post(self):
        self.write_session(await self.app.auth.refresh_browser_session(*self.cookie_and_header()))


class SignOutHandler(SessionHandler):
    @api(f"Admin view sign-out: revokes the login, clears the cookies ({CSRF_HEADER} header required)",
         status=204, public=True)
    async def post(self):
        self.write_session(await self.app.auth.close_browser_session(*self.cookie_and_header()),
                           status=204)


routes = [
    (SESSION_PATH, SignInHandler),
    (SESSION_PATH + "/refresh", RenewHandler),
    (SESSION_PATH + "/logout", SignOutHandler),
]
