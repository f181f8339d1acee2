"""The base API handler: authentication, tenancy, validation, JSON errors, request ids.

Every route is closed unless its method is marked `@public`. A method declares
its shape with `@api(...)`: the schemas validate requests and feed the OpenAPI
document, and the permission is checked by `models.access.authorize`, which is
the only place tenancy and roles are decided.
"""

import functools
import ipaddress
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson
import pymongo.errors
import redis.exceptions
import tornado
import tornado.httputil
import tornado.web
from bson import ObjectId
from pydantic import BaseModel, ConfigDict, ValidationError

from gate_bridge import logs
from models.access import Principal, authorize, must_confirm_community
from models.errors import (DomainError, Forbidden, Invalid, RateLimited, TooLarge, Unauthorized,
                           Unavailable)
from models.messages import Text, negotiate, say, say_fields, validation_hint
from server import tracing

log = logging.getLogger("xiaoqu.api")

STORE_ERRORS = {
    "mongodb": (pymongo.errors.ConnectionFailure, pymongo.errors.ServerSelectionTimeoutError),
    "redis": (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError),
}
MAX_JSON_BODY = 64 * 1024
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                405: "method_not_allowed", 409: "conflict", 413: "too_large", 422: "unprocessable",
                429: "rate_limited", 503: "unavailable"}


class PathOnlyErrors:
    """For handlers that are not APIHandlers: Tornado's own error lines name the whole URI,
    whose query may carry a token (`?token=`); these name the handler and path only, and an
    HTTP error is an answer, already in the access-log line."""

    def log_exception(self, typ, value, tb) -> None:
        if not isinstance(value, tornado.web.HTTPError):
            log.error("unhandled error in %s %s", type(self).__name__, self.request.path,
                      exc_info=(typ, value, tb))


@dataclass(frozen=True)
class ApiSpec:
    summary: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: Any = None
    status: int = 200
    permission: str | None = None
    audience: str | None = None  # "staff" or "resident" when only one kind may call
    public: bool = False
    content_type: str = "application/json"
    # media types accepted as a raw file body (the handler reads it itself); in a
    # multipart form, the file is the field `upload_field` (several when `upload_many`)
    uploads: tuple[str, ...] = ()
    upload_field: str = "file"
    upload_many: bool = False
    rate_limited: bool = False  # may answer 429 (documented)
    # further answers it may give besides the ones its declarations imply: ((status, why), ...)
    errors: tuple[tuple[int, str], ...] = ()
    # the largest request body accepted, in bytes (refused from its Content-Length, unread)
    max_body: int = MAX_JSON_BODY


class Strict(BaseModel):
    """A request body or query: a field it does not know is refused by name, not ignored
    (a misspelt optional field would otherwise silently do nothing)."""

    model_config = ConfigDict(extra="forbid")


def api(summary: str, **options):
    """Declare a handler method's schemas, success status and required permission."""
    spec = ApiSpec(summary=summary, **options)

    def decorate(method):
        @functools.wraps(method)
        async def checked(self, *args, **kwargs):
            if isinstance(self, APIHandler):  # (the decorator also documents other handlers)
                self.body_received()
            if spec.query:
                self.query = (self.validate(spec.query, values) if (values := self.query_values())
                              else no_query(spec.query))
            if spec.body:
                self.body = self.validate(spec.body, self.json_body())
            self.set_status(spec.status)
            return await method(self, *args, **kwargs)

        checked.api = spec
        return checked
    return decorate


@functools.cache
def no_query(model: type[BaseModel]) -> BaseModel:
    """A query model's defaults, validated once: most requests send no query (handlers read
    their query, never change it). A model with a required field raises here each time."""
    return APIHandler.validate(model, {})


SERVER = f"TornadoServer/{tornado.version}"  # Tornado's own Server header


@functools.lru_cache(maxsize=1)
def _http_date(second: int) -> str:
    return tornado.httputil.format_timestamp(second)


def json_bytes(value: Any) -> bytes:
    """An answer's JSON (orjson: datetimes natively, as `isoformat()` writes them; keys that
    are not strings written as strings, as the standard library does)."""
    return orjson.dumps(value, default=_json_default, option=orjson.OPT_NON_STR_KEYS)


def to_json(value: Any) -> str:
    return json_bytes(value).decode()


def _json_default(value: Any) -> Any:
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, tuple):  # a NamedTuple (orjson writes plain tuples only): a list
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


