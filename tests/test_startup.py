"""Settings validation and the real start-up: `python -m server --demo` as `make run` runs it."""

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import urllib.request

import pytest

from server.settings import SettingsError, load_settings


def test_bad_setting_is_named(tmp_path):
    with pytest.raises(SettingsError) as error:
        load_settings(data_dir=tmp_path, http_port="eighty")
    assert "HTTP_PORT" in str(error.value)


def test_production_requires_secrets(tmp_path):
    with pytest.raises(SettingsError) as error:
        load_settings(mode="production", data_dir=tmp_path)
    assert "JWT_SECRET" in str(error.value)
    with pytest.raises(SettingsError) as error:
        load_settings(mode="production", data_dir=tmp_path, jwt_secret="short")
    assert "JWT_SECRET" in str(error.value)


def test_demo_generates_secrets_once_and_keeps_them(tmp_path):
    first = load_settings(data_dir=tmp_path)
    second = load_settings(data_dir=tmp_path)
    assert len(first.jwt_secret.get_secret_value()) >= 32
    assert first.jwt_secret == second.jwt_secret
    assert json.loads((tmp_path / "secrets.json").read_text())["jwt_secret"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _call(url: str, token: str | None = None, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_demo_serves_seeds_and_stops_cleanly_on_sigterm(tmp_path):
    http_port, gate_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("MONGODB_URI", "REDIS_URL", "WECHAT_BASE_URL")}
    env.update(XIAOQU_DATA_DIR=str(tmp_path), HTTP_PORT=str(http_port), GATE_PORT=str(gate_port))
    with subprocess.Popen([sys.executable, "-m", "server", "--demo"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as server:
        _check_demo(server, http_port)
    assert server.returncode == 0
    assert (tmp_path / "mongo.sqlite3").exists()


def _check_demo(server: subprocess.Popen, http_port: int) -> None:
    # The log is read on a thread so that waiting for a line can time out.
    log_lines = queue.Queue()
    threading.Thread(target=lambda: [log_lines.put(line) for line in server.stderr],
                     daemon=True).start()
    try:
        printed = []
        # The service prints its URLs once it listens; read up to that line.
        for line in server.stdout:
            printed.append(line)
            if "xiaoqu is up" in line:
                break
        assert any("xiaoqu is up" in line for line in printed), printed
        assert _call(f"http://127.0.0.1:{http_port}/readyz")[0] == 200

        token = _call(f"http://127.0.0.1:{http_port}/api/auth/staff",
                      body={"username": "security", "password": "demo-password"})[1]["access_token"]
        [community] = _call(f"http://127.0.0.1:{http_port}/api/communities", token)[1]
        assert community["code"] == "demo-garden"
        base = f"http://127.0.0.1:{http_port}/api/communities/{community['id']}"
        assert len(_call(f"{base}/places?kind=room", token)[1]) == 204

        # The demo's simulated bridges dial in: the hub logs each one as it comes online.
        gates = _call(f"{base}/gates", token)[1]
        online = set()
        while online != {g["bridge_id"] for g in gates}:
            line = log_lines.get(timeout=30)  # raises queue.Empty if the bridges never come
            if "online (gate" in line:
                online.add(line.split("bridge ")[1].split()[0])
        assert all(g["online"] for g in _call(f"{base}/gates", token)[1])
        status, opened = _call(f"{base}/gates/{gates[0]['id']}/open", token,
                               {"reason": "start-up test", "wait": 10})
        assert status == 200 and opened["level"] == "opened", opened
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
