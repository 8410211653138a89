"""Triplet sampling invariants, checked against networkx distances."""

import networkx as nx
import numpy as np
import pytest
import torch

from audiograph.errors import ConfigError
from audiograph.graph.csr import CSRGraph
from audiograph.graph.triplets import sample_positive_pairs, sample_triplets


def random_weighted_graph(seed: int, num_nodes: int = 70, num_edges: int = 90):
    """(CSRGraph, networkx graph, eligible mask): a sparse random graph with isolated nodes."""
    rng = np.random.default_rng(seed)
    pairs = {tuple(sorted(p)) for p in rng.integers(0, num_nodes - 6, (num_edges, 2)) if p[0] != p[1]}
    weights = [float(rng.integers(1, 6)) for _ in pairs]
    graph = CSRGraph.from_edges([a for a, _ in pairs], [b for _, b in pairs], num_nodes, weights)
    nx_graph = nx.Graph()
    nx_graph.add_nodes_from(range(num_nodes))
    nx_graph.add_weighted_edges_from((int(a), int(b), w) for (a, b), w in zip(pairs, weights))
    eligible = torch.from_numpy(rng.random(num_nodes) < 0.8)
    return graph, nx_graph, eligible


def all_distances(nx_graph: nx.Graph, d_max: int) -> np.ndarray:
    """[N, N] hop distances, -1 beyond d_max."""
    n = nx_graph.number_of_nodes()
    distances = np.full((n, n), -1)
    for source in range(n):
        for node, length in nx.single_source_shortest_path_length(nx_graph, source, cutoff=d_max).items():
            distances[source, node] = length
    return distances


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("d_pos, d_neg, d_max", [(1, 3, 4), (2, 4, 4), (1, 2, 3), (1, 5, 4), (2, 3, 2)])
def test_triplets_respect_distances_and_eligibility(seed, d_pos, d_neg, d_max):
    graph, nx_graph, eligible = random_weighted_graph(seed)
    per_anchor = 5
    triplets = sample_triplets(
        graph, eligible, per_anchor=per_anchor, d_pos=d_pos, d_neg=d_neg, d_max=d_max, generator=generator(seed)
    )
    distance = all_distances(nx_graph, d_max)
    ok = eligible.numpy()
    anchor, positive, negative = triplets.numpy().T

    assert triplets.dtype == torch.int64
    assert ok[anchor].all() and ok[positive].all() and ok[negative].all()
    assert ((distance[anchor, positive] >= 1) & (distance[anchor, positive] <= d_pos)).all()
    negative_distance = distance[anchor, negative]
    assert ((negative_distance == -1) | (negative_distance > d_pos)).all()

    near = (distance >= 1) & (distance <= d_pos) & ok[None, :]
    far = ((distance == -1) | (distance > d_pos)) & ok[None, :]
    expected_anchors = np.flatnonzero(ok & near.any(1) & far.any(1))
    np.testing.assert_array_equal(anchor, np.repeat(expected_anchors, per_anchor))


def test_hard_negatives_follow_hard_share():
    # A long cycle: every anchor has intermediate (hop 2) and easy (hop >= 3) candidates.
    num_nodes = 200
    graph = CSRGraph.from_edges(np.arange(num_nodes), (np.arange(num_nodes) + 1) % num_nodes, num_nodes)
    eligible = torch.ones(num_nodes, dtype=torch.bool)
    triplets = sample_triplets(graph, eligible, per_anchor=30, hard_share=0.3, generator=generator())
    hops = np.abs(triplets[:, 0].numpy() - triplets[:, 2].numpy())
    hops = np.minimum(hops, num_nodes - hops)
    assert (hops >= 2).all()
    assert abs((hops == 2).mean() - 0.3) < 0.03  # 6,000 draws: the standard error is 0.006


def test_hard_and_easy_fall_back_to_each_other():
    # Path 0-1-2-3: from 0, node 2 is hard (hop 2) and 3 easy (hop 3); from 1, node 3 is hard, none easy.
    graph = CSRGraph.from_edges([0, 1, 2], [1, 2, 3], 4)
    eligible = torch.ones(4, dtype=torch.bool)

    def negatives(anchor, **settings):
        triplets = sample_triplets(graph, eligible, anchors=[anchor], per_anchor=50, generator=generator(), **settings)
        return set(triplets[:, 2].tolist())

    assert negatives(0, d_neg=2, d_max=3) == {2, 3}  # no intermediate hops when d_neg = d_pos + 1: all easy
    assert negatives(0, d_neg=2, d_max=3, hard_share=1.0) == {2, 3}  # no hard candidate: easy ones instead
    assert negatives(0, hard_share=0.0) == {3}
    assert negatives(1, hard_share=0.0) == {3}  # no easy candidate: hard ones instead


def test_ineligible_nodes_carry_paths_but_are_never_drawn():
    # Path 0-1-2-3-4-5-6 with node 1 ineligible: node 0 is 3 hops from 3 only through node 1.
    graph = CSRGraph.from_edges(np.arange(6), np.arange(1, 7), 7)
    eligible = torch.ones(7, dtype=torch.bool)
    eligible[1] = False
    triplets = sample_triplets(
        graph, eligible, per_anchor=200, d_pos=1, d_neg=4, d_max=4, hard_share=1.0, generator=generator()
    )
    assert 1 not in triplets.unique().tolist()
    assert 0 not in triplets[:, 0].tolist()  # its only neighbour is ineligible: no positive
    from_3 = triplets[triplets[:, 0] == 3]
    assert set(from_3[:, 1].tolist()) == {2, 4}
    assert set(from_3[:, 2].tolist()) == {0, 5, 6}  # all hard (hops 2-3); 0 is reached through node 1


