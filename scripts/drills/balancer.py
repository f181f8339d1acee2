"""Three instances behind the shipped balancers (deploy/nginx for HTTPS, deploy/haproxy for
the bridges), one killed -9 under traffic: HTTP keeps answering through the others, its
bridges reconnect through the balancer to the others and remote opens reach every gate.

    python -m scripts.drills.balancer [--short]
"""

import asyncio
import collections

from scripts.drills.common import Drill, main

INSTANCES = 3


async def owners(d: Drill, site) -> collections.Counter:
    """How many of the site's bridges each hub instance holds (from their presence)."""
    async with d.app() as app:
        held = [await app.gate_presence.owner(g["bridge_id"]) for g in site.gates]
    return collections.Counter(held)


async def opens(d: Drill, base: str, site, deadline: float) -> tuple[int, int]:
    """A remote open at every gate, each retried until `deadline` seconds have passed:
    (gates opened, attempts that failed on the way)."""
    failed = 0

    async def one(gate) -> bool:
        nonlocal failed
        loop = asyncio.get_running_loop()
        until = loop.time() + deadline
        while True:
            status, body = await d.call("POST", site.api(base, f"/gates/{gate['id']}/open"),
                                        site.token, {"reason": "drill", "wait": 5}, timeout=20)
            if status == 200 and body["level"] == "opened":
                return True
            failed += 1
            if loop.time() > until:
                d.say(f"gate {gate['code']}: last answer {status} {body}")
                return False
            await asyncio.sleep(0.5)
    opened = await asyncio.gather(*(one(g) for g in site.gates))
    return sum(opened), failed


async def drill(d: Drill) -> None:
    mongo, redis = await d.mongo(), await d.redis()
    servers = [await d.server(mongo, redis, name=f"server{i}") for i in range(INSTANCES)]
    nginx = await d.nginx([s.http_port for s in servers])
    haproxy = await d.haproxy([s.gate_port for s in servers], [s.http_port for s in servers])
    d.say(f"{INSTANCES} instances; nginx {nginx.base} -> HTTP, haproxy :{haproxy.gate_port} "
          "-> gate hubs")
    site = await d.seed(gates=6 if d.short else 60)
    await d.simulated_bridges(site.creds[1:], haproxy.gate_port)
    await d.bridge(site.creds[0], haproxy.gate_port, name="real-bridge")
    d.check("every gate online through the balancer", await d.gates_online(nginx.base, site))
    spread = await owners(d, site)
    d.check(f"the bridges spread over all {INSTANCES} instances", len(spread) == INSTANCES,
            f"{sorted(spread.values())}")
    opened, failed = await opens(d, nginx.base, site, deadline=10)
    d.check("a remote open through nginx reaches every gate", opened == len(site.gates),
            f"{opened}/{len(site.gates)}, {failed} retries")

    victim = servers[0]
    await victim.kill9()
    d.say(f"{victim.name} killed -9")
    answered = [await d.call("GET", f"{nginx.base}/readyz") for _ in range(20)]
    d.check("HTTP through nginx answers every request after the kill",
            all(status == 200 for status, _ in answered),
            f"{collections.Counter(status for status, _ in answered)}")
    via_haproxy = [await d.call("GET", f"{haproxy.base}/readyz") for _ in range(10)]
    d.check("HTTP through haproxy answers too", all(s == 200 for s, _ in via_haproxy),
            f"{collections.Counter(s for s, _ in via_haproxy)}")
    opened, failed = await opens(d, nginx.base, site, deadline=60)
    d.check("every gate opens again: its bridge reconnected to another instance",
            opened == len(site.gates), f"{opened}/{len(site.gates)}, {failed} failed attempts "
                                       "while the killed instance's bridges reconnected")
    spread = await owners(d, site)
    d.check("no bridge held by the killed instance any more",
            sum(spread.values()) == len(site.gates) and len(spread) == INSTANCES - 1,
            f"{sorted(spread.values())}")

    await victim.start()
    answered = [await d.call("GET", f"http://127.0.0.1:{victim.http_port}/readyz")]
    d.check(f"{victim.name} back on the same ports", answered[0][0] == 200)


if __name__ == "__main__":
    main(drill)
