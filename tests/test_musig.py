"""MUSIG: sampled and full-graph passes against a dense brute force, the multi-task loss by hand,
inductive vectors, and train-musig end to end (on the synthetic store and on imported tracks)."""

import csv
import json
import math
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch_geometric.sampler import NodeSamplerInput

from audiograph.cli import main
from audiograph.errors import ConfigError
from audiograph.graph.csr import CSRGraph
from audiograph.graph.random_graph import powerlaw_graph
from audiograph.graph.sampler import UniformNeighborSampler
from audiograph.models.musig import MusigModel
from audiograph.models.weights import load_checkpoint
from audiograph.musig.features import FeatureSpec
from audiograph.musig.model import (
    MUSIG,
    TASK_WEIGHT_PRESETS,
    PairHeads,
    batch_genre_loss,
    classify_genre_loss,
    full_adjacency,
    layer_adjacencies,
    multitask_loss,
    parse_task_weights,
)
from audiograph.pipelines.encoders import AudioFile, file_features
from audiograph.pipelines.train_musig import prepare_musig_data, train_musig
from audiograph.store import MUSIG_SPACE, Store
from audiograph.training.musig import isolate_seeds, pair_labels, pair_similarity
from audiograph.training.musig_data import assemble_musig_data

NUM_ISOLATED = 3
# Small and short: the point is the plumbing, not the quality.
SMOKE = dict(
    max_epochs=2,
    batches_per_epoch=2,
    batch_size=16,
    hidden_channels=32,
    out_channels=16,
    accelerator="cpu",
    quiet=True,
    seed=0,
)


@pytest.fixture(scope="module")
def graph() -> CSRGraph:
    """A 200-node power-law graph plus NUM_ISOLATED isolated nodes at the end."""
    g = powerlaw_graph(200, 1500, seed=2)
    return CSRGraph(torch.cat([g.rowptr, g.rowptr[-1:].repeat(NUM_ISOLATED)]), g.col, g.weight)


def features(num_nodes: int, dim: int = 10) -> torch.Tensor:
    return torch.randn(num_nodes, dim, generator=torch.Generator().manual_seed(1))


def seeded_musig(in_channels: int, num_layers: int = 2) -> MUSIG:
    torch.manual_seed(0)
    return MUSIG(in_channels, 16, 8, num_layers=num_layers).eval()


def load_saved_musig(path):
    """(the aggregator, the settings) of a saved MUSIG model."""
    model = MusigModel.load(path)
    return model.aggregator, model.settings()


def embed_isolated(model: MUSIG, x: torch.Tensor) -> torch.Tensor:
    """`MusigModel.encode` without a graph, for a bare aggregator."""
    wrapper = MusigModel(
        FeatureSpec([]),
        model.convs[0].out_channels,
        model.convs[-1].out_channels,
        num_layers=len(model.convs),
        skip=model.skip is not None,
        in_channels=x.shape[1],
    )
    wrapper.aggregator.load_state_dict(model.state_dict())
    return wrapper.encode(x, convert_to_tensor=True)


def dense(graph: CSRGraph) -> torch.Tensor:
    """The 0/1 adjacency matrix; row v lists the nodes v aggregates from."""
    return torch.from_numpy(graph.to_scipy().toarray() > 0)


@torch.no_grad()
def dense_musig(model: MUSIG, x: torch.Tensor, graph: CSRGraph | torch.Tensor) -> torch.Tensor:
    """The forward pass written out on a dense adjacency: h_v = W_l mean(h_u, u in N(v)) + b + W_r h_v,
    ReLU between layers, plus W_s x_v (the skip path), L2 norm at the end; a node without neighbours
    aggregates zeros."""

    def affine(linear, h):
        return h @ linear.weight.T + (0 if linear.bias is None else linear.bias)

    adjacency = (dense(graph) if isinstance(graph, CSRGraph) else graph).float()
    mean = adjacency / adjacency.sum(1, keepdim=True).clamp(min=1)
    h = x
    for k, conv in enumerate(model.convs):
        h = affine(conv.lin_l, mean @ h) + affine(conv.lin_r, h)
        if k < len(model.convs) - 1:
            h = h.relu()
    if model.skip is not None:  # the skip path: the node's own input features, mapped linearly
        h = h + affine(model.skip, x)
    return F.normalize(h, dim=-1)


def full_pass(model: MUSIG, x: torch.Tensor, graph: CSRGraph) -> torch.Tensor:
    with torch.no_grad():
        return model(x, [full_adjacency(graph.rowptr, graph.col, graph.num_nodes)] * len(model.convs))


def sampled_pass(model: MUSIG, x: torch.Tensor, out) -> torch.Tensor:
    adjacencies = layer_adjacencies(
        torch.stack([out.row, out.col]), out.num_sampled_nodes, out.num_sampled_edges, len(model.convs)
    )
    with torch.no_grad():
        return model(x[out.node], adjacencies)


def sample(graph: CSRGraph, seeds: torch.Tensor, fanouts: list[int]):
    sampler = UniformNeighborSampler(graph, fanouts, generator=torch.Generator().manual_seed(0))
    return sampler.sample_from_nodes(NodeSamplerInput(None, seeds))


# -- the aggregator: sampled per-layer blocks, full graph, dense brute force ----------------------


