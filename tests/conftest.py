"""Shared fixtures: the real data in ../shared (skipped when absent) and a tiny synthetic collection."""

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data`, or skip the test when the checkout has no `../shared` beside it."""
    data = SHARED / "data"
    if not data.is_dir():
        pytest.skip("../shared/data is not present")
    return data


@pytest.fixture(scope="session")
def synth_collection(tmp_path_factory) -> Path:
    """A tiny synthetic collection with every kind of fault, made once per test session (read-only)."""
    from audiograph.synth import synthesize

    out = tmp_path_factory.mktemp("synth") / "collection"
    synthesize(out, tracks=30, genres=3, playlists=12, seconds=6.0, seed=7, with_faults=True, workers=2)
    return out


def read_csv(path: Path) -> list[dict]:
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="session")
def embedded_db(tmp_path_factory, synth_collection) -> Path:
    """A store of the synthetic collection, embedded and with its graph built. Copy before writing."""
    from audiograph.pipelines.build_graph import build_graph
    from audiograph.pipelines.embed_audio import embed_audio
    from audiograph.store import Store

    db = tmp_path_factory.mktemp("store") / "base.db"
    store = Store(db)
    embed_audio(synth_collection / "audio", store, collection="synth", num_workers=2, quiet=True)
    build_graph(store, [synth_collection / "playlists"])
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return db


@pytest.fixture
def store_copy(embedded_db, tmp_path):
    """A private, writable copy of `embedded_db`."""
    import shutil

    from audiograph.store import Store

    db = tmp_path / "store.db"
    shutil.copy(embedded_db, db)
    return Store(db)
