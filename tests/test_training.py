"""train-audio: the losses against brute force, crops and batches, the guard, the collapse diagnosis, and short
training runs end to end."""

import math

import numpy as np
import pytest
import torch

from audiograph.audio.encoder import AudioEncoder
from audiograph.errors import ConfigError
from audiograph.eval.neighbours import embedding_diagnostics, label_precision_at_k, neighbour_precision_at_k
from audiograph.pipelines.train_audio import audio_data, train_audio
from audiograph.training.audio import AudioEncoderModule, cosine_distance, multi_positive_info_nce
from audiograph.training.audio_data import crop


def test_cosine_distance_values_and_gradients():
    x = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    y = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    # The chord length between unit vectors equals their Euclidean distance.
    torch.testing.assert_close(cosine_distance(x, y), (x - y).norm(dim=-1), atol=1e-5, rtol=0)
    e = torch.eye(4)
    assert cosine_distance(e[0], -e[0]).item() == pytest.approx(2.0)
    assert cosine_distance(e[0], e[1]).item() == pytest.approx(math.sqrt(2))
    same = x[0].clone().requires_grad_(True)
    d = cosine_distance(same, x[0])
    assert d.item() < 1e-3
    d.backward()
    assert torch.isfinite(same.grad).all()  # no NaN or inf where x == y


def test_triplet_loss_edge_cases():
    module = AudioEncoderModule(loss="triplet", margin=0.5)
    a = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    # Positive identical to the anchor, negative opposite: loss is zero, gradients finite.
    a.requires_grad_(True)
    loss = module.triplet_loss(a, a.detach(), -a.detach())
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    # Swapped roles: loss = d(a,p) - d(a,n) + margin = 2 - ~0 + 0.5.
    loss = module.triplet_loss(a, -a.detach(), a.detach())
    assert loss.item() == pytest.approx(2.5, abs=1e-3)
    loss.backward()
    assert torch.isfinite(a.grad).all()


def test_crop_windows():
    chunks = [np.arange(20, dtype=np.float16).reshape(1, 20)]
    centre = crop(chunks, 8, rng=None)
    assert centre.tolist() == [list(range(6, 14))]
    looped = crop([np.arange(3, dtype=np.float16).reshape(1, 3)], 7, rng=None)
    assert looped.shape == (1, 7) and set(looped.flatten().tolist()) == {0.0, 1.0, 2.0}
    rng = np.random.default_rng(0)
    window = crop(chunks, 8, rng).flatten().tolist()
    assert window == list(range(int(window[0]), int(window[0]) + 8))


def brute_force_info_nce(z: np.ndarray, positives: np.ndarray, temperature: float) -> float:
    """SupCon's L_out written out with loops."""
    losses = []
    for i in range(len(z)):
        others = [a for a in range(len(z)) if a != i]
        denominator = sum(math.exp(z[i] @ z[a] / temperature) for a in others)
        pos = [p for p in others if positives[i, p]]
        if pos:
            losses.append(np.mean([-math.log(math.exp(z[i] @ z[p] / temperature) / denominator) for p in pos]))
    return float(np.mean(losses))


@pytest.mark.parametrize("seed", range(3))
def test_contrastive_loss_matches_brute_force(seed):
    generator = torch.Generator().manual_seed(seed)
    z = torch.nn.functional.normalize(torch.randn(9, 5, generator=generator, dtype=torch.float64), dim=-1)
    positives = torch.rand(9, 9, generator=generator) < 0.3
    positives = positives | positives.T
    positives[0] = positives[:, 0] = False  # a row with no positive is left out
    positives[3, 3] = True  # the diagonal is never a positive
    for temperature in (0.1, 0.5):
        expected = brute_force_info_nce(z.numpy(), positives.numpy() & ~np.eye(9, dtype=bool), temperature)
        assert multi_positive_info_nce(z, positives, temperature).item() == pytest.approx(expected, rel=1e-9)


