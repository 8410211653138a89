"""`build_index`: an approximate nearest-neighbour index of a space, beside the store, for large catalogues."""

from __future__ import annotations

from dataclasses import dataclass

from audiograph.errors import ConfigError, StoreError
from audiograph.store import Store


@dataclass
class IndexReport:
    """What `build_index` built."""

    space: str
    model_id: str
    rows: int
    kind: str
    params: dict
    folder: str


def build_index(store: Store, space: str, kind: str = "auto") -> IndexReport:
    """Build the approximate index of the vectors a search in `space` uses (faiss, `audiograph[ann]`),
    calibrated to recall@10 >= 0.95, and save it in `<store>.index/<space>/`. `query` and `similar` use
    it while it is current (same model and row count), and scan exactly otherwise."""
    from audiograph.store.ann import build_ann_index, real_cache_folder, space_cache_folder

    model_id = store.vectors.search_model(space)[0]
    index = store.vectors.index(space, model_id)
    if index.matrix.shape[1] < 2:
        raise ConfigError(f"space '{space}' holds one number per track: no index can speed up its search")
    ann = build_ann_index(index.ids, index.matrix, model_id, kind=kind)
    ann.standardized = index.mean is not None
    ann.space_version = store.vectors.version(space)
    folder = real_cache_folder(store.path, space, create=True)
    if folder is None:
        raise StoreError(
            f"{space_cache_folder(store.path, space)}: cannot hold the index (a symbolic link, not a folder, or not"
            " writable)"
        )
    ann.save(folder)
    return IndexReport(space, model_id, len(index.ids), ann.kind, dict(ann.params), str(folder))
