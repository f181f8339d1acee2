"""Bulk import of rooms and residents from a spreadsheet (see docs/import.md)."""

from datetime import datetime
from typing import Literal

import tornado.httputil
from pydantic import BaseModel, Field

from handlers.base import APIHandler, Strict, api
from models.errors import Invalid
from models.importer import FORMATS, MAX_FILE_BYTES, XLSX_MIME
from models.messages import Text, say

Format = Literal[FORMATS]
# Content-Type / file extension -> format hint; anything else is recognised by its content.
TYPE_HINTS = {XLSX_MIME: "xlsx", "text/csv": "csv", "application/csv": "csv"}
UPLOADS = (XLSX_MIME, "text/csv", "multipart/form-data")


class ImportQuery(Strict):
    format: Format | None = Field(
        None, description="xlsx or csv; default: from the Content-Type, else from the content")


class RowError(BaseModel):
    row: int = Field(description="row number as the spreadsheet shows it")
    column: str = Field(description="canonical column name, e.g. phone")
    header: str = Field(description="the column's header as written in the file, e.g. 手机")
    problem: str


class Counts(BaseModel):
    created: int
    updated: int


class ImportReport(BaseModel):
    rows: int = Field(description="data rows in the file (blank rows not counted)")
    created: int = Field(description="rows that created a room or room link")
    updated: int = Field(description="rows that changed something that existed")
    unchanged: int
    failed: int = Field(description="rows refused because of errors; nothing of them was written")
    errors: list[RowError]
    details: dict[Literal["places", "residents", "links"], Counts]


class ImportJob(BaseModel):
    id: str
    state: Literal["running", "done", "failed", "interrupted"] = Field(
        description="interrupted: the process writing it stopped; send the file again "
                    "(an import is idempotent)")
    rows: int = Field(description="data rows in the file")
    written: int = Field(description="valid rows written so far")
    by: str
    started_at: datetime
    finished_at: datetime | None
    report: ImportReport | None = Field(description="when done")
    error: str | None = Field(description="when failed")


class ImportsHandler(APIHandler):
    @api("Start an import of rooms and residents: send the .xlsx or .csv file as the request "
         "body (raw, or as the single file of a multipart form). The file is checked at once "
         "(an unreadable file is 400, a running import into the community 409); the rows are "
         "written in the background: follow the import at its URL until it is done.",
         query=ImportQuery, response=ImportJob, status=202, permission="import",
         uploads=UPLOADS, max_body=MAX_FILE_BYTES)
    async def post(self, community_id):
        data, hint = self._upload()
        job = await self.app.imports.start(community_id, data, self.query.format or hint,
                                           by=self.principal.id)
        self.set_header("Location", f"/api/communities/{community_id}/imports/{job['id']}")
        self.write_json(job)

    def _upload(self) -> tuple[bytes, str | None]:
        content_type = self.request.headers.get("Content-Type", "")
        media_type = content_type.split(";")[0].strip().lower()
        if media_type != "multipart/form-data":
            return self.request.body, TYPE_HINTS.get(media_type)
        files: dict = {}
        tornado.httputil.parse_body_arguments(content_type, self.request.body, {}, files)
        uploads = [f for parts in files.values() for f in parts]
        if len(uploads) != 1:
            raise Invalid("send exactly one file", fields={"file": Text("got {count} files", count=len(uploads))})
        extension = uploads[0].filename.rsplit(".", 1)[-1].lower()
        return uploads[0].body, extension if extension in FORMATS else None


class ImportHandler(APIHandler):
    @api("An import's progress, and its report once done", response=ImportJob,
         permission="import")
    async def get(self, community_id, import_id):
        job = await self.app.imports.get(community_id, import_id)
        if job["report"]:  # a row's problem in the caller's language (models/messages.py)
            lang = self.lang()
            job["report"]["errors"] = [{**e, "problem": say(e["problem"], lang)}
                                       for e in job["report"]["errors"]]
        self.write_json(job)


routes = [
    ("/api/communities/{community_id}/imports", ImportsHandler),
    ("/api/communities/{community_id}/imports/{import_id}", ImportHandler),
]
