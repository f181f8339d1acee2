"""A stand-in for WeChat's server API on loopback, for tests and the demo.

    python -m scripts.fake_wechat --port 0     # prints "READY <port>" as its first line

It answers like api.weixin.qq.com does (HTTP 200, JSON, `errcode`/`errmsg`):
- GET  /sns/jscode2session            login code -> openid, unionid, session_key
- GET  /cgi-bin/token                 access token, expires_in 7200
- POST /wxa/business/getuserphonenumber?access_token=   {"code"} -> phone_info
- POST /cgi-bin/message/subscribe/send?access_token=     {"touser", "template_id", "data", "page"?}

Codes: `user-<name>[-<anything>]` logs in as <name> (the openid is derived from
<name> and the appid, so it is stable; the unionid from <name> alone);
`phone-<digits>[-<anything>]` is that phone number. Every code works once
(reuse -> 40163); `bad-...` -> 40029, `busy-...` -> -1, `limit-...` -> 45011.
A secret starting with `bad` -> 40125. Sending a subscribe message uses up one
credit of (openid, template_id); with none left -> 43101.

For tests: GET /_fake/stats[?appid=] (tokens issued, codes used, messages sent),
POST /_fake/credits {"openid", "template_id", "count"} (grant credits),
POST /_fake/expire_tokens {"appid"?} (WeChat then answers 42001 to them).
"""

import argparse
import asyncio
import contextlib
import hashlib
import json
import re
import secrets
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator

import tornado.httpserver
import tornado.netutil
import tornado.web

from server.embedded import Service, python_module, ready_port, running

TOKEN_SECONDS = 7200
USER_CODE = re.compile(r"user-([A-Za-z0-9_.]+)(?:-.*)?")
PHONE_CODE = re.compile(r"phone-([0-9]{5,15})(?:-.*)?")
CODE_ERRORS = {"bad-": (40029, "invalid code"), "busy-": (-1, "system error"),
               "limit-": (45011, "api minute-quota reach limit  mustslower  retry next minute")}


class WeChatFailure(Exception):
    """Answered as WeChat does: HTTP 200 with a non-zero errcode."""

    def __init__(self, errcode: int, errmsg: str):
        super().__init__(errmsg)
        self.errcode = errcode
        self.errmsg = errmsg


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:27]


def openid_for(appid: str, name: str) -> str:
    """The openid the fake gives user <name> of this app (28 characters, like WeChat's)."""
    return "o" + _hash(f"openid:{appid}:{name}")


def unionid_for(name: str) -> str:
    return "u" + _hash(f"unionid:{name}")


def fresh_code(prefix: str) -> str:
    """A code the fake has not seen yet, e.g. fresh_code("user-ann") or fresh_code("bad")."""
    return f"{prefix}-{secrets.token_hex(4)}"


class FakeWeChat:
    """The fake's memory: used codes, issued tokens, subscribe credits, sent messages."""

    def __init__(self):
        self.used_codes: set[str] = set()
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> (appid, expires at)
        self.tokens_issued: Counter[str] = Counter()  # appid -> count
        self.credits: Counter[tuple[str, str]] = Counter()  # (openid, template_id) -> count
        self.sent: list[dict] = []

    def take_code(self, code: str, pattern: re.Pattern) -> str:
        """Use up a code; returns what the pattern captured from it."""
        for prefix, (errcode, errmsg) in CODE_ERRORS.items():
            if code.startswith(prefix):
                raise WeChatFailure(errcode, errmsg)
        if code in self.used_codes:
            raise WeChatFailure(40163, "code been used")
        match = pattern.fullmatch(code)
        if match is None:
            raise WeChatFailure(40029, "invalid code")
        self.used_codes.add(code)
        return match[1]

    def issue_token(self, appid: str) -> str:
        token = secrets.token_urlsafe(24)
        self.tokens[token] = (appid, time.monotonic() + TOKEN_SECONDS)
        self.tokens_issued[appid] += 1
        return token

    def token_app(self, token: str | None) -> str:
        """The appid an access token was issued to, or the error WeChat gives."""
        if not token:
            raise WeChatFailure(41001, "access_token missing")
        if token not in self.tokens:
            raise WeChatFailure(40001, "invalid credential, access_token is invalid or not latest")
        appid, expires_at = self.tokens[token]
        if expires_at <= time.monotonic():
            raise WeChatFailure(42001, "access_token expired")
        return appid

    def expire_tokens(self, appid: str | None) -> int:
        mine = [t for t, (app, _) in self.tokens.items() if appid in (None, app)]
        for token in mine:
            self.tokens[token] = (self.tokens[token][0], 0.0)
        return len(mine)

    def stats(self, appid: str | None) -> dict:
        return {"tokens_issued": sum(n for app, n in self.tokens_issued.items()
                                     if appid in (None, app)),
                "codes_used": len(self.used_codes),
                "sent": [m for m in self.sent if appid in (None, m["appid"])]}


class FakeHandler(tornado.web.RequestHandler):
    def initialize(self, fake: FakeWeChat):
        self.fake = fake

    def answer(self, data: dict) -> None:
        self.set_header("Content-Type", "application/json; encoding=utf-8")
        self.finish(json.dumps(data, ensure_ascii=False))

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, WeChatFailure):
            self.set_status(200)  # WeChat reports its errors in the body
            self.answer({"errcode": exc.errcode, "errmsg": exc.errmsg})
        else:
            self.answer({"errcode": -1, "errmsg": f"system error ({status_code})"})

    def log_exception(self, typ, value, tb) -> None:
        if not isinstance(value, WeChatFailure):
            super().log_exception(typ, value, tb)

    def arg(self, name: str, errcode: int, what: str) -> str:
        value = self.get_query_argument(name, "")
        if not value:
            raise WeChatFailure(errcode, f"{what} missing")
        return value

    def app_credentials(self) -> str:
        appid = self.arg("appid", 41002, "appid")
        if self.arg("secret", 41004, "appsecret").startswith("bad"):
            raise WeChatFailure(40125, "invalid appsecret")
        return appid

    def json_body(self) -> dict:
        try:
            body = json.loads(self.request.body)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise WeChatFailure(47001, "data format error")
        return body


