"""The §4.2 baselines on a tiny split: three track communities, playlists drawn within one each."""

import numpy as np
import pytest
import torch

from audiograph.eval.baselines import (
    CF,
    FeatureOnly,
    Node2Vec,
    Track2Vec,
    l2_normalize,
    node2vec_walks,
    warp_loss,
    warp_rank_weight,
)
from audiograph.eval.protocol import EvalSplit
from audiograph.graph.csr import CSRGraph

COMMUNITIES, PER_COMMUNITY = 3, 12
N = COMMUNITIES * PER_COMMUNITY + 1  # the last track is in no playlist and isolated
LONELY = N - 1
NO_AUDIO = 5  # a track lacking the "audio" group (zero row)
COMMUNITY = np.append(np.repeat(np.arange(COMMUNITIES), PER_COMMUNITY), 0)


def tiny_split(seed: int = 0) -> EvalSplit:
    rng = np.random.default_rng(0)
    playlists = []
    for k in range(30):
        members = np.flatnonzero(COMMUNITY[:LONELY] == k % COMMUNITIES)
        playlists.append(rng.choice(members, size=6, replace=False))
    first, second = np.triu_indices(6, 1)
    src = np.concatenate([p[first] for p in playlists])
    dst = np.concatenate([p[second] for p in playlists])
    # Co-occurrence counts as edge weights.
    edges, counts = np.unique(np.stack([np.minimum(src, dst), np.maximum(src, dst)], 1), axis=0, return_counts=True)
    graph = CSRGraph.from_edges(edges[:, 0], edges[:, 1], N, weight=counts)
    genre = np.eye(COMMUNITIES, dtype=np.float32)[COMMUNITY]
    audio = rng.random((N, 4)).astype(np.float32)
    audio[NO_AUDIO] = 0
    return EvalSplit(
        node_ids=[f"t{i}" for i in range(N)],
        train_playlists=playlists,
        graph=graph,
        features={"genre": genre, "audio": audio},
        genres={},
        cases=[],
        seed=seed,
    )


LEARNED = {
    "CF": lambda: CF(dim=16, epochs=30),
    "Track2Vec": lambda: Track2Vec(dim=16),
    "Node2Vec": lambda: Node2Vec(dim=16, walks_per_node=20, epochs=5),
    "Node2Vec-biased": lambda: Node2Vec(dim=16, walks_per_node=20, epochs=5, p=0.5, q=2.0),
}


@pytest.fixture(scope="module")
def split():
    return tiny_split()


@pytest.fixture(scope="module")
def learned(split):
    """Each learned method's vectors from two runs on the same split."""
    return {key: (make().embed(split), make().embed(split)) for key, make in LEARNED.items()}


@pytest.mark.parametrize("key", LEARNED)
def test_learned_vectors_are_deterministic_with_zero_rows_for_unknown_tracks(learned, key):
    first, second = learned[key]
    assert first.shape == (N, 16) and first.dtype == np.float32
    assert np.isfinite(first).all()
    np.testing.assert_array_equal(first, second)
    assert not first[LONELY].any()
    assert np.linalg.norm(first[:LONELY], axis=1).min() > 0


@pytest.mark.parametrize("key", LEARNED)
def test_learned_vectors_separate_the_communities(learned, key):
    unit = l2_normalize(learned[key][0][:LONELY])
    cosine = unit @ unit.T
    same = COMMUNITY[:LONELY, None] == COMMUNITY[None, :LONELY]
    within = cosine[same & ~np.eye(LONELY, dtype=bool)].mean()
    across = cosine[~same].mean()
    assert within - across > 0.3, (within, across)


def test_seed_changes_the_vectors():
    a = Track2Vec(dim=16).embed(tiny_split(seed=0))
    b = Track2Vec(dim=16).embed(tiny_split(seed=1))
    assert not np.allclose(a, b)


def test_track2vec_feature_concatenates_normalised_blocks(split):
    plain = Track2Vec(dim=16).embed(split)
    method = Track2Vec(dim=16, features=("genre", "audio"))
    assert method.name == "Track2Vec" and method.features == ("genre", "audio")
    vectors = method.embed(split)
    assert vectors.shape == (N, 16 + COMMUNITIES + 4) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(vectors[:, :16], l2_normalize(plain), rtol=1e-6)
    genre, audio = vectors[:, 16 : 16 + COMMUNITIES], vectors[:, 16 + COMMUNITIES :]
    np.testing.assert_allclose(genre, split.features["genre"])  # one-hot rows are unit already
    expected = split.features["audio"] / np.linalg.norm(split.features["audio"], axis=1, keepdims=True).clip(1e-12)
    np.testing.assert_allclose(audio, expected, rtol=1e-6)
    assert not audio[NO_AUDIO].any()
    assert not vectors[LONELY, :16].any() and vectors[LONELY, 16:].any()  # no playlist, but features