def test_contrastive_loss_pulls_positives_and_has_finite_gradients():
    z = torch.nn.functional.normalize(
        torch.randn(6, 4, generator=torch.Generator().manual_seed(0)), dim=-1
    ).requires_grad_(True)
    positives = torch.zeros(6, 6, dtype=torch.bool)
    positives[0, 1] = positives[1, 0] = True
    loss = multi_positive_info_nce(z, positives, 0.1)
    loss.backward()
    assert torch.isfinite(z.grad).all()
    # A gradient step raises the positive pair's similarity.
    with torch.no_grad():
        before = (z[0] @ z[1]).item()
        moved = torch.nn.functional.normalize(z - 0.01 * z.grad, dim=-1)
    assert (moved[0] @ moved[1]).item() > before
    assert multi_positive_info_nce(z, torch.zeros(6, 6, dtype=torch.bool), 0.1).item() == 0.0


def test_encoder_options_and_original_parameter_names():
    # The defaults are the original architecture: saved encoders keep loading.
    names = set(AudioEncoder().state_dict())
    assert {"input_norm.running_mean", "head.0.weight", "head.2.weight", "head.4.weight"} <= names
    encoder = AudioEncoder(input_norm="collection", pools=("mean", "max", "l2"), head_layers=0).eval()
    mean, std = torch.linspace(-60, -10, 128), torch.linspace(1, 20, 128)
    encoder.set_input_statistics(mean, std)
    x = torch.randn(2, 128, 40) * 10 - 30
    torch.testing.assert_close(encoder.normalise_input(x), (x - mean[:, None]) / std[:, None])
    assert encoder(x).shape == (2, 128) and encoder.head[0].in_features == 3 * 128
    with pytest.raises(ConfigError):
        AudioEncoder(pools=("median",))
    with pytest.raises(ConfigError):
        AudioEncoder().set_input_statistics(mean, std)


def test_neighbour_precision_matches_brute_force():
    from audiograph.graph.csr import CSRGraph

    rng = np.random.default_rng(0)
    edges = {tuple(sorted(e)) for e in rng.integers(0, 30, (60, 2)) if e[0] != e[1]}
    graph = CSRGraph.from_edges([a for a, _ in edges], [b for _, b in edges], 30)
    nodes = np.arange(2, 30)  # nodes 0 and 1 have no vector
    vectors = rng.normal(size=(len(nodes), 6))
    queries = [3, 7, 11, 20]
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    shares = []
    for q in queries:
        scores = unit @ unit[q - 2]
        scores[q - 2] = -np.inf
        found = {int(nodes[i]) for i in np.argsort(-scores)[:5]}
        neighbours = {b for a, b in edges if a == q} | {a for a, b in edges if b == q}
        neighbours -= {0, 1}
        if neighbours:
            shares.append(len(found & neighbours) / 5)
    assert neighbour_precision_at_k(graph, nodes, vectors, queries, k=5) == pytest.approx(np.mean(shares))


def test_embedding_diagnostics_against_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 8))
    d = embedding_diagnostics(x)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    cosines = [unit[i] @ unit[j] for i in range(50) for j in range(i + 1, 50)]
    assert d["cosine_mean"] == pytest.approx(np.mean(cosines)) and d["cosine_std"] == pytest.approx(np.std(cosines))
    assert d["cosine_p50"] == pytest.approx(np.median(cosines))
    # Centred one-hot rows have n - 1 equal singular values; a collapsed space has rank ~1 and cosines ~1.
    assert embedding_diagnostics(np.eye(10))["effective_rank"] == pytest.approx(9.0)
    collapsed = embedding_diagnostics(np.ones((20, 8)) + rng.normal(size=(20, 8)) * np.r_[1e-3, np.zeros(7)])
    assert collapsed["effective_rank"] == pytest.approx(1.0) and collapsed["cosine_mean"] > 0.999


