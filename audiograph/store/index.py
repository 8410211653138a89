"""Exact cosine nearest-neighbour search over one in-memory float32 matrix."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiograph.staging import write_whole


def vector_to_blob(vector: np.ndarray) -> bytes:
    """Little-endian float32 bytes, the store's vector format."""
    return np.asarray(vector, dtype="<f4").tobytes()


def blobs_to_matrix(blobs: list[bytes], dim: int) -> np.ndarray:
    """Stack stored vectors into one [len(blobs), dim] float32 matrix without per-row copies."""
    if not blobs:
        return np.zeros((0, dim), np.float32)
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), dim).astype(np.float32)


# The files `VectorIndex.save` writes besides state.json, named by their state's token.
CACHE_FILE = re.compile(r"(?:matrix|mean|scale)-([0-9a-f]{16})\.npy|ids-([0-9a-f]{16})\.json")


def _cache_file_token(name: str) -> str | None:
    """The token of a file `VectorIndex.save` writes, from its name; None for any other name."""
    match = CACHE_FILE.fullmatch(name)
    return (match.group(1) or match.group(2)) if match else None


def state_token(state: dict) -> str:
    """The 16 hex digits that name the cache files of `state`."""
    return hashlib.blake2b(json.dumps(state, sort_keys=True).encode(), digest_size=8).hexdigest()


