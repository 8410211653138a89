"""build-graph: matching playlist entries to stored tracks, weights against a brute-force count, GraphML."""

import gc
import itertools
import json
from collections import Counter
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from audiograph.errors import ConfigError
from audiograph.pipelines.build_graph import build_graph, export_graphml, load_graph
from audiograph.runtime import gc_paused
from audiograph.store import Store, TrackRecord


@pytest.fixture
def store_with_tracks(tmp_path):
    """A store with 6 'embedded' tracks under tmp_path/music (the files need not exist to be matched)."""
    store = Store(tmp_path / "s.db")
    music = tmp_path / "music"
    store.tracks.write(
        [
            TrackRecord(
                id=f"m/t{i}.mp3",
                collection="m",
                path=str(music / f"t{i}.mp3"),
                content_hash=f"h{i}",
                tags={"title": f"T{i}", "genre": "rock" if i < 3 else "jazz"},
            )
            for i in range(6)
        ]
    )
    return store, music


def _write_m3u(path: Path, entries: list[str]) -> None:
    lines = ["#EXTM3U"]
    for e in entries:
        lines += [f"#EXTINF:10,Someone - {Path(e).stem}", e]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _brute_force_weights(playlists: list[list[str]]) -> Counter:
    counts = Counter()
    for tracks in playlists:
        for a, b in itertools.combinations(sorted(set(tracks)), 2):
            counts[(a, b)] += 1
    return counts


def test_weights_match_a_brute_force_count_and_unmatched_are_reported(store_with_tracks, tmp_path):
    store, music = store_with_tracks
    lists = tmp_path / "lists"
    lists.mkdir()
    rng = np.random.default_rng(0)
    playlists = [[f"t{i}.mp3" for i in rng.choice(6, size=rng.integers(2, 6), replace=False)] for _ in range(12)]
    for n, tracks in enumerate(playlists):
        _write_m3u(lists / f"{n:02d}.m3u8", [f"../music/{t}" for t in tracks])
    _write_m3u(lists / "extra.m3u8", ["../music/t0.mp3", "../music/gone.mp3", "http://radio.example/stream"])

    report = build_graph(store, [lists], min_weight=1)
    assert report.playlists == 13 and report.unmatched == 1 and report.urls_skipped == 1
    assert "gone.mp3" in report.unmatched_examples[0]
    expected = _brute_force_weights([[f"m/{t}" for t in p] for p in playlists])
    stored = {(a, b): w for a, b, w in store.graph.edge_rows()}
    assert stored == expected
    node_ids, graph = load_graph(store)
    assert graph.num_edges == 2 * len(expected)
    assert store.graph.playlists()[-1]["tracks"] == ["m/t0.mp3"]  # matched entries, in order

    # One source may be given alone, as a Path or a str (a Path failed after every source was read).
    assert build_graph(store, lists, min_weight=1).summary == build_graph(store, str(lists), min_weight=1).summary
    assert {(a, b): w for a, b, w in store.graph.edge_rows()} == expected

    # A threshold keeps only the edges at or above it; the report says why.
    report = build_graph(store, [lists], min_weight=3)
    stored = {(a, b): w for a, b, w in store.graph.edge_rows()}
    assert stored == {k: v for k, v in expected.items() if v >= 3}
    assert "--min-weight" in report.min_weight_reason
    assert store.get_meta("graph")["min_weight"] == 3


def test_auto_min_weight_and_graphml_export(store_with_tracks, tmp_path):
    store, music = store_with_tracks
    lists = tmp_path / "lists"
    lists.mkdir()
    for n in range(4):
        _write_m3u(lists / f"{n}.m3u", [str(music / "t0.mp3"), str(music / "t1.mp3"), str(music / f"t{2 + n}.mp3")])
    report = build_graph(store, [lists])
    assert report.min_weight == 1 and report.min_weight_reason.startswith("min weight 1")
    out = tmp_path / "g.graphml"
    export_graphml(store, out)
    g = nx.read_graphml(out)
    assert g["m/t0.mp3"]["m/t1.mp3"]["weight"] == 4.0
    assert g.nodes["m/t3.mp3"]["genre"] == "jazz"
    assert g.number_of_edges() == report.summary["edges"] == 9


