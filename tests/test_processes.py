"""`python -m server --processes N` (server/processes.py): N instances on the same stores;
a remote open issued on one reaches a bridge connected to another, and its acks come back."""

import asyncio
import json
import os
import signal
import socket
import sys

import pytest

from tests.builders import make_community
from tests.gate_fixtures import start_sim_bridge

pytestmark = pytest.mark.asyncio


def _free_port_pair() -> int:
    """A port p with p + 1 also free (instance i listens on base + i)."""
    while True:
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port


async def _until_up(stdout) -> list[str]:
    printed = []
    async with asyncio.timeout(120):
        while not printed or not printed[-1].startswith("xiaoqu is up"):
            line = await stdout.readline()
            assert line, f"the supervisor exited: {printed}"
            printed.append(line.decode())
    return printed


async def test_an_open_on_one_process_reaches_a_bridge_held_by_another(app, settings, tmp_path,
                                                                       http_client):
    community = await make_community(app, "multi")
    gate_id = community.gates["main"]
    creds = await app.bridges.provision(community.id, gate_id, "test")
    http, gates = _free_port_pair(), _free_port_pair()
    env = {**os.environ, "MONGODB_URI": settings.mongodb_uri, "REDIS_URL": settings.redis_url,
           "MONGODB_DB": settings.mongodb_db, "XIAOQU_DATA_DIR": str(tmp_path),
           "HTTP_PORT": str(http), "GATE_PORT": str(gates), "XIAOQU_MODE": "demo"}
    supervisor = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "--processes", "2", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    bridge = None
    try:
        printed = await _until_up(supervisor.stdout)
        assert f"HTTP ports {http}-{http + 1}, gate ports {gates}-{gates + 1}" in printed[-1]
        bridge = await start_sim_bridge(tmp_path, gates + 1, creds["bridge_id"], creds["secret"])
        await bridge.bridge.wait(lambda: bridge.bridge.writer is not None, 30)
        headers = {"Authorization": f"Bearer {community.tokens['admin']}"}
        base = f"http://127.0.0.1:{http}/api/communities/{community.id}"  # process 0
        async with asyncio.timeout(30):  # process 1 stores its presence right after welcome
            while not (await app.gate_presence.owner(creds["bridge_id"])):
                await asyncio.sleep(0.05)
        reply = await http_client.fetch(f"{base}/gates/{gate_id}/open", method="POST",
                                        headers=headers, raise_error=False,
                                        body=json.dumps({"reason": "two processes", "wait": 10}))
        opened = json.loads(reply.body)
        assert reply.code == 200, opened
        assert opened["levels"] == ["received", "actuated", "opened"]
    finally:
        if bridge is not None:
            await bridge.stop()
        supervisor.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            await supervisor.wait()
        errors = (await supervisor.stderr.read()).decode()
    assert supervisor.returncode == 0, errors
    assert "Traceback" not in errors, errors