def test_feature_only_returns_the_raw_block(split):
    method = FeatureOnly("audio")
    assert method.name == "Features" and method.features == ("audio",)
    vectors = method.embed(split)
    assert vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors, split.features["audio"])
    vectors[0] = -1  # a copy: the split's block is untouched
    assert split.features["audio"][0, 0] >= 0


def test_method_names_and_feature_groups():
    assert (CF.name, Track2Vec.name, Node2Vec.name) == ("CF", "Track2Vec", "Node2Vec")
    assert CF().features == Track2Vec().features == Node2Vec().features == ()


@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("p,q", [(1.0, 1.0), (0.5, 2.0), (4.0, 0.25)])
def test_walks_follow_edges_and_start_everywhere(split, weighted, p, q):
    graph = split.graph
    walks = node2vec_walks(graph, walk_length=8, walks_per_node=3, p=p, q=q, weighted=weighted, seed=0)
    assert walks.shape == (3 * int((graph.degree > 0).sum()), 8)
    edges = set(zip(graph.row.tolist(), graph.col.tolist()))
    steps = zip(walks[:, :-1].flatten().tolist(), walks[:, 1:].flatten().tolist())
    assert all(step in edges for step in steps)
    starts = torch.bincount(walks[:, 0], minlength=N)
    assert torch.equal(starts, 3 * (graph.degree > 0).long())
    assert starts[LONELY] == 0 and not (walks == LONELY).any()
    again = node2vec_walks(graph, walk_length=8, walks_per_node=3, p=p, q=q, weighted=weighted, seed=0)
    assert torch.equal(walks, again)


def test_small_p_makes_walks_return(split):
    def return_rate(p):
        walks = node2vec_walks(split.graph, walk_length=10, walks_per_node=20, p=p, q=1.0, seed=0)
        return (walks[:, 2:] == walks[:, :-2]).float().mean().item()

    # Degree ~ 11: returning has weight 20 against ~10 x 1 with p = 0.05, and 0.05 against ~10 with p = 20.
    small, large = return_rate(0.05), return_rate(20.0)
    assert small > 0.4 and large < 0.05 and small > 10 * large, (small, large)


def test_weighted_walks_follow_edge_weights():
    # A star: node 0 joined to 1 (weight 9) and 2 (weight 1); first steps from 0 go to 1 ~90 % of the time.
    graph = CSRGraph.from_edges([0, 0], [1, 2], 3, weight=[9.0, 1.0])
    walks = node2vec_walks(graph, walk_length=2, walks_per_node=2000, seed=0)
    share = (walks[walks[:, 0] == 0, 1] == 1).float().mean().item()
    assert 0.86 < share < 0.94
    uniform = node2vec_walks(graph, walk_length=2, walks_per_node=2000, weighted=False, seed=0)
    share = (uniform[uniform[:, 0] == 0, 1] == 1).float().mean().item()
    assert 0.45 < share < 0.55


@pytest.mark.parametrize("k", [0, 1, 2, 7, 100, 12345])
def test_warp_rank_weight_is_the_harmonic_number(k):
    direct = sum(1.0 / i for i in range(1, k + 1))
    assert warp_rank_weight(k).item() == pytest.approx(direct, rel=1e-9, abs=1e-12)
    assert warp_rank_weight(torch.tensor([k, k])).tolist() == pytest.approx([direct, direct], rel=1e-9, abs=1e-12)


def test_warp_loss_weights_the_first_violator():
    positive = torch.tensor([2.0, 2.0, 2.0])
    negative = torch.tensor(
        [
            [0.0, 0.5, 1.5, 3.0],  # first violator (> 1) at position 2: tries = 3, hinge 1 - 2 + 1.5
            [5.0, 0.0, 0.0, 2.5],  # position 0 is in the playlist: skipped; violator at 3, tries = 4
            [0.0, 0.0, 0.0, 0.0],  # no violator: no loss
        ]
    )
    in_playlist = torch.zeros(3, 4, dtype=torch.bool)
    in_playlist[1, 0] = True
    m = 101
    expected = (warp_rank_weight(100 // 3) * 0.5 + warp_rank_weight(100 // 4) * 1.5) / 3
    assert warp_loss(positive, negative, in_playlist, m).item() == pytest.approx(expected.item(), rel=1e-6)
