"""The request path in CPU instructions, which other work on the machine does not move.

    python -m scripts.bench_request_instructions [--requests 300] [--keep DIR]

`scripts/bench_passes.py` times the same three handlers under `wrk`; on a shared VM its
throughput swings by 2x from run to run. Here the server (the handlers of
`scripts.bench_passes`: resident code issue, bare Tornado JSON, bare + token check, all sent
the same request) runs under valgrind's callgrind (apt: valgrind) with instrumentation off;
it is switched on for exactly `--requests` keep-alive requests to one handler at a time, sent
by this process, and the user-space instructions the server spent are printed per request
with their ratios. System calls (the kernel's share, the same for every handler) are not
counted, so the ratio is a little below the one an idle machine's throughput gives. The
server's timers (store probes, driver heartbeats), measured in an idle window first, are
taken off each handler's window: under callgrind they are ~50x their share at full speed.
`--keep DIR` keeps each handler's callgrind profile there (`DIR/ours.callgrind`, …) for
`callgrind_annotate --inclusive=yes`. `--python-functions N` runs the server with Python's
perf trampolines (`-X perf`, a few per cent more instructions everywhere) and prints, per
handler, the N Python functions with the most instructions per request, callees included
(callgrind names each trampoline by address; /tmp/perf-PID.map names the address).
"""

import argparse
import asyncio
import bisect
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tornado.httpclient
import tornado.web

from scripts.bench_passes import AuthOnlyHandler, BareHandler, serve, setup
from server.app import XiaoquApp
from server.embedded import start_mongo, start_redis
from server.settings import load_settings
from server.stores import connect_mongo, connect_redis

TARGETS = ("ours", "base", "authed")
IDLE_SECONDS = 30


