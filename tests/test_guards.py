"""What keeps a user's store safe from a bad run or a bad argument: options out of range are usage errors,
a training that diverges registers nothing, no model kind fills another's space, a stale model's hint names
the command that makes its vectors, copies of one recording never answer for it, and playlist sources that
name Spotify tracks in another spelling still match them."""

import csv
import json
import os
import shutil

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from test_cli import run

from audiograph.cli import build_parser
from audiograph.errors import ConfigError, StoreError
from audiograph.options import RANGES
from audiograph.pipelines.build_graph import TrackIds, build_graph
from audiograph.pipelines.embed_audio import embed_audio
from audiograph.pipelines.evaluate import evaluate
from audiograph.pipelines.explore import map_space, radio
from audiograph.pipelines.export import export_space
from audiograph.pipelines.fit import DivergenceGuard
from audiograph.pipelines.import_tracks import import_tracks
from audiograph.pipelines.query import query_file, similar_track
from audiograph.pipelines.train_audio import train_audio
from audiograph.pipelines.train_musig import embed_musig, train_musig
from audiograph.runtime import lightning_trainer
from audiograph.spaces import ACOUSTIC_KIND, IMPORT_KIND, MUSIG_KIND
from audiograph.store import Store
from audiograph.store.ann import space_cache_folder


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train-musig", "--batch-size", "0"], "argument --batch-size: must be at least 1 (got 0)"),
        (["train-musig", "--lr", "-1"], "argument --lr: must be above 0 (got -1)"),
        (["train-musig", "--temperature", "0"], "argument --temperature: must be above 0 (got 0)"),
        (["train-musig", "--dropout", "1"], "argument --dropout: must be at least 0 and below 1 (got 1)"),
        (["train-musig", "--out-channels", "0"], "argument --out-channels: must be at least 1"),
        (["train-audio", "--epochs", "0"], "argument --epochs: must be at least 1 (got 0)"),
        (["train-audio", "--val-fraction", "1"], "argument --val-fraction: must be above 0 and below 1"),
        (["embed-audio", "dir", "--workers", "-1"], "argument --workers: must be at least 0 (got -1)"),
        (["evaluate", "--holdout", "1.5"], "argument --holdout: must be above 0 and below 1 (got 1.5)"),
        (["radio", "x", "--walk", "2"], "argument --walk: must be at least 0 and at most 1 (got 2)"),
        (["query", "x", "-k", "0"], "argument -k: must be at least 1 (got 0)"),
    ],
)
def test_options_out_of_range_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        build_parser(argv).parse_args(argv)
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_every_default_and_every_range_end_that_is_allowed_parses():
    parser = build_parser()
    checked = set()
    for name, sub in parser.command_parsers.items():
        for action in sub._actions:
            if action.dest not in RANGES or action.type is None:  # a file list or seed of the same name
                continue
            checked.add(action.dest)
            low, high, low_ok, high_ok = RANGES[action.dest]
            allowed = [action.default] if action.default is not None else []
            allowed += [end for end, ok in ((low, low_ok), (high, high_ok)) if end is not None and ok]
            for value in allowed:
                assert action.type(str(value)) == value, (name, action.dest, value)
            for end, ok in ((low, low_ok), (high, high_ok)):
                if end is not None and not ok:
                    with pytest.raises(Exception, match="must be"):
                        action.type(str(end))
    assert checked == set(RANGES)  # no range names an option that does not exist


def test_lightning_settings_it_refuses_are_config_errors():
    with pytest.raises(ConfigError, match="accelerator='no-such-chip'"):
        lightning_trainer(accelerator="no-such-chip")