def test_contrastive_batches_mark_graph_neighbours_and_views_and_leave_validation_out(store_copy):
    import networkx as nx

    data = audio_data(store_copy, batch_size=6, views=2, crop_seconds=2.0, val_fraction=0.2, seed=1)
    data.setup()
    val = set(data.val_nodes.tolist())
    nx_graph = nx.Graph()
    for a, b in zip(data.graph.row.tolist(), data.graph.col.tolist()):
        if a not in val and b not in val:
            nx_graph.add_edge(a, b)
    generator = torch.Generator().manual_seed(0)
    batches = data._contrastive_batches(generator)
    seen = torch.cat(batches).unique().tolist()
    assert not val & set(seen)  # validation tracks are in no training batch
    assert set(seen) <= set(data.train_eligible.nonzero().squeeze(1).tolist())
    from audiograph.training.audio_data import ContrastiveBatches

    dataset = ContrastiveBatches(batches, data.train_graph, data.node_ids, data.mels, data.crop_frames, 2, 1, seed=0)
    views, positives = dataset[0]
    nodes = batches[0].repeat_interleave(2).tolist()
    assert views.shape == (len(nodes), 128, data.crop_frames)
    expected = [[a == b or nx_graph.has_edge(a, b) for b in nodes] for a in nodes]
    assert positives.tolist() == expected


def test_band_statistics_are_the_training_tracks_per_band_moments(store_copy):
    data = audio_data(store_copy, val_fraction=0.2, seed=2)
    data.setup()
    frames = np.concatenate(
        [
            np.asarray(c, np.float64)
            for n in data.train_eligible.nonzero().squeeze(1).tolist()
            for c in data.mels(data.node_ids[n])
        ],
        axis=1,
    )
    np.testing.assert_allclose(data.band_mean.numpy(), frames.mean(1), rtol=1e-5)
    np.testing.assert_allclose(data.band_std.numpy(), frames.std(1), rtol=1e-4)


def test_a_users_trainer_gets_the_band_statistics_and_fresh_examples_each_epoch(store_copy):
    """`AudioEncoderModule` with `GraphAudioData` under a user's own Trainer: the encoder normalised raw dB with
    zero means (only train_audio copied the statistics), and the examples of the first epoch came back every
    epoch (only train_audio asked the trainer to reload them)."""
    import lightning as L

    data = audio_data(store_copy, batch_size=8, val_fraction=0.2, seed=2)
    module = AudioEncoderModule(audio=data.audio.to_dict())
    drawn = []
    draw = data.train_dataloader
    data.train_dataloader = lambda: drawn.append(1) or draw()
    trainer = L.Trainer(
        max_epochs=2, limit_train_batches=1, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(module, datamodule=data)
    assert torch.equal(module.model.encoder.band_mean, data.band_mean) and len(drawn) == 2
    loader = data.val_dataloader()
    with pytest.raises(ConfigError, match="trains with its data module"):
        L.Trainer(max_epochs=1, logger=False, enable_progress_bar=False).fit(module, loader, loader)


def test_a_run_is_reproduced_by_its_seed_and_thread_count(embedded_db, tmp_path, monkeypatch):
    import shutil

    import torch

    from audiograph.store import Store

    monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))  # what a user sets to fix the count
    vectors = []
    for run in range(2):
        shutil.copy(embedded_db, tmp_path / f"run{run}.db")
        store = Store(tmp_path / f"run{run}.db")
        report = train_audio(store, max_epochs=1, quiet=True, batch_size=8, crop_seconds=3.0, accelerator="cpu", seed=5)
        assert store.models.get(report.model_id)["config"]["torch_threads"] == torch.get_num_threads()
        vectors.append(store.vectors.matrix("acoustic"))
    assert vectors[0][0] == vectors[1][0]
    np.testing.assert_array_equal(vectors[0][1], vectors[1][1])


