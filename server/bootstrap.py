"""Create the company's first admin account (a platform admin: an admin in every community).

    python -m server bootstrap --username boss --name "Wang Li" --password-file pw.txt
    python -m server bootstrap                    # asks for what is missing, password unechoed

The username may also come from XIAOQU_ADMIN_USERNAME and the name from
XIAOQU_ADMIN_NAME. The password is typed (not echoed, asked twice) or read from
the first line of --password-file (`-` reads standard input); it is never
printed or logged. Runs once: when a platform admin exists it refuses (exit
status 1) unless --add-another is given. Uses the server's settings
(MONGODB_URI, MONGODB_DB, REDIS_URL; outside production, the embedded stores
under XIAOQU_DATA_DIR for those not given, for trying it). Then sign in with
POST /api/auth/staff and create communities (docs/operations.md).
"""

import argparse
import asyncio
import contextlib
import getpass
import os
import sys
from pathlib import Path

from models.common import Clock
from models.errors import DomainError
from models.people import PASSWORD_MIN_LENGTH, StaffManager
from server.app import ensure_indexes
from server.embedded import start_missing_stores
from server.settings import load_settings
from server.stores import connect_mongo, connect_redis

EXIT_REFUSED = 1
EXIT_UNUSABLE = 2


class Refused(Exception):
    """What the operator gave cannot be used; the message says why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--username", default=os.environ.get("XIAOQU_ADMIN_USERNAME"),
                        help="3-32 of a-z 0-9 _ . - (env XIAOQU_ADMIN_USERNAME)")
    parser.add_argument("--name", default=os.environ.get("XIAOQU_ADMIN_NAME"),
                        help="the person's name as staff see it (env XIAOQU_ADMIN_NAME)")
    parser.add_argument("--password-file", type=Path, metavar="FILE",
                        help="read the password from this file's first line (- for stdin)")
    parser.add_argument("--add-another", action="store_true",
                        help="create a further platform admin although one exists")


def run(args: argparse.Namespace) -> int:
    """The `bootstrap` command; returns the exit status."""
    settings = load_settings()
    try:
        username = args.username or _ask("Username: ")
        name = args.name or (_ask("Name: ", default=username) if sys.stdin.isatty() else username)
        with contextlib.ExitStack() as stack:
            settings = settings.model_copy(update=start_missing_stores(settings, stack))
            if not args.add_another:  # refuse before asking for a password
                asyncio.run(_on_staff(settings, _refuse_if_bootstrapped))
            password = _password(args.password_file)
            asyncio.run(_on_staff(settings, lambda staff: create_platform_admin(
                staff, username, name, password, args.add_another)))
    except Refused as exc:
        print(f"bootstrap: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except DomainError as exc:
        detail = "; ".join(f"{k}: {v}" for k, v in (exc.fields or {}).items())
        print(f"bootstrap: {exc.message}" + (f" ({detail})" if detail else ""), file=sys.stderr)
        return EXIT_UNUSABLE
    print(f"platform admin {username!r} created; sign in at /admin or with POST /api/auth/staff")
    return 0


async def create_first_admin(settings, username: str, name: str, password: str,
                             add_another: bool = False) -> dict:
    """What the command does, for callers with the values at hand (the demo's seeding)."""
    return await _on_staff(settings, lambda staff: create_platform_admin(
        staff, username, name, password, add_another))


async def create_platform_admin(staff: StaffManager, username: str, name: str, password: str,
                                add_another: bool) -> dict:
    if not add_another:
        await _refuse_if_bootstrapped(staff)
    return await staff.create(username, password, name, {}, platform_admin=True)


async def _refuse_if_bootstrapped(staff: StaffManager) -> None:
    if existing := await staff.platform_admins():
        names = ", ".join(sorted(a["username"] for a in existing))
        raise Refused(f"already bootstrapped: platform admin {names} exists. Sign in as them "
                      "to create accounts, or pass --add-another to create one more.")


async def _on_staff(settings, action):
    """Run `action(staff manager)` on the stores, the staff indexes in place."""
    mongo = connect_mongo(settings.mongodb_uri)
    redis = connect_redis(settings.redis_url)
    try:
        db = mongo[settings.mongodb_db]
        await ensure_indexes(db, ("people",))
        return await action(StaffManager(db, redis, Clock()))
    finally:
        await redis.aclose()
        await mongo.close()


def _ask(prompt: str, default: str | None = None) -> str:
    if not sys.stdin.isatty():
        raise Refused(f"{prompt.strip(': ').lower()} not given (use the flags without a terminal)")
    return input(prompt).strip() or default or _ask(prompt)


def _password(path: Path | None) -> str:
    if path is not None:
        try:
            text = sys.stdin.read() if str(path) == "-" else path.read_text()
        except OSError as exc:
            raise Refused(f"cannot read {path}: {exc.strerror}") from None
        password = text.splitlines()[0] if text else ""
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != password:
            raise Refused("the passwords differ")
    else:
        raise Refused("no terminal to type the password: give --password-file")
    if len(password) < PASSWORD_MIN_LENGTH:
        raise Refused(f"the password must have at least {PASSWORD_MIN_LENGTH} characters")
    return password
