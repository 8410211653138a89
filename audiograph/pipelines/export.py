"""`export_space`: one space's vectors, with their track ids, model id and track metadata, as NPZ, CSV or Parquet."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiograph.errors import ConfigError, StoreError
from audiograph.staging import write_whole
from audiograph.store import Store

EXPORT_FORMATS = ("npy", "csv", "parquet")
FORMAT_OF_SUFFIX = {".npz": "npy", ".csv": "csv", ".parquet": "parquet"}
METADATA_COLUMNS = ("title", "artist", "genre", "path")
TAG_COLUMNS = METADATA_COLUMNS[:3]  # free text from files' tags, as opposed to the keys users join on


@dataclass
class ExportReport:
    """What an export wrote."""

    space: str
    model_id: str
    format: str
    out: str
    tracks: int
    dim: int

    def to_json(self) -> dict:
        return dict(self.__dict__)


def export_space(
    store: Store, space: str, out: str | os.PathLike, *, format: str | None = None, model: str | None = None
) -> ExportReport:
    """Write the vectors of `space` (by `model`, default the model its searches use) to `out`.

    npy: a NumPy `.npz` archive (`np.load(out)`) with arrays `ids`, `vectors` (float32 [N, d]),
    `model_id`, `space` and one string array per metadata column (title, artist, genre, path; "" when
    unknown). csv: one row per track: track_id, model_id, the metadata columns, then v0..v{d-1}.
    parquet (needs pyarrow): the same columns as csv, with the vector as one fixed-size list column
    `vector`. In csv, a title, artist or genre that a spreadsheet would run as a formula (one starting with =,
    +, -, @, a tab or a carriage return) starts with an added ' as OWASP advises; the ids, model id and path
    are kept exact, as the keys a user joins on, and npz and parquet hold every string as it is. Vectors are
    the stored ones, not standardised or normalised. Without `format`, the file's extension says which (.npz,
    .csv, .parquet); a format that contradicts the extension is refused.
    """
    if format is not None and format not in EXPORT_FORMATS:
        raise ConfigError(f"unknown export format '{format}' (choose from {', '.join(EXPORT_FORMATS)})")
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"{out}: is a folder; --out needs a file name")
    if out.suffix.lower() == ".npy":
        raise ConfigError(f"{out}: the npy format writes an .npz archive (ids, vectors and metadata); name it .npz")
    named = FORMAT_OF_SUFFIX.get(out.suffix.lower())
    if format is None and named is None:
        raise ConfigError(f"{out}: name the file .npz, .csv or .parquet, or give --format")
    format = format or named
    if named is not None and named != format:
        suffix = next(s for s, f in FORMAT_OF_SUFFIX.items() if f == format)
        raise ConfigError(f"{out}: --format {format} writes {suffix}, not {out.suffix}; name it {suffix}")
    models = store.vectors.require_space(space)
    if model is not None and model not in models:
        raise StoreError(f"{store.path}: no '{space}' vectors by model '{model}'")
    model_id = model or store.vectors.search_model(space)[0]
    if format == "parquet":
        pyarrow = _import_pyarrow()
    ids, vectors = store.vectors.matrix(space, model_id)
    rows = {t["id"]: t for t in store.tracks.rows(status=None)}
    metadata = {c: [rows.get(t, {}).get(c) or "" for t in ids] for c in METADATA_COLUMNS}
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and moved onto it when complete: a killed export leaves the old file whole.
    if format == "npy":
        write_whole(
            out,
            lambda f: np.savez(  # an open file, so that np.savez keeps the name as given
                f,
                ids=np.array(ids, dtype=str),
                vectors=vectors.astype(np.float32),
                model_id=np.array(model_id),
                space=np.array(space),
                **{c: np.array(v, dtype=str) for c, v in metadata.items()},
            ),
        )
    elif format == "csv":
        write_whole(out, lambda f: _write_csv(f, ids, model_id, metadata, vectors), text=True)
    else:
        write_whole(out, lambda f: _write_parquet(pyarrow, f, ids, model_id, metadata, vectors))
    return ExportReport(space, model_id, format, str(out), len(ids), int(vectors.shape[1]) if len(ids) else 0)


def _write_csv(f, ids: list[str], model_id: str, metadata: dict, vectors: np.ndarray) -> None:
    writer = csv.writer(f)
    writer.writerow(["track_id", "model_id", *METADATA_COLUMNS, *(f"v{i}" for i in range(vectors.shape[1]))])
    for i, track_id in enumerate(ids):
        tags = [_inert_in_spreadsheets(metadata[c][i]) for c in TAG_COLUMNS]
        # str of a numpy float32 is its shortest text that reads back to the same float32
        writer.writerow([track_id, model_id, *tags, metadata["path"][i], *map(str, vectors[i])])


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _inert_in_spreadsheets(text: str) -> str:
    """`text`, with a ' before it when a spreadsheet opening the CSV would read it as a formula."""
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def _import_pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ConfigError("--format parquet needs pyarrow: pip install 'audiograph[parquet]'") from None
    return pyarrow


def _write_parquet(pa, out, ids: list[str], model_id: str, metadata: dict, vectors: np.ndarray) -> None:
    dim = vectors.shape[1] if len(ids) else 0
    flat = pa.array(np.ascontiguousarray(vectors, np.float32).reshape(-1), type=pa.float32())
    table = pa.table(
        {
            "track_id": pa.array(ids, pa.string()),
            "model_id": pa.array([model_id] * len(ids), pa.string()),
            **{c: pa.array(v, pa.string()) for c, v in metadata.items()},
            "vector": pa.FixedSizeListArray.from_arrays(flat, dim),
        }
    )
    pa.parquet.write_table(table, out)
