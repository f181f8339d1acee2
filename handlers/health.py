"""Liveness, readiness, metrics, the OpenAPI document and its offline docs page."""

import asyncio
import hmac
import json
from pathlib import Path
from string import Template
from urllib.parse import urlencode

import pymongo.errors
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from handlers.admin import BUNDLE, BuiltFileHandler
from handlers.base import APIHandler, api
from models.errors import NotFound, Unauthorized
from server import metrics
from server.openapi import build_spec

READY_TIMEOUT = 2.0
SWAGGER_UI = "swagger-ui"  # where admin/vite.config.js puts Swagger UI's files in the build
DOCS_PAGE = Template((Path(__file__).parent / "docs.html").read_text())
# Swagger UI sets inline styles itself; its script and ours are the only scripts.
DOCS_CSP = ("default-src 'none'; script-src 'self' 'nonce-{nonce}'; style-src 'self' "
            "'unsafe-inline'; img-src 'self' data:; connect-src 'self'; font-src 'self'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    mongodb: str
    redis: str


class HealthHandler(APIHandler):
    needs_stores = False
    @api("Process is alive", response=Health, public=True)
    async def get(self):
        self.write_json({"status": "ok"})


class ReadyHandler(APIHandler):
    needs_stores = False  # it is the probe the breaker acts on

    @api("MongoDB and Redis both answer (503 naming the one that does not)", response=Readiness,
         public=True)
    async def get(self):
        answers = await self.app.stores.probe()
        ok = all(state == "ok" for state in answers.values())
        self.set_status(200 if ok else 503)
        self.write_json({"status": "ready" if ok else "not_ready", **answers})


class OperatorsHandler(APIHandler):
    """Metrics and the API document: public, unless OPS_TOKEN is set (production may keep
    them to its operators); the token comes as a bearer token or as `?token=`."""

    needs_stores = False

    async def prepare(self) -> None:
        await super().prepare()
        required = self.app.config.ops_token
        if required is None:
            return
        scheme, _, given = self.request.headers.get("Authorization", "").partition(" ")
        given = given.strip() if scheme.lower() == "bearer" else self.get_query_argument("token", "")
        if not hmac.compare_digest(given.encode(), required.get_secret_value().encode()):
            raise Unauthorized("this needs the operators' token (OPS_TOKEN)", code="ops_token")


class MetricsHandler(OperatorsHandler):
    @api("Prometheus metrics", response=str, public=True, content_type=CONTENT_TYPE_LATEST)
    async def get(self):
        try:  # a store reading, taken at the scrape; the rest is served without it
            await asyncio.wait_for(asyncio.gather(
                self.app.gate_alarms.count_open(), self.app.outbox.count_pending()), READY_TIMEOUT)
        except (TimeoutError, pymongo.errors.PyMongoError):
            pass  # counted in xiaoqu_store_errors; the gauge keeps its last value
        metrics.jobs_read(self.app.jobs)
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(metrics.exposition())


class OpenAPIHandler(OperatorsHandler):
    @api("This API's OpenAPI 3.1 document", response=dict, public=True)
    async def get(self):
        if not hasattr(self.app, "openapi"):
            self.app.openapi = build_spec(self.app.routes, "xiaoqu", "0.1.0")
        self.write_json(self.app.openapi)


class DocsHandler(OperatorsHandler):
    @api("Readable API docs (Swagger UI, served locally)", response=str, public=True,
         content_type="text/html")
    async def get(self):
        token = self.get_query_argument("token", "")
        document = "/api/openapi.json" + (f"?{urlencode({'token': token})}" if token else "")
        self.finish(DOCS_PAGE.substitute(nonce=self.page_headers(DOCS_CSP),
                                         document=json.dumps(document)))


class DocsAssetHandler(BuiltFileHandler):
    @api("Swagger UI's own files, for the docs page (from the swagger-ui-dist package, copied "
         "by the admin view's build)", response=str, public=True,
         content_type="application/octet-stream")
    async def get(self, path):
        built = BUNDLE.files().get(f"{SWAGGER_UI}/{path}")
        if built is None:
            raise NotFound("no such docs file")
        self.set_header("Cache-Control", "no-cache")
        self.send(built)


routes = [
    ("/healthz", HealthHandler),
    ("/readyz", ReadyHandler),
    ("/metrics", MetricsHandler),
    ("/api/openapi.json", OpenAPIHandler),
    ("/docs", DocsHandler),
    ("/docs/static/{path:.*}", DocsAssetHandler),
]
