"""`python -m server bootstrap` as an operator runs it, against the test stores."""

import os
import select
import subprocess
import sys
import time

import pytest

PASSWORD = "s3cret-bootstrap-pw"
PROMPT_TIMEOUT = 60.0


@pytest.fixture
def run_bootstrap(settings, tmp_path):
    """Run the command on the test database (the `app` fixture's), returning the finished run."""
    def run(*args: str, stdin: str | None = None, **env) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "server", "bootstrap", *args],
                              env=bootstrap_env(settings, tmp_path, **env), input=stdin,
                              capture_output=True, text=True, timeout=120)
    return run


def bootstrap_env(settings, tmp_path, **env) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("XIAOQU_", "MONGODB_", "REDIS_"))}
    return {**clean, "MONGODB_URI": settings.mongodb_uri, "MONGODB_DB": settings.mongodb_db,
            "REDIS_URL": settings.redis_url,
            "XIAOQU_DATA_DIR": str(tmp_path / "data"), **env}


async def sign_in(api_client, username: str, password: str = PASSWORD):
    return await api_client.post("/api/auth/staff", {"username": username, "password": password})


@pytest.mark.asyncio
async def test_bootstrap_from_a_file_then_refuses_a_second_run(app, api_client, run_bootstrap,
                                                               tmp_path):
    password_file = tmp_path / "pw.txt"
    password_file.write_text(PASSWORD + "\n")
    first = run_bootstrap("--username", "boss", "--name", "Wang Li",
                          "--password-file", str(password_file))
    assert first.returncode == 0, first.stderr
    assert "boss" in first.stdout
    assert PASSWORD not in first.stdout + first.stderr

    login = await sign_in(api_client, "boss")
    assert login.status == 200
    me = await api_client.get("/api/me", token=login.body["access_token"])
    assert me.body["platform_admin"] is True
    stored = await app.db.staff.find_one({"username": "boss"})
    assert stored["password_hash"].startswith("$argon2id$") and PASSWORD not in str(stored)

    again = run_bootstrap("--username", "boss2", "--password-file", str(password_file))
    assert again.returncode == 1
    assert "already bootstrapped" in again.stderr and "--add-another" in again.stderr
    assert await app.db.staff.count_documents({}) == 1

    another = run_bootstrap("--username", "boss2", "--password-file", "-", "--add-another",
                            stdin=PASSWORD + "\n")
    assert another.returncode == 0, another.stderr
    assert (await sign_in(api_client, "boss2")).status == 200
    assert PASSWORD not in another.stdout + another.stderr


@pytest.mark.asyncio
async def test_username_from_the_environment(app, api_client, run_bootstrap):
    done = run_bootstrap("--password-file", "-", stdin=PASSWORD,
                         XIAOQU_ADMIN_USERNAME="ops", XIAOQU_ADMIN_NAME="Ops team")
    assert done.returncode == 0, done.stderr
    assert (await app.db.staff.find_one({"username": "ops"}))["name"] == "Ops team"


@pytest.mark.asyncio
@pytest.mark.parametrize("args, stdin, problem", [
    (("--username", "boss"), "", "no terminal to type the password: give --password-file"),
    (("--password-file", "-"), PASSWORD, "username not given"),
    (("--username", "boss", "--password-file", "-"), "short", "at least 10 characters"),
    (("--username", "boss", "--password-file", "/nonexistent/pw"), None, "cannot read"),
    (("--username", "Bad Name!", "--password-file", "-"), PASSWORD, "username"),
])
async def test_unusable_input_creates_nothing(app, run_bootstrap, args, stdin, problem):
    done = run_bootstrap(*args, stdin=stdin)
    assert done.returncode != 0 and problem in done.stderr, done.stderr
    assert await app.db.staff.count_documents({}) == 0


def test_production_bootstrap_needs_the_database_url(settings, tmp_path):
    env = bootstrap_env(settings, tmp_path, XIAOQU_MODE="production")
    del env["MONGODB_URI"]
    done = subprocess.run([sys.executable, "-m", "server", "bootstrap", "--username", "boss",
                           "--password-file", "-"], env=env, input=PASSWORD,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "MONGODB_URI: required" in done.stderr
    assert not (tmp_path / "data").exists()  # no embedded store was started


class Terminal:
    """The command on a pseudo-terminal, typed at as a person would."""

    def __init__(self, command: list[str], env: dict[str, str]):
        self.master, slave = os.openpty()
        self.process = subprocess.Popen(command, env=env, stdin=slave, stdout=slave, stderr=slave,
                                        start_new_session=True)
        os.close(slave)
        self.screen = b""

    def wait_for(self, text: str) -> None:
        deadline = time.monotonic() + PROMPT_TIMEOUT
        while text.encode() not in self.screen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {text!r} on the terminal: {self.screen!r}"
            if select.select([self.master], [], [], remaining)[0]:
                try:
                    self.screen += os.read(self.master, 4096)
                except OSError:  # the command exited and closed the terminal
                    assert text.encode() in self.screen, self.screen
                    return

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def finish(self) -> int:
        code = self.process.wait(60)
        while select.select([self.master], [], [], 0)[0]:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                break
            if not chunk:
                break
            self.screen += chunk
        os.close(self.master)
        return code


@pytest.mark.asyncio
async def test_interactive_bootstrap_does_not_echo_the_password(app, api_client, settings,
                                                                tmp_path):
    terminal = Terminal([sys.executable, "-m", "server", "bootstrap"],
                        bootstrap_env(settings, tmp_path))
    terminal.wait_for("Username: ")
    terminal.type("desk")
    terminal.wait_for("Name: ")
    terminal.type("")  # defaults to the username
    terminal.wait_for("Password: ")
    terminal.type(PASSWORD)
    terminal.wait_for("Password again: ")
    terminal.type(PASSWORD)
    terminal.wait_for("created")
    assert terminal.finish() == 0
    assert b"desk" in terminal.screen  # what is typed at a prompt is echoed...
    assert PASSWORD.encode() not in terminal.screen  # ...but never the password
    assert (await sign_in(api_client, "desk")).status == 200
