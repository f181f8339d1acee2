"""One log format for the server, the gate hub and the bridge (standard library `logging`).

Every line carries time, level, logger and message, plus the fields bound to the running
task (`bind(request_id=..., trace_id=...)`: a contextvar, so a task spawned from a
request keeps its ids) and those passed as `extra=`. Two renderings of the same fields:

- text, for a terminal: `2026-12-02T10:55:43.123Z INFO  xiaoqu.gate_hub message  key=value`;
- JSON, one object a line, for collectors: python-json-logger's formatter. The server
  depends on it; on a gate box it is optional (`pip install python-json-logger`), and
  without it `auto` stays text.

`auto` (the default) is text on a terminal and JSON otherwise. Imports only the standard
library (python-json-logger when present): gate_bridge/ runs on a small box.
"""

import contextvars
import logging
import sys
import time

FORMATS = ("auto", "json", "text")
HANDLER = "xiaoqu"
# Loggers whose DEBUG lines carry whole documents and commands (codes, token hashes): they
# stay at INFO or above whatever the level asked for.
DOCUMENT_LOGGERS = ("pymongo",)
# The attributes every LogRecord has: whatever else a record carries was bound or `extra=`.
STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

_bound: contextvars.ContextVar[dict] = contextvars.ContextVar("xiaoqu_log_fields", default={})


def bind(**fields) -> contextvars.Token:
    """Add fields to every line logged from this task (and tasks it starts) from now on."""
    return _bound.set({**_bound.get(), **{k: v for k, v in fields.items() if v is not None}})


def unbind(token: contextvars.Token) -> None:
    _bound.reset(token)


def bound(name: str):
    return _bound.get().get(name)


class BoundFields(logging.Filter):
    """Copies the task's bound fields onto each record (an explicit `extra=` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _bound.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def extras(record: logging.LogRecord) -> dict:
    return {k: v for k, v in vars(record).items() if k not in STANDARD and not k.startswith("_")}


class TextFormatter(logging.Formatter):
    """Readable on a terminal: the fields after the message as key=value."""

    converter = time.gmtime
    default_msec_format = "%s.%03dZ"
    default_time_format = "%Y-%m-%dT%H:%M:%S"  # UTC, with milliseconds

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = extras(record)
        if not fields:
            return line
        head, newline, trace = line.partition("\n")  # a traceback stays below the fields
        return head + "  " + " ".join(f"{k}={v}" for k, v in fields.items()) + newline + trace


def json_formatter() -> logging.Formatter | None:
    try:
        from pythonjsonlogger.json import JsonFormatter
    except ImportError:
        return None
    formatter = JsonFormatter("{asctime}{levelname}{name}{message}", style="{",
                              rename_fields={"asctime": "time", "levelname": "level",
                                             "name": "logger"},
                              json_ensure_ascii=False, json_default=str)
    for name in ("converter", "default_time_format", "default_msec_format"):
        setattr(formatter, name, getattr(TextFormatter, name))
    return formatter


def configure(fmt: str = "auto", level: int | str = logging.INFO, stream=None) -> None:
    """Send every logger's lines to `stream` (stderr) in the chosen format."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}")
    stream = stream or sys.stderr
    formatter = None
    if fmt == "json" or (fmt == "auto" and not stream.isatty()):
        formatter = json_formatter()
        if formatter is None and fmt == "json":
            raise ValueError("the JSON log format needs python-json-logger "
                             "(pip install python-json-logger)")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter or TextFormatter())
    handler.addFilter(BoundFields())
    handler.set_name(HANDLER)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER]:  # others' stay (pytest's)
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in DOCUMENT_LOGGERS:
        logging.getLogger(name).setLevel(max(root.level, logging.INFO))
