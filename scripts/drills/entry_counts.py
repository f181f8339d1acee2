"""What the entry drills (scan_kill, redis_restart) share: codes to scan, real bridges
(gate_bridge.Bridge on simulated hardware, in the drill's process) scanning them against the
drill's server, and the counts afterwards, taken from the stores: access-log lines per scan
id, uses per code (the lines that took one, and Redis's count).
"""

import asyncio
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from bson import ObjectId

from models.access import Principal
from scripts.simulate_bridges import make_bridge

CODE_SECONDS = 3600  # the drill's codes must outlive the drill


@dataclass
class Codes:
    """Fresh single-use resident codes, and visitor passes' codes with their entry limit."""
    resident: list[str]
    passes: list[tuple[str, int]]  # (token, max entries)


@dataclass
class Scans:
    """Every scan the bridges made: (bridge id, outcome) with the outcome's scan id."""
    done: list[tuple[str, dict]] = field(default_factory=list)

    def count(self, source: str) -> int:
        return sum(outcome["source"] == source for _, outcome in self.done)


async def seed_codes(d, site, residents: int, codes_each: int, passes: int,
                     entries: int) -> Codes:
    """Residents of one room with `codes_each` codes each, and `passes` visitor passes."""
    async with d.app() as app:
        cid = site.community_id
        await app.places.update_community(cid, {}, {"pass_code_seconds": CODE_SECONDS})
        for path in ("1", "1-1", "1-1-101"):
            await app.places.create_place(cid, path)
        admin = Principal("staff", str((await app.db.staff.find_one({}))["_id"]),
                          {cid: frozenset({"admin"})})
        codes, tokens = Codes([], []), []
        for i in range(residents):
            resident = await app.residents.from_wechat(f"openid-drill-{i}", None, None)
            link = await app.bindings.request(str(resident["_id"]), cid, "1-1-101", "owner", None)
            await app.bindings.decide(admin, cid, str(link["_id"]), "approve")
            tokens.append((await app.auth.start_session(str(resident["_id"]), "resident"))[
                "access_token"])
        for token in tokens:
            principal = await app.auth.principal(token)
            codes.resident += [(await app.passes.resident_code(principal, cid))["token"]
                               for _ in range(codes_each)]
        host = await app.auth.principal(tokens[0])
        now = app.clock.now()
        for _ in range(passes):
            doc = await app.passes.invite(
                host, cid, name="drill visitor", phone=None, purpose="drill", valid_from=now,
                valid_to=now + timedelta(days=1), max_entries=entries,
                gates=[g["code"] for g in site.gates], room_path="1-1-101")
            codes.passes.append(((await app.passes.current_token(doc))["token"], entries))
    d.say(f"minted {len(codes.resident)} resident codes and {passes} visitor passes "
          f"of {entries} entries")
    return codes


async def start_bridges(d, site, gate_port: int) -> list:
    """A real bridge per gate (in this process), connected; stopped by `stop_bridges`."""
    # Their reconnect attempts while the server is down would drown the drill's own report.
    logging.getLogger("gate_bridge").setLevel(logging.ERROR)
    data = d.dir / "entry-bridges"
    data.mkdir(exist_ok=True)
    bridges = [make_bridge(c["bridge_id"], c["secret"], "127.0.0.1", gate_port, Path(data),
                           door={"open_after": 0.0, "close_after": 0.001}, backoff_base=0.05,
                           backoff_max=0.5, door_open_timeout=0.2)
               for c in site.creds]
    for bridge in bridges:
        bridge.running = asyncio.create_task(bridge.run())
    for bridge in bridges:
        await bridge.wait(lambda b=bridge: b.writer is not None and b.store.config(), 60)
    return bridges


async def stop_bridges(bridges: list) -> None:
    for bridge in bridges:
        bridge.running.cancel()
    await asyncio.gather(*(b.running for b in bridges), return_exceptions=True)
    for bridge in bridges:
        bridge.store.close()


