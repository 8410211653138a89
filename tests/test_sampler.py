"""UniformNeighborSampler against the CSR it samples from, PyG's loaders and a full-graph GNN; powerlaw_graph."""

import itertools
import math

import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.data.lightning import LightningLinkData, LightningNodeData
from torch_geometric.loader import LinkLoader, NodeLoader
from torch_geometric.nn import SAGEConv
from torch_geometric.sampler import NegativeSampling, NodeSamplerInput
from torch_geometric.utils import trim_to_layer

from audiograph.graph.csr import CSRGraph
from audiograph.graph.random_graph import powerlaw_graph
from audiograph.graph.sampler import UniformNeighborSampler

NUM_ISOLATED = 5


@pytest.fixture(scope="module")
def graph() -> CSRGraph:
    """A 300-node power-law graph (degrees 2 to ~220) plus NUM_ISOLATED isolated nodes at the end."""
    g = powerlaw_graph(300, 3000, seed=1)
    rowptr = torch.cat([g.rowptr, g.rowptr[-1:].repeat(NUM_ISOLATED)])
    return CSRGraph(rowptr, g.col, g.weight)


@pytest.fixture(scope="module")
def edges(graph) -> set:
    return set(zip(graph.row.tolist(), graph.col.tolist()))


def sample(sampler, seeds):
    return sampler.sample_from_nodes(NodeSamplerInput(None, seeds))


def star(num_leaves: int) -> CSRGraph:
    """Node 0 joined to nodes 1..num_leaves."""
    leaves = torch.arange(1, num_leaves + 1)
    return CSRGraph.from_edges(torch.zeros_like(leaves), leaves, num_leaves + 1)


def check_output(graph, edges, out, seeds, fanouts):
    """Everything the PyG conventions promise about one SamplerOutput."""
    assert out.node[: seeds.numel()].tolist() == seeds.tolist()
    assert out.node.unique().numel() == out.node.numel()
    assert sum(out.num_sampled_nodes) == out.node.numel()
    assert sum(out.num_sampled_edges) == out.row.numel() == out.col.numel() == out.edge.numel()
    assert len(out.num_sampled_nodes) == len(fanouts) + 1 and len(out.num_sampled_edges) == len(fanouts)

    # Edge e carries a message from its sampled neighbour node[row] to the sampling node node[col],
    # and out.edge is that neighbour's entry in the target's CSR row.
    source, target = out.node[out.row], out.node[out.col]
    assert all((t, s) in edges for s, t in zip(source.tolist(), target.tolist()))
    assert torch.equal(graph.row[out.edge], target) and torch.equal(graph.col[out.edge], source)

    node_end = list(itertools.accumulate(out.num_sampled_nodes))
    edge_end = list(itertools.accumulate(out.num_sampled_edges))
    for hop, fanout in enumerate(fanouts):
        e = slice(edge_end[hop - 1] if hop else 0, edge_end[hop])
        frontier_begin, frontier_end = (node_end[hop - 1] if hop else 0), node_end[hop]
        row, col = out.row[e], out.col[e]
        assert bool(((col >= frontier_begin) & (col < frontier_end)).all())
        assert bool((row < node_end[hop + 1]).all())
        # The nodes new at this hop are exactly the sources not seen before.
        new = row[row >= frontier_end].unique()
        assert new.tolist() == list(range(frontier_end, node_end[hop + 1]))
        # Every frontier node has min(degree, fanout) distinct neighbours.
        degree = graph.degree[out.node[frontier_begin:frontier_end]]
        want = degree if fanout < 0 else degree.clamp(max=fanout)
        got = torch.bincount(col - frontier_begin, minlength=frontier_end - frontier_begin)
        assert torch.equal(got, want)
        assert torch.stack([row, col]).unique(dim=1).size(1) == row.numel()


@pytest.mark.parametrize("fanouts", [[5, 3], [1], [-1, 2], [25, 10, 4], [0, 3]])
def test_sampled_subgraph_follows_pyg_conventions(graph, edges, fanouts):
    seeds = torch.cat([torch.randperm(300, generator=torch.Generator().manual_seed(0))[:40], torch.tensor([301, 303])])
    sampler = UniformNeighborSampler(graph, fanouts, generator=torch.Generator().manual_seed(1))
    for _ in range(3):
        check_output(graph, edges, sample(sampler, seeds), seeds, fanouts)


