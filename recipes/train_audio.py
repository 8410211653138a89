"""Train the audio encoder on the default synthetic collection and compare acoustic spaces.

    python recipes/train_audio.py [--out recipe-train-audio] [--epochs 30] [--tracks 240 --genres 6 ...]

Prints the validation metrics and the guard's figures, the genre precision@10 of nearest
neighbours in three spaces side by side (the trained encoder, the same architecture untrained, the
42 audio descriptors, z-scored), and training throughput in crops/s next to the encoder's bare
forward + loss + backward + optimiser step on the same batch shapes, measured in the same run.
Synthetic data: the real-music benchmark is `recipes/real_music.py`. Writes results.json to the
output folder.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from audiograph.eval.neighbours import label_precision_at_k
from audiograph.models import AcousticModel
from audiograph.pipelines.build_graph import build_graph
from audiograph.pipelines.embed_audio import embed_audio
from audiograph.pipelines.encoders import resolve_acoustic_model
from audiograph.pipelines.train_audio import audio_data, standardised_descriptors, train_audio
from audiograph.runtime import keyword_defaults
from audiograph.store import ACOUSTIC_SPACE, Store
from audiograph.synth import synthesize
from audiograph.training.audio import AudioEncoderModule
from audiograph.training.audio_data import GraphAudioData


def bare_crops_per_second(module: AudioEncoderModule, data: GraphAudioData, steps: int = 20) -> float:
    """The encoder alone: forward, loss, backward and optimiser step on random batches of the training shapes."""
    optimiser = module.configure_optimizers()["optimizer"]
    frames, mels = data.audio.frames_for(data.hparams.crop_seconds), data.audio.n_mels
    size = data.hparams.batch_size
    if module.hparams.loss == "triplet":
        batch = [torch.randn(size, mels, frames) for _ in range(3)]
    else:
        tracks = 2 * size  # (anchor, positive) pairs
        slot = torch.arange(tracks).repeat_interleave(data.hparams.views)
        batch = [torch.randn(len(slot), mels, frames), slot[:, None] // 2 == slot[None, :] // 2]
    crops = sum(len(b) for b in batch) if module.hparams.loss == "triplet" else len(batch[0])
    for step in range(steps + 3):
        if step == 3:  # after warm-up
            start = time.perf_counter()
        loss = module.compute_loss(batch)[0]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return steps * crops / (time.perf_counter() - start)


def data_keys() -> set[str]:
    """GraphAudioData's options, to rebuild the training batches' shapes from a model's config."""
    return set(keyword_defaults(GraphAudioData)) - {"num_workers", "audio"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("recipe-train-audio"))
    parser.add_argument("--epochs", type=int, help="maximum epochs (default: train_audio's)")
    parser.add_argument("--tracks", type=int, default=240)
    parser.add_argument("--genres", type=int, default=6)
    parser.add_argument("--playlists", type=int, default=120)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--weight-power", type=float, help="positives in proportion to weight ** this (default: train_audio's)"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: a small collection, 3 epochs")
    args = parser.parse_args()
    if args.quick:
        args.tracks, args.playlists, args.epochs = 60, 30, 3
    started = time.perf_counter()

    collection = args.out / "collection"
    synthesize(
        collection,
        tracks=args.tracks,
        genres=args.genres,
        playlists=args.playlists,
        seconds=args.seconds,
        seed=args.seed,
    )
    store = Store(args.out / "recipe.db")
    embed_audio(collection / "audio", store, quiet=True)
    graph = build_graph(store, [collection / "playlists"])
    print(f"graph: {graph.summary['nodes']} tracks, {graph.summary['edges']} edges ({graph.min_weight_reason})")

    options = {} if args.weight_power is None else {"weight_power": args.weight_power}
    if args.epochs:
        options["max_epochs"] = args.epochs
    report = train_audio(store, seed=args.seed, **options)
    genre = {t["id"]: t["genre"] for t in store.tracks.rows()}

    ids, trained = store.vectors.matrix(ACOUSTIC_SPACE, report.model_id)
    model = store.models.get(report.model_id)
    trained_model, _, _ = resolve_acoustic_model(store, report.model_id)
    torch.manual_seed(args.seed)
    untrained = AcousticModel(trained_model.config, trained_model.encoder_options)
    if untrained.encoder.input_norm_kind == "collection":  # the same input standardisation as the trained one
        untrained.encoder.set_input_statistics(trained_model.encoder.band_mean, trained_model.encoder.band_std)
    chunks = store.mels.chunks(ids)
    untrained_vectors = untrained.encode_chunks([chunks[i] for i in ids])
    descriptor_ids, standardised = standardised_descriptors(store, ids)
    precision = {
        "trained encoder": label_precision_at_k(trained, [genre[i] for i in ids], k=10),
        "untrained encoder": label_precision_at_k(untrained_vectors, [genre[i] for i in ids], k=10),
        "audio descriptors": label_precision_at_k(standardised, [genre[i] for i in descriptor_ids], k=10),
    }
    labels = np.array([genre[i] for i in ids])
    chance = float(sum((labels == g).mean() ** 2 for g in set(labels)))

    data = audio_data(store, trained_model.config, **{k: v for k, v in model["config"].items() if k in data_keys()})
    bare = bare_crops_per_second(AudioEncoderModule(**{k: model["config"][k] for k in ("loss", "encoder")}), data)

    m, g = report.metrics, report.guard
    print(
        f"\nvalidation accuracy {m.get('val_accuracy', float('nan')):.3f}, graph-neighbour precision@5: trained"
        f" {g['trained_precision_at_5']:.3f}, descriptors {g['descriptors_precision_at_5']:.3f}, untrained"
        f" {g['untrained_precision_at_5']:.3f} (best of {report.epochs} epochs)"
    )
    print(f"\ngenre precision@10 of nearest neighbours (chance {chance:.2f})")
    for space, value in precision.items():
        print(f"  {space:<18} {value:.3f}")
    print(
        f"\ntraining throughput {report.crops_per_second:.0f} crops/s; bare encoder forward+loss+backward+step"
        f" {bare:.0f} crops/s (ratio {bare / report.crops_per_second:.2f})"
    )
    results = {
        "model_id": report.model_id,
        "metrics": report.metrics,
        "genre_precision_at_10": precision,
        "chance": chance,
        "guard": report.guard,
        "crops_per_second": report.crops_per_second,
        "bare_crops_per_second": bare,
        "wall_seconds": time.perf_counter() - started,
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.out / 'results.json'} ({results['wall_seconds'] / 60:.1f} min)")


if __name__ == "__main__":
    main()
