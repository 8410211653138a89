"""The store: migrations, round-trips of tracks, vectors, models and mel chunks, and exact search."""

import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from audiograph.errors import ConfigError, StoreError
from audiograph.pipelines.build_graph import load_graph
from audiograph.store import Store, TrackRecord, default_db_path
from audiograph.store import migrations as migrations_module
from audiograph.store.index import VectorIndex, top_k_rows


def _record(i, vectors=None, status="ok", **kw):
    return TrackRecord(
        id=f"c/{i:03d}.mp3",
        collection="c",
        path=f"/music/{i:03d}.mp3",
        content_hash=f"h{i}",
        size=100 + i,
        mtime_ns=i,
        status=status,
        duration=20.0,
        sample_rate=44100,
        channels=2,
        format="mp3",
        tags={"title": f"Song {i}", "artist": "A", "genre": "rock"},
        vectors=vectors or {},
        **kw,
    )


def test_fresh_store_applies_every_migration_once(tmp_path):
    path = tmp_path / "s.db"
    store = Store(path)
    names = [r["name"] for r in store.db["_migrations"].rows]
    assert names == [m.__name__ for m in migrations_module.MIGRATIONS]
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()
    assert migrations_module.migrate(Store(path).conn) == []


def test_an_older_store_is_upgraded_in_place(tmp_path, monkeypatch):
    path = tmp_path / "old.db"
    first = migrations_module.MIGRATIONS[:1]
    monkeypatch.setattr(migrations_module, "MIGRATIONS", first)
    old = Store(path)
    old.tracks.write([_record(1)])
    old.close()
    monkeypatch.undo()
    store = Store(path)
    assert [r["name"] for r in store.db["_migrations"].rows] == [m.__name__ for m in migrations_module.MIGRATIONS]
    assert store.tracks.get("c/001.mp3")["title"] == "Song 1"  # data survives the upgrade


def test_genres_that_csv_rows_voted_become_labels_again(tmp_path, monkeypatch):
    """Older imports kept each CSV row's genre as a vote from "<file>.csv:<line>"; the upgrade drops those, and
    keeps playlists' votes."""
    path = tmp_path / "old.db"
    monkeypatch.setattr(migrations_module, "MIGRATIONS", migrations_module.MIGRATIONS[:-1])
    old = Store(path)
    old.tracks.write([_record(1)])
    old.graph.put_genre_votes({"c/001.mp3": [("songs.CSV:12", "rock"), ("playlist:7", "jazz"), ("a.csv:x", "pop")]})
    old.close()
    monkeypatch.undo()
    assert Store(path).graph.genre_votes() == {"c/001.mp3": [("a.csv:x", "pop"), ("playlist:7", "jazz")]}


def test_edges_of_an_older_store_survive_every_change_of_their_table(tmp_path, monkeypatch):
    path = tmp_path / "old.db"
    monkeypatch.setattr(migrations_module, "MIGRATIONS", migrations_module.MIGRATIONS[:3])
    old = Store(path)  # rows keyed on (src, dst) with a second index, as the first stores had them
    old.tracks.write([_record(i) for i in range(3)])
    with old.transaction():
        old.db.conn.executemany(
            "INSERT INTO edges (src, dst, weight) VALUES (?, ?, ?)",
            [("c/001.mp3", "c/002.mp3", 2.0), ("c/000.mp3", "c/001.mp3", 1.0)],
        )
        old.set_meta("graph", {"min_weight": 1})
    old.close()
    monkeypatch.undo()
    store = Store(path)
    assert store.db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'edges'").fetchone()[0] == 0
    assert sorted(store.graph.edge_rows()) == [("c/000.mp3", "c/001.mp3", 1.0), ("c/001.mp3", "c/002.mp3", 2.0)]
    node_ids, graph = load_graph(store)
    assert graph.num_edges == 4 and store.graph.summary()["edges"] == 2


def test_graph_arrays_round_trip_onto_any_node_list(tmp_path):
    store = Store(tmp_path / "s.db")
    nodes = [f"t{i}" for i in range(6)]
    src, dst, weight = np.array([0, 4, 2]), np.array([3, 1, 5]), np.array([1.0, 2.5, 7.0])
    store.graph.replace([], nodes, (src, dst, weight), {"sources": []})
    assert sorted(store.graph.edge_rows()) == [("t0", "t3", 1.0), ("t1", "t4", 2.5), ("t2", "t5", 7.0)]
    # Onto another node list: positions follow it, and edges to nodes it leaves out are dropped.
    s, d, w = store.graph.edges(["t5", "t1", "t2", "t4", "x"])
    assert sorted(zip(s.tolist(), d.tolist(), w.tolist())) == [(1, 3, 2.5), (2, 0, 7.0)]
    with pytest.raises(ValueError):
        store.graph.replace([], nodes[:3], (src, dst, weight), {})