def test_isolated_seeds_stay_alone(graph):
    seeds = torch.arange(300, 300 + NUM_ISOLATED)
    out = sample(UniformNeighborSampler(graph, [10, 10]), seeds)
    assert out.node.tolist() == seeds.tolist()
    assert out.num_sampled_nodes == [NUM_ISOLATED, 0, 0] and out.num_sampled_edges == [0, 0]
    assert out.row.numel() == out.col.numel() == out.edge.numel() == 0


def test_repeated_seeds_keep_their_slots(graph):
    seeds = torch.tensor([7, 3, 7, 300])
    out = sample(UniformNeighborSampler(graph, [4]), seeds)
    assert out.node[:4].tolist() == seeds.tolist() and out.num_sampled_nodes[0] == 4
    per_slot = torch.bincount(out.col, minlength=4)  # each copy samples its own neighbours
    assert per_slot.tolist() == graph.degree[seeds].clamp(max=4).tolist()


def chi_square(counts: torch.Tensor, expected: float) -> float:
    return float(((counts - expected) ** 2 / expected).sum())


def draw_subsets(num_leaves: int, fanout: int, draws: int) -> torch.Tensor:
    """`draws` independent neighbour samples of a star's hub, one per row (a repeated seed samples anew)."""
    sampler = UniformNeighborSampler(star(num_leaves), [fanout], generator=torch.Generator().manual_seed(0))
    out = sample(sampler, torch.zeros(draws, dtype=torch.long))
    assert out.num_sampled_edges == [draws * fanout]
    order = out.col.argsort(stable=True)
    return out.node[out.row[order]].view(draws, fanout).sort(1).values


def test_neighbours_are_drawn_uniformly():
    num_leaves, fanout, draws = 20, 5, 4000
    counts = torch.bincount(draw_subsets(num_leaves, fanout, draws).flatten(), minlength=num_leaves + 1).float()
    assert counts[0] == 0
    # 19 degrees of freedom: P(chi2 > 50) ~ 1e-4.
    assert chi_square(counts[1:], draws * fanout / num_leaves) < 50


def test_subsets_are_drawn_uniformly():
    # All C(6, 3) = 20 subsets equally likely, not just each neighbour k/d of the time.
    draws = 4000
    subsets = draw_subsets(6, 3, draws)
    assert bool((subsets[:, 1:] > subsets[:, :-1]).all())  # distinct within each draw
    _, counts = subsets.unique(dim=0, return_counts=True)
    assert counts.numel() == math.comb(6, 3)
    assert chi_square(counts.float(), draws / counts.numel()) < 50


def test_hub_rows_cost_fanout_not_degree(monkeypatch):
    # 2,000 draws of 10 from a 1M-neighbour hub. Any O(degree) per node scheme (a random key per
    # entry, a permutation of the row) draws a random number per entry: 2e9 of them. Count the draws.
    sampler = UniformNeighborSampler(star(1_000_000), [10])
    drawn = []
    for name in ("rand", "randint", "randperm", "multinomial", "rand_like", "randint_like"):
        real = getattr(torch, name)

        def counted(*args, real=real, **kwargs):
            out = real(*args, **kwargs)
            drawn.append(out.numel())
            return out

        monkeypatch.setattr(torch, name, counted)
    out = sample(sampler, torch.zeros(2000, dtype=torch.long))
    assert 0 < sum(drawn) <= 2000 * 10
    assert out.num_sampled_edges == [20_000] and bool((out.node[out.row] >= 1).all())


def sage(dim: int) -> torch.nn.ModuleList:
    torch.manual_seed(0)
    return torch.nn.ModuleList([SAGEConv(dim, 16, aggr="mean"), SAGEConv(16, 8, aggr="mean")])


def test_full_fanout_sage_matches_full_graph(graph):
    x = torch.randn(graph.num_nodes, 12)
    convs = sage(12)
    full = convs[1](convs[0](x, graph.to_edge_index()).relu(), graph.to_edge_index())

    max_degree = int(graph.degree.max())
    seeds = torch.tensor([0, 5, 17, 299, 301, 42])
    out = sample(UniformNeighborSampler(graph, [max_degree, max_degree]), seeds)
    h, edge_index = x[out.node], torch.stack([out.row, out.col])
    sub = convs[1](convs[0](h, edge_index).relu(), edge_index)
    assert torch.allclose(sub[: seeds.numel()], full[seeds], atol=1e-5)

    # The same through trim_to_layer, which relies on num_sampled_nodes/edges.
    for layer, conv in enumerate(convs):
        h, edge_index, _ = trim_to_layer(layer, out.num_sampled_nodes, out.num_sampled_edges, h, edge_index)
        h = conv(h, edge_index)
        h = h.relu() if layer == 0 else h
    assert h.size(0) == int(out.row[: out.num_sampled_edges[0]].max()) + 1  # seeds and hop-1 nodes are left
    assert torch.allclose(h[: seeds.numel()], full[seeds], atol=1e-5)


