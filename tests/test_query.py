"""query: a stored file and a byte-different copy of its audio get the same answer in every space, a
stored file's search in a standardised space z-scores once (checked against a brute-force search), and a
query by file loads only what it needs."""

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import read_csv

from audiograph.audio.decode import decode
from audiograph.pipelines.query import query_file
from audiograph.store import Store


@pytest.fixture(scope="module")
def trained_store(embedded_db, tmp_path_factory):
    """The embedded synthetic store with an acoustic encoder and MUSIG trained briefly (every space filled)."""
    from audiograph.pipelines.train_audio import train_audio
    from audiograph.pipelines.train_musig import train_musig

    db = tmp_path_factory.mktemp("trained") / "store.db"
    shutil.copy(embedded_db, db)
    store = Store(db)
    train_audio(store, max_epochs=1, crop_seconds=3, quiet=True)
    train_musig(store, features="acoustic,audio,genre,popularity", max_epochs=1, batches_per_epoch=2, quiet=True)
    return store


def _retagged_copy(original, out):
    """The same samples in the same format, with other tags: other bytes, the same decoded audio."""
    info = sf.info(original)
    samples, rate = sf.read(original, dtype="int16")
    with sf.SoundFile(out, "w", rate, info.channels, info.subtype, format=info.format) as f:
        f.title, f.artist, f.comment = "A copy", "Someone else", "re-tagged"
        f.write(samples)
    assert out.read_bytes() != original.read_bytes()
    np.testing.assert_array_equal(decode(out).samples, decode(original).samples)
    return out


def test_a_stored_file_and_a_copy_of_its_audio_get_the_same_neighbours_in_every_space(
    trained_store, synth_collection, tmp_path
):
    store = trained_store
    lossless = next(r for r in read_csv(synth_collection / "tracks.csv") if r["format"] in ("flac", "wav"))
    original = synth_collection / "audio" / lossless["path"]
    copy = _retagged_copy(original, tmp_path / f"copy{original.suffix}")
    assert set(store.vectors.spaces()) >= {"descriptors", "acoustic", "musig"}
    for space in ("descriptors", "acoustic", "musig"):
        stored = query_file(store, original, space=space, k=8)
        copied = query_file(store, copy, space=space, k=8)
        assert stored.query_track == copied.query_track == f"synth/{lossless['path']}", space
        assert [h["track_id"] for h in copied.hits] == [h["track_id"] for h in stored.hits], space
        np.testing.assert_allclose([h["score"] for h in copied.hits], [h["score"] for h in stored.hits], atol=1e-5)


def test_a_stored_file_is_standardised_once(trained_store, synth_collection):
    """The descriptors search of a stored file equals a brute-force z-scored cosine search with its stored row."""
    store = trained_store
    track = read_csv(synth_collection / "tracks.csv")[3]
    ids, matrix = store.vectors.matrix("descriptors")
    z = (matrix - matrix.mean(0)) / matrix.std(0)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    me = ids.index(f"synth/{track['path']}")
    scores = z @ z[me]
    scores[me] = -np.inf
    expected = [ids[i] for i in np.argsort(-scores)[:10]]
    result = query_file(store, synth_collection / "audio" / track["path"], space="descriptors", k=10)
    assert [h["track_id"] for h in result.hits] == expected
    np.testing.assert_allclose([h["score"] for h in result.hits], np.sort(scores)[::-1][:10], atol=1e-5)


