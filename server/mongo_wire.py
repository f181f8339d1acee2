"""The embedded MongoDB-protocol server for the demo and the test suite.

No `mongod` can be installed on our machines, so `make run` and `make test`
start mongoeco's wire server as a separate process and reach it over TCP with
the same `AsyncMongoClient` code that talks to a real MongoDB in production.

    python -m server.mongo_wire --port 0 --db memory      # tests
    python -m server.mongo_wire --port 0 --db var/mongo.sqlite3
    python -m server.mongo_wire --port 0 --db FILE --no-speedups  # scripts/bench_store.py's baseline

Prints `READY <port>` on its first stdout line once it accepts connections.

mongoeco 4.11.0 re-reads the whole collection on every single-document insert
to look for a duplicate `_id` (a unique index on `_id` already guarantees that)
and, on SQLite, scans the table per insert to learn whether an indexed field is
ever an array. The two patches below remove those scans; they hook private
methods, which is why setup.cfg pins mongoeco exactly.

`speed_up` (on unless --no-speedups) patches the SQLite engine where most of its CPU
per operation went (docs/embedded-mongo.md, "CPU per operation"): per-query "does any
document of the collection hold such a value" probes that scanned the whole collection
after every write, a sorted page sorted in a temporary B-tree because no SQLite index
matched mongoeco's ORDER BY, `$in` reading every document, a new SQLite connection (a
parse of the whole schema) for every read of more than one document, a change-outbox row
per write that nothing reads, and an `inspect.signature` per decoded document.
"""

import argparse
import asyncio
import contextlib
import dataclasses
import faulthandler
import functools
import hashlib
import inspect
import signal
import sqlite3
import threading

from mongoeco.core.query_plan import AndCondition, EqualsCondition, InCondition
from mongoeco.engines import sqlite as sqlite_engine
from mongoeco.engines._sqlite_connection import SQLiteConnection
from mongoeco.engines._sqlite_reader import SQLiteScanReader
from mongoeco.engines.memory import MemoryEngine
from mongoeco.engines.sqlite import SQLiteEngine
from mongoeco.engines.sqlite_query import (
    _is_codec_aware_value,
    _translate_equals_scalar_only,
    json_path_for_field,
    sort_type_expression_sql,
    type_expression_sql,
    value_expression_sql,
)
from mongoeco.types import ObjectId  # mongoeco's own, which its query plans hold
from mongoeco.wire.proxy import AsyncMongoEcoProxyServer


def _without_payload_scan(method):
    @functools.wraps(method)
    def checked(*args, **kwargs):
        kwargs["scan_payload_id"] = False
        return method(*args, **kwargs)
    return checked


def _array_index_name(field: str) -> str:
    return "xq_type_" + "".join(c if c.isalnum() else "_" for c in field)


def _indexed_array_probe(method):
    """Back the "is this field an array anywhere" probe with an expression index."""
    indexed: set[str] = set()

    @functools.wraps(method)
    def probe(self, db_name, coll_name, field):
        if field not in indexed:
            path = json_path_for_field(field).replace("'", "''")
            name = _array_index_name(field)
            try:
                self._require_connection().execute(
                    f"CREATE INDEX IF NOT EXISTS {name} ON documents "
                    f"(db_name, coll_name, json_type(document, '{path}'))")
            except sqlite3.Error:
                pass  # the probe still answers correctly, only slower
            indexed.add(field)
        return method(self, db_name, coll_name, field)
    return probe


MemoryEngine._ensure_unique_indexes = _without_payload_scan(MemoryEngine._ensure_unique_indexes)
SQLiteEngine._validate_document_against_unique_indexes = _without_payload_scan(
    SQLiteEngine._validate_document_against_unique_indexes)
SQLiteEngine._field_is_top_level_array_in_collection = _indexed_array_probe(
    SQLiteEngine._field_is_top_level_array_in_collection)


# -- speed_up: the SQLite engine's read path ------------------------------------------------

READERS_KEPT = 8  # idle reader connections kept open (mongoeco runs up to 8 engine threads)
# A sort field holding any of these (an array, a plain object, a tagged type named here)
# makes mongoeco sort in Python rather than in SQL (`sort_requires_python`).
PYTHON_SORTED_TYPES = ("", "int64", "decimal", "decimal128", "decimal128_public", "bytes",
                       "undefined")


def _sql_path(field: str) -> str:
    return "'" + json_path_for_field(field).replace("'", "''") + "'"


