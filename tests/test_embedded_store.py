"""The embedded store's read-path patches (server/mongo_wire.py, `speed_up`): a sorted page
walks an index to its limit, the per-query probes are index lookups whose indexes are kept,
reads reuse their connections, and every answer is the one the unpatched engine gives
(`--no-speedups`, the same launcher without them)."""

import contextlib
import inspect
import os
import signal
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from bson import Binary, Decimal128, Int64, ObjectId
from mongoeco import MongoClient as EcoClient
from pymongo import MongoClient

from models.access_log import INDEXES
from server.embedded import start_mongo
from server.mongo_wire import (
    PYTHON_SORTED_TYPES,
    WireSQLiteEngine,
    kind_probe_sql,
    speedup_patches,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC)
PAGE = [("at", -1), ("_id", -1)]  # models/access_log.py's page order


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """(patched, unpatched) clients, each on a SQLite file of its own."""
    tmp = tmp_path_factory.mktemp("stores")
    with (start_mongo(tmp / "fast.sqlite3") as fast, MongoClient(fast.url) as a,
          start_mongo(tmp / "plain.sqlite3", speedups=False) as plain, MongoClient(plain.url) as b):
        yield a, b, tmp / "fast.sqlite3"


def both(stores, do):
    return do(stores[0].x), do(stores[1].x)