@pytest.mark.parametrize("loss", ["contrastive", "triplet"])
def test_short_training_run_registers_embeds_and_guards(store_copy, loss, capsys):
    store = store_copy
    report = train_audio(
        store,
        max_epochs=2,
        quiet=True,
        batch_size=8,
        crop_seconds=3.0,
        val_fraction=0.2,
        accelerator="cpu",
        seed=3,
        loss=loss,
    )
    model = store.models.get(report.model_id)
    assert model["kind"] == "audio-encoder" and model["space"] == "acoustic"
    assert model["config"]["loss"] == loss and model["config"]["batch_size"] == 8
    assert model["config"]["lr"] == AudioEncoderModule().hparams.lr
    assert {
        "val_accuracy",
        "val_precision_at_5",
        "val_descriptors_precision_at_5",
        "val_untrained_precision_at_5",
    } <= set(model["metrics"])
    run_dir = store.models_dir / report.model_id
    assert (run_dir / "hparams.yaml").exists() and (run_dir / "metrics.csv").exists()
    # The saved encoder standardises its input with the collection's per-band statistics.
    from audiograph.models import AcousticModel

    encoder = AcousticModel.load(store.models.checkpoint_file(model)).encoder
    data = audio_data(store, batch_size=8, crop_seconds=3.0, val_fraction=0.2, seed=3)
    data.setup()
    torch.testing.assert_close(encoder.band_mean, data.band_mean)
    torch.testing.assert_close(encoder.band_std, data.band_std)
    # Every track with cached audio now has an acoustic vector from this model.
    ids, vectors = store.vectors.matrix("acoustic")
    assert set(ids) == set(store.mels.chunks()) and store.vectors.search_model("acoustic") == (report.model_id, 0)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # The space has not collapsed: pairwise cosines spread out.
    assert embedding_diagnostics(vectors)["cosine_std"] > 0.1
    # The guard: three figures over the same validation tracks, recomputed here from the stored spaces.
    guard = report.guard
    assert guard["val_tracks"] >= 2
    assert model["metrics"]["val_descriptors_precision_at_5"] == guard["descriptors_precision_at_5"]
    data = audio_data(store, val_fraction=0.2, seed=3)
    data.setup()
    rows = [ids.index(data.node_ids[n]) for n in data.eligible.nonzero().squeeze(1).tolist()]
    trained = neighbour_precision_at_k(data.graph, data.eligible.nonzero().squeeze(1), vectors[rows], data.val_nodes)
    assert trained == pytest.approx(guard["trained_precision_at_5"], abs=1e-6)
    worse = [s for s in ("descriptors", "untrained") if trained < guard[f"{s}_precision_at_5"]]
    assert guard["worse_than"] == worse
    assert any("the trained acoustic space is worse" in w for w in report.warnings) == bool(worse)
    # The vector made from the cache equals embedding the file itself (the cache holds the same chunks).
    from pathlib import Path

    from audiograph.pipelines.encoders import AudioFile, file_vector
    from audiograph.pipelines.query import query_file

    track = store.tracks.get(ids[0])
    fresh = file_vector(store, model, AudioFile(track["path"], Path(track["path"]).read_bytes()))
    np.testing.assert_allclose(fresh, vectors[0], atol=1e-5)
    result = query_file(store, track["path"], space="acoustic", k=3)
    assert result.query_track == ids[0] and ids[0] not in [h["track_id"] for h in result.hits]


def test_guard_line_gives_every_figure():
    from audiograph.pipelines.train_audio import TrainAudioReport

    guard = {
        "trained_precision_at_5": 0.4,
        "descriptors_precision_at_5": 0.6,
        "untrained_precision_at_5": 0.3,
        "val_tracks": 12,
        "worse_than": ["descriptors"],
    }
    line = TrainAudioReport("m", "c", 1, guard=guard).guard_line()
    assert line == (
        "graph-neighbour precision@5 of 12 validation tracks: trained encoder 0.400, descriptors 0.600,"
        " untrained encoder 0.300"
    )
    joined = {**guard, "descriptor_weight": 0.25, "encoder_precision_at_5": 0.5}
    assert (
        TrainAudioReport("m", "c", 1, guard=joined)
        .guard_line()
        .endswith(
            "acoustic space 0.400 (the trained encoder joined with the descriptors at weight 0.25; the trained encoder"
            " alone 0.500), descriptors 0.600, untrained encoder 0.300"
        )
    )


@pytest.mark.slow
def test_training_learns_genre(store_copy):
    """Longer run: acoustic neighbours share genre far above chance, and above the untrained encoder."""
    store = store_copy
    train_audio(store, max_epochs=15, patience=15, quiet=True, crop_seconds=3.0, accelerator="cpu", seed=0)
    genre = {t["id"]: t["genre"] for t in store.tracks.rows()}
    ids, vectors = store.vectors.matrix("acoustic")
    trained = label_precision_at_k(vectors, [genre[i] for i in ids], k=5)
    assert trained > 0.7