def _index_name(prefix: str, key: str) -> str:
    readable = "".join(c if c.isalnum() else "_" for c in key)[:40]
    return f"{prefix}_{readable}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def _ensure_index(engine, name: str, columns: str, drop: str | None = None) -> None:
    """CREATE INDEX on a connection of our own that never waits for the file: run on the
    caller's connection inside its read transaction, the reader's closing rollback lost the
    index (the array probe's, on every first read), and a wait for the write lock could
    stall. A probe made inside a write (an update's filter) finds the file held by that
    very write: the index then goes into the write's transaction, on the engine's own
    connection, which holds the lock; kept only if the write commits, so it is counted
    made once our connection sees it."""
    state = engine.__dict__.setdefault("_xq_schema", {"lock": threading.Lock(), "made": set()})
    if name in state["made"] or engine._path == ":memory:":
        return
    create = f"CREATE INDEX IF NOT EXISTS {name} ON documents ({columns})"
    with state["lock"]:
        if "conn" not in state:
            state["conn"] = sqlite3.connect(engine._path, timeout=0, isolation_level=None,
                                            check_same_thread=False)
        try:
            state["conn"].execute(create)
            if drop:
                state["conn"].execute(f"DROP INDEX IF EXISTS {drop}")
            state["made"].add(name)
            return
        except sqlite3.OperationalError:
            pass
    conn = engine._require_connection()
    if conn is engine._connection and conn.in_transaction:
        (wait,) = conn.execute("PRAGMA busy_timeout").fetchone()
        conn.execute("PRAGMA busy_timeout = 0")  # a transaction without the lock: next time
        try:
            with contextlib.suppress(sqlite3.OperationalError):
                conn.execute(create)
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(wait)}")


def _kind_index(engine, field: str) -> None:
    """(JSON type, mongoeco's tag) of `field`: what every "does any document hold such a
    value here" probe asks, so each is an index lookup instead of a collection scan.
    Supersedes the array probe's json_type-only index."""
    _ensure_index(engine, _index_name("xq_kind", field),
                  f"db_name, coll_name, json_type(document, {_sql_path(field)}), "
                  f"{type_expression_sql(field)}", drop=_array_index_name(field))


def _kind_indexed_array_probe(method):
    @functools.wraps(method)
    def probe(self, db_name, coll_name, field):
        _kind_index(self, field)
        return method(self, db_name, coll_name, field)  # json_type(…) = 'array': the prefix
    return probe


def kind_probe_sql(field: str, tags: int = 0) -> str:
    """Any document of a collection whose `field` is an array (no `tags`), or a tagged value
    of one of `tags` tags (bound after db_name and coll_name): a lookup in the kind index."""
    path = _sql_path(field)
    where = (f"json_type(document, {path}) = 'array'" if not tags else
             f"json_type(document, {path}) = 'object' AND {type_expression_sql(field)} "
             f"IN ({', '.join('?' * tags)})")
    return f"SELECT 1 FROM documents WHERE db_name = ? AND coll_name = ? AND {where} LIMIT 1"


def _indexed_tagged_type_probe(self, db_name, coll_name, field, value_type):
    """mongoeco's probe binds the JSON path as a parameter, which no index can serve, and
    its result is forgotten at every write to the collection: the same question with the
    path in the SQL (a tagged value is always an object)."""
    key = (db_name, coll_name, f"tagged_type:{field}:{value_type}")
    cache = self._collection_features_cache
    if key not in cache:
        _kind_index(self, field)
        cache[key] = self._require_connection().execute(
            kind_probe_sql(field, 1), (db_name, coll_name, value_type)).fetchone() is not None
    return cache[key]


def _may_sort_in_python(engine, db_name: str, coll_name: str, field: str) -> bool:
    """Whether any document of the collection holds in `field` a value that mongoeco sorts
    in Python: two lookups in the kind index."""
    if engine._field_traverses_array_in_collection(db_name, coll_name, field):
        return True
    _kind_index(engine, field)
    conn = engine._require_connection()
    return any(conn.execute(kind_probe_sql(field, len(tags)), (db_name, coll_name, *tags))
               .fetchone() for tags in ((), PYTHON_SORTED_TYPES))


def _collection_wide_sort_probe(method):
    """mongoeco looks for such values among the query's matches, a scan of them per sort
    field per query; none in the whole collection (the usual answer) means none among
    them."""
    @functools.wraps(method)
    def sort_requires_python(self, db_name, coll_name, plan, sort):
        if sort and not any(_may_sort_in_python(self, db_name, coll_name, field)
                            for field, _ in sort):
            return self._plan_has_array_traversing_paths(db_name, coll_name, plan)
        return method(self, db_name, coll_name, plan, sort)
    return sort_requires_python


