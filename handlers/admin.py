"""The staff admin view: the single-page app built from admin/ (Vue + Vant, by Vite).

/admin/assets/* are content-hashed file names, cached for a year as immutable; every other
path under /admin/ answers the HTML shell (the app routes in the page) with no-cache, so a
new build is picked up at the next visit. Answers are gzip-compressed when the browser
accepts it (compressed once, at first use). Every answer carries the admin view's
Content-Security-Policy: scripts only from this origin, no inline scripts, no framing.
"""

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from handlers.base import APIHandler, api
from models.errors import NotFound, Unavailable

DIST = Path(__file__).resolve().parent.parent / "admin" / "dist"
SHELL = "index.html"
ASSETS = "assets/"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
COMPRESSIBLE = ("text/", "application/javascript", "application/json", "image/svg+xml")


@dataclass(frozen=True)
class BuiltFile:
    body: bytes
    gzipped: bytes | None
    content_type: str
    etag: str


class AdminBundle:
    """The built files, read and compressed once per process."""

    def __init__(self, dist: Path):
        self.dist = dist
        self._files: dict[str, BuiltFile] | None = None

    def files(self) -> dict[str, BuiltFile]:
        if self._files is None:
            if not (self.dist / SHELL).is_file():
                raise Unavailable("the admin view is not built: run `make` (it runs vite build)",
                                  code="admin_not_built")
            self._files = {str(path.relative_to(self.dist)): self._load(path)
                           for path in sorted(self.dist.rglob("*"))
                           if path.is_file() and not path.name.startswith(".")}
        return self._files

    @staticmethod
    def _load(path: Path) -> BuiltFile:
        body = path.read_bytes()
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if content_type.startswith("text/") or content_type == "application/javascript":
            content_type += "; charset=UTF-8"
        gzipped = gzip.compress(body, 9, mtime=0) if content_type.startswith(COMPRESSIBLE) else None
        return BuiltFile(body, gzipped, content_type, hashlib.sha256(body).hexdigest()[:32])


# The one copy per process of what `vite build` wrote (the admin view, and Swagger UI's files
# for /docs under swagger-ui/, copied there from the swagger-ui-dist package).
BUNDLE = AdminBundle(DIST)


class BuiltFileHandler(APIHandler):
    """Answers with a built file: its media type, gzip when accepted, an ETag."""

    needs_stores = False  # files from the build, not from a store

    def compute_etag(self) -> str | None:
        return getattr(self, "etag", None)

    def send(self, built: BuiltFile) -> None:
        self.set_header("Content-Type", built.content_type)
        self.set_header("Vary", "Accept-Encoding")
        body = built.body
        if built.gzipped is not None and "gzip" in self.request.headers.get("Accept-Encoding", ""):
            body = built.gzipped
            self.set_header("Content-Encoding", "gzip")
        self.etag = f'"{built.etag}{"-gz" if body is built.gzipped else ""}"'
        self.finish(body)


class AdminHandler(BuiltFileHandler):
    default_headers = {"Content-Type": "text/html; charset=UTF-8", "Content-Security-Policy": CSP,
                       "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                       "Cache-Control": "no-cache"}

    @api("The staff admin view (HTML shell and its hashed assets)", response=str, public=True,
         content_type="text/html")
    async def get(self, path: str):
        files = BUNDLE.files()
        name = path
        if name.startswith(ASSETS):
            built = files.get(name)
            if built is None:
                raise NotFound("no such admin asset")
            self.set_header("Cache-Control", "public, max-age=31536000, immutable")
        else:
            built = files[SHELL]  # the page's router shows the screen for this path
        self.send(built)


class AdminRootHandler(APIHandler):
    needs_stores = False

    @api("The admin view's address without its slash: redirects to /admin/", response=str,
         public=True, status=301, content_type="text/html")
    async def get(self):
        self.set_header("Content-Type", "text/html; charset=UTF-8")  # as documented, not JSON
        self.redirect("/admin/", permanent=True)


routes = [
    ("/admin", AdminRootHandler),
    ("/admin/{path:.*}", AdminHandler),
]
