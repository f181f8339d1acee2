"""A large import answers at once and is followed at its URL; one that lost its process says so."""

import asyncio
from datetime import UTC, datetime

import pytest

from models.common import ManualClock
from models.importer import STALE_SECONDS
from tests.builders import make_community
from tests.test_import import HEADER, csv_file

pytestmark = pytest.mark.asyncio


@pytest.fixture
def clock():
    return ManualClock(datetime.now(UTC))


def rooms(count: int) -> bytes:
    return csv_file([HEADER] + [[1, 1, f"{n:04d}", "", "", "", "", ""] for n in range(count)])


async def test_the_answer_comes_before_the_writes_and_the_url_follows_them(app, api_client):
    c = await make_community(app, "job-a")
    token = c.tokens["admin"]
    started = await api_client.post(f"/api/communities/{c.id}/imports", raw=rooms(1200),
                                    headers={"Content-Type": "text/csv"}, token=token)
    assert started.status == 202, started.body
    assert (started.body["state"], started.body["rows"], started.body["written"],
            started.body["report"]) == ("running", 1200, 0, None)
    url = started.headers["Location"]
    assert url == f"/api/communities/{c.id}/imports/{started.body['id']}"
    # a second import into the same community waits for the first one's end
    second = await api_client.post(f"/api/communities/{c.id}/imports", raw=rooms(1),
                                   headers={"Content-Type": "text/csv"}, token=token)
    assert second.status == 409, second.body

    await asyncio.gather(*app.imports.running)
    done = (await api_client.get(url, token=token)).body
    assert (done["state"], done["written"], done["report"]["created"]) == ("done", 1200, 1200)
    assert done["finished_at"] is not None

    other = await make_community(app, "job-b")
    assert (await api_client.get(url, token=other.tokens["admin"])).status == 404
    assert (await api_client.get(url, token=c.tokens["customer_service"])).status == 403


async def test_an_import_whose_process_stopped_reads_interrupted(app, api_client, clock):
    c = await make_community(app, "job-c")
    token = c.tokens["admin"]
    started = await api_client.post(f"/api/communities/{c.id}/imports", raw=rooms(3000),
                                    headers={"Content-Type": "text/csv"}, token=token)
    await app.imports.close()  # as when the process writing it is stopped
    url = started.headers["Location"]
    clock.advance(STALE_SECONDS - 1)
    assert (await api_client.get(url, token=token)).body["state"] == "running"
    clock.advance(2)
    assert (await api_client.get(url, token=token)).body["state"] == "interrupted"
    # the lock went with it: the same file can be sent again, and finishes the job
    again = await api_client.post(f"/api/communities/{c.id}/imports", raw=rooms(3000),
                                  headers={"Content-Type": "text/csv"}, token=token)
    assert again.status == 202, again.body
    await asyncio.gather(*app.imports.running)
    report = (await api_client.get(again.headers["Location"], token=token)).body["report"]
    assert report["created"] + report["unchanged"] == 3000