class _Diverging(L.LightningModule):
    """A linear model whose loss turns NaN from epoch `nan_from` on, so that its weights become NaN."""

    def __init__(self, nan_from: int):
        super().__init__()
        self.nan_from, self.layer = nan_from, torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch[0]).square().mean()
        return loss * float("nan") if self.current_epoch >= self.nan_from else loss

    def validation_step(self, batch, batch_idx):
        self.log("val_score", 1.0 / (1.0 + self.layer(batch[0]).abs().mean()))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_an_epoch_whose_weights_are_not_finite_is_scored_worst_and_ends_the_run(tmp_path):
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(20, 2)), batch_size=5)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ck", monitor="val_score", mode="max")
    guard = DivergenceGuard("val_score")
    trainer = L.Trainer(
        max_epochs=6,
        callbacks=[guard, checkpoint, EarlyStopping("val_score", mode="max", patience=10)],
        logger=CSVLogger(tmp_path, name="log", version=""),
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(_Diverging(nan_from=2), data, data)
    assert guard.diverged_epoch == 2
    assert trainer.current_epoch < 5  # early stopping ended it at the non-finite score, not the epoch limit
    logged = (tmp_path / "log" / "metrics.csv").read_text().splitlines()[1:]
    scores = [float(line.split(",")[-1]) for line in logged]
    assert np.isfinite(scores[:2]).all() and scores[2] == float("-inf")
    assert "epoch=1-" in checkpoint.best_model_path  # the best epoch before the divergence is the one kept


def test_a_training_that_diverges_from_the_start_registers_and_writes_nothing(store_copy):
    spaces = store_copy.vectors.spaces()
    with pytest.raises(ConfigError, match="training diverged"):
        train_musig(store_copy, max_epochs=2, temperature=1e-45, quiet=True)  # cosines over it: inf, NaN at once
    assert store_copy.models.rows(kind=MUSIG_KIND) == []
    assert store_copy.vectors.spaces() == spaces


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s: train_musig(s, temperature=0.0), "temperature must be above 0 (got 0.0)"),
        (lambda s: train_musig(s, lr=0), "lr must be above 0 (got 0)"),
        (lambda s: train_musig(s, max_epochs="2"), "max_epochs must be a number, not '2'"),
        (lambda s: train_musig(s, max_epochs=1.5), "max_epochs must be a whole number, not 1.5"),
        (lambda s: train_audio(s, batch_size=32.5), "batch_size must be a whole number, not 32.5"),
        (lambda s: similar_track(s, s.tracks.node_ids()[0], k=2.5), "k must be a whole number, not 2.5"),
        (lambda s: train_audio(s, max_epochs=0), "max_epochs must be at least 1 (got 0)"),
        (lambda s: train_audio(s, dropout=1.0), "dropout must be at least 0 and below 1 (got 1.0)"),
        (lambda s: evaluate(s, holdout=1.5), "holdout must be above 0 and below 1 (got 1.5)"),
        (lambda s: evaluate(s, seeds=0), "evaluate needs a list of one seed or more, not 0"),
        (lambda s: similar_track(s, s.tracks.node_ids()[0], k=0), "k must be at least 1 (got 0)"),
        (
            lambda s: radio(s, s.tracks.node_ids()[0], diversity=-1),
            "diversity must be at least 0 and at most 1 (got -1)",
        ),
    ],
)
def test_the_python_api_checks_the_ranges_the_command_line_checks(store_copy, call, message):
    models = store_copy.models.rows()
    with pytest.raises(ConfigError) as raised:
        call(store_copy)
    assert str(raised.value) == message
    assert store_copy.models.rows() == models


def test_non_finite_vectors_are_refused_and_nothing_is_written(store_copy):
    ids = store_copy.tracks.node_ids()[:3]
    vectors = {t: np.ones(4, np.float32) for t in ids}
    vectors[ids[1]] = np.array([1, np.nan, 0, 0], np.float32)
    with pytest.raises(StoreError, match="non-finite 'mine' vectors"):
        store_copy.vectors.put("mine", "model-a", vectors)
    assert "mine" not in store_copy.vectors.spaces()


