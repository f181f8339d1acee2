"""Server killed -9 and started again: its bridges (simulated and the real program) come
back by themselves and remote opens work again, on the same stores.

    python -m scripts.drills.restart [--short]
"""

from scripts.drills.common import Drill, main


async def open_gate(d: Drill, base: str, site, gate: dict) -> tuple[int, dict | None]:
    return await d.call("POST", site.api(base, f"/gates/{gate['id']}/open"), site.token,
                        {"reason": "drill", "wait": 10}, timeout=30)


async def drill(d: Drill) -> None:
    mongo, redis = await d.mongo(), await d.redis()
    server = await d.server(mongo, redis)
    site = await d.seed(gates=3 if d.short else 20)
    real_gate, *simulated = site.gates
    await d.simulated_bridges(site.creds[1:], server.gate_port)
    real = await d.bridge(site.creds[0], server.gate_port, name="real-bridge")
    d.check("every gate online", await d.gates_online(server.base, site))
    status, body = await open_gate(d, server.base, site, real_gate)
    d.check("remote open through the real bridge", status == 200 and body["level"] == "opened",
            f"{status} {body if status != 200 else body['levels']}")

    rounds = 1 if d.short else 3
    for round_ in range(1, rounds + 1):
        await server.kill9()
        d.say(f"round {round_}: server killed -9 under {len(site.gates)} bridges; starting it again")
        await server.start()
        await real.wait_output(f"connected (session {round_ + 1})", 60, stream="err")
        d.check(f"round {round_}: every gate online again",
                await d.gates_online(server.base, site, timeout=60))
        for gate in (real_gate, simulated[0]):
            status, body = await open_gate(d, server.base, site, gate)
            d.check(f"round {round_}: remote open at {gate['code']} after the restart",
                    status == 200 and body["level"] == "opened",
                    f"{status} {body if status != 200 else body['levels']}")


if __name__ == "__main__":
    main(drill)
