"""The drills' harness: real processes on free ports, a seeded community, checks, a report.

A drill is `async def drill(d: Drill)` run by `main(drill)` at the bottom of its module:

    async def drill(d):
        mongo, redis = await d.mongo(), await d.redis()
        server = await d.server(mongo, redis)
        site = await d.seed(gates=4)
        bridges = await d.simulated_bridges(site.creds, server.gate_port)
        ...
        await server.kill9(); await server.start()          # same ports, same stores
        d.check("every gate back online", await d.gates_online(server, site), "...")

    if __name__ == "__main__":
        main(drill)

Every process runs in its own session (kill -9 takes its children too), with its
stdout and stderr kept as lines (`wait_output`, `tracebacks`) and in files under
the drill's directory (printed at the end when a check failed). Restarting a
process runs the same command: the same ports, data files and secrets. `d.short`
is set by `--short`, the seconds-long version the test suite runs.
"""

import argparse
import asyncio
import contextlib
import inspect
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import tornado.httpclient

from server.embedded import free_port, python_module, redis_server_binary, wait_for_redis

START_TIMEOUT = 60.0  # a loaded 2-core machine starts the server in seconds, not this


def rss_kb(pid: int) -> int:
    """Resident memory of a process (KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def wait_for_port(port: int, process: subprocess.Popen) -> None:
    """Until 127.0.0.1:`port` accepts a connection (DrillError if `process` exits first)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DrillError(f"{process.args[0]} exited with code {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    raise DrillError(f"nothing listens on port {port} after {START_TIMEOUT:.0f} s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class Process:
    """A child process that can be started, killed -9, stopped with a signal and started
    again with the same command. Its output is kept (`out`, `err`) and written to files."""

    def __init__(self, drill: "Drill", name: str, command: list[str], *, env: dict | None = None,
                 ready: str | None = None, ready_check=None, stdin: bool = False):
        self.drill, self.name, self.command = drill, name, command
        self.env = {**os.environ, **(env or {})}
        self.ready, self.ready_check, self.stdin = ready, ready_check, stdin
        self.proc: subprocess.Popen | None = None
        self.out: list[str] = []
        self.err: list[str] = []
        self.changed = threading.Condition()
        self.starts = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def start(self) -> "Process":
        """Start and wait until ready (the `ready` text on stdout, or `ready_check(self)`)."""
        self.starts += 1
        self.out, self.err = [], []
        files = [open(self.drill.dir / f"{self.name}.{s}", "a") for s in ("out", "err")]
        self.proc = subprocess.Popen(
            self.command, env=self.env, start_new_session=True, text=True, bufsize=1,
            stdin=subprocess.PIPE if self.stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for stream, lines, file in ((self.proc.stdout, self.out, files[0]),
                                    (self.proc.stderr, self.err, files[1])):
            file.write(f"--- start {self.starts}: {' '.join(self.command)}\n")
            threading.Thread(target=self._keep, args=(stream, lines, file), daemon=True).start()
        if self.ready is not None:
            await self.wait_output(self.ready, START_TIMEOUT)
        if self.ready_check is not None:
            await asyncio.to_thread(self.ready_check, self)
        return self

    def _keep(self, stream, lines: list[str], file) -> None:
        with file:
            for line in stream:
                file.write(line)
                file.flush()
                with self.changed:
                    lines.append(line)
                    self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def _find(self, text: str, stream: str) -> str | None:
        return next((line for line in (self.out if stream == "out" else self.err)
                     if text in line), None)

    async def wait_output(self, text: str, timeout: float = 30.0, stream: str = "out") -> str:
        """The first line containing `text` since the last start ("out" or "err"); raises
        DrillError if the process exits or `timeout` passes first."""
        def wait() -> str:
            deadline = time.monotonic() + timeout
            with self.changed:
                while (line := self._find(text, stream)) is None:
                    left = deadline - time.monotonic()
                    if left <= 0 or self.proc.poll() is not None:
                        raise DrillError(f"{self.name}: no {text!r} on std{stream} "
                                         f"(exit code {self.proc.poll()}); see {self.drill.dir}")
                    self.changed.wait(min(left, 0.5))
            return line
        return await asyncio.to_thread(wait)

    def tracebacks(self) -> int:
        """Tracebacks printed on stderr since the last start."""
        return sum("Traceback (most recent call last)" in line for line in self.err)

    def write(self, line: str) -> None:
        """A line to the process's standard input (the real bridge's stdin scanner)."""
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signum)

    async def kill9(self) -> None:
        """SIGKILL the process and everything it started."""
        self.signal_group(signal.SIGKILL)
        await asyncio.to_thread(self.proc.wait)

    async def stop(self, signum: int = signal.SIGTERM, timeout: float = 30.0) -> tuple[int, float]:
        """Send `signum` to the process (only; it stops its own children) and wait:
        (exit code, seconds it took). Killed -9 after `timeout` (exit code then negative)."""
        started = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signum)
        try:
            code = await asyncio.to_thread(self.proc.wait, timeout)
        except subprocess.TimeoutExpired:
            await self.kill9()
            code = self.proc.returncode
        return code, time.monotonic() - started

    async def close(self) -> None:
        if self.alive:
            await self.stop(timeout=10)
        self.signal_group(signal.SIGKILL)  # whatever it left behind in its session
        if self.proc is not None and self.proc.stdin:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()


