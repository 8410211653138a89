"""The SQLite connection every store module shares, and the small text helpers they agree on."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from audiograph.errors import StoreError, first_line
from audiograph.store.migrations import foreign_statements, migrate, unknown_migrations

if TYPE_CHECKING:
    import sqlite_utils

DEFAULT_DB = "audiograph.db"
BUSY_TIMEOUT_SECONDS = 30


def default_db_path() -> Path:
    """`$AUDIOGRAPH_DB`, else ./audiograph.db."""
    return Path(os.environ.get("AUDIOGRAPH_DB") or DEFAULT_DB)


def path_text(path: str | os.PathLike) -> str:
    """A path as the store keeps it: the text itself, or, for a file name that is not valid UTF-8, its
    bytes with each undecodable one written as \\xNN, so that every file has one stable, storable name."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # surrogates that no file-system decoding made
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


_ESCAPED_BYTE = re.compile(r"\\x([0-9a-f]{2})")


def on_disk(stored_path: str | None) -> bool:
    """Whether the file a stored path names (`path_text`'s form, \\xNN for bytes that are not UTF-8) exists."""
    if stored_path is None:
        return False
    if os.path.exists(stored_path):
        return True
    # The name's own bytes, which the file system's decoding gives as surrogates (as os.listdir returns them).
    raw = _ESCAPED_BYTE.sub(lambda m: chr(0xDC00 + int(m.group(1), 16)), stored_path)
    return raw != stored_path and os.path.exists(raw)


def sqlite_error(path: str | os.PathLike, error: sqlite3.Error) -> StoreError:
    """An SQLite failure as a one-line `StoreError` that says what happened to the store at `path`."""
    message = str(error)
    if "readonly" in message or "read-only" in message:
        if _writable(path) and _unwritable_companion(path):
            return _companion_error(path)
        if _writable(path) and not _writable(os.path.dirname(os.path.abspath(path))):
            return StoreError(
                f"{path}: the store's folder is read-only ({message}); copy the store somewhere writable, or pass --db"
            )
        return StoreError(f"{path}: the store is read-only ({message}); copy it somewhere writable, or pass --db")
    if "locked" in message or "busy" in message:
        return StoreError(
            f"{path}: another process holds the store locked (waited up to {BUSY_TIMEOUT_SECONDS} s; {message})"
        )
    if isinstance(error, sqlite3.DatabaseError) and any(
        sign in message for sign in ("malformed", "not a database", "disk I/O", "corrupt")
    ):
        return StoreError(f"{path}: the store is corrupt ({message}); restore it from a backup or rebuild it")
    return StoreError(f"{path}: store error ({message})")


def _writable(path: str | os.PathLike) -> bool:
    """Whether this process may write `path`. Asked of the kernel, never tried by opening the file: closing any
    descriptor of a database file drops every POSIX lock SQLite holds on it in this process."""
    return os.access(path, os.W_OK)


def _unwritable_companion(path: str | os.PathLike) -> str | None:
    """The store's -shm or -wal file when it exists and cannot be written: SQLite gives them the mode of the
    store, so a run while the store was read-only leaves them read-only after it no longer is."""
    return next((c for c in (f"{path}-shm", f"{path}-wal") if os.path.exists(c) and not _writable(c)), None)


def _companion_error(path: str | os.PathLike) -> StoreError:
    return StoreError(
        f"{path}: {_unwritable_companion(path)} is read-only (left by a run while the store was read-only);"
        " delete it when no other audiograph command is running"
    )