def test_a_space_holds_one_kind_of_model(store_copy, tmp_path):
    registry = store_copy.models
    with pytest.raises(ConfigError, match="space 'descriptors' is audiograph's space for descriptors models"):
        train_audio(store_copy, space="descriptors", max_epochs=1, quiet=True)
    with pytest.raises(ConfigError, match="space 'acoustic' is audiograph's space for audio-encoder models"):
        train_musig(store_copy, space="acoustic", max_epochs=1, quiet=True)
    (tmp_path / "t.csv").write_text("track_id,a\nx1,0.5\nx2,0.7\n")
    with pytest.raises(ConfigError, match="space 'musig' is audiograph's space for musig models"):
        import_tracks(store_copy, tmp_path / "t.csv", features={"musig": ["a"]})
    assert store_copy.tracks.get("x1") is None  # refused before anything was read or written
    registry.register("import:mood@1", IMPORT_KIND, "mood")
    with pytest.raises(ConfigError, match="space 'mood' holds the vectors of import model 'import:mood@1'"):
        registry.register("musig-x", MUSIG_KIND, "mood")
    registry.register("import:mood@2", IMPORT_KIND, "mood")  # the same kind may replace it
    registry.register("audio-encoder-x", ACOUSTIC_KIND, "acoustic")


def test_the_hint_for_a_model_without_vectors_names_the_command_that_makes_them(store_copy, synth_collection):
    ids = store_copy.tracks.node_ids()
    store_copy.models.register("musig-old", MUSIG_KIND, "musig")
    store_copy.models.register("musig-new", MUSIG_KIND, "musig")
    store_copy.vectors.put("musig", "musig-new", {t: np.ones(4, np.float32) for t in ids})
    audio = next(p for p in sorted((synth_collection / "audio").rglob("*")) if store_copy.tracks.by_path(p))
    with pytest.raises(StoreError, match="audiograph embed-musig --model musig-old"):
        query_file(store_copy, audio, model="musig-old")


@pytest.fixture
def store_with_a_copy(synth_collection, tmp_path):
    """A store of the synthetic collection in which one file is stored twice, under two names."""
    audio = tmp_path / "audio"
    shutil.copytree(synth_collection / "audio", audio)
    original = sorted(p for p in audio.rglob("*.ogg"))[0]
    copy = original.with_name("copy of " + original.name)
    shutil.copy(original, copy)
    store = Store(tmp_path / "s.db")
    embed_audio(audio, store, collection="c", num_workers=1, quiet=True)
    return store, store.tracks.by_path(original)["id"], store.tracks.by_path(copy)["id"]


def test_copies_of_a_recording_never_answer_for_it_or_play_twice(store_with_a_copy):
    store, original, copy = store_with_a_copy
    assert store.tracks.get(original)["content_hash"] == store.tracks.get(copy)["content_hash"]
    k = len(store.tracks.node_ids())
    assert {h["track_id"] for h in similar_track(store, original, k=k).hits}.isdisjoint({original, copy})
    assert {h["track_id"] for h in similar_track(store, copy, k=k).hits}.isdisjoint({original, copy})
    assert {h["track_id"] for h in query_file(store, store.tracks.get(copy)["path"], k=k).hits}.isdisjoint(
        {original, copy}
    )
    assert {h["track_id"] for h in radio(store, original, length=k).tracks}.isdisjoint({original, copy})
    other = next(t for t in store.tracks.node_ids() if t not in (original, copy))
    played = [h["track_id"] for h in radio(store, other, length=k, diversity=0.0, walk=0.0).tracks]
    assert len({original, copy} & set(played)) == 1  # one of the two, once
    # Asked about another track, a search lists each recording once (the collection has another pair of
    # copies too), and still gives k answers: here every other recording.
    recordings = {store.tracks.get(t)["content_hash"] for t in store.vectors.matrix("descriptors")[0] if t != other}
    k = len(recordings) + 2
    for hits in (
        similar_track(store, other, k=k - 2).hits,
        query_file(store, store.tracks.get(other)["path"], k=k - 2).hits,
    ):
        assert len({original, copy} & {h["track_id"] for h in hits}) == 1
        assert len(hits) == k - 2 and [h["rank"] for h in hits] == list(range(1, k - 1))