def test_id_sources_with_and_without_add_missing(store_with_tracks, tmp_path):
    store, _ = store_with_tracks
    mpd = tmp_path / "slice.json"
    mpd.write_text(
        json.dumps(
            {
                "playlists": [
                    {
                        "pid": 1,
                        "name": "a",
                        "tracks": [
                            {"track_uri": "m/t0.mp3", "track_name": "T0", "artist_name": "X"},
                            {"track_uri": "spotify:track:new", "track_name": "New", "artist_name": "Y"},
                        ],
                    },
                ]
            }
        )
    )
    edges = tmp_path / "edges.csv"
    edges.write_text("src,dst,weight\nm/t1.mp3,m/t2.mp3,2.5\nm/t1.mp3,nowhere,1\n")
    report = build_graph(store, [mpd, edges], min_weight=1)
    assert report.unmatched == 2 and report.added_tracks == 0
    stored = {(a, b): w for a, b, w in store.graph.edge_rows()}
    assert stored == {("m/t1.mp3", "m/t2.mp3"): 2.5}

    report = build_graph(store, [mpd, edges], min_weight=1, add_missing=True)
    assert report.added_tracks == 2 and report.unmatched == 0
    assert store.tracks.get("spotify:track:new")["status"] == "imported"
    assert store.tracks.get("spotify:track:new")["title"] == "New"
    stored = {(a, b): w for a, b, w in store.graph.edge_rows()}
    assert stored[("m/t0.mp3", "spotify:track:new")] == 1.0 and stored[("m/t1.mp3", "nowhere")] == 1.0


def test_shared_spotify_playlists_load(shared_data, tmp_path):
    store = Store(tmp_path / "s.db")
    csv_path = shared_data / "spotify_playlists" / "spotify_songs_dev.csv"
    report = build_graph(
        store, [csv_path], add_missing=True, name_col="playlist_name", title_col="track_name", artist_col="track_artist"
    )
    assert report.playlists == 329 and report.unmatched == 0
    assert report.min_weight == 1  # weights of 1-8 here: the paper's >= 10 would leave nothing
    assert report.summary["nodes"] == report.added_tracks
    assert len(store.graph.playlists()) == 329


def test_an_empty_new_graph_keeps_the_stored_one_and_a_replacement_is_reported(store_with_tracks, tmp_path):
    from audiograph.errors import ConfigError

    store, music = store_with_tracks
    good = tmp_path / "good.m3u8"
    _write_m3u(good, [str(music / f"t{i}.mp3") for i in range(4)])
    first = build_graph(store, [good], min_weight=1)
    assert first.replaced is None and first.summary["edges"] == 6
    before = sorted(store.graph.edge_rows())

    bad = tmp_path / "bad.m3u8"
    _write_m3u(bad, [str(music / "t0.mp3"), str(tmp_path / "elsewhere.mp3")])  # one track: no pair
    expected = r"bad.m3u8: the new graph has no edges \(1 playlists, 1 of 2 .* kept the stored graph \(1 playlists, 6"
    with pytest.raises(ConfigError, match=expected):
        build_graph(store, [bad], min_weight=1)
    assert sorted(store.graph.edge_rows()) == before
    assert [p["name"] for p in store.graph.playlists()] == ["good"]
    # What could not be read is said in that error, which stops the command before its report.
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"kept the stored graph .*; unreadable: .*broken\.json: invalid JSON"):
        build_graph(store, [bad, tmp_path / "broken.json"], min_weight=1)

    other = tmp_path / "other.m3u8"
    _write_m3u(other, [str(music / f"t{i}.mp3") for i in (4, 5)])
    second = build_graph(store, [other], min_weight=1)
    assert second.replaced["playlists"] == 1 and second.replaced["edges"] == 6
    assert second.replaced["sources"] == [str(good)]


def test_sources_of_which_no_entry_matches_store_nothing_even_in_a_new_store(store_with_tracks, tmp_path):
    from audiograph.errors import ConfigError

    store, _ = store_with_tracks
    bad = tmp_path / "bad.m3u8"
    _write_m3u(bad, [str(tmp_path / "elsewhere.mp3"), str(tmp_path / "nowhere.mp3")])
    with pytest.raises(ConfigError, match=r"bad.m3u8: not one of its 2 entries matched a stored track \(the first: "):
        build_graph(store, [bad], min_weight=1)
    assert store.graph.summary() is None and store.graph.playlists() == []


