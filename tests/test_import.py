"""import-tracks: a second import changes only what it is given, extends a feature space with the same columns,
and says which model it replaced when the columns differ."""

import csv

import numpy as np
import pytest
import torch

from audiograph.errors import ConfigError
from audiograph.pipelines.import_tracks import import_tracks
from audiograph.store import Store


def _csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def csvs(tmp_path):
    first = _csv(
        tmp_path / "first.csv",
        [{"track_id": f"t{i}", "energy": i, "tempo": 100 + i, "genre": "rock", "title": f"Song {i}"} for i in range(5)],
    )
    more = _csv(
        tmp_path / "more.csv",
        [{"track_id": f"t{i}", "energy": 10 * i, "tempo": 90 + i, "loud": -i} for i in range(3, 8)],
    )
    return first, more


def test_a_second_import_keeps_what_it_does_not_give(tmp_path, csvs):
    first, more = csvs
    store = Store(tmp_path / "s.db")
    import_tracks(store, first, features={"audio": ["energy", "tempo"]}, genre_col="genre", title_col="title")
    report = import_tracks(store, more, features={"audio": ["energy", "tempo"]})
    tracks = {t["id"]: t for t in store.tracks.rows(status=None)}
    assert {t: tracks[t]["genre"] for t in ("t0", "t3", "t4")} == {"t0": "rock", "t3": "rock", "t4": "rock"}
    assert tracks["t4"]["title"] == "Song 4" and tracks["t7"]["genre"] is None
    # Same columns: one space, one model, extended by the second CSV (its values win where both list a track).
    assert report.extended == {"audio": store.vectors.search_model("audio")[0]} and report.replaced == []
    model_id = store.vectors.search_model("audio")[0]
    assert store.vectors.spaces() == {"audio": {model_id: 8}}
    ids, matrix = store.vectors.matrix("audio")
    np.testing.assert_array_equal(matrix[ids.index("t4")], [40, 94])
    np.testing.assert_array_equal(matrix[ids.index("t1")], [1, 101])
    assert len(store.models.get(model_id)["config"]["csv"]) == 2


@pytest.mark.parametrize(
    "features",
    [{"audio": "energy, tempo"}, "audio=energy,tempo", ["audio=energy,tempo"], {"audio": ("energy", "tempo")}],
)
def test_feature_groups_are_taken_in_the_command_lines_forms_too(tmp_path, csvs, features):
    """{"audio": "energy,tempo"} read the string's letters as columns ("missing column(s) 'e', 'n', ..."), and
    the command line's "audio=energy,tempo" failed with an AttributeError."""
    store = Store(tmp_path / "s.db")
    import_tracks(store, csvs[0], features=features)
    ids, matrix = store.vectors.matrix("audio")
    np.testing.assert_array_equal(matrix[ids.index("t2")], [2, 102])
    with pytest.raises(ConfigError, match="feature group 'audio' names no column"):
        import_tracks(store, csvs[0], features={"audio": " , "})


def test_other_columns_replace_the_space_and_say_so(tmp_path, csvs):
    first, more = csvs
    store = Store(tmp_path / "s.db")
    import_tracks(store, first, features={"audio": ["energy", "tempo"]})
    old = store.vectors.search_model("audio")[0]
    report = import_tracks(store, more, features={"audio": ["energy", "loud"]})
    new = store.vectors.search_model("audio")[0]
    assert new != old and report.extended == {}
    (line,) = report.replaced
    assert f"replaces {old} (columns energy,tempo)" in line and "3 tracks have 'audio' features only from" in line
    # Back to the first columns: the first model is current again, and the change is said again.
    report = import_tracks(store, first, features={"audio": ["energy", "tempo"]})
    assert store.vectors.search_model("audio")[0] == old and report.extended == {"audio": old}
    assert f"replaces {new}" in report.replaced[0]


def test_the_command_line_says_what_it_kept_extended_and_replaced(tmp_path, csvs, capsys):
    from audiograph.cli import main

    first, more = csvs
    db = str(tmp_path / "s.db")
    assert (
        main(["import-tracks", str(first), "--db", db, "--features", "audio=energy,tempo", "--genre-col", "genre"]) == 0
    )
    assert "; 1 genre\n" in capsys.readouterr().out
    assert main(["import-tracks", str(more), "--db", db, "--features", "audio=energy,tempo"]) == 0
    out = capsys.readouterr().out
    assert "genres left as they were" in out and "added to the existing space of model import:audio@" in out
    assert main(["import-tracks", str(more), "--db", db, "--features", "audio=energy,loud"]) == 0
    assert "note: feature group 'audio': model import:audio@" in capsys.readouterr().err


