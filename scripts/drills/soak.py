"""Soak: 1,000 simulated app clients and 2,000 bridges across 3 server processes for 10
minutes, on the same stores. Prints the errors, each process's RSS at the start, middle
and end, its event-loop lag and the clients' p50/p99 latency.

    python -m scripts.drills.soak [--short] [--minutes 10] [--clients 1000] [--bridges 2000]

Each app client loops: pause (mean THINK seconds), then one request to a random process —
mostly `GET /api/me`, some access-log pages, some remote opens at a random gate (which
travel to the process holding that gate's bridge). The bridges (three
scripts.simulate_bridges processes, one per server) heartbeat and report their doors.
Event-loop lag is read from the outside: `GET /healthz` on each process every half
second, whose round trip is the time that process's loop took to get to it.
`--short` is 50 clients, 30 bridges, 20 seconds. Every tenth of the run it prints the
MongoDB-protocol server's RSS against the requests answered so far, and at the end the
servers' MongoDB commands (from their /metrics: per second, per app request, by command)
and the hellos the hubs answered `busy`.

Per request the store is asked little (tests/test_store_budget.py): `/api/me` nothing, an
access-log page one find, a remote open four writes; the rest is copied in each process
and dropped by pub/sub on change (models/key_cache.py). The embedded store still costs
milliseconds of CPU per operation: docs/embedded-mongo.md, "The soak", has the figures (the
full size passed on this 2-core machine with nothing else running: 0 of 59,388 failed).
"""

import argparse
import asyncio
import collections
import random
import re
import time
import urllib.request

from models.gate_presence import GatePresence
from scripts.drills.common import Drill, main, percentile, rss_kb
from server.stores import connect_redis

PROCESSES = 3
THINK = 10.0  # seconds between one client's requests, on average


class Tally:
    def __init__(self):
        self.latency: dict[str, list[float]] = collections.defaultdict(list)
        self.errors: collections.Counter = collections.Counter()
        self.lag: dict[str, list[float]] = collections.defaultdict(list)


async def client(d: Drill, bases: list[str], site, tally: Tally, until: float) -> None:
    rng = random.Random()
    await asyncio.sleep(rng.uniform(0, min(THINK, until - time.monotonic())))  # spread the start
    while time.monotonic() < until:
        base = rng.choice(bases)
        roll = rng.random()
        if roll < 0.05:
            kind, method, body = "open", "POST", {"reason": "soak", "wait": 5}
            url = site.api(base, f"/gates/{rng.choice(site.gates)['id']}/open")
        elif roll < 0.20:
            kind, method, body, url = "access_log", "GET", None, site.api(base, "/access-log?limit=20")
        else:
            kind, method, body, url = "me", "GET", None, f"{base}/api/me"
        started = time.monotonic()
        status, answer = await d.call(method, url, site.token, body, timeout=30)
        tally.latency[kind].append((time.monotonic() - started) * 1000)
        if status != 200:
            tally.errors[f"{kind}: {status} {((answer or {}).get('error') or {}).get('code')}"] += 1
        elif kind == "open" and answer["level"] != "opened":
            tally.errors[f"open: reached {answer['level']}"] += 1
        await asyncio.sleep(min(rng.expovariate(1 / THINK), max(0.0, until - time.monotonic())))


async def store_sampler(d: Drill, mongo, tally: Tally, until: float, every: float) -> None:
    """The MongoDB-protocol server's RSS against the requests answered so far."""
    while time.monotonic() < until:
        await asyncio.sleep(min(every, max(0.0, until - time.monotonic())))
        done = sum(len(v) for v in tally.latency.values())
        d.say(f"store: {rss_kb(mongo.pid) / 1024:.0f} MiB after {done} requests "
              f"({sum(tally.errors.values())} failed)")


async def lag_sampler(d: Drill, servers, tally: Tally, until: float) -> None:
    while time.monotonic() < until:
        for server in servers:
            started = time.monotonic()
            status, _ = await d.call("GET", f"{server.base}/healthz", timeout=10)
            if status == 200:
                tally.lag[server.name].append((time.monotonic() - started) * 1000)
            else:
                tally.errors[f"healthz {status}"] += 1
        await asyncio.sleep(0.5)


STORE_COUNT = re.compile(r'^xiaoqu_store_duration_seconds_count\{op="(\w+)",store="mongodb"\} (\S+)$',
                         re.M)


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode()


async def store_commands(servers) -> collections.Counter:
    """MongoDB commands the servers have sent so far, by name (their /metrics)."""
    counts: collections.Counter = collections.Counter()
    for server in servers:
        text = await asyncio.to_thread(_scrape, f"{server.base}/metrics")
        for op, value in STORE_COUNT.findall(text):
            counts[op] += int(float(value))
    return counts


