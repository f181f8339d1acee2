"""XIAOQU_MODE=production reaches no demo path and takes no weak secret (issue 11, item 1)."""

import os
import secrets
import subprocess
import sys

import pytest

from server.settings import SettingsError, load_settings

SECRETS = ("JWT_SECRET", "WECHAT_SECRET", "GATE_SECRET_KEY")


def production(**changes) -> dict[str, str]:
    """A complete, strong production configuration with `changes` applied (None removes)."""
    values = {"XIAOQU_MODE": "production", "MONGODB_URI": "mongodb://db1,db2,db3/?replicaSet=rs0",
              "REDIS_URL": "redis://cache:6379/0", "WECHAT_APPID": "wx0123456789abcdef",
              "WECHAT_BASE_URL": "https://api.weixin.qq.com",
              "JWT_SECRET": secrets.token_urlsafe(32), "GATE_SECRET_KEY": secrets.token_urlsafe(32),
              "WECHAT_SECRET": secrets.token_hex(16),  # an AppSecret looks like this
              "GATE_TLS_CERT": "/etc/xiaoqu/gate-hub.pem", "GATE_TLS_KEY": "/etc/xiaoqu/gate-hub.key"}
    values.update(changes)
    return {k: v for k, v in values.items() if v is not None}


def load(tmp_path, **changes):
    return load_settings(data_dir=tmp_path, **{k.lower(): v for k, v in production(**changes).items()
                                               if k != "XIAOQU_MODE"}, mode="production")


def test_a_strong_production_configuration_loads(tmp_path):
    settings = load(tmp_path)
    assert settings.mode == "production"
    assert not (tmp_path / "secrets.json").exists()  # nothing generated


@pytest.mark.parametrize("name", SECRETS)
@pytest.mark.parametrize("weak, problem", [
    ("x" * 20, "must be at least 32 bytes"),
    ("demo-password" * 3, "too easy to guess"),  # long enough, but a repeated word
    ("0123456789abcdef0123456789abcdef", "too easy to guess"),  # a sequence
    ("a" * 64, "too easy to guess"),
])
def test_weak_secrets_are_refused_by_name(tmp_path, name, weak, problem):
    with pytest.raises(SettingsError) as error:
        load(tmp_path, **{name: weak})
    message = str(error.value)
    assert name in message and problem in message
    assert all(other not in message for other in SECRETS if other != name)
    assert weak not in message  # a secret is never repeated back


@pytest.mark.parametrize("name", SECRETS)
def test_missing_secrets_are_refused(tmp_path, name):
    with pytest.raises(SettingsError) as error:
        load(tmp_path, **{name: None})
    assert f"{name}: required" in str(error.value)


@pytest.mark.parametrize("changes, named", [
    ({"MONGODB_URI": None}, "MONGODB_URI: required (no embedded stores"),
    ({"REDIS_URL": None}, "REDIS_URL: required (no embedded stores"),
    ({"WECHAT_BASE_URL": "http://127.0.0.1:9000"}, "WECHAT_BASE_URL: must be https://"),
    ({"WECHAT_APPID": None}, "WECHAT_APPID: required"),
])
def test_demo_stand_ins_are_refused(tmp_path, changes, named):
    with pytest.raises(SettingsError) as error:
        load(tmp_path, **changes)
    assert named in str(error.value)


def run(args: list[str], env: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("MONGODB_", "REDIS_", "WECHAT_", "XIAOQU_", *SECRETS))}
    return subprocess.run([sys.executable, *args], env={**clean, **env,
                                                        "XIAOQU_DATA_DIR": str(tmp_path)},
                          capture_output=True, text=True, timeout=60)


def test_server_has_no_demo_flag(tmp_path):
    done = run(["-m", "server", "--demo"], production(), tmp_path)
    assert done.returncode == 2 and "unrecognized arguments: --demo" in done.stderr


def test_production_server_without_store_urls_starts_nothing(tmp_path):
    done = run(["-m", "server"], production(MONGODB_URI=None, REDIS_URL=None), tmp_path)
    assert done.returncode == 1
    assert "MONGODB_URI: required" in done.stderr and "REDIS_URL: required" in done.stderr
    assert not any(tmp_path.iterdir())  # no embedded store, no generated secret


def test_production_server_refuses_a_weak_secret(tmp_path):
    done = run(["-m", "server"], production(GATE_SECRET_KEY="demo-password" * 3), tmp_path)
    assert done.returncode == 1 and "GATE_SECRET_KEY: too easy to guess" in done.stderr


def test_demo_refuses_production_mode(tmp_path):
    done = run(["-m", "scripts.demo"], production(), tmp_path)
    assert done.returncode == 1
    assert "does not run with XIAOQU_MODE=production" in done.stderr
    assert not any(tmp_path.iterdir())  # no store, fake WeChat or seed was started


def test_the_embedded_store_without_its_extra_names_the_extra(tmp_path, redis_url):
    """mongoeco is an extra (production does not install it): a demo start that would need it
    stops at once with a message naming the extra, not a traceback."""
    without_mongoeco = ("import runpy, sys; sys.modules['mongoeco'] = None; sys.argv = ['server']; "
                        "runpy.run_module('server', run_name='__main__')")
    done = run(["-c", without_mongoeco], {"REDIS_URL": redis_url}, tmp_path)
    assert done.returncode == 1, done.stderr
    assert "pip install -e '.[embedded-mongo]'" in done.stderr and "MONGODB_URI" in done.stderr
    assert "Traceback" not in done.stderr