def _equality_columns(field: str, value) -> str | None:
    """The index columns matching the SQL mongoeco writes for `field` = `value`."""
    if _is_codec_aware_value(value):  # ObjectId, datetime…: (tag, value)
        return f"{type_expression_sql(field)}, {value_expression_sql(field)}"
    if type(value) is str:
        path = _sql_path(field)
        return f"json_type(document, {path}), json_extract(document, {path})"
    return None


def _sort_index_for(engine, db_name: str, coll_name: str, semantics) -> None:
    """A filter pinning the leading fields of a declared compound index by equality, sorted
    by the index's next ones (the access-log page: community, newest first), gets a SQLite
    index whose columns are mongoeco's WHERE and ORDER BY expressions, so SQLite walks it
    and stops at the limit. mongoeco's own physical index stores the tag where the ORDER BY
    has a sort-bucket CASE, so SQLite filtered by it and sorted every match in a temporary
    B-tree."""
    sort, plan = semantics.sort, semantics.query_plan
    if not sort or any(type(direction) is not int for _, direction in sort):
        return  # no sort, or one by text score
    clauses = plan.clauses if isinstance(plan, AndCondition) else (plan,)
    equal = {c.field: c.value for c in clauses if isinstance(c, EqualsCondition)}
    sort = [(field, direction) for field, direction in sort]
    flipped = [(field, -direction) for field, direction in sort]
    for index in engine._load_indexes(db_name, coll_name):
        key = [(field, direction) for field, direction in index.key]
        lead = 0  # the index's leading fields the filter pins (others it filters by after)
        while lead < len(key) and key[lead][0] in equal:
            lead += 1
        rest = key[lead:]
        if rest and rest in (sort[:len(rest)], flipped[:len(rest)]):
            pinned = sorted(field for field, _ in key[:lead])
            break
    else:
        return
    columns = [_equality_columns(field, equal[field]) for field in pinned]
    if None in columns:
        return
    order = " ".join(f"{field}{direction}" for field, direction in sort)
    for field, direction in sort:
        way = "DESC" if direction < 0 else "ASC"
        columns.append(f"{sort_type_expression_sql(field)} {way}, "
                       f"{value_expression_sql(field)} {way}")
    _ensure_index(engine, _index_name("xq_sort", f"{','.join(pinned)}|{order}"),
                  ", ".join(["db_name, coll_name", *columns]))


def _sort_indexed(method):
    @functools.wraps(method)
    def compile_plan(self, db_name, coll_name, semantics, **kwargs):
        _sort_index_for(self, db_name, coll_name, semantics)
        return method(self, db_name, coll_name, semantics, **kwargs)
    return compile_plan


def _scalar_in(method):
    """`field: {$in: [...]}` of ids or strings on a field no document holds as an array: the
    equalities alone, which SQLite answers from an index (`_id`: its primary key, the
    storage key; another field: mongoeco's index on it). mongoeco wrote every value's
    array branch too (json_each per document), so each `$in` read the whole collection."""
    @functools.wraps(method)
    def translate(self, db_name, coll_name, plan):
        if (isinstance(plan, InCondition) and plan.values and "." not in plan.field
                and all(type(v) in (ObjectId, str) for v in plan.values)
                and self._find_multikey_index(db_name, coll_name, plan.field) is None):
            if plan.field == "_id":  # never an array; its storage key is its identity
                keys = [self._storage_key(v) for v in plan.values]
                return f"documents.storage_key IN ({', '.join('?' * len(keys))})", keys
            if not self._field_is_top_level_array_in_collection(db_name, coll_name, plan.field):
                parts = [_translate_equals_scalar_only(plan.field, v) for v in plan.values]
                return (" OR ".join(f"({sql})" for sql, _ in parts),
                        [param for _, params in parts for param in params])
        return method(self, db_name, coll_name, plan)
    return translate


class _KeptReader(SQLiteConnection):
    """A reader's connection that goes back to its engine's pool when the reader closes it:
    mongoeco opened a new one for every read of more than one document, and a new
    connection parses the whole schema (≈ 1.7 ms of CPU with the app's indexes)."""

    pool: list["_KeptReader"]

    def close(self) -> None:
        if len(self.pool) >= READERS_KEPT:
            super().close()
            return
        self.rollback()  # the reader's snapshot ends here, as it would on close
        self.pool.append(self)


_opening_reader = threading.local()


def _kept_readers(method):
    @functools.wraps(method)
    def open_reader(self):
        _opening_reader.active = True
        try:
            return method(self)
        finally:
            _opening_reader.active = False
    return open_reader


