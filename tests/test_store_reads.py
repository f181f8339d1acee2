"""What a hot request reads from MongoDB, counted on the wire: the soak (1,000 app clients,
2,000 gates in one community) overloaded the store with reads that grew with the community."""

import pytest
from pymongo import AsyncMongoClient, monitoring

from models.access_log import AccessLog, AccessLogReader
from models.people import StaffManager
from models.places import PlaceManager
from tests.builders import make_community
from tests.test_access_log import some_traffic

pytestmark = pytest.mark.asyncio


class DocumentsRead(monitoring.CommandListener):
    """Documents each collection's find/getMore replies carried."""

    def __init__(self):
        self.collections: dict[int, str] = {}
        self.read: dict[str, int] = {}

    def started(self, event) -> None:
        if event.command_name in ("find", "getMore"):
            self.collections[event.request_id] = event.command.get(
                "find", event.command.get("collection"))

    def succeeded(self, event) -> None:
        collection = self.collections.pop(event.request_id, None)
        if collection is not None:
            cursor = event.reply.get("cursor", {})
            batch = cursor.get("firstBatch", cursor.get("nextBatch", []))
            self.read[collection] = self.read.get(collection, 0) + len(batch)

    def failed(self, event) -> None:
        self.collections.pop(event.request_id, None)


async def test_an_access_log_page_reads_only_the_gates_it_names(app, api_client, settings):
    c = await make_community(app, "many")
    for i in range(120):  # a large community: the page names one of them
        await app.places.create_gate(c.id, f"x{i}", f"extra {i}", "pedestrian", [""])
    await app.places.update_gate(c.id, c.gates["main"], {"name": "南门"})
    await some_traffic(app, api_client, c)
    listener = DocumentsRead()
    client = AsyncMongoClient(settings.mongodb_uri, tz_aware=True, event_listeners=[listener])
    try:
        db = client[settings.mongodb_db]
        reader = AccessLogReader(db, PlaceManager(db, app.clock), StaffManager(db, app.redis, app.clock),
                                 AccessLog(db))
        page = await reader.page(c.id, limit=20)
    finally:
        await client.close()
    assert {item["gate_name"] for item in page["items"]} == {"南门"}
    assert listener.read["gates"] == 1, listener.read