async def run_server(mongo_url: str, redis_url: str, ready: Path) -> None:
    """The server side (run under callgrind): serves until killed; `ready` gets its ports."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(mongodb_uri=mongo_url, redis_url=redis_url,
                                 mongodb_db=f"bench_instr_{os.getpid()}", data_dir=Path(tmp))
        app = XiaoquApp(settings, connect_mongo(mongo_url), connect_redis(redis_url))
        await app.startup()
        cid, token, _ = await setup(app)
        _, port = serve(app)
        path = f"/api/communities/{cid}/code"
        headers = {"Authorization": f"Bearer {token}"}
        BareHandler.body = (await tornado.httpclient.AsyncHTTPClient(force_instance=True).fetch(
            f"http://127.0.0.1:{port}{path}", headers=headers)).body
        _, bare_port = serve(tornado.web.Application(
            [("/bare", BareHandler), ("/auth", AuthOnlyHandler)], xiaoqu=app))
        targets = {"ours": (port, path), "base": (bare_port, "/bare"),
                   "authed": (bare_port, "/auth")}
        ready.write_text(json.dumps({"targets": targets, "token": token}))
        await asyncio.Event().wait()


def send(port: int, path: str, token: str, count: int) -> None:
    """`count` GETs one after another on one keep-alive connection, each answered 200."""
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               f"Authorization: Bearer {token}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port)) as sock, sock.makefile("rb") as answers:
        for _ in range(count):
            sock.sendall(request)
            status = answers.readline()
            if b" 200 " not in status:
                raise RuntimeError(f"{path} answered {status!r}")
            length = 0
            while (line := answers.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            answers.read(length)


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def python_functions(profile: Path, perf_map: Path, requests: int, top: int) -> list[str]:
    """The `top` Python functions of `profile` by inclusive instructions per request."""
    spans = sorted((int(start, 16), int(size, 16), name.strip()) for start, size, name in
                   (line.split(" ", 2) for line in perf_map.read_text().splitlines()))
    starts = [start for start, _, _ in spans]
    annotated = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100",
                                str(profile)], capture_output=True, text=True, check=True).stdout
    totals: dict[str, int] = {}
    for count, address in re.findall(r"^\s*([\d,]+) .*\?\?\?:0x([0-9a-f]+) ", annotated, re.M):
        i = bisect.bisect_right(starts, int(address, 16)) - 1
        if i >= 0 and int(address, 16) < starts[i] + spans[i][1]:
            name = spans[i][2].removeprefix("py::")
            totals[name] = totals.get(name, 0) + int(count.replace(",", ""))
    ranked = sorted(totals.items(), key=lambda item: -item[1])[:top]
    return [f"{n / requests / 1e3:8.1f} k  {name}" for name, n in ranked]


def measure(requests: int, keep: Path | None = None,
            functions: int = 0) -> dict[str, float]:
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        mongo_url = os.environ.get("MONGODB_URI") or stack.enter_context(start_mongo(None)).url
        redis_url = os.environ.get("REDIS_URL") or stack.enter_context(start_redis(None)).url
        ready, out = Path(tmp) / "ready.json", Path(tmp) / "callgrind.out"
        keep = keep or (Path(tmp) if functions else None)
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
             sys.executable, *(["-X", "perf"] if functions else []),
             "-m", "scripts.bench_request_instructions", "--serve",
             mongo_url, redis_url, str(ready)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 900
            while not ready.exists() or not ready.read_text():
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the server under callgrind did not start")
                time.sleep(0.5)  # polling a child's start-up, not synchronising a test
            info = json.loads(ready.read_text())

            def window(name: str, action) -> tuple[int, float]:
                """(instructions the server spent while `action` ran, its seconds)."""
                control(server.pid, "--zero")
                control(server.pid, "--instr=on")
                start = time.monotonic()
                action()
                seconds = time.monotonic() - start
                control(server.pid, "--instr=off")
                control(server.pid, f"--dump={name}")
                [dump] = Path(tmp).glob("callgrind.out.*")  # each removed once read
                totals = next(line for line in dump.read_text().splitlines()
                              if line.startswith("totals:"))
                if keep:
                    shutil.move(dump, keep / f"{name}.callgrind")
                else:
                    dump.unlink()
                return int(totals.split()[1]), seconds

            for port, path in info["targets"].values():
                send(port, path, info["token"], 30)  # warm-up: caches, the connections
            # The server's timers (store probes, the drivers' heartbeats, the subscription's
            # ping) run by the clock, not per request, and callgrind slows the server ~50x:
            # their share of a window, measured idle, is taken off each handler's.
            idle, idle_seconds = window("idle", lambda: time.sleep(IDLE_SECONDS))
            per_request = {"background": idle / idle_seconds}
            for name in TARGETS:
                port, path = info["targets"][name]
                spent, seconds = window(name, lambda: send(port, path, info["token"], requests))
                per_request[name] = (spent - per_request["background"] * seconds) / requests
            perf_map = Path(f"/tmp/perf-{server.pid}.map")
            for name in TARGETS if functions else ():
                print(f"{name}: instructions per request, callees included")
                print("\n".join(python_functions(keep / f"{name}.callgrind", perf_map, requests,
                                                 functions)))
        finally:
            server.kill()
            server.wait()
            Path(f"/tmp/perf-{server.pid}.map").unlink(missing_ok=True)
    return per_request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="per handler")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep each handler's callgrind profile in DIR")
    parser.add_argument("--python-functions", type=int, default=0, metavar="N",
                        help="print the N costliest Python functions of each handler")
    parser.add_argument("--serve", nargs=3, metavar=("MONGO", "REDIS", "READY"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(run_server(args.serve[0], args.serve[1], Path(args.serve[2])))
        return
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("this benchmark needs valgrind (Debian: apt-get install valgrind)")
    per_request = measure(args.requests, args.keep, args.python_functions)
    ours, base, authed = (per_request[name] for name in TARGETS)
    print(f"the server's timers, idle: {per_request['background'] / 1e6:.1f} M instructions/s "
          f"under callgrind (taken off each handler's window)")
    print(f"user-space instructions per request: resident code issue {ours / 1e6:.2f} M, "
          f"bare Tornado JSON {base / 1e6:.2f} M, bare + token check {authed / 1e6:.2f} M; "
          f"ratio {base / ours:.2f}x (goal >= 0.8x); what the code adds beyond the token check: "
          f"{(ours - authed) / 1e6:.2f} M")


if __name__ == "__main__":
    main()
