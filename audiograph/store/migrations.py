"""Versioned schema migrations, applied in order and recorded in `_migrations`."""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import sqlite_utils

MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = []


def migration(fn: Callable[[sqlite_utils.Database], None]):
    """Register `fn` as the next migration; its name is its identity, so never rename one."""
    MIGRATIONS.append(fn)
    return fn


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply every migration not yet recorded in the store behind `conn`, each in its own transaction;
    returns their names.

    Each transaction takes the write lock at its start (BEGIN IMMEDIATE) and reads what is applied
    inside it, so two processes opening a new store at once wait for each other: one creates the
    schema and the other finds it made. A store that is up to date is only read, without sqlite-utils.
    """
    pending = [fn for fn in MIGRATIONS if not _applied(conn, fn.__name__)]  # a read: no lock
    if not pending:
        return []
    import sqlite_utils

    db, done = sqlite_utils.Database(conn), []
    for fn in pending:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if not _applied(conn, fn.__name__):
                fn(db)
                conn.execute(
                    "INSERT INTO _migrations (name, applied) VALUES (?, ?)",
                    [fn.__name__, dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")],
                )
                done.append(fn.__name__)
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise
        conn.execute("COMMIT")
    return done


def unknown_migrations(conn: sqlite3.Connection) -> list[str]:
    """The schema steps recorded in the store that this version of audiograph does not have (a store made by
    a newer version), sorted."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_migrations'").fetchone():
        return []
    known = {fn.__name__ for fn in MIGRATIONS}
    return sorted(name for (name,) in conn.execute("SELECT name FROM _migrations") if name not in known)


# The tables the migrations leave in a store (a test compares them with a new store's).
STORE_TABLES = frozenset(
    {
        "_migrations", "collections", "genre_votes", "graph_arrays", "graph_nodes", "mels", "meta", "models",
        "playlist_tracks", "playlists", "space_versions", "tracks", "vectors",
    }
)  # fmt: skip


def foreign_statements(conn: sqlite3.Connection) -> list[str]:
    """The statements in the store behind `conn` that would run inside audiograph's own, by name (sorted): a
    trigger that no step of the migrations makes as it is (it fires on audiograph's writes, and may loop
    without end), and a view in the place of one of its tables (every read of that table runs it). A view of
    another name is the user's own, and never read."""
    found = conn.execute("SELECT type, name, sql FROM sqlite_master WHERE type IN ('view', 'trigger')").fetchall()
    made = {("trigger", name, sql) for f in VERSION_TRIGGERS for name, sql in _version_triggers(*f).items()}
    return sorted(
        f"{kind} {name}"
        for kind, name, sql in found
        if (kind == "trigger" and (kind, name, sql) not in made) or (kind == "view" and name in STORE_TABLES)
    )


def _applied(conn: sqlite3.Connection, name: str) -> bool:
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_migrations'").fetchone()
    if not exists:
        if not conn.in_transaction:
            return False
        conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied TEXT)")
    return conn.execute("SELECT 1 FROM _migrations WHERE name = ?", [name]).fetchone() is not None


@migration
def m001_tracks_vectors_models(db: sqlite_utils.Database) -> None:
    db["collections"].create({"name": str, "root": str, "created": str}, pk="name")
    _create_tracks(db)
    _create_models(db)
    _create_vectors(db)
    _create_mels(db)


def _create_tracks(db: sqlite_utils.Database) -> None:
    """The `tracks` table (one row per file or imported track) and its path and content-hash indexes."""
    db["tracks"].create(
        {
            "id": str,
            "collection": str,
            "path": str,
            "size": int,
            "mtime_ns": int,
            "content_hash": str,
            "duration": float,
            "sample_rate": int,
            "channels": int,
            "format": str,
            "title": str,
            "artist": str,
            "album": str,
            "genre": str,
            "status": str,
            "error": str,
            "updated": str,
        },
        pk="id",
    )
    db["tracks"].create_index(["path"])
    db["tracks"].create_index(["content_hash"])


def _create_models(db: sqlite_utils.Database) -> None:
    """The `models` table: the registry of models that made vectors."""
    db["models"].create(
        {"id": str, "kind": str, "space": str, "checkpoint": str, "config": str, "metrics": str, "created": str},
        pk="id",
    )


