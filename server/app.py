"""The composition root: one Application holds settings, stores and managers.

Handlers reach everything through `self.application`; nothing lives in globals.
"""

import asyncio
import functools
import importlib
import logging
import re
import uuid

import tornado.web
from tornado.escape import url_unescape
from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from handlers.base import NotFoundHandler
from models.access_log import AccessLog, AccessLogReader
from models.auth import AuthManager
from models.bindings import BindingManager
from models.common import Clock
from models.bridges import BridgeManager
from models.decoration import DecorationManager
from models.equipment import EquipmentManager
from models.gate_access import GateAccess
from models.gate_alarms import AlarmManager
from models.gate_commands import CommandAudit
from models.gate_events import GateEventManager
from models.gate_modes import ModeManager
from models.gate_presence import GatePresence
from models.importer import Importer
from models.key_cache import KeyCache
from models.key_box import KeyBox
from models.kpi import KpiManager
from models.leases import LeasedJob
from models.notices import NoticeManager
from models.notifications import FeedHub, Notifier
from models.outbox import Outbox
from models.passes import PassManager
from models.patrols import PatrolManager
from models.people import ResidentManager, StaffManager
from models.photos import GridFSPhotoStore, PhotoLinks
from models.places import PlaceManager
from models.sla import SlaTargets, SlaWatcher
from models.surveys import SurveyManager
from models.tickets import TicketManager
from models.workflow import Effects
from server import metrics
from server.settings import Settings
from server.stores import StoreHealth
from server.wechat import WeChatClient

# Handler modules, each with a `routes` list of ("/path/{param}", Handler).
HANDLER_MODULES = ("health", "auth", "session", "admin", "communities", "people", "bindings",
                   "imports", "tickets", "feed", "gates", "passes", "notices",
                   "decoration", "patrols", "equipment")
MODEL_MODULES = ("places", "people", "bindings", "auth", "importer", "tickets", "notifications",
                 "bridges", "gate_events", "gate_alarms", "gate_commands", "gate_modes", "passes",
                 "access_log", "outbox", "notices", "surveys", "decoration",
                 "patrols", "equipment")

access_log = logging.getLogger("xiaoqu.access")
PATROL_INTERVAL = 30.0  # seconds between sweeps for missed patrol rounds
OUTBOX_INTERVAL = 1.0  # seconds between the outbox worker's passes (effects run at once anyway)


async def ensure_indexes(db, modules=MODEL_MODULES) -> None:
    """Create the indexes the models declare (idempotent: existing ones are kept)."""
    for name in modules:
        for collection, indexes in importlib.import_module(f"models.{name}").INDEXES.items():
            await db[collection].create_indexes(indexes)


PARAM = r"{(\w+)(?::([^}]+))?}"


def route_pattern(template: str) -> str:
    """"/a/{b}" (or "{b:regex}") -> a regex with a named group, so handlers get `b=`."""
    return re.sub(PARAM, lambda m: f"(?P<{m[1]}>{m[2] or '[^/]+'})", template) + "$"


class RouteNode:
    """The routes that continue a path from here: by a literal next segment, by a `{name}`
    segment, by a segment its `{name:regex}` matches, ending here, or taking the rest
    (a last `{name:regex}`)."""

    __slots__ = ("literal", "param", "patterns", "end", "rest")

    def __init__(self):
        self.literal: dict[str, RouteNode] = {}
        self.param: RouteNode | None = None
        self.patterns: list[tuple[re.Pattern, RouteNode]] = []
        self.end: tuple | None = None  # (order, route, parameter names)
        self.rest: list[tuple] = []  # (order, route, parameter names, name, regex)