def test_similar_finds_a_spotify_track_in_any_spelling(tmp_path):
    store = Store(tmp_path / "s.db")
    ids = ["0qc4QlcCxVTGyShurEv1UU", "1111111111111111111111", "2222222222222222222222"]
    (tmp_path / "t.csv").write_text("track_id,a,b\n" + "".join(f"{t},{i},{i * i % 3}\n" for i, t in enumerate(ids)))
    import_tracks(store, tmp_path / "t.csv", features={"mood": ["a", "b"]})
    for spelling in (f"spotify:track:{ids[0]}", f"https://open.spotify.com/track/{ids[0]}?si=x"):
        assert similar_track(store, spelling, k=1).query_track == ids[0]


def test_spotify_ids_match_in_any_spelling():
    ids = TrackIds(["0qc4QlcCxVTGyShurEv1UU", "spotify:track:1111111111111111111111", "local-7"])
    assert ids.match("spotify:track:0qc4QlcCxVTGyShurEv1UU") == "0qc4QlcCxVTGyShurEv1UU"
    assert ids.match("https://open.spotify.com/track/0qc4QlcCxVTGyShurEv1UU?si=x1") == "0qc4QlcCxVTGyShurEv1UU"
    assert ids.match("https://open.spotify.com/intl-de/track/0qc4QlcCxVTGyShurEv1UU") == "0qc4QlcCxVTGyShurEv1UU"
    assert ids.match("1111111111111111111111") == "spotify:track:1111111111111111111111"
    assert ids.match("local-7") == "local-7"
    for unknown in ("spotify:track:2222222222222222222222", "local-8", "spotify:album:0qc4QlcCxVTGyShurEv1UU"):
        assert ids.match(unknown) is None


def test_an_mpd_slice_matches_tracks_imported_by_their_bare_spotify_ids(tmp_path):
    store = Store(tmp_path / "s.db")
    bare = [f"{i:022d}".replace("0", "A", 3) for i in range(4)]
    (tmp_path / "t.csv").write_text("track_id,energy\n" + "".join(f"{t},0.{i}\n" for i, t in enumerate(bare)))
    import_tracks(store, tmp_path / "t.csv", features={"audio": ["energy"]})
    slice_ = {
        "info": {},
        "playlists": [
            {"pid": 0, "name": "a", "tracks": [{"track_uri": f"spotify:track:{t}"} for t in bare[:3]]},
            {"pid": 1, "name": "b", "tracks": [{"track_uri": f"spotify:track:{t}"} for t in bare[1:]]},
        ],
    }
    (tmp_path / "mpd.slice.0-1.json").write_text(json.dumps(slice_))
    report = build_graph(store, [tmp_path / "mpd.slice.0-1.json"], add_missing=True)
    assert (report.matched, report.unmatched, report.added_tracks) == (6, 0, 0)
    assert report.summary["edges"] == 5  # the pairs within {0,1,2} and within {1,2,3}, each once


def test_a_one_dimensional_space_has_no_map(tmp_path):
    store = Store(tmp_path / "s.db")
    (tmp_path / "t.csv").write_text("track_id,pop\n" + "".join(f"t{i},{i}\n" for i in range(8)))
    import_tracks(store, tmp_path / "t.csv", popularity_col="pop")
    with pytest.raises(ConfigError, match="1-d vectors"):
        map_space(store, "popularity", tmp_path / "m.png")


def test_a_one_dimensional_space_has_no_radio(tmp_path):
    store = Store(tmp_path / "s.db")
    (tmp_path / "t.csv").write_text("track_id,pop\n" + "".join(f"t{i},{i}\n" for i in range(8)))
    import_tracks(store, tmp_path / "t.csv", popularity_col="pop")
    with pytest.raises(ConfigError, match="one number per track: there is no walk to make from a seed"):
        radio(store, "t0", space="popularity")


def test_messages_say_what_to_do_instead(store_copy, synth_collection, tmp_path):
    failed = store_copy.tracks.rows("failed")[0]
    with pytest.raises(StoreError, match=f"track {failed['id']} has no vectors: its file failed \\("):
        similar_track(store_copy, failed["id"])
    stored = store_copy.tracks.node_ids()[0]
    with pytest.raises(ConfigError, match="a stored track id: search from it with `audiograph similar`"):
        query_file(store_copy, stored)
    a_file = next(p for p in (synth_collection / "audio").rglob("*") if p.is_file())
    with pytest.raises(ConfigError, match=f"is a file; embed-audio takes a folder, such as {a_file.parent}"):
        embed_audio(a_file, store_copy, quiet=True)


