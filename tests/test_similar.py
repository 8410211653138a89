"""similar: the neighbours of a stored track, checked against brute-force cosine rankings of the stored vectors,
for a track with audio (descriptors: z-scored columns) and a track imported without audio."""

import json

import numpy as np
import pytest
from test_cli import run

from audiograph.errors import AudiographError
from audiograph.pipelines.query import similar_track

IMPORTED_CSV = """track_id,title,artist,genre,danceability,energy,valence,tempo
sp:1,Café Ñandú,Zoë Ørsted,Pop,0.8,0.6,0.9,118
sp:2,Night Drive,Kavinsky,Synthwave,0.7,0.8,0.4,120
sp:3,Slow Waltz,Ana,Classical,0.2,0.1,0.3,90
sp:4,Fast Lane,Bob,Pop,0.75,0.65,0.85,128
sp:5,Deep Blue,Cy,Jazz,0.4,0.3,0.2,121
"""


def brute_force(matrix: np.ndarray, ids: list[str], query_id: str, k: int, zscore: bool) -> list[tuple[str, float]]:
    """(id, cosine) of the k rows nearest to row `query_id`, itself left out, by a plain numpy computation."""
    x = matrix.astype(np.float64)
    if zscore:
        std = x.std(axis=0)
        x = (x - x.mean(axis=0)) / np.where(std > 1e-12, std, 1.0)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = ids.index(query_id)
    scores = x @ x[q]
    order = [i for i in np.argsort(-scores, kind="stable") if i != q][:k]
    return [(ids[i], float(scores[i])) for i in order]


def import_extra_tracks(store, folder):
    """Import IMPORTED_CSV (five tracks without audio, an `audio` feature space) into `store` through the CLI."""
    csv = folder / "extra.csv"
    csv.write_text(IMPORTED_CSV, encoding="utf-8")
    features = ["--features", "audio=danceability,energy,valence,tempo"]
    columns = ["--genre-col", "genre", "--title-col", "title", "--artist-col", "artist"]
    run("import-tracks", csv, "--db", store.path, *features, *columns)
    return store


@pytest.fixture
def imported_store(store_copy, tmp_path):
    """The embedded synthetic store plus five tracks imported without audio."""
    return import_extra_tracks(store_copy, tmp_path)


def test_similar_to_a_track_with_audio_matches_a_brute_force_z_scored_cosine_search(store_copy):
    store = store_copy
    ids, matrix = store.vectors.matrix("descriptors")
    track = ids[3]
    expected = brute_force(matrix, ids, track, k=6, zscore=True)
    result = similar_track(store, track, k=6)  # descriptors is the store's only audio space: the default
    assert result.space == "descriptors" and result.query_track == track
    assert [h["track_id"] for h in result.hits] == [t for t, _ in expected]
    np.testing.assert_allclose([h["score"] for h in result.hits], [s for _, s in expected], atol=1e-5)
    by_path = similar_track(store, store.tracks.get(track)["path"], k=6)
    assert [h["track_id"] for h in by_path.hits] == [t for t, _ in expected]


def test_similar_to_an_imported_track_without_audio(imported_store):
    store = imported_store
    ids, matrix = store.vectors.matrix("audio")
    expected = brute_force(matrix, ids, "sp:1", k=3, zscore=True)
    # Raw, tempo in BPM would decide every cosine (all near 1) and rank sp:5 first.
    assert [t for t, _ in brute_force(matrix, ids, "sp:1", k=3, zscore=False)] != [t for t, _ in expected]
    # No --space: the track has no descriptors vector, so the space it has a vector in is searched.
    out = run("similar", "sp:1", "--db", store.path, "-k", "3", "--json")
    hits = json.loads(out.stdout)
    assert [h["track_id"] for h in hits] == [t for t, _ in expected]
    np.testing.assert_allclose([h["score"] for h in hits], [s for _, s in expected], atol=1e-5)
    assert "sp:1" not in [h["track_id"] for h in hits]
    table = run("similar", "sp:4", "--db", store.path, "-k", "2", "--space", "audio").stdout
    assert table.startswith("space 'audio'") and "Zoë Ørsted – Café Ñandú" in table


def test_json_is_utf8_not_escaped(imported_store):
    out = run("similar", "sp:4", "--db", imported_store.path, "-k", "4", "--json").stdout
    assert "Café Ñandú" in out and "\\u" not in out
    imported = next(h for h in json.loads(out) if h["track_id"] == "sp:1")
    assert (imported["title"], imported["artist"]) == ("Café Ñandú", "Zoë Ørsted")


@pytest.mark.parametrize(
    "args, message",
    [
        (["no/such/track"], "no/such/track: no such track id or stored file path"),
        (["sp:1", "--space", "descriptors"], "sp:1 has no vector in space 'descriptors' (it has vectors in: audio)"),
        (["sp:1", "--space", "nope"], "no vectors in space 'nope'"),
    ],
)
def test_similar_errors_are_one_line(imported_store, args, message):
    out = run("similar", *args, "--db", imported_store.path, check=False)
    assert out.returncode == 1 and message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_an_unstored_file_is_pointed_to_query(store_copy, tmp_path):
    stray = tmp_path / "stray.wav"
    stray.write_bytes(b"RIFF")
    with pytest.raises(AudiographError, match="audiograph query FILE"):
        similar_track(store_copy, stray)


def test_a_store_from_before_searches_its_imported_spaces_z_scored(imported_store):
    from audiograph.models import IMPORT_KIND
    from audiograph.store import migrations

    store = imported_store
    model = store.vectors.search_model("audio")[0]
    config = store.models.get(model)["config"]
    assert config.pop("standardize") is True
    with store.db.conn:  # as imports registered their spaces before, and a store that has not migrated since
        store.models.register(model, IMPORT_KIND, "audio", config=config, current=True)
        store.db.execute("DELETE FROM _migrations WHERE name = 'm007_imported_spaces_standardised'")
    assert migrations.migrate(store.conn) == ["m007_imported_spaces_standardised"]
    assert store.models.get(model)["config"] == {**config, "standardize": True}
