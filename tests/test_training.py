"""train-audio: the cosine triplet loss at its edge cases, crops, and a short training run end to end."""

import math

import numpy as np
import pytest
import torch

from audiograph.audio.training import AudioEncoderModule, cosine_distance, crop, train_audio
from audiograph.eval.neighbours import label_precision_at_k


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
    module = AudioEncoderModule(margin=0.5)
    a = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    # Positive identical to the anchor, negative opposite: loss is zero, gradients finite.
    a.requires_grad_(True)
    loss = module.loss(a, a.detach(), -a.detach())
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    # Swapped roles: loss = d(a,p) - d(a,n) + margin = 2 - ~0 + 0.5.
    loss = module.loss(a, -a.detach(), a.detach())
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


def test_short_training_run_registers_and_embeds(store_copy):
    store = store_copy
    report = train_audio(store, max_epochs=2, quiet=True, batch_size=8, crop_seconds=3.0, val_fraction=0.2,
                         accelerator="cpu", seed=3)  # fmt: skip
    model = store.model(report.model_id)
    assert model["kind"] == "audio-encoder" and model["space"] == "acoustic"
    assert model["config"]["lr"] == 5e-3 and model["config"]["batch_size"] == 8
    assert "val_triplet_accuracy" in model["metrics"] and "val_recall_at_10" in model["metrics"]
    run_dir = store.models_dir / report.model_id
    assert (run_dir / "hparams.yaml").exists() and (run_dir / "metrics.csv").exists()
    # Every track with cached audio now has an acoustic vector from this model.
    ids, vectors = store.vectors("acoustic")
    assert set(ids) == set(store.mel_chunks()) and store.search_model("acoustic") == (report.model_id, 0)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # The vector made from the cache equals embedding the file itself (the cache holds the same chunks).
    from pathlib import Path

    from audiograph.query import QUERY_EMBEDDERS, query_file

    track = store.track(ids[0])
    fresh = QUERY_EMBEDDERS["audio-encoder"](store, model, Path(track["path"]), Path(track["path"]).read_bytes())
    np.testing.assert_allclose(fresh, vectors[0], atol=1e-5)
    result = query_file(store, track["path"], space="acoustic", k=3)
    assert result.query_track == ids[0] and ids[0] not in [h["track_id"] for h in result.hits]


@pytest.mark.slow
def test_training_learns_genre(store_copy):
    """Longer run: acoustic neighbours share genre far above chance, and above the untrained encoder."""
    store = store_copy
    train_audio(store, max_epochs=15, quiet=True, crop_seconds=3.0, accelerator="cpu", seed=0)
    genre = {t["id"]: t["genre"] for t in store.tracks()}
    ids, vectors = store.vectors("acoustic")
    trained = label_precision_at_k(vectors, [genre[i] for i in ids], k=5)
    assert trained > 0.7


@pytest.mark.slow
def test_query_finds_same_genre_neighbours_for_tracks_held_out_of_training(store_copy):
    """Validation tracks never appear in a training triplet; their acoustic neighbours share their genre."""
    from audiograph.audio.training import TripletDataModule
    from audiograph.query import query_file

    store = store_copy
    train_audio(store, max_epochs=15, quiet=True, crop_seconds=3.0, accelerator="cpu", seed=0, val_fraction=0.2)
    data = TripletDataModule(str(store.path), seed=0, val_fraction=0.2)
    data.setup()
    held_out = [data.node_ids[i] for i in data.val_nodes.tolist()]
    genre = {t["id"]: t["genre"] for t in store.tracks()}
    shares = []
    for track_id in held_out:
        result = query_file(store, store.track(track_id)["path"], space="acoustic", k=5)
        assert track_id not in [h["track_id"] for h in result.hits]
        shares.append(np.mean([genre[h["track_id"]] == genre[track_id] for h in result.hits]))
    assert len(held_out) >= 4 and np.mean(shares) > 0.6