@tornado.web.stream_request_body
class APIHandler(tornado.web.RequestHandler):
    """Streams the request body, so the caller, their permission and the body's declared
    size are all checked before a byte of it is read; `request.body` is assembled after."""

    principal: Principal | None = None
    body: Any = None
    query: Any = None
    secret_params: tuple[str, ...] = ()  # path parameters that are bearer secrets: never logged

    def logged_path(self) -> str:
        """The path for the access-log line, its secret parameters elided."""
        path = self.request.path
        for name in self.secret_params:
            if value := self.path_kwargs.get(name):
                path = path.replace(value, "…")
        return path
    _chunks: list[bytes]
    needs_stores = True  # False: answers while a store is down (health, metrics, static files)

    @property
    def app(self):
        return self.application

    # Set by clear() (below) on every answer, errors included.
    default_headers = {"Content-Type": "application/json; charset=UTF-8",
                       "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}

    def clear(self) -> None:
        # Tornado's clear() and three set_header() calls, in one go and with the Date header
        # formatted once a second (every answer, errors included, starts here).
        self._headers = tornado.httputil.HTTPHeaders({
            "Server": SERVER, "Date": _http_date(int(time.time())), **self.default_headers})
        self.set_default_headers()
        self._write_buffer = []
        self._status_code = 200
        self._reason = "OK"

    def check_etag_header(self) -> bool:
        # Without an ETag of ours no If-None-Match can match: skip Tornado's parse of it.
        return "Etag" in self._headers and super().check_etag_header()

    def page_headers(self, csp: str) -> str:
        """Headers of an HTML page: no framing, no sniffing, scripts and styles only from
        here or with this answer's nonce (returned, for the page's inline script)."""
        nonce = secrets.token_urlsafe(16)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Content-Security-Policy", csp.format(nonce=nonce))
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Referrer-Policy", "no-referrer")
        return nonce

    @classmethod
    def allowed_methods(cls) -> list[str]:
        # per class, once (every request checks its verb against it)
        if "_allowed" not in cls.__dict__:
            cls._allowed = [m for m in cls.SUPPORTED_METHODS if getattr(cls, m.lower())
                            is not getattr(tornado.web.RequestHandler, m.lower())]
        return cls._allowed

    def compute_etag(self) -> str | None:
        # No client keeps a no-store answer to revalidate, so hashing its body is waste
        # (photos, which clients may cache, keep their ETag).
        if self._headers.get("Cache-Control") == "no-store":
            return None
        return super().compute_etag()

    def begin_request(self) -> None:
        """Count the request in flight (for a graceful shutdown), start its trace and give it
        its id: the trace id, unless the caller sent an id of its own."""
        self.app.requests_started()
        self.client_ip, self.scheme = behind_proxies(self.request, self.app.config.trusted_proxy_hops)
        sent = self.request.headers.get("X-Request-Id", "")
        self.trace_id, self.span = tracing.begin(self.request.headers, type(self).__name__, sent)
        # Logged and echoed: only a short plain token from the caller, else the trace id.
        self.request_id = sent if REQUEST_ID.match(sent) else self.trace_id
        self._headers["X-Request-Id"] = self.request_id  # (a plain token: nothing to check)
        logs.bind(request_id=self.request_id, trace_id=self.trace_id)  # this request's task

    async def prepare(self) -> None:
        self.begin_request()
        self._chunks = []
        if self.request.method not in self.allowed_methods():
            raise tornado.web.HTTPError(405, Text("{method} is not allowed here",
                                                  method=self.request.method))
        method = getattr(self, self.request.method.lower(), None)
        spec = getattr(method, "api", None) or ApiSpec("")
        self.limit_body(spec.max_body)
        if self.needs_stores and self.app.stores.down() and (
                store := await self.app.stores.recheck()):
            # Known down (server/stores.py, StoreHealth): say so now, not after the
            # driver's timeouts.
            raise Unavailable(Text("{store} is not answering", store=store), code="store_unavailable",
                              extra={"store": store})
        if spec.public:
            return
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("sign in first: missing bearer token")
        self.principal = await self.app.auth.principal(token.strip())
        if spec.audience and self.principal.kind != spec.audience:
            raise Forbidden(Text("only for {audience}", audience=spec.audience))
        if spec.permission:
            community_id = self.path_kwargs.get("community_id")
            authorize(self.principal, community_id, spec.permission)
            if community_id and must_confirm_community(self.principal, community_id):
                await self.app.places.community(community_id)  # 404 unless it exists

    def limit_body(self, limit: int) -> None:
        declared = self.request.headers.get("Content-Length", "0")
        if not declared.isdigit() or int(declared) > limit:
            raise TooLarge(Text("request body is larger than {limit} bytes", limit=limit),
                           fields={"body": Text("at most {limit} bytes", limit=limit)},
                           extra={"limit": limit})
        self.request.connection.set_max_body_size(limit)  # also bounds a chunked body

    def data_received(self, chunk: bytes) -> None:
        self._chunks.append(chunk)

    def body_received(self) -> None:
        """Assemble the streamed body as Tornado would have (a form's files included)."""
        self.request.body = b"".join(self._chunks)
        self._chunks = []
        if not self.request.body:
            return  # (no form either)
        try:
            tornado.httputil.parse_body_arguments(
                self.request.headers.get("Content-Type", ""), self.request.body,
                self.request.body_arguments, self.request.files, self.request.headers)
        except tornado.httputil.HTTPInputError as exc:
            raise Invalid(Text("request body is not a valid form: {problem}", problem=str(exc)),
                          code="bad_form") from None

    def query_values(self) -> dict[str, str]:
        values = {}
        for name, raw in self.request.query_arguments.items():
            try:
                values[name] = raw[-1].decode()
            except UnicodeDecodeError:
                raise Invalid("query parameter is not valid UTF-8",
                              fields={name: "not valid UTF-8"}) from None
        return values

    def on_finish(self) -> None:
        if hasattr(self, "request_id"):  # unset when Tornado refused the verb before prepare()
            if self.span is not None:
                self.span.end()
            self.app.requests_finished()

    def photo_uploads(self) -> list[bytes]:
        """The `photo` files of a multipart body (a body of another kind is refused by name)."""
        uploads = [f["body"] for f in self.request.files.get("photo", [])]
        if not uploads and not self.request.headers.get("Content-Type", "").startswith("multipart/"):
            raise Invalid("send multipart/form-data with `photo` files", fields={"photo": "required"})
        return uploads

    def json_body(self) -> Any:
        if not self.request.body.strip():
            return {}  # no body: an empty object, so the schema names what is missing
        try:
            return json.loads(self.request.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise Invalid(Text("request body is not valid JSON: {problem}", problem=str(exc)),
                          code="bad_json") from None
        except RecursionError:
            raise Invalid("request body is nested too deeply", code="bad_json") from None

    @staticmethod
    def validate(model: type[BaseModel], data: Any) -> BaseModel:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            fields = {".".join(str(p) for p in err["loc"]) or "body": validation_hint(err)
                      for err in exc.errors()}
            raise Invalid(Text("invalid {fields}", fields=", ".join(fields)), fields=fields) from None

    def lang(self, chosen: str | None = None) -> str:
        """The language to answer people in: `chosen`, else Accept-Language, else Chinese."""
        return negotiate(self.request.headers.get("Accept-Language", ""), chosen)

    def write_json(self, value: Any) -> None:
        self.finish(json_bytes(value))

    def log_exception(self, typ, value, tb) -> None:
        # Expected failures are answers, not incidents: no traceback in the log.
        if isinstance(value, (DomainError, tornado.web.HTTPError)) or _store_down(value):
            return
        log.error("unhandled error in %s [%s]", type(self).__name__,
                  getattr(self, "request_id", "-"), exc_info=(typ, value, tb))

    def send_error(self, status_code: int = 500, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, DomainError):
            status_code = exc.status
        elif _store_down(exc):
            status_code = 503
            self.app.stores.suspect()  # the breaker's probe runs now
        super().send_error(status_code, **kwargs)

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        # Only the words follow the caller's language (models/messages.py); codes never do.
        error: dict[str, Any] = {"code": STATUS_CODES.get(status_code, "internal_error"),
                                 "message": self._reason}
        if isinstance(exc, DomainError):
            error.update(code=exc.code, message=exc.message, **exc.extra)
            if exc.fields:
                error["fields"] = exc.fields
            if isinstance(exc, Unauthorized):
                self.set_header("WWW-Authenticate", "Bearer")
            if isinstance(exc, RateLimited):
                self.set_header("Retry-After", str(exc.retry_after))
        elif store := _store_down(exc):
            error.update(code="store_unavailable", store=store,
                         message=Text("{store} is not answering", store=store))
        elif isinstance(exc, tornado.web.HTTPError) and exc.log_message:
            error["message"] = exc.log_message
        elif status_code >= 500:
            error["message"] = "internal error; quote the request id when reporting it"
        lang = self.lang()
        error["message"] = say(error["message"], lang)
        if "fields" in error:
            error["fields"] = say_fields(error["fields"], lang)
        if status_code == 405:
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        error["request_id"] = getattr(self, "request_id", None)
        if error["request_id"]:
            self.set_header("X-Request-Id", error["request_id"])  # send_error cleared it
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json_bytes({"error": error}))


def behind_proxies(request, hops: int) -> tuple[str, str]:
    """The client's address and the scheme it used: the connection's own, or, behind `hops`
    trusted proxies, what they recorded. Each proxy appends the address it saw to
    X-Forwarded-For, so the entry `hops` from the right is the one the outermost proxy saw;
    entries left of it are the client's own say. A request with fewer entries did not come
    through the proxies and counts as its peer."""
    address, scheme = request.remote_ip, request.protocol
    if hops:
        chain = [a.strip() for a in request.headers.get("X-Forwarded-For", "").split(",")]
        if len(chain) >= hops and _is_address(chain[-hops]):
            address = chain[-hops]
        # The nearest proxy sets it (nginx: proxy_set_header X-Forwarded-Proto $scheme).
        forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[-1].strip().lower()
        if forwarded in ("http", "https"):
            scheme = forwarded
    return address, scheme


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _store_down(exc: BaseException | None) -> str | None:
    for store, errors in STORE_ERRORS.items():
        if isinstance(exc, errors):
            return store
    return None


class NotFoundHandler(APIHandler):
    """Unknown paths answer with the same JSON error shape as everything else."""

    async def prepare(self) -> None:
        self.begin_request()
        raise tornado.web.HTTPError(404, "no such route")