def test_rows_left_out_are_named_by_the_line_they_start_on_and_the_cell_at_fault(tmp_path):
    path = tmp_path / "messy.csv"
    path.write_text(
        "track_id,title,energy,tempo\n"  # line 1
        'a,"A title\nover three\nlines",0.5,120\n'  # lines 2-4
        "b,B,bad,120\n"  # line 5
        "c,C,,120\n"  # line 6
        "d,D,0.5\n"  # line 7: a field short
        "e,E, with a comma,0.5,120\n"  # line 8: a field too many
        "f,F,0.7,121\n",  # line 9
        encoding="utf-8",
    )
    report = import_tracks(Store(tmp_path / "s.db"), path, features={"audio": ["energy", "tempo"]})
    assert report.skipped == [
        f"{path}:5: no audio vector: 'energy' is not a number ('bad')",
        f"{path}:6: no audio vector: 'energy' is empty",
        f"{path}:7: no audio vector: the row has fewer fields than the header has columns",
        f"{path}:8: more fields than the header has columns (an unquoted comma?)",
    ]
    assert sorted(Store(tmp_path / "s.db").vectors.matrix("audio")[0]) == ["a", "f"]


def test_rows_repeating_a_track_with_other_values_are_named_and_the_first_is_kept(tmp_path, capsys):
    from audiograph.cli import main

    rows = [
        {"track_id": "a", "playlist": "p1", "genre": "rock", "energy": "0.5", "title": "A"},
        {"track_id": "b", "playlist": "p1", "genre": "rock", "energy": "0.9", "title": "B"},
        {"track_id": "a", "playlist": "p2", "genre": "pop", "energy": "0.5", "title": "A"},  # same values: fine
        {"track_id": "a", "playlist": "p3", "genre": "pop", "energy": "0.7", "title": "A"},
        {"track_id": "b", "playlist": "p3", "genre": "pop", "energy": "0.9", "title": "B (live)"},
    ]
    path = _csv(tmp_path / "t.csv", rows)
    store = Store(tmp_path / "s.db")
    report = import_tracks(
        store, path, features={"audio": ["energy"]}, genre_col="genre", title_col="title", playlist_col="playlist"
    )
    assert report.conflicting == [
        f"{path}:5: 'energy' is '0.7', where line 2 has '0.5' for the same track; the first row's values are kept",
        f"{path}:6: 'title' is 'B (live)', where line 3 has 'B' for the same track; the first row's values are kept",
    ]
    ids, matrix = store.vectors.matrix("audio")
    assert dict(zip(ids, matrix[:, 0].tolist(), strict=True)) == {"a": 0.5, "b": pytest.approx(0.9)}

    code = main(["import-tracks", str(path), "--db", str(tmp_path / "c.db"), "--features", "audio=energy"])
    out = capsys.readouterr().out
    assert code == 0 and out.count("conflicting: ") == 1 and f"{path}:5: 'energy' is '0.7'" in out


def test_a_csv_of_which_no_row_imports_is_an_error_that_names_the_first_cell_and_changes_nothing(tmp_path):
    path = tmp_path / "eu.csv"
    path.write_text("track_id;energy\nt1;0,5\nt2;0,7\n", encoding="utf-8")  # decimal commas
    store = Store(tmp_path / "s.db")
    with pytest.raises(
        ConfigError, match=r"no row could be imported: .*eu.csv:2: .*'energy'.*\(and 1 more rows like it\)"
    ):
        import_tracks(store, path, features={"audio": ["energy"]})
    assert store.tracks.rows(status=None) == [] and store.models.rows() == []


def test_a_text_column_named_as_a_feature_is_refused_but_a_few_bad_cells_are_only_reported(tmp_path):
    titles = ["Song", "1999", "Intro", "22", "Outro"]  # two titles that parse as numbers
    path = _csv(tmp_path / "t.csv", [{"track_id": f"t{i}", "title": t, "energy": i} for i, t in enumerate(titles)])
    store = Store(tmp_path / "s.db")
    with pytest.raises(ConfigError, match=r"column 'title' of feature group 'audio' is not numeric: 3 of its 5"):
        import_tracks(store, path, features={"audio": ["energy", "title"]})
    assert store.tracks.rows(status=None) == []

    path = _csv(tmp_path / "u.csv", [{"track_id": f"t{i}", "energy": "n/a" if i == 2 else i} for i in range(5)])
    report = import_tracks(store, path, features={"audio": ["energy"]})
    assert report.tracks == 4 and len(report.skipped) == 1 and "'energy' is not a number ('n/a')" in report.skipped[0]