class Store(Process):
    url: str


class Server(Process):
    http_port: int
    gate_port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


@dataclass
class Site:
    """The community a drill seeded: its gates, their bridges' credentials, an admin token."""
    community_id: str
    gates: list[dict]  # {"id", "code", "bridge_id"}
    creds: list[dict]  # {"bridge_id", "secret"} as provisioned
    token: str
    extra: dict = field(default_factory=dict)

    def api(self, base: str, path: str = "") -> str:
        return f"{base}/api/communities/{self.community_id}{path}"


class DrillError(Exception):
    """The drill could not go on (a process did not start, a wait ran out)."""


class Drill:
    def __init__(self, name: str, short: bool, directory: Path):
        self.name, self.short, self.dir = name, short, directory
        self.passed = self.failed = 0
        self.processes: list[Process] = []
        self.started = time.monotonic()
        self.secrets = {n: secrets.token_urlsafe(32) for n in ("JWT_SECRET", "GATE_SECRET_KEY")}
        self.db_name = f"drill_{name}"
        self._http: tornado.httpclient.AsyncHTTPClient | None = None
        self._mongo_url = self._redis_url = None

    # -- telling what happens ------------------------------------------------------------

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f}s] {text}", flush=True)

    def check(self, what: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        self.say(f"{'PASS' if ok else 'FAIL'} {what}" + (f" ({detail})" if detail else ""))
        return ok

    def report(self) -> int:
        print(f"{self.name}: {self.passed} passed, {self.failed} failed", flush=True)
        return 1 if self.failed or not self.passed else 0

    # -- processes -------------------------------------------------------------------------

    async def start(self, process: Process) -> Process:
        self.processes.append(process)
        return await process.start()

    async def mongo(self, name: str = "mongo", memory: bool = False) -> Store:
        """The embedded MongoDB-protocol server on a SQLite file (data survives kill -9),
        or in memory (faster; gone with the process)."""
        port = free_port()
        db = "memory" if memory else str(self.dir / f"{name}.sqlite3")
        store = Store(self, name, python_module("server.mongo_wire", "--port", str(port),
                                                "--db", db), ready="READY")
        store.url = f"mongodb://127.0.0.1:{port}/?directConnection=true"
        self._mongo_url = self._mongo_url or store.url
        return await self.start(store)

    async def redis(self, name: str = "redis", persistent: bool = True) -> Store:
        """redis-server; with `persistent`, an append-only file that survives kill -9."""
        port = free_port()
        workdir = self.dir / name
        workdir.mkdir(exist_ok=True)
        store = Store(self, name, [redis_server_binary(), "--port", str(port), "--bind",
                                   "127.0.0.1", "--dir", str(workdir), "--save", "",
                                   "--appendonly", "yes" if persistent else "no",
                                   "--appendfsync", "always" if persistent else "no"],
                      ready_check=lambda s: wait_for_redis(port, s.proc))
        store.url = f"redis://127.0.0.1:{port}/0"
        self._redis_url = self._redis_url or store.url
        return await self.start(store)

    def server_env(self, mongo: Store, redis: Store) -> dict[str, str]:
        """The settings every instance of the drill shares (stores, secrets)."""
        return {"MONGODB_URI": mongo.url, "REDIS_URL": redis.url, "MONGODB_DB": self.db_name,
                "XIAOQU_MODE": "demo", "ACCESS_TOKEN_SECONDS": "86400", **self.secrets}

    async def server(self, mongo: Store, redis: Store, name: str = "server",
                     args: tuple[str, ...] = (), **env: str) -> Server:
        """`python -m server` on the given stores, on free HTTP and gate ports (others again
        when a free port was taken before the server bound it)."""
        data = self.dir / name
        data.mkdir(exist_ok=True)
        for attempt in itertools.count():
            http_port, gate_port = free_port(), free_port()
            server = Server(self, name, python_module("server", *args), ready="xiaoqu is up",
                            env={**self.server_env(mongo, redis), "HTTP_PORT": str(http_port),
                                 "GATE_PORT": str(gate_port), "XIAOQU_DATA_DIR": str(data),
                                 **env})
            server.http_port, server.gate_port = http_port, gate_port
            try:
                return await self.start(server)
            except DrillError:
                self.processes.remove(server)
                if attempt == 2 or not any("Address already in use" in line
                                           for line in server.err):
                    raise

    async def simulated_bridges(self, creds: list[dict], gate_port: int, host: str = "127.0.0.1",
                                name: str = "bridges", events: int = 0,
                                rate: float = 1.0) -> Process:
        """scripts.simulate_bridges for these credentials, as one process; each bridge records
        `events` door events at `rate` a second (their SQLite files: `bridge_stores`)."""
        creds_file = self.dir / f"{name}.json"
        creds_file.write_text(json.dumps(creds))
        data = self.dir / name
        data.mkdir(exist_ok=True)
        return await self.start(Process(self, name, python_module(
            "scripts.simulate_bridges", "--creds", str(creds_file), "--count", str(len(creds)),
            "--host", host, "--port", str(gate_port), "--data-dir", str(data),
            "--events", str(events), "--rate", str(rate)),
            ready="simulating"))

    async def nginx(self, upstreams: list[int]) -> Process:
        """nginx on the shipped deploy/nginx/xiaoqu.conf in front of these HTTP ports:
        `.base` is its HTTPS address (a throwaway self-signed certificate)."""
        https, http = free_port(), free_port()
        directory = self.dir / "nginx"
        directory.mkdir(exist_ok=True)
        config = nginx_config(directory, upstreams, https, http)
        process = Process(self, "nginx", [NGINX, "-c", str(config), "-e",
                                          str(directory / "error.log"), "-g", "daemon off;"],
                          ready_check=lambda p: wait_for_port(https, p.proc))
        process.base = f"https://127.0.0.1:{https}"
        return await self.start(process)

    async def haproxy(self, hubs: list[int], apis: list[int]) -> Process:
        """HAProxy on the shipped deploy/haproxy/haproxy.cfg: `.gate_port` balances these
        gate hubs, `.base` (HTTPS) these HTTP ports."""
        gates, https = free_port(), free_port()
        directory = self.dir / "haproxy"
        directory.mkdir(exist_ok=True)
        config = haproxy_config(directory, hubs, apis, gates, https)
        process = Process(self, "haproxy", [HAPROXY, "-f", str(config), "-db"],
                          ready_check=lambda p: wait_for_port(gates, p.proc))
        process.gate_port, process.base = gates, f"https://127.0.0.1:{https}"
        return await self.start(process)

    def bridge_stores(self, creds: list[dict], name: str = "bridges") -> dict[str, Path]:
        """The SQLite file of each simulated bridge of `simulated_bridges(..., name)`."""
        return {c["bridge_id"]: self.dir / name / f"{c['bridge_id']}.sqlite" for c in creds}

    @staticmethod
    def bridge_buffers(stores: dict[str, Path]) -> dict[str, tuple[int, int, int]]:
        """Each bridge's (last seq issued, last seq acknowledged, events buffered), read from
        its SQLite file (a reader beside the running bridge)."""
        found = {}
        for bridge_id, path in stores.items():
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                issued = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'"
                                    ).fetchone()
                acked = db.execute("SELECT value FROM meta WHERE key = 'acked_seq'").fetchone()
                buffered = db.execute("SELECT count(*) FROM events").fetchone()[0]
            found[bridge_id] = (issued[0] if issued else 0, json.loads(acked[0]) if acked else 0,
                                buffered)
        return found

    def acked_events(self, stores: dict[str, Path]) -> int:
        """Events the bridges were told are stored (the sum of their last acks)."""
        return sum(acked for _, acked, _ in self.bridge_buffers(stores).values())

    async def streaming(self, gates: int, events: int, rate: float):
        """Stores, a server, `gates` gates whose simulated bridges each record `events` events
        at `rate` a second: (mongo, server, site, the bridges' SQLite files), once all online."""
        mongo, redis = await self.mongo(), await self.redis()
        server = await self.server(mongo, redis)
        site = await self.seed(gates=gates)
        await self.simulated_bridges(site.creds, server.gate_port, events=events, rate=rate)
        self.check(f"{gates} gates online", await self.gates_online(server.base, site, timeout=60))
        return mongo, server, site, self.bridge_stores(site.creds)

    async def check_events(self, what: str, stores: dict[str, Path]) -> bool:
        """Events counted by what the stores hold: for every bridge, each seq it ever issued
        (its SQLite file) stored once in MongoDB, nothing left in its buffer."""
        buffers = self.bridge_buffers(stores)
        issued = {b: last for b, (last, _, _) in buffers.items()}
        buffered = sum(n for _, _, n in buffers.values())
        async with self.app() as app:
            docs = await app.db.gate_events.find(
                {"bridge": {"$in": list(stores)}, "seq": {"$ne": None}},
                {"bridge": 1, "seq": 1}).to_list(None)
        stored: dict[str, list[int]] = {b: [] for b in stores}
        for doc in docs:
            stored[doc["bridge"]].append(doc["seq"])
        lost = sum(len(set(range(1, issued[b] + 1)) - set(seqs)) for b, seqs in stored.items())
        doubled = sum(len(seqs) - len(set(seqs)) for seqs in stored.values())
        foreign = sum(len(set(seqs) - set(range(1, issued[b] + 1))) for b, seqs in stored.items())
        return self.check(what, lost == doubled == foreign == buffered == 0,
                          f"{sum(issued.values())} events from {len(stores)} bridges: "
                          f"{lost} lost, {doubled} doubled, {foreign} unknown, "
                          f"{buffered} still buffered")

    async def bridge(self, creds: dict, gate_port: int, host: str = "127.0.0.1",
                     name: str | None = None, **settings) -> Process:
        """The real bridge program (`python -m gate_bridge`) on simulated relay and door;
        scans are lines written to it (`process.write(text)`). Ready once connected."""
        name = name or creds["bridge_id"]
        config = {"bridge_id": creds["bridge_id"], "secret": creds["secret"], "host": host,
                  "port": gate_port, "tls": False, "allow_plain": True, "codec": "msgpack",
                  "store_path": str(self.dir / f"{name}.sqlite"), **settings}
        toml = self.dir / f"{name}.toml"
        toml.write_text("[bridge]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in
                                                config.items())
                        + '[scanner]\nkind = "stdin"\n[relay]\nkind = "simulated"\n'
                        + '[door]\nkind = "simulated"\n')
        process = Process(self, name, python_module("gate_bridge", "--config", str(toml)),
                          stdin=True)
        await self.start(process)
        await process.wait_output("connected (session", START_TIMEOUT, stream="err")
        return process

    # -- the stores, seen from the drill ---------------------------------------------------------

    @contextlib.asynccontextmanager
    async def app(self):
        """The application's managers on the drill's stores (seeding, counting afterwards)."""
        from server.app import XiaoquApp
        from server.settings import load_settings
        from server.stores import connect_mongo, connect_redis
        settings = load_settings(mongodb_uri=self._mongo_url, redis_url=self._redis_url,
                                 mongodb_db=self.db_name, data_dir=self.dir,
                                 access_token_seconds=86400,
                                 **{k.lower(): v for k, v in self.secrets.items()})
        app = XiaoquApp(settings, connect_mongo(settings.mongodb_uri),
                        connect_redis(settings.redis_url))
        try:
            await app.startup()
            yield app
        finally:
            await app.close()

    async def seed(self, gates: int = 4, code: str = "drill") -> Site:
        """A community with `gates` pedestrian gates (each covering it all), a provisioned
        bridge per gate and a platform-wide admin's access token."""
        async with self.app() as app:
            community = await app.places.create_community(f"Drill {code}", code)
            cid = str(community["_id"])
            staff = await app.staff.create(f"{code}-admin", "drill password 1", "Drill admin",
                                           {cid: ["admin"]})
            token = (await app.auth.start_session(str(staff["_id"]), "staff"))["access_token"]

            made, creds = [], []
            # In bulk: one by one, 10,000 gates took 16 minutes to provision. 100 at a time:
            # the embedded store answers nothing else while it writes a batch, and a client
            # whose heartbeat it missed for 3 s drops the connection, cancelling the write.
            for start in range(0, gates, 100):
                for cred in await app.bridges.provision_new(cid, [
                        (f"g{i}", f"gate {i}", "pedestrian", [""])
                        for i in range(start, min(gates, start + 100))], "drill"):
                    made.append({"id": cred["gate_id"], "code": cred["code"],
                                 "bridge_id": cred["bridge_id"]})
                    creds.append({"bridge_id": cred["bridge_id"], "secret": cred["secret"]})
        self.say(f"seeded community {code}: {gates} gates with bridges")
        return Site(cid, made, creds, token)

    # -- HTTP ----------------------------------------------------------------------------------------

    async def call(self, method: str, url: str, token: str | None = None,
                   body: dict | None = None, timeout: float = 15.0) -> tuple[int, dict | None]:
        """(status, JSON body or None); 599 when the connection failed or timed out."""
        if self._http is None:
            self._http = tornado.httpclient.AsyncHTTPClient(force_instance=True, max_clients=2000)
        request = tornado.httpclient.HTTPRequest(
            url, method=method, body=None if body is None else json.dumps(body),
            headers={"Authorization": f"Bearer {token}"} if token else {},
            request_timeout=timeout, connect_timeout=timeout,
            validate_cert=False,  # the drills' proxies have throwaway self-signed certificates
            allow_nonstandard_methods=body is None and method == "POST")
        try:
            response = await self._http.fetch(request, raise_error=False)
        except (OSError, tornado.httpclient.HTTPClientError):  # e.g. the server killed mid-call
            return 599, None
        with contextlib.suppress(ValueError):
            return response.code, json.loads(response.body or b"null")
        return response.code, None

    async def gates(self, base: str, site: Site) -> list[dict]:
        status, body = await self.call("GET", site.api(base, "/gates"), site.token)
        if status != 200:
            raise DrillError(f"GET gates answered {status}: {body}")
        return body

    async def until(self, predicate, timeout: float, every: float = 0.1) -> bool:
        """Poll `predicate()` (async or not) until it holds (True) or `timeout` passes (False)."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(DrillError):
                held = predicate()
                if inspect.isawaitable(held):
                    held = await held
                if held:
                    return True
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(every)

    async def gates_online(self, base: str, site: Site, timeout: float = 30.0,
                           online: bool = True, every: float = 0.1) -> bool:
        """Wait until the API shows every gate of `site` online (or offline)."""
        async def all_there():
            return all(g["online"] is online for g in await self.gates(base, site))
        return await self.until(all_there, timeout, every)

    async def close(self) -> None:
        for process in reversed(self.processes):
            await process.close()
        if self._http is not None:
            self._http.close()


def main(drill, argv: list[str] | None = None, arguments=None) -> None:
    """Run `drill(d)` as a program: `--short`, `--keep` (keep its directory), and what
    `arguments(parser)` adds (parsed into `d.args`); the report and exit status at the
    end. A drill that raises counts as a failure."""
    module = sys.modules[drill.__module__]
    name = (module.__spec__.name if module.__spec__ else drill.__module__).rsplit(".", 1)[-1]
    parser = argparse.ArgumentParser(prog=f"python -m scripts.drills.{name}",
                                     description=(module.__doc__ or "").split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="the seconds-long version")
    parser.add_argument("--keep", action="store_true", help="keep the logs and data files")
    if arguments is not None:
        arguments(parser)
    args = parser.parse_args(argv)
    directory = Path(tempfile.mkdtemp(prefix=f"drill-{name}-"))
    d = Drill(name, args.short, directory)
    d.args = args

    async def run() -> None:
        try:
            await drill(d)
        except Exception as exc:
            traceback.print_exc()
            d.check("the drill ran to its end", False, f"{type(exc).__name__}: {exc}")
        finally:
            await d.close()

    d.say(f"drill {name}{' (short)' if args.short else ''}: logs in {directory}")
    asyncio.run(run())
    status = d.report()
    if args.keep or status:
        print(f"logs and data kept in {directory}", flush=True)
    else:
        shutil.rmtree(directory, ignore_errors=True)
    sys.exit(status)


# -- the shipped balancer configurations (deploy/), made runnable here ------------------------

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NGINX, HAPROXY = "/usr/sbin/nginx", "/usr/sbin/haproxy"  # Debian's (make test installs them)


def _substituted(text: str, replacements: list[tuple[str, str]]) -> str:
    """Each replacement must apply (a change to the shipped file must not slip past)."""
    for old, new in replacements:
        if old not in text:
            raise DrillError(f"deploy/ no longer has {old!r}: update scripts/drills/common.py")
        text = text.replace(old, new)
    return text


def self_signed(directory: Path) -> Path:
    """A throwaway certificate for 127.0.0.1 and its key, in one PEM file (nginx takes it for
    both its certificate and its key, HAProxy wants them so)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    path = directory / "self-signed.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return path


