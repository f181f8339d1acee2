"""Rotate GATE_SECRET_KEY: re-seal every bridge key and pass-signing key under the new secret.

    OLD_GATE_SECRET_KEY=<current secret> GATE_SECRET_KEY=<new secret> python -m scripts.reseal_keys

Run with the servers stopped (they hold the old secret), then start them with the new
one (docs/operations.md, "Rotating GATE_SECRET_KEY"). Safe to run again after an
interruption: keys already sealed under the new secret are left alone. Uses the
server's settings (MONGODB_URI, REDIS_URL).
"""

import asyncio
import os
import sys

from cryptography.exceptions import InvalidTag

from models.key_box import KeyBox
from server.app import XiaoquApp
from server.settings import settings_for_tools
from server.stores import connect_mongo, connect_redis


async def run(settings, old_secret: str) -> str:
    app = XiaoquApp(settings, connect_mongo(settings.mongodb_uri), connect_redis(settings.redis_url))
    try:
        old = KeyBox(old_secret)
        await app.passes.seal_raw_keys()
        bridges = await app.bridges.reseal(old)
        passes = await app.passes.reseal(old)
        return f"re-sealed {bridges} bridge key(s) and {passes} pass signing key(s)"
    finally:
        await app.close()


def main() -> int:
    old_secret = os.environ.get("OLD_GATE_SECRET_KEY")
    if not old_secret:
        print("set OLD_GATE_SECRET_KEY to the secret the keys are sealed with now", file=sys.stderr)
        return 2
    try:
        print(asyncio.run(run(settings_for_tools(), old_secret)))
    except InvalidTag:
        print("a key opens with neither secret: check OLD_GATE_SECRET_KEY", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