def is_regular_file(path: Path) -> bool:
    """Whether `path` is a plain file itself, not a link to one (nor to a device or a pipe)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def write_cache_file(path: Path, write) -> None:
    """`staging.write_whole` for a search cache: its folder holds the cache's files only, so the partial
    files of every killed writer there are removed."""
    write_whole(path, write, leftovers=".*.partial")


@dataclass
class Hit:
    """One search result."""

    index: int
    id: str
    score: float


class VectorIndex:
    """Rows L2-normalised once at load; a query is one matrix-vector product plus a partial sort.

    `matrix` [N, D] is held column-major (each dimension's N values contiguous): BLAS then streams it
    with the kernel that accumulates the scores dimension by dimension (sgemv "N"), which ran twice as
    fast as the row-by-row dot products of a row-major matrix (1M x 128: 31 against 60 ms, 2 threads),
    at about the machine's copy bandwidth.

    With `standardize`, columns are z-scored first (for feature spaces whose dimensions have
    unrelated units, such as tempo in BPM next to spectral flatness).
    """

    def __init__(self, ids: list[str], matrix: np.ndarray, standardize: bool = False):
        self.ids = list(ids)
        matrix = np.asarray(matrix, dtype=np.float32)
        self.mean = self.scale = None
        if standardize and len(matrix):
            self.mean, self.scale = column_statistics(matrix)
        self.matrix = np.asfortranarray(self._normalise(matrix))

    def __len__(self) -> int:
        return len(self.ids)

    @functools.cached_property
    def _position(self) -> dict[str, int]:
        # Built on first use: a query by file never looks an id up, and at 1M rows the dict takes 0.6 s.
        return {track_id: i for i, track_id in enumerate(self.ids)}

    @classmethod
    def load(cls, folder: Path, state: dict) -> VectorIndex | None:
        """The index `save` wrote in `folder` for exactly `state` (a dict naming what the vectors are, such as
        their model and version), memory-mapped; None when there is none for that state, or it is unreadable or
        not what `save` writes (then the caller reads the store again and saves a new one)."""
        token = state_token(state)
        files = {name: folder / f"{name}-{token}.npy" for name in ("matrix", "mean", "scale")}
        try:
            saved = json.loads((folder / "state.json").read_text())
            if not isinstance(saved, dict) or saved.get("state") != state or saved.get("token") != token:
                return None
            if not all(
                is_regular_file(p) for p in (folder / "state.json", folder / f"ids-{token}.json", files["matrix"])
            ):
                return None
            index = cls.__new__(cls)
            index.ids = json.loads((folder / f"ids-{token}.json").read_text())
            index.matrix = np.load(files["matrix"], mmap_mode="r", allow_pickle=False)
            index.mean = index.scale = None
            if state.get("standardize") and isinstance(index.ids, list) and index.ids:  # `save` wrote both
                if not (is_regular_file(files["mean"]) and is_regular_file(files["scale"])):
                    return None  # searched raw, a standardised space would give other neighbours
                index.mean = np.load(files["mean"], mmap_mode="r", allow_pickle=False)
                index.scale = np.load(files["scale"], mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, RecursionError, MemoryError):
            return None
        return index if index._as_saved() else None

    def _as_saved(self) -> bool:
        """Whether a loaded index has the form `save` writes: one string id per row of a column-major float32
        matrix, and finite per-column statistics (read into memory) where it has them."""
        matrix = self.matrix
        if not (isinstance(matrix, np.ndarray) and matrix.ndim == 2 and matrix.dtype == np.float32):
            return False
        if not matrix.flags.f_contiguous:  # a row-major one predates the layout
            return False
        if not (isinstance(self.ids, list) and len(self.ids) == len(matrix)):
            return False
        if not all(isinstance(track_id, str) for track_id in self.ids):
            return False
        if self.mean is not None:
            if any(s.shape != (matrix.shape[1],) or s.dtype != np.float32 for s in (self.mean, self.scale)):
                return False
            self.mean, self.scale = np.array(self.mean), np.array(self.scale)
            if not (np.isfinite(self.mean).all() and np.isfinite(self.scale).all() and (self.scale > 0).all()):
                return False
        return True

    def save(self, folder: Path, state: dict) -> None:
        """Write the index to `folder` (a real folder: `real_cache_folder`) for `load`, tagged with `state`; the
        old files go once the new ones are in place, so a concurrent reader sees either index whole. Best effort:
        a folder that cannot be written (a read-only store) only means the next process reads the store again."""
        token = state_token(state)
        try:
            write_cache_file(folder / f"matrix-{token}.npy", lambda f: np.save(f, self.matrix, allow_pickle=False))
            if self.mean is not None:
                write_cache_file(folder / f"mean-{token}.npy", lambda f: np.save(f, self.mean, allow_pickle=False))
                write_cache_file(folder / f"scale-{token}.npy", lambda f: np.save(f, self.scale, allow_pickle=False))
            ids = json.dumps(self.ids, ensure_ascii=False).encode()
            write_cache_file(folder / f"ids-{token}.json", lambda f: f.write(ids))
            state_text = json.dumps({"state": state, "token": token}).encode()
            write_cache_file(folder / "state.json", lambda f: f.write(state_text))
            for old in folder.iterdir():
                # Only the names `save` gives, of other states: nothing else in the folder is touched.
                if _cache_file_token(old.name) not in (None, token):
                    old.unlink(missing_ok=True)
        except OSError:
            pass

    def _normalise(self, x: np.ndarray) -> np.ndarray:
        if self.mean is not None:
            x = (x - self.mean) / self.scale
        norms = np.linalg.norm(x, axis=-1, keepdims=True)
        return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)

    def normalise(self, vector: np.ndarray) -> np.ndarray:
        """A raw vector of the space in the index's form: standardised where the space is, unit length."""
        return self._normalise(np.asarray(vector, np.float32))

    def matching(self, normalised: np.ndarray, tolerance: float = 1e-4) -> list[str]:
        """Ids whose normalised vector equals `normalised` to within `tolerance` in every dimension."""
        same = np.abs(self.matrix - np.asarray(normalised, np.float32)[None, :]).max(axis=1) <= tolerance
        return [self.ids[i] for i in np.flatnonzero(same)]

    def vector(self, track_id: str) -> np.ndarray | None:
        """The normalised stored vector of `track_id` (a copy), or None."""
        i = self._position.get(track_id)
        return None if i is None else np.ascontiguousarray(self.matrix[i])

    def search(
        self, query: np.ndarray, k: int = 10, exclude: tuple[str, ...] | set[str] = (), normalised=False
    ) -> list[Hit]:
        """The k rows most cosine-similar to `query`, best first, skipping ids in `exclude`."""
        q = np.asarray(query, dtype=np.float32) if normalised else self._normalise(np.asarray(query, np.float32))
        scores = self.matrix @ q
        for track_id in exclude:
            i = self._position.get(track_id)
            if i is not None:
                scores[i] = -np.inf
        k = min(k, len(self.ids) - sum(1 for t in set(exclude) if t in self._position))
        if k <= 0:
            return []
        top = top_k_rows(scores, k)
        return [Hit(int(i), self.ids[i], float(scores[i])) for i in top]


def column_statistics(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) per column that z-score `matrix`, float32; scale 1 for a constant column, and (0, 1)
    for a matrix without rows."""
    if not len(matrix):
        return np.zeros(matrix.shape[1], np.float32), np.ones(matrix.shape[1], np.float32)
    std = matrix.std(axis=0)
    return matrix.mean(axis=0).astype(np.float32), np.where(std > 1e-12, std, 1.0).astype(np.float32)


def top_k_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest `scores`, largest first.

    A large array is first cut to the scores at or above the k-th largest of a strided sample: the
    sample is part of the array, so at least k scores pass and every one of the top k does. That cut is
    one vectorised comparison, where a partition of the whole array costs a sizeable share of the
    matrix-vector product before it.
    """
    candidates = None
    step = min(64, len(scores) // (16 * k)) if k else 0
    if step > 1:
        sample = scores[::step]
        cut = np.partition(sample, len(sample) - k)[len(sample) - k]
        candidates = np.flatnonzero(scores >= cut)
        scores = scores[candidates]
    top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    top = top[np.argsort(-scores[top], kind="stable")]
    return top if candidates is None else candidates[top]
