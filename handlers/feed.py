"""The staff live feed over a WebSocket: new tickets, assignments, urges, SLA escalations;
gates going online/offline, remote opens' levels, alarms.

Connect to /api/communities/{id}/feed with `?token=<access token>` (or an
Authorization: Bearer header, or send `{"token": "..."}` as the first message
within 10 s), `device=<name>` and, when reconnecting, `last_id=<id of the last
event seen>`: the events missed since are
sent first, then `{"type": "feed.ready", "last_id": ...}`, then live events as
they happen in any server process. A second connection from the same device
replaces the first (close code 4000). Auth failures close with 4401/4403/4404.
The socket is closed with 4401 when the access token expires. An event naming a
`permission` (e.g. alarms.read) reaches only those holding it there.
If the server loses its Redis subscription it closes with 1012: reconnect with
`last_id` and nothing is missed.
"""

import json
import re
import uuid

import tornado.ioloop
import tornado.websocket

from handlers.base import PathOnlyErrors, api, to_json
from models.access import authorize, permitted
from models.errors import DomainError, Forbidden, Invalid
from models.messages import negotiate, say
from models.notifications import device_channel, feed_channel, stream_id_key
from server import metrics

AUTH_SECONDS = 10.0
STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
DEVICE = re.compile(r"^[\w.-]{1,64}$")
REPLACED = 4000
UNAUTHENTICATED = 4401
INTERRUPTED = 1012  # "service restart": reconnect (with last_id) and carry on


class FeedHandler(PathOnlyErrors, tornado.websocket.WebSocketHandler):
    principal = None
    live = False
    counted = False  # in the feed-clients gauge

    def check_origin(self, origin: str) -> bool:
        # Bearer tokens, not cookies, authenticate here: a foreign page has no token to use.
        return True

    @api("Staff live feed (WebSocket upgrade): ?token=&device=&last_id= — see the module docs",
         response=dict)
    async def get(self, community_id):
        self.community_id = community_id
        self.nonce = uuid.uuid4().hex
        self.pending: list[dict] = []
        self.last_sent: str | None = None
        try:
            self.device = self._device(self.get_query_argument("device", "default"))
            self.last_id = self._last_id(self.get_query_argument("last_id", None))
            scheme, _, bearer = self.request.headers.get("Authorization", "").partition(" ")
            token = self.get_query_argument("token", None) or (
                bearer.strip() if scheme.lower() == "bearer" else None)
            if token:
                self.principal = await self._authenticate(token)
        except DomainError as exc:
            self.set_status(exc.status)
            self.set_header("Content-Type", "application/json; charset=UTF-8")
            lang = negotiate(self.request.headers.get("Accept-Language", ""))
            self.finish(to_json({"error": {"code": exc.code, "message": say(exc.message, lang)}}))
            return
        await super().get(community_id=community_id)

    @staticmethod
    def _device(value: str) -> str:
        if not DEVICE.match(value):
            raise Invalid("bad device name", fields={"device": "1-64 of letters, digits, . _ -"})
        return value

    @staticmethod
    def _last_id(value: str | None) -> str | None:
        if value is not None and not STREAM_ID.match(value):
            raise Invalid("bad last_id", fields={"last_id": 'an event id like "1700000000000-0"'})
        return value

    async def _authenticate(self, token: str):
        principal = await self.application.auth.principal(token)
        if not principal.is_staff:
            raise Forbidden("the live feed is for staff")
        authorize(principal, self.community_id, "tickets.read")
        return principal

    async def open(self, community_id):
        if self.principal is not None:
            await self._start()
        else:
            self.auth_timer = tornado.ioloop.IOLoop.current().call_later(
                AUTH_SECONDS, self.close, UNAUTHENTICATED, "send your token first")

    async def on_message(self, message):
        if self.principal is not None:
            return  # nothing to say after authenticating; pings are the protocol's
        tornado.ioloop.IOLoop.current().remove_timeout(self.auth_timer)
        try:
            hello = json.loads(message)
            if not isinstance(hello, dict) or not isinstance(hello.get("token"), str):
                raise Invalid("first message must be {\"token\": ...}")
            self.last_id = self._last_id(hello.get("last_id", self.last_id))
            self.device = self._device(hello.get("device", self.device))
            self.principal = await self._authenticate(hello["token"])
        except (ValueError, DomainError) as exc:
            status = getattr(exc, "status", 400)
            self.close(4000 + status, getattr(exc, "message", "bad first message"))
            return
        await self._start()

    async def _start(self) -> None:
        # A socket outlives no token: at its expiry the client reconnects with a fresh one.
        self.expiry_timer = tornado.ioloop.IOLoop.current().call_later(
            max(0.0, self.principal.expires - self.application.clock.time()),
            self.close, UNAUTHENTICATED, "access token expired; reconnect with a fresh one")
        metrics.FEED_CLIENTS.inc()
        self.counted = True
        hub = self.application.feed_hub
        # Subscribe first, then read the backlog: nothing falls between the two.
        await hub.join(feed_channel(self.community_id), self._on_event)
        await hub.join(device_channel(self.principal.id, self.device), self._on_device)
        await self.application.redis.publish(device_channel(self.principal.id, self.device),
                                             self.nonce)
        if self.last_id:
            for event in await self.application.notifier.feed_since(self.community_id, self.last_id):
                self._send(event)
        self._write({"type": "feed.ready", "last_id": self.last_sent or self.last_id})
        self.live = True
        for event in self.pending:
            self._send(event)
        self.pending = []

    def _on_event(self, channel: str, data: str | None) -> None:
        if data is None:  # the process lost its subscription: the client resumes by last_id
            self.close(INTERRUPTED, "feed interrupted; reconnect with last_id")
            return
        event = json.loads(data)
        if self.live:
            self._send(event)
        else:
            self.pending.append(event)

    def _on_device(self, channel: str, nonce: str | None) -> None:
        if nonce is not None and nonce != self.nonce:
            self.close(REPLACED, "replaced by a newer connection from this device")

    def _send(self, event: dict) -> None:
        if self.last_sent and stream_id_key(event["id"]) <= stream_id_key(self.last_sent):
            return  # already sent from the backlog
        self.last_sent = event["id"]
        if ((event.get("to") is None or self.principal.id in event["to"])
                and (event.get("permission") is None
                     or permitted(self.principal, self.community_id, event["permission"]))):
            self._write(event)

    def _write(self, message: dict) -> None:
        try:
            self.write_message(to_json(message))
        except tornado.websocket.WebSocketClosedError:
            pass  # on_close cleans up

    def on_close(self) -> None:
        if self.counted:
            metrics.FEED_CLIENTS.dec()
            self.counted = False
        if hasattr(self, "expiry_timer"):
            tornado.ioloop.IOLoop.current().remove_timeout(self.expiry_timer)
        if self.principal is not None:
            tornado.ioloop.IOLoop.current().add_callback(self._leave)

    async def _leave(self) -> None:
        hub = self.application.feed_hub
        await hub.leave(feed_channel(self.community_id), self._on_event)
        await hub.leave(device_channel(self.principal.id, self.device), self._on_device)


routes = [("/api/communities/{community_id}/feed", FeedHandler)]
