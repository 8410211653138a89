"""The radio and map commands on a stored space, and trainings that keep their spaces apart."""

import json
import shutil

import numpy as np

from audiograph.cli import main
from audiograph.store import Store


def _descriptor_index(db):
    store = Store(db)
    index = store.vectors.index("descriptors")
    artists = {t["id"]: t["artist"] for t in store.tracks.rows()}
    store.close()
    return index, artists


def test_radio_from_a_stored_track_keeps_its_promises(store_copy, tmp_path, capsys):
    db = store_copy.path
    index, artists = _descriptor_index(db)
    seed = index.ids[0]
    m3u = tmp_path / "radio.m3u8"
    args = ["radio", seed, "--db", str(db), "--space", "descriptors", "--length", "12", "--m3u", str(m3u), "--json"]
    assert main(args) == 0
    tracks = json.loads(capsys.readouterr().out)
    ids = [t["track_id"] for t in tracks]
    assert len(ids) == 12 and len(set(ids)) == 12 and seed not in ids
    chain = [artists[seed], *(artists[t] for t in ids)]
    assert all(a != b for a, b in zip(chain, chain[1:]) if a and b)  # no artist twice in a row
    # Scores are cosines to the seed in the space as searched (brute force over the index's rows).
    rows = [index.ids.index(t) for t in ids]
    expected = index.matrix[rows] @ index.vector(seed)
    np.testing.assert_allclose([t["score"] for t in tracks], expected, atol=1e-5)
    lines = m3u.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#EXTM3U" and sum(line.startswith("#EXTINF:") for line in lines) == 12


def test_radio_without_diversity_is_the_nearest_neighbours_under_the_artist_rule(store_copy, capsys):
    db = store_copy.path
    index, artists = _descriptor_index(db)
    seed = index.ids[5]
    assert (
        main(
            [
                "radio",
                seed,
                "--db",
                str(db),
                "--space",
                "descriptors",
                "--length",
                "6",
                "--diversity",
                "0",
                "--walk",
                "0",
                "--json",
            ]
        )
        == 0
    )
    ids = [t["track_id"] for t in json.loads(capsys.readouterr().out)]
    # Greedy by cosine to the seed, skipping a track whose artist is the previous pick's.
    order = np.argsort(-(index.matrix @ index.vector(seed)), kind="stable")
    expected, previous = [], artists[seed]
    pool = [index.ids[i] for i in order if index.ids[i] != seed]
    while len(expected) < 6:
        pick = next(t for t in pool if t not in expected and (not artists[t] or artists[t] != previous))
        expected.append(pick)
        previous = artists[pick]
    assert ids == expected


def test_map_writes_a_png_of_the_space(store_copy, tmp_path, capsys):
    out = tmp_path / "map.png"
    args = ["map", "descriptors", "--db", str(store_copy.path), "--out", str(out), "--method", "tsne", "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["points"] == len(Store(store_copy.path).vectors.index("descriptors").ids)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and report["method"] == "tsne"


def test_a_graphsage_run_does_not_overwrite_musig(embedded_db, tmp_path, capsys):
    db = tmp_path / "store.db"
    shutil.copy(embedded_db, db)
    common = [
        "--db",
        str(db),
        "--epochs",
        "1",
        "--batches-per-epoch",
        "2",
        "--hidden-channels",
        "16",
        "--out-channels",
        "8",
        "--accelerator",
        "cpu",
        "--json",
        "-q",
    ]
    assert main(["train-musig", *common]) == 0
    musig = json.loads(capsys.readouterr().out)
    assert main(["train-musig", "--task-weights", "graphsage", *common]) == 0
    graphsage = json.loads(capsys.readouterr().out)
    spaces = Store(db).vectors.spaces()
    assert spaces["musig"] == {musig["model_id"]: musig["embedded"]}
    assert spaces["graphsage"] == {graphsage["model_id"]: graphsage["embedded"]}
    assert main(["info", "--db", str(db), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["serving"] == {**info["serving"], "musig": musig["model_id"], "graphsage": graphsage["model_id"]}


def test_a_radio_shorter_than_asked_says_why(store_copy, capsys):
    tracks = len(store_copy.vectors.index("descriptors").ids)
    seed = store_copy.vectors.index("descriptors").ids[0]
    assert main(["radio", seed, "--db", str(store_copy.path), "--space", "descriptors", "--length", "1000"]) == 0
    out = capsys.readouterr().out
    played = len([line for line in out.splitlines()[2:] if line.strip() and not line.startswith("note:")])
    assert 0 < played < tracks
    assert f"note: the playlist ends after {played} of the 1000 tracks asked for: the space holds only" in out
