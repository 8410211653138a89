"""The playlist-completion protocol's splits (no leakage), method parsing, and `evaluate` end to end."""

from __future__ import annotations

import csv
import json
from collections import Counter
from itertools import combinations

import numpy as np
import pytest

from audiograph.cli import main
from audiograph.errors import ConfigError
from audiograph.eval.baselines import FeatureOnly
from audiograph.eval.protocol import split_playlist_files
from audiograph.eval.results import parse_methods
from audiograph.pipelines.build_graph import build_graph
from audiograph.pipelines.evaluate import evaluate, make_split
from audiograph.pipelines.import_tracks import import_tracks
from audiograph.store import Store

GENRES = ("rock", "jazz", "techno")


def write_catalogue(path, tracks=90, playlists=30, length=(12, 24), seed=0):
    """A CSV of (playlist, track) rows: playlists drawn within a genre, features that depend on it."""
    rng = np.random.default_rng(seed)
    genre_of = {f"t{i:03d}": GENRES[i % len(GENRES)] for i in range(tracks)}
    rows = []
    for p in range(playlists):
        genre = GENRES[p % len(GENRES)]
        pool = [t for t, g in genre_of.items() if g == genre and not t.startswith("only")]
        exclusive = f"only-p{p:02d}"  # a track no other playlist lists
        genre_of[exclusive] = genre
        for t in [*rng.choice(pool, size=rng.integers(*length), replace=False), exclusive]:
            g = GENRES.index(genre_of[t])
            # Each genre is high on one feature: directions that cosine similarity can tell apart.
            rows.append(
                {
                    "playlist_id": f"p{p:02d}",
                    "track_id": t,
                    "genre": genre_of[t],
                    "energy": f"{(g == 0) + rng.normal(0, 0.2):.3f}",
                    "tempo": f"{100 + 40 * (g == 1) + rng.normal(0, 8):.1f}",
                    "acousticness": f"{(g == 2) + rng.normal(0, 0.2):.3f}",
                    "popularity": str(int(rng.integers(0, 100))),
                }
            )
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    folder = tmp_path_factory.mktemp("catalogue")
    rows = write_catalogue(folder / "memberships.csv")
    store = Store(folder / "eval.db")
    import_tracks(
        store,
        folder / "memberships.csv",
        features={"audio": ["energy", "tempo", "acousticness"]},
        genre_col="genre",
        popularity_col="popularity",
        playlist_col="playlist_id",
    )
    build_graph(store, [folder / "memberships.csv"])
    store.close()
    return folder, rows


def playlists_of(rows):
    out = {}
    for r in rows:
        out.setdefault(r["playlist_id"], []).append(r["track_id"])
    return out