class RouteIndex:
    """Finds the route Tornado's rule list would (the first in order whose pattern matches)
    by walking the path's segments through a tree of the templates: Tornado's router runs a
    Python call and a regex per route until one matches — ~100 of them, each rescanning the
    path, for a route late in the list, a fifth of a whole request's CPU.

    A plain `{name}` matches one non-empty segment, as its `[^/]+` does; a `{name:regex}`
    as a template's last part matches the rest of the path (slashes too), before it one
    segment (so its regex must not be able to match a slash: refused if it might)."""

    def __init__(self, routes: list[tuple]):
        self.root = RouteNode()
        # Clients ask for the same paths again and again (a phone re-fetching its gate code).
        self._recent = functools.lru_cache(maxsize=4096)(self._walk)
        for order, route in enumerate(routes):
            node, names = self.root, []
            parts = route[0].split("/")
            for i, part in enumerate(parts):
                param = re.fullmatch(PARAM, part)
                if param and param[2] and i == len(parts) - 1:
                    node.rest.append((order, route, names, param[1], re.compile(param[2] + "$")))
                    break
                if param and param[2]:
                    if re.search(r"[/.]|\\[SWD]|\[\^", param[2]):
                        raise ValueError(f"{route[0]}: {part} might match a slash")
                    names = names + [param[1]]
                    child = RouteNode()
                    node.patterns.append((re.compile(param[2]), child))
                    node = child
                elif param:
                    names = names + [param[1]]
                    node.param = node.param or RouteNode()
                    node = node.param
                elif "{" in part:
                    raise ValueError(f"{route[0]}: a parameter is a whole segment")
                else:
                    node = node.literal.setdefault(part, RouteNode())
            else:
                node.end = node.end or (order, route, names)

    def match(self, path: str) -> tuple[tuple, dict[str, bytes]] | None:
        """(route, its path parameters as Tornado passes them: unquoted bytes), or None."""
        found = self._recent(path)
        return found and (found[0], dict(found[1]))  # (a copy: the remembered one stays as found)

    def _walk(self, path: str) -> tuple[tuple, dict[str, bytes]] | None:
        segments = path.split("/")
        count = len(segments)
        best = None
        # (node, segments taken, the plain parameters' values so far)
        pending = [(self.root, 0, ())]
        while pending:
            node, taken, values = pending.pop()
            if taken == count:
                if (end := node.end) and (best is None or end[0] < best[0]):
                    best = (end[0], end[1], dict(zip(end[2], values)))
                continue
            for order, route, names, name, regex in node.rest:
                rest = "/".join(segments[taken:])
                if (best is None or order < best[0]) and regex.match(rest):
                    best = (order, route, dict(zip(names, values)) | {name: rest})
            segment = segments[taken]
            if (child := node.literal.get(segment)) is not None:
                pending.append((child, taken + 1, values))
            if segment and node.param is not None:
                pending.append((node.param, taken + 1, values + (segment,)))
            for regex, child in node.patterns:
                if regex.fullmatch(segment):
                    pending.append((child, taken + 1, values + (segment,)))
        if best is None:
            return None
        return best[1], {k: url_unescape(v, encoding=None, plus=False) for k, v in best[2].items()}


def bodiless(request) -> bool:
    """Whether a request has no body to read (Tornado reads one only with these headers)."""
    headers = request.headers
    return "Transfer-Encoding" not in headers and headers.get("Content-Length", "0") == "0"


