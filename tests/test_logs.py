"""One log format (gate_bridge/logs.py): readable text on a terminal, JSON otherwise, the
task's bound ids on every line; the bridge's logging needs nothing beyond the standard library."""

import io
import json
import logging
import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

from gate_bridge import logs
from server.settings import SettingsError, load_settings


@pytest.fixture
def root():
    """The root logger as it was, restored afterwards."""
    logger = logging.getLogger()
    level, handlers = logger.level, logger.handlers[:]
    yield logger
    for handler in logger.handlers[:]:
        if handler not in handlers:
            logger.removeHandler(handler)
    logger.setLevel(level)


def test_auto_is_json_off_a_terminal_with_the_bound_ids(root):
    stream = io.StringIO()
    logs.configure("auto", stream=stream)
    bound = logs.bind(request_id="r-1", trace_id="t" * 32)
    try:
        logging.getLogger("xiaoqu.test").info("opened %s", "c1", extra={"command_id": "c1"})
    finally:
        logs.unbind(bound)
    logging.getLogger("xiaoqu.test").warning("after")
    first, second = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert {k: first[k] for k in ("level", "logger", "message", "command_id", "request_id",
                                  "trace_id")} == {
        "level": "INFO", "logger": "xiaoqu.test", "message": "opened c1", "command_id": "c1",
        "request_id": "r-1", "trace_id": "t" * 32}
    assert first["time"].endswith("Z") and "request_id" not in second


def test_auto_is_text_on_a_terminal_with_fields_after_the_message(root):
    main, side = os.openpty()
    with os.fdopen(side, "w") as terminal:
        logs.configure("auto", stream=terminal)
        logging.getLogger("gate_bridge").warning("session ended", extra={"bridge": "br-1"})
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("gate_bridge").exception("scan failed")
        terminal.flush()
        written = ""
        # The pty hands the bytes over asynchronously: read until the last line is there.
        while not written.endswith("RuntimeError: boom\r\n"):
            assert select.select([main], [], [], 5)[0], f"the terminal got only {written!r}"
            written += os.read(main, 65536).decode()
    os.close(main)
    lines = written.splitlines()
    assert lines[0].endswith("WARNING gate_bridge session ended  bridge=br-1")
    assert lines[1].endswith("ERROR   gate_bridge scan failed")
    assert lines[2] == "Traceback (most recent call last):" and "RuntimeError: boom" in written


def test_a_bad_log_format_setting_is_named():
    with pytest.raises(SettingsError, match="LOG_FORMAT"):
        load_settings(log_format="xml")


def test_the_bridge_logs_without_python_json_logger():
    """On a box without it: auto stays text, json says what to install."""
    script = """
import importlib.abc, io, logging, sys
class NoJsonLogger(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] == "pythonjsonlogger":
            raise ImportError(name)
sys.meta_path.insert(0, NoJsonLogger())
from gate_bridge import logs
stream = io.StringIO()
logs.configure("auto", stream=stream)
logging.getLogger("gate_bridge").info("connected", extra={"session": 1})
assert "INFO    gate_bridge connected  session=1" in stream.getvalue(), stream.getvalue()
try:
    logs.configure("json", stream=stream)
except ValueError as exc:
    assert "pip install python-json-logger" in str(exc)
else:
    raise SystemExit("json without python-json-logger")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=Path(__file__).parent.parent, timeout=60)
    assert result.returncode == 0, result.stderr