def nginx_config(directory: Path, upstreams: list[int], https_port: int, http_port: int) -> Path:
    """deploy/nginx/xiaoqu.conf with its ports, certificate and paths under `directory`."""
    pem = self_signed(directory)
    text = (DEPLOY / "nginx" / "xiaoqu.conf").read_text()
    servers = "".join(f"        server 127.0.0.1:{p} max_fails=2 fail_timeout=5s;\n"
                      for p in upstreams)
    text = _substituted(text, [
        ("user www-data;", "user root;" if os.geteuid() == 0 else ""),
        ("/run/nginx.pid", str(directory / "nginx.pid")),
        ("/var/log/nginx", str(directory)), ("/var/lib/nginx", str(directory)),
        ("/etc/letsencrypt/live/xiaoqu.example.com/fullchain.pem", str(pem)),
        ("/etc/letsencrypt/live/xiaoqu.example.com/privkey.pem", str(pem)),
        ("listen 443 ssl", f"listen 127.0.0.1:{https_port} ssl"),
        ("listen 80;", f"listen 127.0.0.1:{http_port};"),
        ("".join(f"        server 127.0.0.1:{p} max_fails=2 fail_timeout=5s;\n"
                 for p in (8000, 8001, 8002)), servers)])
    path = directory / "nginx.conf"
    path.write_text(text)
    return path