def test_gc_paused_restores_the_collector_as_it_found_it():
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("the phase failed")
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # a caller that had paused it keeps it paused
    finally:
        gc.enable()


def test_build_graph_runs_without_cyclic_collections(tmp_path, monkeypatch):
    import audiograph.pipelines.build_graph as pipeline

    seen = []
    real = pipeline.read_sources

    def reading(*args, **kwargs):
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "read_sources", reading)
    csv = tmp_path / "members.csv"
    csv.write_text("playlist_id,track_id\np1,a\np1,b\np2,a\np2,c\n")
    report = build_graph(Store(tmp_path / "s.db"), [csv], add_missing=True, min_weight=1)
    assert seen == [False] and gc.isenabled() and report.summary["edges"] == 2


def test_a_source_named_twice_is_read_once_and_one_playlist_split_over_files_is_joined(store_with_tracks, tmp_path):
    store, music = store_with_tracks
    lists = tmp_path / "lists"
    lists.mkdir()
    _write_m3u(lists / "a.m3u8", ["../music/t0.mp3", "../music/t1.mp3", "../music/t2.mp3"])
    once = build_graph(store, [lists / "a.m3u8"], min_weight=1)
    expected = {(a, b): w for a, b, w in store.graph.edge_rows()}
    # The same file twice, and a folder with the file named again: each stopped on a UNIQUE constraint.
    for sources in ([lists / "a.m3u8", lists / "a.m3u8"], [lists, lists / "a.m3u8"]):
        report = build_graph(store, sources, min_weight=1)
        assert (report.playlists, report.entries) == (once.playlists, once.entries) == (1, 3)
        assert {(a, b): w for a, b, w in store.graph.edge_rows()} == expected

    # One membership table split over two files: the playlist is one, as if read from one file.
    (tmp_path / "part1.csv").write_text("playlist,track\np1,m/t0.mp3\np1,m/t1.mp3\np2,m/t4.mp3\n", encoding="utf-8")
    (tmp_path / "part2.csv").write_text("playlist,track\np1,m/t2.mp3\np2,m/t5.mp3\n", encoding="utf-8")
    options = {"playlist_col": "playlist", "track_col": "track"}
    report = build_graph(store, [tmp_path / "part1.csv", tmp_path / "part2.csv"], min_weight=1, **options)
    assert (report.playlists, report.entries, report.playlists_joined) == (2, 5, 2)
    expected = _brute_force_weights([["m/t0.mp3", "m/t1.mp3", "m/t2.mp3"], ["m/t4.mp3", "m/t5.mp3"]])
    assert {(a, b): w for a, b, w in store.graph.edge_rows()} == expected


def test_edge_list_rows_name_their_unmatched_ends_and_drop_edges_to_self(store_with_tracks, tmp_path):
    store, _ = store_with_tracks
    edges = tmp_path / "edges.csv"
    edges.write_text("src,dst,weight\nm/t0.mp3,m/t1.mp3,2\nm/t1.mp3,m/nowhere.mp3,4\nm/t2.mp3,m/t2.mp3,3\n")
    report = build_graph(store, [edges], min_weight=1)
    assert (report.matched, report.unmatched, report.self_loops_dropped) == (1, 1, 1)
    assert report.unmatched_examples == ["m/nowhere.mp3"]
    assert {(a, b): w for a, b, w in store.graph.edge_rows()} == {("m/t0.mp3", "m/t1.mp3"): 2}


def test_unreadable_sources_are_skipped_and_named_unless_every_source_is(store_with_tracks, tmp_path):
    from audiograph.errors import ConfigError

    store, _ = store_with_tracks
    lists = tmp_path / "lists"
    lists.mkdir()
    _write_m3u(lists / "a.m3u8", ["../music/t0.mp3", "../music/t1.mp3"])
    (lists / "broken.json").write_text("{not json", encoding="utf-8")
    report = build_graph(store, [lists], min_weight=1)
    assert [f["file"] for f in report.failed] == [str((lists / "broken.json").resolve())]
    assert report.failed[0]["reason"].startswith("invalid JSON")
    assert {(a, b): w for a, b, w in store.graph.edge_rows()} == {("m/t0.mp3", "m/t1.mp3"): 1}

    (tmp_path / "bad.csv").write_text("list,song\np1,m/t2.mp3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken.json: invalid JSON .*\(and 1 more sources could not be read\)"):
        build_graph(store, [lists / "broken.json", tmp_path / "bad.csv"], min_weight=1)
    assert {(a, b): w for a, b, w in store.graph.edge_rows()} == {("m/t0.mp3", "m/t1.mp3"): 1}