def test_split_keeps_held_out_playlists_out_of_everything(catalogue):
    folder, rows = catalogue
    store = Store(folder / "eval.db")
    split = make_split(store, min_length=14, holdout=0.3, seed=3)
    members = playlists_of(rows)
    held = {c.playlist_id for c in split.cases}
    assert len(held) == round(0.3 * len(members))
    assert all(len(members[p]) >= 14 for p in held)

    position = {t: i for i, t in enumerate(split.node_ids)}
    training = [p for p in members if p not in held]
    assert sorted(map(tuple, split.train_playlists)) == sorted(tuple(position[t] for t in members[p]) for p in training)
    # The graph's edges are exactly the pairs that share enough training playlists (brute force).
    shared = Counter(frozenset((position[a], position[b])) for p in training for a, b in combinations(members[p], 2))
    expected = {pair for pair, n in shared.items() if n >= split.info["min_weight"]}
    assert any(n < split.info["min_weight"] for n in shared.values()) or split.info["min_weight"] == 1
    got = {frozenset((int(i), int(j))) for i, j in zip(split.graph.row, split.graph.col)}
    assert got == expected

    for case in split.cases:
        tracks = [position[t] for t in members[case.playlist_id]]
        n_seeds = round(0.5 * len(tracks))
        assert case.seeds.tolist() == tracks[:n_seeds]
        assert case.targets.tolist() == tracks[n_seeds:]
        decoys = set(case.candidates.tolist()) - set(case.targets.tolist())
        assert len(case.candidates) == 2 * len(case.targets) and len(decoys) == len(case.targets)
        assert not decoys & set(tracks)

    # Decoys match the targets in how many never appear in a training playlist.
    seen = set(np.concatenate(split.train_playlists).tolist())
    for case in split.cases:
        decoys = np.setdiff1d(case.candidates, case.targets)
        assert sum(t not in seen for t in decoys.tolist()) == sum(t not in seen for t in case.targets.tolist())
    assert 0 < split.info["unseen_targets"] < 1

    # A track whose only genre votes come from held-out playlists has no genre, in labels or features.
    votes = {}
    for r in rows:
        votes.setdefault(r["track_id"], set()).add(r["playlist_id"])
    only_held = [t for t, ps in votes.items() if ps <= held]
    assert only_held, "the fixture should have tracks listed only in held-out playlists"
    genre, popularity = split.features["genre"], split.features["popularity"]
    for t in only_held:
        assert split.genres[t] is None
        # z-scored: a 0 in every one-hot column, and a playlist count of 0, is each column's lowest value
        np.testing.assert_allclose(genre[position[t]], genre.min(axis=0))
        assert popularity[position[t]][0] == pytest.approx(popularity[:, 0].min())  # no training playlist
        np.testing.assert_allclose(split.cold["genre"][position[t]], genre[position[t]])
    kept = [t for t, ps in votes.items() if not ps <= held]
    assert all(split.genres[t] is not None for t in kept)

    # The feature reference reads each track's own popularity, z-scored, not its playlist count and degree.
    first = {}
    for r in rows:
        first.setdefault(r["track_id"], float(r["popularity"]))
    own = np.array([first[t] for t in split.node_ids])
    reference = FeatureOnly("popularity").embed(split)
    np.testing.assert_allclose(reference[:, 0], (own - own.mean()) / own.std(), rtol=1e-4, atol=1e-4)
    assert reference.shape[1] == 1 and split.features["popularity"].shape[1] == 3


def test_split_with_given_playlists_trains_on_every_stored_one(catalogue):
    folder, rows = catalogue
    store = Store(folder / "eval.db")
    members = playlists_of(rows)
    held_out = [{"id": "x1", "tracks": members["p00"]}, {"id": "x2", "tracks": members["p01"][:3]}]
    split = make_split(store, held_out=held_out, min_length=5)
    assert [c.playlist_id for c in split.cases] == ["x1"]
    assert len(split.train_playlists) == len(members)
    with pytest.raises(ConfigError, match="no playlist has at least 500 tracks"):
        make_split(store, min_length=500)
    with pytest.raises(ConfigError, match="p03 are also in the store's graph"):
        make_split(store, held_out=[{"id": "p03", "tracks": members["p03"]}], min_length=5)


def test_splits_are_seeded(catalogue):
    store = Store(catalogue[0] / "eval.db")
    a, b, c = (make_split(store, min_length=12, seed=s) for s in (1, 1, 2))
    assert [x.candidates.tolist() for x in a.cases] == [x.candidates.tolist() for x in b.cases]
    assert [x.candidates.tolist() for x in a.cases] != [x.candidates.tolist() for x in c.cases]


def test_split_playlist_files(tmp_path):
    folder = tmp_path / "playlists"
    folder.mkdir()
    for i in range(20):
        lines = ["#EXTM3U"] + [f"#EXTINF:1,t{j}\n../audio/t{j}.mp3" for j in range(5 + i)]
        (folder / f"{i:02d}.m3u8").write_text("\n".join(lines))
    train, held = split_playlist_files(folder, holdout=0.25, min_length=15, seed=0)
    held_names = {p.name for p in held.iterdir()}
    train_names = {p.name for p in train.iterdir()}
    assert len(held_names) == 5 and not held_names & train_names
    assert held_names | train_names == {p.name for p in folder.iterdir()}
    assert all(int(name[:2]) + 5 >= 15 for name in held_names)
    assert train.parent == folder.parent  # so that ../audio paths still resolve


