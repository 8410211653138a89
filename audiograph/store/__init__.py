"""The store: one SQLite file that every command reads and writes (schema in README's "Store" section)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import sqlite_utils

from audiograph.errors import ConfigError, StoreError
from audiograph.store.index import Hit, VectorIndex, blobs_to_matrix, vector_to_blob
from audiograph.store.migrations import migrate

try:
    import fcntl
except ImportError:  # Windows: run folders are neither locked nor cleaned up
    fcntl = None

if TYPE_CHECKING:
    from audiograph.graph.csr import CSRGraph

DEFAULT_DB = "audiograph.db"
# Named vector spaces (any other name works too; these are the ones audiograph fills).
DESCRIPTORS_SPACE = "descriptors"
ACOUSTIC_SPACE = "acoustic"
MUSIG_SPACE = "musig"
POPULARITY_SPACE = "popularity"  # popularity imported from a CSV

__all__ = ["Store", "TrackRecord", "Hit", "VectorIndex", "default_db_path", "path_text", "sqlite_error"]
BUSY_TIMEOUT_SECONDS = 30
# Which command writes each space's vectors, for messages that say how to repair them.
_SPACE_COMMANDS = {DESCRIPTORS_SPACE: "embed-audio", ACOUSTIC_SPACE: "embed-audio", MUSIG_SPACE: "embed-musig"}


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


def sqlite_error(path: str | os.PathLike, error: sqlite3.Error) -> StoreError:
    """An SQLite failure as a one-line `StoreError` that says what happened to the store at `path`."""
    message = str(error)
    if "readonly" in message or "read-only" in message:
        return StoreError(f"{path}: the store is read-only ({message}); copy it somewhere writable, or pass --db")
    if "locked" in message or "busy" in message:
        return StoreError(f"{path}: another process kept the store locked for {BUSY_TIMEOUT_SECONDS} s ({message})")
    if isinstance(error, sqlite3.DatabaseError) and any(
        sign in message for sign in ("malformed", "not a database", "disk I/O", "corrupt")
    ):
        return StoreError(f"{path}: the store is corrupt ({message}); restore it from a backup or rebuild it")
    return StoreError(f"{path}: store error ({message})")


# Run folders new_model_id names (e.g. audio-encoder-20250101-120000-2): only these are ever removed.
_RUN_NAME = re.compile(r"^[a-z][\w.-]*-\d{8}-\d{6}(-\d+)?$")


def _run_marker(folder: Path, model_id: str) -> Path:
    """The file a live training run holds locked, beside its run folder."""
    return folder / f".{model_id}.lock"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class TrackRecord:
    """Everything one analysed (or failed) file contributes to the store, written atomically."""

    id: str
    collection: str | None
    path: str | None
    content_hash: str | None = None
    size: int | None = None
    mtime_ns: int | None = None
    status: str = "ok"
    error: str | None = None
    duration: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    format: str | None = None
    tags: dict = field(default_factory=dict)
    vectors: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)  # space -> (model id, vector)
    mel_chunks: list[np.ndarray] | None = None  # float16 [n_mels, frames] each
    frontend: str | None = None  # signature of the front-end that made mel_chunks


class Store:
    """Tracks, vectors per named space, a model registry and the log-mel cache, in one SQLite file."""

    def __init__(self, path: str | os.PathLike | None = None, *, must_exist: bool = False):
        self.path = Path(path) if path is not None else default_db_path()
        if must_exist and not self.path.exists():
            raise StoreError(f"{self.path}: no store here (run `audiograph embed-audio DIR` first, or pass --db)")
        if self.path.is_dir():
            raise StoreError(f"{self.path}: is a folder, not a store file")
        try:
            # The busy timeout is part of the connection from its first statement, so that a process
            # creating the schema waits for another one doing the same instead of failing.
            self.db = sqlite_utils.Database(sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS))
            if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self.db.execute("PRAGMA journal_mode = wal")
            migrate(self.db)
        except sqlite3.DatabaseError as e:
            if "readonly" in str(e) or "locked" in str(e) or "busy" in str(e):
                raise sqlite_error(self.path, e) from None
            raise StoreError(f"{self.path}: not a usable audiograph store ({e})") from None
        self._indexes: dict[tuple[str, str], VectorIndex] = {}
        self._run_locks: dict[str, tuple[int, Path]] = {}  # model id -> (locked descriptor, marker file)

    @contextlib.contextmanager
    def transaction(self):
        """One write transaction, all or nothing. It takes SQLite's write lock at its start (BEGIN
        IMMEDIATE), so a concurrent writer waits for the busy timeout instead of failing midway."""
        conn = self.db.conn
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
                rows = self.db.execute("PRAGMA quick_check" + (f"('{table}')" if table else "")).fetchall()
                if rows != [("ok",)]:
                    raise sqlite_error(self.path, sqlite3.DatabaseError(f"corrupt: {rows[0][0]}"))
        except sqlite3.DatabaseError as e:
            raise sqlite_error(self.path, e) from None

    def close(self) -> None:
        for model_id in list(self._run_locks):
            self._release_run(model_id)
        self.db.close()

    @property
    def models_dir(self) -> Path:
        """Where checkpoints live: a folder beside the store file."""
        return self.path.parent / f"{self.path.stem}.models"

    # -- collections and tracks ---------------------------------------------------------------

    def collection_name(self, root: Path, name: str | None = None) -> str:
        """The collection name for `root` (registering it), so ids of two roots never collide."""
        root = path_text(Path(root).resolve())
        if name is None:
            known = self.db.execute("SELECT name FROM collections WHERE root = ?", [root]).fetchone()
            if known:
                return known[0]
            name = path_text(Path(root).name) or "collection"
        if "/" in name or not name.strip():
            raise ConfigError(f"collection name {name!r} must be non-empty and contain no '/'")
        existing = self.db.execute("SELECT root FROM collections WHERE name = ?", [name]).fetchone()
        if existing and existing[0] != root:
            raise ConfigError(
                f"collection '{name}' already refers to {existing[0]}; name this one with --collection NAME"
            )
        if not existing:
            with self.transaction():  # OR IGNORE: a concurrent run may register the same root first
                self.db.execute(
                    "INSERT OR IGNORE INTO collections (name, root, created) VALUES (?, ?, ?)", [name, root, _now()]
                )
            registered = self.db.execute("SELECT root FROM collections WHERE name = ?", [name]).fetchone()[0]
            if registered != root:
                raise ConfigError(
                    f"collection '{name}' already refers to {registered}; name this one with --collection NAME"
                )
        return name

    def track(self, track_id: str) -> dict | None:
        rows = list(self.db.query("SELECT * FROM tracks WHERE id = ?", [track_id]))
        return rows[0] if rows else None

    def tracks(self, status: str | None = "ok") -> list[dict]:
        """Track rows ordered by id; `status=None` for all."""
        where, args = ("WHERE status = ?", [status]) if status else ("", [])
        return [dict(r) for r in self.db.query(f"SELECT * FROM tracks {where} ORDER BY id", args)]

    def track_by_path(self, path: str | os.PathLike) -> dict | None:
        rows = list(self.db.query("SELECT * FROM tracks WHERE path = ?", [path_text(Path(path).resolve())]))
        return rows[0] if rows else None

    def tracks_by_hash(self, content_hash: str) -> list[dict]:
        return list(self.db.query("SELECT * FROM tracks WHERE content_hash = ? AND status = 'ok'", [content_hash]))

    def file_states(self, collection: str) -> dict[str, dict]:
        """id -> the stored size, mtime, hash and status of a collection's files (for change detection)."""
        rows = self.db.query(
            "SELECT id, size, mtime_ns, content_hash, status FROM tracks WHERE collection = ?", [collection]
        )
        return {r["id"]: r for r in rows}

    def write_tracks(self, records: list[TrackRecord]) -> None:
        """Write tracks with their vectors and mel chunks in one transaction: all of a batch or none."""
        now = _now()
        with self.transaction():
            for r in records:
                r.id, r.path = path_text(r.id), None if r.path is None else path_text(r.path)
                self.db.execute(
                    """INSERT INTO tracks (id, collection, path, size, mtime_ns, content_hash, duration,
                           sample_rate, channels, format, title, artist, album, genre, status, error, updated)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT(id) DO UPDATE SET collection=excluded.collection, path=excluded.path,
                           size=excluded.size, mtime_ns=excluded.mtime_ns, content_hash=excluded.content_hash,
                           duration=excluded.duration, sample_rate=excluded.sample_rate,
                           channels=excluded.channels, format=excluded.format, title=excluded.title,
                           artist=excluded.artist, album=excluded.album, genre=excluded.genre,
                           status=excluded.status, error=excluded.error, updated=excluded.updated""",
                    [
                        r.id, r.collection, r.path, r.size, r.mtime_ns, r.content_hash, r.duration,
                        r.sample_rate, r.channels, r.format, r.tags.get("title"), r.tags.get("artist"),
                        r.tags.get("album"), r.tags.get("genre"), r.status, r.error, now,
                    ],
                )  # fmt: skip
                if r.status == "failed":
                    # A file that no longer decodes must not keep vectors of its old content.
                    self.db.execute("DELETE FROM vectors WHERE track_id = ?", [r.id])
                    self.db.execute("DELETE FROM mels WHERE track_id = ?", [r.id])
                    continue
                for space, (model_id, vector) in r.vectors.items():
                    self._put_vector(space, r.id, model_id, r.content_hash, vector, now)
                if r.mel_chunks is not None:
                    self.db.execute(
                        "INSERT OR REPLACE INTO mels (track_id, content_hash, frontend, n_mels, chunk_frames, data,"
                        " updated) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [
                            r.id, r.content_hash, r.frontend, r.mel_chunks[0].shape[0],
                            json.dumps([c.shape[1] for c in r.mel_chunks]),
                            np.concatenate(r.mel_chunks, axis=1).astype("<f2").tobytes(), now,
                        ],
                    )  # fmt: skip
        self._indexes.clear()

    def touch_tracks(self, states: list[tuple[str, int, int]]) -> None:
        """Record new (size, mtime_ns) for files whose content turned out unchanged."""
        with self.transaction():
            self.db.conn.executemany(
                "UPDATE tracks SET size = ?, mtime_ns = ? WHERE id = ?", [(s, m, i) for i, s, m in states]
            )

    # -- vectors ------------------------------------------------------------------------------

    def _put_vector(self, space, track_id, model_id, content_hash, vector, now) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO vectors (space, track_id, model_id, content_hash, vector, updated)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [space, track_id, model_id, content_hash, vector_to_blob(vector), now],
        )

    def put_vectors(self, space: str, model_id: str, vectors: dict[str, np.ndarray]) -> None:
        """Store vectors for existing tracks (keyed by track id) in one transaction."""
        now = _now()
        hashes = dict(self.db.execute("SELECT id, content_hash FROM tracks").fetchall())
        with self.transaction():
            for track_id, vector in vectors.items():
                self._put_vector(space, track_id, model_id, hashes.get(track_id), vector, now)
        self._indexes.clear()

    def vector_states(self, space: str, dim: int | None = None) -> dict[str, tuple[str, str]]:
        """track id -> (model id, content hash) of its stored vector in `space`; with `dim`, vectors of
        another length are left out (so that they count as missing and are made again)."""
        rows = self.db.execute(
            "SELECT track_id, model_id, content_hash, length(vector) FROM vectors WHERE space = ?", [space]
        )
        return {t: (m, h) for t, m, h, n in rows if dim is None or n == 4 * dim}

    def spaces(self) -> dict[str, dict[str, int]]:
        """space -> {model id: number of vectors}."""
        out: dict[str, dict[str, int]] = {}
        for space, model_id, n in self.db.execute(
            "SELECT space, model_id, count(*) FROM vectors GROUP BY space, model_id ORDER BY space"
        ):
            out.setdefault(space, {})[model_id] = n
        return out

    def search_model(self, space: str) -> tuple[str, int]:
        """The model whose vectors a search in `space` uses (the newest with vectors), and how many
        vectors of older models the space still holds (never mixed into the search)."""
        counts = self.spaces().get(space)
        if not counts:
            raise StoreError(f"{self.path}: no vectors in space '{space}'")
        registered = [
            r["id"] for r in self.db.query("SELECT id FROM models WHERE space = ? ORDER BY created DESC, rowid DESC", [space])
        ]
        model_id = next((m for m in registered if m in counts), max(counts, key=counts.get))
        return model_id, sum(n for m, n in counts.items() if m != model_id)

    def vectors(self, space: str, model_id: str | None = None) -> tuple[list[str], np.ndarray]:
        """(track ids, [N, d] float32 matrix) of one model's vectors in `space`, ordered by id."""
        model_id = model_id or self.search_model(space)[0]
        rows = self.db.execute(
            "SELECT track_id, vector FROM vectors WHERE space = ? AND model_id = ? ORDER BY track_id",
            [space, model_id],
        ).fetchall()
        if not rows:
            return [], np.zeros((0, 0), np.float32)
        size = Counter(len(r[1]) for r in rows).most_common(1)[0][0]
        bad = [(r[0], len(r[1])) for r in rows if len(r[1]) != size]
        if bad or not size or size % 4:
            track, length = bad[0] if bad else (rows[0][0], size)
            command = _SPACE_COMMANDS.get(space, "import-tracks")
            raise StoreError(
                f"{self.path}: {len(bad) or len(rows)} '{space}' vectors of model '{model_id}' are damaged (track"
                f" {track}: {length} bytes where the others have {size}); re-run `audiograph {command}` to make"
                " them again"
            )
        return [r[0] for r in rows], blobs_to_matrix([r[1] for r in rows], size // 4)

    def index(self, space: str, model_id: str | None = None) -> VectorIndex:
        """The search index of one model's vectors in `space`, loaded once per process."""
        model_id = model_id or self.search_model(space)[0]
        key = (space, model_id)
        if key not in self._indexes:
            ids, matrix = self.vectors(space, model_id)
            config = (self.model(model_id) or {}).get("config", {})
            self._indexes[key] = VectorIndex(ids, matrix, standardize=bool(config.get("standardize")))
        return self._indexes[key]

    def similar(
        self, space: str, vector: np.ndarray, k: int = 10, exclude=(), model_id: str | None = None,
        normalised: bool = False,
    ) -> list[dict]:
        """The k tracks nearest to `vector` in `space` by cosine, best first, as track rows plus rank and score.

        `vector` is a raw vector of the space, or with `normalised` one already in the index's form
        (`VectorIndex.vector`: standardised where the space is, and of unit length).
        """
        index = self.index(space, model_id)
        if len(vector) != index.matrix.shape[1]:
            raise StoreError(f"space '{space}' holds {index.matrix.shape[1]}-d vectors, not {len(vector)}-d")
        hits = index.search(vector, k=k, exclude=exclude, normalised=normalised)
        return self._hit_rows(hits)

    def _hit_rows(self, hits: list[Hit]) -> list[dict]:
        out = []
        for rank, hit in enumerate(hits, 1):
            row = self.track(hit.id) or {"id": hit.id}
            out.append({"rank": rank, "score": hit.score, "track_id": hit.id, **{k: row.get(k) for k in ("path", "title", "artist", "genre")}})
        return out

    # -- models -------------------------------------------------------------------------------

    def register_model(
        self,
        model_id: str,
        kind: str,
        space: str,
        *,
        checkpoint: str | os.PathLike | None = None,
        config: dict | None = None,
        metrics: dict | None = None,
        current: bool = False,
    ) -> str:
        """Add (or update) a model in the registry. A checkpoint must lie in `models_dir` (the only place
        models are loaded from) and is kept relative to the store's folder. With `current`, an existing
        model becomes the newest of its kind and space, the one searches use."""
        if checkpoint is not None:
            resolved = Path(checkpoint).resolve()
            if not resolved.is_relative_to(self.models_dir.resolve()):
                raise StoreError(
                    f"model '{model_id}': checkpoint {checkpoint} is outside {self.models_dir}, where"
                    " registered checkpoints must be"
                )
            checkpoint = path_text(resolved.relative_to(self.path.parent.resolve()))
        existing = self.model(model_id)
        with self.transaction():
            if current and existing:  # a new row (and rowid) orders it after every other model
                self.db.execute("DELETE FROM models WHERE id = ?", [model_id])
                existing = None
            self.db["models"].upsert(
                {
                    "id": model_id,
                    "kind": kind,
                    "space": space,
                    "checkpoint": checkpoint,
                    "config": json.dumps(config or {}, sort_keys=True),
                    "metrics": json.dumps(metrics or {}, sort_keys=True),
                    "created": existing["created"] if existing else _now(),
                },
                pk="id",
            )
        self._release_run(model_id)
        return model_id

    def model(self, model_id: str) -> dict | None:
        """A registry row with config and metrics parsed, and `checkpoint` as an absolute path."""
        rows = list(self.db.query("SELECT * FROM models WHERE id = ?", [model_id]))
        return self._model_row(rows[0]) if rows else None

    def new_model_id(self, kind: str, models_dir: str | os.PathLike | None = None) -> str:
        """A fresh model id, `<kind>-<UTC time>`, suffixed when a model or run folder already has it.

        The run folder of the new id is marked as in use until its model is registered or this process
        ends. Run folders that no live process uses and no registered model owns (a training run that was
        killed, or that failed) are removed first.
        """
        folder = Path(models_dir) if models_dir is not None else self.models_dir
        self._remove_abandoned_runs(folder)
        base = f"{kind}-{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}"
        model_id, n = base, 1
        while self.model(model_id) or (folder / model_id).exists() or _run_marker(folder, model_id).exists():
            n += 1
            model_id = f"{base}-{n}"
        self._claim_run(folder, model_id)
        return model_id

    def checkpoint_file(self, row: dict) -> Path:
        """The checkpoint file of a registry row. Refused with a `StoreError` unless it lies in `models_dir`
        once every symbolic link is resolved: a store names files, and must not name any elsewhere."""
        from audiograph.weights import contained_checkpoint

        return contained_checkpoint(row.get("checkpoint"), self.models_dir, f"model '{row['id']}'")

    def _claim_run(self, folder: Path, model_id: str) -> None:
        if fcntl is None:
            return
        marker = _run_marker(folder, model_id)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(marker, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as e:
            raise StoreError(f"{folder}: cannot write the models folder ({e.strerror or e})") from None
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._run_locks[model_id] = (fd, marker)

    def _release_run(self, model_id: str) -> None:
        fd, marker = self._run_locks.pop(model_id, (None, None))
        if fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(marker)
            os.close(fd)

    def _remove_abandoned_runs(self, folder: Path) -> None:
        """Remove the run folders whose marker no live process holds and whose model is not registered.
        A folder without a marker (a registered model's, or one this code never made) is never touched."""
        if fcntl is None or not folder.is_dir():
            return
        registered = {r[0] for r in self.db.execute("SELECT id FROM models")}
        for marker in sorted(folder.glob(".*.lock")):
            model_id = marker.name[1 : -len(".lock")]
            if model_id in registered or model_id in self._run_locks or not _RUN_NAME.match(model_id):
                continue
            try:
                fd = os.open(marker, os.O_RDWR)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a run in progress in another process
                os.close(fd)
                continue
            run = folder / model_id
            if run.is_dir() and not run.is_symlink():
                shutil.rmtree(run, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.unlink(marker)
            os.close(fd)

    def latest_model(self, kind: str) -> dict | None:
        rows = list(self.db.query("SELECT * FROM models WHERE kind = ? ORDER BY created DESC, rowid DESC LIMIT 1", [kind]))
        return self._model_row(rows[0]) if rows else None

    def _model_row(self, row: dict) -> dict:
        row = dict(row)
        row["config"] = json.loads(row["config"] or "{}")
        row["metrics"] = json.loads(row["metrics"] or "{}")
        if row["checkpoint"]:
            row["checkpoint"] = str(self.path.parent / row["checkpoint"])
        return row

    # -- playlists and the graph ---------------------------------------------------------------

    def replace_graph(
        self,
        playlists: list[tuple[str, str, str, int, list[str]]],
        edges: tuple[list[str], list[str], list[float]],
        info: dict,
    ) -> dict | None:
        """Replace the stored playlists and graph in one transaction; returns `stored_graph()` as it was.

        `playlists` holds (id, name, source, entries listed, matched track ids in order);
        `edges` holds parallel lists (src, dst, weight) of undirected edges.
        """
        with self.transaction():
            previous = self.stored_graph()
            for table in ("playlist_tracks", "playlists", "edges"):
                self.db.execute(f"DELETE FROM {table}")
            self.db.conn.executemany(
                "INSERT INTO playlists (id, name, source, entries, matched) VALUES (?, ?, ?, ?, ?)",
                [(pid, name, source, entries, len(tracks)) for pid, name, source, entries, tracks in playlists],
            )
            self.db.conn.executemany(
                "INSERT INTO playlist_tracks (playlist_id, position, track_id) VALUES (?, ?, ?)",
                [(pid, i, t) for pid, _, _, _, tracks in playlists for i, t in enumerate(tracks)],
            )
            src, dst, weight = edges
            self.db.conn.executemany(
                "INSERT INTO edges (src, dst, weight) VALUES (?, ?, ?)",
                [(min(a, b), max(a, b), float(w)) for a, b, w in zip(src, dst, weight)],
            )
            self.set_meta("graph", info)
        return previous

    def stored_graph(self) -> dict | None:
        """The stored graph in brief, {playlists, edges, sources, built}, or None when there is none."""
        info = self.get_meta("graph")
        if info is None:
            return None
        count = self.db.execute("SELECT (SELECT count(*) FROM playlists), (SELECT count(*) FROM edges)").fetchone()
        sources, built = info.get("sources", []), info.get("built")
        return {"playlists": count[0], "edges": count[1], "sources": sources, "built": built}

    def playlists(self) -> list[dict]:
        """Stored playlists with their matched track ids in order: {id, name, source, tracks}."""
        members: dict[str, list[str]] = {}
        for pid, track_id in self.db.execute(
            "SELECT playlist_id, track_id FROM playlist_tracks ORDER BY playlist_id, position"
        ):
            members.setdefault(pid, []).append(track_id)
        return [
            {"id": r["id"], "name": r["name"], "source": r["source"], "tracks": members.get(r["id"], [])}
            for r in self.db.query("SELECT * FROM playlists ORDER BY id")
        ]

    def node_ids(self) -> list[str]:
        """The graph's nodes: every usable track (decoded or imported), ordered by id."""
        return [r[0] for r in self.db.execute("SELECT id FROM tracks WHERE status != 'failed' ORDER BY id")]

    def graph(self, node_ids: list[str] | None = None) -> tuple[list[str], "CSRGraph"]:
        """(node ids, the stored co-occurrence graph over them as a `CSRGraph`)."""
        from audiograph.graph.csr import CSRGraph

        node_ids = self.node_ids() if node_ids is None else node_ids
        if not self.get_meta("graph"):
            raise StoreError(f"{self.path}: no graph yet (run `audiograph build-graph PLAYLISTS...`)")
        position = {t: i for i, t in enumerate(node_ids)}
        src, dst, weight = [], [], []
        for a, b, w in self.db.execute("SELECT src, dst, weight FROM edges"):
            if a in position and b in position:
                src.append(position[a])
                dst.append(position[b])
                weight.append(w)
        return node_ids, CSRGraph.from_edges(src, dst, len(node_ids), weight=weight)

    def put_genre_votes(self, votes: dict[str, list[tuple[str, str]]]) -> None:
        """Record, per track, (source, genre) labels such as the genre of each playlist listing it."""
        with self.transaction():
            self.db.conn.executemany(
                "INSERT OR REPLACE INTO genre_votes (track_id, source, genre) VALUES (?, ?, ?)",
                [(t, source, genre) for t, vs in votes.items() for source, genre in vs],
            )

    def genre_votes(self) -> dict[str, list[tuple[str, str]]]:
        """track id -> [(source, genre)]."""
        out: dict[str, list[tuple[str, str]]] = {}
        for t, source, genre in self.db.execute("SELECT track_id, source, genre FROM genre_votes ORDER BY track_id, source"):
            out.setdefault(t, []).append((source, genre))
        return out

    def set_meta(self, key: str, value) -> None:
        with self.transaction():
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [key, json.dumps(value)])

    def get_meta(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return default if row is None else json.loads(row[0])

    # -- log-mel cache ------------------------------------------------------------------------

    def mel_chunks(self, track_ids: list[str] | None = None, frontend: str | None = None) -> dict[str, list[np.ndarray]]:
        """track id -> its cached log-mel chunks (float16 [n_mels, frames] each)."""
        sql, args = "SELECT track_id, frontend, n_mels, chunk_frames, data FROM mels", []
        if track_ids is not None:
            sql += f" WHERE track_id IN ({','.join('?' * len(track_ids))})"
            args = list(track_ids)
        out = {}
        for track_id, fe, n_mels, lengths, data in self.db.execute(sql, args):
            if frontend is not None and fe != frontend:
                continue
            flat = np.frombuffer(data, dtype="<f2").reshape(n_mels, -1)
            bounds = np.cumsum([0, *json.loads(lengths)])
            out[track_id] = [flat[:, a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        return out

    def mel_states(self) -> dict[str, tuple[str, str]]:
        """track id -> (content hash, front-end signature) of its cached log-mel chunks."""
        return {t: (h, f) for t, h, f in self.db.execute("SELECT track_id, content_hash, frontend FROM mels")}
