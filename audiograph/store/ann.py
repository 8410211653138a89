"""An approximate nearest-neighbour index (faiss) beside the store, for catalogues where the exact scan is slow.

The index is built from a space's unit-length float32 rows (cosine similarity = inner product), so a
query must be in the same normalised form as the rows (`VectorIndex.normalise`). Which faiss index, by size:

- below `FLAT_MAX_ROWS` rows, none to speak of: `IndexFlatIP`, the exact scan (well under 10 ms there);
- up to `PQ_MAX_ROWS`, "pq": a product-quantised copy of every row (d/2 sub-quantizers of 4 bits, 16 times
  smaller than float32) scanned with faiss's SIMD fast-scan, whose best `k_factor` x k candidates are then
  re-ranked by their exact inner product (`PQ{d/2}x4fs,RFlat`);
- above it, "ivf": the same behind an inverted file of 4 * sqrt(n) lists (`IVF{nlist},PQ{d/2}x4fs,RFlat`), so
  that a query scans only `nprobe` lists of codes instead of all n.

Why not HNSW (available as kind="hnsw"): measured on 1M random unit vectors of 128 dimensions on a busy
2-core machine, HNSW (M 32, efConstruction 64) took 14 minutes to build and reached recall@10 0.80 at
efSearch 2048 in 38 ms a query, against 65 ms for the exact scan; "pq" built in 21-48 s and reached recall@10
0.97 at 11-15 times the exact scan's queries per second (`tools/bench_query.py --ann`). Random isotropic
vectors are the hardest case for a graph or an inverted file (no clusters, no low-dimensional structure);
the re-ranked quantised scan does not depend on that structure.

The search-time knobs (`k_factor`, IVF `nprobe`, HNSW `efSearch`) are calibrated at build time: raised until
the index finds `target_recall` of the exact top 10 of held-out rows, and saved with the index.

On disk (`space_cache_folder`): `index.faiss` (faiss's own format), `ids.bin` (the row ids, UTF-8, back to back),
`id_offsets.npy` (int64 byte offsets, n + 1 of them), `rows.npy` (the caller's row of each faiss row: held-out
calibration rows are added last) and `ann.json` (model id, row count, kind, parameters and file sizes), written
last, so that an interrupted save reads as absent or corrupt, never as current.
Nothing here is pickled.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audiograph.errors import ConfigError, StoreError
from audiograph.spaces import space_folder_name
from audiograph.store.index import Hit, is_regular_file, write_cache_file

FLAT_MAX_ROWS = 10_000
PQ_MAX_ROWS = 10_000_000  # 1M rows: 32 MB of codes scanned a query; at 10M, 320 MB: then only some lists
PQ_TRAINING_ROWS = 100_000
IVF_K_FACTOR = 64
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 64
TARGET_RECALL = 0.95
# faiss splits a search over queries, so fewer than this many gain nothing from threads, and OpenMP's
# start-up and spin-waits then cost more than the search: measured 8.4 ms for one query over 20k rows with
# 2 threads on a busy 2-core machine, 0.08 ms with 1.
SMALL_BATCH = 8
MIN_QUANTIZED_ROWS = 16 * 39  # product quantisation trains 16 centroids per sub-quantizer, on 39 rows each
CALIBRATION_QUERIES = 300
CALIBRATION_K = 10
CALIBRATION_MARGIN = 0.01  # calibrate a little above the target: the sample's recall is an estimate
FORMAT_VERSION = 1
META_FILE = "ann.json"
INDEX_FILE = "index.faiss"
IDS_FILE = "ids.bin"
OFFSETS_FILE = "id_offsets.npy"
ROWS_FILE = "rows.npy"
DATA_FILES = (INDEX_FILE, IDS_FILE, OFFSETS_FILE, ROWS_FILE)
KINDS = ("auto", "flat", "pq", "ivf", "hnsw")


class AnnIndexError(StoreError):
    """An approximate index on disk is unreadable; rebuilding it (or deleting its folder) repairs it."""


def import_faiss():
    """The faiss module, or a ConfigError saying how to install it."""
    try:
        import faiss
    except ImportError:
        raise ConfigError(
            "the approximate index needs faiss: install audiograph[ann] (pip install 'audiograph[ann]')"
        ) from None
    return faiss


@contextlib.contextmanager
def faiss_threads(count: int):
    """faiss's OpenMP thread count set to `count` within the block, restored after."""
    faiss = import_faiss()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(count)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def write_index(faiss, index, file) -> None:
    """Stream `index` into the open binary `file`, as `faiss.write_index` writes a path: serialised whole first,
    a large index would need its size again in memory."""
    if hasattr(faiss, "PyCallbackIOWriter"):
        faiss.write_index(index, faiss.PyCallbackIOWriter(file.write))
    else:  # an older faiss
        file.write(faiss.serialize_index(index).tobytes())