def test_must_exist_and_corrupt_files(tmp_path):
    with pytest.raises(StoreError, match="no store here"):
        Store(tmp_path / "none.db", must_exist=True)
    bad = tmp_path / "bad.db"
    bad.write_text("not a database" * 100)
    with pytest.raises(StoreError, match="not a usable audiograph store"):
        Store(bad)
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(StoreError, match="an empty file, not an audiograph store"):
        Store(empty, must_exist=True)  # a read-only command: it would otherwise make a store of it
    assert empty.stat().st_size == 0


def test_a_store_from_a_newer_audiograph_is_refused_unchanged(tmp_path):
    store = Store(tmp_path / "s.db")
    store.db.execute("INSERT INTO _migrations (name, applied) VALUES ('m099_future', '2030-01-01')")
    # Its new steps may add triggers: the store is newer, not tampered with.
    store.db.execute("CREATE TRIGGER tracks_counted AFTER INSERT ON tracks BEGIN SELECT 1; END")
    store.db.conn.commit()
    store.db.conn.close()
    with pytest.raises(StoreError, match="made by a newer audiograph .* m099_future"):
        Store(tmp_path / "s.db")


def test_every_store_the_migrations_leave_opens_and_nothing_else_runs(tmp_path, monkeypatch):
    """A store holds only the views and triggers some step of the migrations makes (checked against stores
    migrated step by step). A view in a table's place (which forged the rows every command read, or looped
    without end), an added trigger, or a version trigger rewritten is refused in one line, and nothing in the
    file changes."""
    for step in range(1, len(migrations_module.MIGRATIONS) + 1):
        monkeypatch.setattr(migrations_module, "MIGRATIONS", migrations_module.MIGRATIONS[:step])
        conn = sqlite3.connect(":memory:")
        migrations_module.migrate(conn)
        assert migrations_module.foreign_statements(conn) == [], step
        monkeypatch.undo()
    fresh = Store(tmp_path / "good.db")
    tables = {name for (name,) in fresh.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == migrations_module.STORE_TABLES
    fresh.close()
    # A user's own view, of another name, is never read: the store opens.
    mine = tmp_path / "mine.db"
    mine.write_bytes((tmp_path / "good.db").read_bytes())
    with sqlite3.connect(mine) as conn:
        conn.execute("CREATE VIEW my_failed AS SELECT id FROM tracks WHERE status = 'failed'")
    Store(mine).close()
    forged = [
        "ALTER TABLE tracks RENAME TO hidden;"
        " CREATE VIEW tracks AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT * FROM hidden",
        "CREATE TRIGGER spy AFTER INSERT ON models BEGIN DELETE FROM vectors; END",
        "DROP TRIGGER vectors_deleted; CREATE TRIGGER vectors_deleted AFTER DELETE ON vectors BEGIN DELETE FROM"
        " tracks; END",
    ]
    for n, sql in enumerate(forged):
        path = tmp_path / f"forged{n}.db"
        path.write_bytes((tmp_path / "good.db").read_bytes())
        with sqlite3.connect(path) as conn:
            conn.executescript(sql)
        before = path.read_bytes()
        with pytest.raises(StoreError, match="holds SQL that audiograph does not write") as error:
            Store(path)
        assert str(path) in str(error.value) and "\n" not in str(error.value)
        assert path.read_bytes() == before


def test_damaged_graph_and_registry_values_are_named_not_raised(tmp_path):
    """Values someone edited in the file: each is a one-line `StoreError` naming the store and the value."""
    store = Store(tmp_path / "s.db")
    nodes = [f"t{i}" for i in range(4)]
    store.graph.replace([], nodes, (np.array([0, 1]), np.array([2, 3]), np.array([1.0, 2.0])), {"sources": []})
    for n, (change, what) in enumerate(
        [
            ("UPDATE graph_arrays SET dtype = 'O' WHERE name = 'src'", "the stored graph is damaged"),
            ("UPDATE graph_arrays SET length = 100000000 WHERE name = 'src'", "the stored graph is damaged"),
            ("UPDATE graph_arrays SET data = ? WHERE name = 'src'", "the stored graph is damaged"),
            ("UPDATE graph_arrays SET dtype = '>i8' WHERE name = 'src'", "the stored graph is damaged"),
            ("UPDATE graph_arrays SET data = ? WHERE name = 'src'", "the stored graph is damaged"),
            ("UPDATE meta SET value = '{bad' WHERE key = 'graph'", "the stored 'graph' value is damaged"),
        ]
    ):
        copy = tmp_path / f"copy{n}.db"
        store.compact()
        copy.write_bytes((tmp_path / "s.db").read_bytes())
        other = Store(copy)
        # nodes past the last (n = 2), then before the first (n = 4: a negative index wrapped round)
        args = [np.full(4, 10**6 if n == 2 else -1, np.int32).tobytes()] if "?" in change else []
        other.db.execute(change, args)
        other.db.conn.commit()
        with pytest.raises(StoreError, match=what):
            other.graph.edges(nodes)
    store.set_meta("graph", {"sources": 5, "built": "today"})
    with pytest.raises(StoreError, match="the stored 'graph' value is damaged"):
        store.graph.summary()
    store.models.register("m1", "import", "audio")
    store.db.execute("UPDATE models SET config = '{bad' WHERE id = 'm1'")
    store.db.conn.commit()
    with pytest.raises(StoreError, match="model 'm1''s registry row is damaged"):
        store.models.get("m1")


def test_default_path_follows_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("AUDIOGRAPH_DB", raising=False)
    assert str(default_db_path()) == "audiograph.db"
    monkeypatch.setenv("AUDIOGRAPH_DB", str(tmp_path / "x.db"))
    assert default_db_path() == tmp_path / "x.db"


def test_tracks_vectors_and_mels_round_trip(tmp_path):
    store = Store(tmp_path / "s.db")
    rng = np.random.default_rng(0)
    vec = rng.standard_normal(16).astype(np.float32)
    chunks = [rng.standard_normal((8, 5)).astype(np.float16), rng.standard_normal((8, 3)).astype(np.float16)]
    store.tracks.write([_record(1, {"acoustic": ("m1", vec)}, mel_chunks=chunks, frontend="fe1")])
    row = store.tracks.get("c/001.mp3")
    assert (row["title"], row["status"], row["content_hash"], row["sample_rate"]) == ("Song 1", "ok", "h1", 44100)
    ids, matrix = store.vectors.matrix("acoustic")
    assert ids == ["c/001.mp3"]
    np.testing.assert_array_equal(matrix[0], vec)
    blob = store.db.execute("SELECT vector FROM vectors").fetchone()[0]
    assert blob == vec.astype("<f4").tobytes()  # little-endian float32
    cached = store.mels.chunks(["c/001.mp3"])["c/001.mp3"]
    assert [c.shape for c in cached] == [(8, 5), (8, 3)]
    np.testing.assert_array_equal(cached[1], chunks[1])
    assert store.mels.states() == {"c/001.mp3": ("h1", "fe1")}
    assert store.mels.chunks(frontend="other") == {}
    # A damaged row (an infinity in its float16 data) is named, not handed to training.
    data = bytearray(store.db.execute("SELECT data FROM mels").fetchone()[0])
    data[6:8] = np.array([np.inf], "<f2").tobytes()
    store.db.execute("UPDATE mels SET data = ?", [bytes(data)])
    with pytest.raises(StoreError, match="the cached spectrogram of c/001.mp3 is damaged .*not finite"):
        store.mels.chunks()
    store.db.execute("UPDATE mels SET data = ?", [np.concatenate(chunks, axis=1).astype("<f2").tobytes()])

    # Rewriting is an upsert: one row per (space, track), never duplicates.
    store.tracks.write([_record(1, {"acoustic": ("m1", vec * 2)})])
    assert store.db.execute("SELECT count(*) FROM vectors").fetchone()[0] == 1
    np.testing.assert_array_equal(store.vectors.matrix("acoustic")[1][0], vec * 2)

    # A file that stops decoding loses its stale vectors and mel chunks.
    store.tracks.write([_record(1, status="failed", error="truncated")])
    assert store.tracks.get("c/001.mp3")["error"] == "truncated"
    assert store.vectors.spaces() == {} and store.mels.chunks() == {}


def test_models_registry_and_search_model(tmp_path):
    store = Store(tmp_path / "s.db")
    ckpt = store.models_dir / "enc1" / "last.ckpt"
    store.models.register("enc1", "audio-encoder", "acoustic", checkpoint=ckpt, config={"lr": 0.005})
    row = store.models.get("enc1")
    assert row["config"] == {"lr": 0.005} and row["checkpoint"] == str(ckpt.resolve())
    raw = store.db.execute("SELECT checkpoint FROM models").fetchone()[0]
    assert raw == "enc1/last.ckpt"  # kept relative to the models folder
    store.models.register("enc2", "audio-encoder", "acoustic")
    assert store.models.latest("audio-encoder")["id"] == "enc2" and store.models.latest("musig") is None
    # A space's name for its kind found nothing, silently.
    with pytest.raises(ConfigError, match="unknown model kind 'acoustic' .* holds models of kind 'audio-encoder'"):
        store.models.latest("acoustic")
    with pytest.raises(ConfigError, match="unknown model kind 'encoder'"):
        store.models.rows(kind="encoder")

    v = np.ones(4, np.float32)
    store.tracks.write([_record(i, {"acoustic": ("enc1", v)}) for i in range(3)])
    assert store.vectors.search_model("acoustic") == ("enc1", 0)
    store.tracks.write([_record(0, {"acoustic": ("enc2", v)})])
    # The newest model with vectors is searched; the older model's vectors are counted, not mixed in.
    assert store.vectors.search_model("acoustic") == ("enc2", 2)
    assert store.vectors.matrix("acoustic")[0] == ["c/000.mp3"]
    with pytest.raises(StoreError, match="no vectors in space 'musig'"):
        store.vectors.search_model("musig")


def test_collections_never_collide(tmp_path):
    store = Store(tmp_path / "s.db")
    (tmp_path / "a" / "music").mkdir(parents=True)
    (tmp_path / "b" / "music").mkdir(parents=True)
    assert store.tracks.collection(tmp_path / "a" / "music") == "music"
    assert store.tracks.collection(tmp_path / "a" / "music") == "music"
    with pytest.raises(ConfigError, match="already refers to"):
        store.tracks.collection(tmp_path / "b" / "music")
    assert store.tracks.collection(tmp_path / "b" / "music", "music-b") == "music-b"
    assert store.tracks.collection(tmp_path / "b" / "music") == "music-b"  # remembered by root


def test_similar_matches_brute_force_and_excludes_the_query(tmp_path):
    store = Store(tmp_path / "s.db")
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((50, 8)).astype(np.float32)
    store.tracks.write([_record(i, {"acoustic": ("m", vectors[i])}) for i in range(50)])
    query = vectors[7]
    hits = store.vectors.similar("acoustic", query, k=5, exclude={"c/007.mp3"})
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = unit @ (query / np.linalg.norm(query))
    scores[7] = -np.inf
    expected = np.argsort(-scores)[:5]
    assert [h["track_id"] for h in hits] == [f"c/{i:03d}.mp3" for i in expected]
    np.testing.assert_allclose([h["score"] for h in hits], scores[expected], rtol=1e-5)
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert hits[0]["title"] == f"Song {expected[0]}"


def test_index_edge_cases_and_standardisation():
    rng = np.random.default_rng(2)
    index = VectorIndex(["a", "b", "c"], rng.standard_normal((3, 4)))
    assert [h.id for h in index.search(index.matrix[0], k=10, normalised=True)][0] == "a"
    assert len(index.search(index.matrix[0], k=10, exclude={"a", "zzz"})) == 2
    assert index.search(index.matrix[0], k=3, exclude={"a", "b", "c"}) == []
    # Standardised: columns are z-scored before the cosine, so units no longer matter.
    m = rng.standard_normal((20, 3)).astype(np.float32) * np.array([1000.0, 1.0, 0.01], np.float32) + 50
    z = VectorIndex([str(i) for i in range(20)], m, standardize=True)
    expected = (m - m.mean(0)) / m.std(0)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(z.matrix, expected, atol=1e-5)
    query = m[3] + np.array([300.0, 0, 0], np.float32)
    q = (query - m.mean(0)) / m.std(0)
    assert [h.id for h in z.search(query, k=3)] == [
        str(i) for i in np.argsort(-(expected @ (q / np.linalg.norm(q))))[:3]
    ]


def test_a_new_process_reads_the_index_from_its_cache_until_the_space_changes(tmp_path):
    path = tmp_path / "s.db"
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((30, 6)).astype(np.float32) * 10 + 3
    store = Store(path)
    store.models.register("d1", "descriptors", "descriptors", config={"standardize": True})
    store.tracks.write([_record(i, {"descriptors": ("d1", vectors[i])}) for i in range(30)])
    built = store.vectors.index("descriptors")
    assert not isinstance(built.matrix, np.memmap)
    store.close()

    reopened = Store(path)  # a new process: the matrix comes from the cache, memory-mapped and equal
    cached = reopened.vectors.index("descriptors")
    assert isinstance(cached.matrix, np.memmap)
    assert cached.ids == built.ids
    np.testing.assert_array_equal(cached.matrix, built.matrix)
    assert built.matrix.flags.f_contiguous and cached.matrix.flags.f_contiguous  # the layout search streams fastest
    np.testing.assert_array_equal(cached.normalise(vectors[4]), built.normalise(vectors[4]))
    hits = reopened.vectors.similar("descriptors", vectors[4], k=3)
    assert hits[0]["track_id"] == "c/004.mp3"
    reopened.close()

    # Any write to the space, even one that keeps the row count, makes the cache stale.
    writer = Store(path)
    writer.vectors.put("descriptors", "d1", {"c/004.mp3": -vectors[4]})
    writer.close()
    fresh = Store(path)
    index = fresh.vectors.index("descriptors")
    assert not isinstance(index.matrix, np.memmap)
    assert fresh.vectors.similar("descriptors", -vectors[4], k=1)[0]["track_id"] == "c/004.mp3"
    assert len(list((tmp_path / "s.db.index" / "descriptors" / "exact").glob("matrix-*.npy"))) == 1


def test_what_killed_cache_writers_left_is_removed_by_the_next_write(tmp_path):
    """A search or `index` killed while writing a cache file left `.NAME.PID.partial` (an N x D matrix) for good:
    every kill added one. The next cache write removes those of processes that are gone, not a live one's."""
    import subprocess
    import sys

    store = Store(tmp_path / "s.db")
    store.models.register("d1", "descriptors", "descriptors")
    store.tracks.write([_record(i, {"descriptors": ("d1", np.full(4, i + 1.0, np.float32))}) for i in range(5)])
    store.vectors.index("descriptors")
    folder = tmp_path / "s.db.index" / "descriptors" / "exact"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale, live = (
        folder / f".matrix-old.npy.{dead.stdout.strip()}.partial",
        folder / f".ids-x.json.{os.getpid()}.partial",
    )
    stale.write_bytes(b"half a matrix")
    live.write_bytes(b"being written")
    store.vectors.put("descriptors", "d1", {"c/000.mp3": np.ones(4, np.float32)})
    store.close()
    Store(tmp_path / "s.db").vectors.index("descriptors")
    assert not stale.exists() and live.exists()


def test_a_row_major_cache_from_before_the_column_major_layout_is_rebuilt(tmp_path):
    path = tmp_path / "s.db"
    vectors = np.random.default_rng(4).standard_normal((12, 5)).astype(np.float32)
    store = Store(path)
    store.models.register("d1", "descriptors", "descriptors")
    store.tracks.write([_record(i, {"descriptors": ("d1", vectors[i])}) for i in range(12)])
    built = store.vectors.index("descriptors")
    store.close()
    (cache,) = (tmp_path / "s.db.index" / "descriptors" / "exact").glob("matrix-*.npy")
    np.save(cache, np.ascontiguousarray(built.matrix), allow_pickle=False)  # as an older version wrote it

    reopened = Store(path)
    index = reopened.vectors.index("descriptors")
    assert not isinstance(index.matrix, np.memmap) and index.matrix.flags.f_contiguous
    np.testing.assert_array_equal(index.matrix, built.matrix)
    reopened.close()


def test_a_store_whose_cache_cannot_be_written_is_still_searched(tmp_path):
    path = tmp_path / "s.db"
    store = Store(path)
    vectors = np.eye(4, dtype=np.float32)
    store.tracks.write([_record(i, {"acoustic": ("m", vectors[i])}) for i in range(4)])
    (tmp_path / "s.db.index").write_text("a file where the cache folder would go")
    assert store.vectors.similar("acoustic", vectors[2], k=1)[0]["track_id"] == "c/002.mp3"


def test_top_k_rows_equals_a_full_sort_with_ties_and_excluded_rows():
    rng = np.random.default_rng(4)
    for n in (1, 7, 100, 5_000, 300_000):
        for k in (1, 3, 10, 50):
            if k > n:
                continue
            scores = rng.standard_normal(n).astype(np.float32)
            scores[rng.integers(0, n, n // 10)] = -np.inf  # excluded rows
            scores[: min(n, 4)] = scores[min(n, 4) - 1]  # ties
            top = top_k_rows(scores, k)
            np.testing.assert_array_equal(scores[top], np.sort(scores)[::-1][:k])
            assert len(set(top.tolist())) == k


def test_a_batch_is_written_atomically(tmp_path):
    store = Store(tmp_path / "s.db")
    bad = _record(2, {"acoustic": ("m", np.ones(4, np.float32))})
    bad.tags = {"title": object()}  # sqlite cannot bind this: the whole batch must roll back
    with pytest.raises((sqlite3.InterfaceError, sqlite3.ProgrammingError)):
        store.tracks.write([_record(1, {"acoustic": ("m", np.ones(4, np.float32))}), bad])
    assert store.tracks.rows(status=None) == [] and store.vectors.spaces() == {}


def _open_and_write(path, results):
    try:
        store = Store(path)
        store.tracks.collection(path.parent, "c")
        store.models.register("m", "descriptors", "descriptors", config={"n": 1})
        store.tracks.write([_record(1, {"descriptors": ("m", np.ones(4, np.float32))})])
        results.put("ok")
    except BaseException as e:  # noqa: BLE001 - the test reports whatever happened
        results.put(f"{type(e).__name__}: {e}")


def test_processes_creating_one_new_store_at_once_all_succeed(tmp_path):
    """The schema is created under the busy timeout and the write lock: nobody sees 'database is locked'."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    outcomes = []
    for attempt in range(8):
        path = tmp_path / f"s{attempt}.db"
        results = context.Queue()
        procs = [context.Process(target=_open_and_write, args=(path, results)) for _ in range(3)]
        for p in procs:
            p.start()
        outcomes += [results.get(timeout=120) for _ in procs]
        for p in procs:
            p.join()
        applied = [r["name"] for r in Store(path).db["_migrations"].rows]
        assert applied == [m.__name__ for m in migrations_module.MIGRATIONS]
    assert outcomes == ["ok"] * len(outcomes)


def test_a_failed_transaction_leaves_nothing(tmp_path):
    store = Store(tmp_path / "s.db")
    with pytest.raises(KeyboardInterrupt):
        with store.transaction():
            store.db.execute("INSERT INTO meta (key, value) VALUES ('a', '1')")
            raise KeyboardInterrupt
    assert store.get_meta("a") is None and not store.db.conn.in_transaction


def test_a_damaged_vector_is_named_and_made_again(tmp_path):
    store = Store(tmp_path / "s.db")
    store.tracks.write([_record(i, {"descriptors": ("m", np.full(4, i, np.float32))}) for i in range(3)])
    store.db.execute("UPDATE vectors SET vector = x'0011' WHERE track_id = 'c/001.mp3'")
    store.db.conn.commit()
    with pytest.raises(StoreError, match=r"1 'descriptors' vectors of model 'm' are damaged \(track c/001.mp3: 2 b"):
        store.vectors.matrix("descriptors")
    assert set(store.vectors.states("descriptors", dim=4)) == {"c/000.mp3", "c/002.mp3"}  # the damaged one is redone
    assert len(store.vectors.states("descriptors")) == 3


def test_file_names_that_are_not_utf8_are_stored_under_one_stable_name(tmp_path):
    from audiograph.store import path_text

    raw = b"/music/caf\xe9 \xff.mp3"
    name = os.fsdecode(raw)  # what os.walk gives: the undecodable bytes as surrogates
    assert path_text(name) == "/music/caf\\xe9 \\xff.mp3" == path_text(os.fsdecode(raw))
    assert path_text("/music/café.mp3") == "/music/café.mp3"
    store = Store(tmp_path / "s.db")
    record = _record(1)
    record.id, record.path = f"c/{os.fsdecode(b'caf' + bytes([0xE9]))}.mp3", name
    store.tracks.write([record])
    assert store.tracks.get("c/caf\\xe9.mp3")["path"] == "/music/caf\\xe9 \\xff.mp3"


def test_abandoned_run_folders_are_removed_and_live_or_registered_ones_kept(tmp_path):
    import fcntl
    import subprocess
    import sys

    store = Store(tmp_path / "s.db")
    models = store.models_dir
    abandoned, registered = models / "musig-20250101-000000", models / "musig-20250101-000001"
    unmarked = models / "musig-20250101-000003"  # made by no run of this code (or another store's): kept
    for folder in (abandoned, registered, unmarked):
        (folder / "checkpoints").mkdir(parents=True)
    for folder in (abandoned, registered):
        (models / f".{folder.name}.lock").write_bytes(b"")  # the marker a run leaves when it is killed
    (registered / "checkpoints" / "last.ckpt").write_bytes(b"")
    store.models.register(registered.name, "musig", "musig", checkpoint=registered / "checkpoints" / "last.ckpt")
    live = models / "musig-20250101-000002"
    (live / "checkpoints").mkdir(parents=True)
    # Another process holds the live run's marker, as a training run in progress does.
    hold = (
        f"import fcntl, os, time\nfd = os.open({str(models / ('.' + live.name + '.lock'))!r}, os.O_CREAT | os.O_RDWR)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(600)"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        model_id = store.models.new_id("musig")
        assert not abandoned.exists() and not (models / f".{abandoned.name}.lock").exists()
        assert registered.exists() and unmarked.exists() and live.exists()
        assert not (models / f".{registered.name}.lock").exists()  # a registered model's stale marker goes
        # The new id's own marker is held: another store object (another process's view) leaves it alone.
        (models / model_id).mkdir()
        Store(store.path).models.new_id("musig")
        assert (models / model_id).exists()
        fd = os.open(models / f".{model_id}.lock", os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)
    finally:
        holder.kill()
        holder.wait()
    Store(store.path).models.new_id("musig")  # the holder died: its folder is abandoned now
    assert not live.exists()


def test_a_run_that_registers_while_its_folder_is_looked_at_keeps_it(tmp_path, monkeypatch):
    """Another process's training registered its model and released its marker between this process's reading
    of the registry and its taking the marker's lock: the registered model's folder was removed."""
    import fcntl

    from audiograph.store import models as models_module

    store, other = Store(tmp_path / "s.db"), Store(tmp_path / "s.db")
    run_id = other.models.new_id("musig")
    (other.models_dir / run_id / "model").mkdir(parents=True)
    real_flock = fcntl.flock

    def flock_after_the_other_run_registers(fd, operation):
        if run_id in other.models._run_locks:
            other.models.register(run_id, "musig", "musig", checkpoint=other.models_dir / run_id / "model")
        return real_flock(fd, operation)

    monkeypatch.setattr(models_module.fcntl, "flock", flock_after_the_other_run_registers)
    store.models.new_id("musig")
    assert (store.models_dir / run_id / "model").is_dir() and store.models.get(run_id)


def test_replacing_the_graph_returns_what_it_replaced(tmp_path):
    store = Store(tmp_path / "s.db")
    store.tracks.write([_record(i) for i in range(3)])
    assert store.graph.summary() is None
    nodes, edges = ["c/000.mp3", "c/001.mp3"], (np.array([0]), np.array([1]), np.array([1.0]))
    playlist = ("p", "p", "a.m3u8", 2, ["c/000.mp3", "c/001.mp3"])
    assert store.graph.replace([playlist], nodes, edges, {"sources": ["a"]}) is None
    previous = store.graph.replace([], [], (np.array([]), np.array([]), np.array([])), {"sources": ["b"]})
    assert previous["playlists"] == 1 and previous["edges"] == 1 and previous["sources"] == ["a"]


def test_a_new_store_waits_for_a_lock_held_before_it_is_in_wal_mode(tmp_path):
    """SQLite refuses the switch to WAL at once while another connection holds a lock on a store still in
    rollback mode (two runs creating one store together); opening waits for the lock instead of failing."""
    import threading

    path = tmp_path / "s.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("CREATE TABLE pending (x)")  # a write lock, on a file in rollback mode
    with pytest.raises(sqlite3.OperationalError, match="locked"):  # what SQLite does without the wait
        sqlite3.connect(path, timeout=5).execute("PRAGMA journal_mode = wal")
    release = threading.Timer(0.5, holder.execute, ["ROLLBACK"])
    release.start()
    try:
        store = Store(path)
    finally:
        release.join()
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert "tracks" in store.db.table_names() and "pending" not in store.db.table_names()
    store.close()
    holder.close()


def test_a_lock_error_names_the_store_and_claims_no_wait_it_did_not_make(tmp_path):
    """SQLite also reports "locked" at once (a deadlock it detects), so the message says how long it waited
    at most, not that it waited the whole timeout."""
    from audiograph.store.connection import BUSY_TIMEOUT_SECONDS, sqlite_error

    error = sqlite_error(tmp_path / "s.db", sqlite3.OperationalError("database is locked"))
    assert str(error) == (
        f"{tmp_path / 's.db'}: another process holds the store locked"
        f" (waited up to {BUSY_TIMEOUT_SECONDS} s; database is locked)"
    )


def _saved_model(store, model_id: str) -> Path:
    folder = store.models_dir / model_id / "model"
    folder.mkdir(parents=True)
    (folder / "weights.pt").write_bytes(b"weights")
    store.models.register(model_id, "audio-encoder", "acoustic", checkpoint=folder)
    return folder


def test_a_store_renamed_with_its_models_folder_keeps_its_models(tmp_path):
    store = Store(tmp_path / "a.db")
    _saved_model(store, "enc1")
    store.close()
    for old in tmp_path.glob("a.*"):  # the store file (and any WAL files) and its models folder
        old.rename(tmp_path / ("b" + old.name[1:]))
    moved = Store(tmp_path / "b.db")
    row = moved.models.get("enc1")
    assert moved.models.checkpoint_file(row) == (tmp_path / "b.models" / "enc1" / "model").resolve()


def test_checkpoints_registered_before_are_migrated_to_the_models_folder(tmp_path):
    store = Store(tmp_path / "a.db")
    folder = _saved_model(store, "enc1")
    with store.db.conn:  # as stores registered them before: relative to the store's folder
        store.db.execute("UPDATE models SET checkpoint = 'a.models/' || checkpoint")
        store.db.execute("DELETE FROM _migrations WHERE name = 'm008_checkpoints_relative_to_the_models_folder'")
    assert migrations_module.migrate(store.conn) == ["m008_checkpoints_relative_to_the_models_folder"]
    assert store.db.execute("SELECT checkpoint FROM models").fetchone()[0] == "enc1/model"
    assert store.models.checkpoint_file(store.models.get("enc1")) == folder.resolve()


def test_the_migrations_of_old_model_rows_leave_odd_rows_usable(tmp_path):
    store = Store(tmp_path / "a.db")
    folder = _saved_model(store, "enc1")
    rows = [  # (id, kind, checkpoint, config) as older or foreign stores hold them
        ("win", "audio-encoder", "a.models\\enc1\\model", "{}"),
        ("abs", "audio-encoder", str(folder), "{}"),
        ("none", "import", None, None),
        ("empty", "import", None, ""),
    ]
    with store.db.conn:
        for model_id, kind, checkpoint, config in rows:
            store.db.execute(
                "INSERT INTO models (id, kind, space, checkpoint, config, metrics, created)"
                " VALUES (?, ?, 'x', ?, ?, '{}', '2026-01-01')",
                [model_id, kind, checkpoint, config],
            )
        store.db.execute("DELETE FROM _migrations WHERE name LIKE 'm007%' OR name LIKE 'm008%'")
    migrations_module.migrate(store.conn)
    for model_id in ("win", "abs"):
        assert store.models.checkpoint_file(store.models.get(model_id)) == folder.resolve(), model_id
    assert store.models.get("none")["config"] == store.models.get("empty")["config"] == {"standardize": True}


def test_a_store_pickles_as_its_path_and_the_copy_opens_its_own_connection(tmp_path):
    """A Store handed to a DataLoader worker or another process failed to pickle (its SQLite connection)."""
    import multiprocessing
    import pickle

    store = Store(tmp_path / "s.db")
    store.tracks.write([_record(1)])
    copy = pickle.loads(pickle.dumps(store))
    assert copy.conn is not store.conn and copy.tracks.get("c/001.mp3")["title"] == "Song 1"
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(_title_in_another_process, (store,)) == "Song 1"
    assert store.tracks.get("c/001.mp3")["title"] == "Song 1"


def _title_in_another_process(store: Store) -> str:
    return store.tracks.get("c/001.mp3")["title"]


def test_the_float16_finiteness_check_agrees_with_numpy_on_every_value():
    from audiograph.store.mels import finite_float16

    every = np.arange(65536, dtype=np.uint16).view("<f2")
    assert [finite_float16(every[i : i + 1]) for i in range(65536)] == np.isfinite(every).tolist()
