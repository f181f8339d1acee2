"""The route index finds what Tornado's own rule list finds, for every route and for paths
made of the routes' own segments (the first matching route wins in both)."""

import importlib
import random
import re

import pytest
import tornado.httputil
import tornado.web

from server.app import HANDLER_MODULES, PARAM, RouteIndex, route_pattern

ROUTES = [route for name in HANDLER_MODULES for route in importlib.import_module(f"handlers.{name}").routes]


def tornado_finds(app: tornado.web.Application, path: str):
    request = tornado.httputil.HTTPServerRequest(
        start_line=tornado.httputil.RequestStartLine("GET", path, "HTTP/1.1"),
        headers=tornado.httputil.HTTPHeaders({"Host": "h"}))
    found = app.find_handler(request)
    return None if found.handler_class is tornado.web.ErrorHandler else (
        found.handler_class, found.path_kwargs)


def index_finds(index: RouteIndex, path: str):
    found = index.match(path)
    return found and (found[0][1], found[1])


def test_the_index_agrees_with_tornados_rule_list():
    app = tornado.web.Application([(route_pattern(r[0]), *r[1:]) for r in ROUTES])
    index = RouteIndex(ROUTES)
    paths = [re.sub(PARAM, filler, r[0]) for r in ROUTES for filler in ("a%20b", "7")]
    paths += ["/", "/api", "/api/", "//", "/admin", "/admin/", "/admin/x/y", "/docs/static",
              "/docs/static/", "/docs/static/a/b.js", "/api/communities//code",
              "/api/communities/a%2Fb/code", "/healthz/", "/nothing"]
    segments = sorted({part for r in ROUTES for part in r[0].split("/")}) + ["x", "", "7"]
    draw = random.Random(11)
    paths += ["/" + "/".join(draw.choice(segments) for _ in range(draw.randint(0, 6)))
              for _ in range(5000)]
    for path in paths:
        assert index_finds(index, path) == tornado_finds(app, path), path


@pytest.mark.parametrize("template", ["/a/{rest:.*}/b", "/a/x{id}"])
def test_templates_the_index_cannot_walk_are_refused(template):
    with pytest.raises(ValueError):
        RouteIndex([(template, tornado.web.RequestHandler)])