class SessionHandler(FakeHandler):
    def get(self):
        if self.get_query_argument("grant_type", "") != "authorization_code":
            raise WeChatFailure(40002, "invalid grant_type")
        appid = self.app_credentials()
        name = self.fake.take_code(self.arg("js_code", 41008, "code"), USER_CODE)
        # The real answer carries session_key too; xiaoqu must never pass it on.
        self.answer({"openid": openid_for(appid, name), "unionid": unionid_for(name),
                     "session_key": secrets.token_urlsafe(16)})


class TokenHandler(FakeHandler):
    def get(self):
        if self.get_query_argument("grant_type", "") != "client_credential":
            raise WeChatFailure(40002, "invalid grant_type")
        token = self.fake.issue_token(self.app_credentials())
        self.answer({"access_token": token, "expires_in": TOKEN_SECONDS})


class PhoneHandler(FakeHandler):
    def post(self):
        appid = self.fake.token_app(self.get_query_argument("access_token", None))
        code = self.json_body().get("code")
        if not isinstance(code, str) or not code:
            raise WeChatFailure(41008, "missing code")
        phone = self.fake.take_code(code, PHONE_CODE)
        self.answer({"errcode": 0, "errmsg": "ok", "phone_info": {
            "phoneNumber": phone, "purePhoneNumber": phone, "countryCode": "86",
            "watermark": {"timestamp": int(time.time()), "appid": appid}}})


class SubscribeSendHandler(FakeHandler):
    def post(self):
        appid = self.fake.token_app(self.get_query_argument("access_token", None))
        body = self.json_body()
        touser, template_id = body.get("touser"), body.get("template_id")
        if not isinstance(touser, str) or not touser:
            raise WeChatFailure(40003, "invalid openid")
        if not isinstance(template_id, str) or not template_id:
            raise WeChatFailure(40037, "invalid template_id")
        data = body.get("data")
        if not isinstance(data, dict) or not data:
            raise WeChatFailure(47003, "argument invalid! data is empty")
        for key, item in data.items():
            if not isinstance(item, dict) or not isinstance(item.get("value"), str) \
                    or not item["value"]:
                raise WeChatFailure(47003, f"argument invalid! data.{key}.value is empty")
        if not isinstance(body.get("page", ""), str):
            raise WeChatFailure(41030, "invalid page")
        if self.fake.credits[touser, template_id] <= 0:
            raise WeChatFailure(43101, "user refuse to accept the msg")
        self.fake.credits[touser, template_id] -= 1
        self.fake.sent.append({"appid": appid, "touser": touser, "template_id": template_id,
                               "page": body.get("page"), "data": data})
        self.answer({"errcode": 0, "errmsg": "ok", "msgid": len(self.fake.sent)})


class StatsHandler(FakeHandler):
    def get(self):
        self.answer(self.fake.stats(self.get_query_argument("appid", None)))


class CreditsHandler(FakeHandler):
    def post(self):
        body = self.json_body()
        key = (str(body.get("openid", "")), str(body.get("template_id", "")))
        self.fake.credits[key] += int(body.get("count", 1))
        self.answer({"credits": self.fake.credits[key]})


class ExpireTokensHandler(FakeHandler):
    def post(self):
        appid = json.loads(self.request.body or b"{}").get("appid")
        self.answer({"expired": self.fake.expire_tokens(appid)})


def make_app(fake: FakeWeChat | None = None) -> tornado.web.Application:
    state = {"fake": fake or FakeWeChat()}
    return tornado.web.Application([
        (path, handler, state) for path, handler in (
            (r"/sns/jscode2session", SessionHandler),
            (r"/cgi-bin/token", TokenHandler),
            (r"/wxa/business/getuserphonenumber", PhoneHandler),
            (r"/cgi-bin/message/subscribe/send", SubscribeSendHandler),
            (r"/_fake/stats", StatsHandler),
            (r"/_fake/credits", CreditsHandler),
            (r"/_fake/expire_tokens", ExpireTokensHandler),
        )])


def start(port: int = 0, host: str = "127.0.0.1", fake: FakeWeChat | None = None) -> int:
    """Serve on the running event loop; returns the bound port (useful with port 0)."""
    sockets = tornado.netutil.bind_sockets(port, host)  # "localhost" may give IPv4 and IPv6
    tornado.httpserver.HTTPServer(make_app(fake)).add_sockets(sockets)
    return sockets[0].getsockname()[1]


async def serve(port: int, host: str) -> None:
    bound = start(port, host)
    # Launchers wait for this exact first line to learn the port.
    print(f"READY {bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()


@contextlib.contextmanager
def start_fake_wechat() -> Iterator[Service]:
    """The fake as its own process on a free port, for tests and the demo."""
    with running(python_module("scripts.fake_wechat", "--port", "0"),
                 stdout=subprocess.PIPE, text=True) as process:
        yield Service(f"http://127.0.0.1:{ready_port(process, 'the fake WeChat server')}", process)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.fake_wechat",
                                     description="Fake WeChat server API on loopback")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port, args.host))


if __name__ == "__main__":
    main()
