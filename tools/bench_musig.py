"""MUSIG training throughput and full-graph inference time on a paper-sized power-law graph, each
next to a bare reference measured in the same run.

Training: `train_musig` (MusigModule + LightningLinkData + UniformNeighborSampler, the code the
`train-musig` command runs) against a bare loop over the same batch shapes: draw pairs, sample,
mean-aggregate, linear layers, link BCE, backward, Adam step; no Lightning, no loader, one head.
The bare loop runs twice, aggregating with `index_add_` and with the torch.sparse CSR matmul that
MUSIG uses; train_musig does as many batches as the latter. Both train on the same training split
(`MusigDataModule`'s: the graph less its validation edges or playlists) with the same torch threads.
Seeds/s counts each batch's seed nodes (the distinct endpoints of its positive and negative pairs).

`--store DB` measures the same on an existing store's graph and features (the groups `train-musig`
would use, or `--features`), with train-musig's default validation split; the store is copied to a
temporary folder first and never written.

Inference: `MusigModel.encode` (one exact pass over the torch.sparse CSR adjacency) against the
same model called directly, and against one bare `torch.sparse.mm(adjacency, features)`.

Every figure is the median of `--repeats` runs after one warm-up; the bare loops and train_musig run
in alternation, so that a change in the machine's load moves all of them. With `--json` the figures go
to stdout as one JSON object (`seeds_per_second`: train_musig's; `bare_seeds_per_second`: the bare loop
with the torch.sparse mean) and the table to stderr.

    python tools/bench_musig.py [--nodes 15900 --edges 5200000 --seconds 10] [--store DB] [--json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from benchlib import median_seconds, report_to_stderr, say
from torch_geometric.data import Data
from torch_geometric.sampler import NodeSamplerInput

from audiograph.errors import AudiographError, ConfigError
from audiograph.graph.random_graph import powerlaw_graph
from audiograph.graph.sampler import UniformNeighborSampler
from audiograph.musig.features import FeatureSpec
from audiograph.musig.model import full_adjacency
from audiograph.pipelines.train_musig import store_musig_data, train_musig
from audiograph.runtime import keyword_defaults
from audiograph.store import Store
from audiograph.tables import format_table
from audiograph.training.musig import MusigModule
from audiograph.training.musig_data import MusigData, MusigDataModule

FANOUTS = (25, 10)
HIDDEN, OUT = 256, 128
VAL_PAIRS = 2048  # held-out edges: enough for a val_auc, few enough that validation stays short
WARM_UP_BATCHES = 3


def synthetic_data(nodes: int, edges: int, dim: int, seed: int) -> MusigData:
    """A power-law graph with random features, genres and similarity vectors."""
    graph = powerlaw_graph(nodes, edges, seed=seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(nodes, dim, generator=g)
    data = Data(
        x=x,
        x_cold=x,
        genre=torch.randint(10, (nodes,), generator=g),
        sim=F.normalize(torch.rand(nodes, 8, generator=g), dim=-1),
        has_sim=torch.ones(nodes, dtype=torch.bool),
        num_nodes=nodes,
    )
    return MusigData([str(i) for i in range(nodes)], graph, data, FeatureSpec(groups=[]), "audio")


def bare_training(
    split: MusigDataModule, aggregate: str, batch_size: int, seconds: float, seed: int, max_batches: int | None = None
) -> tuple[int, int, float]:
    """(batches, seeds, wall seconds) of the bare loop run for about `seconds` (or `max_batches`), on
    train_musig's training split."""
    data, train_edges = split.data, split.train_edges
    sampler = UniformNeighborSampler(split.train_graph, list(FANOUTS))
    torch.manual_seed(seed)
    sizes = [data.data.num_features, HIDDEN, OUT]
    layers = torch.nn.ModuleList(
        torch.nn.ModuleList([torch.nn.Linear(a, b), torch.nn.Linear(a, b, bias=False)])
        for a, b in zip(sizes[:-1], sizes[1:])
    )
    optimiser = torch.optim.Adam(layers.parameters(), lr=1e-3)
    labels = torch.cat([torch.ones(batch_size), torch.zeros(batch_size)])
    batches = seeds = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds and batches != max_batches:
        positives = train_edges[:, torch.randint(train_edges.shape[1], (batch_size,))]
        pairs = torch.cat([positives, torch.randint(data.graph.num_nodes, (2, batch_size))], dim=1)
        nodes, pair_index = pairs.unique(return_inverse=True)
        out = sampler.sample_from_nodes(NodeSamplerInput(None, nodes))
        z = bare_forward(layers, data.data.x[out.node], out, aggregate)
        loss = F.binary_cross_entropy_with_logits(5 * (z[pair_index[0]] * z[pair_index[1]]).sum(-1), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        batches, seeds = batches + 1, seeds + nodes.numel()
    return batches, seeds, time.perf_counter() - start


def bare_forward(layers, h: torch.Tensor, out, aggregate: str) -> torch.Tensor:
    """GraphSAGE mean layers over a sampled subgraph; the mean by `index_add_` or by a torch.sparse CSR matmul."""
    node_ends = torch.tensor(out.num_sampled_nodes).cumsum(0).tolist()
    edge_ends = torch.tensor(out.num_sampled_edges).cumsum(0).tolist()
    for layer, (neighbours, root) in enumerate(layers):
        hops = len(layers) - layer
        targets, sources, edges = node_ends[hops - 1], node_ends[hops], edge_ends[hops - 1]
        src, dst = out.row[:edges], out.col[:edges]
        degree = torch.bincount(dst, minlength=targets)
        if aggregate == "index_add":
            mean = torch.zeros(targets, h.shape[1]).index_add_(0, dst, h.index_select(0, src))
            mean = mean / degree.clamp(min=1).unsqueeze(1)
        else:  # edges come grouped by target: that is CSR already
            crow = torch.cat([torch.zeros(1, dtype=torch.int64), degree.cumsum(0)])
            adjacency = torch.sparse_csr_tensor(crow, src, torch.ones(edges), size=(targets, sources))
            mean = torch.sparse.mm(adjacency, h[:sources], "mean")
        h = neighbours(mean) + root(h[:targets])
        if layer < len(layers) - 1:
            h = F.relu(h)
    return F.normalize(h, dim=-1)


def synthetic_val_fraction(data: MusigData) -> float:
    """The validation fraction that holds out `VAL_PAIRS` edges of a synthetic graph."""
    return VAL_PAIRS / (data.graph.num_edges / 2)


def lightning_training(
    data: MusigData, store: Store, batch_size: int, batches: int, val_fraction: float, seed: int, workdir: Path
):
    """The `train_musig` report of one epoch of `batches` batches (validation excluded from seeds/s);
    its model files go to `workdir`, nothing is registered in `store`."""
    return train_musig(
        store,
        musig_data=data,
        register=False,
        models_dir=workdir,
        max_epochs=1,
        batches_per_epoch=batches,
        batch_size=batch_size,
        val_fraction=val_fraction,
        seed=seed,
        accelerator="cpu",
        quiet=True,
        fanouts=FANOUTS,
        hidden_channels=HIDDEN,
        out_channels=OUT,
    )


def load_data(args, workdir: Path) -> tuple[MusigData, Store, str]:
    """(the data to train on, a store for train_musig, a line saying what the data is): from a copy of
    `--store`, or a synthetic power-law graph (with an empty store)."""
    start = time.perf_counter()
    if args.store is None:
        data = synthetic_data(args.nodes, args.edges, args.dim, args.seed)
        store = Store(workdir / "bench.db")
        what = (
            f"powerlaw_graph({args.nodes:,} nodes, {data.graph.num_edges // 2:,} undirected edges)"
            f" with {args.dim} random features"
        )
    else:
        copy = workdir / "store" / args.store.name
        copy.parent.mkdir()
        for suffix in ("", "-wal"):  # the store is never written: train_musig sees only the copy
            if Path(f"{args.store}{suffix}").exists():
                shutil.copy2(f"{args.store}{suffix}", f"{copy}{suffix}")
        store = Store(copy)
        data = store_musig_data(store, args.features, "auto")
        what = (
            f"{args.store}: {data.graph.num_nodes:,} tracks, {data.graph.num_edges // 2:,} undirected edges,"
            f" {data.data.num_features} features ({', '.join(data.spec.groups)})"
        )
    degree = data.graph.degree.float()
    seconds = time.perf_counter() - start
    return (
        data,
        store,
        f"{what}, loaded in {seconds:.1f} s: degree median {degree.median():.0f}, max {degree.max():.0f}",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=15_900)
    parser.add_argument("--edges", type=int, default=5_200_000, help="undirected edges (the paper counts them once)")
    parser.add_argument("--dim", type=int, default=64, help="feature dimensions")
    parser.add_argument("--store", type=Path, help="measure on this store's graph and features (read from a copy)")
    parser.add_argument("--features", help="with --store: feature groups (default: those train-musig would use)")
    parser.add_argument("--batch-size", type=int, default=512, help="positive pairs per batch (as many negatives)")
    parser.add_argument("--seconds", type=float, default=10.0, help="time budget of each bare training run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each measure (the median is kept)")
    parser.add_argument(
        "--threads", type=int, help="torch threads (default: one per core; 1 is faster on a busy machine)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a small graph and short runs, for a smoke test")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object on stdout")
    args = parser.parse_args()
    if args.quick:
        args.nodes, args.edges, args.seconds, args.repeats = 2000, 100_000, 1.0, 1
    if args.json:
        report_to_stderr()
    if args.store is not None and not args.store.is_file():
        parser.error(f"{args.store}: no such store")
    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # train_musig keeps these threads (limit_threads yields to it)

    with tempfile.TemporaryDirectory() as workdir:
        try:
            data, store, what = load_data(args, Path(workdir))
            val_fraction = (
                synthetic_val_fraction(data)
                if args.store is None
                else keyword_defaults(MusigDataModule)["val_fraction"]
            )
            if data.graph.num_edges == 0:
                raise ConfigError(f"{args.store}: the graph has no edges to train on (run `audiograph build-graph`)")
            split = MusigDataModule(data, FANOUTS, args.batch_size, val_fraction, seed=args.seed)
        except AudiographError as error:
            parser.exit(1, f"{error}\n")
        say(f"{what}; {threads} threads, torch {torch.__version__}")

        def lightning(batches: int):
            return lightning_training(data, store, args.batch_size, batches, val_fraction, args.seed, Path(workdir))

        aggregates = ("index_add", "sparse")
        for aggregate in aggregates:  # warm-up
            bare_training(split, aggregate, args.batch_size, args.seconds, args.seed, max_batches=WARM_UP_BATCHES)
        lightning(WARM_UP_BATCHES)
        bare = {aggregate: [] for aggregate in aggregates}
        trained, lightning_walls = [], []
        for _ in range(args.repeats):
            for aggregate in aggregates:
                bare[aggregate].append(bare_training(split, aggregate, args.batch_size, args.seconds, args.seed))
            start = time.perf_counter()
            trained.append(lightning(bare["sparse"][-1][0]))
            lightning_walls.append(time.perf_counter() - start)

    module = MusigModule(data.data.num_features, HIDDEN, OUT, fanouts=FANOUTS).eval()
    adjacency = full_adjacency(data.graph.rowptr, data.graph.col, data.graph.num_nodes)
    x = data.data.x
    inference = median_seconds(lambda: module.model.encode(x, data.graph, convert_to_tensor=True), args.repeats)
    with torch.no_grad():
        direct = median_seconds(lambda: module.model(x, [adjacency] * len(FANOUTS)), args.repeats)
        spmm = median_seconds(lambda: torch.sparse.mm(adjacency, x, "mean"), args.repeats)

    rates = {aggregate: [seeds / seconds for _, seeds, seconds in runs] for aggregate, runs in bare.items()}
    seeds_per_second = float(np.median([r.seeds_per_second for r in trained]))
    bare_seeds_per_second = float(np.median(rates["sparse"]))
    batches = int(np.median([n for n, _, _ in bare["sparse"]]))
    seeds_per_batch = sum(seeds for _, seeds, _ in bare["sparse"]) / sum(n for n, _, _ in bare["sparse"])
    rows = [
        [
            "train_musig (Lightning, loader, 3 heads)",
            f"{seeds_per_second:,.0f} seeds/s",
            f"{seeds_per_second / bare_seeds_per_second:.2f} of the bare sparse loop; ~{batches} batches,"
            f" {np.median(lightning_walls):.1f} s wall with setup and validation",
        ]
    ]
    for aggregate, runs in bare.items():
        rows.append(
            [
                f"bare loop, {aggregate} mean",
                f"{np.median(rates[aggregate]):,.0f} seeds/s",
                f"{int(np.median([n for n, _, _ in runs]))} batches in {np.median([s for _, _, s in runs]):.1f} s",
            ]
        )
    rows += [
        [
            "MusigModel.encode (full graph)",
            f"{inference:.3f} s",
            f"all {data.graph.num_nodes:,} nodes, {len(FANOUTS)} layers",
        ],
        ["MUSIG forward, no Lightning", f"{direct:.3f} s", "same adjacency and weights"],
        [
            "bare torch.sparse.mm(adj, x, 'mean')",
            f"{spmm:.3f} s",
            f"one aggregation of the {data.data.num_features}-dim features",
        ],
    ]
    say(
        f"\nfanouts {list(FANOUTS)}, batch {args.batch_size} positive pairs + {args.batch_size} negatives,"
        f" {seeds_per_batch:,.0f} seed nodes per batch; layers {data.data.num_features}-{HIDDEN}-{OUT};"
        f" median of {args.repeats} runs after a warm-up, in alternation"
    )
    say(format_table(["measure", "result", "notes"], rows, right={1}))
    if args.json:
        figures = {
            "seeds_per_second": seeds_per_second,
            "bare_seeds_per_second": bare_seeds_per_second,
            "bare_index_add_seeds_per_second": float(np.median(rates["index_add"])),
            "ratio": seeds_per_second / bare_seeds_per_second,
            "encode_seconds": inference,
            "spmm_seconds": spmm,
            "nodes": data.graph.num_nodes,
            "edges": data.graph.num_edges // 2,
            "features": data.data.num_features,
            "threads": threads,
            "store": None if args.store is None else str(args.store),
        }
        print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