def test_anchor_subset_is_intersected_with_eligible():
    graph, _, eligible = random_weighted_graph(1)
    everyone = sample_triplets(graph, eligible, per_anchor=1, generator=generator())
    chosen = everyone[:, 0][:6].tolist()
    ineligible = (~eligible).nonzero().squeeze(1)[:2].tolist()
    subset = sample_triplets(graph, eligible, per_anchor=1, anchors=chosen + ineligible, generator=generator())
    assert sorted(subset[:, 0].tolist()) == sorted(chosen)
    mask = torch.zeros(len(eligible), dtype=torch.bool)
    mask[chosen + ineligible] = True
    by_mask = sample_triplets(graph, eligible, per_anchor=1, anchors=mask, generator=generator())
    torch.testing.assert_close(by_mask, subset)


@pytest.mark.parametrize("power", [1.0, 2.0, 0.0])
def test_positives_follow_edge_weights_to_a_power(power):
    # Star: anchor 0 with neighbours 1, 2, 3 (weights 1, 2, 5); a tail 3-4-5-6 gives negatives.
    graph = CSRGraph.from_edges([0, 0, 0, 3, 4, 5], [1, 2, 3, 4, 5, 6], 7, [1.0, 2.0, 5.0, 1.0, 1.0, 1.0])
    weights_before = graph.weight.clone()
    eligible = torch.ones(7, dtype=torch.bool)
    draws = 20_000
    triplets = sample_triplets(
        graph, eligible, anchors=[0], per_anchor=draws, weight_power=power, generator=generator()
    )
    share = torch.bincount(triplets[:, 1], minlength=7)[1:4].double() / draws
    expected = torch.tensor([1.0, 2.0, 5.0], dtype=torch.float64) ** power
    torch.testing.assert_close(share, expected / expected.sum(), atol=0.015, rtol=0)
    torch.testing.assert_close(graph.weight, weights_before)  # sampling never alters the graph


def test_farther_positives_get_half_the_mass_per_hop():
    # Anchor 0: neighbours 1, 2 and four nodes two hops away; with d_pos=2 the hop-2 shell gets 1/3.
    graph = CSRGraph.from_edges([0, 0, 1, 1, 2, 2, 3, 4], [1, 2, 3, 4, 5, 6, 7, 8], 10)
    eligible = torch.ones(10, dtype=torch.bool)
    draws = 20_000
    triplets = sample_triplets(graph, eligible, anchors=[0], per_anchor=draws, d_pos=2, d_neg=3, generator=generator())
    positives = triplets[:, 1]
    assert abs((positives >= 3).double().mean().item() - 1 / 3) < 0.015
    assert set(positives.tolist()) == {1, 2, 3, 4, 5, 6}


def test_same_generator_seed_gives_same_triplets():
    graph, _, eligible = random_weighted_graph(2, num_nodes=300, num_edges=500)  # several BFS batches
    first = sample_triplets(graph, eligible, generator=generator(5))
    again = sample_triplets(graph, eligible, generator=generator(5))
    other = sample_triplets(graph, eligible, generator=generator(6))
    torch.testing.assert_close(first, again)
    assert not torch.equal(first, other)


def test_no_eligible_anchor_gives_an_empty_tensor():
    graph, _, eligible = random_weighted_graph(0)
    triplets = sample_triplets(graph, torch.zeros_like(eligible), generator=generator())
    assert triplets.shape == (0, 3) and triplets.dtype == torch.int64


@pytest.mark.parametrize(
    "settings",
    [
        {"d_pos": 0},
        {"d_pos": 2, "d_neg": 2},
        {"d_neg": 6, "d_max": 4},
        {"hard_share": -0.1},
        {"hard_share": 1.5},
        {"per_anchor": 0},
        {"weight_power": -1.0},
    ],
)
def test_invalid_settings_raise_config_error(settings):
    graph, _, eligible = random_weighted_graph(0)
    with pytest.raises(ConfigError):
        sample_triplets(graph, eligible, **settings)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("d_pos", [1, 2])
def test_positive_pairs_respect_distances_and_eligibility(seed, d_pos):
    graph, nx_graph, eligible = random_weighted_graph(seed)
    pairs = sample_positive_pairs(graph, eligible, per_anchor=3, d_pos=d_pos, generator=generator(seed))
    distance = all_distances(nx_graph, d_pos)
    ok = eligible.numpy()
    anchor, positive = pairs.numpy().T
    assert pairs.dtype == torch.int64 and ok[anchor].all() and ok[positive].all()
    assert ((distance[anchor, positive] >= 1) & (distance[anchor, positive] <= d_pos)).all()
    # Every eligible node with an eligible positive is an anchor, and no other node is.
    near = (distance >= 1) & ok[None, :]
    np.testing.assert_array_equal(anchor, np.repeat(np.flatnonzero(ok & near.any(1)), 3))


def test_positive_pairs_follow_edge_weights_like_triplets():
    graph = CSRGraph.from_edges([0, 0, 0, 3], [1, 2, 3, 4], 5, [1.0, 2.0, 5.0, 1.0])
    eligible = torch.ones(5, dtype=torch.bool)
    draws = 20_000
    pairs = sample_positive_pairs(
        graph, eligible, anchors=[0], per_anchor=draws, weight_power=2.0, generator=generator()
    )
    share = torch.bincount(pairs[:, 1], minlength=5)[1:4].double() / draws
    expected = torch.tensor([1.0, 4.0, 25.0], dtype=torch.float64)
    torch.testing.assert_close(share, expected / expected.sum(), atol=0.015, rtol=0)
    assert sample_positive_pairs(graph, torch.zeros(5, dtype=torch.bool)).shape == (0, 2)
    with pytest.raises(ConfigError):
        sample_positive_pairs(graph, eligible, d_pos=0)
