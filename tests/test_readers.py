"""Playlist and graph readers on small fixture files (and the shared Spotify CSV when present)."""

import csv
import json
import os

import numpy as np
import pytest

from audiograph.errors import ConfigError
from audiograph.graph.readers import (
    PlaylistEntry,
    read_edge_list_csv,
    read_m3u,
    read_membership_csv,
    read_mpd_json,
    read_sources,
)

M3U_LINES = [
    "#EXTM3U",  # 1
    "#PLAYLIST:Road Trip",  # 2
    "# just a comment",  # 3
    "#EXTINF:215,Daft Punk - One More Time",  # 4
    "music/one.mp3",  # 5
    "#EXTINF:-1,Only A Title",  # 6
    "/abs/two.flac",  # 7
    "sub\\dir\\three.mp3",  # 8
    "file:///home/me/My%20Music/four.mp3",  # 9
    "#EXTINF:100,Radio - Stream",  # 10
    "http://radio.example/stream",  # 11
    "five.mp3",  # 12: the EXTINF above belonged to the skipped URL
    "spotify:track:4uLU6hMCjMI75M1A2tKUQC",  # 13
    "HTTPS://example.com/x.mp3",  # 14
    "#EXTINF:abc,Bad - Duration",  # 15
    "six.mp3",  # 16
    "#EXTINF:300 no comma",  # 17
    "",  # 18
    "C:\\Music\\seven.mp3",  # 19
    "../up/./eight.mp3",  # 20
]


