"""A track without a genre of its own takes its artist's: the majority over the artist's other tracks, never
its own playlists' votes nor those of held-out playlists."""

import csv
import random
from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from audiograph.musig.features import artist_genres
from audiograph.pipelines.build_graph import build_graph
from audiograph.pipelines.encoders import AudioFile, file_genre
from audiograph.pipelines.evaluate import make_split
from audiograph.pipelines.import_tracks import import_tracks
from audiograph.store import Store


def brute_force(genres, artists):
    out = {}
    for track in genres:
        artist = (artists[track] or "").strip().casefold()
        others = Counter(
            g
            for t, g in genres.items()
            if t != track and g and artist and (artists[t] or "").strip().casefold() == artist
        )
        top = max(others.values(), default=0)
        out[track] = min(g for g, n in others.items() if n == top) if others else None
    return out


def test_artist_genres_match_brute_force():
    rng = random.Random(0)
    for _ in range(50):
        tracks = [f"t{i}" for i in range(rng.randint(1, 30))]
        artists = {t: rng.choice(["A", "a ", "B", "C", None, ""]) for t in tracks}
        genres = {t: rng.choice(["rock", "jazz", "pop", None]) for t in tracks}
        assert artist_genres(genres, artists) == brute_force(genres, artists)


ROWS = [
    # playlist, genre, track, artist
    ("train-rock", "rock", "a1", "Artist A"),
    ("train-rock", "rock", "a2", "artist a"),
    ("train-rock", "rock", "b1", "B"),
    ("train-jazz", "jazz", "b2", "B"),
    ("train-jazz", "jazz", "c1", "C"),
    ("train-jazz", "jazz", "c2", "C"),
    ("train-jazz", "jazz", "e1", "E"),
    ("held", "pop", "a3", "Artist A"),
    ("held", "pop", "d1", "D"),
    ("held", "pop", "d2", "D"),
    ("held", "pop", "c3", "C"),
    ("short", "blues", "f1", "F"),  # held out too, but too short to be evaluated
]


@pytest.fixture
def store(tmp_path):
    def write(path, rows):
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["playlist_id", "genre", "track_id", "artist", "energy"])
            writer.writerows([(*r, i % 3) for i, r in enumerate(rows)])

    write(tmp_path / "all.csv", ROWS)
    write(tmp_path / "train.csv", [r for r in ROWS if r[0] not in ("held", "short")])
    store = Store(tmp_path / "store.db")
    import_tracks(
        store,
        tmp_path / "all.csv",
        features={"audio": ["energy"]},
        genre_col="genre",
        artist_col="artist",
        playlist_col="playlist_id",
    )
    build_graph(store, [tmp_path / "train.csv"])
    yield store
    store.close()


def test_a_split_completes_genres_from_training_playlists_only(store):
    held = [{"id": "held", "tracks": ["a3", "d1", "d2", "c3"]}, {"id": "short", "tracks": ["f1"]}]
    split = make_split(store, held_out=held, min_length=2, groups=["genre"])
    position = {t: i for i, t in enumerate(split.node_ids)}
    assert [c.playlist_id for c in split.cases] == ["held"]
    assert split.genres["f1"] is None  # a held-out playlist votes no genre, evaluated or not
    # In no training playlist: the artist's training genre, never the held-out playlist's "pop".
    assert split.genres["a3"] == "rock" and split.genres["c3"] == "jazz"
    assert split.genres["d1"] is None and split.genres["d2"] is None  # D's only tracks are held out
    assert split.genres["b1"] == "rock" and split.genres["b2"] == "jazz"  # their own votes

    genre, cold = split.features["genre"], split.cold["genre"]

    def row(track):
        return genre[position[track]]

    np.testing.assert_allclose(row("a3"), row("a1"))
    # Placed as if new, a track takes its artist's other tracks' genre, not its own playlists' vote.
    np.testing.assert_allclose(cold[position["b1"]], row("c1"))  # B's other track is jazz
    np.testing.assert_allclose(cold[position["b2"]], row("a1"))  # and rock for b2
    np.testing.assert_allclose(cold[position["e1"]], row("d1"))  # E has no other track: no genre
    np.testing.assert_allclose(cold[position["a1"]], row("a1"))  # a2 and a1 share artist A (case aside)
    np.testing.assert_allclose(cold[position["a3"]], row("a1"))


def test_a_new_file_takes_its_artists_genre(store, tmp_path):
    def audio_file(name, **tags):
        path = tmp_path / f"{name}.flac"
        with sf.SoundFile(path, "w", samplerate=22050, channels=1, format="FLAC") as f:
            for key, value in tags.items():
                setattr(f, key, value)
            f.write(0.3 * np.sin(np.arange(33075) * 0.05).astype(np.float32))  # 1.5 s: decode's minimum is 1 s
        return AudioFile(path, path.read_bytes())

    assert file_genre(store, audio_file("by-c", artist="c")) == "jazz"
    assert file_genre(store, audio_file("by-b", artist="B")) == "jazz"  # a tie (rock, jazz) goes to the first name
    assert file_genre(store, audio_file("own-tag", artist="C", genre="folk")) == "folk"
    assert file_genre(store, audio_file("unknown", artist="Nobody")) is None
    assert file_genre(store, audio_file("untagged")) is None
