"""Grid search over MUSIG's task weights (the paper's §3.5): one training run per preset, compared on
train-musig's own validation (completion of held-out playlists, or link AUC on held-out edges).

    python recipes/musig_grid.py [--db STORE] [--out recipe-musig-grid] [--seeds 0 1 2] [--quick]

Without --db, the default synthetic collection is built in the output folder first (synthesize,
embed-audio, build-graph, a short train-audio, as `audiograph demo` does). Every preset trains on
the same features and the same edge split of a seed; nothing is registered, the store's musig
space is left as it was, and checkpoints and logs go to the output folder's runs/. Reports each
preset's validation hit rate (or link AUC and each task's validation loss, unweighted, so comparable
across presets) at its best epoch, as a Markdown table printed and
written to results.md, with the raw numbers, seeds, versions and wall times in results.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import lightning
import torch
import torch_geometric

import audiograph
from audiograph.musig.features import parse_groups
from audiograph.musig.model import TASK_WEIGHT_PRESETS
from audiograph.pipelines.build_graph import build_graph
from audiograph.pipelines.embed_audio import embed_audio
from audiograph.pipelines.features import available_groups
from audiograph.pipelines.train_audio import train_audio
from audiograph.pipelines.train_musig import default_similarity_group, prepare_musig_data, train_musig
from audiograph.store import Store
from audiograph.synth import synthesize
from audiograph.tables import markdown_table

AUDIO_EPOCHS = 8  # a short encoder schedule, as the demo's
METRICS = {
    "val_hr": "playlist HR",
    "val_hr_features": "features' HR",
    "val_auc": "link AUC",
    "val_playlist_loss": "playlist loss",
    "val_genre_loss": "genre BCE",
    "val_audio_loss": "similarity RMSE",
    "val_loss": "weighted total",
}


def build_synthetic_store(out: Path, args) -> Store:
    """The default synthetic collection, embedded, with its graph and a briefly trained audio encoder."""
    collection = out / "collection"
    synthesize(
        collection,
        tracks=args.tracks,
        genres=args.genres,
        playlists=args.playlists,
        seconds=args.seconds,
        seed=args.seeds[0],
    )
    store = Store(out / "recipe.db")
    embed_audio(collection / "audio", store, quiet=True)
    build_graph(store, [collection / "playlists"])
    train_audio(store, max_epochs=args.audio_epochs, seed=args.seeds[0], quiet=True)
    return store


def summarise(values: list[float]) -> str:
    """ "mean" for one value, "mean ± std" for several."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def grid_table(runs: dict[str, list[dict]]) -> str:
    """One row per preset; a metric no run logged (task losses under validation by playlist completion,
    HR under validation by edges) gets no column."""
    logged = [m for m in METRICS if any(m in r["metrics"] for results in runs.values() for r in results)]
    headers = ["preset", "c1,c2,c3", *(METRICS[m] for m in logged), "best/run epochs", "train seconds"]
    rows = []
    for preset, results in runs.items():
        cells = [preset, ",".join(f"{w:g}" for w in TASK_WEIGHT_PRESETS[preset])]
        cells += [summarise([r["metrics"].get(m, float("nan")) for r in results]) for m in logged]
        cells += [
            ", ".join(f"{r['metrics'].get('epoch', float('nan')) + 1:.0f}/{r['epochs']}" for r in results),
            f"{sum(r['seconds'] for r in results):.1f}",
        ]
        rows.append(cells)
    return markdown_table(headers, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--db", type=Path, help="a store with a graph (default: build the synthetic collection in --out)"
    )
    parser.add_argument("--out", type=Path, default=Path("recipe-musig-grid"))
    parser.add_argument("--presets", nargs="+", choices=list(TASK_WEIGHT_PRESETS), default=list(TASK_WEIGHT_PRESETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="one training run per preset and seed")
    parser.add_argument("--features", help="feature groups (default: every group the store has)")
    parser.add_argument("--epochs", type=int, default=30, help="MUSIG epochs (early stopping on validation)")
    parser.add_argument("--batches-per-epoch", type=int, help="cap on MUSIG batches per epoch")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of playlists (else edges) held out")
    parser.add_argument("--audio-epochs", type=int, default=AUDIO_EPOCHS, help="train-audio epochs (synthetic store)")
    parser.add_argument("--tracks", type=int, default=240)
    parser.add_argument("--genres", type=int, default=6)
    parser.add_argument("--playlists", type=int, default=120)
    parser.add_argument("--seconds", type=float, default=20.0, help="mean synthetic track length")
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--quick", action="store_true", help="a small collection and short runs, for a smoke test")
    args = parser.parse_args()
    if args.quick:
        args.tracks, args.genres, args.playlists, args.seconds = 60, 3, 40, 6.0
        args.audio_epochs, args.epochs, args.batches_per_epoch = 2, 4, 4
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)

    store = Store(args.db, must_exist=True) if args.db else build_synthetic_store(args.out, args)
    groups = parse_groups(args.features) if args.features else available_groups(store)
    data = prepare_musig_data(store, groups, similarity_group=default_similarity_group(store))
    prepared = time.perf_counter() - started
    print(
        f"store {store.path}: {data.graph.num_nodes} nodes, {data.graph.num_edges // 2} edges; features"
        f" {', '.join(groups)} ({data.data.num_features} dims); similarity task on {data.similarity_group or 'none'}"
        f" ({prepared:.0f} s to prepare)"
    )

    runs = {}
    for preset in args.presets:
        runs[preset] = []
        for seed in args.seeds:
            start = time.perf_counter()
            report = train_musig(
                store,
                musig_data=data,
                register=False,
                task_weights=TASK_WEIGHT_PRESETS[preset],
                max_epochs=args.epochs,
                batches_per_epoch=args.batches_per_epoch,
                val_fraction=args.val_fraction,
                seed=seed,
                accelerator=args.accelerator,
                models_dir=args.out / "runs",
                quiet=True,
            )
            seconds = time.perf_counter() - start
            runs[preset].append(
                {
                    "seed": seed,
                    "model_id": report.model_id,
                    "checkpoint": report.checkpoint,
                    "epochs": report.epochs,
                    "metrics": report.metrics,
                    "seconds": seconds,
                }
            )
            monitor = "val_hr" if "val_hr" in report.metrics else "val_auc"
            print(
                f"  {preset} seed {seed}: {METRICS[monitor]} {report.metrics.get(monitor, float('nan')):.3f}"
                f" after {report.epochs} epochs ({seconds:.1f} s)"
            )

    table = grid_table(runs)
    wall = time.perf_counter() - started
    versions = {
        "audiograph": audiograph.__version__,
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "torch_geometric": torch_geometric.__version__,
        "python": platform.python_version(),
    }
    monitor = "val_hr" if any("val_hr" in r["metrics"] for rs in runs.values() for r in rs) else "val_auc"
    best = max(runs, key=lambda p: statistics.mean(r["metrics"].get(monitor, 0.0) for r in runs[p]))
    notes = (
        f"Validation on {args.val_fraction:.0%} held-out playlists (completion hit rate) or, with too few"
        f" playlists, held-out edges (link AUC); metrics at each run's best epoch by {METRICS[monitor]}; task"
        f" losses (validation by edges only) unweighted (the genre and similarity heads of a preset that gives"
        f" them weight 0 are untrained). Seeds {args.seeds}; {platform.platform()}; "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + f". Wall time {wall / 60:.1f} min."
    )
    text = f"# MUSIG task-weight grid\n\nStore `{store.path}`, features {', '.join(groups)}.\n\n{table}\n\n{notes}\n"
    (args.out / "results.md").write_text(text)
    results = {
        "store": str(store.path),
        "features": groups,
        "similarity_group": data.similarity_group,
        "nodes": data.graph.num_nodes,
        "edges": data.graph.num_edges // 2,
        "runs": runs,
        "best_preset": best,
        "versions": versions,
        "wall_seconds": wall,
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(
        f"\n{table}\n\n{notes}\nbest by {METRICS[monitor]}: {best}"
        f" (train it with `audiograph train-musig --task-weights {best}`)"
    )
    print(f"wrote {args.out / 'results.md'} and results.json ({wall / 60:.1f} min)")


if __name__ == "__main__":
    main()
