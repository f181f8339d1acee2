"""WeChat mini-program server API: login codes, phone numbers, subscribe messages.

The base URL is configurable, so tests and the demo talk to scripts/fake_wechat.py
instead of api.weixin.qq.com. WeChat's access token is cached in Redis and
shared by every process of the service: WeChat limits how often a token may be
fetched, and fetching a new one makes the others stale.

Public methods raise the API errors of models/errors.py (the handler turns them
into JSON); the WeChatError they come from is their `__cause__`.
"""

import json
import logging
from dataclasses import dataclass
from urllib.parse import urlencode

import tornado.httpclient
from redis.exceptions import LockError

from models.errors import (DomainError, Invalid, RateLimited, Unauthorized, Unavailable,
                           Unprocessable)

log = logging.getLogger("xiaoqu.wechat")

CONNECT_TIMEOUT = 3.0
REQUEST_TIMEOUT = 5.0
# Refresh this long before WeChat's own expiry, so a token never dies in flight.
TOKEN_MARGIN_SECONDS = 300
# Longer than one token fetch can take, so the lock outlives the fetch it guards.
TOKEN_LOCK_SECONDS = 2 * (CONNECT_TIMEOUT + REQUEST_TIMEOUT)
# The access token was refused: invalid / not the latest / expired.
TOKEN_REFUSED = frozenset({40001, 40014, 42001})
RATE_LIMIT_RETRY_SECONDS = 60  # WeChat's quotas are per minute


class WeChatError(Exception):
    """WeChat answered with a non-zero errcode."""

    def __init__(self, errcode: int, errmsg: str):
        super().__init__(f"WeChat error {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


@dataclass(frozen=True)
class Session:
    """Who a login code belongs to. WeChat's session_key is deliberately not kept."""

    openid: str
    unionid: str | None


def api_error(exc: WeChatError, field: str | None = None,
              bad_code: type[DomainError] = Invalid) -> DomainError:
    """The API error for a WeChat error; `field` names the request field that held the code."""
    match exc.errcode:
        case 40029:
            return bad_code("the WeChat code is invalid or expired; get a new one",
                            code="wechat_code_invalid",
                            fields=field and {field: "invalid or expired"})
        case 40163:
            return bad_code("the WeChat code was already used; get a new one",
                            code="wechat_code_used", fields=field and {field: "already used"})
        case 45011:
            return RateLimited("WeChat's rate limit is reached; try again in a minute",
                               retry_after=RATE_LIMIT_RETRY_SECONDS, code="wechat_rate_limited")
        case 43101:
            return Unprocessable("the user has no subscription for this message",
                                 code="wechat_not_subscribed")
        case -1:
            return Unavailable("WeChat is busy; try again shortly", code="wechat_busy")
    # Anything else is our configuration or a WeChat change: an operator must look.
    log.error("WeChat refused a request: %s", exc)
    return Unavailable("WeChat refused the request", code="wechat_error")


class WeChatClient:
    def __init__(self, base_url: str, appid: str, secret: str, redis):
        self.base_url = base_url.rstrip("/")
        self.appid = appid
        self.secret = secret
        self.redis = redis
        self.token_key = f"wechat:access_token:{appid}"
        self._http: tornado.httpclient.AsyncHTTPClient | None = None

    # -- the API ----------------------------------------------------------------

    async def code_to_session(self, code: str) -> Session:
        """Exchange a wx.login code for the user's openid (and unionid, if any)."""
        params = {"appid": self.appid, "secret": self.secret, "js_code": code,
                  "grant_type": "authorization_code"}
        try:
            data = await self._call("GET", "/sns/jscode2session", params)
        except WeChatError as exc:
            raise api_error(exc, "code", Unauthorized) from exc
        return Session(openid=data["openid"], unionid=data.get("unionid"))

    async def phone_number(self, code: str) -> str:
        """The phone number behind a getPhoneNumber code (without country code)."""
        try:
            data = await self._call_with_token("/wxa/business/getuserphonenumber", {"code": code})
        except WeChatError as exc:
            raise api_error(exc, "phone_code") from exc
        return data["phone_info"]["purePhoneNumber"]

    async def send_subscribe_message(self, openid: str, template_id: str, data: dict,
                                     page: str | None = None) -> None:
        """Send a subscribe message; `data` maps template keys to values (or {"value": ...})."""
        body = {"touser": openid, "template_id": template_id, "lang": "zh_CN",
                "data": {key: value if isinstance(value, dict) else {"value": str(value)}
                         for key, value in data.items()}}
        if page is not None:
            body["page"] = page
        try:
            await self._call_with_token("/cgi-bin/message/subscribe/send", body)
        except WeChatError as exc:
            raise api_error(exc) from exc

    async def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    # -- access token -----------------------------------------------------------

    async def access_token(self, refused: str | None = None) -> str:
        """The shared access token; `refused` is one WeChat just refused, so not to reuse."""
        token = await self.redis.get(self.token_key)
        if token is not None and token != refused:
            return token
        try:
            async with self.redis.lock(f"{self.token_key}:lock", timeout=TOKEN_LOCK_SECONDS,
                                       blocking_timeout=TOKEN_LOCK_SECONDS):
                # Whoever held the lock before us may have fetched one already.
                token = await self.redis.get(self.token_key)
                if token is None or token == refused:
                    token = await self._fetch_token()
        except LockError:
            raise Unavailable("WeChat access token is not available; try again shortly",
                              code="wechat_unavailable") from None
        return token

    async def _fetch_token(self) -> str:
        data = await self._call("GET", "/cgi-bin/token", {
            "grant_type": "client_credential", "appid": self.appid, "secret": self.secret})
        expires_in = int(data["expires_in"])
        await self.redis.set(self.token_key, data["access_token"],
                             ex=max(expires_in - TOKEN_MARGIN_SECONDS, expires_in // 2, 1))
        return data["access_token"]

    async def _call_with_token(self, path: str, body: dict) -> dict:
        token = await self.access_token()
        try:
            return await self._call("POST", path, {"access_token": token}, body)
        except WeChatError as exc:
            if exc.errcode not in TOKEN_REFUSED:
                raise
        # WeChat dropped the token early (e.g. someone fetched a newer one): refresh once.
        token = await self.access_token(refused=token)
        return await self._call("POST", path, {"access_token": token}, body)

    # -- transport --------------------------------------------------------------

    async def _call(self, method: str, path: str, params: dict, body: dict | None = None) -> dict:
        """One request; returns WeChat's JSON answer or raises WeChatError / Unavailable."""
        if self._http is None:
            # Created on first use, inside the running event loop.
            self._http = tornado.httpclient.AsyncHTTPClient(force_instance=True)
        try:
            response = await self._http.fetch(
                f"{self.base_url}{path}?{urlencode(params)}", method=method,
                body=None if body is None else json.dumps(body, ensure_ascii=False),
                headers={"Content-Type": "application/json"} if body is not None else None,
                connect_timeout=CONNECT_TIMEOUT, request_timeout=REQUEST_TIMEOUT)
            data = json.loads(response.body)
        except (OSError, tornado.httpclient.HTTPClientError, ValueError) as exc:
            # Not the URL: it carries the secret or the access token.
            log.warning("WeChat %s failed: %s", path, exc)
            raise Unavailable("WeChat cannot be reached; try again shortly",
                              code="wechat_unavailable") from exc
        if data.get("errcode", 0) != 0:
            raise WeChatError(data["errcode"], data.get("errmsg", ""))
        return data