async def bridges_present(d: Drill, redis, site, timeout: float) -> bool:
    """Wait until every bridge is present in Redis (what the gate list's `online` says).
    Polled there, and the gate list read once at the end: a poll a second of a list of
    thousands of gates kept the store busy reading them while the bridges' handshakes waited
    for it."""
    client = connect_redis(redis.url)
    presence = GatePresence(client, None)
    ids = [gate["bridge_id"] for gate in site.gates]
    try:
        return await d.until(lambda: _all_online(presence, ids), timeout, every=1.0)
    finally:
        await client.aclose()


async def _all_online(presence, ids) -> bool:
    return all(p["online"] for p in (await presence.presence(ids)).values())


def rss_line(label: str, processes) -> str:
    return f"RSS {label}: " + ", ".join(f"{p.name} {rss_kb(p.pid) / 1024:.0f} MiB"
                                        for p in processes)


async def drill(d: Drill) -> None:
    clients = 50 if d.short else d.args.clients
    bridges = 30 if d.short else d.args.bridges
    seconds = 20 if d.short else d.args.minutes * 60
    mongo, redis = await d.mongo(), await d.redis()
    servers = [await d.server(mongo, redis, name=f"server{i}") for i in range(PROCESSES)]
    site = await d.seed(gates=bridges)
    groups = [site.creds[i::PROCESSES] for i in range(PROCESSES)]
    simulators = [await d.simulated_bridges(group, server.gate_port, name=f"bridges{i}")
                  for i, (group, server) in enumerate(zip(groups, servers))]
    started = time.monotonic()
    present = await bridges_present(d, redis, site, timeout=120 + bridges / 20)
    d.check(f"{bridges} bridges online across {PROCESSES} processes",
            present and await d.gates_online(servers[0].base, site, timeout=30, every=1.0),
            f"in {time.monotonic() - started:.1f} s")
    everyone = [*servers, *simulators, mongo, redis]
    rss = [rss_line("start", everyone)]
    d.say(rss[0])

    tally = Tally()
    commands_before = await store_commands(servers)
    until = time.monotonic() + seconds
    d.say(f"{clients} app clients for {seconds:.0f} s")
    work = [asyncio.create_task(client(d, [s.base for s in servers], site, tally, until))
            for _ in range(clients)]
    work.append(asyncio.create_task(lag_sampler(d, servers, tally, until)))
    work.append(asyncio.create_task(store_sampler(d, mongo, tally, until, max(5.0, seconds / 10))))
    await asyncio.sleep(seconds / 2)
    rss.append(rss_line("middle", everyone))
    d.say(rss[-1])
    await asyncio.gather(*work)
    rss.append(rss_line("end", everyone))
    d.say(rss[-1])
    commands = await store_commands(servers) - commands_before

    requests = sum(len(v) for v in tally.latency.values())
    for kind, values in sorted(tally.latency.items()):
        d.say(f"{kind}: {len(values)} requests, p50 {percentile(values, 0.5):.1f} ms, "
              f"p99 {percentile(values, 0.99):.1f} ms")
    for name, values in sorted(tally.lag.items()):
        d.say(f"event-loop lag {name} (/healthz round trip): p50 {percentile(values, 0.5):.1f} "
              f"ms, p99 {percentile(values, 0.99):.1f} ms, max {max(values, default=0):.1f} ms")
    total = sum(commands.values())
    d.say(f"store: {total} MongoDB commands from the servers, {total / seconds:.1f} a second, "
          f"{total / max(requests, 1):.2f} per app request (" + ", ".join(
              f"{op} {n}" for op, n in commands.most_common()) + ")")
    d.say(f"errors: {sum(tally.errors.values())} of {requests}"
          + "".join(f"\n    {n} × {what}" for what, n in tally.errors.most_common()))
    sessions_lost = sum(sum("session ended" in line for line in s.err) for s in simulators)
    busy = sum(sum("hub busy" in line for line in s.err) for s in simulators)
    d.say(f"hellos answered busy (came back after their retry_after): {busy}")
    d.check("no request failed", not tally.errors, f"{dict(tally.errors)}")
    d.check("every app client got answers", requests >= clients, f"{requests} requests")
    d.check("no bridge session ended", sessions_lost == 0, f"{sessions_lost}")
    d.check("no traceback from any server", not any(s.tracebacks() for s in servers),
            f"{[s.tracebacks() for s in servers]}")
    d.check("every process still running", all(p.alive for p in everyone))


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--bridges", type=int, default=2000)


if __name__ == "__main__":
    main(drill, arguments=arguments)
