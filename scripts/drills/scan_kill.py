"""Server killed -9 under scans: every scan keeps exactly one access-log line (answered by the
server before the kill, or decided offline by its bridge and replayed after the restart), and
every code counts its uses once (issue 12 §1.2, §1.4).

    python -m scripts.drills.scan_kill [--short]

Real bridges (gate_bridge.Bridge, in this process) scan fresh resident codes (a few twice)
and visitor passes (more often than their entries) while the server is killed -9 and
started again on the same stores; the counts come from the stores afterwards.
"""

import asyncio

from scripts.drills.common import Drill, main
from scripts.drills.entry_counts import (Scans, check_counts, deal, drained, scan_all,
                                         seed_codes, start_bridges, stop_bridges)


async def drill(d: Drill) -> None:
    mongo, redis = await d.mongo(), await d.redis()
    server = await d.server(mongo, redis)
    site = await d.seed(gates=3 if d.short else 12)
    codes = await seed_codes(d, site, residents=3, codes_each=10 if d.short else 60,
                             passes=2 if d.short else 6, entries=3)
    bridges = await start_bridges(d, site, server.gate_port)
    scans = Scans()
    try:
        texts = deal(codes, bridges, pass_scans=5)
        interval = 0.05 if d.short else 0.02
        scanning = [asyncio.create_task(scan_all(b, texts[b.config.bridge_id], scans, interval))
                    for b in bridges]
        total = sum(len(t) for t in texts.values())
        rounds = 1 if d.short else 3
        for round_ in range(1, rounds + 1):
            await d.until(lambda r=round_: _async(len(scans.done) >= total * r / (rounds + 1)),
                          120, 0.01)
            await server.kill9()
            d.say(f"round {round_}: server killed -9 after {len(scans.done)} of {total} scans")
            offline = scans.count("bridge")
            await d.until(lambda o=offline: _async(scans.count("bridge") > o), 30, 0.01)
            await server.start()
            d.say(f"round {round_}: server started again")
        await asyncio.gather(*scanning)
        d.check("every gate's bridge back and its events acknowledged", await drained(d, bridges))
    finally:
        await stop_bridges(bridges)
    await check_counts(d, site, scans)


async def _async(value: bool) -> bool:
    return value


if __name__ == "__main__":
    main(drill)
