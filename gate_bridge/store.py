"""The bridge's local state in one SQLite file: events not yet acknowledged by the
server, used single-use nonces, command ids already acted on, the cached config.

WAL with synchronous=FULL: a commit is on disk when it returns, so a power cut
loses no acknowledged-to-the-door event, no used nonce and no command claim (a
command's later levels and the forgetting of acknowledged events are written
unsynced: losing those costs a lower level in a repeat's answer, or a resend). The event buffer is
bounded; when it is full the oldest event is dropped (and counted), because a
gate that stops working when its buffer fills would be worse.
"""

import contextlib
import json
import sqlite3
import time

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: a seq is never reused
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS nonces (nonce BLOB PRIMARY KEY, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS nonces_expires ON nonces (expires);
CREATE TABLE IF NOT EXISTS commands (id TEXT PRIMARY KEY, level TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
COMMAND_MEMORY = 86400.0  # seconds a command id is remembered (its ttl is seconds)


class Store:
    def __init__(self, path: str, max_events: int = 10000):
        self.max_events = max_events
        self.db = sqlite3.connect(path, isolation_level=None)  # explicit transactions: _transaction
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        self.count = self.db.execute("SELECT count(*) FROM events").fetchone()[0]

    def close(self) -> None:
        self.db.close()

    def _meta(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def _set_meta(self, key: str, value) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                        (key, json.dumps(value)))

    # -- events -----------------------------------------------------------------

    def append_event(self, type_: str, at: float, **data) -> int:
        """Store an event durably; returns its seq (monotonic for this bridge)."""
        with self._transaction():
            if self.count >= self.max_events:
                self.db.execute("DELETE FROM events WHERE seq = (SELECT min(seq) FROM events)")
                self._set_meta("dropped", self._meta("dropped", 0) + 1)
                self.count -= 1
            cursor = self.db.execute("INSERT INTO events (body) VALUES (?)",
                                     (json.dumps({"type": type_, "at": at, **data}),))
        self.count += 1
        return cursor.lastrowid

    def unacked(self, after: int, limit: int) -> list[dict]:
        """Buffered events with seq > `after`, oldest first."""
        rows = self.db.execute("SELECT seq, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                               (after, limit))
        return [{"seq": seq, **json.loads(body)} for seq, body in rows]

    def ack_upto(self, seq: int) -> None:
        """The server has stored every event up to `seq`: forget them. Unsynced: lost in a
        power cut, they are only sent again, and the server ignores repeats."""
        with self._unsynced():
            cursor = self.db.execute("DELETE FROM events WHERE seq <= ?", (seq,))
            self._set_meta("acked_seq", max(seq, self.acked_seq))
        self.count -= cursor.rowcount

    @property
    def acked_seq(self) -> int:
        return self._meta("acked_seq", 0)

    @property
    def fill_ratio(self) -> float:
        return self.count / self.max_events

    @property
    def dropped(self) -> int:
        return self._meta("dropped", 0)

    # -- single-use nonces (the decision module's `nonces`) -----------------------------

    def use(self, nonce: bytes, expires: float) -> bool:
        """Mark a nonce used; False if it already was (a replayed code)."""
        with self._transaction():
            cursor = self.db.execute("INSERT OR IGNORE INTO nonces (nonce, expires) VALUES (?, ?)",
                                     (bytes(nonce), expires))
        return cursor.rowcount == 1

    def add_used(self, nonces: list[tuple[bytes, float]]) -> None:
        """Nonces the server saw used (config push), so a code used at another gate is refused."""
        with self._transaction():
            self.db.executemany("INSERT OR IGNORE INTO nonces (nonce, expires) VALUES (?, ?)",
                                [(bytes(n), float(e)) for n, e in nonces])

    def prune(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._transaction():
            self.db.execute("DELETE FROM nonces WHERE expires < ?", (now,))
            self.db.execute("DELETE FROM commands WHERE at < ?", (now - COMMAND_MEMORY,))

    # -- commands: act at most once per id ------------------------------------------------

    def command_level(self, command_id: str) -> str | None:
        row = self.db.execute("SELECT level FROM commands WHERE id = ?", (command_id,)).fetchone()
        return row[0] if row else None

    def claim_command(self, command_id: str, level: str, at: float) -> bool:
        """Record a new command id; False if it was seen before (never act twice)."""
        with self._transaction():
            cursor = self.db.execute("INSERT OR IGNORE INTO commands (id, level, at) VALUES (?, ?, ?)",
                                     (command_id, level, at))
        return cursor.rowcount == 1

    def set_command_level(self, command_id: str, level: str) -> None:
        """The level a command reached, for a duplicate's answer. Not synced on its own (the
        next synced commit carries it): lost in a power cut, a repeat reports a lower level,
        never acts twice — the claim, which prevents that, is synced."""
        with self._unsynced():
            self.db.execute("UPDATE commands SET level = ? WHERE id = ?", (level, command_id))

    @contextlib.contextmanager
    def _unsynced(self):
        """A transaction committed without waiting for the disk (WAL keeps it consistent;
        the next synced commit makes it durable too)."""
        self.db.execute("PRAGMA synchronous=NORMAL")
        try:
            with self._transaction():
                yield
        finally:
            self.db.execute("PRAGMA synchronous=FULL")

    @contextlib.contextmanager
    def _transaction(self):
        """One atomic commit (the connection is in autocommit mode, where `with db:` would
        commit each statement on its own)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- cached config ------------------------------------------------------------------

    def config(self) -> dict | None:
        return self._meta("config")

    def save_config(self, config: dict) -> None:
        with self._transaction():
            self._set_meta("config", config)