_FAISS_LIMIT_LOCK = threading.Lock()


def read_bounded_index(faiss, path: Path):
    """`faiss.read_index(path)`, each array it reads bounded by the file's own size (where faiss can bound
    them): a file of a few kilobytes that claims a vector of many gigabytes is refused before anything is
    allocated, instead of exhausting memory. faiss's limit is process-wide, so it is set and restored under
    a lock."""
    if not hasattr(faiss, "set_deserialization_vector_byte_limit"):  # an older faiss, without the limit
        return faiss.read_index(str(path))
    with _FAISS_LIMIT_LOCK:
        previous = faiss.get_deserialization_vector_byte_limit()
        # faiss compares an array's length with a quarter of the limit, per element size.
        faiss.set_deserialization_vector_byte_limit(4 * path.stat().st_size + (1 << 20))
        try:
            return faiss.read_index(str(path))
        finally:
            faiss.set_deserialization_vector_byte_limit(previous)


def faiss_reason(error: Exception) -> str:
    """The reason in a faiss C++ exception's message, without its source location, on one line."""
    text = " ".join(str(error).split()) or type(error).__name__
    match = re.search(r"\.(?:cpp|h):\d+: (?:Error: )?(.*)", text)
    return (match.group(1) if match else text)[:200]


def space_cache_folder(db_path: str | os.PathLike, space: str) -> Path:
    """The folder holding `space`'s search caches: `<db>.index/<space>/` beside the store file (a name that is
    not plain, from a store made elsewhere, takes a digest of itself: `space_folder_name`)."""
    return Path(f"{os.fspath(db_path)}.index") / space_folder_name(space)


def real_cache_folder(db_path: str | os.PathLike, space: str, *parts: str, create: bool = False) -> Path | None:
    """`space_cache_folder(db_path, space) / parts`, made with `create`; None where it is missing (and not
    made), or where a folder on the way from `<db>.index` down is a symbolic link or not a folder. A store
    handed over from elsewhere could come with such a link, and a cache written through it (or old cache
    files cleared through it) would overwrite or delete the files it points at."""
    folder = Path(f"{os.fspath(db_path)}.index")
    for name in ("", space_folder_name(space), *parts):
        folder = folder / name if name else folder
        try:
            mode = os.lstat(folder).st_mode
        except FileNotFoundError:
            if not create:
                return None
            try:
                os.mkdir(folder)
                mode = os.lstat(folder).st_mode
            except OSError:
                return None
        except OSError:
            return None
        if not stat.S_ISDIR(mode):  # lstat: a link to a folder is a link, not a folder
            return None
    return folder