def write(path, text: str, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def test_m3u_entries_paths_info_and_report(tmp_path):
    path = write(tmp_path / "lists" / "trip.m3u8", "\ufeff" + "\r\n".join(M3U_LINES) + "\n")
    playlist, report = read_m3u(path)
    folder = str(tmp_path / "lists")

    assert (playlist.id, playlist.name, playlist.source) == (str(path), "Road Trip", str(path))
    assert playlist.entries == [
        PlaylistEntry(f"{folder}/music/one.mp3", title="One More Time", artist="Daft Punk", duration=215.0),
        PlaylistEntry(path="/abs/two.flac", title="Only A Title"),
        PlaylistEntry(path=f"{folder}/sub/dir/three.mp3"),
        PlaylistEntry(path="/home/me/My Music/four.mp3"),
        PlaylistEntry(path=f"{folder}/five.mp3"),
        PlaylistEntry(path=f"{folder}/six.mp3"),
        PlaylistEntry(path="C:/Music/seven.mp3"),
        PlaylistEntry(path=f"{tmp_path}/up/eight.mp3"),
    ]
    assert (report.playlists, report.entries, report.urls_skipped) == (1, 8, 3)
    assert report.malformed == [
        f"{path}:15: malformed #EXTINF (duration 'abc' is not a number)",
        f"{path}:17: malformed #EXTINF (no comma before the title)",
    ]


def test_m3u_name_defaults_to_the_file_stem_and_latin1_is_tolerated(tmp_path):
    text = "#EXTINF:10,Beyoncé - Déjà Vu\nsong.mp3\n"
    path = write(tmp_path / "Beyoncé mix.m3u", text, encoding="latin-1")
    playlist, report = read_m3u(path)
    assert playlist.name == "Beyoncé mix"
    assert playlist.entries == [
        PlaylistEntry(path=str(tmp_path / "song.mp3"), title="Déjà Vu", artist="Beyoncé", duration=10.0)
    ]
    assert report.malformed == []


def test_an_m3u8_that_is_not_utf8_is_read_in_the_windows_code_page_and_said(tmp_path):
    path = write(tmp_path / "bad.m3u8", "#EXTINF:10,Beyoncé - Déjà Vu\nDéjà Vu.mp3\n", encoding="latin-1")
    playlist, report = read_m3u(path)
    assert playlist.entries == [
        PlaylistEntry(path=str(tmp_path / "Déjà Vu.mp3"), title="Déjà Vu", artist="Beyoncé", duration=10.0)
    ]
    assert report.malformed == [f"{path}: not valid UTF-8, as an .m3u8 must be; read as Windows-1252"]


def test_windows_typography_in_an_m3u_is_read_and_bytes_it_leaves_undefined_fall_back_to_latin1(tmp_path):
    path = write(tmp_path / "win.m3u", "Artist – “Song” ’99.mp3\n", encoding="cp1252")  # 0x96, 0x93, 0x94, 0x92
    assert read_m3u(path)[0].entries == [PlaylistEntry(path=str(tmp_path / "Artist – “Song” ’99.mp3"))]
    path = tmp_path / "odd.m3u8"
    path.write_bytes(b"caf\xe9 \x81.mp3\n")  # 0x81 is undefined in Windows-1252
    playlist, report = read_m3u(str(path))
    assert playlist.entries == [PlaylistEntry(path=str(tmp_path / "café \x81.mp3"))]
    assert report.malformed == [f"{path}: not valid UTF-8, as an .m3u8 must be; read as Latin-1"]


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_csv_delimiter_is_found_from_the_header_and_column_names_are_trimmed(tmp_path, delimiter):
    rows = [[" playlist_id ", "track_id "], ["p1", "a"], ["p1", "b;c|d"], ["p2", "a"]]
    path = tmp_path / "lists.csv"
    with open(path, "w", newline="", encoding="utf-8-sig") as f:  # with a BOM, as spreadsheets save
        csv.writer(f, delimiter=delimiter).writerows(rows)
    playlists, report = read_membership_csv(path)
    assert [(p.id, [e.track_id for e in p.entries]) for p in playlists] == [("p1", ["a", "b;c|d"]), ("p2", ["a"])]
    assert report.malformed == []


def test_a_source_that_cannot_be_read_is_reported_and_the_others_are_read(tmp_path):
    write(tmp_path / "lists" / "a.m3u8", "one.mp3\ntwo.mp3\n")
    write(tmp_path / "lists" / "broken.json", "{not json")
    write(tmp_path / "lists" / "sub" / "b.m3u", "three.mp3\n")
    playlists, _, reports = read_sources([tmp_path / "lists"])
    assert [p.name for p in playlists] == ["a", "b"]
    errors = {os.path.basename(r.source): r.error for r in reports}
    assert errors["a.m3u8"] is None and errors["b.m3u"] is None
    assert errors["broken.json"].startswith("invalid JSON (")


MPD_SLICE = {
    "info": {"slice": "0-2"},
    "playlists": [
        {
            "pid": 7,
            "name": "Throwbacks",
            "tracks": [
                {"pos": 0, "track_uri": "spotify:track:a", "track_name": "A", "artist_name": "X", "duration_ms": 1500},
                {"pos": 1, "track_name": "no uri", "artist_name": "Y"},
                {"pos": 2, "track_uri": "spotify:track:b", "track_name": "B", "artist_name": "Z"},
                "not a track",
            ],
        },
        {"name": "no pid", "tracks": []},
        {"pid": 8, "name": "Empty", "tracks": []},
    ],
}


def test_mpd_json_playlists_and_malformed_objects(tmp_path):
    path = write(tmp_path / "mpd.slice.0-2.json", json.dumps(MPD_SLICE))
    playlists, report = read_mpd_json(path)
    assert [(p.id, p.name, p.source) for p in playlists] == [
        ("mpd:7", "Throwbacks", str(path)),
        ("mpd:8", "Empty", str(path)),
    ]
    assert playlists[0].entries == [
        PlaylistEntry(track_id="spotify:track:a", title="A", artist="X", duration=1.5),
        PlaylistEntry(track_id="spotify:track:b", title="B", artist="Z"),
    ]
    assert (report.playlists, report.entries) == (2, 2)
    where = [m.split(": ")[1] for m in report.malformed]
    assert where == ["playlists[0].tracks[1]", "playlists[0].tracks[3]", "playlists[1]"]


def test_mpd_fields_of_another_type_are_unknown_not_stored(tmp_path):
    """A track_name that is a list reached the store, which refused it naming itself rather than the file; a
    NaN duration and a playlist name that is an object were kept as well. Each is unknown, as a missing one is,
    and a pid that is neither a number nor a string is a bad playlist."""
    slice_ = {
        "playlists": [
            {
                "pid": 1,
                "name": {"x": 1},
                "tracks": [{"track_uri": "u:1", "track_name": ["A"], "artist_name": 5, "duration_ms": float("nan")}],
            },
            {"pid": [2], "tracks": []},
            {"pid": True, "tracks": []},
        ]
    }
    path = tmp_path / "mpd.json"
    path.write_text(json.dumps(slice_), encoding="utf-8")
    playlists, report = read_mpd_json(path)
    assert [(p.id, p.name) for p in playlists] == [("mpd:1", "mpd:1")]
    assert playlists[0].entries == [PlaylistEntry(track_id="u:1")]
    assert [m.split(": ")[1] for m in report.malformed] == ["playlists[1]", "playlists[2]"]


@pytest.mark.parametrize("text", ["{not json", json.dumps({"info": {}})])
def test_invalid_mpd_json_raises_naming_the_file(tmp_path, text):
    path = write(tmp_path / "broken.json", text)
    with pytest.raises(ConfigError, match="broken.json"):
        read_mpd_json(path)


MEMBERSHIP_CSV = """list,song,list_name,song_title,song_artist,extra
p1,t1,First,Title 1,Artist 1,x
p2,t3,Second,Title 3,,x
p1,t2,First,Title 2,Artist 2,x
p1,t1,First,Title 1,Artist 1,x
,t9,Nameless,Title 9,Artist 9,x
p2,,Second,,,x
p2,t1,Second,Title 1,Artist 1,x
p2,t3,Second,Title 3,,x
"""


def test_membership_csv_with_custom_columns_repeats_and_empty_ids(tmp_path):
    path = write(tmp_path / "members.csv", MEMBERSHIP_CSV)
    playlists, report = read_membership_csv(
        path,
        playlist_col="list",
        track_col="song",
        name_col="list_name",
        title_col="song_title",
        artist_col="song_artist",
    )
    assert [(p.id, p.name, p.source) for p in playlists] == [
        ("p1", "First", str(path)),
        ("p2", "Second", str(path)),
    ]
    assert playlists[0].entries == [
        PlaylistEntry(track_id="t1", title="Title 1", artist="Artist 1"),
        PlaylistEntry(track_id="t2", title="Title 2", artist="Artist 2"),
    ]
    assert playlists[1].entries == [
        PlaylistEntry(track_id="t3", title="Title 3"),
        PlaylistEntry(track_id="t1", title="Title 1", artist="Artist 1"),
    ]
    assert (report.playlists, report.entries, report.duplicates_dropped) == (2, 4, 2)
    assert report.malformed == [f"{path}:6: empty list", f"{path}:7: empty song"]


def test_membership_csv_without_names_uses_ids(tmp_path):
    path = write(tmp_path / "members.csv", MEMBERSHIP_CSV)
    playlists, _ = read_membership_csv(path, playlist_col="list", track_col="song")
    assert [p.name for p in playlists] == ["p1", "p2"]
    assert playlists[0].entries[0] == PlaylistEntry(track_id="t1")


def test_membership_csv_missing_column_lists_the_available_ones(tmp_path):
    path = write(tmp_path / "members.csv", MEMBERSHIP_CSV)
    with pytest.raises(ConfigError) as error:
        read_membership_csv(path, playlist_col="list", track_col="track_id")
    message = str(error.value)
    assert "members.csv" in message and "'track_id'" in message
    assert "list, song, list_name, song_title, song_artist, extra" in message


EDGE_CSV = """a,b,w
t1,t2,3
t2,t3,abc
,t4,1
t3,t4,-2
t4,t5,
t5,t1,0.5
t1,t3,1e39
"""


def test_edge_list_csv_reports_bad_rows(tmp_path):
    path = write(tmp_path / "edges.csv", EDGE_CSV)
    edges, report = read_edge_list_csv(path, src_col="a", dst_col="b", weight_col="w")
    assert (edges.src, edges.dst) == (["t1", "t5"], ["t2", "t1"])
    np.testing.assert_array_equal(edges.weight, np.array([3.0, 0.5], np.float32))
    assert report.edges == 2
    assert report.malformed == [
        f"{path}:3: weight 'abc' is not a positive number (up to 3.4e+38)",
        f"{path}:4: empty a",
        f"{path}:5: weight '-2' is not a positive number (up to 3.4e+38)",
        f"{path}:6: weight '' is not a positive number (up to 3.4e+38)",
        f"{path}:8: weight '1e39' is not a positive number (up to 3.4e+38)",  # infinite in float32
    ]


def test_edge_list_csv_without_weight_column(tmp_path):
    path = write(tmp_path / "edges.csv", "src,dst\nx,y\ny,z\n")
    edges, report = read_edge_list_csv(path)
    assert (edges.src, edges.dst, edges.weight.tolist()) == (["x", "y"], ["y", "z"], [1.0, 1.0])
    assert report.malformed == []


def test_read_sources_dispatches_by_extension_header_and_folder(tmp_path):
    tree = tmp_path / "tree"
    write(tree / "b.m3u", "#PLAYLIST:B\nsong.mp3\n")
    write(tree / "a" / "deep" / "c.M3U8", "song.mp3\n")
    write(tree / "a" / "mpd.json", json.dumps(MPD_SLICE))
    write(tree / "notes.txt", "ignored inside a folder")
    write(tree / "z.csv", "src,dst\nx,z\n")  # a folder's CSVs are read too, as given ones are
    members = write(tmp_path / "members.csv", MEMBERSHIP_CSV)
    edges = write(tmp_path / "edges.csv", "from,to\nx,y\n")

    playlists, edge_lists, reports = read_sources(
        [tree, members, edges], playlist_col="list", track_col="song", src_col="from", dst_col="to"
    )
    assert [r.source for r in reports] == [
        str(tree / "a" / "deep" / "c.M3U8"),
        str(tree / "a" / "mpd.json"),
        str(tree / "b.m3u"),
        str(tree / "z.csv"),
        str(members),
        str(edges),
    ]
    assert [p.name for p in playlists] == ["c", "Throwbacks", "Empty", "B", "p1", "p2"]
    assert [(e.src, e.dst) for e in edge_lists] == [(["x"], ["y"])]
    assert reports[3].error and "missing column" in reports[3].error  # its columns are not those given


def test_read_sources_sniffs_edge_lists_with_default_columns(tmp_path):
    edges = write(tmp_path / "graph.csv", "src,dst,weight\nx,y,2\n")
    playlists, edge_lists, _ = read_sources(edges)
    assert playlists == [] and edge_lists[0].weight.tolist() == [2.0]


@pytest.mark.parametrize(
    "name, create, reason", [("missing.m3u", False, "no such file"), ("notes.txt", True, "unknown source type")]
)
def test_a_missing_or_unknown_source_is_reported_and_the_others_are_read(tmp_path, name, create, reason):
    path = tmp_path / name
    if create:
        write(path, "hello")
    good = write(tmp_path / "b.m3u", "song.mp3\n")
    playlists, _, reports = read_sources([path, good])
    assert [p.source for p in playlists] == [str(good)]
    assert reports[0].source == str(path) and reason in reports[0].error


def test_shared_spotify_csv_loads(shared_data):
    path = shared_data / "spotify_playlists" / "spotify_songs_dev.csv"
    playlists, report = read_membership_csv(
        path, name_col="playlist_name", title_col="track_name", artist_col="track_artist"
    )
    with open(path, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert len(playlists) == report.playlists == 329
    assert {p.id for p in playlists} == {row["playlist_id"] for row in rows}
    assert report.entries == len({(row["playlist_id"], row["track_id"]) for row in rows})
    assert report.entries + report.duplicates_dropped + len(report.malformed) == len(rows)
    assert os.fspath(path) == playlists[0].source


def test_a_csv_saved_in_the_windows_code_page_and_json_with_a_byte_order_mark_are_read(tmp_path):
    text = "playlist_id,track_id,playlist_name,track_artist\np1,t1,Café “mix”,Beyoncé\np1,t2,Café “mix”,Björk\n"
    (tmp_path / "excel.csv").write_bytes(text.encode("cp1252"))
    with pytest.warns(UserWarning, match="excel.csv: not valid UTF-8; read as Windows-1252"):
        playlists, _ = read_membership_csv(tmp_path / "excel.csv", name_col="playlist_name", artist_col="track_artist")
    assert playlists[0].name == "Café “mix”" and [e.artist for e in playlists[0].entries] == ["Beyoncé", "Björk"]
    (tmp_path / "bom.csv").write_bytes(text.encode("utf-8-sig"))
    playlists, _ = read_membership_csv(tmp_path / "bom.csv", name_col="playlist_name")
    assert playlists[0].name == "Café “mix”"
    document = {"playlists": [{"pid": 1, "name": "x", "tracks": [{"track_uri": "spotify:track:a"}]}]}
    (tmp_path / "bom.json").write_bytes(json.dumps(document).encode("utf-8-sig"))
    playlists, _ = read_mpd_json(tmp_path / "bom.json")
    assert [e.track_id for e in playlists[0].entries] == ["spotify:track:a"]


def test_a_folder_without_playlist_files_is_reported_as_such(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no playlists here")
    good = write(tmp_path / "good.m3u8", "a.mp3\nb.mp3\n")
    playlists, _, reports = read_sources([tmp_path / "empty", good])
    assert len(playlists) == 1
    assert [r.error for r in reports] == ["no playlist files in this folder (.m3u, .m3u8, .json or .csv)", None]


def test_an_extinf_attribute_with_a_comma_does_not_end_the_duration(tmp_path):
    text = '#EXTM3U\n#EXTINF:-1 tvg-name="Artist, Band" group-title="x",Artist, Band - Song\na.mp3\n'
    playlist, report = read_m3u(write(tmp_path / "iptv.m3u", text))
    assert (playlist.entries[0].artist, playlist.entries[0].title) == ("Artist, Band", "Song")
    assert report.malformed == []


def test_a_column_named_twice_is_warned_of(tmp_path):
    path = write(tmp_path / "twice.csv", "playlist_id,track_id,track_id\np1,a,b\np1,c,d\n")
    with pytest.warns(UserWarning, match="columns named twice, the last of each is read: track_id"):
        playlists, _ = read_membership_csv(path)
    assert [e.track_id for e in playlists[0].entries] == ["b", "d"]


def test_a_line_separator_in_a_title_adds_no_entry(tmp_path):
    """Lines end at CR and LF only: `splitlines` broke an #EXTINF title at U+2028 into a second entry."""
    path = tmp_path / "list.m3u8"
    path.write_text(
        "#EXTM3U\n#EXTINF:10,A - Song\u2028../../../../etc/passwd\nsong.mp3\r\nother.mp3\r", encoding="utf-8"
    )
    playlist, report = read_m3u(path)
    assert [os.path.basename(e.path) for e in playlist.entries] == ["song.mp3", "other.mp3"]
    assert playlist.entries[0].title == "Song\u2028../../../../etc/passwd"
