"""A real bridge program (`python -m gate_bridge`) killed -9 in the middle of uploading the
offline decisions it buffered while the server was away: started again, it sends the rest,
and every event is stored exactly once, each with its one access-log line.

    python -m scripts.drills.bridge_kill [--short]
"""

from bson import ObjectId

from scripts.drills.common import Drill, main


async def drill(d: Drill) -> None:
    scans = 210 if d.short else 3000  # two frames (200 a frame): a kill between them
    mongo, redis = await d.mongo(), await d.redis()
    server = await d.server(mongo, redis)
    site = await d.seed(gates=1)
    bridge = await d.bridge(site.creds[0], server.gate_port, name="real-bridge")
    stores = {site.creds[0]["bridge_id"]: d.dir / "real-bridge.sqlite"}

    def state() -> tuple[int, int, int]:
        return d.bridge_buffers(stores)[site.creds[0]["bridge_id"]]

    await server.kill9()
    d.say(f"server killed; {scans} scans at the gate, decided offline by the bridge")
    for n in range(scans):
        bridge.write(f"drill-code-{n}")
    d.check(f"{scans} offline decisions buffered", await d.until(
        lambda: state()[2] == scans, 120), f"{state()[2]} buffered")
    await server.start()
    uploading = await d.until(lambda: state()[1] > 0, 60, every=0.01)
    await bridge.kill9()
    _, acked, left = state()
    d.check("the bridge killed -9 in the middle of its upload", uploading and 0 < acked < scans,
            f"{acked} acknowledged, {left} still buffered")
    await bridge.start()
    await bridge.wait_output("connected (session", 60, stream="err")
    d.check("the rest uploaded after its restart", await d.until(
        lambda: state()[1] >= scans, 120), f"{state()[1]} of {scans} acknowledged")
    await d.check_events("0 lost, 0 doubled (counted by bridge seq in the store)", stores)
    async with d.app() as app:
        async def lines() -> int:
            return await app.db.access_log.count_documents(
                {"gate_id": ObjectId(site.gates[0]["id"]), "source": "offline"})
        written = await d.until(lambda: _has(lines(), scans), 30)
        d.check("one access-log line per offline decision", written and await lines() == scans,
                f"{await lines()} lines for {scans} decisions")


async def _has(count, threshold: int) -> bool:
    return await count >= threshold


if __name__ == "__main__":
    main(drill)
