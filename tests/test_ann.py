"""The approximate index (audiograph[ann]): recall against numpy brute force, save/load, staleness, bad files,
and tools/bench_query.py --json."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from audiograph.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def unit_rows(seed: int, n: int, dim: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def brute_force_top(matrix: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries.astype(np.float64) @ matrix.astype(np.float64).T), axis=1)[:, :k]


def mean_recall(found_ids: list[list[str]], truth_rows: np.ndarray, ids: list[str]) -> float:
    return float(np.mean([len(set(f) & {ids[r] for r in t}) / len(t) for f, t in zip(found_ids, truth_rows)]))


@pytest.fixture(scope="module")
def catalogue():
    """8,000 random unit vectors (hard for any approximate index: no clusters) and ids with odd characters."""
    matrix = unit_rows(0, 8_000, 48)
    ids = [f"col/{i:05d} é\nline.mp3" for i in range(len(matrix))]
    return ids, matrix


@pytest.fixture(scope="module")
def build(catalogue):
    """Indexes of the catalogue by kind, built once each (calibrated a little above 0.95)."""
    pytest.importorskip("faiss")
    from audiograph.store.ann import build_ann_index

    ids, matrix = catalogue
    built = {}

    def get(kind: str):
        if kind not in built:
            built[kind] = build_ann_index(ids, matrix, "model-a", kind=kind, target_recall=0.97)
        return built[kind]

    return get


@pytest.fixture(scope="module")
def pq(build):
    return build("pq")


@pytest.mark.parametrize("kind", ["pq", "ivf", "hnsw", "flat"])
def test_recall_at_10_against_brute_force(catalogue, build, kind):
    ids, matrix = catalogue
    ann = build(kind)
    assert ann.kind == kind and len(ann) == len(ids)
    queries = unit_rows(1, 300, matrix.shape[1])  # fresh points, as `query FILE` asks
    found_ids, scores = ann.search(queries, 10)
    recall = mean_recall(found_ids, brute_force_top(matrix, queries, 10), ids)
    assert recall >= 0.95, (kind, recall, ann.params)
    position = {track_id: i for i, track_id in enumerate(ids)}
    for q, found, found_scores in zip(queries, found_ids, scores):
        np.testing.assert_allclose(found_scores, matrix[[position[t] for t in found]] @ q, atol=1e-5)
        assert np.all(np.diff(found_scores) <= 1e-6)  # best first


def test_hits_map_back_to_the_callers_rows_and_skip_excluded(catalogue, pq):
    ids, matrix = catalogue
    row = 4_321
    hits = pq.hits(matrix[row], k=5, exclude={ids[row]})
    assert len(hits) == 5 and ids[row] not in {h.id for h in hits}
    for hit in hits:
        assert ids[hit.index] == hit.id
        assert hit.score == pytest.approx(float(matrix[hit.index] @ matrix[row]), abs=1e-5)
    assert pq.hits(matrix[row], k=1)[0].id == ids[row]  # a stored row finds itself first


def test_the_kind_follows_the_size():
    from audiograph.store.ann import choose_kind, ivf_list_count

    assert choose_kind(5_000) == "flat" and choose_kind(1_000_000) == "pq" and choose_kind(100_000_000) == "ivf"
    assert ivf_list_count(100_000_000) == 40_000


def test_a_tiny_catalogue_gets_the_exact_scan(catalogue):
    pytest.importorskip("faiss")
    from audiograph.store.ann import build_ann_index

    ids, matrix = catalogue
    ann = build_ann_index(ids[:3], matrix[:3], "m")
    assert ann.kind == "flat" and [h.id for h in ann.hits(matrix[1], 3, exclude={ids[1]})] == [
        ids[i] for i in np.argsort(-(matrix[:3] @ matrix[1])) if i != 1
    ]


def test_save_load_round_trip(tmp_path, catalogue, pq):
    from audiograph.store.ann import AnnIndex, space_cache_folder

    ids, matrix = catalogue
    folder = space_cache_folder(tmp_path / "music.db", "musig")
    assert folder == tmp_path / "music.db.index" / "musig"
    pq.save(folder)
    loaded = AnnIndex.load(folder, "model-a", len(ids))
    assert loaded is not None and loaded.kind == "pq" and loaded.params == pq.params
    queries = unit_rows(2, 20, matrix.shape[1])
    assert loaded.search(queries, 10)[0] == pq.search(queries, 10)[0]
    assert [h.id for h in loaded.hits(matrix[7], 3)] == [h.id for h in pq.hits(matrix[7], 3)]
    assert not list(folder.glob("*.pkl")) and json.loads((folder / "ann.json").read_text())["rows"] == len(ids)


def test_absent_or_stale_index_loads_as_none(tmp_path, catalogue, pq):
    from audiograph.store.ann import AnnIndex

    ids, _ = catalogue
    assert AnnIndex.load(tmp_path / "nothing", "model-a", len(ids)) is None
    pq.save(tmp_path / "ann")
    assert AnnIndex.load(tmp_path / "ann", "model-b", len(ids)) is None  # another model
    assert AnnIndex.load(tmp_path / "ann", "model-a", len(ids) + 1) is None  # rows added since
    assert AnnIndex.load(tmp_path / "ann", "model-a", len(ids)) is not None


@pytest.mark.parametrize(
    "damage",
    ["truncate index", "garbage index", "garbage json", "bad params", "missing ids", "bad offsets", "bad rows"],
)
def test_a_damaged_index_gives_one_clear_line(tmp_path, catalogue, pq, damage):
    from audiograph.errors import StoreError
    from audiograph.store.ann import AnnIndex, AnnIndexError

    ids, _ = catalogue
    folder = pq.save(tmp_path / "ann")
    index_file = folder / "index.faiss"
    if damage == "truncate index":
        index_file.write_bytes(index_file.read_bytes()[:1000])
    elif damage == "garbage index":  # same size, so only faiss's own checks can tell
        index_file.write_bytes(np.random.default_rng(3).bytes(index_file.stat().st_size))
    elif damage == "garbage json":
        (folder / "ann.json").write_text("{not json", encoding="utf-8")
    elif damage == "bad params":
        meta = json.loads((folder / "ann.json").read_text(encoding="utf-8"))
        meta["params"]["k_factor"] = "many"
        (folder / "ann.json").write_text(json.dumps(meta), encoding="utf-8")
    elif damage == "missing ids":
        (folder / "ids.bin").unlink()
    elif damage == "bad offsets":
        np.save(folder / "id_offsets.npy", np.arange(len(ids) + 1, dtype=np.int64)[::-1].copy())
    else:
        np.save(folder / "rows.npy", np.zeros(len(ids), np.int64))
    with pytest.raises(AnnIndexError) as caught:
        AnnIndex.load(folder, "model-a", len(ids))
    message = str(caught.value)
    assert isinstance(caught.value, StoreError)
    assert str(folder) in message and "\n" not in message and len(message) < 400


def test_without_faiss_a_config_error_names_the_extra(monkeypatch):
    from audiograph.store import ann

    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` fail
    with pytest.raises(ConfigError, match=r"audiograph\[ann\]"):
        ann.build_ann_index(["a"], np.ones((1, 4), np.float32), "m")


def test_the_module_imports_neither_torch_nor_faiss():
    code = "import sys, audiograph.store.ann; print('torch' in sys.modules, 'faiss' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


def test_bench_query_json_at_a_tiny_size():
    try:
        import faiss  # noqa: F401

        ann = ["--ann"]
    except ImportError:
        ann = []
    cmd = [sys.executable, "tools/bench_query.py", "--quick", "--skip-cold", "--json", *ann]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False, timeout=600)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["vectors"] == 20_000 and figures["ratio_1m"] > 0 and figures["cold_query_seconds"] is None
    # The largest size is measured in fresh processes, and the figure is their median.
    assert len(figures["ratio_1m_per_process"]) == 2
    assert figures["ratio_1m"] == pytest.approx(float(np.median(figures["ratio_1m_per_process"])))
    assert "ratio" in done.stderr and "target" in done.stderr  # the table, each figure beside its reference
    if ann:
        assert 0.0 <= figures["ann_recall_at_10"] <= 1.0 and figures["ann_speedup"] > 0
        assert figures["ann_kind"] == "pq" and "calibrated_recall_at_10" in figures["ann_params"]


def test_query_and_similar_use_a_current_index_and_scan_exactly_otherwise(store_copy, capsys):
    """`audiograph index` builds beside the store; `similar` then answers from it (same hits as the exact
    scan here: a flat index is exact), and a store whose space changed falls back to the exact scan."""
    pytest.importorskip("faiss")
    from audiograph.cli import main
    from audiograph.store import Store

    db = str(store_copy.path)
    track = store_copy.vectors.index("descriptors").ids[0]
    assert main(["similar", track, "--db", db, "--space", "descriptors", "--json", "-k", "5"]) == 0
    exact = json.loads(capsys.readouterr().out)
    assert main(["index", "descriptors", "--db", db, "--kind", "flat", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == len(store_copy.vectors.index("descriptors").ids)
    assert main(["index", "descriptors", "--db", db, "--kind", "flat"]) == 0
    said = capsys.readouterr().out  # the parameters in words, not a Python dict
    assert f"indexed {report['rows']} 'descriptors' vectors of model" in said and ": flat in " in said
    store = Store(db)
    model_id = store.vectors.search_model("descriptors")[0]
    assert store.vectors.ann_index("descriptors", model_id, report["rows"]) is not None
    assert store.vectors.ann_index("descriptors", model_id, report["rows"] + 1) is None  # stale: not used
    # Built over raw rows (as before a space became standardised: imported spaces, migration m007): stale too.
    from audiograph.store.ann import META_FILE, space_cache_folder

    meta_path = space_cache_folder(store.path, "descriptors") / META_FILE
    meta = json.loads(meta_path.read_text())
    assert meta["standardized"] is True
    meta_path.write_text(json.dumps({k: v for k, v in meta.items() if k != "standardized"}))
    assert Store(db).vectors.ann_index("descriptors", model_id, report["rows"]) is None
    meta_path.write_text(json.dumps(meta))
    assert main(["similar", track, "--db", db, "--space", "descriptors", "--json", "-k", "5"]) == 0
    via_index = json.loads(capsys.readouterr().out)
    assert [h["track_id"] for h in via_index] == [h["track_id"] for h in exact]
    np.testing.assert_allclose([h["score"] for h in via_index], [h["score"] for h in exact], atol=1e-5)


def test_an_index_folder_linked_elsewhere_is_neither_written_nor_read(store_copy, tmp_path, capsys):
    """`<db>.index/<space>` linked to the victim's folder: `index` wrote its files through the link."""
    pytest.importorskip("faiss")
    from audiograph.cli import main
    from audiograph.store.ann import space_cache_folder

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    folder = space_cache_folder(store_copy.path, "descriptors")
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.symlink_to(elsewhere)
    db = str(store_copy.path)
    assert main(["index", "descriptors", "--db", db, "--kind", "flat"]) == 1
    assert "cannot hold the index (a symbolic link" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []
    track = store_copy.vectors.index("descriptors").ids[0]
    assert main(["similar", track, "--db", db, "--space", "descriptors", "-k", "2"]) == 0
    assert list(elsewhere.iterdir()) == []
    # Nor read: a current index planted behind the link, its rows shuffled, would give other neighbours.
    folder.unlink()
    assert main(["index", "descriptors", "--db", db, "--kind", "flat"]) == 0
    exact = [h["track_id"] for h in json.loads(_similar_json(main, track, db, capsys))]
    rows = np.load(folder / "rows.npy")
    np.save(folder / "rows.npy", np.roll(rows, 1))
    for name in os.listdir(folder):
        os.replace(folder / name, elsewhere / name)
    folder.rmdir()
    folder.symlink_to(elsewhere)
    assert [h["track_id"] for h in json.loads(_similar_json(main, track, db, capsys))] == exact


