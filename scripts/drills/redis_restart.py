"""Redis killed -9, and later restarted, under HTTP and bridge traffic — a Redis without
persistence, so it comes back empty each time: single-use codes stay used and entry limits
stay counted (rebuilt from MongoDB), every scan keeps one access-log line, HTTP checks answer
503 while Redis is away and answer again after (issue 12 §1.3, §1.8).

    python -m scripts.drills.redis_restart [--short]

Real bridges (in this process) scan resident codes and visitor passes; a staff scanner checks
other codes over HTTP (`/gates/{id}/check`); counts come from the stores afterwards.
"""

import asyncio
import signal
import time

from scripts.drills.common import Drill, main
from scripts.drills.entry_counts import (Scans, check_counts, deal, drained, scan_all,
                                         seed_codes, start_bridges, stop_bridges)


async def check_code(d: Drill, server, site, text: str) -> tuple[int, dict | None, float]:
    started = time.monotonic()
    status, body = await d.call("POST", site.api(server.base,
                                                 f"/gates/{site.gates[0]['id']}/check"),
                                site.token, {"token": text, "direction": "in"}, timeout=30)
    return status, body, time.monotonic() - started


async def drill(d: Drill) -> None:
    mongo, redis = await d.mongo(), await d.redis(persistent=False)
    server = await d.server(mongo, redis)
    site = await d.seed(gates=2 if d.short else 8)
    codes = await seed_codes(d, site, residents=3, codes_each=12 if d.short else 60,
                             passes=2 if d.short else 6, entries=3)
    http_codes, codes.resident = codes.resident[::3], [c for i, c in enumerate(codes.resident)
                                                      if i % 3]
    bridges = await start_bridges(d, site, server.gate_port)
    scans, checks = Scans(), []
    outage = asyncio.Event()

    async def scanner() -> None:  # the guard's scanner at gate 0, over HTTP
        for text in http_codes:
            status, body, seconds = await check_code(d, server, site, text)
            checks.append((text, status, body, seconds, outage.is_set()))
            await asyncio.sleep(0.1 if d.short else 0.05)

    try:
        texts = deal(codes, bridges, pass_scans=5)
        interval = 0.1 if d.short else 0.03
        traffic = [asyncio.create_task(scan_all(b, texts[b.config.bridge_id], scans, interval))
                   for b in bridges] + [asyncio.create_task(scanner())]
        total = sum(len(t) for t in texts.values())

        async def scanned(fraction: float) -> bool:
            return len(scans.done) >= total * fraction
        await d.until(lambda: scanned(1 / 3), 120, 0.01)
        outage.set()
        await redis.kill9()
        d.say(f"Redis killed -9 after {len(scans.done)} of {total} scans")
        await asyncio.sleep(1.5 if d.short else 5)  # an outage under traffic, not a wait for it
        await redis.start()
        outage.clear()
        d.say("Redis started again, empty (no persistence)")
        await d.until(lambda: scanned(2 / 3), 120, 0.01)
        await redis.stop(signal.SIGTERM)
        await redis.start()
        d.say(f"Redis restarted, empty again, after {len(scans.done)} scans")
        await asyncio.gather(*traffic)
        d.check("every gate's bridge connected and its events acknowledged",
                await drained(d, bridges, timeout=120))
    finally:
        await stop_bridges(bridges)

    down = [c for c in checks if c[4] and c[1] != 200]
    d.check("HTTP checks while Redis was away answered 503 (store_unavailable)",
            all(c[1] == 503 and c[2]["error"]["code"] == "store_unavailable" for c in down),
            f"{len(down)} during the outage, (status, seconds): "
            f"{sorted((c[1], round(c[3], 1)) for c in down)}")
    answered = [c for c in checks if c[1] == 200]
    d.check("HTTP checks answered again after Redis came back",
            bool(answered) and checks[-1][1] == 200, f"{len(answered)} of {len(checks)} answered")
    # Every code that let someone in before a restart is refused after it.
    used = [c[0] for c in checks if c[1] == 200 and c[2]["allow"]] + [
        t for t, limit in codes.passes]
    again = [(await check_code(d, server, site, text))[:2] for text in used]
    refused = [body["reason"] for status, body in again if status == 200 and not body["allow"]]
    d.check(f"codes used before the restarts stay used after them ({len(used)} codes)",
            len(refused) == len(used), f"answers: {[b and b.get('reason') for _, b in again]}")
    await check_counts(d, site, scans)


if __name__ == "__main__":
    main(drill)