def test_capped_fanout_sage_differs_from_full_graph(graph):
    # Guards the test above: with a small fanout the outputs of hub seeds do change.
    x = torch.randn(graph.num_nodes, 12)
    convs = sage(12)
    full = convs[1](convs[0](x, graph.to_edge_index()).relu(), graph.to_edge_index())
    seeds = graph.degree[:300].argsort(descending=True)[:4]
    out = sample(UniformNeighborSampler(graph, [3, 3]), seeds)
    edge_index = torch.stack([out.row, out.col])
    sub = convs[1](convs[0](x[out.node], edge_index).relu(), edge_index)
    assert not torch.allclose(sub[:4], full[seeds], atol=1e-3)


def to_data(graph) -> Data:
    return Data(
        x=torch.randn(graph.num_nodes, 4),
        edge_index=graph.to_edge_index(),
        edge_weight=graph.weight,
        num_nodes=graph.num_nodes,
    )


def check_batch(data, edges, batch):
    global_edge_index = batch.n_id[batch.edge_index]
    assert all((t, s) in edges for s, t in global_edge_index.t().tolist())
    assert torch.equal(batch.x, data.x[batch.n_id])
    assert torch.equal(batch.edge_weight, data.edge_weight[batch.e_id])
    return global_edge_index


def test_node_loader(graph, edges):
    data = to_data(graph)
    input_nodes = torch.arange(0, graph.num_nodes, 2)
    loader = NodeLoader(
        data, node_sampler=UniformNeighborSampler(graph, [5, 3]), input_nodes=input_nodes, batch_size=32, shuffle=True
    )
    seen = []
    for batch in loader:
        check_batch(data, edges, batch)
        assert torch.equal(batch.n_id[: batch.batch_size], input_nodes[batch.input_id])
        # Without a permutation e_id is the CSR entry: edge_index column (target, source) of the message.
        assert torch.equal(data.edge_index[:, batch.e_id], batch.n_id[batch.edge_index].flip(0))
        seen.append(batch.input_id)
    assert torch.cat(seen).sort().values.tolist() == list(range(input_nodes.numel()))


@pytest.mark.parametrize("symmetric", [True, False])
def test_sampler_built_from_data_maps_edge_ids_to_its_columns(graph, edges, symmetric):
    data = to_data(graph)
    if not symmetric:  # each undirected edge once, as (lo, hi)
        keep = data.edge_index[0] < data.edge_index[1]
        data.edge_index, data.edge_weight = data.edge_index[:, keep], data.edge_weight[keep]
    loader = NodeLoader(data, node_sampler=UniformNeighborSampler(data, [5, 3]), batch_size=64)
    for batch in loader:
        global_edge_index = check_batch(data, edges, batch)
        columns = data.edge_index[:, batch.e_id]
        if symmetric:
            assert torch.equal(columns, global_edge_index)
        else:
            assert torch.equal(columns.sort(0).values, global_edge_index.sort(0).values)


def positive_edges(graph, num: int) -> torch.Tensor:
    upper = graph.to_edge_index()[:, graph.row < graph.col]
    return upper[:, torch.randperm(upper.size(1), generator=torch.Generator().manual_seed(0))[:num]]


def test_link_loader_binary(graph, edges):
    data = to_data(graph)
    edge_label_index = positive_edges(graph, 200)
    loader = LinkLoader(
        data,
        link_sampler=UniformNeighborSampler(graph, [5, 3]),
        edge_label_index=edge_label_index,
        neg_sampling=NegativeSampling("binary"),
        batch_size=50,
        shuffle=True,
    )
    for batch in loader:
        check_batch(data, edges, batch)
        num_pos = batch.input_id.numel()
        assert batch.edge_label.tolist() == [1.0] * num_pos + [0.0] * num_pos
        label_edges = batch.n_id[batch.edge_label_index]
        assert torch.equal(label_edges[:, :num_pos], edge_label_index[:, batch.input_id])
        assert all((u, v) in edges for u, v in label_edges[:, :num_pos].t().tolist())
        # Both endpoints of every labelled pair are seeds, i.e. come first in n_id.
        assert int(batch.edge_label_index.max()) < batch.num_sampled_nodes[0]


