"""Import rooms and residents from an .xlsx or .csv file into a community.

    python -m scripts.import_residents --community CODE rooms.xlsx

Settings come from the environment like the server's (MONGODB_URI, REDIS_URL,
...). Progress goes to stderr on one updating line; the report to stdout
(`--json` for the raw report). Exit status: 0 all rows imported, 1 some rows
refused (see the report), 2 the file or the command was unusable.
The column format is in docs/import.md.
"""

import argparse
import asyncio
import getpass
import importlib
import json
import sys
from pathlib import Path

from models.bindings import BindingManager
from models.common import Clock
from models.errors import DomainError
from models.importer import Importer
from models.key_cache import KeyCache
from models.people import ResidentManager
from models.places import PlaceManager
from server.settings import settings_for_tools
from server.stores import connect_mongo, connect_redis

# the collections an import writes; their indexes make re-imports idempotent
INDEXED_MODULES = ("places", "people", "bindings", "importer")


async def show_progress(done: int, total: int) -> None:
    end = "\n" if done == total else ""
    print(f"\rimporting: {done}/{total} rows", end=end, file=sys.stderr, flush=True)


def format_report(report: dict, path: str) -> str:
    lines = [f"{path}: {report['rows']} rows: {report['created']} created, "
             f"{report['updated']} updated, {report['unchanged']} unchanged, "
             f"{report['failed']} refused"]
    lines += [f"  {kind}: {c['created']} created, {c['updated']} updated"
              for kind, c in report["details"].items()]
    lines += [f"  row {e['row']}, {e['column']} ({e['header']}): {e['problem']}"
              for e in report["errors"]]
    return "\n".join(lines)


async def prepared_importer(db, redis) -> Importer:
    """An Importer without the whole server, on collections whose indexes exist."""
    for name in INDEXED_MODULES:
        for collection, indexes in importlib.import_module(f"models.{name}").INDEXES.items():
            await db[collection].create_indexes(indexes)
    clock = Clock()
    places = PlaceManager(db, clock)
    return Importer(db, redis, clock, places, ResidentManager(db, clock),
                    BindingManager(db, redis, clock, places, KeyCache(redis)))


async def run_import(settings, community_code: str, data: bytes, fmt: str | None) -> dict:
    mongo = connect_mongo(settings.mongodb_uri)
    redis = connect_redis(settings.redis_url)
    try:
        db = mongo[settings.mongodb_db]
        importer = await prepared_importer(db, redis)
        community = await db.communities.find_one({"code": community_code})
        if community is None:
            print(f"no community with code {community_code!r}", file=sys.stderr)
            raise SystemExit(2)
        print(f"reading {len(data)} bytes…", file=sys.stderr, flush=True)
        return await importer.run(str(community["_id"]), data, fmt,
                                  by=f"cli:{getpass.getuser()}", progress=show_progress)
    finally:
        await redis.aclose(close_connection_pool=True)
        await mongo.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--community", required=True, help="the community's code")
    parser.add_argument("--format", choices=("xlsx", "csv"), help="default: from the content")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    settings = settings_for_tools()
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        print(f"cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(run_import(settings, args.community, data, args.format))
    except DomainError as exc:
        detail = "; ".join(f"{k}: {v}" for k, v in (exc.fields or {}).items())
        print(f"{args.file}: {exc.message}" + (f" ({detail})" if detail else ""), file=sys.stderr)
        return 2
    print(json.dumps(report, ensure_ascii=False, indent=1) if args.json
          else format_report(report, str(args.file)))
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
