"""The paper's non-graph-neural baselines (§4.2) behind one embedding interface.

Every method maps an `EvalSplit` to one float32 vector per catalogue track (row i = node i);
tracks a method knows nothing about get a zero row, so their cosine to anything is 0.

- `CF`: matrix factorisation of the training playlist x track matrix with the WARP loss
  (Weston et al. 2011), written in torch and trained with Lightning: no maintained WARP library
  installs here (LightFM is unmaintained).
- `Track2Vec`: gensim skip-gram Word2Vec over the training playlists as sentences, optionally
  concatenated with normalised feature groups (the paper's Track2Vec-Feature).
- `Node2Vec`: biased second-order random walks on the co-occurrence graph (Grover & Leskovec
  2016), generated for all walkers at once, then gensim skip-gram. PyG's own `Node2Vec` needs
  torch-cluster or pyg-lib, which do not install here.
- `FeatureOnly`: a z-scored feature block, the simplest content-only reference.
- `ContentMetric`: a learnt content-only metric, an MLP with a linear skip over the features a
  track has in no playlist, trained with InfoNCE on pairs of tracks from the same training
  playlist: the bar an inductive graph model must clear on tracks in no playlist.

gensim is imported only when Track2Vec or Node2Vec runs.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from audiograph.eval.protocol import EvalSplit
from audiograph.graph.csr import CSRGraph
from audiograph.runtime import lightning_trainer, quiet_lightning

_EULER_GAMMA = 0.5772156649015329


class EmbeddingMethod:
    """A way to turn an `EvalSplit` into track vectors.

    `name` is the method as printed in the results table and `features` the feature groups it
    uses (empty prints as "-"). `embed` returns float32 [split.num_nodes, d], row i for
    `split.node_ids[i]`, seeding all randomness from `split.seed`.
    """

    name: str = ""
    features: tuple[str, ...] = ()

    def embed(self, split: EvalSplit) -> np.ndarray:
        """Vectors [split.num_nodes, d] learnt from the split's training playlists and features alone."""
        raise NotImplementedError


@contextmanager
def single_thread():
    """Run torch on one intra-op thread: these models' ops are too small to gain from more, and
    with the cores shared, waiting on a busy thread makes a step orders of magnitude slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


# --------------------------------------------------------------------------------------------- CF


def warp_rank_weight(k) -> torch.Tensor:
    """WARP's rank weight L(k) = sum_{i=1..k} 1/i (the harmonic number; L(0) = 0)."""
    k = torch.as_tensor(k, dtype=torch.float64)
    return torch.special.digamma(k + 1) + _EULER_GAMMA


def warp_loss(
    positive_score: torch.Tensor, negative_score: torch.Tensor, in_playlist: torch.Tensor, num_items: int
) -> torch.Tensor:
    """Batched WARP: the mean over positives of L(floor((num_items - 1) / tries)) * hinge.

    WARP draws negatives one at a time until one violates the margin (score_neg > score_pos - 1)
    or num_items - 1 tries. Here each positive [B] comes with K candidates drawn at once
    (`negative_score` [B, K]); the first violator that is not itself in the playlist
    (`in_playlist` [B, K]) is the sampled negative and its position + 1 the number of tries.
    Rows with no violator among the K add no loss: K caps the tries (LightFM's `max_sampled`).
    """
    violates = (negative_score > positive_score[:, None] - 1) & ~in_playlist
    first = violates.int().argmax(1)  # position of the first violator (0 when there is none)
    weight = warp_rank_weight(torch.div(num_items - 1, first + 1, rounding_mode="floor")).to(positive_score)
    hinge = (1 - positive_score + negative_score.gather(1, first[:, None]).squeeze(1)).clamp(min=0)
    return (weight * hinge * violates.any(1)).mean()