def _create_vectors(db: sqlite_utils.Database) -> None:
    """The `vectors` table (one vector per space and track) and its (space, model) index."""
    db["vectors"].create(
        {"space": str, "track_id": str, "model_id": str, "content_hash": str, "vector": bytes, "updated": str},
        pk=("space", "track_id"),
    )
    db["vectors"].create_index(["space", "model_id"])


def _create_mels(db: sqlite_utils.Database) -> None:
    """The `mels` table: the cache of each track's mel spectrogram chunks."""
    db["mels"].create(
        {
            "track_id": str,
            "content_hash": str,
            "frontend": str,
            "n_mels": int,
            "chunk_frames": str,
            "data": bytes,
            "updated": str,
        },
        pk="track_id",
    )


@migration
def m002_playlists_graph(db: sqlite_utils.Database) -> None:
    db["playlists"].create({"id": str, "name": str, "source": str, "entries": int, "matched": int}, pk="id")
    db["playlist_tracks"].create({"playlist_id": str, "position": int, "track_id": str}, pk=("playlist_id", "position"))
    db["playlist_tracks"].create_index(["track_id"])
    # The co-occurrence graph: one row per undirected edge, src < dst.
    db["edges"].create({"src": str, "dst": str, "weight": float}, pk=("src", "dst"))
    db["edges"].create_index(["dst"])
    # Store-wide facts, e.g. how the current graph was built.
    db["meta"].create({"key": str, "value": str}, pk="key")


@migration
def m003_genre_votes(db: sqlite_utils.Database) -> None:
    # Where a track's genre label came from (e.g. the genre of each playlist listing it), so that an
    # evaluation can derive labels from training playlists only.
    db["genre_votes"].create({"track_id": str, "source": str, "genre": str}, pk=("track_id", "source"))


@migration
def m004_edges_without_rowid(db: sqlite_utils.Database) -> None:
    # A graph of millions of edges: keyed by (src, dst) alone, with no second index, writes ~6x faster.
    db.execute("CREATE TABLE edges_new (src TEXT, dst TEXT, weight FLOAT, PRIMARY KEY (src, dst)) WITHOUT ROWID")
    db.execute("INSERT INTO edges_new (src, dst, weight) SELECT src, dst, weight FROM edges")
    db.execute("DROP TABLE edges")
    db.execute("ALTER TABLE edges_new RENAME TO edges")


