"""Pass signing keys, for the operator: list them, add a new one, retire an old one.

    python -m scripts.pass_keys list
    python -m scripts.pass_keys rotate          # new codes are signed with a new key
    python -m scripts.pass_keys retire KEY_ID   # once that key's codes have expired
    python -m scripts.pass_keys retire KEY_ID --force   # even while printed passes use it

Keys belong to the deployment (docs/passes.md §Keys). Rotating keeps older keys
verifying, so codes in flight stay good; bridges get the new public key with
their next config push. Uses the server's settings (MONGODB_URI, REDIS_URL).
"""

import argparse
import asyncio
import sys

from models.errors import DomainError
from server.app import XiaoquApp
from server.settings import settings_for_tools
from server.stores import connect_mongo, connect_redis


async def run(settings, action: str, key_id: int | None = None, force: bool = False) -> str:
    app = XiaoquApp(settings, connect_mongo(settings.mongodb_uri), connect_redis(settings.redis_url))
    try:
        await app.startup()  # seals keys an older version stored raw
        if action == "rotate":
            await app.passes.rotate_key()
        elif action == "retire":
            await app.passes.retire_key(key_id, force)
        signing = (await app.passes.signing_key()).key_id
        return "\n".join(f"key {key_id}{' (signing)' if int(key_id) == signing else ''}: {public}"
                         for key_id, public in (await app.passes.published_keys()).items())
    finally:
        await app.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.pass_keys",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("list", "rotate", "retire"))
    parser.add_argument("key_id", type=int, nargs="?", help="the key to retire")
    parser.add_argument("--force", action="store_true",
                        help="retire even while active passes depend on the key (they stop working)")
    args = parser.parse_args(argv)
    if (args.action == "retire") != (args.key_id is not None):
        parser.error("retire needs a KEY_ID, and only retire takes one")
    settings = settings_for_tools()
    try:
        print(asyncio.run(run(settings, args.action, args.key_id, args.force)))
    except DomainError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