def test_mean_layer_is_pygs_sageconv(graph):
    # MUSIG's own mean layer stands in for PyG's SAGEConv(aggr="mean") so that inference need not import
    # PyG: under one seed both must draw the same parameters, under the same names, and give the same
    # vectors, on a full graph and on a bipartite block with a target that has no sources.
    from torch_geometric.nn import SAGEConv

    from audiograph.musig.model import SAGEMean

    torch.manual_seed(3)
    theirs = SAGEConv(10, 6, aggr="mean")
    torch.manual_seed(3)
    ours = SAGEMean(10, 6)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for name, value in theirs.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[name], value, atol=0, rtol=0)
    x = features(graph.num_nodes)
    adjacency = full_adjacency(graph.rowptr, graph.col, graph.num_nodes)
    torch.testing.assert_close(ours((x, x), adjacency), theirs((x, x), adjacency), atol=1e-6, rtol=0)
    block = torch.sparse_csr_tensor(
        torch.tensor([0, 2, 2, 5]), torch.tensor([0, 4, 1, 2, 7]), torch.ones(5), size=(3, 8)
    )
    torch.testing.assert_close(ours((x[:8], x[:3]), block), theirs((x[:8], x[:3]), block), atol=1e-6, rtol=0)
    no_sources = ours((x[:8], x[:3]), block)[1]
    torch.testing.assert_close(no_sources, ours.lin_r(x[1]) + ours.lin_l.bias, atol=1e-6, rtol=0)


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_sampled_layers_match_full_graph_and_dense_mean(graph, num_layers):
    # test_sampler.py checks PyG's SAGEConv on sampled edge_index; this checks MUSIG's own path:
    # per-layer torch.sparse CSR blocks from layer_adjacencies, and the full-graph CSR adjacency.
    x = features(graph.num_nodes)
    model = seeded_musig(10, num_layers)
    dense = dense_musig(model, x, graph)
    torch.testing.assert_close(full_pass(model, x, graph), dense, atol=1e-5, rtol=0)

    max_degree = int(graph.degree.max())
    hubs = graph.degree.argsort(descending=True)[:3]
    seeds = torch.cat([hubs, torch.tensor([11, 57, graph.num_nodes - 1])])  # the last is isolated
    out = sample(graph, seeds, [max_degree] * num_layers)
    adjacencies = layer_adjacencies(
        torch.stack([out.row, out.col]), out.num_sampled_nodes, out.num_sampled_edges, num_layers
    )
    assert adjacencies[0].shape[1] == out.node.numel() and adjacencies[-1].shape[0] == seeds.numel()
    torch.testing.assert_close(sampled_pass(model, x, out), dense[seeds], atol=1e-5, rtol=0)

    # Guard: a capped fanout does change the hubs' vectors, so the equalities above can fail.
    capped = sampled_pass(model, x, sample(graph, seeds, [2] * num_layers))
    assert not torch.allclose(capped[:3], dense[hubs], atol=1e-3)


def test_isolated_seeds_get_their_isolated_vector(graph):
    # Cold-start training isolates some seeds (every edge into or out of them goes), as if they were
    # in no playlist: they must get exactly the vector that inference gives such a track, and the
    # other seeds the full pass over the graph without the isolated seeds.
    x = features(graph.num_nodes)
    model = seeded_musig(10)
    seeds = torch.arange(0, 200, 9)
    max_degree = int(graph.degree.max())
    out = sample(graph, seeds, [max_degree, max_degree])
    isolated = torch.rand(seeds.numel(), generator=torch.Generator().manual_seed(5)) < 0.5
    assert 0 < int(isolated.sum()) < seeds.numel()
    edge_index, counts = isolate_seeds(torch.stack([out.row, out.col]), out.num_sampled_edges, isolated)
    assert sum(counts) == edge_index.shape[1]
    local_isolated = torch.zeros(len(out.node), dtype=torch.bool)
    local_isolated[: seeds.numel()] = isolated
    assert not local_isolated[edge_index].any()

    adjacencies = layer_adjacencies(edge_index, out.num_sampled_nodes, counts, 2)
    with torch.no_grad():
        z = model(x[out.node], adjacencies)
    torch.testing.assert_close(z[isolated], embed_isolated(model, x[seeds[isolated]]), atol=1e-5, rtol=0)
    adjacency = dense(graph)
    adjacency[seeds[isolated]] = False
    adjacency[:, seeds[isolated]] = False
    torch.testing.assert_close(z, dense_musig(model, x, adjacency)[seeds], atol=1e-5, rtol=0)


# -- inductive vectors -----------------------------------------------------------------------------


def test_isolated_vector_equals_full_pass_without_the_nodes_edges(graph):
    x = features(graph.num_nodes)
    model = seeded_musig(10)
    nodes = torch.tensor([0, 3, 50])
    assert bool((graph.degree[nodes] > 0).all())
    keep = torch.ones(graph.num_nodes, dtype=torch.bool)
    keep[nodes] = False
    without = graph.subgraph(keep)
    assert int(without.degree[nodes].sum()) == 0
    isolated = embed_isolated(model, x[nodes])
    torch.testing.assert_close(isolated, full_pass(model, x, without)[nodes], atol=1e-5, rtol=0)
    torch.testing.assert_close(isolated, dense_musig(model, x, without)[nodes], atol=1e-5, rtol=0)
    assert not torch.allclose(isolated, full_pass(model, x, graph)[nodes], atol=1e-3)  # edges matter


def test_node_added_with_neighbours_gets_the_full_pass_vector(graph):
    # No retraining: a new node joined to known tracks gets the full-graph vector of the grown graph,
    # and only nodes within K hops of it change.
    x = features(graph.num_nodes + 1)
    model = seeded_musig(10)
    new = graph.num_nodes
    neighbours = torch.tensor([4, 9, 120])
    grown = CSRGraph.from_edges(
        torch.cat([graph.row, torch.full((3,), new)]), torch.cat([graph.col, neighbours]), new + 1
    )
    before, after = full_pass(model, x[:new], graph), full_pass(model, x, grown)
    torch.testing.assert_close(after, dense_musig(model, x, grown), atol=1e-5, rtol=0)
    out = sample(grown, torch.tensor([new]), [-1, -1])
    torch.testing.assert_close(sampled_pass(model, x, out), after[[new]], atol=1e-5, rtol=0)

    adjacency = dense(grown)
    near = adjacency[new] | (adjacency.float() @ adjacency[new].float() > 0)  # within 2 hops
    far = ~near[:new]
    assert int(far.sum()) > 0
    torch.testing.assert_close(after[:new][far], before[far], atol=1e-6, rtol=0)
    assert not torch.allclose(after[neighbours], before[neighbours], atol=1e-3)


