"""Vectors by named space, keyed on (space, track id) and tagged with the model that made them and the
content hash they were made from; searched through an in-memory `VectorIndex` per (space, model)."""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np

from audiograph.errors import StoreError
from audiograph.spaces import REMAKE_COMMANDS, SPACE_KINDS
from audiograph.store.ann import real_cache_folder
from audiograph.store.connection import Connection, on_disk, utc_now
from audiograph.store.index import Hit, VectorIndex, blobs_to_matrix, vector_to_blob
from audiograph.store.migrations import versions_tracked
from audiograph.store.models import ModelRegistry


class Vectors:
    """The `vectors` table: write, list, load as a matrix, and search."""

    def __init__(self, store: Connection, models: ModelRegistry):
        self.store, self.models = store, models
        self._indexes: dict[tuple[str, str], VectorIndex] = {}
        self._ann_indexes: dict[tuple[str, str, int], object] = {}  # current approximate indexes, once read
        self._spaces: tuple[list, dict] | None = None  # (space versions, `spaces()`) as last counted
        self._triggers_checked: bool | None = None

    def put_rows(self, rows: list[tuple[str, str, str, str | None, np.ndarray]], now: str) -> None:
        """Write vectors given as (space, track id, model id, content hash, vector), in one statement inside the
        caller's transaction."""
        self.store.conn.executemany(
            "INSERT OR REPLACE INTO vectors (space, track_id, model_id, content_hash, vector, updated)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [
                (space, track, model, digest, vector_to_blob(vector), now)
                for space, track, model, digest, vector in rows
            ],
        )

    def put(self, space: str, model_id: str, vectors: dict[str, np.ndarray]) -> None:
        """Store vectors for existing tracks (keyed by track id) in one transaction; none when any is not finite."""
        broken = [t for t, v in vectors.items() if not np.isfinite(v).all()]
        if broken:
            raise StoreError(
                f"model '{model_id}' gave {len(broken)} non-finite '{space}' vectors (track {broken[0]}, ...);"
                " none were written, and the space keeps its vectors"
            )
        now = utc_now()
        hashes = dict(self.store.execute("SELECT id, content_hash FROM tracks").fetchall())
        with self.store.transaction():
            self.put_rows([(space, t, model_id, hashes.get(t), v) for t, v in vectors.items()], now)
        self.forget_indexes()

    def delete_track(self, track_id: str) -> None:
        """Drop every vector of a track (inside the caller's transaction)."""
        self.store.execute("DELETE FROM vectors WHERE track_id = ?", [track_id])

    def forget_indexes(self) -> None:
        """Drop the loaded search indexes, after a write."""
        self._indexes.clear()
        self._ann_indexes.clear()

    def states(self, space: str, dim: int | None = None) -> dict[str, tuple[str, str]]:
        """track id -> (model id, content hash) of its stored vector in `space`; with `dim`, vectors of
        another length are left out (so that they count as missing and are made again)."""
        rows = self.store.execute(
            "SELECT track_id, model_id, content_hash, length(vector) FROM vectors WHERE space = ?", [space]
        )
        return {t: (m, h) for t, m, h, n in rows if dim is None or n == 4 * dim}

    def spaces(self) -> dict[str, dict[str, int]]:
        """space -> {model id: number of vectors}."""
        versions = self.store.execute("SELECT space, version FROM space_versions ORDER BY space").fetchall()
        if self._spaces is None or self._spaces[0] != versions:
            out: dict[str, dict[str, int]] = {}
            for space, model_id, n in self.store.execute(
                "SELECT space, model_id, count(*) FROM vectors GROUP BY space, model_id ORDER BY space"
            ):
                out.setdefault(space, {})[model_id] = n
            self._spaces = (versions, out)
        return {space: dict(counts) for space, counts in self._spaces[1].items()}

    def require_space(self, space: str) -> dict[str, int]:
        """{model id: number of vectors} of `space`; a `StoreError` naming the spaces that have vectors when it has none."""
        spaces = self.spaces()
        if not spaces.get(space):
            have = ", ".join(spaces) or "none"
            raise StoreError(f"{self.store.path}: no vectors in space '{space}' (spaces with vectors: {have})")
        return spaces[space]

    def search_model(self, space: str) -> tuple[str, int]:
        """The model whose vectors a search in `space` uses (the newest registered one with vectors), and how
        many vectors of older models the space still holds (never mixed into the search)."""
        counts = self.spaces().get(space)
        if not counts:
            raise StoreError(f"{self.store.path}: no vectors in space '{space}'")
        registered = self.models.ids_for_space(space)
        model_id = next((m for m in registered if m in counts), max(counts, key=counts.get))
        return model_id, sum(n for m, n in counts.items() if m != model_id)

    def matrix(self, space: str, model_id: str | None = None) -> tuple[list[str], np.ndarray]:
        """(track ids, [N, d] float32 matrix) of one model's vectors in `space`, ordered by id: the stored
        vectors, raw. Searches compare them as `index` holds them (z-scored per dimension in the descriptor and
        imported spaces, unit length), which `index(space).matrix` gives."""
        model_id = model_id or self.search_model(space)[0]
        rows = self.store.execute(
            "SELECT track_id, vector FROM vectors WHERE space = ? AND model_id = ? ORDER BY track_id",
            [space, model_id],
        ).fetchall()
        if not rows:
            return [], np.zeros((0, 0), np.float32)
        size = Counter(len(r[1]) for r in rows).most_common(1)[0][0]
        bad = [(r[0], len(r[1])) for r in rows if len(r[1]) != size]
        if bad or not size or size % 4:
            track, length = bad[0] if bad else (rows[0][0], size)
            self._damaged(
                space, model_id, len(bad) or len(rows), f"track {track}: {length} bytes where the others have {size}"
            )
        ids, matrix = [r[0] for r in rows], blobs_to_matrix([r[1] for r in rows], size // 4)
        finite = np.isfinite(matrix).all(axis=1)
        if not finite.all():
            self._damaged(space, model_id, int((~finite).sum()), f"track {ids[int(np.argmin(finite))]} is not finite")
        return ids, matrix

    def _damaged(self, space: str, model_id: str, count: int, example: str):
        kind = (self.models.get(model_id) or {}).get("kind") or SPACE_KINDS.get(space)
        command = REMAKE_COMMANDS.get(kind, "import-tracks")
        raise StoreError(
            f"{self.store.path}: {count} '{space}' vectors of model '{model_id}' are damaged ({example}); re-run"
            f" `audiograph {command}` to make them again"
        )

    def _versions_tracked(self) -> bool:
        """Whether the triggers that give a space a new `version` at every write of its vectors are in place."""
        if self._triggers_checked is None:
            self._triggers_checked = versions_tracked(self.store.conn)
        return self._triggers_checked

    def version(self, space: str) -> int:
        """A number that every write to `space`'s vectors replaces with a random one (so no two histories share it)."""
        row = self.store.execute("SELECT version FROM space_versions WHERE space = ?", [space]).fetchone()
        return row[0] if row else 0

    def index(self, space: str, model_id: str | None = None) -> VectorIndex:
        """The search index of one model's vectors in `space`, loaded once per process.

        A copy of the index's float32 matrix is kept beside the store (`<db>.index/<space>/exact/`) and
        memory-mapped while the space's version says it is current, so that a new process need not read
        and convert every vector from SQLite again.
        """
        model_id = model_id or self.search_model(space)[0]
        key = (space, model_id)
        if key not in self._indexes:
            config = (self.models.get(model_id) or {}).get("config", {})
            standardize = bool(config.get("standardize"))
            state = {"model_id": model_id, "version": self.version(space), "standardize": standardize}
            # Without its version triggers (a store from elsewhere), the version no longer follows the vectors.
            tracked = self._versions_tracked()
            folder = real_cache_folder(self.store.path, space, "exact") if tracked else None
            index = VectorIndex.load(folder, state) if folder else None
            if index is None:
                self.store.check(["vectors"])  # a damaged table is said, not searched
                ids, matrix = self.matrix(space, model_id)
                index = VectorIndex(ids, matrix, standardize=standardize)
                folder = real_cache_folder(self.store.path, space, "exact", create=True) if tracked else None
                if folder:
                    index.save(folder, state)
            self._indexes[key] = index
        return self._indexes[key]

    def similar(
        self,
        space: str,
        vector: np.ndarray,
        k: int = 10,
        exclude=(),
        model_id: str | None = None,
        normalised: bool = False,
    ) -> list[dict]:
        """The k tracks nearest to `vector` in `space` by cosine, best first, as track rows plus rank and score;
        files of the same bytes (one recording stored twice) are one hit, the first.

        `vector` is a raw vector of the space, or with `normalised` one already in the index's form
        (`VectorIndex.vector`: standardised where the space is, and of unit length).
        """
        model_id = model_id or self.search_model(space)[0]
        index = self.index(space, model_id)
        query = np.asarray(vector, np.float32) if normalised else self.query_vector(space, model_id, vector)
        ann = self.ann_index(space, model_id, len(index))
        wanted = k
        while True:  # copies are rare: a search for k, searched again with more only when copies left too few
            if ann is not None:
                hits = ann.hits(query, k=wanted, exclude=exclude)
            else:
                hits = index.search(query, k=wanted, exclude=exclude, normalised=True)
            rows = self.hit_rows(hits, k)
            if len(rows) == k or len(hits) < wanted:
                return rows
            wanted *= 2

    def query_vector(self, space: str, model_id: str, vector: np.ndarray) -> np.ndarray:
        """A raw vector of `space` (made by `model_id`) in the form the index holds its rows: standardised where
        the space is, of unit length. A `StoreError` when it is not finite or not of the space's width."""
        index = self.index(space, model_id)
        if not np.isfinite(vector).all():
            raise StoreError(f"space '{space}': the query's vector is not finite (is model '{model_id}' damaged?)")
        if len(vector) != index.matrix.shape[1]:
            raise StoreError(f"space '{space}' holds {index.matrix.shape[1]}-d vectors, not {len(vector)}-d")
        return index.normalise(vector)

    def ann_index(self, space: str, model_id: str, n_rows: int):
        """The approximate index built for `space` (`audiograph index`), when it exists and is current for
        this model, row count and version of the vectors; else None, and searches scan exactly. A damaged one is warned about."""
        from audiograph.store.ann import AnnIndex, AnnIndexError

        key = (space, model_id, n_rows)  # a write here forgets it (`forget_indexes`): no version needed in the key
        if key in self._ann_indexes:
            return self._ann_indexes[key]
        folder = real_cache_folder(self.store.path, space)
        if folder is None or not self._versions_tracked():
            return None
        standardized = bool((self.models.get(model_id) or {}).get("config", {}).get("standardize"))
        try:
            ann = AnnIndex.load(folder, model_id, n_rows, standardized, self.version(space))
        except AnnIndexError as e:
            warnings.warn(f"{e}; searching exactly instead (rebuild it with `audiograph index {space}`)", stacklevel=2)
            return None
        if ann is not None:  # an absent or stale index is looked for again: `index` may build it meanwhile
            self._ann_indexes[key] = ann
        return ann

    def hit_rows(self, hits: list[Hit], k: int | None = None) -> list[dict]:
        """Search hits as rows: rank, score, track id, and the track's path, title, artist and genre; the first `k`
        of them after leaving out each hit whose file has the bytes of an earlier hit's."""
        out, contents = [], {}  # content hash -> its hit's position in `out`
        for hit in hits:
            row = self.store.execute(
                "SELECT path, title, artist, genre, content_hash FROM tracks WHERE id = ?", [hit.id]
            ).fetchone()
            row = dict(zip(("path", "title", "artist", "genre", "content_hash"), row)) if row else {}
            fields = {k: row.get(k) for k in ("path", "title", "artist", "genre")}
            copy_of = contents.get(row.get("content_hash"))
            if copy_of is not None:
                # The same bytes under another name: one hit, under a name still on disk where the first is not
                # (a file moved since it was stored keeps its old row until `embed-audio --prune`).
                kept = out[copy_of]
                if not on_disk(kept["path"]) and on_disk(fields["path"]):
                    out[copy_of] = {**kept, "track_id": hit.id, **fields}
                continue
            if row.get("content_hash") is not None:
                contents[row["content_hash"]] = len(out)
            out.append({"rank": len(out) + 1, "score": hit.score, "track_id": hit.id, **fields})
            if len(out) == k:
                break
        return out