class WarpMF(L.LightningModule):
    """Playlist and item factors plus an item bias, scored by dot product, trained with `warp_loss`
    on `num_candidates` uniform negative candidates per positive (playlist, item) pair."""

    def __init__(
        self,
        num_playlists: int,
        num_items: int,
        positives: torch.Tensor,
        dim: int = 64,
        lr: float = 0.01,
        num_candidates: int = 32,
        batch_size: int = 256,
        seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["positives"])
        generator = torch.Generator().manual_seed(seed)
        # LightFM's initialisation: uniform(-0.5, 0.5) / dim, biases at zero.
        self.playlist = nn.Parameter((torch.rand(num_playlists, dim, generator=generator) - 0.5) / dim)
        self.item = nn.Parameter((torch.rand(num_items, dim, generator=generator) - 0.5) / dim)
        self.item_bias = nn.Parameter(torch.zeros(num_items))
        self.positives = positives  # [P, 2] (playlist, item) pairs
        self.register_buffer("positive_keys", torch.sort(positives[:, 0] * num_items + positives[:, 1]).values)
        self.generator = generator

    def score(self, playlists: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of `items` (shape [B] or [B, K]) for the playlists [B]."""
        u = self.playlist[playlists]
        if items.dim() == 1:
            return (u * self.item[items]).sum(-1) + self.item_bias[items]
        return torch.einsum("bd,bkd->bk", u, self.item[items]) + self.item_bias[items]

    def training_step(self, batch, batch_idx):
        (pairs,) = batch
        playlists, items = pairs[:, 0], pairs[:, 1]
        m, k = self.hparams.num_items, self.hparams.num_candidates
        negatives = torch.randint(m, (len(pairs), k), generator=self.generator).to(self.device)
        positive_score = self.score(playlists, items)
        negative_score = self.score(playlists, negatives)

        keys = playlists[:, None] * m + negatives
        at = torch.searchsorted(self.positive_keys, keys).clamp_(max=len(self.positive_keys) - 1)
        loss = warp_loss(positive_score, negative_score, self.positive_keys[at] == keys, m)
        self.log("train_loss", loss, batch_size=len(pairs))
        return loss

    def train_dataloader(self):
        generator = torch.Generator().manual_seed(self.hparams.seed)
        return DataLoader(
            TensorDataset(self.positives), batch_size=self.hparams.batch_size, shuffle=True, generator=generator
        )

    def configure_optimizers(self):
        return torch.optim.Adagrad(self.parameters(), lr=self.hparams.lr)  # LightFM's default optimiser


@dataclass
class CF(EmbeddingMethod):
    """Collaborative filtering: WARP matrix factorisation of the training playlist x track matrix.

    A track's vector is its item factor (the item bias is left out); tracks in no training
    playlist get zeros. Negatives are drawn among the tracks of the training playlists.
    """

    dim: int = 64
    epochs: int = 20
    lr: float = 0.01
    num_candidates: int = 32
    batch_size: int = 256
    accelerator: str = "cpu"
    name: ClassVar[str] = "CF"

    def embed(self, split: EvalSplit) -> np.ndarray:
        out = np.zeros((split.num_nodes, self.dim), np.float32)
        playlists = [np.asarray(p, np.int64) for p in split.train_playlists if len(p)]
        if not playlists:
            return out
        members = np.concatenate(playlists)
        tracks, items = np.unique(members, return_inverse=True)  # compact item ids for known tracks
        owner = np.repeat(np.arange(len(playlists)), [len(p) for p in playlists])
        pairs = np.unique(np.stack([owner, items], 1), axis=0)  # a track twice in a playlist counts once
        module = WarpMF(
            len(playlists),
            len(tracks),
            torch.from_numpy(pairs),
            dim=self.dim,
            lr=self.lr,
            num_candidates=self.num_candidates,
            batch_size=self.batch_size,
            seed=split.seed,
        )
        quiet_lightning()
        trainer = lightning_trainer(
            max_epochs=self.epochs,
            accelerator=self.accelerator,
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        with single_thread():
            trainer.fit(module)
        out[tracks] = module.item.detach().cpu().numpy()
        return out


# -------------------------------------------------------------------------------- word2vec family


def _word2vec(
    sentences: list[list[str]], num_nodes: int, dim: int, window: int, epochs: int, seed: int, **options
) -> np.ndarray:
    """Skip-gram Word2Vec with negative sampling over node-index tokens; [num_nodes, dim], zeros
    for nodes in no sentence. One worker thread, so a seed gives the same vectors every time."""
    from gensim.models import Word2Vec

    out = np.zeros((num_nodes, dim), np.float32)
    if not any(sentences):
        return out
    model = Word2Vec(
        sentences,
        vector_size=dim,
        window=window,
        epochs=epochs,
        sg=1,
        negative=5,
        min_count=1,
        workers=1,
        seed=seed,
        **options,
    )
    out[np.asarray(model.wv.index_to_key, dtype=np.int64)] = model.wv.vectors
    return out


def _tokens(rows, num_nodes: int) -> list[list[str]]:
    vocab = [str(i) for i in range(num_nodes)]  # one str object per node, shared by all sentences
    return [[vocab[i] for i in row] for row in rows]


@dataclass
class Track2Vec(EmbeddingMethod):
    """Word2Vec on the training playlists: tracks that share playlists get similar vectors.

    Playlists keep their order and the context window defaults to 50, wider than most
    playlists, with `shrink_windows=False`: a playlist acts as a bag of co-occurring tracks, which
    is what Track2Vec models. Every token is kept (`sample=0`): on a corpus of a few thousand
    tokens word2vec's down-sampling of frequent tokens would drop most of them.

    With `features`, the vector is the L2-normalised word2vec vector followed by each named
    group's block of `split.features`, each L2-normalised per row (the paper's
    Track2Vec-Feature; the name stays "Track2Vec"). A track in no training playlist then has a
    zero word2vec part but keeps its feature part.
    """

    dim: int = 64
    window: int = 50
    epochs: int = 20
    features: tuple[str, ...] = ()
    name: ClassVar[str] = "Track2Vec"

    def __post_init__(self):
        self.features = tuple(self.features)

    def embed(self, split: EvalSplit) -> np.ndarray:
        rows = [np.asarray(p, np.int64).tolist() for p in split.train_playlists]
        vectors = _word2vec(
            _tokens(rows, split.num_nodes),
            split.num_nodes,
            self.dim,
            self.window,
            self.epochs,
            split.seed,
            shrink_windows=False,
            sample=0,
        )
        if not self.features:
            return vectors
        blocks = [l2_normalize(vectors)] + [l2_normalize(split.features[g]) for g in self.features]
        return np.concatenate(blocks, axis=1)


def node2vec_walks(
    graph: CSRGraph,
    walk_length: int = 20,
    walks_per_node: int = 10,
    p: float = 1.0,
    q: float = 1.0,
    weighted: bool = True,
    seed: int = 0,
) -> torch.Tensor:
    """Node2vec walks, LongTensor [walkers, walk_length]: `walks_per_node` from every node with a
    neighbour (in random order; isolated nodes start none), column 0 being the start node.

    All walkers advance together, one step per loop. A step proposes a neighbour in proportion
    to the edge weight (uniformly with `weighted=False` or no weights); for p = q = 1 that is the
    step. Otherwise the proposal x from v (having come from t) is accepted with probability
    alpha / max(1/p, 1, 1/q), alpha = 1/p if x = t, 1 if x is a neighbour of t, else 1/q, and
    rejected walkers propose again: exact sampling of node2vec's w_vx * alpha transition. The
    expected rounds per step grow with max(1/p, 1, 1/q) / min(1/p, 1, 1/q).
    """
    generator = torch.Generator().manual_seed(seed)
    n, rowptr, col, degree = graph.num_nodes, graph.rowptr, graph.col, graph.degree
    edge_keys = graph.row * n + col  # sorted: CSR rows in order, columns sorted within a row
    cum = None
    if weighted and graph.weight is not None:
        cum = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(graph.weight.double(), 0)])

    def propose(v: torch.Tensor) -> torch.Tensor:
        u = torch.rand(len(v), generator=generator, dtype=torch.float64)
        if cum is None:
            at = rowptr[v] + (u * degree[v]).long()
        else:
            target = cum[rowptr[v]] + u * (cum[rowptr[v + 1]] - cum[rowptr[v]])
            at = torch.searchsorted(cum[1:], target, right=True)
            at = torch.minimum(torch.maximum(at, rowptr[v]), rowptr[v + 1] - 1)  # guard against rounding
        return col[at]

    def is_edge(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        keys = a * n + b
        at = torch.searchsorted(edge_keys, keys).clamp_(max=max(len(edge_keys) - 1, 0))
        return edge_keys[at] == keys

    starts = torch.nonzero(degree > 0).flatten().repeat(walks_per_node)
    walks = [starts[torch.randperm(len(starts), generator=generator)]]
    top = max(1 / p, 1.0, 1 / q)
    for step in range(1, walk_length):
        current = walks[-1]
        if step == 1 or p == q == 1:
            walks.append(propose(current))
            continue
        previous, nxt = walks[-2], torch.empty_like(current)
        todo = torch.arange(len(current))
        while len(todo):
            x, t = propose(current[todo]), previous[todo]
            alpha = torch.where(x == t, 1 / p, torch.where(is_edge(t, x), 1.0, 1 / q))
            accept = torch.rand(len(todo), generator=generator, dtype=torch.float64) * top < alpha
            nxt[todo[accept]] = x[accept]
            todo = todo[~accept]
        walks.append(nxt)
    return torch.stack(walks, 1)


@dataclass
class Node2Vec(EmbeddingMethod):
    """Node2vec: skip-gram Word2Vec over biased random walks on the co-occurrence graph.

    Steps follow edge weights (co-occurrence counts) unless `weighted=False`; isolated nodes
    start no walk and are reached by none, so they get zeros. `epochs=1` as in the original
    implementation. Walks are generated here because PyG's `Node2Vec` needs torch-cluster or
    pyg-lib, which do not install here.
    """

    dim: int = 64
    walk_length: int = 20
    walks_per_node: int = 10
    p: float = 1.0
    q: float = 1.0
    window: int = 5
    epochs: int = 1
    weighted: bool = True
    name: ClassVar[str] = "Node2Vec"

    def embed(self, split: EvalSplit) -> np.ndarray:
        with single_thread():
            walks = node2vec_walks(
                split.graph, self.walk_length, self.walks_per_node, self.p, self.q, self.weighted, seed=split.seed
            )
        return _word2vec(
            _tokens(walks.tolist(), split.num_nodes), split.num_nodes, self.dim, self.window, self.epochs, split.seed
        )


# ------------------------------------------------------------------------------------- features


@dataclass
class FeatureOnly(EmbeddingMethod):
    """The content-only reference: the feature block of `group` (z-scored) as the vector, without the columns
    that describe a track's place in the training graph where the group has others (`split.content`): in a
    plain cosine, a playlist count and a degree only set the tracks of training playlists apart from the rest,
    which on real playlists (most tracks to find are in none) cost the reference 0.02 HR."""

    group: str
    name: str = "Features"

    @property
    def features(self) -> tuple[str, ...]:
        return (self.group,)

    def embed(self, split: EvalSplit) -> np.ndarray:
        return np.array(split.content.get(self.group, split.features[self.group]), dtype=np.float32)


class PairMetricModule(L.LightningModule):
    """An MLP with a linear skip, L2-normalised, trained with in-batch InfoNCE on positive pairs."""

    def __init__(self, in_channels: int, hidden: int = 256, dim: int = 64, temperature: float = 0.1, lr: float = 1e-3):
        super().__init__()
        self.save_hyperparameters()
        self.mlp = nn.Sequential(nn.Linear(in_channels, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        self.skip = nn.Linear(in_channels, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.mlp(x) + self.skip(x), dim=-1)

    def training_step(self, batch, batch_idx):
        from audiograph.musig.model import info_nce

        a, b = batch
        loss = info_nce(self(a), self(b), self.hparams.temperature)
        self.log("train_loss", loss, batch_size=len(a))
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def same_playlist_pairs(playlists: list[np.ndarray], count: int, rng: np.random.Generator) -> np.ndarray:
    """[count, 2] node pairs, each two distinct tracks of one playlist drawn in proportion to its length."""
    playlists = [p for p in playlists if len(p) > 1]
    if not playlists:
        return np.zeros((0, 2), np.int64)
    sizes = np.array([len(p) for p in playlists])
    which = rng.choice(len(playlists), size=count, p=sizes / sizes.sum())
    first = (rng.random(count) * sizes[which]).astype(np.int64)
    second = (first + 1 + (rng.random(count) * (sizes[which] - 1)).astype(np.int64)) % sizes[which]
    flat, offsets = np.concatenate(playlists), np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return np.stack([flat[offsets[which] + first], flat[offsets[which] + second]], 1)


@dataclass
class ContentMetric(EmbeddingMethod):
    """A learnt content-only metric: `PairMetricModule` over the features each track has in no
    playlist (`split.cold`), trained on same-playlist pairs; every track is placed by content alone."""

    groups: tuple[str, ...]
    steps: int = 3000
    batch_size: int = 256
    temperature: float = 0.1
    accelerator: str = "cpu"
    name: ClassVar[str] = "Content metric"

    @property
    def features(self) -> tuple[str, ...]:
        return self.groups

    def embed(self, split: EvalSplit) -> np.ndarray:
        x = torch.from_numpy(np.concatenate([split.cold.get(g, split.features[g]) for g in self.groups], 1))
        pairs = torch.from_numpy(
            same_playlist_pairs(split.train_playlists, self.steps * self.batch_size, np.random.default_rng(split.seed))
        )
        if len(pairs) == 0:
            return x.numpy()
        L.seed_everything(split.seed, verbose=False)
        module = PairMetricModule(x.shape[1], temperature=self.temperature)
        loader = DataLoader(TensorDataset(x[pairs[:, 0]], x[pairs[:, 1]]), batch_size=self.batch_size)
        quiet_lightning()
        trainer = lightning_trainer(
            max_epochs=1,
            accelerator=self.accelerator,
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        with single_thread():
            trainer.fit(module, loader)
        with torch.no_grad():
            return module.eval()(x).numpy()