# -- the multi-task loss ---------------------------------------------------------------------------


def labelled_batch(size: int = 40, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    outputs = torch.randn(size, 3, generator=g) * 2
    playlist = (torch.rand(size, generator=g) < 0.5).long()
    genre = (torch.rand(size, generator=g) < 0.5).float()
    similarity = torch.rand(size, generator=g)
    genre[torch.rand(size, generator=g) < 0.3] = torch.nan
    similarity[torch.rand(size, generator=g) < 0.3] = torch.nan
    return outputs, playlist, genre, similarity


def bce_by_hand(logits: torch.Tensor, labels: torch.Tensor) -> float:
    p = torch.sigmoid(logits.double())
    y = labels.double()
    return float(-(y * p.log() + (1 - y) * (1 - p).log()).mean())


def test_batch_genre_loss_matches_a_loop_over_every_pair():
    g = torch.Generator().manual_seed(3)
    z = F.normalize(torch.randn(12, 6, generator=g), dim=-1)
    genre = torch.randint(-1, 3, (12,), generator=g)
    heads = PairHeads(6)
    with torch.no_grad():
        heads.weight.uniform_(-2, 2, generator=g)
        heads.bias.fill_(0.3)
    known = [a for a in range(12) if genre[a] >= 0]
    logits, labels = [], []
    for a in known:
        for b in known:
            if a != b:
                logits.append(float((heads.weight[1] * z[a] * z[b]).sum() + heads.bias[1]))
                labels.append(float(genre[a] == genre[b]))
    want = bce_by_hand(torch.tensor(logits), torch.tensor(labels))
    assert float(batch_genre_loss(z, genre, heads)) == pytest.approx(want, rel=1e-5)


def test_classify_genre_loss_is_softmax_cross_entropy_over_known_genres():
    g = torch.Generator().manual_seed(4)
    z = F.normalize(torch.randn(10, 5, generator=g), dim=-1)
    genre = torch.tensor([0, 2, -1, 1, 1, -1, 0, 2, 2, 1])
    classifier = torch.nn.Linear(5, 3)
    terms = []
    for a in range(10):
        if genre[a] >= 0:
            logits = [float(classifier.weight[c] @ z[a] + classifier.bias[c]) for c in range(3)]
            terms.append(np.log(np.exp(logits).sum()) - logits[int(genre[a])])
    assert float(classify_genre_loss(z, genre, classifier)) == pytest.approx(np.mean(terms), rel=1e-5)
    assert float(classify_genre_loss(z, torch.full((10,), -1), classifier)) == 0


def test_multitask_loss_matches_hand_computation():
    outputs, playlist, genre, similarity = labelled_batch()
    g, s = ~genre.isnan(), ~similarity.isnan()
    assert 0 < int(g.sum()) < len(genre) and 0 < int(s.sum()) < len(similarity)
    want = {
        "playlist": bce_by_hand(outputs[:, 0], playlist),
        "genre": bce_by_hand(outputs[g, 1], genre[g]),
        "audio": math.sqrt(float(((outputs[s, 2].double() - similarity[s].double()) ** 2).mean())),
    }
    weights = (0.3, 0.5, 0.2)
    total, parts = multitask_loss(outputs, playlist, genre, similarity, weights)
    for task, value in want.items():
        assert float(parts[task]) == pytest.approx(value, rel=1e-5)
    assert float(total) == pytest.approx(0.3 * want["playlist"] + 0.5 * want["genre"] + 0.2 * want["audio"], rel=1e-5)

    # Pairs without a label are left out: their outputs can be anything.
    changed = outputs.clone()
    changed[~g, 1] = 100.0
    changed[~s, 2] = -100.0
    torch.testing.assert_close(multitask_loss(changed, playlist, genre, similarity, weights)[0], total)


def test_contrastive_playlist_loss_matches_hand_computation():
    # InfoNCE over the edges of the batch: each edge's two ends against every other edge's, both ways.
    outputs, playlist, genre, similarity = labelled_batch()
    g = torch.Generator().manual_seed(3)
    zi, zj = (F.normalize(torch.randn(len(playlist), 8, generator=g), dim=-1) for _ in range(2))
    edges = [k for k in range(len(playlist)) if playlist[k] > 0.5]
    assert 1 < len(edges) < len(playlist)
    tau = 0.2

    def cross_entropy(a, b) -> float:
        total = 0.0
        for row, k in enumerate(edges):
            scores = [float(a[k] @ b[m]) / tau for m in edges]
            total += -scores[row] + math.log(sum(math.exp(v) for v in scores))
        return total / len(edges)

    want = (cross_entropy(zi, zj) + cross_entropy(zj, zi)) / 2
    _, parts = multitask_loss(outputs, playlist, genre, similarity, (1.0, 0.0, 0.0), contrast=(zi, zj), temperature=tau)
    assert float(parts["playlist"]) == pytest.approx(want, rel=1e-5)


def test_tasks_without_any_label_add_nothing():
    outputs, playlist, genre, similarity = labelled_batch()
    outputs.requires_grad_(True)
    nan = torch.full_like(genre, torch.nan)
    total, parts = multitask_loss(outputs, playlist, nan, nan, (1.0, 1.0, 1.0))
    assert parts["genre"].item() == 0.0 and parts["audio"].item() == 0.0
    assert float(total) == pytest.approx(bce_by_hand(outputs[:, 0].detach(), playlist), rel=1e-5)
    total.backward()
    assert torch.isfinite(outputs.grad).all() and bool((outputs.grad[:, 1:] == 0).all())

    # A perfect regression: the RMSE is ~0 and its gradient stays finite.
    exact = similarity.nan_to_num(0.5)
    outputs = torch.stack([torch.zeros(len(exact)), torch.zeros(len(exact)), exact], 1).requires_grad_(True)
    _, parts = multitask_loss(outputs, playlist, nan, exact, (0.0, 0.0, 1.0))
    parts["audio"].backward()
    assert float(parts["audio"]) < 1e-5 and torch.isfinite(outputs.grad).all()


def test_graphsage_weights_ignore_genre_and_similarity():
    _, playlist, genre, similarity = labelled_batch()
    zi, zj = (
        F.normalize(torch.randn(len(genre), 8, generator=torch.Generator().manual_seed(s)), dim=-1) for s in (1, 2)
    )

    def gradients(weights, genre=genre, similarity=similarity):
        torch.manual_seed(0)
        heads = PairHeads(8)
        with torch.no_grad():  # distinct rows, so that a mix-up between tasks would show
            heads.weight.add_(torch.randn_like(heads.weight))
        a, b = zi.clone().requires_grad_(True), zj.clone().requires_grad_(True)
        total, _ = multitask_loss(heads(a, b), playlist, genre, similarity, weights)
        total.backward()
        return total.detach(), heads.weight.grad, heads.bias.grad, a.grad

    total, weight_grad, bias_grad, z_grad = gradients(TASK_WEIGHT_PRESETS["graphsage"])
    assert bool((weight_grad[1:] == 0).all()) and bool((bias_grad[1:] == 0).all())
    assert float(weight_grad[0].abs().sum()) > 0
    # Other genre and similarity labels change nothing at all, gradients included.
    other = gradients((1.0, 0.0, 0.0), genre=1 - genre.nan_to_num(0), similarity=torch.rand(len(genre)))
    torch.testing.assert_close(other[0], total)
    torch.testing.assert_close(other[3], z_grad)
    # Guard: with the genre task on, its row does get a gradient.
    _, weight_grad, _, _ = gradients((0.0, 1.0, 0.0))
    assert float(weight_grad[1].abs().sum()) > 0 and bool((weight_grad[[0, 2]] == 0).all())


def test_parse_task_weights():
    for name, weights in TASK_WEIGHT_PRESETS.items():
        assert parse_task_weights(name) == weights
    assert parse_task_weights("graphsage") == (1.0, 0.0, 0.0)
    assert parse_task_weights("0.5, 0.25,0") == (0.5, 0.25, 0.0)
    assert parse_task_weights([1, 0, 2]) == (1.0, 0.0, 2.0)
    for bad in ["1,2", "1,2,3,4", "a,b,c", "-1,1,1", "0,0,0", "graph-sage", "", "nan,1,1", "inf,0,0"]:
        with pytest.raises(ConfigError, match="preset"):
            parse_task_weights(bad)


def test_pair_labels_and_similarity_against_brute_force():
    g = torch.Generator().manual_seed(0)
    genre = torch.tensor([0, 1, -1, 1, 2, 0, -1])
    sim = F.normalize(torch.rand(7, 4, generator=g), dim=-1)
    has_sim = torch.tensor([True, True, False, True, True, False, True])
    i, j = torch.randint(7, (2, 60), generator=g)
    labels, similarity = pair_labels(genre, i, j), pair_similarity(sim, has_sim, i, j)
    for n, (a, b) in enumerate(zip(i.tolist(), j.tolist())):
        if genre[a] < 0 or genre[b] < 0:
            assert math.isnan(labels[n])
        else:
            assert labels[n] == float(genre[a] == genre[b])
        if has_sim[a] and has_sim[b]:
            assert float(similarity[n]) == pytest.approx(sum(float(sim[a, d] * sim[b, d]) for d in range(4)), abs=1e-6)
        else:
            assert math.isnan(similarity[n])


# -- train-musig end to end ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory, embedded_db):
    """(store path, report): a copy of `embedded_db` with a briefly trained MUSIG model. Copy before writing."""
    db = tmp_path_factory.mktemp("musig") / "store.db"
    shutil.copy(embedded_db, db)
    store = Store(db)
    report = train_musig(store, **SMOKE)
    store.close()
    return db, report


def test_auto_task_weights_keep_the_best_preset_and_uncertainty_weighting_learns(embedded_db, tmp_path):
    db = tmp_path / "store.db"
    shutil.copy(embedded_db, db)
    store = Store(db)
    report = train_musig(store, task_weights="auto", task_weighting="uncertainty", **SMOKE)
    assert report.task_weights in TASK_WEIGHT_PRESETS.values()
    # Every preset was trained, and the registered one validated best among them (as its own log says). Only
    # its run folder is kept, and no run is left marked.
    grid = {k.removeprefix("val_auc_grid_"): v for k, v in report.metrics.items() if k.startswith("val_auc_grid_")}
    assert set(grid) == set(TASK_WEIGHT_PRESETS) and report.metrics["val_auc"] == max(grid.values())
    runs = [p.name for p in store.models_dir.iterdir() if p.is_dir()]
    assert runs == [report.model_id] and not list(store.models_dir.glob(".*.lock"))
    rows = [r for r in csv.DictReader(open(store.models_dir / report.model_id / "metrics.csv")) if r.get("val_auc")]
    assert report.metrics["val_auc"] == pytest.approx(max(float(r["val_auc"]) for r in rows))
    best_run = Path(report.checkpoint).parent / "checkpoints"  # the Lightning checkpoint holds the task weights
    (best_file,) = [p for p in best_run.glob("*.ckpt") if p.name != "last.ckpt"]
    checkpoint = load_checkpoint(best_file)
    log_vars = checkpoint["state_dict"]["log_vars"]
    assert log_vars.shape == (3,) and bool((log_vars != 0).any())  # learnt away from the start
    store.close()


@pytest.fixture(scope="module")
def new_audio_file(tmp_path_factory):
    """One synthetic track that is in no store."""
    from audiograph.synth import synthesize

    out = synthesize(
        tmp_path_factory.mktemp("newcomer") / "c", tracks=1, genres=1, playlists=1, seconds=4.0, seed=12345, workers=1
    ).out_dir
    with open(out / "tracks.csv", newline="", encoding="utf-8") as f:
        return out / "audio" / next(csv.DictReader(f))["path"]


def stored_features(store: Store, hparams: dict):
    """Node ids, node features built with the model's recorded spec, and the store's graph."""
    spec = FeatureSpec.from_dict(hparams["features"])
    data = prepare_musig_data(store, spec.groups, spec=spec)
    return data.node_ids, data.data.x, data.graph


def test_train_musig_registers_and_fills_the_space(trained):
    db, report = trained
    store = Store(db)
    row = store.models.get(report.model_id)
    assert row["kind"] == "musig" and row["space"] == MUSIG_SPACE
    assert row["config"]["task_weights"] == [1.0, 1.0, 1.0] and row["config"]["hidden_channels"] == 32
    # 12 playlists are too few to hold some out: validation falls back on held-out edges.
    assert "val_auc" in row["metrics"] and "val_hr" not in row["metrics"] and report.epochs == 2
    run_dir = store.models_dir / report.model_id
    assert (run_dir / "hparams.yaml").exists() and (run_dir / "metrics.csv").exists()
    assert (Path(row["checkpoint"]) / "weights.pt").is_file() and (Path(row["checkpoint"]) / "config.json").is_file()

    ids, vectors = store.vectors.matrix(MUSIG_SPACE, report.model_id)
    assert sorted(ids) == sorted(store.tracks.node_ids()) and report.embedded == len(ids)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # The stored vectors are the full-graph pass of the checkpoint's weights.
    model, hparams = load_saved_musig(row["checkpoint"])
    node_ids, x, graph = stored_features(store, hparams)
    dense = dense_musig(model, x, graph).numpy()
    position = {t: n for n, t in enumerate(node_ids)}
    np.testing.assert_allclose(vectors, dense[[position[t] for t in ids]], atol=1e-5)
    store.close()


def test_query_with_a_new_file_searches_musig(trained, new_audio_file, capsys):
    db, report = trained
    assert main(["query", str(new_audio_file), "--db", str(db), "--json", "-k", "4"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert [h["rank"] for h in hits] == [1, 2, 3, 4]

    # The query vector is the file's features through the aggregators with an empty neighbourhood.
    store = Store(db)
    row = store.models.get(report.model_id)
    model, hparams = load_saved_musig(row["checkpoint"])
    x = torch.from_numpy(
        file_features(
            store, FeatureSpec.from_dict(hparams["features"]), AudioFile(new_audio_file, new_audio_file.read_bytes())
        )
    )
    vector = dense_musig(model, x, CSRGraph(torch.zeros(2, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)))[0]
    expected = store.vectors.similar(MUSIG_SPACE, vector.numpy(), k=4, model_id=report.model_id)
    assert [h["track_id"] for h in hits] == [h["track_id"] for h in expected]
    np.testing.assert_allclose([h["score"] for h in hits], [h["score"] for h in expected], atol=1e-5)
    store.close()


def test_embed_musig_covers_a_track_added_later(trained, new_audio_file, synth_collection, tmp_path):
    # A new track in playlists gets the full-graph vector of the grown graph, without retraining.
    from audiograph.pipelines.build_graph import build_graph
    from audiograph.pipelines.embed_audio import embed_audio

    _, report = trained
    shutil.copytree(trained[0].parent, tmp_path / "copy")
    store = Store(tmp_path / "copy" / "store.db")
    old = set(store.tracks.node_ids())
    embed_audio(new_audio_file.parent, store, collection="newcomer", num_workers=1, quiet=True)
    (new,) = set(store.tracks.node_ids()) - old
    neighbours = [store.tracks.get(t)["path"] for t in sorted(old)[:3]]
    playlists = tmp_path / "added"
    playlists.mkdir()
    for n in range(3):  # three shared playlists: weight 3, above the automatic min weight
        (playlists / f"p{n}.m3u").write_text("\n".join([str(new_audio_file), *neighbours]) + "\n")
    build_graph(store, [synth_collection / "playlists", playlists])

    assert main(["embed-musig", "--db", str(store.path), "--json", "--accelerator", "cpu"]) == 0
    model, hparams = load_saved_musig(store.models.get(report.model_id)["checkpoint"])
    node_ids, x, graph = stored_features(store, hparams)
    assert int(graph.degree[node_ids.index(new)]) == 3
    ids, vectors = store.vectors.matrix(MUSIG_SPACE, report.model_id)
    assert new in ids and len(ids) == len(node_ids)
    dense = dense_musig(model, x, graph)[node_ids.index(new)].numpy()
    np.testing.assert_allclose(vectors[ids.index(new)], dense, atol=1e-5)
    store.close()


# -- train-musig on imported tracks (no audio) -------------------------------------------------------

SPOTIFY_COLUMNS = [
    "track_id",
    "track_name",
    "track_artist",
    "track_popularity",
    "track_album_id",
    "track_album_name",
    "track_album_release_date",
    "playlist_name",
    "playlist_id",
    "playlist_genre",
    "playlist_subgenre",
    *"danceability,energy,key,loudness,mode,speechiness,acousticness,instrumentalness,liveness,valence".split(","),
    *("tempo", "duration_ms"),
]
AUDIO_COLUMNS = "danceability,energy,loudness,speechiness,acousticness,instrumentalness,liveness,valence,tempo"


def write_spotify_csv(path, tracks: int = 40, playlists: int = 16, per_playlist: int = 8, seed: int = 0) -> None:
    """Rows shaped like spotify_songs_dev.csv: one per (playlist, track), each playlist mostly of one genre."""
    rng = np.random.default_rng(seed)
    genres = ["pop", "rock", "rap", "latin"]
    genre_of = [genres[t % len(genres)] for t in range(tracks)]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, SPOTIFY_COLUMNS)
        writer.writeheader()
        features = {t: rng.random(len(SPOTIFY_COLUMNS)) for t in range(tracks)}
        for p in range(playlists):
            genre = genres[p % len(genres)]
            same = [t for t in range(tracks) if genre_of[t] == genre]
            members = rng.choice(same, per_playlist - 2, replace=False).tolist() + rng.choice(tracks, 2).tolist()
            for t in dict.fromkeys(members):
                row = {c: f"{v:.3f}" for c, v in zip(SPOTIFY_COLUMNS, features[t])}
                row.update(
                    track_id=f"trk{t:03d}",
                    track_name=f"Song {t}",
                    track_artist=f"Artist {t % 7}",
                    track_popularity=str(t * 2),
                    playlist_name=f"{genre} mix {p}",
                    playlist_id=f"pl{p:02d}",
                    playlist_genre=genre,
                    tempo=f"{80 + 100 * features[t][0]:.1f}",
                )
                writer.writerow(row)


def run_json(capsys, *argv) -> dict:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def import_and_train(capsys, csv_path, db, *train_options) -> dict:
    """import-tracks, build-graph and train-musig through the CLI, on one Spotify-style CSV."""
    imported = run_json(
        capsys,
        "import-tracks",
        str(csv_path),
        "--db",
        str(db),
        "--json",
        "--features",
        f"audio={AUDIO_COLUMNS}",
        "--genre-col",
        "playlist_genre",
        "--popularity-col",
        "track_popularity",
        "--title-col",
        "track_name",
        "--artist-col",
        "track_artist",
        "--playlist-col",
        "playlist_id",
    )
    assert imported["feature_groups"] == {"audio": 9, "popularity": 1}
    graph = run_json(capsys, "build-graph", str(csv_path), "--db", str(db), "--json", "--name-col", "playlist_name")
    assert graph["summary"]["edges"] > 0
    return run_json(
        capsys,
        "train-musig",
        "--db",
        str(db),
        "--json",
        "--features",
        "audio,genre,popularity",
        "--accelerator",
        "cpu",
        *train_options,
    )


def test_train_musig_on_imported_tracks(tmp_path, capsys, new_audio_file):
    csv_path, db = tmp_path / "songs.csv", tmp_path / "imported.db"
    write_spotify_csv(csv_path)
    report = import_and_train(
        capsys,
        csv_path,
        db,
        "--epochs",
        "2",
        "--batches-per-epoch",
        "2",
        "--batch-size",
        "16",
        "--hidden-channels",
        "32",
        "--out-channels",
        "16",
        "--task-weights",
        "content-heavy",
    )
    assert report["features"] == ["audio", "genre", "popularity"] and report["similarity_group"] == "audio"
    assert report["task_weights"] == [0.4, 0.2, 0.4] and report["embedded"] == 40
    store = Store(db)
    ids, vectors = store.vectors.matrix(MUSIG_SPACE, report["model_id"])
    assert sorted(ids) == [f"trk{t:03d}" for t in range(40)]
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # The 9 imported audio columns and the imported popularity are inputs, scaled to 0-1.
    spec = FeatureSpec.from_dict(store.models.get(report["model_id"])["config"]["features"])
    assert spec.dims == {"audio": 9, "genre": 4, "popularity": 3}
    store.close()

    # An audio file has no imported features: a clear error, not a crash.
    assert main(["query", str(new_audio_file), "--db", str(db)]) == 1
    assert "imported 'audio' features" in capsys.readouterr().err
    assert main(["train-musig", "--db", str(db), "--task-weights", "1,2"]) == 1
    assert "task weights must be three" in capsys.readouterr().err


@pytest.mark.slow
def test_train_musig_on_the_spotify_csv(shared_data, tmp_path, capsys):
    csv_path = shared_data / "spotify_playlists" / "spotify_songs_dev.csv"
    if not csv_path.exists():
        pytest.skip(f"{csv_path} is not present")
    db = tmp_path / "spotify.db"
    report = import_and_train(capsys, csv_path, db, "--epochs", "2", "--batches-per-epoch", "40")
    store = Store(db)
    ids, vectors = store.vectors.matrix(MUSIG_SPACE, report["model_id"])
    assert report["embedded"] == len(ids) == len(store.tracks.node_ids())
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Completion of held-out playlists (chance 0.5), and the features' own figure beside it; the
    # guard warns exactly when MUSIG is below its inputs.
    metrics = report["metrics"]
    assert metrics["val_hr"] > 0.6 and 0.5 < metrics["val_hr_features"] < 1
    assert bool(report["warnings"]) == (metrics["val_hr"] < metrics["val_hr_features"])
    store.close()


def test_validation_pairs_are_held_out_edges_and_true_non_edges():
    from audiograph.training.musig_data import split_edges

    graph = powerlaw_graph(120, 1500, seed=2)
    edges = {(int(a), int(b)) for a, b in zip(graph.row, graph.col)}
    train_graph, train_edges, (pairs, labels) = split_edges(graph, 0.2, torch.Generator().manual_seed(0))
    kept = {(int(a), int(b)) for a, b in zip(train_graph.row, train_graph.col)}
    for (a, b), label in zip(pairs.T.tolist(), labels.tolist()):
        if label == 1:
            assert (a, b) in edges and (a, b) not in kept  # held out of the training graph
        else:
            assert (a, b) not in edges and a != b
    assert labels.sum() == len(labels) / 2 and 0 < labels[: len(labels) // 2].mean() < 1  # shuffled
    assert len(kept) + 2 * int(labels.sum()) == len(edges)


def test_validation_playlists_leave_the_graph_and_become_completion_cases():
    from audiograph.eval.protocol import playlist_graph
    from audiograph.training.musig_data import split_playlists

    rng = np.random.default_rng(0)
    n = 300
    playlists = [rng.choice(n, size=int(rng.integers(5, 30)), replace=False) for _ in range(60)]
    graph = playlist_graph(playlists, n, 1.0)
    x = torch.zeros(n, 1)
    # As in a store of audio files and imported tracks: some tracks lack one content group or both.
    has_content = rng.random((n, 2)) < [0.7, 0.4]
    data = assemble_musig_data(
        [str(i) for i in range(n)], graph, x, {}, FeatureSpec(groups=[]), playlists=playlists, has_content=has_content
    )
    train_graph, cases = split_playlists(data, 0.2, torch.Generator().manual_seed(0))
    held = [playlists[int(c.playlist_id)] for c in cases]
    assert len(cases) == 12 and all(len(p) >= 10 for p in held)
    # The training graph is exactly the co-occurrence graph of the other playlists (brute force).
    rest = [p for p in playlists if not any(p is h for h in held)]
    want = {(int(a), int(b)) for p in rest for a in p for b in p if a != b}
    assert {(int(a), int(b)) for a, b in zip(train_graph.row, train_graph.col)} == want
    seen = np.zeros(n, bool)
    seen[np.concatenate(rest)] = True
    for case, playlist in zip(cases, held):
        assert list(case.seeds) + list(case.targets) == list(playlist)
        decoys = np.setdiff1d(case.candidates, case.targets)
        assert len(decoys) == len(case.targets) and not np.isin(decoys, playlist).any()
        # Matched on being in a training playlist and on the content groups, class by class.
        signature = [(bool(seen[t]), *has_content[t].tolist()) for t in range(n)]
        assert Counter(signature[t] for t in decoys) == Counter(signature[t] for t in case.targets)


@pytest.mark.parametrize("genre_loss", ["batch", "classify"])
def test_the_seed_genre_losses_train_and_are_recorded(embedded_db, tmp_path, genre_loss):
    db = tmp_path / "store.db"
    shutil.copy(embedded_db, db)
    store = Store(db)
    report = train_musig(store, genre_loss=genre_loss, **SMOKE)
    row = store.models.get(report.model_id)
    assert row["config"]["genre_loss"] == genre_loss and np.isfinite(report.metrics["val_auc"])
    with pytest.raises(ConfigError, match="genre loss must be one of pairs, batch, classify"):
        train_musig(store, genre_loss="supcon", **SMOKE)
    store.close()


def test_the_grid_records_graphsage_beside_the_kept_model():
    """With `--task-weights auto` the grid's single-task run (1,0,0) is a free GraphSAGE baseline: its
    validation hit rate is recorded beside the kept model's, and the CLI prints it."""
    from types import SimpleNamespace

    from audiograph.pipelines.fit import FitResult
    from audiograph.pipelines.train_musig import _added_metrics

    def run(weights, hr):
        module = SimpleNamespace(hparams={"task_weights": weights})
        return FitResult("m", module, Path("."), 3, {"val_hr": hr}, 100.0)

    multi, graphsage, heavy = run((1.0, 1.0, 1.0), 0.80), run((1.0, 0.0, 0.0), 0.78), run((0.4, 0.2, 0.4), 0.70)
    added = _added_metrics("val_hr", 0.75, multi, [multi, graphsage, heavy])
    grid = {"val_hr_grid_multi": 0.80, "val_hr_grid_graphsage": 0.78, "val_hr_grid_content-heavy": 0.70}
    assert added == {"train_seeds_per_second": 100.0, "val_hr_features": 0.75, "val_hr_graphsage": 0.78, **grid}
    # A single candidate, or GraphSAGE kept itself: no GraphSAGE figure beside it.
    assert "val_hr_graphsage" not in _added_metrics("val_hr", 0.75, multi, [multi])
    assert "val_hr_graphsage" not in _added_metrics("val_hr", 0.75, graphsage, [multi, graphsage])
    # Validation by link AUC (too few playlists): the features' AUC, and no hit rates at all.
    auc = FitResult(
        "m", SimpleNamespace(hparams={"task_weights": (1.0, 0.0, 0.0)}), Path("."), 3, {"val_auc": 0.9}, 1.0
    )
    assert _added_metrics("val_auc", 0.7, auc, [auc]) == {"train_seeds_per_second": 1.0, "val_auc_features": 0.7}


def test_the_link_auc_guard_compares_with_the_features_auc_computed_by_hand(tmp_path, monkeypatch, capsys):
    """Too few long playlists: validation is by link AUC, and the reference is the z-scored features' cosine
    AUC on the same held-out pairs (checked against a brute-force count of ordered pairs); a MUSIG below it is
    warned about."""
    import audiograph.pipelines.train_musig as train_module
    from audiograph.pipelines.train_musig import TrainMusigReport
    from audiograph.training.musig_data import MusigDataModule

    graph = powerlaw_graph(80, 3, seed=2)
    data = assemble_musig_data([f"t{i}" for i in range(80)], graph, features(80).numpy(), {}, FeatureSpec([]))
    datamodule = MusigDataModule(data, fanouts=(3, 2), val_fraction=0.2)
    assert datamodule.monitor == "val_auc"
    (i, j), labels = datamodule.val_pairs
    x = F.normalize(data.data.x, dim=-1)
    scores = (x[i] * x[j]).sum(-1)
    positive, negative = scores[labels == 1], scores[labels == 0]
    by_hand = (
        (positive[:, None] > negative[None, :]).float() + 0.5 * (positive[:, None] == negative[None, :]).float()
    ).mean()
    assert datamodule.features_baseline() == pytest.approx(float(by_hand), abs=1e-6)

    metrics = {"epoch": 1.0, "val_auc": 0.61, "val_auc_features": 0.70}
    report = TrainMusigReport("musig-x", "ckpt", 3, ["audio"], "audio", (1.0, 1.0, 1.0), metrics, embedded=5)
    train_module._guard(report)
    assert (
        report.warnings
        and "link AUC 0.610 is below that of its own z-scored input features (0.700)" in report.warnings[0]
    )
    monkeypatch.setattr(train_module, "train_musig", lambda store, **options: report)
    Store(tmp_path / "s.db").close()
    assert main(["train-musig", "--db", str(tmp_path / "s.db")]) == 0
    out, err = capsys.readouterr()
    assert "held-out link AUC 0.610 against 0.700 for the z-scored input features" in out and "warning" in err


def test_train_musig_prints_the_grid_graphsage_figure(tmp_path, monkeypatch, capsys):
    import audiograph.pipelines.train_musig as train_module
    from audiograph.pipelines.train_musig import TrainMusigReport

    metrics = {"epoch": 2.0, "val_hr": 0.836, "val_hr_features": 0.767, "val_hr_graphsage": 0.831}
    report = TrainMusigReport("musig-x", "ckpt", 3, ["audio"], "audio", (0.4, 0.2, 0.4), metrics, embedded=5)
    monkeypatch.setattr(train_module, "train_musig", lambda store, **options: report)
    Store(tmp_path / "s.db").close()
    assert main(["train-musig", "--db", str(tmp_path / "s.db"), "--task-weights", "auto"]) == 0
    out = capsys.readouterr().out
    assert "hit rate 0.836 against 0.767 for the z-scored input features and 0.831 for single-task GraphSAGE" in out
    del metrics["val_hr_graphsage"]
    assert main(["train-musig", "--db", str(tmp_path / "s.db")]) == 0
    assert "GraphSAGE" not in capsys.readouterr().out


def test_a_data_module_sampling_other_hops_than_the_model_has_layers_is_refused():
    """Fanouts are given to both the module and the data module: a mismatch failed with a bare IndexError
    (fewer hops) or sampled a hop nothing reads (more)."""
    import lightning as L

    from audiograph.training.musig import MusigModule
    from audiograph.training.musig_data import MusigDataModule

    graph = powerlaw_graph(60, 3, seed=1)
    data = assemble_musig_data([f"t{i}" for i in range(60)], graph, features(60).numpy(), {}, FeatureSpec([]))
    module = MusigModule(10, hidden_channels=8, out_channels=4, fanouts=(5, 5))
    for fanouts in [(5,), (5, 5, 5)]:
        trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
        with pytest.raises(ConfigError, match=rf"samples {len(fanouts)} hops .* a model of 2 layers"):
            trainer.fit(module, datamodule=MusigDataModule(data, fanouts=fanouts, val_fraction=0.2))
    # As many hops, other fanouts: the module's hyperparameters would record fanouts it never trained with.
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    with pytest.raises(ConfigError, match=r"samples fanouts \[5, 3\] for a model made with fanouts \[5, 5\]"):
        trainer.fit(module, datamodule=MusigDataModule(data, fanouts=(5, 3), val_fraction=0.2))


@pytest.mark.parametrize("precision", ["64-true", "bf16-true"])
def test_a_users_trainer_fits_musig_in_any_precision(precision):
    """Lightning casts the module but not a PyG batch: the float32 features met float64 or bfloat16 weights."""
    import lightning as L

    from audiograph.training.musig import MusigModule
    from audiograph.training.musig_data import MusigDataModule

    graph = powerlaw_graph(60, 3, seed=1)
    data = assemble_musig_data([f"t{i}" for i in range(60)], graph, features(60).numpy(), {}, FeatureSpec([]))
    module = MusigModule(10, hidden_channels=8, out_channels=4, fanouts=(5, 5))
    trainer = L.Trainer(
        max_epochs=1, precision=precision, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(module, datamodule=MusigDataModule(data, fanouts=(5, 5), val_fraction=0.2))
    dtype = {"64-true": torch.float64, "bf16-true": torch.bfloat16}[precision]
    assert trainer.state.finished and next(module.parameters()).dtype == dtype


def test_a_report_names_graphsage_and_leaves_out_a_similarity_task_of_weight_0():
    from audiograph.pipelines.train_musig import TrainMusigReport, _guard

    report = TrainMusigReport("m", "c", 1, ["audio"], "audio", (1.0, 0.0, 0.0), {"val_hr": 0.5, "val_hr_features": 0.6})
    assert (report.model_name, report.similarity_task) == ("GraphSAGE", None)
    _guard(report)
    assert report.warnings[0].startswith("GraphSAGE's validation hit rate 0.500 is below")
    report = TrainMusigReport("m", "c", 1, ["audio"], "audio", (1.0, 1.0, 0.5))
    assert (report.model_name, report.similarity_task) == ("MUSIG", "audio")


def test_a_spec_names_the_groups_a_new_audio_file_lacks():
    from audiograph.musig.features import FeatureSpec

    spec = FeatureSpec(["acoustic", "audio", "genre"], spaces={"acoustic": "acoustic", "audio": "audio"})
    assert spec.imported_groups() == ["audio"]
    spec.spaces["audio"] = "descriptors"
    assert spec.imported_groups() == []