def test_parse_methods():
    available = ["audio", "genre", "popularity"]
    specs = parse_methods(["cf,track2vec:genre", "musig:audio+genre@audio"], available)
    assert [s.label for s in specs] == ["cf", "track2vec:genre", "musig:audio+genre@audio"]
    assert specs[2].display == ("MUSIG (AUDIO task)", "AUDIO+GENRE")
    for bad, message in [
        ("nope", "unknown method"),
        ("musig", "needs feature groups"),
        ("cf:audio", "takes no"),
        ("musig:acoustic", "no acoustic features"),
        ("graphsage:audio@audio", "only musig"),
        ("musig:colour", "unknown feature group"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_methods(bad, available)


def test_evaluate_scores_content_above_chance_and_reports_every_metric(catalogue):
    store = Store(catalogue[0] / "eval.db")
    evaluation = evaluate(
        store,
        methods=["features:audio", "features:popularity", "musig:audio"],
        seeds=(0, 1),
        min_length=12,
        musig_options={"max_epochs": 2},
    )
    rows = {r.spec.label: r for r in evaluation.results}
    # Audio features separate the genres that playlists are drawn from; popularity is noise.
    assert rows["features:audio"].mean["HR"] > 0.8
    assert 0.3 < rows["features:popularity"].mean["HR"] < 0.75
    assert len(rows["features:audio"].per_case) == 2 * rows["features:audio"].n_playlists
    best = max(evaluation.results, key=lambda r: r.mean["HR"])
    assert best.p_value is None and all(r.p_value is not None for r in evaluation.results if r is not best)
    assert rows["musig:audio"].mean["HR"] > 0.6


def test_evaluate_cli_json(catalogue, tmp_path, capsys):
    folder, _ = catalogue
    db = tmp_path / "copy.db"
    db.write_bytes((folder / "eval.db").read_bytes())
    code = main(
        [
            "evaluate",
            "--db",
            str(db),
            "--methods",
            "cf",
            "features:genre",
            "--min-length",
            "12",
            "--repeats",
            "2",
            "--json",
        ]
    )
    assert code == 0
    results = json.loads(capsys.readouterr().out)
    assert [(r["method"], r["features"]) for r in results] == [("CF", "-"), ("Features only", "GENRE")]
    for r in results:
        assert set(r) >= {
            "method",
            "features",
            "HR",
            "MRR",
            "P@1",
            "P@5",
            "P@10",
            "NDCG@1",
            "NDCG@5",
            "NDCG@10",
            "n_playlists",
        }
        assert all(0 <= r[m] <= 1 for m in ("HR", "P@10", "NDCG@10"))
    code = main(["evaluate", "--db", str(db), "--methods", "musig:acoustic"])
    assert code == 1


def test_without_given_playlists_no_method_reads_the_acoustic_vectors(catalogue, tmp_path, monkeypatch):
    """An encoder trained on the stored graph has seen the held-out playlists: neither the default
    methods nor MUSIG's similarity task may use its vectors unless a method asks for them."""
    from audiograph.pipelines import evaluate as evaluate_module

    db = tmp_path / "acoustic.db"
    db.write_bytes((catalogue[0] / "eval.db").read_bytes())
    store = Store(db)
    ids = store.tracks.node_ids()
    store.models.register("enc", "audio-encoder", "acoustic")
    store.vectors.put("acoustic", "enc", {t: np.random.default_rng(0).normal(size=8) for t in ids})
    seen = []
    real_embed = evaluate_module.MusigMethod.embed

    def spy(self, split):
        seen.append(set(split.features))
        return real_embed(self, split)

    monkeypatch.setattr(evaluate_module.MusigMethod, "embed", spy)
    evaluation = evaluate(store, methods=["musig:audio"], seeds=(0,), min_length=12, musig_options={"max_epochs": 1})
    assert seen == [{"audio", "genre", "popularity"}] and not any("acoustic" in note for note in evaluation.notes)
    defaults = evaluate_module.default_methods(["audio", "genre", "popularity"])
    assert not any("acoustic" in s.groups for s in defaults)


def test_the_results_chart_has_a_chance_line_and_a_legend_that_covers_no_bar():
    from audiograph.eval.metrics import METRICS
    from audiograph.eval.report import CHANCE_HR, chart_figure
    from audiograph.eval.results import Evaluation, MethodResult, MethodSpec

    results = [
        MethodResult(
            MethodSpec(kind, ("audio",) if kind != "cf" else ()),
            {m: hr for m in METRICS},
            {m: 0.02 for m in METRICS},
            [],
            [],
            10,
            1.0,
        )
        for kind, hr in (("cf", 0.55), ("features", 0.98), ("musig", 0.99))
    ]
    fig = chart_figure(Evaluation(results, [0, 1]), "title")
    fig.canvas.draw()
    ax = fig.axes[0]
    lines = [line for line in ax.get_lines() if list(line.get_ydata()) == [CHANCE_HR, CHANCE_HR]]
    assert len(lines) == 1 and CHANCE_HR == 0.5  # half the targets in the top |targets| of 2|targets|
    legend = ax.get_legend().get_window_extent()
    bars = [patch.get_window_extent() for patch in ax.patches]
    assert bars and not any(legend.overlaps(bar) for bar in bars)
    assert legend.y0 >= ax.get_window_extent().y1 - 1  # above the axes


def test_the_time_left_is_each_methods_time_per_seed_times_the_fits_to_go():
    from audiograph.eval.results import MethodSpec
    from audiograph.pipelines.evaluate import _seconds_left

    a, b = MethodSpec("cf"), MethodSpec("node2vec")
    specs, seeds = [a, b], (0, 1, 2)
    assert _seconds_left(specs, seeds, 0, a, {a: 10.0, b: 0.0}) is None  # b has not run yet
    assert _seconds_left(specs, seeds, 0, b, {a: 10.0, b: 20.0}) == 2 * 30.0
    assert _seconds_left(specs, seeds, 1, a, {a: 22.0, b: 20.0}) == 20.0 + 1 * (11.0 + 20.0)


def test_epoch_lines_say_which_seed_and_method_they_belong_to(catalogue, capsys):
    store = Store(catalogue[0] / "eval.db")
    said = []
    evaluate(
        store, methods=["musig:audio"], seeds=(0,), min_length=12, musig_options={"max_epochs": 1}, progress=said.append
    )
    epochs = [line for line in capsys.readouterr().err.splitlines() if "epoch 1/1" in line]
    assert epochs and all(line.startswith("seed 0, musig:audio: epoch 1/1: ") for line in epochs), epochs
    assert any(line.startswith("seed 0: musig:audio HR ") for line in said), said


def test_the_time_left_reads_in_seconds_then_minutes():
    from audiograph.pipelines.evaluate import _duration

    assert (_duration(0.4), _duration(95), _duration(119.4), _duration(600)) == ("0 s", "95 s", "119 s", "10 min")


def test_few_evaluation_playlists_are_said_to_give_weak_p_values(catalogue):
    store = Store(catalogue[0] / "eval.db")
    few = evaluate(store, methods=["features:audio", "features:popularity"], min_length=12, max_playlists=5)
    assert few.info["eval_playlists"] == 5
    assert any(note.startswith("only 5 evaluation playlists: the p values") for note in few.notes)
    many = evaluate(store, methods=["features:audio", "features:popularity"], min_length=5, holdout=0.5)
    assert many.info["eval_playlists"] >= 10 and not any("evaluation playlists" in note for note in many.notes)
