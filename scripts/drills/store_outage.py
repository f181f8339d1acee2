"""The MongoDB-protocol server killed -9 for 20 s while bridges stream events: the bridges
keep them, the hub acknowledges nothing it did not store, and once the store is back every
event is stored exactly once. Prints how long the events buffered took to drain (the
issue's figure: `FIGURE ...`).

    python -m scripts.drills.store_outage [--short]
"""

import asyncio
import time

from scripts.drills.common import Drill, main


async def drill(d: Drill) -> None:
    # Below what the embedded store takes (~70 events/s on a loaded 2-core machine): the
    # drain time then measures the outage, not a store that could not keep up anyway.
    gates, events, rate, down = (4, 50, 10.0, 2.0) if d.short else (50, 100, 1.0, 20.0)
    mongo, server, site, stores = await d.streaming(gates, events, rate)
    total = gates * events
    d.check("events are being stored", await d.until(
        lambda: d.acked_events(stores) >= total // 5, 60))
    await mongo.kill9()
    before = d.acked_events(stores)
    d.say(f"store killed -9 with {before} of {total} events acknowledged; down for {down:.0f} s "
          f"while {gates} bridges go on recording {rate:g} events/s each")
    await asyncio.sleep(down)  # the outage itself: a length of time, not a wait for news
    # Only acks already on their way when it died (each is checked against the store below).
    d.say(f"acknowledged while the store was down: {d.acked_events(stores) - before}")
    await mongo.start()
    back = time.monotonic()
    at_restart = d.bridge_buffers(stores)
    buffered = sum(n for _, _, n in at_restart.values())
    d.say(f"store back: {buffered} events buffered at the bridges")

    def drained() -> bool:
        now = d.bridge_buffers(stores)
        return all(now[b][1] >= issued for b, (issued, _, _) in at_restart.items())
    ok = await d.until(drained, 300)
    seconds = time.monotonic() - back
    d.check("the events buffered during the outage are stored", ok,
            f"{buffered} drained {seconds:.1f} s after the store came back")
    d.check("every event recorded and acknowledged", await d.until(
        lambda: d.acked_events(stores) >= total, 180), f"{d.acked_events(stores)} of {total}")
    await d.check_events("0 lost, 0 doubled (counted by bridge seq in the store)", stores)
    status, _ = await d.call("GET", f"{server.base}/readyz")
    d.check("the server is ready again", status == 200, f"/readyz {status}")
    d.check("the server survived the outage", server.alive)
    print(f"FIGURE store down {down:.0f} s under {gates} bridges recording {rate:g} events/s "
          f"each: {total} events, {buffered} buffered at the restart, drained in {seconds:.1f} s",
          flush=True)


if __name__ == "__main__":
    main(drill)
