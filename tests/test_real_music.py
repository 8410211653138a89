"""recipes/real_music.py: the hold-out split, the fold stores and the measure, and (slow) the benchmark
on whatever Debian soundtracks are already cached (never downloaded here)."""

import importlib.util
import json
import os
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "real_music.py"


@pytest.fixture(scope="module")
def recipe():
    spec = importlib.util.spec_from_file_location("real_music", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hold_out_folds_take_the_same_share_of_every_album(recipe):
    albums = {"a": [f"a/{i}.ogg" for i in range(10)], "b": [f"b/{i}.ogg" for i in range(3)], "c": ["c/x.ogg"]}
    folds = recipe.hold_out_folds(albums, 5)
    assert set(folds) == {t for ids in albums.values() for t in ids}
    for fold in range(5):
        assert sum(folds[t] == fold for t in albums["a"]) == 2
    assert sorted(folds[t] for t in albums["b"]) == [0, 1, 2]
    # Fixed by the hash of the ids: the same split in every run and whatever the order given.
    assert recipe.hold_out_folds({k: v[::-1] for k, v in albums.items()}, 5) == folds


def test_held_out_precision_matches_brute_force(recipe):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(20, 4)).astype(np.float32)
    labels = [str(i % 3) for i in range(20)]
    queries = [0, 4, 11]
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    expected = []
    for q in queries:
        scores = unit @ unit[q]
        scores[q] = -np.inf
        expected.append(np.mean([labels[j] == labels[q] for j in np.argsort(-scores)[:5]]))
    assert recipe.held_out_precision(vectors, labels, queries) == pytest.approx(np.mean(expected))


def test_licence_names_read_dep5_and_fall_back(recipe):
    dep5 = (
        "Files: *\nCopyright: x\nLicense: GPL-2+\n text\n\nFiles: music/*\nLicense: CC-BY-SA-3.0\n\nLicense: GPL-2+\n"
    )
    assert recipe.licence_names(dep5) == "GPL-2+, CC-BY-SA-3.0"
    assert "not machine-readable" in recipe.licence_names("License:\n\n  This package is free software")


def test_unpack_archives_keeps_audio_members_inside_the_folder(recipe, tmp_path):
    import zipfile

    game = tmp_path / "usr" / "share" / "games" / "x"
    game.mkdir(parents=True)
    with zipfile.ZipFile(game / "music.pk3", "w") as z:
        z.writestr("sound/cdtracks/one.ogg", b"ogg bytes")
        z.writestr("music/theme.mod", b"tracker")
        z.writestr("maps/level.bsp", b"not audio")
        z.writestr("../../escape.ogg", b"outside")
    (game / "notes.zip").write_bytes(b"not a zip archive")
    assert recipe.unpack_archives(tmp_path) == 1
    unpacked = game / "music.pk3.d"
    found = sorted(str(p.relative_to(unpacked)) for p in unpacked.rglob("*") if p.is_file())
    assert found == ["escape.ogg", "music/theme.mod", "sound/cdtracks/one.ogg"]
    assert (unpacked / "sound" / "cdtracks" / "one.ogg").read_bytes() == b"ogg bytes"
    assert not (game / "music.pk3").exists() and (game / "notes.zip").exists()
    assert not list(tmp_path.parent.glob("escape.ogg")) and not (tmp_path / "escape.ogg").exists()