def _similar_json(main, track, db, capsys) -> str:
    capsys.readouterr()
    assert main(["similar", track, "--db", db, "--space", "descriptors", "-k", "5", "--json"]) == 0
    return capsys.readouterr().out


def test_an_index_claiming_more_than_its_file_holds_is_refused_before_allocating(tmp_path, catalogue, build):
    """A flat index whose vector of codes claims 256 MB in a 1.5 MB file: faiss allocated it and then failed to
    read (a crafted claim of many gigabytes exhausted memory). Each array faiss reads is bounded by the file's
    size; the limit faiss had is restored."""
    import faiss

    from audiograph.store.ann import AnnIndex, AnnIndexError

    ids, _ = catalogue
    folder = build("flat").save(tmp_path / "ann")
    data = bytearray((folder / "index.faiss").read_bytes())
    assert data[:4] == b"IxFI"  # fourcc, d, ntotal, two dummies, is_trained, metric: then the codes' length
    codes_length = 4 + 4 + 8 + 8 + 8 + 1 + 4
    assert int.from_bytes(data[codes_length : codes_length + 8], "little") == len(ids) * 48  # float32 values
    data[codes_length : codes_length + 8] = (1 << 26).to_bytes(8, "little")
    (folder / "index.faiss").write_bytes(data)
    limit = faiss.get_deserialization_vector_byte_limit()
    with pytest.raises(AnnIndexError, match="an array in it claims more bytes than the file holds"):
        AnnIndex.load(folder, "model-a", len(ids))
    assert faiss.get_deserialization_vector_byte_limit() == limit
