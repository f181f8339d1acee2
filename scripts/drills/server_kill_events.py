"""The server killed -9, again and again, under 100+ simulated bridges streaming events:
every event each bridge recorded ends up stored exactly once (counted by bridge seq in the
store), and every gate comes back online by itself.

    python -m scripts.drills.server_kill_events [--short]
"""

from scripts.drills.common import Drill, main


async def drill(d: Drill) -> None:
    # 60 events/s in all: within what the embedded store takes (store_outage says why).
    gates, events, rate, kills = (12, 40, 10.0, 1) if d.short else (120, 60, 0.5, 3)
    _, server, site, stores = await d.streaming(gates, events, rate)
    total = gates * events
    for round_ in range(1, kills + 1):
        share = total * round_ // (kills + 1)
        d.check(f"round {round_}: {share} events stored", await d.until(
            lambda: d.acked_events(stores) >= share, 120))
        await server.kill9()
        d.say(f"round {round_}: server killed -9 with {d.acked_events(stores)} of {total} events "
              f"acknowledged, {gates} bridges recording {rate:g} events/s each; starting it again")
        await server.start()
        d.check(f"round {round_}: every gate online again",
                await d.gates_online(server.base, site, timeout=90))
    d.check("every event recorded and acknowledged", await d.until(
        lambda: d.acked_events(stores) >= total, 180), f"{d.acked_events(stores)} of {total}")
    await d.check_events("0 lost, 0 doubled (counted by bridge seq in the store)", stores)
    d.check("no traceback from the server", server.tracebacks() == 0,
            f"{server.tracebacks()} since its last start")


if __name__ == "__main__":
    main(drill)