def haproxy_config(directory: Path, hubs: list[int], apis: list[int], gates_port: int,
                   https_port: int) -> Path:
    """deploy/haproxy/haproxy.cfg with its ports, certificate and paths under `directory`."""
    pem = self_signed(directory)
    text = (DEPLOY / "haproxy" / "haproxy.cfg").read_text()
    text = _substituted(text, [
        ("    log /dev/log local0\n", ""), ("/run/haproxy.pid", str(directory / "haproxy.pid")),
        ("maxconn 60000", "maxconn 5000"),  # within this machine's open-file limit
        ("/run/haproxy/admin.sock", str(directory / "haproxy.sock")),
        ("/etc/haproxy/xiaoqu.pem", str(pem)),
        ("bind :7000", f"bind 127.0.0.1:{gates_port}"),
        ("bind :8443", f"bind 127.0.0.1:{https_port}"),
        ("".join(f"    server hub{i} 127.0.0.1:{7001 + i} check\n" for i in range(3)),
         "".join(f"    server hub{i} 127.0.0.1:{p} check\n" for i, p in enumerate(hubs))),
        ("".join(f"    server api{i} 127.0.0.1:{8000 + i} check\n" for i in range(3)),
         "".join(f"    server api{i} 127.0.0.1:{p} check\n" for i, p in enumerate(apis)))])
    path = directory / "haproxy.cfg"
    path.write_text(text)
    return path