class WireSQLiteEngine(SQLiteEngine):
    """SQLiteEngine without its change-stream outbox delivery, which nothing reaches over
    the wire. Delivered, every write ran five commits and a thread start on a second SQLite
    connection, synchronously on the event loop; under a busy writer that connection and
    the main one wait on each other's write lock (busy handler, 5 s per try) while
    holding the engine lock or the loop: `ping` answers, queries time out, and SIGTERM waits
    behind them. docs/embedded-mongo.md has the details."""

    capabilities = dataclasses.replace(SQLiteEngine.capabilities, change_delivery="none")
    keep_readers = False  # speed_up: readers' connections from a pool (_KeptReader)

    def _create_sqlite_connection(self) -> sqlite3.Connection:
        if not (self.keep_readers and getattr(_opening_reader, "active", False)):
            return super()._create_sqlite_connection()
        pool = self.__dict__.setdefault("_xq_readers", [])
        try:
            return pool.pop()
        except IndexError:
            reader = sqlite3.connect(self._path, check_same_thread=False, factory=_KeptReader)
            reader.pool = pool
            return reader

    def _disconnect_sync(self) -> None:
        super()._disconnect_sync()
        for reader in self.__dict__.pop("_xq_readers", []):
            SQLiteConnection.close(reader)
        schema = self.__dict__.pop("_xq_schema", {})
        if "conn" in schema:
            schema["conn"].close()


@functools.cache
def _takes_wrappers(decode) -> bool:
    try:
        return "preserve_bson_wrappers" in inspect.signature(decode).parameters
    except (TypeError, ValueError):
        return False


def _decode_codec_payload(self, payload, *, preserve_bson_wrappers):
    """mongoeco asked inspect.signature, for every document it decoded, whether its codec's
    decode takes `preserve_bson_wrappers`: an answer fixed per codec, found once."""
    if _takes_wrappers(self._codec.decode):
        return self._codec.decode(payload, preserve_bson_wrappers=preserve_bson_wrappers)
    return self._codec.decode(payload)


def _no_outbox(conn, **change) -> None:
    """The change outbox row each write adds inside its transaction (a serialized copy of
    the document, its hash, and a compaction: about ten statements) is read by change
    delivery alone, which WireSQLiteEngine does not do: no sequence is asked of a write
    (its change_delivery is "none"), so none is made."""
    return None


def speedup_patches() -> list[tuple[type, str, object]]:
    """(class, attribute, replacement) for each of speed_up's patches."""
    return [
        (SQLiteEngine, "_field_is_top_level_array_in_collection", _kind_indexed_array_probe(
            SQLiteEngine._field_is_top_level_array_in_collection.__wrapped__)),
        (SQLiteEngine, "_field_contains_tagged_value_type_in_collection",
         _indexed_tagged_type_probe),
        (SQLiteEngine, "_sort_requires_python",
         _collection_wide_sort_probe(SQLiteEngine._sort_requires_python)),
        (SQLiteEngine, "_compile_read_execution_plan",
         _sort_indexed(SQLiteEngine._compile_read_execution_plan)),
        (SQLiteScanReader, "_open", _kept_readers(SQLiteScanReader._open)),
        (WireSQLiteEngine, "keep_readers", True),
        (sqlite_engine, "_sqlite_append_change", _no_outbox),
        (SQLiteEngine, "_translate_query_plan_with_multikey",
         _scalar_in(SQLiteEngine._translate_query_plan_with_multikey)),
        (SQLiteEngine, "_decode_codec_payload", _decode_codec_payload),
    ]


def speed_up() -> None:
    for owner, name, patched in speedup_patches():
        setattr(owner, name, patched)


async def serve(port: int, db: str) -> None:
    engine = (MemoryEngine(aggregation_materialization_limit=None) if db == "memory"
              else WireSQLiteEngine(db, aggregation_materialization_limit=None))
    async with AsyncMongoEcoProxyServer(engine=engine, host="127.0.0.1", port=port) as server:
        print(f"READY {server.address.port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def main() -> None:
    # Every thread's stack on stderr: on SIGUSR1 (it goes on), on SIGABRT and crashes (it ends).
    faulthandler.enable(all_threads=True)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--db", default="memory", help='"memory" or a SQLite file path')
    parser.add_argument("--no-speedups", action="store_true",
                        help="without speed_up's read-path patches (a baseline to measure)")
    args = parser.parse_args()
    if not args.no_speedups:
        speed_up()
    asyncio.run(serve(args.port, args.db))


if __name__ == "__main__":
    main()