def test_a_graph_emptied_by_the_min_weight_says_so_and_keeps_the_stored_one(store_copy, synth_collection):
    before = store_copy.graph.summary()
    with pytest.raises(
        ConfigError, match="the 188 pairs they join are all below min weight 1000; the first entry that matched none: "
    ):
        build_graph(store_copy, [synth_collection / "playlists"], min_weight=1000)
    assert store_copy.graph.summary() == before
    report = build_graph(store_copy, [synth_collection / "playlists"], min_weight=3)
    assert report.edges_below_min_weight == before["edges"] - report.summary["edges"] > 0


def test_files_gone_from_disk_are_named_and_kept(synth_collection, tmp_path):
    audio = tmp_path / "audio"
    shutil.copytree(synth_collection / "audio", audio)
    store = Store(tmp_path / "s.db")
    embed_audio(audio, store, collection="c", num_workers=1, quiet=True)
    gone = sorted(p for p in audio.rglob("*.ogg"))[:2]
    for path in gone:
        path.unlink()
    summary = embed_audio(audio, store, collection="c", num_workers=1, quiet=True)
    expected = sorted(store.tracks.by_path(p)["id"] for p in gone)
    assert (summary.missing, summary.missing_examples) == (2, expected)
    assert all(store.tracks.get(t)["status"] == "ok" for t in expected)


def test_a_file_name_that_is_not_utf8_is_found_as_typed(synth_collection, tmp_path):
    audio = tmp_path / "audio"
    shutil.copytree(synth_collection / "audio", audio)
    source = sorted(audio.rglob("*.ogg"))[0]
    raw = os.path.join(os.fsencode(source.parent), b"caf\xe9.ogg")  # Latin-1 bytes, as an old archive names it
    os.rename(source, raw)
    store = Store(tmp_path / "s.db")
    embed_audio(audio, store, collection="c", num_workers=1, quiet=True)
    typed = os.fsdecode(raw)  # what the shell hands over: the byte as a lone surrogate
    row = store.tracks.by_path(typed)
    assert row is not None and row["id"].endswith("caf\\xe9.ogg")
    assert similar_track(store, typed, k=3).query_track == row["id"]
    assert similar_track(store, os.path.relpath(typed, tmp_path).replace("audio", "c", 1), k=3).query_track == row["id"]