class BodilessDelegate(tornado.web._HandlerDelegate):
    """Runs a body-streaming handler (APIHandler) for a request without a body as Tornado runs
    any other handler: once the empty body is in. Streaming lets prepare() refuse a body
    before it is read; with none to read it only cost two event-loop turns (Tornado waits
    for prepare() to end, then hands the end of the body over)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.stream_request_body = False

    def execute(self) -> None:
        # The handler's class still streams: its _execute awaits this, done at once.
        self.request._body_future = asyncio.get_running_loop().create_future()
        self.request._body_future.set_result(None)
        super().execute()


class XiaoquApp(tornado.web.Application):
    def __init__(self, settings: Settings, mongo: AsyncMongoClient, redis: Redis,
                 clock: Clock | None = None):
        self.config = settings
        self.mongo = mongo
        self.db = mongo[settings.mongodb_db]
        self.redis = redis
        self.clock = clock or Clock()
        self.instance = uuid.uuid4().hex[:12]  # this process, in leases and outbox claims
        self.outbox = Outbox(self.db, self.clock, self.instance)
        self.stores = StoreHealth(self.db, redis)  # the circuit breaker /readyz feeds
        self.wechat = WeChatClient(settings.wechat_base_url, settings.wechat_appid,
                                   settings.wechat_secret.get_secret_value(), redis)
        # This process's copies of revocations, room links, accounts, communities and gates.
        self.keys = KeyCache(redis)
        self.places = PlaceManager(self.db, self.clock, self.keys)
        self.residents = ResidentManager(self.db, self.clock)
        self.staff = StaffManager(self.db, redis, self.clock, self.keys)
        self.bindings = BindingManager(self.db, redis, self.clock, self.places, self.keys)
        self.imports = Importer(self.db, redis, self.clock, self.places, self.residents,
                                self.bindings)
        self.auth = AuthManager(self.db, redis, self.clock, settings, self.residents, self.staff,
                                self.bindings, self.wechat, self.keys)
        self.notifier = Notifier(self.db, redis, self.clock, self.wechat, self.residents,
                                 self.places, settings.wechat_ticket_template)
        self.feed_hub = FeedHub(settings.redis_url)
        self.sla_targets = SlaTargets(self.db)
        self.access_log = AccessLog(self.db)
        self.access_log_reader = AccessLogReader(self.db, self.places, self.staff, self.access_log)
        key_box = KeyBox(settings.gate_secret_key.get_secret_value())
        self.passes = PassManager(self.db, redis, self.clock, settings, self.places, self.bindings,
                                  self.staff, self.access_log, key_box)
        self.effects = Effects(self.outbox, self.clock)  # what follows saved changes
        photos = GridFSPhotoStore(self.db)
        photo_links = PhotoLinks(settings.jwt_secret.get_secret_value(), self.clock)
        self.tickets = TicketManager(self.db, redis, self.clock, places=self.places,
                                     bindings=self.bindings, staff=self.staff,
                                     notifier=self.notifier, targets=self.sla_targets,
                                     photos=photos, photo_links=photo_links,
                                     effects=self.effects, passes=self.passes)
        self.notices = NoticeManager(self.db, self.clock, places=self.places,
                                     bindings=self.bindings, residents=self.residents,
                                     notifier=self.notifier, photos=photos,
                                     photo_links=photo_links, effects=self.effects,
                                     template=settings.wechat_notice_template)
        self.surveys = SurveyManager(self.db, self.clock, notices=self.notices,
                                     notifier=self.notifier, effects=self.effects,
                                     secret=settings.jwt_secret.get_secret_value())
        self.decoration = DecorationManager(self.db, self.clock, bindings=self.bindings,
                                            passes_manager=self.passes,
                                            access_log=self.access_log,
                                            notifier=self.notifier, effects=self.effects,
                                            photos=photos, photo_links=photo_links)
        self.patrols = PatrolManager(self.db, self.clock, places=self.places,
                                     notifier=self.notifier, effects=self.effects,
                                     tickets=self.tickets, photos=photos,
                                     photo_links=photo_links)
        self.equipment = EquipmentManager(self.db, self.clock, places=self.places, staff=self.staff,
                                          tickets=self.tickets, photos=photos,
                                          photo_links=photo_links, effects=self.effects)
        self.kpi = KpiManager(self.db, self.clock, self.places)
        self.gate_presence = GatePresence(redis, self.clock)
        self.gate_alarms = AlarmManager(self.db, self.clock, self.notifier)
        self.gate_events = GateEventManager(self.db, self.clock, self.notifier)
        self.gate_modes = ModeManager(self.db, redis, self.clock, self.places, self.gate_alarms)
        self.bridges = BridgeManager(self.db, self.redis, self.clock, self.places, self.passes,
                                     self.gate_modes, key_box)
        self.gate_access = GateAccess(redis, self.clock, self.passes, self.access_log,
                                      self.gate_events, self.gate_alarms, self.gate_modes,
                                      CommandAudit(self.db), feed=self.notifier,
                                      outbox=self.outbox,
                                      outcome_grace=settings.gate_outcome_grace)
        self.gate_hub = None  # server.gate_hub.GateHub, attached when the hub starts
        self.sla_watcher = SlaWatcher(self.db, redis, self.clock, self.tickets,
                                      lease_seconds=settings.lease_seconds, instance=self.instance)
        self.outbox_worker = LeasedJob(redis, "outbox", self.outbox.drain, interval=OUTBOX_INTERVAL,
                                       ttl=settings.lease_seconds, instance=self.instance)
        # Missed patrol rounds raised on the feed (models/patrols.py).
        self.patrol_sweeper = LeasedJob(redis, "patrols", lambda: self.patrols.sweep(self.clock.now()),
                                        interval=PATROL_INTERVAL, ttl=settings.lease_seconds,
                                        instance=self.instance)
        # Jobs that run in one instance at a time (each under its lease), started by start_jobs.
        self.jobs = [self.sla_watcher.job, self.outbox_worker, self.patrol_sweeper]

        # (template, handler[, handler kwargs]) from every handler module
        self.routes: list[tuple] = []
        for name in HANDLER_MODULES:
            self.routes += importlib.import_module(f"handlers.{name}").routes
        super().__init__(
            [(route_pattern(r[0]), *r[1:]) for r in self.routes],
            default_handler_class=NotFoundHandler,
            log_function=self.log_request,
            xsrf_cookies=False,
            # JSON and text answers gzip-compressed for clients that accept it (a phone on the
            # admin view's Today screen reads every open ticket); images are sent as they are.
            compress_response=True,
        )
        self.route_index = RouteIndex(self.routes)
        self._request_seconds = {}  # (handler, method, status) -> its histogram's child

    def find_handler(self, request, **kwargs):
        # Host-specific routes (add_handlers) come before the wildcard: Tornado's search then.
        if len(self.default_router.rules) == 1 and (found := self.route_index.match(request.path)):
            (_, handler, *options), path_kwargs = found
            return self.get_handler_delegate(request, handler, *options, path_kwargs=path_kwargs)
        return super().find_handler(request, **kwargs)

    def get_handler_delegate(self, request, target_class, target_kwargs=None, path_args=None,
                             path_kwargs=None):
        if target_class._stream_request_body and bodiless(request):
            return BodilessDelegate(self, request, target_class, target_kwargs, path_args,
                                    path_kwargs)
        return super().get_handler_delegate(request, target_class, target_kwargs, path_args,
                                            path_kwargs)

    # In-flight requests, so a graceful shutdown can wait for them to finish.
    in_flight = 0
    idle: asyncio.Event | None = None

    def requests_started(self) -> None:
        self.in_flight += 1

    def requests_finished(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0 and self.idle is not None:
            self.idle.set()

    async def drained(self, timeout: float) -> None:
        """Wait until no request is in flight (or the timeout passes)."""
        self.idle = asyncio.Event()
        if self.in_flight:
            try:
                await asyncio.wait_for(self.idle.wait(), timeout)
            except TimeoutError:
                access_log.warning("shutdown: %d requests still running", self.in_flight)

    async def startup(self) -> None:
        """Create every collection's indexes (idempotent: existing ones are kept) and seal
        pass keys an older version stored raw."""
        await ensure_indexes(self.db)
        await self.passes.seal_raw_keys()
        await self.keys.start()
        self.stores.start()

    def start_jobs(self) -> None:
        """Start the background jobs; every process runs them, their leases let one work."""
        for job in self.jobs:
            job.start()

    async def close(self) -> None:
        await self.imports.close()
        await self.access_log.flush()
        for cache in (self.passes.communities, self.gate_modes.cache):
            await cache.settle()
        for job in self.jobs:
            await job.stop()
        await self.outbox.close()
        await self.stores.stop()
        await self.feed_hub.close()
        await self.wechat.close()
        await self.keys.close()
        await self.redis.aclose()
        await self.mongo.close()

    def log_request(self, handler: tornado.web.RequestHandler) -> None:
        seconds = handler.request.request_time()
        status = handler.get_status()
        name = type(handler).__name__
        labels = (name, handler.request.method, status)
        if (child := self._request_seconds.get(labels)) is None:
            # prometheus-client checks and converts the label values on every `labels()`
            child = self._request_seconds[labels] = metrics.REQUEST_SECONDS.labels(
                name, handler.request.method, str(status))
        child.observe(seconds)
        if not access_log.isEnabledFor(logging.INFO):
            return  # like Tornado's own access log: no line built that nobody writes
        principal = getattr(handler, "principal", None)
        # The path only: a query may carry a token (?token= for /docs, the live feed).
        path = handler.logged_path() if hasattr(handler, "logged_path") else handler.request.path
        access_log.info("%s %s %d", handler.request.method, path, status, extra={
            "request_id": getattr(handler, "request_id", None),
            "trace_id": getattr(handler, "trace_id", None),
            "method": handler.request.method, "path": path, "status": status,
            "ms": round(seconds * 1000, 2), "handler": name,
            "ip": getattr(handler, "client_ip", handler.request.remote_ip),
            "user": principal and f"{principal.kind}:{principal.id}",
        })
