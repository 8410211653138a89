"""Train the audio encoder on the default synthetic collection and compare acoustic spaces.

    python recipes/train_audio.py [--out recipe-train-audio] [--epochs 30] [--tracks 240 --genres 6 ...]

Prints the validation triplet accuracy, the genre precision@10 of nearest neighbours in three
spaces side by side (the trained encoder, the same architecture untrained, the 42 audio
descriptors), and training throughput in triplets/s next to the encoder's bare
forward + backward + optimiser step on the same batch shapes, measured in the same run.
Writes results.json to the output folder.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from audiograph.audio.analysis import chunks_as_tensors
from audiograph.audio.embed import embed_audio
from audiograph.audio.encoder import AudioEncoder, embed_tracks
from audiograph.audio.training import AudioEncoderModule, TripletDataModule, train_audio
from audiograph.eval.neighbours import label_precision_at_k
from audiograph.graph.build import build_graph
from audiograph.store import ACOUSTIC_SPACE, DESCRIPTORS_SPACE, Store
from audiograph.synth import synthesize


def bare_triplets_per_second(batch_size: int, frames: int, steps: int = 20) -> float:
    """The encoder alone: forward, triplet loss, backward and Adam step on random crops."""
    module = AudioEncoderModule()
    optimiser = module.configure_optimizers()["optimizer"]
    batch = [torch.randn(batch_size, 128, frames) for _ in range(3)]
    for step in range(steps + 3):
        if step == 3:  # after warm-up
            start = time.perf_counter()
        loss = _loss(module, batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return steps * batch_size / (time.perf_counter() - start)


def _loss(module: AudioEncoderModule, batch) -> torch.Tensor:
    z = module.encoder(torch.cat(batch))
    return module.loss(*z.split(len(batch[0])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("recipe-train-audio"))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--tracks", type=int, default=240)
    parser.add_argument("--genres", type=int, default=6)
    parser.add_argument("--playlists", type=int, default=120)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weight-power", type=float, help="positives in proportion to weight ** this (default: train_audio's)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: a small collection, 3 epochs")
    args = parser.parse_args()
    if args.quick:
        args.tracks, args.playlists, args.epochs = 60, 30, 3
    started = time.perf_counter()

    collection = args.out / "collection"
    synthesize(collection, tracks=args.tracks, genres=args.genres, playlists=args.playlists,
               seconds=args.seconds, seed=args.seed)  # fmt: skip
    store = Store(args.out / "recipe.db")
    embed_audio(collection / "audio", store, quiet=True)
    graph = build_graph(store, [collection / "playlists"])
    print(f"graph: {graph.summary['nodes']} tracks, {graph.summary['edges']} edges ({graph.min_weight_reason})")

    options = {} if args.weight_power is None else {"weight_power": args.weight_power}
    report = train_audio(store, max_epochs=args.epochs, seed=args.seed, **options)
    genre = {t["id"]: t["genre"] for t in store.tracks()}

    ids, trained = store.vectors(ACOUSTIC_SPACE, report.model_id)
    torch.manual_seed(args.seed)
    untrained = embed_tracks(AudioEncoder().eval(), [chunks_as_tensors(c) for c in store.mel_chunks(ids).values()])
    descriptor_ids, descriptors = store.vectors(DESCRIPTORS_SPACE)
    standardised = (descriptors - descriptors.mean(0)) / descriptors.std(0)
    precision = {
        "trained encoder": label_precision_at_k(trained, [genre[i] for i in ids], k=10),
        "untrained encoder": label_precision_at_k(untrained, [genre[i] for i in ids], k=10),
        "audio descriptors": label_precision_at_k(standardised, [genre[i] for i in descriptor_ids], k=10),
    }
    labels = np.array([genre[i] for i in ids])
    chance = float(sum((labels == g).mean() ** 2 for g in set(labels)))

    data = TripletDataModule(str(store.path))
    frames = data.frontend.logmel.frames_for(data.hparams.crop_seconds)
    bare = bare_triplets_per_second(data.hparams.batch_size, frames)

    print(f"\nvalidation triplet accuracy {report.metrics.get('val_triplet_accuracy', float('nan')):.3f}"
          f", graph-neighbour recall@10 {report.metrics.get('val_recall_at_10', float('nan')):.3f}"
          f" (best of {report.epochs} epochs)")  # fmt: skip
    print(f"\ngenre precision@10 of nearest neighbours (chance {chance:.2f})")
    for space, value in precision.items():
        print(f"  {space:<18} {value:.3f}")
    print(f"\ntraining throughput {report.triplets_per_second:.0f} triplets/s; bare encoder forward+backward+step"
          f" {bare:.0f} triplets/s (ratio {bare / report.triplets_per_second:.2f})")  # fmt: skip
    results = {
        "model_id": report.model_id,
        "metrics": report.metrics,
        "genre_precision_at_10": precision,
        "chance": chance,
        "triplets_per_second": report.triplets_per_second,
        "bare_triplets_per_second": bare,
        "wall_seconds": time.perf_counter() - started,
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.out / 'results.json'} ({results['wall_seconds'] / 60:.1f} min)")


if __name__ == "__main__":
    main()