@migration
def m005_space_versions(db: sqlite_utils.Database) -> None:
    # A counter per space that every write to its vectors bumps (by trigger, so no writer can forget),
    # which tells a cached copy of a space's matrix whether it is still current.
    db.execute("CREATE TABLE space_versions (space TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    db.execute("INSERT INTO space_versions (space, version) SELECT DISTINCT space, 1 FROM vectors")
    _create_version_triggers(db, *VERSION_TRIGGERS[0])


@migration
def m006_graph_as_arrays(db: sqlite_utils.Database) -> None:
    # The graph's edges as three arrays over a node table, instead of one row per edge (see store/graph.py).
    db.execute("CREATE TABLE graph_nodes (position INTEGER PRIMARY KEY, track_id TEXT NOT NULL)")
    db.execute("CREATE TABLE graph_arrays (name TEXT PRIMARY KEY, dtype TEXT, length INTEGER, data BLOB)")
    rows = db.execute("SELECT src, dst, weight FROM edges").fetchall()
    if rows:
        nodes = sorted({t for a, b, _ in rows for t in (a, b)})
        position = {t: i for i, t in enumerate(nodes)}
        db.conn.executemany("INSERT INTO graph_nodes (position, track_id) VALUES (?, ?)", enumerate(nodes))
        arrays = {
            "src": np.array([position[a] for a, _, _ in rows], "<i4"),
            "dst": np.array([position[b] for _, b, _ in rows], "<i4"),
            "weight": np.array([w for _, _, w in rows], "<f4"),
        }
        for name, array in arrays.items():
            db.execute(
                "INSERT INTO graph_arrays (name, dtype, length, data) VALUES (?, ?, ?, ?)",
                [name, array.dtype.str, len(array), array.tobytes()],
            )
    db.execute("DROP TABLE edges")


@migration
def m007_imported_spaces_standardised(db: sqlite_utils.Database) -> None:
    # Feature groups imported from a CSV are searched z-scored, as new imports register them.
    db.execute(
        "UPDATE models SET config = json_set(CASE WHEN json_valid(config) THEN config ELSE '{}' END,"
        " '$.standardize', json('true')) WHERE kind = 'import'"
    )


@migration
def m008_checkpoints_relative_to_the_models_folder(db: sqlite_utils.Database) -> None:
    # Kept relative to the store's folder before, they began with the models folder's name, which follows the
    # store's: a store renamed with its models folder (x.db and x.models to y.db and y.models) lost its models.
    # Only a relative path whose first part is a models folder changes (Windows wrote it with backslashes).
    for model_id, checkpoint in db.execute("SELECT id, checkpoint FROM models WHERE checkpoint IS NOT NULL").fetchall():
        first, separator, rest = checkpoint.replace("\\", "/").partition("/")
        if separator and first.endswith(".models") and rest:
            db.execute("UPDATE models SET checkpoint = ? WHERE id = ?", [rest, model_id])


@migration
def m009_space_versions_unique_to_each_history(db: sqlite_utils.Database) -> None:
    # A counter repeats across stores: a store deleted and made again, or a backup restored, reached the same
    # count with other vectors, and a cached matrix of the old ones passed for current. Every write now draws
    # a fresh random version, which no other history of writes shares.
    for trigger in ("vectors_inserted", "vectors_updated", "vectors_deleted"):
        db.execute(f"DROP TRIGGER {trigger}")
    db.execute("UPDATE space_versions SET version = random()")
    _create_version_triggers(db, *VERSION_TRIGGERS[1])


@migration
def m010_csv_row_genres_are_track_labels(db: sqlite_utils.Database) -> None:
    # import-tracks without --playlist-col kept each row's genre as a vote from "<file>.csv:<line>", as if a
    # playlist had voted it, so that a track in no playlist lost its own label. Those genres are the tracks'
    # own labels (already in `tracks.genre`); votes are for playlists only.
    row_source = re.compile(r".+\.csv:\d+", re.IGNORECASE)
    if "genre_votes" not in db.table_names():
        return
    sources = {s for (s,) in db.execute("SELECT DISTINCT source FROM genre_votes").fetchall()}
    for source in sorted(s for s in sources if row_source.fullmatch(s)):
        db.execute("DELETE FROM genre_votes WHERE source = ?", [source])


# The version triggers' two forms: m005's counter, then m009's random draw. These are the only views and
# triggers the migrations make; a migration that adds one adds it to what `foreign_statements` accepts.
VERSION_TRIGGERS = (("1", "version + 1"), ("random()", "random()"))


def versions_tracked(conn: sqlite3.Connection) -> bool:
    """Whether the store's version triggers are the latest migration's, as written: then every write to a
    space's vectors gives the space a new version, and a cached copy of them can tell it is stale."""
    found = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall())
    return all(found.get(name) == sql for name, sql in _version_triggers(*VERSION_TRIGGERS[-1]).items())


def _version_triggers(first: str, following: str) -> dict[str, str]:
    """name -> CREATE statement of the triggers that set a space's version to `first` at its first vector and
    to `following` (SQL) at every later insert, update or delete of its vectors."""
    bump = (
        f"INSERT INTO space_versions (space, version) VALUES ({{row}}.space, {first})"
        f" ON CONFLICT (space) DO UPDATE SET version = {following};"
    )
    return {
        "vectors_inserted": f"CREATE TRIGGER vectors_inserted AFTER INSERT ON vectors BEGIN {bump.format(row='NEW')} END",
        "vectors_updated": "CREATE TRIGGER vectors_updated AFTER UPDATE ON vectors"
        f" BEGIN {bump.format(row='NEW')} {bump.format(row='OLD')} END",
        "vectors_deleted": f"CREATE TRIGGER vectors_deleted AFTER DELETE ON vectors BEGIN {bump.format(row='OLD')} END",
    }


def _create_version_triggers(db: sqlite_utils.Database, first: str, following: str) -> None:
    for statement in _version_triggers(first, following).values():
        db.execute(statement)