def test_an_import_keyed_by_file_path_describes_the_stored_files(store_copy, synth_collection, tmp_path):
    files = sorted(p for p in (synth_collection / "audio").rglob("*.ogg") if store_copy.tracks.by_path(p))[:3]
    ids = [store_copy.tracks.by_path(p)["id"] for p in files]
    rows = [(files[0], 0.1), (os.path.relpath(files[1], tmp_path), 0.2), (files[2].name, 0.3), ("new-id", 0.4)]
    with open(tmp_path / "t.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("path", "mood"), *rows])  # quoted: the synthetic names hold commas
    before = len(store_copy.tracks.rows(status=None))
    report = import_tracks(store_copy, tmp_path / "t.csv", id_col="path", features={"mood": ["mood"]})
    states = store_copy.vectors.states("mood")
    assert report.tracks == 4 and set(ids[:2]) <= set(states)  # absolute, and relative to the CSV's folder
    assert files[2].name in states  # a bare file name names no stored file: a track of its own
    assert len(store_copy.tracks.rows(status=None)) == before + 2  # that one and new-id
    assert all(store_copy.tracks.get(t)["status"] == "ok" for t in ids[:2])  # their audio data kept

    # A stored file that would not decode stays that failed file, described by the CSV.
    failed = next(t for t in store_copy.tracks.rows(status=None) if t["status"] == "failed")
    with open(tmp_path / "f.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("path", "genre"), (failed["path"], "polka")])
    import_tracks(store_copy, tmp_path / "f.csv", id_col="path", genre_col="genre")
    after = store_copy.tracks.get(failed["id"])
    assert {k: after[k] for k in ("status", "error", "path", "collection")} == {
        k: failed[k] for k in ("status", "error", "path", "collection")
    }
    assert after["genre"] == "polka"


def test_a_search_in_a_one_dimensional_space_says_what_its_scores_mean(tmp_path):
    store = Store(tmp_path / "s.db")
    (tmp_path / "t.csv").write_text("track_id,pop\n" + "".join(f"t{i},{i}\n" for i in range(8)))
    import_tracks(store, tmp_path / "t.csv", popularity_col="pop")
    result = similar_track(store, "t0", space="popularity", k=7)
    assert {round(h["score"], 5) for h in result.hits} == {1.0, -1.0}
    assert any("one number per track" in note for note in result.notes)


def test_embed_musig_refreshes_the_musig_space_whatever_was_trained_last(store_copy):
    quick = {"max_epochs": 1, "batches_per_epoch": 2, "hidden_channels": 16, "quiet": True}
    musig = train_musig(store_copy, **quick).model_id
    graphsage = train_musig(store_copy, task_weights="graphsage", **quick).model_id
    before = store_copy.vectors.states("graphsage")
    assert embed_musig(store_copy) == len(store_copy.tracks.node_ids())
    assert {m for m, _ in store_copy.vectors.states("musig").values()} == {musig}
    assert store_copy.vectors.states("graphsage") == before
    assert embed_musig(store_copy, space="graphsage") and {
        m for m, _ in store_copy.vectors.states("graphsage").values()
    } == {graphsage}
    with pytest.raises(StoreError, match="no MUSIG model fills space 'other'"):
        embed_musig(store_copy, space="other")


def test_evaluate_quiet_still_prints_its_table(embedded_db):
    out = run(
        "evaluate",
        "--db",
        embedded_db,
        "-q",
        "--methods",
        "features:audio",
        "cf",
        "--repeats",
        "1",
        "--min-length",
        "6",
    )
    assert "evaluation playlists" in out.stdout and "HR" in out.stdout and "Features only" in out.stdout


def test_common_options_go_before_or_after_the_command_and_file_commands_have_none(embedded_db):
    before = json.loads(run("--db", embedded_db, "--json", "info").stdout)
    after = json.loads(run("info", "--db", embedded_db, "--json").stdout)
    assert before == after and before["tracks"]
    for command in ("synth", "demo"):
        assert "--db" not in run(command, "--help").stdout and "--json" not in run(command, "--help").stdout
    refused = run("--db", embedded_db, "synth", "out", check=False)
    assert refused.returncode == 1 and "--db does not apply" in refused.stderr


def test_an_index_of_one_number_per_track_or_of_too_few_rows_is_refused(tmp_path):
    pytest.importorskip("faiss")
    from audiograph.pipelines.index import build_index
    from audiograph.store.ann import MIN_QUANTIZED_ROWS, build_ann_index

    store = Store(tmp_path / "s.db")
    (tmp_path / "t.csv").write_text("track_id,pop\n" + "".join(f"t{i},{i}\n" for i in range(50)))
    import_tracks(store, tmp_path / "t.csv", popularity_col="pop")
    with pytest.raises(ConfigError, match="one number per track: no index can speed up its search"):
        build_index(store, "popularity", kind="pq")
    rows = np.random.default_rng(0).normal(size=(MIN_QUANTIZED_ROWS - 1, 8)).astype(np.float32)
    with pytest.raises(ConfigError, match=f"needs at least {MIN_QUANTIZED_ROWS} rows to train on"):
        build_ann_index([str(i) for i in range(len(rows))], rows, "m", kind="pq")


def _import_space(db, prefix: str, n: int = 10) -> Store:
    store = Store(db)
    csv_path = db.parent / f"{prefix}.csv"
    rng = np.random.default_rng(len(prefix))
    rows = "".join(f"{prefix}{i},{a:.4f},{b:.4f}\n" for i, (a, b) in enumerate(rng.normal(size=(n, 2))))
    csv_path.write_text("track_id,a,b\n" + rows)
    import_tracks(store, csv_path, features={"audio": ["a", "b"]})
    return store


def test_a_store_made_again_at_the_same_path_never_searches_the_old_ones_cached_vectors(tmp_path):
    db = tmp_path / "s.db"
    first = _import_space(db, "old")
    assert {h["track_id"][:3] for h in similar_track(first, "old0", k=5).hits} == {"old"}  # caches the matrix
    first.close()
    for leftover in tmp_path.glob("s.db*"):
        if leftover.is_file():
            leftover.unlink()  # the store goes; its cache folder beside it stays
    second = _import_space(db, "new")  # as many writes as the first store had
    assert {h["track_id"][:3] for h in similar_track(second, "new0", k=5).hits} == {"new"}


def test_a_failed_export_leaves_the_previous_file_whole(store_copy, tmp_path, monkeypatch):
    out = tmp_path / "exports" / "v.npz"
    export_space(store_copy, "descriptors", out)
    before = out.read_bytes()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("audiograph.pipelines.export.np.savez", killed)
    with pytest.raises(KeyboardInterrupt):
        export_space(store_copy, "descriptors", out)
    assert out.read_bytes() == before and [p.name for p in out.parent.iterdir()] == ["v.npz"]


def test_training_on_a_store_it_cannot_write_stops_before_training(store_copy, monkeypatch):
    monkeypatch.setattr("audiograph.store.connection._writable", lambda path: False)
    for train in (train_audio, train_musig):
        with pytest.raises(StoreError, match="the store is read-only"):
            train(store_copy, max_epochs=1, quiet=True)
    assert not store_copy.models_dir.exists() or not any(store_copy.models_dir.iterdir())


def test_another_programs_sqlite_database_is_refused_and_left_as_it_was(tmp_path):
    import sqlite3

    db = tmp_path / "other.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER, total REAL)")
    before = db.read_bytes()
    with pytest.raises(StoreError, match="an SQLite database, but not an audiograph store \\(its tables: invoices\\)"):
        Store(db)
    assert db.read_bytes() == before


def test_a_warning_is_one_line(store_copy):
    folder = space_cache_folder(store_copy.path, "descriptors")
    folder.mkdir(parents=True)
    (folder / "ann.json").write_text("{not json")
    track = store_copy.tracks.node_ids()[0]
    out = run("similar", track, "--db", store_copy.path, "--space", "descriptors")
    assert [line for line in out.stderr.splitlines() if line] == [
        line for line in out.stderr.splitlines() if line.startswith("warning: ") and "index unreadable" in line
    ]
    assert out.stderr.count("\n") == 1


def test_a_playlist_of_tracks_without_files_is_refused_not_written_empty(tmp_path):
    store = Store(tmp_path / "s.db")
    (tmp_path / "t.csv").write_text("track_id,a,b\n" + "".join(f"t{i},{i % 3},{i % 5}\n" for i in range(9)))
    import_tracks(store, tmp_path / "t.csv", features={"mood": ["a", "b"]})
    store.close()
    m3u = tmp_path / "r.m3u8"
    done = run("radio", "t0", "--space", "mood", "--length", "3", "--m3u", m3u, "--db", tmp_path / "s.db", check=False)
    assert done.returncode == 1 and not m3u.exists()
    assert done.stderr.strip().splitlines() == [
        f"audiograph: error: {m3u}: none of the 3 tracks has an audio file (tracks imported from a CSV or a playlist"
        " have none), so there is no playlist to write"
    ]
    assert "radio from t0 in space 'mood'" in done.stdout and len(done.stdout.splitlines()) == 5  # shown first


def test_embed_audio_names_the_musig_vectors_a_changed_or_new_file_lacks(store_copy):
    from audiograph.pipelines.embed_work import outdated_spaces
    from audiograph.store import TrackRecord

    train_musig(store_copy, max_epochs=1, batches_per_epoch=2, hidden_channels=16, quiet=True)
    assert outdated_spaces(store_copy, "synth") == {}
    changed = store_copy.tracks.node_ids()[0]
    store_copy.execute("UPDATE tracks SET content_hash = 'edited' WHERE id = ?", [changed])
    store_copy.tracks.write([TrackRecord(id="synth/new.ogg", collection="synth", path="/new.ogg", content_hash="n")])
    assert outdated_spaces(store_copy, "synth") == {"musig": 2}
    assert outdated_spaces(store_copy, "another") == {}


def test_a_training_called_from_python_leaves_the_process_settings_as_it_found_them(store_copy):
    import logging
    import warnings

    before = torch.get_num_threads()
    torch.set_num_threads((os.cpu_count() or 1) + 3)  # more than the free cores: training lowers it
    logging.getLogger("lightning.pytorch").setLevel(logging.DEBUG)
    try:
        filters = list(warnings.filters)
        environment = {k: os.environ.get(k) for k in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS", "CUBLAS_WORKSPACE_CONFIG")}
        torch.manual_seed(1234)
        np.random.seed(1234)
        expected = (torch.rand(3), np.random.rand(3))  # the draws the user's code makes next
        torch.manual_seed(1234)
        np.random.seed(1234)
        train_musig(store_copy, max_epochs=1, batches_per_epoch=2, hidden_channels=16, quiet=True)
        assert torch.get_num_threads() == (os.cpu_count() or 1) + 3
        assert logging.getLogger("lightning.pytorch").level == logging.DEBUG
        assert warnings.filters == filters
        # A seeded, deterministic fit switched deterministic mode on and reseeded every generator.
        assert not torch.are_deterministic_algorithms_enabled()
        assert {k: os.environ.get(k) for k in environment} == environment
        assert torch.equal(torch.rand(3), expected[0]) and np.array_equal(np.random.rand(3), expected[1])
    finally:
        torch.set_num_threads(before)
        logging.getLogger("lightning.pytorch").setLevel(logging.NOTSET)


def test_a_ctrl_c_after_the_model_is_committed_says_what_was_written(store_copy, monkeypatch, capsys):
    """A Ctrl-C in the last moments of train-musig, after its model and vectors are committed, still ends it
    (exit 130), but the message says what was written, so that nobody trains again for nothing."""
    import audiograph.pipelines.train_musig as train_module
    from audiograph.cli import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_report", interrupted)  # runs right after the commit
    args = ["train-musig", "--db", str(store_copy.path), "--epochs", "1", "--batches-per-epoch", "2"]
    assert main(args) == 130
    model = store_copy.models.rows(kind="musig")[-1]["id"]
    count = len(store_copy.vectors.states("musig"))
    assert count > 0
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"audiograph: interrupted after model {model} and its {count} vectors were written"
    )
    monkeypatch.setattr(train_module, "train_musig", lambda *a, **k: interrupted())  # nothing committed this time
    assert main(args) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "audiograph: interrupted"


def test_a_model_id_the_registry_lacks_or_of_another_kind_is_one_config_error_everywhere(store_copy, synth_collection):
    from audiograph.pipelines.encoders import acoustic_model_row
    from audiograph.pipelines.query import query_file
    from audiograph.pipelines.train_musig import musig_model_row

    some_file = next((synth_collection / "audio").rglob("*.wav"))
    missing = f"{store_copy.path}: no model 'nope' in the registry"
    for call in (
        lambda: acoustic_model_row(store_copy, "nope"),
        lambda: musig_model_row(store_copy, "nope"),
        lambda: query_file(store_copy, some_file, model="nope"),
    ):
        with pytest.raises(ConfigError) as raised:
            call()
        assert str(raised.value) == missing
    descriptors = store_copy.models.rows(kind="descriptors")[0]["id"]
    with pytest.raises(ConfigError, match=f"model '{descriptors}' is a descriptors model, not MUSIG"):
        musig_model_row(store_copy, descriptors)


def test_a_ctrl_c_while_signals_are_held_lands_after_the_block():
    """A commit and the note of what it saved happen together: the Ctrl-C waits for both."""
    import os
    import signal

    from audiograph.runtime import signals_held, stop_once_on_ctrl_c

    done = []
    with pytest.raises(KeyboardInterrupt), stop_once_on_ctrl_c():
        with signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("commit")
            done.append("note")
        done.append("after the block")  # not reached: the held Ctrl-C acts as the block ends
    assert done == ["commit", "note"]