@pytest.mark.slow
def test_query_finds_same_genre_neighbours_for_tracks_held_out_of_training(store_copy):
    """Validation tracks never appear in a training triplet; their acoustic neighbours share their genre."""
    from audiograph.pipelines.query import query_file

    store = store_copy
    train_audio(
        store, max_epochs=15, patience=15, quiet=True, crop_seconds=3.0, accelerator="cpu", seed=0, val_fraction=0.2
    )
    data = audio_data(store, seed=0, val_fraction=0.2)
    data.setup()
    held_out = [data.node_ids[i] for i in data.val_nodes.tolist()]
    genre = {t["id"]: t["genre"] for t in store.tracks.rows()}
    shares = []
    for track_id in held_out:
        result = query_file(store, store.tracks.get(track_id)["path"], space="acoustic", k=5)
        assert track_id not in [h["track_id"] for h in result.hits]
        shares.append(np.mean([genre[h["track_id"]] == genre[track_id] for h in result.hits]))
    assert len(held_out) >= 4 and np.mean(shares) > 0.6


def test_train_audio_into_a_space_of_its_own_leaves_the_acoustic_space_alone(store_copy):
    from audiograph.pipelines.encoders import resolve_acoustic_model

    store = store_copy
    report = train_audio(store, space="acoustic-trial", max_epochs=1, quiet=True, crop_seconds=3.0, accelerator="cpu")
    assert report.space == "acoustic-trial" and store.models.get(report.model_id)["space"] == "acoustic-trial"
    ids, _ = store.vectors.matrix("acoustic-trial")
    assert set(ids) == set(store.mels.chunks()) and "acoustic" not in store.vectors.spaces()
    # embed-audio's encoder is the acoustic space's newest model: none yet, so descriptors only.
    assert resolve_acoustic_model(store)[2] is None


def test_descriptor_weight_is_auto_or_a_share_below_one():
    from audiograph.pipelines.train_audio import parse_descriptor_weight

    assert parse_descriptor_weight("auto") == "auto"
    assert parse_descriptor_weight("0.25") == 0.25 and parse_descriptor_weight(0) == 0.0
    for bad in ("1", 1.0, -0.1, "half", None, "nan"):
        with pytest.raises(ConfigError, match="descriptor weight"):
            parse_descriptor_weight(bad)


def test_joined_vectors_mix_the_two_cosines_by_the_weight():
    from audiograph.models.acoustic import combine_with_descriptors

    g = torch.Generator().manual_seed(5)
    encoded, descriptors = torch.randn(6, 8, generator=g), torch.randn(6, 42, generator=g)
    for weight in (0.0, 0.3, 0.75):
        joined = combine_with_descriptors(encoded, descriptors, weight).numpy()
        e = encoded.numpy() / np.linalg.norm(encoded.numpy(), axis=1, keepdims=True)
        d = descriptors.numpy() / np.linalg.norm(descriptors.numpy(), axis=1, keepdims=True)
        np.testing.assert_allclose(np.linalg.norm(joined, axis=1), 1.0, atol=1e-6)
        np.testing.assert_allclose(joined @ joined.T, (1 - weight) * e @ e.T + weight * d @ d.T, atol=1e-5)


