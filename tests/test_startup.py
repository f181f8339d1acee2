"""Settings validation and the real start-ups: `python -m server` on given stores, and the
demo as `make run` composes it (`python -m scripts.demo`), each stopped by SIGTERM."""

import json
import os
import queue
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid

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
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _sign_in(http_port: int, username: str) -> str:
    status, body = _call(f"http://127.0.0.1:{http_port}/api/auth/staff",
                         body={"username": username, "password": "demo-password"})
    assert status == 200, (username, status, body)  # the answer says why, when it fails
    return body["access_token"]


def _clean_env(**settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MONGODB_URI", "REDIS_URL", "WECHAT_BASE_URL", "XIAOQU_MODE")}
    env.update(settings)
    return env


def _read_until(stream, marker: str) -> list[str]:
    """Lines printed up to and including the first containing `marker` (all of them if never)."""
    printed = []
    for line in stream:
        printed.append(line)
        if marker in line:
            break
    return printed


def _refuses_connections(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_server_serves_given_stores_in_production_and_stops_on_sigterm(tmp_path, mongo_url,
                                                                         redis_url):
    http_port, gate_port = _free_port(), _free_port()
    env = _clean_env(XIAOQU_MODE="production", XIAOQU_DATA_DIR=str(tmp_path),
                     HTTP_PORT=str(http_port), GATE_PORT=str(gate_port),
                     MONGODB_URI=mongo_url, MONGODB_DB=f"test_{uuid.uuid4().hex[:12]}",
                     REDIS_URL=redis_url, WECHAT_APPID="wx0123456789abcdef",
                     WECHAT_BASE_URL="https://api.weixin.qq.com", GATE_ALLOW_PLAIN="true",
                     **{name: secrets.token_urlsafe(32)
                        for name in ("JWT_SECRET", "WECHAT_SECRET", "GATE_SECRET_KEY")})
    with subprocess.Popen([sys.executable, "-m", "server"], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as server:
        try:
            printed = _read_until(server.stdout, "xiaoqu is up")
            assert printed and "xiaoqu is up" in printed[-1], (printed, server.stderr.read())
            assert _call(f"http://127.0.0.1:{http_port}/readyz")[0] == 200
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
    assert server.returncode == 0, server.stderr.read()
    assert not any(tmp_path.iterdir()), "production started something under the data dir"


def test_demo_serves_seeds_and_stops_everything_on_ctrl_c(tmp_path):
    http_port, gate_port = _free_port(), _free_port()
    env = _clean_env(XIAOQU_DATA_DIR=str(tmp_path), HTTP_PORT=str(http_port),
                     GATE_PORT=str(gate_port))
    # Its own process group, like a command in a terminal, whose Ctrl-C reaches the group.
    with subprocess.Popen([sys.executable, "-m", "scripts.demo"], env=env, process_group=0,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as demo:
        logged: list[str] = []
        store_ports = _check_demo(demo, http_port, logged)
    assert demo.returncode == 0
    # Stopped in order (bridges, server, then the stores it drains into): no traceback.
    assert not [line for line in logged if "Traceback" in line], "".join(logged)
    assert (tmp_path / "mongo.sqlite3").exists()
    # Everything the demo started is gone: the server, the gate hub, both stores.
    for port in (http_port, gate_port, *store_ports):
        assert _refuses_connections(port), port


def _check_demo(demo: subprocess.Popen, http_port: int, logged: list[str]) -> list[int]:
    # The log is read on a thread so that waiting for a line can time out; every line also
    # goes to `logged`, complete once the demo has exited.
    log_lines = queue.Queue()
    reader = threading.Thread(target=lambda: [(log_lines.put(line), logged.append(line))
                                              for line in demo.stderr], daemon=True)
    reader.start()
    try:
        printed = "".join(_read_until(demo.stdout, "resident "))
        assert f"http://127.0.0.1:{http_port}/admin" in printed, printed
        assert f"http://127.0.0.1:{http_port}/docs" in printed
        for username in ("admin", "manager", "customer-service", "security", "maintenance"):
            assert f"username {username}" in printed
        [stores] = [line for line in printed.splitlines() if "stores:" in line]
        store_ports = [urllib.parse.urlsplit(setting.split("=", 1)[1]).port
                       for setting in stores.split()[1:]]
        assert _call(f"http://127.0.0.1:{http_port}/readyz")[0] == 200

        token = _sign_in(http_port, "security")
        [community] = _call(f"http://127.0.0.1:{http_port}/api/communities", token)[1]
        assert community["code"] == "demo-garden"
        base = f"http://127.0.0.1:{http_port}/api/communities/{community['id']}"
        assert len(_call(f"{base}/places?kind=room", token)[1]) == 204
        admin = _sign_in(http_port, "admin")
        assert _call(f"http://127.0.0.1:{http_port}/api/me", admin)[1]["platform_admin"] is True

        # The demo's simulated bridges dial in: the hub logs each one as it comes online.
        gates = _call(f"{base}/gates", token)[1]
        online = set()
        while online != {g["bridge_id"] for g in gates}:
            line = log_lines.get(timeout=30)  # raises queue.Empty if the bridges never come
            if "online (gate" in line:
                online.add(line.split("bridge ")[1].split()[0])
        # The hub logs a bridge before its presence is stored: wait until the API says so.
        deadline = time.monotonic() + 30
        while not all(g["online"] for g in _call(f"{base}/gates", token)[1]):
            assert time.monotonic() < deadline, "the gates never showed online"
            time.sleep(0.1)
        status, opened = _call(f"{base}/gates/{gates[0]['id']}/open", token,
                               {"reason": "start-up test", "wait": 10})
        assert status == 200 and opened["level"] == "opened", opened
        return store_ports
    finally:
        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C does
        demo.wait(60)
        reader.join(10)