def test_link_collection_caps_albums_and_cuts_middle_clips(recipe, tmp_path):
    import soundfile as sf

    rate = 8000
    album = tmp_path / "music" / "album"
    (album / "disc").mkdir(parents=True)
    ramps = {}
    for i, name in enumerate(["a.ogg", "b.flac", "disc/c.wav"]):
        ramp = np.stack([np.linspace(-0.5, 0.5, (5 + i) * rate)] * 2, axis=1).astype(np.float32)
        sf.write(album / name, ramp, rate, format="FLAC" if name.endswith(".flac") else None)
        ramps[name] = sf.read(album / name, dtype="float32", always_2d=True)[0]
    linked = recipe.link_collection(tmp_path / "links", {"album": album}, 2)
    links = sorted(p for p in linked["album"].rglob("*") if p.is_file())
    assert len(links) == 2 and all(p.is_symlink() for p in links)
    # The same two, in the same order, whatever the run: a fixed hash of the relative paths.
    clipped = recipe.link_collection(tmp_path / "clips", {"album": album}, 2, clip_seconds=2.0)
    clips = sorted(p for p in clipped["album"].rglob("*") if p.is_file())
    assert [c.relative_to(clipped["album"]).with_suffix("") for c in clips] == [
        p.relative_to(linked["album"]).with_suffix("") for p in links
    ]
    for clip in clips:
        name = next(n for n in ramps if Path(n).with_suffix("") == clip.relative_to(clipped["album"]).with_suffix(""))
        samples, clip_rate = sf.read(clip, dtype="float32", always_2d=True)
        whole = ramps[name]
        start = (len(whole) - 2 * rate) // 2
        assert clip_rate == rate and samples.shape == (2 * rate, 2)
        np.testing.assert_allclose(samples, whole[start : start + 2 * rate], atol=1e-4)