def lines(community, n, **extra):
    return [{"_id": ObjectId(), "community_id": community, "gate_id": ObjectId(),
             "at": T0 + timedelta(seconds=i // 3), "result": "allow", **extra}  # ties of 3
            for i in range(n)]


def engine_plan(collection, query, sort, limit=21) -> str:
    explained = collection.find(query).sort(sort).limit(limit).explain()
    return " | ".join(explained["details"]["engine_details"])


def test_the_access_log_page_walks_an_index_and_stops_at_its_limit(stores):
    community = ObjectId()
    docs = lines(community, 90) + lines(ObjectId(), 30)
    def load(db):
        db.page_log.create_indexes(INDEXES["access_log"])
        db.page_log.insert_many(docs)
    both(stores, load)
    before, last = T0 + timedelta(seconds=20), ObjectId()
    for query in ({"community_id": community},  # the first page, then the next by its cursor
                  {"community_id": community,
                   "$or": [{"at": {"$lt": before}}, {"at": before, "_id": {"$lt": last}}]},
                  {"community_id": community, "result": "allow"}):  # a filter beside
        fast, plain = both(stores, lambda db: engine_plan(db.page_log, query, PAGE))
        assert "TEMP B-TREE" in plain  # unpatched: every match sorted, then the first 21 kept
        assert "USING INDEX xq_sort_" in fast and "TEMP B-TREE" not in fast, fast
        got = both(stores, lambda db: list(db.page_log.find(query).sort(PAGE).limit(21)))
        assert got[0] == got[1] and len(got[0]) == 21


DIRTY = {  # values that make mongoeco sort or match in Python; one collection each
    "array": [T0, T0 + timedelta(days=1)],
    "plain object": {"d": 1},
    "decimal": Decimal128("2.5"),
    "int64": Int64(7),
    "bytes": Binary(b"\x01\x02"),
    "string": "2026-03-01",
    "null": None,
}


@pytest.mark.parametrize("kind", ["clean", *DIRTY])
def test_answers_are_the_unpatched_engines(stores, kind):
    community, other = ObjectId(), ObjectId()
    name = "answers_" + kind.replace(" ", "_")
    docs = lines(community, 40, subject="s1") + lines(other, 10, subject="s2")
    docs[5].pop("at")  # a missing sort field
    docs[7]["at"] = docs[8]["at"]  # a tie on the whole page order but the _id
    if kind != "clean":
        docs[11]["at"] = DIRTY[kind]
        docs[12]["community_id"] = DIRTY[kind]
    if kind == "array":  # matched by equality and $in through an element
        docs[13]["community_id"] = docs[14]["subject"] = [community, "s2"]
    def load(db):
        db[name].create_indexes(INDEXES["access_log"])
        db[name].insert_many([dict(d) for d in docs])
    both(stores, load)
    queries = [
        ({"community_id": community}, PAGE, 21, 0),
        ({"community_id": community}, PAGE, 21, 21),
        ({"community_id": community}, [("at", 1), ("_id", 1)], 0, 0),
        ({"community_id": community, "subject": "s1"}, PAGE, 10, 0),
        ({"community_id": community, "at": {"$gte": T0 + timedelta(seconds=3)}}, PAGE, 15, 0),
        ({"community_id": {"$in": [community, other]}}, PAGE, 0, 0),
        ({"subject": "s2"}, [("at", -1)], 5, 0),
        ({}, [("community_id", 1), ("at", -1), ("_id", 1)], 0, 0),
        ({"_id": {"$in": [d["_id"] for d in docs[::7]] + [ObjectId()]}}, [("_id", 1)], 0, 0),
        ({"community_id": community, "gate_id": {"$in": [docs[3]["gate_id"], docs[4]["gate_id"]]}},
         PAGE, 0, 0),
        ({"subject": {"$in": ["s2", "s3"]}}, PAGE, 0, 0),
    ]
    for query, sort, limit, skip in queries:
        got = both(stores, lambda db: list(db[name].find(query).sort(sort).skip(skip).limit(limit)))
        assert got[0] == got[1], (query, sort)
    # Writes by the same filters change the same documents.
    ids = [d["_id"] for d in docs[::5]]
    both(stores, lambda db: db[name].update_many({"_id": {"$in": ids}}, {"$set": {"seen": 1}}))
    both(stores, lambda db: db[name].delete_many({"subject": {"$in": ["s2"]}, "_id": {"$in": ids}}))
    got = both(stores, lambda db: list(db[name].find({}).sort("_id", 1)))
    assert got[0] == got[1]
    # A write changes what the probes must answer: a clean collection turns dirty.
    more = {**docs[20], "_id": ObjectId(), "at": DIRTY["array"]}
    both(stores, lambda db: db[name].insert_one(dict(more)))
    got = both(stores, lambda db: list(db[name].find({"community_id": community}).sort(PAGE)))
    assert got[0] == got[1]
    assert more["_id"] in [d["_id"] for d in got[0]]


def test_reads_by_id_lists_use_the_primary_key(stores):
    docs = lines(ObjectId(), 50)
    both(stores, lambda db: db.by_ids.insert_many([dict(d) for d in docs]))
    ids = [d["_id"] for d in docs[:3]]
    fast, plain = both(stores, lambda db: engine_plan(db.by_ids, {"_id": {"$in": ids}}, [("_id", 1)], 0))
    # Unpatched, every document's JSON was read, with an array test for each listed id.
    assert "json_each" in plain and "storage_key=?" not in plain
    assert "(db_name=? AND coll_name=? AND storage_key=?)" in fast and "json_each" not in fast, fast
    # Beside another condition (the access-log page naming its gates: models/places.py).
    query = {"community_id": docs[0]["community_id"], "_id": {"$in": ids}}
    assert "json_each" not in engine_plan(stores[0].x.by_ids, query, [("_id", 1)], 0)
    got = both(stores, lambda db: list(db.by_ids.find(query)))
    assert got[0] == got[1] and len(got[0]) == 3


def test_writes_add_nothing_to_the_change_outbox(stores):
    def count(path):
        with contextlib.closing(sqlite3.connect(path)) as db:
            return db.execute("SELECT count(*) FROM change_outbox_identities").fetchone()[0]
    fast, plain, path = stores
    before = count(path)
    for i in range(10):
        fast.x.written.insert_one({"_id": i})
        fast.x.written.find_one_and_update({"_id": i}, {"$inc": {"n": 1}})
        fast.x.written.update_many({}, {"$set": {"seen": True}})
        fast.x.written.delete_one({"_id": i - 5})
    assert count(path) == before  # nothing reads it: no change delivery over the wire


def test_the_probes_are_index_lookups_and_their_indexes_are_kept(stores):
    community = ObjectId()
    docs = lines(community, 30)
    def read(db):
        db.probed.insert_many(docs)
        return list(db.probed.find({"community_id": community}).sort(PAGE).limit(5))
    got = both(stores, read)
    assert got[0] == got[1]
    # The first probe of a field ran inside a reader's transaction: its index, created on
    # that connection, went with the reader's rollback (the unpatched launcher's array
    # probe). Created on a connection of its own, it is kept.
    with contextlib.closing(sqlite3.connect(stores[2])) as db:
        made = [sql for (sql,) in db.execute("SELECT sql FROM sqlite_master WHERE type = 'index'")
                if sql and "json_type(document, '$.community_id')" in sql]
        assert made, "no index for the community_id probe"
        for field in ("community_id", "at", "_id"):
            for tags in ((), PYTHON_SORTED_TYPES):
                plan = db.execute("EXPLAIN QUERY PLAN " + kind_probe_sql(field, len(tags)),
                                  ("x", "probed", *tags)).fetchall()
                assert any("USING INDEX xq_kind_" in row[-1] for row in plan), plan


def test_a_field_probed_only_inside_writes_gets_its_index(stores):
    # The outbox's claims: a findAndModify whose filter field no read ever names. Its probes
    # run inside the write, which holds the file, so the launcher's own connection cannot
    # create the index; without it every claim scanned the collection under the engine lock
    # (the full soak's stacks: inserts and readers waiting on it).
    fast, _, path = stores
    fast.x.claims.insert_many([{"_id": i, "claim_state": "ready"} for i in range(20)])
    for i in range(3):
        fast.x.claims.find_one_and_update({"claim_state": "ready"}, {"$set": {"claim_state": "taken"}})
    with contextlib.closing(sqlite3.connect(path)) as db:
        made = [sql for (sql,) in db.execute("SELECT sql FROM sqlite_master WHERE type = 'index'")
                if sql and "json_type(document, '$.claim_state')" in sql]
    assert made, "the claims' filter field has no index"


@pytest.mark.parametrize("patched", [True, False])
def test_reads_reuse_their_connections_and_see_every_write(tmp_path, monkeypatch, patched):
    # In this process, to count its connections: the launcher's engine, on a real file.
    if patched:
        for owner, name, replacement in speedup_patches():
            monkeypatch.setattr(owner, name, replacement)
    engine = WireSQLiteEngine(str(tmp_path / "mongo.sqlite3"))
    community = ObjectId()
    with EcoClient(engine=engine) as client:
        reread = client.x.reread
        reread.insert_one({"community_id": community, "n": 0})
        assert len(reread.find({"community_id": community}).to_list()) == 1
        opened, connect = [], sqlite3.connect
        monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: opened.append(a) or connect(*a, **k))
        for i in range(1, 30):  # each find of more than one document has a reader of its own
            reread.insert_one({"community_id": community, "n": i})
            seen = [d["n"] for d in reread.find({"community_id": community}).sort("n", 1)]
            assert seen == list(range(i + 1))  # a kept reader's snapshot ended with its read
    # Unpatched, each reader opened a connection (and parsed the schema) for its read.
    assert len(opened) == (0 if patched else 29)


@pytest.mark.parametrize("patched", [True, False])
def test_decoding_a_document_asks_no_signature(tmp_path, monkeypatch, patched):
    if patched:
        for owner, name, replacement in speedup_patches():
            monkeypatch.setattr(owner, name, replacement)
    with EcoClient(engine=WireSQLiteEngine(str(tmp_path / "mongo.sqlite3"))) as client:
        docs = lines(ObjectId(), 20, price=Decimal128("1.10"))  # tagged values: decoded
        client.x.decoded.insert_many(docs)
        client.x.decoded.find_one({"_id": docs[0]["_id"]})
        asked, signature = [], inspect.signature
        monkeypatch.setattr(inspect, "signature", lambda f, **k: asked.append(f) or signature(f, **k))
        for doc in docs:
            assert client.x.decoded.find_one({"_id": doc["_id"]})["price"] == Decimal128("1.10")
        got = client.x.decoded.find({"community_id": docs[0]["community_id"]}).to_list()
        assert [d["_id"] for d in got] == [d["_id"] for d in docs]
    assert len(asked) == (0 if patched else 40)  # unpatched: one per document decoded


def test_acknowledged_writes_survive_kill_9(tmp_path):
    path = tmp_path / "mongo.sqlite3"
    community = ObjectId()
    with start_mongo(path) as mongo:
        with MongoClient(mongo.url) as client:
            client.x.log.create_indexes(INDEXES["access_log"])
            for doc in lines(community, 200):
                client.x.log.insert_one(doc)
                if doc["at"].second % 10 == 0:  # reads beside, as the app makes them
                    list(client.x.log.find({"community_id": community}).sort(PAGE).limit(21))
        os.kill(mongo.process.pid, signal.SIGKILL)
        mongo.process.wait()
    with start_mongo(path) as mongo, MongoClient(mongo.url) as client:
        assert client.x.log.count_documents({"community_id": community}) == 200