@pytest.mark.parametrize("space, needed", [("descriptors", []), ("acoustic", ["torch"]), ("musig", ["torch"])])
def test_a_query_by_file_imports_neither_the_training_stack_nor_sqlite_utils(trained_store, tmp_path, space, needed):
    song = tmp_path / "new song.wav"
    t = np.arange(3 * 22_050) / 22_050
    sf.write(song, (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 2 * t))).astype(np.float32), 22_050)
    code = (
        "import sys; from audiograph.cli import main\n"
        f"main(['query', {str(song)!r}, '--db', {str(trained_store.path)!r}, '--space', {space!r}, '-k', '3', '--json'])\n"
        "heavy = ('torch', 'lightning', 'torch_geometric', 'librosa', 'sqlite_utils')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    *answer, modules = out.strip().splitlines()
    assert modules == str(needed), out[-300:]
    hits = json.loads("\n".join(answer))
    assert len(hits) == 3 and hits[0]["score"] >= hits[-1]["score"]


def test_a_new_file_is_analysed_once_per_audio_config_in_every_space(trained_store, tmp_path, monkeypatch):
    import audiograph.audio.analysis as analysis_module

    song = tmp_path / "new song.wav"
    t = np.arange(4 * 22_050) / 22_050
    sf.write(song, (0.3 * np.sin(2 * np.pi * 330 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32), 22_050)
    real, made = analysis_module.analyse, []

    def counted(path, config, **kwargs):
        made.append(config.signature())
        return real(path, config, **kwargs)

    monkeypatch.setattr(analysis_module, "analyse", counted)
    for space in ("descriptors", "acoustic", "musig"):
        made.clear()
        result = query_file(trained_store, song, space=space, k=3)
        assert len(result.hits) == 3
        # The descriptors (the same-audio check), the encoder's chunks and MUSIG's features share one analysis.
        assert made and len(made) == len(set(made)), (space, made)


def test_a_stored_file_is_its_own_query_when_a_stored_copy_of_its_audio_sorts_first(
    trained_store, synth_collection, tmp_path
):
    from audiograph.pipelines.embed_audio import embed_audio

    db = tmp_path / "store.db"
    with sqlite3.connect(trained_store.path) as source, sqlite3.connect(db) as target:
        source.backup(target)
    store = Store(db)
    shutil.copytree(trained_store.models_dir, store.models_dir)
    lossless = next(r for r in read_csv(synth_collection / "tracks.csv") if r["format"] in ("flac", "wav"))
    original = synth_collection / "audio" / lossless["path"]
    (tmp_path / "aaa").mkdir()
    copy = _retagged_copy(original, tmp_path / "aaa" / f"copy{original.suffix}")
    embed_audio(tmp_path / "aaa", store, collection="aaa", num_workers=0, quiet=True)
    copy_id, original_id = store.tracks.by_path(copy)["id"], f"synth/{lossless['path']}"
    assert copy_id < original_id
    for space in ("descriptors", "acoustic"):
        assert query_file(store, original, space=space, k=3).query_track == original_id, space
        assert query_file(store, copy, space=space, k=3).query_track == copy_id, space


def test_a_stored_file_whose_bytes_changed_is_queried_as_what_it_holds_now(store_copy, synth_collection, tmp_path):
    from audiograph.pipelines.embed_audio import embed_audio

    lossless = [r for r in read_csv(synth_collection / "tracks.csv") if r["format"] in ("flac", "wav")][:2]
    folder = tmp_path / "mine"
    folder.mkdir()
    a, b = (
        shutil.copy(synth_collection / "audio" / r["path"], folder / f"{n}{Path(r['path']).suffix}")
        for n, r in zip("ab", lossless)
    )
    embed_audio(folder, store_copy, collection="mine", num_workers=0, quiet=True)
    b_id = store_copy.tracks.by_path(b)["id"]
    shutil.copyfile(b, a)  # a's path now holds b's bytes, not embedded again
    now = query_file(store_copy, a, space="descriptors", k=5)
    of_b = query_file(store_copy, b, space="descriptors", k=6)
    assert now.query_track == b_id
    a_id = store_copy.tracks.by_path(a)["id"]
    assert [h["track_id"] for h in now.hits] == [h["track_id"] for h in of_b.hits if h["track_id"] != a_id][:5]


def test_a_table_of_hits_fits_100_columns_whatever_the_tags():
    """Long tags made rows of 150 to 240 characters; without --wide each row is cut to 100 (the label last,
    ending in '…'), and --wide keeps every cell whole."""
    from wcwidth import wcswidth

    from audiograph.pipelines.query import format_hits

    artist, title = "Orchestra of the Age of Enlightenment " * 2, "Symphony No. 9 in D minor, Op. 125: IV. " * 3
    hits = [
        {"rank": 1, "score": 0.98765, "artist": artist, "title": title, "genre": "classical " * 5, "path": "/a.mp3"},
        {"rank": 10, "score": 0.5, "artist": "A", "title": "Short", "genre": "pop", "path": "/b.mp3"},
    ]
    wide_chars = {"rank": 2, "score": 0.7, "artist": "坂本龍一 " * 6, "title": "戦場のメリークリスマス 🎹" * 3}
    hits.append({**wide_chars, "genre": "アンビエント" * 4, "path": "/c.mp3"})
    # An emoji made wide by its variation selector: two columns for the pair, one for each character alone.
    hits.append({"rank": 3, "score": 0.6, "artist": "❤️" * 40, "title": "☀️" * 40, "genre": "✔️" * 20, "path": "/d"})
    for extra in ((), ("genre",)):
        lines = format_hits(hits, extra=extra).splitlines()
        # Columns as a terminal shows them: a CJK character or an emoji takes two (wcwidth, as tabulate pads).
        assert max(wcswidth(line) for line in lines) <= 100 and "…" in lines[1] and "…" in lines[3], extra
        assert "…" in lines[4]
        assert "A – Short" in lines[2]
    wide = format_hits(hits, extra=("genre",), wide=True)
    assert f"{artist} – {title.rstrip()}" in wide and "/a.mp3" in wide