async def scan_all(bridge, texts: list[str], scans: Scans, interval: float) -> None:
    """Scan `texts` one after the other at this bridge's reader, every `interval` seconds."""
    for text in texts:
        started = time.monotonic()
        scans.done.append((bridge.config.bridge_id, await bridge.handle_scan(text)))
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))


def deal(codes: Codes, bridges: list, pass_scans: int) -> dict[str, list[str]]:
    """Each resident code to one bridge (a few scanned a second time, elsewhere), each pass
    scanned `pass_scans` times over all the bridges (more than its entries)."""
    texts: dict[str, list[str]] = {b.config.bridge_id: [] for b in bridges}
    ids = list(texts)
    for i, code in enumerate(codes.resident):
        texts[ids[i % len(ids)]].append(code)
        if i % 10 == 0:
            texts[ids[(i + 1) % len(ids)]].append(code)  # the same code again: replayed
    for j, (token, _) in enumerate(codes.passes):
        for k in range(pass_scans):
            texts[ids[(j + k) % len(ids)]].append(token)
    for i, bridge_id in enumerate(ids):  # mixed, not all the passes at the end
        random.Random(i).shuffle(texts[bridge_id])
    return texts


async def drained(d, bridges: list, timeout: float = 60.0) -> bool:
    """Every bridge connected with nothing left to send (every event acknowledged)."""
    async def empty():
        return all(b.writer is not None and b.store.count == 0 for b in bridges)
    return await d.until(empty, timeout)


async def check_counts(d, site, scans: Scans, limits: dict[str, int] | None = None) -> None:
    """The checks both drills end with, from what the stores hold."""
    gate_of = {g["bridge_id"]: ObjectId(g["id"]) for g in site.gates}
    async with d.app() as app:
        lines = await app.db.access_log.find(
            {"community_id": ObjectId(site.community_id)}).to_list(None)
        per_scan = Counter((line["gate_id"], line.get("scan")) for line in lines
                           if line.get("scan"))
        by_scan = {(line["gate_id"], line.get("scan")): line for line in lines}
        missing = [o["scan"] for b, o in scans.done if per_scan[(gate_of[b], o["scan"])] == 0]
        doubled = [scan for scan, n in per_scan.items() if n > 1]
        d.check(f"every scan has its access-log line ({len(scans.done)} scans: "
                f"{scans.count('server')} answered by the server, {scans.count('bridge')} "
                "decided offline)", not missing, f"{len(missing)} missing, e.g. {missing[:3]}")
        d.check("no scan logged twice", not doubled, f"{len(doubled)} doubled: {doubled[:3]}")
        unlogged = [o["scan"] for b, o in scans.done if o["allow"] and (
            line := by_scan.get((gate_of[b], o["scan"]))) is not None
            and line["result"] != "allow" and not line.get("flag")]
        d.check("every door opened has an allow line (or one flagged for review)",
                not unlogged, f"{len(unlogged)} opened without: {unlogged[:3]}")
        taken = Counter(line["use"]["claim"] for line in lines if line.get("use"))
        limit_of = {line["use"]["claim"]: line["use"]["limit"] for line in lines
                    if line.get("use")}
        allowed = Counter(line["use"]["claim"] for line in lines
                          if line.get("use") and line["result"] == "allow")
        over = {claim: n for claim, n in allowed.items() if n > limit_of[claim]}
        d.check(f"no code allowed more often than it may be ({len(taken)} codes used)",
                not over, f"{len(over)} over their limit: {list(over.items())[:3]}")
        counted = {claim: int(await app.redis.get(f"uses:{claim}") or 0) for claim in taken}
        differ = {claim: (min(counted[claim], limit_of[claim]), n) for claim, n in taken.items()
                  if min(counted[claim], limit_of[claim]) != n}
        d.check("uses per code in Redis = the lines that took them", not differ,
                f"{len(differ)} differ (redis, lines): {list(differ.items())[:3]}")