def test_a_model_that_joins_descriptors_saves_loads_and_asks_for_them(tmp_path):
    from audiograph.models.acoustic import AcousticModel

    model = AcousticModel(encoder={"embedding_dim": 16})
    rng = np.random.default_rng(0)
    mean, scale = rng.normal(size=42).astype(np.float32), rng.uniform(0.5, 2, 42).astype(np.float32)
    model.combine_descriptors(0.4, mean, scale)
    assert model.uses_descriptors and model.embedding_dim == 16 + 42
    loaded = AcousticModel.load(model.save(tmp_path / "m"))
    assert loaded.descriptor_weight == 0.4 and loaded.embedding_dim == 58
    np.testing.assert_array_equal(loaded.descriptor_mean.numpy(), mean)
    chunks = [[torch.randn(128, 40)], [torch.randn(128, 60)]]
    raw = rng.normal(size=(2, 42)).astype(np.float32)
    with pytest.raises(ValueError, match="descriptor row per track"):
        loaded.encode_chunks(chunks)
    alone = AcousticModel(encoder={"embedding_dim": 16})
    alone.load_state_dict({k: v for k, v in loaded.state_dict().items() if not k.startswith("descriptor_")})
    e = alone.encode_chunks(chunks).numpy()
    d = (raw - mean) / scale
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    want = np.concatenate([np.sqrt(0.6) * e, np.sqrt(0.4) * d], axis=1)
    np.testing.assert_allclose(loaded.encode_chunks(chunks, descriptors=raw).numpy(), want, atol=1e-5)
    # A waveform: its descriptors are computed from the samples, as a file's are.
    from audiograph.audio.analysis import analyse_samples

    t = np.arange(3 * 22_050) / 22_050
    wave = (0.3 * np.sin(2 * np.pi * 330 * t) + 0.02 * rng.standard_normal(len(t))).astype(np.float32)
    wave_analysis = analyse_samples(wave, loaded.config)
    want = loaded.encode_chunks([wave_analysis.mel_chunks], descriptors=wave_analysis.descriptors[None])
    np.testing.assert_allclose(loaded.encode([wave]), want.numpy(), atol=1e-6)
    # The same waveform as a file at the model's rate: the file and the waveform get one vector.
    import soundfile as sf

    sf.write(tmp_path / "wave.wav", wave, 22_050, subtype="FLOAT")
    np.testing.assert_allclose(loaded.encode([tmp_path / "wave.wav"]), want.numpy(), atol=1e-6)
    # Back to the encoder alone: no descriptor buffers are kept, and vectors are the encoder's.
    loaded.combine_descriptors(0.0, mean, scale)
    assert not loaded.uses_descriptors and "descriptor_mean" not in loaded.state_dict()


def test_training_with_a_descriptor_weight_stores_joined_vectors_everywhere(store_copy, tmp_path):
    """A set weight: the stored vectors mix encoder and z-scored descriptor cosines by it, and embedding a new
    copy of a file (embed-audio) or querying by file gives the same vector as the one stored."""
    import shutil
    from pathlib import Path

    from audiograph.pipelines.embed_audio import embed_audio
    from audiograph.pipelines.encoders import resolve_acoustic_model

    store = store_copy
    with pytest.raises(ConfigError, match="descriptor weight must be auto or a number in"):
        train_audio(store, descriptor_weight=1.5, quiet=True)
    report = train_audio(
        store, max_epochs=1, quiet=True, crop_seconds=3.0, accelerator="cpu", seed=1, descriptor_weight="0.5"
    )
    assert report.guard["descriptor_weight"] == 0.5
    model, _, _ = resolve_acoustic_model(store, report.model_id)
    assert model.descriptor_weight == 0.5 and model.embedding_dim == model.encoder.embedding_dim + 42
    ids, vectors = store.vectors.matrix("acoustic")
    desc_ids, desc = store.vectors.matrix("descriptors")
    training = audio_data(store).eligible_ids()
    rows = desc[[desc_ids.index(t) for t in training]]
    mean, std = rows.mean(0), rows.std(0)
    z = (desc[[desc_ids.index(t) for t in ids]] - mean) / np.where(std > 1e-12, std, 1)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    e = vectors[:, : model.encoder.embedding_dim] / np.sqrt(0.5)
    np.testing.assert_allclose(vectors @ vectors.T, 0.5 * e @ e.T + 0.5 * z @ z.T, atol=1e-4)
    # A copy of a stored file, embedded by embed-audio with this model, gets the stored track's vector.
    track = store.tracks.get(ids[0])
    new = tmp_path / "new"
    new.mkdir()
    shutil.copy(track["path"], new / Path(track["path"]).name)
    summary = embed_audio(new, store, collection="new", quiet=True, num_workers=0)
    assert summary.embedded == 1 and not summary.failed
    new_ids, new_vectors = store.vectors.matrix("acoustic")
    copy_id = next(t for t in new_ids if t.startswith("new"))
    np.testing.assert_allclose(new_vectors[new_ids.index(copy_id)], vectors[0], atol=1e-4)