def test_playlist_paths_match_stored_paths_in_either_unicode_normal_form(tmp_path):
    import unicodedata

    store = Store(tmp_path / "s.db")
    music = tmp_path / "music"
    names = [unicodedata.normalize("NFD", "Déjà vu.mp3"), unicodedata.normalize("NFC", "Über.mp3"), "plain.mp3"]
    store.tracks.write(
        [
            TrackRecord(id=f"m/{i}", collection="m", path=str(music / n), content_hash=f"h{i}")
            for i, n in enumerate(names)
        ]
    )
    written = [unicodedata.normalize("NFC", names[0]), unicodedata.normalize("NFD", names[1]), names[2]]
    _write_m3u(tmp_path / "mix.m3u8", [f"music/{n}" for n in written])
    report = build_graph(store, [tmp_path / "mix.m3u8"], min_weight=1)
    assert (report.matched, report.unmatched) == (3, 0)
    assert {(a, b) for a, b, _ in store.graph.edge_rows()} == {("m/0", "m/1"), ("m/0", "m/2"), ("m/1", "m/2")}


def test_repeated_edge_list_rows_add_up_and_are_counted(store_with_tracks, tmp_path):
    store, _ = store_with_tracks
    edges = tmp_path / "edges.csv"
    edges.write_text("src,dst,weight\nm/t0.mp3,m/t1.mp3,2\nm/t1.mp3,m/t0.mp3,3\nm/t0.mp3,m/t2.mp3,1\n")
    more = tmp_path / "more.csv"
    more.write_text("src,dst\nm/t2.mp3,m/t0.mp3\n")
    report = build_graph(store, [edges, more], min_weight=1)
    assert report.edge_rows_summed == 2
    assert {(a, b): w for a, b, w in store.graph.edge_rows()} == {
        ("m/t0.mp3", "m/t1.mp3"): 5,
        ("m/t0.mp3", "m/t2.mp3"): 2,
    }


def test_weights_that_add_up_beyond_float32_are_refused_and_the_graph_kept(store_with_tracks, tmp_path):
    """Two rows of 3e38 each became an infinite edge weight, stored and later averaged into NaN features."""
    store, _ = store_with_tracks
    build_graph(store, [_edges(tmp_path / "first.csv", "m/t0.mp3,m/t1.mp3,2\n")], min_weight=1)
    huge = _edges(tmp_path / "huge.csv", "m/t0.mp3,m/t1.mp3,3e38\nm/t1.mp3,m/t0.mp3,3e38\n")
    with pytest.raises(ConfigError, match="weights add up beyond what float32 holds"):
        build_graph(store, [huge], min_weight=1)
    assert list(store.graph.edge_rows()) == [("m/t0.mp3", "m/t1.mp3", 2)]


def test_tracks_added_for_a_graph_that_is_refused_are_not_kept(store_with_tracks, tmp_path):
    """--add-missing wrote its new tracks before the graph, in a transaction of their own: a graph refused
    afterwards (or a run killed in between) left them in the store, where they became graph nodes."""
    store, _ = store_with_tracks
    build_graph(store, [_edges(tmp_path / "first.csv", "m/t0.mp3,m/t1.mp3,2\n")], min_weight=1)
    before = len(store.tracks.rows(status=None))
    lists = tmp_path / "lists.csv"
    lists.write_text("playlist_id,track_id\np1,new:a\np1,new:b\np1,m/t2.mp3\n")
    with pytest.raises(ConfigError, match="the new graph has no edges"):
        build_graph(store, [lists], min_weight=1000, add_missing=True)
    assert len(store.tracks.rows(status=None)) == before and store.tracks.get("new:a") is None
    report = build_graph(store, [lists], min_weight=1, add_missing=True)
    assert report.added_tracks == 2 and store.tracks.get("new:a") is not None


