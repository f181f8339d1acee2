"""The embedded MongoDB-protocol server for the demo and the test suite.

No `mongod` can be installed on our machines, so `make run` and `make test`
start mongoeco's wire server as a separate process and reach it over TCP with
the same `AsyncMongoClient` code that talks to a real MongoDB in production.

    python -m server.mongo_wire --port 0 --db memory      # tests
    python -m server.mongo_wire --port 0 --db var/mongo.sqlite3

Prints `READY <port>` on its first stdout line once it accepts connections.

mongoeco 4.11.0 re-reads the whole collection on every single-document insert
to look for a duplicate `_id` (a unique index on `_id` already guarantees that)
and, on SQLite, scans the table per insert to learn whether an indexed field is
ever an array. The two patches below remove those scans; they hook private
methods, which is why setup.cfg pins mongoeco exactly.
"""

import argparse
import asyncio
import dataclasses
import faulthandler
import functools
import signal
import sqlite3

from mongoeco.engines.memory import MemoryEngine
from mongoeco.engines.sqlite import SQLiteEngine
from mongoeco.engines.sqlite_query import json_path_for_field
from mongoeco.wire.proxy import AsyncMongoEcoProxyServer


def _without_payload_scan(method):
    @functools.wraps(method)
    def checked(*args, **kwargs):
        kwargs["scan_payload_id"] = False
        return method(*args, **kwargs)
    return checked


def _indexed_array_probe(method):
    """Back the "is this field an array anywhere" probe with an expression index."""
    indexed: set[str] = set()

    @functools.wraps(method)
    def probe(self, db_name, coll_name, field):
        if field not in indexed:
            path = json_path_for_field(field).replace("'", "''")
            name = "xq_type_" + "".join(c if c.isalnum() else "_" for c in field)
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


class WireSQLiteEngine(SQLiteEngine):
    """SQLiteEngine without its change-stream outbox delivery, which nothing reaches over
    the wire. Delivered, every write ran five commits and a thread start on a second SQLite
    connection, synchronously on the event loop; under a busy writer that connection and
    the main one wait on each other's write lock (busy handler, 5 s per try) while
    holding the engine lock or the loop: `ping` answers, queries time out, and SIGTERM waits
    behind them. docs/embedded-mongo.md has the details."""

    capabilities = dataclasses.replace(SQLiteEngine.capabilities, change_delivery="none")


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
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.db))


if __name__ == "__main__":
    main()
