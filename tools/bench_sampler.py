"""Throughput of UniformNeighborSampler on a MUSIG-sized power-law graph, next to a bare reference.

The reference makes the same draws (fanout per frontier node, frontier deduplicated per hop)
WITH replacement by pure index arithmetic, `col[rowptr[v] + floor(rand * deg[v])]`: a lower
bound on the work of any sampler over these fanouts.

    python tools/bench_sampler.py [--nodes 15900 --edges 5200000 --batch-size 1024 --batches 50] [--json] [--quick]

With --json, stdout is one JSON object: per thread count, the sampler's and the reference's seeds/s, and
the sampler's time over the reference's (`sampler_over_reference`).
"""

import argparse
import json
import os
import statistics
import time

import torch
from benchlib import report_to_stderr, say
from torch_geometric.sampler import NodeSamplerInput

from audiograph.graph.random_graph import powerlaw_graph
from audiograph.graph.sampler import UniformNeighborSampler

FANOUTS = [25, 10]


def reference_draws(rowptr, col, seeds, fanouts):
    frontier = seeds
    for fanout in fanouts:
        frontier = frontier[rowptr[frontier + 1] > rowptr[frontier]]
        node = frontier.repeat_interleave(fanout)
        degree = rowptr[node + 1] - rowptr[node]
        neighbor = col[rowptr[node] + (torch.rand(node.numel()) * degree).long()]
        hit = torch.zeros(rowptr.numel() - 1, dtype=torch.bool).index_fill_(0, neighbor, True)
        frontier = hit.nonzero().squeeze(1)


def seeds_per_second(runs, batches):
    """Median-batch throughput of each run, timed in alternation so that load spikes hit all alike."""
    seconds = [[] for _ in runs]
    for seeds in batches:
        for run, times in zip(runs, seconds):
            start = time.perf_counter()
            run(seeds)
            times.append(time.perf_counter() - start)
    return [batches[0].numel() / statistics.median(times[1:]) for times in seconds]  # [0]: warm-up


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=15_900)
    parser.add_argument("--edges", type=int, default=5_200_000)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object on stdout")
    parser.add_argument("--quick", action="store_true", help="a small graph: checks that it runs")
    args = parser.parse_args()
    if args.quick:
        args.nodes, args.edges, args.batch_size, args.batches = 2_000, 100_000, 256, 6
    if args.json:
        report_to_stderr()
    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(cores)

    start = time.perf_counter()
    graph = powerlaw_graph(args.nodes, args.edges)
    degree = graph.degree.float()
    say(
        f"powerlaw_graph({args.nodes:,}, {args.edges:,}) built in {time.perf_counter() - start:.2f} s: "
        f"degree median {degree.median():.0f}, max {degree.max():.0f} ({cores} threads)"
    )

    batches = [torch.randperm(graph.num_nodes)[: args.batch_size] for _ in range(args.batches)]
    sampler = UniformNeighborSampler(graph, FANOUTS)
    out = sampler.sample_from_nodes(NodeSamplerInput(None, batches[0]))
    say(
        f"fanouts {FANOUTS}, batch {args.batch_size}: {out.node.numel():,} nodes, "
        f"{out.row.numel():,} edges per batch (nodes per hop {out.num_sampled_nodes})"
    )

    figures = {"nodes": args.nodes, "edges": args.edges, "batch_size": args.batch_size, "fanouts": FANOUTS}
    # DataLoader workers run single-threaded: that is the number per worker.
    for threads in dict.fromkeys([cores, 1]):
        torch.set_num_threads(threads)
        sampled, reference = seeds_per_second(
            [
                lambda seeds: sampler.sample_from_nodes(NodeSamplerInput(None, seeds)),
                lambda seeds: reference_draws(graph.rowptr, graph.col, seeds, FANOUTS),
            ],
            batches,
        )
        say(
            f"{threads} thread(s): UniformNeighborSampler {sampled:>9,.0f} seeds/s, "
            f"reference {reference:>9,.0f} seeds/s, sampler time / reference time {reference / sampled:.2f}"
        )
        figures[f"{threads}_threads"] = {
            "seeds_per_second": sampled,
            "reference_seeds_per_second": reference,
            "sampler_over_reference": reference / sampled,
        }
    if args.json:
        print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