def _edges(path, rows: str):
    path.write_text("src,dst,weight\n" + rows)
    return path


def test_a_csv_of_file_paths_matches_the_stored_files_and_adds_none(store_with_tracks, tmp_path):
    store, music = store_with_tracks
    lists = tmp_path / "lists"
    lists.mkdir()
    rows = [("p1", music / "t0.mp3"), ("p1", "../music/t1.mp3"), ("p2", music / "t1.mp3"), ("p2", "../music/t2.mp3")]
    (lists / "mixes.csv").write_text(
        "playlist_id,track_id\n" + "".join(f"{p},{t}\n" for p, t in rows), encoding="utf-8"
    )
    before = len(store.tracks.rows(status=None))
    report = build_graph(store, [lists], min_weight=1, add_missing=True)  # the folder's CSV is read
    assert (report.matched, report.unmatched, report.added_tracks) == (4, 0, 0)
    assert len(store.tracks.rows(status=None)) == before
    assert {(a, b) for a, b, _ in store.graph.edge_rows()} == {("m/t0.mp3", "m/t1.mp3"), ("m/t1.mp3", "m/t2.mp3")}


def test_a_playlist_longer_than_the_bound_is_stored_but_makes_no_edges(store_with_tracks, tmp_path, capsys):
    from audiograph.cli import main

    store, music = store_with_tracks
    lists = tmp_path / "lists"
    lists.mkdir()
    _write_m3u(lists / "pair.m3u8", ["../music/t0.mp3", "../music/t1.mp3"])
    _write_m3u(lists / "library.m3u8", [f"../music/t{i}.mp3" for i in range(6)])
    report = build_graph(store, [lists], min_weight=1, max_playlist_length=5)
    assert (report.playlists, report.long_playlists) == (2, 1)
    assert {(a, b): w for a, b, w in store.graph.edge_rows()} == {("m/t0.mp3", "m/t1.mp3"): 1}
    assert len(store.graph.playlists()) == 2
    args = ["build-graph", str(lists), "--db", str(store.path), "--min-weight", "1", "--max-playlist-length", "5"]
    assert main(args) == 0
    assert "1 playlist of more than 5 tracks stored but left out of the graph" in capsys.readouterr().out
    assert main([*args[:-1], "6"]) == 0
    assert len(list(store.graph.edge_rows())) == 15  # every pair of the six
    from audiograph.errors import ConfigError

    with pytest.raises(ConfigError, match="kept the stored graph .*; 1 playlist of more than 5 tracks made no edges"):
        build_graph(store, [lists / "library.m3u8"], min_weight=1, max_playlist_length=5)


def test_build_graph_imports_neither_torch_nor_networkx(store_with_tracks, tmp_path):
    import subprocess
    import sys

    store, music = store_with_tracks
    _write_m3u(tmp_path / "a.m3u8", [str(music / f"t{i}.mp3") for i in range(3)])
    code = (
        "import sys; from audiograph.cli import main;"
        f"assert main(['build-graph', {str(tmp_path / 'a.m3u8')!r}, '--db', {str(store.path)!r}, '-q']) == 0;"
        "print(sorted(m for m in ('torch', 'networkx') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr


def test_a_playlist_that_reaches_stored_files_through_a_linked_folder_matches_them(tmp_path):
    from audiograph.store import path_text

    real = tmp_path / "real"
    real.mkdir()
    store = Store(tmp_path / "s.db")
    store.tracks.write(
        [
            TrackRecord(id=f"r/t{i}.mp3", collection="r", path=path_text(real / f"t{i}.mp3"), content_hash=f"h{i}")
            for i in range(3)
        ]
    )
    for i in range(3):
        (real / f"t{i}.mp3").write_bytes(b"x")
    (tmp_path / "linked").symlink_to(real, target_is_directory=True)
    _write_m3u(tmp_path / "p.m3u8", [str(tmp_path / "linked" / f"t{i}.mp3") for i in range(3)])
    report = build_graph(store, [tmp_path / "p.m3u8"], min_weight=1)
    assert (report.matched, report.unmatched, report.summary["edges"]) == (3, 0, 3)
