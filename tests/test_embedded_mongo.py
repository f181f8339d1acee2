"""The embedded MongoDB-protocol server's launcher (server/embedded.py, server/mongo_wire.py):
no change-stream delivery on its SQLite engine (the cause of its wedge under a busy writer),
and a wedge detected by a real query, said on stderr and recovered by a restart."""

import contextlib
import os
import signal
import sqlite3
import time

from pymongo import MongoClient

from server.embedded import start_mongo


def test_sqlite_writes_start_no_change_delivery(tmp_path):
    # Delivery registered a consumer and, after every write, ran its lease, checkpoint and
    # compaction commits on a second connection from the event loop: the wedge.
    path = tmp_path / "mongo.sqlite3"
    with start_mongo(path) as mongo, MongoClient(mongo.url) as client:
        for i in range(20):
            client.x.events.insert_one({"_id": i})
            client.x.counters.find_one_and_update({"_id": "c"}, {"$inc": {"n": 1}}, upsert=True)
        assert client.x.counters.find_one({"_id": "c"})["n"] == 20
        with contextlib.closing(sqlite3.connect(path)) as db:  # while it runs (WAL)
            assert db.execute("SELECT count(*) FROM change_outbox_consumers").fetchone() == (0,)


def test_a_store_answering_no_query_is_said_and_restarted(tmp_path, capfd):
    with start_mongo(tmp_path / "mongo.sqlite3", health_every=0.2, wedged_after=1.0) as mongo:
        with MongoClient(mongo.url) as client:
            client.x.kept.insert_one({"_id": "before"})
        wedged = mongo.process
        os.kill(wedged.pid, signal.SIGSTOP)  # the port still accepts; nothing answers
        deadline = time.monotonic() + 60
        while mongo.process is wedged:
            assert time.monotonic() < deadline, "the wedge was never noticed"
            time.sleep(0.1)
        assert wedged.poll() is not None
        with MongoClient(mongo.url) as client:  # the same URL, the same data
            assert client.x.kept.find_one({"_id": "before"}) == {"_id": "before"}
    said = capfd.readouterr().err
    assert f"embedded MongoDB-protocol server (pid {wedged.pid}" in said
    assert "answered no query" in said and "restarting it" in said