def test_link_loader_triplet(graph, edges):
    data = to_data(graph)
    edge_label_index = positive_edges(graph, 100)
    loader = LinkLoader(
        data,
        link_sampler=UniformNeighborSampler(graph, [5, 3]),
        edge_label_index=edge_label_index,
        neg_sampling=NegativeSampling("triplet", amount=2),
        batch_size=25,
    )
    for batch in loader:
        check_batch(data, edges, batch)
        src, dst = batch.n_id[batch.src_index], batch.n_id[batch.dst_pos_index]
        assert all((u, v) in edges for u, v in zip(src.tolist(), dst.tolist()))
        assert batch.dst_neg_index.shape == (batch.src_index.numel(), 2)


def test_seeded_generator_and_global_rng_are_reproducible(graph):
    seeds = torch.arange(0, 300, 7)

    def run(sampler):
        out = sample(sampler, seeds)
        return torch.cat([out.node, out.row, out.col, out.edge])

    a = run(UniformNeighborSampler(graph, [5, 3], generator=torch.Generator().manual_seed(3)))
    b = run(UniformNeighborSampler(graph, [5, 3], generator=torch.Generator().manual_seed(3)))
    c = run(UniformNeighborSampler(graph, [5, 3], generator=torch.Generator().manual_seed(4)))
    assert torch.equal(a, b) and not torch.equal(a, c)

    sampler = UniformNeighborSampler(graph, [5, 3])
    torch.manual_seed(0)
    a = run(sampler)
    torch.manual_seed(0)
    assert torch.equal(a, run(sampler)) and not torch.equal(a, run(sampler))


def test_loader_workers_are_reproducible(graph):
    # DataLoader seeds each worker's global RNG from the main process's: torch.manual_seed fixes all batches.
    loader = NodeLoader(
        to_data(graph), node_sampler=UniformNeighborSampler(graph, [5, 3]), batch_size=100, num_workers=2
    )

    def epoch(seed):
        torch.manual_seed(seed)
        return torch.cat([torch.cat([batch.n_id, batch.e_id]) for batch in loader])

    assert torch.equal(epoch(0), epoch(0)) and not torch.equal(epoch(0), epoch(1))


def test_lightning_data_modules_take_the_sampler(graph, edges):
    data = to_data(graph)
    sampler = UniformNeighborSampler(graph, [5, 3])
    nodes = LightningNodeData(
        data,
        input_train_nodes=torch.arange(100),
        input_val_nodes=torch.arange(100, 150),
        node_sampler=sampler,
        eval_loader_kwargs={"num_neighbors": [-1, -1]},
        batch_size=25,
        pin_memory=False,
    )
    train = next(iter(nodes.train_dataloader()))
    check_batch(data, edges, train)
    assert train.num_sampled_edges[0] <= 5 * 25
    val = next(iter(nodes.val_dataloader()))  # evaluation on the full 2-hop neighbourhood
    assert val.num_sampled_edges[0] == int(graph.degree[100:125].sum())

    links = LightningLinkData(
        data,
        input_train_edges=positive_edges(graph, 100),
        link_sampler=sampler,
        neg_sampling=NegativeSampling("binary"),
        batch_size=25,
        pin_memory=False,
    )
    batch = next(iter(links.train_dataloader()))
    check_batch(data, edges, batch)
    assert batch.edge_label.sum() == 25 and batch.edge_label.numel() == 50


def test_powerlaw_graph():
    num_nodes, num_edges = 2000, 40_000
    g = powerlaw_graph(num_nodes, num_edges, seed=0)
    m = g.to_scipy()
    assert (m != m.T).nnz == 0
    assert m.diagonal().sum() == 0
    assert math.isclose(g.num_edges / 2, num_edges, rel_tol=0.02)
    assert bool((g.weight >= 1).all()) and torch.equal(g.weight, g.weight.round())
    degree = g.degree.float()
    assert degree.max() > 20 * degree.median()
    # Heavy tail: the top 1% of nodes hold a large share of the edge endpoints.
    assert degree.sort(descending=True).values[: num_nodes // 100].sum() > 0.1 * degree.sum()
    assert torch.equal(powerlaw_graph(num_nodes, num_edges, seed=0).col, g.col)
    assert not torch.equal(powerlaw_graph(num_nodes, num_edges, seed=1).col, g.col)