def test_stored_audio_takes_from_the_csv_only_what_its_tags_lack(store_copy, tmp_path):
    """A CSV describing stored files fills the tags they lack and keeps those they have; without a playlist
    column its genres are the tracks' own labels, not playlist votes (which a track in no playlist loses)."""
    from audiograph.pipelines.features import genre_labels

    store = store_copy
    tagged, untagged = [t for t in store.tracks.rows() if t["genre"]][:2]
    store.db.execute("UPDATE tracks SET genre = NULL, artist = NULL WHERE id = ?", [untagged["id"]])
    store.db.conn.commit()
    rows = [
        {"track_id": tagged["id"], "energy": 1, "genre": "Tagged-over", "artist": "CSV artist"},
        {"track_id": untagged["id"], "energy": 2, "genre": "Folk", "artist": "CSV artist"},
    ]
    report = import_tracks(
        store,
        _csv(tmp_path / "tags.csv", rows),
        features={"energy": ["energy"]},
        genre_col="genre",
        artist_col="artist",
    )
    assert (report.tracks, report.updated) == (2, 2)
    after = {t["id"]: t for t in store.tracks.rows()}
    assert after[tagged["id"]]["genre"] == tagged["genre"] and after[tagged["id"]]["artist"] == tagged["artist"]
    assert after[untagged["id"]]["genre"] == "Folk" and after[untagged["id"]]["artist"] == "CSV artist"
    assert after[untagged["id"]]["status"] == "ok" and store.graph.genre_votes() == {}
    warm, cold = genre_labels(store)
    assert warm[untagged["id"]] == cold[untagged["id"]] == "Folk"
    assert cold[tagged["id"]] == tagged["genre"]


def test_a_vector_group_reads_the_space_with_the_most_graph_tracks_and_warns_of_the_other(store_copy, tmp_path):
    from audiograph.graph.csr import CSRGraph
    from audiograph.pipelines.features import build_features

    synth = store_copy.tracks.node_ids()
    (tmp_path / "t.csv").write_text("track_id,energy,tempo\n" + "".join(f"x{i},0.{i},{100 + i}\n" for i in range(3)))
    import_tracks(store_copy, tmp_path / "t.csv", features={"audio": ["energy", "tempo"]})
    imported = ["x0", "x1", "x2"]

    def spec_for(node_ids):
        empty = CSRGraph(torch.zeros(len(node_ids) + 1, dtype=torch.int64), torch.zeros(0, dtype=torch.int64))
        with pytest.warns(UserWarning) as caught:
            _, spec, mask = build_features(store_copy, node_ids, empty, ["audio"])
        return spec, mask, str(caught[0].message)

    spec, mask, message = spec_for(synth + imported)
    assert spec.spaces["audio"] == "descriptors" and mask[:, 0].tolist() == [True] * len(synth) + [False] * 3
    assert f"reads the 'descriptors' space ({len(synth)} of the graph's tracks)" in message
    assert "the 'audio' space also holds vectors of 3 other tracks" in message
    spec, mask, message = spec_for(synth[:1] + imported)
    assert spec.spaces["audio"] == "audio" and mask[:, 0].tolist() == [False, True, True, True]
    assert "the 'descriptors' space also holds vectors of 1 other track," in message


def test_values_float32_cannot_hold_or_standardise_are_refused_by_row_and_the_space_stays_usable(tmp_path):
    from audiograph.pipelines.query import similar_track

    csv_path = tmp_path / "t.csv"
    csv_path.write_text(
        "track_id,energy,tempo,pop\n"
        "a,0.5,120,10\nb,1e39,121,11\nc,0.7,3.5e30,inf\nd,0.2,100,1e308\ne,0.4,inf,\nf,0.3,90,12\n"
    )
    store = Store(tmp_path / "s.db")
    report = import_tracks(store, csv_path, features={"audio": ["energy", "tempo"]}, popularity_col="pop")
    assert report.skipped == [
        f"{csv_path}:3: no audio vector: 'energy' is beyond ±1e+15 ('1e39'): rescale the column",
        f"{csv_path}:4: no audio vector: 'tempo' is beyond ±1e+15 ('3.5e30'): rescale the column",
        f"{csv_path}:4: no popularity: 'pop' is not finite ('inf')",
        f"{csv_path}:5: no popularity: 'pop' is beyond ±1e+15 ('1e308'): rescale the column",
        f"{csv_path}:6: no audio vector: 'tempo' is not finite ('inf')",
    ]
    ids, matrix = store.vectors.matrix("audio")
    assert sorted(ids) == ["a", "d", "f"] and np.isfinite(matrix).all()
    assert len(similar_track(store, "a", space="audio", k=2).hits) == 2