def exact_top_rows(matrix: np.ndarray, queries: np.ndarray, k: int, chunk: int = 200_000) -> np.ndarray:
    """Row positions of the k largest inner products of each query, best first, by brute force over `matrix`."""
    n = len(matrix)
    k = min(k, n)
    best_scores = np.full((len(queries), 0), -np.inf, np.float32)
    best_rows = np.zeros((len(queries), 0), np.int64)
    for start in range(0, n, chunk):
        scores = queries @ matrix[start : start + chunk].T
        top = np.argpartition(-scores, min(k, scores.shape[1]) - 1, axis=1)[:, :k]
        best_scores = np.hstack([best_scores, np.take_along_axis(scores, top, axis=1)])
        best_rows = np.hstack([best_rows, top + start])
        keep = np.argsort(-best_scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(best_scores, keep, axis=1)
        best_rows = np.take_along_axis(best_rows, keep, axis=1)
    return best_rows


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row of `truth` (row positions) that the same row of `found` contains."""
    k = truth.shape[1]
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / k for f, t in zip(found, truth)]))


@dataclass
class AnnIndex:
    """A faiss index over one space's rows, with the rows' ids and what it was built from."""

    index: object  # faiss.Index
    ids_blob: np.ndarray  # uint8: the ids, UTF-8, back to back
    id_offsets: np.ndarray  # int64, n + 1 byte offsets into ids_blob
    model_id: str
    kind: str
    params: dict = field(default_factory=dict)
    rows: np.ndarray | None = None  # int64: the caller's row of each faiss row (None: the same order)
    standardized: bool = False  # built over z-scored rows, as searches of a standardised space are
    space_version: int | None = None  # the store's version of the space's vectors it was built from

    def __len__(self) -> int:
        return len(self.id_offsets) - 1

    def id_at(self, row: int) -> str:
        """The id of row `row`."""
        return bytes(self.ids_blob[self.id_offsets[row] : self.id_offsets[row + 1]]).decode("utf-8", "replace")

    def search_rows(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Row positions [nq, k] (-1 where fewer than k were found) and inner products [nq, k], best first."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = min(k, len(self))
        if k <= 0:
            return np.zeros((len(queries), 0), np.int64), np.zeros((len(queries), 0), np.float32)
        if len(queries) < SMALL_BATCH:
            with faiss_threads(1):
                scores, positions = self.index.search(queries, k)
        else:
            scores, positions = self.index.search(queries, k)
        if self.rows is not None:
            positions = np.where(positions >= 0, self.rows[np.maximum(positions, 0)], -1)
        return positions, scores

    def search(self, queries: np.ndarray, k: int) -> tuple[list[list[str]], list[np.ndarray]]:
        """For each normalised query (one row of `queries`, or a single vector): the ids of its approximate
        k nearest rows, best first, and their cosine similarities (fewer than k where the index found fewer)."""
        rows, scores = self.search_rows(queries, k)
        ids, sims = [], []
        for row_positions, row_scores in zip(rows, scores):
            found = row_positions >= 0
            ids.append([self.id_at(int(r)) for r in row_positions[found]])
            sims.append(row_scores[found])
        return ids, sims

    def hits(self, query: np.ndarray, k: int = 10, exclude: tuple[str, ...] | set[str] = ()) -> list[Hit]:
        """`VectorIndex.search` for one normalised query: the k best hits, skipping ids in `exclude`."""
        exclude = set(exclude)
        rows, scores = self.search_rows(query, k + len(exclude))
        hits = []
        for row, score in zip(rows[0], scores[0]):
            if row < 0:
                continue
            track_id = self.id_at(int(row))
            if track_id not in exclude:
                hits.append(Hit(int(row), track_id, float(score)))
        return hits[:k]

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the index into `folder` (created if missing), replacing any index there."""
        faiss = import_faiss()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / META_FILE).unlink(missing_ok=True)  # the folder reads as absent until the new metadata lands
        # Each file is written anew and moved into place (`write_cache_file`), never through a link planted there.
        write_cache_file(folder / INDEX_FILE, lambda f: write_index(faiss, self.index, f))
        write_cache_file(folder / IDS_FILE, self.ids_blob.tofile)
        write_cache_file(folder / OFFSETS_FILE, lambda f: np.save(f, self.id_offsets, allow_pickle=False))
        rows = np.arange(len(self), dtype=np.int64) if self.rows is None else self.rows
        write_cache_file(folder / ROWS_FILE, lambda f: np.save(f, rows.astype(np.int64), allow_pickle=False))
        meta = {
            "format": FORMAT_VERSION,
            "model_id": self.model_id,
            "rows": len(self),
            "dim": int(self.index.d),
            "kind": self.kind,
            "params": self.params,
            "standardized": self.standardized,
            "space_version": self.space_version,
            "sizes": {name: (folder / name).stat().st_size for name in DATA_FILES},
        }
        meta_text = json.dumps(meta, indent=1).encode("utf-8")
        write_cache_file(folder / META_FILE, lambda f: f.write(meta_text))
        return folder

    @classmethod
    def load(
        cls,
        folder: str | os.PathLike,
        model_id: str,
        n_rows: int,
        standardized: bool = False,
        space_version: int | None = None,
    ) -> AnnIndex | None:
        """The index saved in `folder`, or None when there is none or it is stale (built for another model,
        another row count, other vectors (`space_version`, when given), or rows standardised otherwise than
        the space's now are), so that the caller falls back to the exact scan. Raises AnnIndexError, one line naming the folder, when the files are
        there but unreadable."""
        folder = Path(folder)
        meta_path = folder / META_FILE
        if not is_regular_file(meta_path):
            return None

        def corrupt(reason: str) -> AnnIndexError:
            return AnnIndexError(f"{folder}: approximate index unreadable ({reason}); rebuild it or delete the folder")

        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            stored_model, stored_rows = meta["model_id"], int(meta["rows"])
            kind, params, sizes, dim = meta["kind"], dict(meta["params"]), dict(meta["sizes"]), int(meta["dim"])
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
            raise corrupt(f"{META_FILE}: {error}") from None
        if meta.get("format") != FORMAT_VERSION:
            return None
        if stored_model != model_id or stored_rows != n_rows or bool(meta.get("standardized")) != standardized:
            return None
        if space_version is not None and meta.get("space_version") != space_version:  # other vectors since
            return None
        for name in DATA_FILES:
            path = folder / name
            if not is_regular_file(path):
                raise corrupt(f"{name} is missing, or not a plain file")
            if path.stat().st_size != sizes.get(name):
                raise corrupt(f"{name} is {path.stat().st_size} bytes, {sizes.get(name)} expected")
        try:
            offsets = np.load(folder / OFFSETS_FILE, allow_pickle=False)
            rows = np.load(folder / ROWS_FILE, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise corrupt(f"{error}") from None
        if rows.dtype != np.int64 or rows.shape != (n_rows,) or not np.array_equal(np.sort(rows), np.arange(n_rows)):
            raise corrupt(f"{ROWS_FILE} is not an ordering of {n_rows} rows")
        ids_blob = np.fromfile(folder / IDS_FILE, dtype=np.uint8)
        if (
            offsets.dtype != np.int64
            or offsets.shape != (n_rows + 1,)
            or offsets[0] != 0
            or offsets[-1] != len(ids_blob)
            or np.any(np.diff(offsets) < 0)
        ):
            raise corrupt(f"{OFFSETS_FILE} does not describe {n_rows} ids in {IDS_FILE}")
        try:
            index = read_bounded_index(import_faiss(), folder / INDEX_FILE)
        except (RuntimeError, MemoryError) as error:
            if "deserialization_vector_byte_limit" in str(error):
                raise corrupt(f"{INDEX_FILE}: an array in it claims more bytes than the file holds") from None
            raise corrupt(f"{INDEX_FILE}: {faiss_reason(error)}") from None
        if index.ntotal != n_rows or index.d != dim:
            raise corrupt(f"{INDEX_FILE} holds {index.ntotal} rows of {index.d} dimensions, {n_rows} of {dim} expected")
        ann = cls(index, ids_blob, offsets, stored_model, kind, params, rows, standardized, meta.get("space_version"))
        try:
            ann.apply_search_params()
        except (ValueError, TypeError, AttributeError, RuntimeError) as error:
            raise corrupt(f"{META_FILE}: parameters {params} do not fit the index ({error})") from None
        return ann

    def apply_search_params(self) -> None:
        """Set the calibrated search-time knobs (k_factor, nprobe, efSearch) in `params` on the faiss index."""
        faiss = import_faiss()
        if "k_factor" in self.params:
            self.index.k_factor = float(self.params["k_factor"])
        if "nprobe" in self.params:
            faiss.extract_index_ivf(self.index).nprobe = int(self.params["nprobe"])
        if "ef_search" in self.params:
            self.index.hnsw.efSearch = int(self.params["ef_search"])


def _encode_ids(ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    encoded = [track_id.encode("utf-8") for track_id in ids]
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(), offsets


def choose_kind(n_rows: int) -> str:
    """ "flat" below FLAT_MAX_ROWS rows, "pq" up to PQ_MAX_ROWS, "ivf" above (see the module docstring)."""
    return "flat" if n_rows < FLAT_MAX_ROWS else "pq" if n_rows <= PQ_MAX_ROWS else "ivf"


def ivf_list_count(n_rows: int) -> int:
    """faiss's rule of thumb, 4 * sqrt(n) inverted lists, at most one list per 39 rows (its training minimum)."""
    return int(max(1, min(4 * np.sqrt(n_rows), n_rows // 39, 262_144)))


def pq_subquantizers(dim: int) -> int:
    """Two dimensions per 4-bit sub-quantizer (one where the dimension is odd)."""
    return dim // 2 if dim % 2 == 0 else dim


def _new_index(faiss, kind: str, matrix: np.ndarray, rng: np.random.Generator):
    """An empty (trained) faiss index of `kind`, its build parameters, and the search settings to calibrate,
    cheapest first."""
    n, dim = matrix.shape
    metric = faiss.METRIC_INNER_PRODUCT
    powers = [2**i for i in range(10)] + [1000]  # 1 ... 512, 1000: faiss reads a refine k_factor up to 1000
    if kind == "flat":
        return faiss.IndexFlatIP(dim), {}, [{}]
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, metric)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        settings = [{"ef_search": int(16 * 2 ** (i / 2))} for i in range(17)]  # 16 ... 4096, x1.41 a step
        return index, {"M": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION}, settings
    if n < MIN_QUANTIZED_ROWS:  # faiss would train 16 centroids per sub-quantizer on too few rows, and say so per one
        raise ConfigError(
            f"a {kind} index needs at least {MIN_QUANTIZED_ROWS} rows to train on, not {n}: a space this small is"
            " searched exactly at once"
        )
    m = pq_subquantizers(dim)
    if kind == "pq":
        index = faiss.index_factory(dim, f"PQ{m}x4fs,RFlat", metric)
        params, settings = {"pq_m": m}, [{"k_factor": f} for f in powers]
        training_rows = PQ_TRAINING_ROWS
    else:
        nlist = ivf_list_count(n)
        index = faiss.index_factory(dim, f"IVF{nlist},PQ{m}x4fs,RFlat", metric)
        probes = sorted({min(nlist, int(2 ** (i / 2))) for i in range(2 * int(np.log2(nlist)) + 2)} | {nlist})
        settings = [{"nprobe": p, "k_factor": IVF_K_FACTOR} for p in probes]
        settings += [{"nprobe": nlist, "k_factor": f} for f in powers if f > IVF_K_FACTOR]
        params, training_rows = {"nlist": nlist, "pq_m": m}, max(PQ_TRAINING_ROWS, 64 * nlist)
    sample = matrix if n <= training_rows else matrix[np.sort(rng.choice(n, training_rows, replace=False))]
    # k-means on up to 100k rows is a string of small parallel regions whose spin-waits cost more than the
    # work on a busy machine: PQ training on 100k rows took 0.6 s on 1 thread and 8.6 s on 2 (2 cores, busy).
    with faiss_threads(1) if len(sample) <= PQ_TRAINING_ROWS else contextlib.nullcontext():
        index.train(sample)
    return index, params, settings


def build_ann_index(
    ids: list[str],
    matrix: np.ndarray,
    model_id: str,
    kind: str = "auto",
    target_recall: float = TARGET_RECALL,
    seed: int = 0,
) -> AnnIndex:
    """An approximate index over `matrix`'s rows (float32, unit length; row i is `ids[i]`), its search-time
    knobs calibrated so that it finds `target_recall` of the exact top 10 of held-out rows.

    Calibration holds out up to CALIBRATION_QUERIES random rows, builds the index over the others, raises the
    knobs until the held-out rows, as queries, find target_recall + CALIBRATION_MARGIN of their exact top 10
    among the indexed rows (the most costly setting when none does), then adds the held-out rows. Queries
    that are not in the index are the hard case: a stored row is, for one, a node of an HNSW graph.
    """
    if kind not in KINDS:
        raise ConfigError(f"approximate index kind must be one of {', '.join(KINDS)}, not {kind!r}")
    faiss = import_faiss()
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    if matrix.ndim != 2 or len(matrix) != len(ids) or len(ids) == 0:
        raise ConfigError(f"an approximate index needs one row per id: {len(ids)} ids, matrix of shape {matrix.shape}")
    n = len(matrix)
    kind = choose_kind(n) if kind == "auto" else kind
    rng = np.random.default_rng(seed)
    held_out = np.sort(rng.choice(n, min(CALIBRATION_QUERIES, n // 10), replace=False))
    indexed = np.setdiff1d(np.arange(n), held_out)
    try:
        index, params, settings = _new_index(faiss, kind, matrix, rng)
    except RuntimeError as error:  # faiss's own checks, e.g. too few rows to train on
        raise ConfigError(f"cannot build a {kind} index over {n} rows: {faiss_reason(error)}") from None
    index.add(matrix[indexed])
    ann = AnnIndex(
        index,
        *_encode_ids(list(ids)),
        model_id=model_id,
        kind=kind,
        params=params,
        rows=np.concatenate([indexed, held_out]),
    )
    ann.params.update(settings[-1])
    ann.params["calibrated_recall_at_10"] = None
    if kind != "flat" and len(held_out) and len(indexed) > CALIBRATION_K:
        _calibrate(ann, matrix[indexed], matrix[held_out], settings, target_recall)
    index.add(matrix[held_out])
    ann.apply_search_params()
    return ann


def _calibrate(
    ann: AnnIndex, indexed: np.ndarray, queries: np.ndarray, settings: list[dict], target_recall: float
) -> None:
    """Use the first of `settings` whose recall@10 of `queries` among the `indexed` rows (all the index holds
    so far) reaches target_recall + CALIBRATION_MARGIN; the last one when none does."""
    truth = exact_top_rows(indexed, queries, CALIBRATION_K)
    for setting in settings:
        ann.params.update(setting)
        ann.apply_search_params()
        _, found = ann.index.search(np.ascontiguousarray(queries), CALIBRATION_K)
        recall = recall_at_k(found, truth)
        if recall >= min(1.0, target_recall + CALIBRATION_MARGIN):
            break
    ann.params["calibrated_recall_at_10"] = round(recall, 4)