def utc_now() -> str:
    """The current UTC time as ISO 8601 text, to the second: the stores' timestamps."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _use_wal(conn: sqlite3.Connection) -> None:
    """Put the store in write-ahead-log mode, unless it is already. SQLite refuses the switch at once, without
    its busy timeout, while another process holds a lock on a store not yet in WAL mode (two runs creating
    one store together), so the switch is retried for as long as the timeout would have waited."""
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            if conn.execute("PRAGMA journal_mode = wal").fetchone()[0] == "wal":
                return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e):
                raise
        if time.monotonic() > deadline:
            raise sqlite3.OperationalError("database is locked")
        time.sleep(0.02)


class Connection:
    """The open store file: its connection (schema migrated), transactions, meta values and models folder."""

    def __init__(self, path: str | os.PathLike | None = None, *, must_exist: bool = False):
        self.path = Path(path) if path is not None else default_db_path()
        if must_exist and not self.path.exists():
            raise StoreError(
                f"{self.path}: no store here (make one with `audiograph embed-audio DIR` or `audiograph"
                " import-tracks CSV`, or pass --db)"
            )
        if self.path.is_dir():
            raise StoreError(f"{self.path}: is a folder, not a store file")
        if must_exist and self.path.stat().st_size == 0:  # SQLite would take it for a new, empty store
            raise StoreError(f"{self.path}: an empty file, not an audiograph store; pass another --db")
        if not self.path.parent.is_dir():  # a new store is made only in a folder that exists
            raise StoreError(f"{self.path}: the folder {self.path.parent} does not exist")
        # A store in a folder this process cannot write (a read-only share or mount), with no -shm or -wal
        # beside it: SQLite cannot make the -shm that reading in WAL mode needs, and nobody can be writing
        # it (a writer would need that folder too), so it is opened as an unchanging file.
        self.immutable = (
            self.path.exists()
            and not _writable(self.path.parent)
            and not any(os.path.exists(f"{self.path}{suffix}") for suffix in ("-shm", "-wal"))
        )
        try:
            # The busy timeout is part of the connection from its first statement, so that a process
            # creating the schema waits for another one doing the same instead of failing.
            if self.immutable:
                uri = f"{self.path.resolve().as_uri()}?immutable=1"
                self.conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_SECONDS)
            else:
                self.conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS)
            # As sqlite-utils sets it: a row that INSERT OR REPLACE deletes fires the delete triggers.
            self.conn.execute("PRAGMA recursive_triggers = on")
            # Functions with side effects run only from audiograph's own statements, never from a store's schema.
            self.conn.execute("PRAGMA trusted_schema = off")
            tables = [r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            if tables and "_migrations" not in tables:  # another program's database: never add tables to it
                self.conn.close()
                raise StoreError(
                    f"{self.path}: an SQLite database, but not an audiograph store (its tables:"
                    f" {', '.join(sorted(tables)[:5])}); pass another --db"
                )
            newer = unknown_migrations(self.conn)
            if newer:
                self.conn.close()
                raise StoreError(
                    f"{self.path}: made by a newer audiograph (its schema has steps this version does not know:"
                    f" {', '.join(newer[:3])}); upgrade audiograph to use it"
                )
            # After the newer-version check: a newer audiograph's migrations may add triggers of their own.
            foreign = foreign_statements(self.conn)
            if foreign:
                self.conn.close()
                raise StoreError(
                    f"{self.path}: holds SQL that audiograph does not write ({', '.join(foreign[:3])}), which would"
                    " run inside its own statements; not opened (if you added it yourself, drop it with sqlite3)"
                )
            if not self.immutable:
                _use_wal(self.conn)
            migrate(self.conn)
        except sqlite3.DatabaseError as e:
            if "readonly" in str(e) or "locked" in str(e) or "busy" in str(e):
                raise sqlite_error(self.path, e) from None
            raise StoreError(f"{self.path}: not a usable audiograph store ({e})") from None

    def check_writable(self) -> None:
        """A `StoreError` now, rather than at the end of a long run, when the store (or its -shm or -wal file)
        cannot be written."""
        if not _writable(self.path):
            raise StoreError(f"{self.path}: the store is read-only; copy it somewhere writable, or pass --db")
        if self.immutable:
            raise StoreError(
                f"{self.path}: the store's folder is read-only; copy the store somewhere writable, or pass --db"
            )
        if _unwritable_companion(self.path):
            raise _companion_error(self.path)

    @functools.cached_property
    def db(self) -> sqlite_utils.Database:
        """sqlite-utils over this connection, for its table operations; imported on first use, so that a
        command that only reads (a query) does not pay for the import (0.1 s of a cold start)."""
        import sqlite_utils

        return sqlite_utils.Database(self.conn)

    def execute(self, sql: str, parameters=()) -> sqlite3.Cursor:
        """One statement on the store's connection."""
        return self.conn.execute(sql, parameters)

    def query(self, sql: str, parameters=()) -> Iterator[dict]:
        """The rows of a SELECT as dicts keyed by column name."""
        cursor = self.conn.execute(sql, parameters)
        keys = [d[0] for d in cursor.description]
        for row in cursor:
            yield dict(zip(keys, row))

    @contextlib.contextmanager
    def transaction(self):
        """One write transaction, all or nothing. It takes SQLite's write lock at its start (BEGIN
        IMMEDIATE), so a concurrent writer waits for the busy timeout instead of failing midway."""
        conn = self.conn
        if conn.in_transaction:  # nested: a savepoint inside the open transaction
            with self.db.atomic():
                yield
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise sqlite_error(self.path, e) from None
        try:
            yield
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.OperationalError as e:
            if conn.in_transaction:
                conn.rollback()
            raise sqlite_error(self.path, e) from None

    def check(self, tables: list[str] | None = None) -> None:
        """Raise `StoreError` unless SQLite's quick check finds `tables` (default: all) and their
        indexes intact. Payload bytes have no checksum in SQLite; structure is what this can see."""
        try:
            for table in tables or [None]:
                rows = self.execute("PRAGMA quick_check" + (f"('{table}')" if table else "")).fetchall()
                if rows != [("ok",)]:
                    raise sqlite_error(self.path, sqlite3.DatabaseError(f"corrupt: {rows[0][0]}"))
        except sqlite3.DatabaseError as e:
            raise sqlite_error(self.path, e) from None

    def compact(self) -> None:
        """Fold the write-ahead log into the store file (before copying the file elsewhere)."""
        self.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @property
    def models_dir(self) -> Path:
        """Where checkpoints live: a folder beside the store file."""
        return self.path.parent / f"{self.path.stem}.models"

    @contextlib.contextmanager
    def damaged(self, what: str):
        """Within this block, a stored value that cannot be what it should be (the file was edited, or a disk
        failed) raises a one-line `StoreError` naming the store and `what`, not a traceback."""
        try:
            yield
        except (ValueError, TypeError, IndexError, KeyError, AttributeError) as e:
            raise StoreError(f"{self.path}: {what} is damaged ({first_line(e)[:200]})") from None

    def set_meta(self, key: str, value) -> None:
        """Store one JSON value under `key`."""
        with self.transaction():
            self.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [key, json.dumps(value)])

    def get_meta(self, key: str, default=None):
        """The JSON value stored under `key`, else `default`."""
        row = self.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        with self.damaged(f"the stored {key!r} value"):
            return default if row is None else json.loads(row[0])
