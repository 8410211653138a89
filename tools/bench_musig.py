"""MUSIG training throughput and full-graph inference time on a paper-sized power-law graph, each
next to a bare reference measured in the same run.

Training: `train_musig` (MusigModule + LightningLinkData + UniformNeighborSampler, the code the
`train-musig` command runs) against a bare loop over the same batch shapes: draw pairs, sample,
mean-aggregate, linear layers, link BCE, backward, Adam step; no Lightning, no loader, one head.
The bare loop runs twice, aggregating with `index_add_` and with the torch.sparse CSR matmul that
MUSIG uses; train_musig does as many batches as the latter. Seeds/s counts each batch's seed
nodes (the distinct endpoints of its positive and negative pairs).

Inference: `MusigModel.encode` (one exact pass over the torch.sparse CSR adjacency) against the
same model called directly, and against one bare `torch.sparse.mm(adjacency, features)`.

    python tools/bench_musig.py [--nodes 15900 --edges 5200000 --seconds 30] [--quick]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch_geometric.data import Data
from torch_geometric.sampler import NodeSamplerInput

from audiograph.graph.random_graph import powerlaw_graph
from audiograph.graph.sampler import UniformNeighborSampler
from audiograph.musig.features import FeatureSpec
from audiograph.musig.model import full_adjacency
from audiograph.pipelines.train_musig import train_musig
from audiograph.store import Store
from audiograph.tables import format_table
from audiograph.training.musig import MusigModule
from audiograph.training.musig_data import MusigData, split_edges

FANOUTS = (25, 10)
HIDDEN, OUT = 256, 128
VAL_PAIRS = 2048  # held-out edges: enough for a val_auc, few enough that validation stays short


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
    data: MusigData, aggregate: str, batch_size: int, seconds: float, seed: int
) -> tuple[int, int, float]:
    """(batches, seeds, wall seconds) of the bare loop run for about `seconds`, on train_musig's training split."""
    train_graph, train_edges, _ = split_edges(data.graph, val_fraction(data), torch.Generator().manual_seed(seed))
    sampler = UniformNeighborSampler(train_graph, list(FANOUTS))
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
    while time.perf_counter() - start < seconds:
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


def val_fraction(data: MusigData) -> float:
    return VAL_PAIRS / (data.graph.num_edges / 2)


def lightning_training(data: MusigData, batch_size: int, batches: int, seed: int, workdir: Path):
    """The `train_musig` report of one epoch of `batches` batches (validation excluded from seeds/s)."""
    store = Store(workdir / "bench.db")
    return train_musig(
        store,
        musig_data=data,
        register=False,
        max_epochs=1,
        batches_per_epoch=batches,
        batch_size=batch_size,
        val_fraction=val_fraction(data),
        seed=seed,
        accelerator="cpu",
        quiet=True,
        fanouts=FANOUTS,
        hidden_channels=HIDDEN,
        out_channels=OUT,
    )


def best_of(fn, repeats: int) -> float:
    """The fastest of `repeats` timed calls, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=15_900)
    parser.add_argument("--edges", type=int, default=5_200_000, help="undirected edges (the paper counts them once)")
    parser.add_argument("--dim", type=int, default=64, help="feature dimensions")
    parser.add_argument("--batch-size", type=int, default=512, help="positive pairs per batch (as many negatives)")
    parser.add_argument("--seconds", type=float, default=30.0, help="time budget of the bare training loop")
    parser.add_argument("--repeats", type=int, default=3, help="timed inference passes (the best is kept)")
    parser.add_argument(
        "--threads", type=int, help="torch threads (default: one per core; 1 is faster on a busy machine)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a small graph and short runs, for a smoke test")
    args = parser.parse_args()
    if args.quick:
        args.nodes, args.edges, args.seconds, args.repeats = 2000, 100_000, 3.0, 1
    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)

    start = time.perf_counter()
    data = synthetic_data(args.nodes, args.edges, args.dim, args.seed)
    degree = data.graph.degree.float()
    print(
        f"powerlaw_graph({args.nodes:,} nodes, {data.graph.num_edges // 2:,} undirected edges) with {args.dim} random"
        f" features, built in {time.perf_counter() - start:.1f} s: degree median {degree.median():.0f},"
        f" max {degree.max():.0f}; {threads} threads, torch {torch.__version__}"
    )

    bare = {
        aggregate: bare_training(data, aggregate, args.batch_size, args.seconds, args.seed)
        for aggregate in ("index_add", "sparse")
    }
    batches = bare["sparse"][0]
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        report = lightning_training(data, args.batch_size, batches, args.seed, Path(workdir))
        lightning_wall = time.perf_counter() - start

    module = MusigModule(args.dim, HIDDEN, OUT, fanouts=FANOUTS).eval()
    adjacency = full_adjacency(data.graph.rowptr, data.graph.col, data.graph.num_nodes)
    x = data.data.x
    module.model.encode(x, data.graph)  # warm-up
    inference = best_of(lambda: module.model.encode(x, data.graph), args.repeats)
    with torch.no_grad():
        direct = best_of(lambda: module.model(x, [adjacency] * len(FANOUTS)), args.repeats)
        spmm = best_of(lambda: torch.sparse.mm(adjacency, x, "mean"), args.repeats)

    seeds_per_batch = bare["sparse"][1] / batches
    rows = [
        [
            "train_musig (Lightning, loader, 3 heads)",
            f"{report.seeds_per_second:,.0f} seeds/s",
            f"{batches} batches; {lightning_wall:.1f} s wall with setup and validation",
        ]
    ]
    for aggregate, (n, seeds, seconds) in bare.items():
        rows.append(
            [f"bare loop, {aggregate} mean", f"{seeds / seconds:,.0f} seeds/s", f"{n} batches in {seconds:.1f} s"]
        )
    rows += [
        ["MusigModel.encode (full graph)", f"{inference:.3f} s", f"all {args.nodes:,} nodes, {len(FANOUTS)} layers"],
        ["MUSIG forward, no Lightning", f"{direct:.3f} s", "same adjacency and weights"],
        ["bare torch.sparse.mm(adj, x, 'mean')", f"{spmm:.3f} s", f"one aggregation of the {args.dim}-dim features"],
    ]
    print(
        f"\nfanouts {list(FANOUTS)}, batch {args.batch_size} positive pairs + {args.batch_size} negatives,"
        f" {seeds_per_batch:,.0f} seed nodes per batch; layers {args.dim}-{HIDDEN}-{OUT}"
    )
    print(format_table(["measure", "result", "notes"], rows, right={1}))


if __name__ == "__main__":
    main()