def test_fold_store_keeps_only_the_training_tracks(recipe, embedded_db, tmp_path, synth_collection):
    from audiograph.pipelines.build_graph import build_graph
    from audiograph.store import Store

    base = Store(embedded_db)
    tracks = base.tracks.rows()
    keep = {t["id"] for t in tracks[: len(tracks) // 2]}
    store = recipe.fold_store(embedded_db, tmp_path / "fold", keep)
    assert {t["id"] for t in store.tracks.rows(status=None)} == keep
    assert set(store.mels.chunks()) == keep and set(store.vectors.matrix("descriptors")[0]) == keep
    albums = {"one": sorted(keep)[:4], "two": sorted(keep)[4:8]}
    paths = {t["id"]: t["path"] for t in tracks}
    playlists = recipe.write_album_playlists(tmp_path / "playlists", albums, paths, set(sorted(keep)[:7]))
    lines = (playlists / "two.m3u8").read_text().splitlines()
    assert lines == ["#EXTM3U", *(paths[t] for t in sorted(keep)[4:7])]
    report = build_graph(store, [playlists])
    assert report.matched == 7 and report.unmatched == 0
    # The base store is untouched.
    with sqlite3.connect(embedded_db) as db:
        assert db.execute("SELECT count(*) FROM tracks WHERE status = 'ok'").fetchone()[0] == len(tracks)


def _cache() -> Path:
    return Path(os.environ.get("AUDIOGRAPH_MUSIC_CACHE", "~/.cache/audiograph/debian-music")).expanduser()


@pytest.mark.slow
def test_benchmark_on_the_cached_soundtracks(recipe, tmp_path):
    """The quick benchmark on the Debian soundtracks already in the cache; skipped when there are none."""
    cached = [m for m in (_cache() / "music").glob("*/manifest.json") if json.loads(m.read_text())["tracks"]]
    if len(cached) < 2:
        pytest.skip(f"no Debian soundtracks cached in {_cache()} (run recipes/real_music.py once to fetch them)")
    packages = [m.parent.name for m in cached]
    results = recipe.run(
        [
            "--quick",
            "--offline",
            "--packages",
            *packages,
            "--out",
            str(tmp_path),
            "--cache",
            str(_cache()),
            "--max-per-album",
            "6",
            "--epochs",
            "4",
        ]
    )
    summary = results["summary"]
    assert set(summary) == set(recipe.SPACES)
    for space in recipe.SPACES:
        assert 0.0 <= summary[space]["precision_at_5"]["mean"] <= 1.0
    # The trained space has not collapsed; the untrained one is nearly collapsed (cosines near 1).
    assert summary["trained encoder"]["cosine_std"]["mean"] > 0.1
    assert summary["trained encoder"]["cosine_mean"]["mean"] < 0.9
    assert summary["trained encoder"]["precision_at_5"]["mean"] > results["collection"]["chance"]
    assert all(a["licence"] for a in results["collection"]["albums"])
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["summary"]["trained encoder"]["precision_at_5"]["mean"] == pytest.approx(
        summary["trained encoder"]["precision_at_5"]["mean"]
    )
    assert re.search(r"^\| trained encoder +\| ", (tmp_path / "results.md").read_text(), re.M)


def test_local_albums_are_the_subfolders_with_recordings(recipe, tmp_path):
    for album, names in {
        "b-side": ["1.ogg", "2.MP3", "notes.txt"],
        "a-side": ["x/1.flac"],
        "empty": ["cover.jpg"],
    }.items():
        for name in names:
            (tmp_path / album / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / album / name).write_bytes(b"")
    (tmp_path / "loose.ogg").write_bytes(b"")
    folders, manifests = recipe.local_albums(tmp_path)
    assert folders == {"a-side": tmp_path / "a-side", "b-side": tmp_path / "b-side"}
    assert [(m["package"], m["tracks"]) for m in manifests] == [("a-side", 1), ("b-side", 2)]
    with pytest.raises(recipe.ConfigError, match="fewer than two subfolders"):
        recipe.local_albums(tmp_path / "b-side")
    with pytest.raises(recipe.ConfigError, match="not a folder"):
        recipe.local_albums(tmp_path / "missing")


def test_m4a_albums_are_found_and_clipped_where_pyav_is_installed(recipe, tmp_path):
    av = pytest.importorskip("av")
    import soundfile as sf

    from audiograph.audio.decode import decode

    album = tmp_path / "music" / "album"
    album.mkdir(parents=True)
    rate, t = 44100, np.arange(6 * 44100) / 44100
    with av.open(str(album / "tone.m4a"), "w", format="ipod") as container:
        stream = container.add_stream("alac", rate=rate)
        stream.layout, stream.format = "mono", "s16p"
        frame = av.AudioFrame.from_ndarray(
            np.round(0.3 * np.sin(2 * np.pi * 330 * t) * 32767).astype(np.int16)[None, :], format="s16p", layout="mono"
        )
        frame.rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    (album / "cover.jpg").write_bytes(b"")
    assert recipe.recordings(album) == [album / "tone.m4a"]
    clipped = recipe.link_collection(tmp_path / "clips", {"album": album}, None, clip_seconds=2.0)
    samples, clip_rate = sf.read(clipped["album"] / "tone.flac", dtype="float32")
    whole = decode(album / "tone.m4a")  # the mono model-rate samples audiograph analyses
    start = (len(whole.samples) - 2 * whole.sample_rate) // 2
    assert clip_rate == whole.sample_rate and len(samples) == 2 * whole.sample_rate
    np.testing.assert_allclose(samples, whole.samples[start : start + len(samples)], atol=1e-4)


def test_albums_exclude_debian_packages(recipe, tmp_path):
    with pytest.raises(recipe.ConfigError, match="--albums"):
        recipe.run(["--albums", str(tmp_path), "--held-out", "--out", str(tmp_path / "out")])


def test_benchmark_on_a_folder_of_albums(recipe, tmp_path):
    """`--albums DIR` on synthetic music laid out as <artist>/<album>/: each artist folder is one album,
    and nothing is downloaded (the cache folder is never created)."""
    from audiograph.synth import synthesize

    synthesize(tmp_path / "synth", tracks=30, genres=3, playlists=6, seconds=8, workers=1)
    cache = tmp_path / "cache"
    results = recipe.run(
        [
            "--quick",
            "--albums",
            str(tmp_path / "synth" / "audio"),
            "--out",
            str(tmp_path / "out"),
            "--cache",
            str(cache),
        ]
    )
    artists = sorted(p.name for p in (tmp_path / "synth" / "audio").iterdir() if p.is_dir())
    assert [a["package"] for a in results["collection"]["albums"]] == artists
    assert results["collection"]["source"] == "local"
    assert not cache.exists()
    for space in recipe.SPACES:
        assert 0.0 <= results["summary"][space]["precision_at_5"]["mean"] <= 1.0
    assert "subfolders of the folder given with --albums" in (tmp_path / "out" / "results.md").read_text()
