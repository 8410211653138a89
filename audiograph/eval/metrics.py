"""Playlist-completion metrics of the MUSIG paper (§4.3): HR, scaled MRR, P@k and NDCG@k.

One case is one held-out playlist: `ranking` holds its candidate node indices sorted best first,
`targets` the node indices of its held-out tracks (the other candidates are random decoys).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

METRICS = ("HR", "MRR", "P@1", "P@5", "P@10", "NDCG@1", "NDCG@5", "NDCG@10")

_MRR_SCALE = 10
_KS = (1, 5, 10)


def case_metrics(ranking: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """All of `METRICS` for one playlist.

    - HR: Eq. 7 read as "K = the (100 - x) % of the playlist that was held out", i.e. K = |targets|,
      the size of the recommended list; HR = |top-K ∩ targets| / |targets|. With as many random
      decoys as targets, a random ranking scores about 0.5.
    - MRR: PinSAGE's scaled MRR with factor 10, (1/n) Σ_u 1 / ceil(R_u / 10) over the n targets,
      R_u the 1-based rank of u. The paper's bracket is read as a ceiling: a floor would divide
      by zero for the top 9 ranks.
    - P@k: targets among the top k, divided by k.
    - NDCG@k: binary relevance, gain 1 / log2(rank + 1), ideal DCG from min(k, |targets|) hits.

    Duplicate targets count once; a target missing from `ranking` counts as never ranked (a miss
    everywhere, still in every denominator).
    """
    ranking = np.asarray(ranking)
    targets = np.unique(np.asarray(targets))
    n = len(targets)
    if n == 0:
        raise ValueError("a case needs at least one target")
    relevant = np.isin(ranking, targets)
    ranks = np.flatnonzero(relevant) + 1
    discounts = 1.0 / np.log2(np.arange(2, max(_KS) + 2))
    out = {
        "HR": np.count_nonzero(relevant[:n]) / n,
        "MRR": float(np.sum(1.0 / np.ceil(ranks / _MRR_SCALE))) / n,
    }
    for k in _KS:
        out[f"P@{k}"] = np.count_nonzero(relevant[:k]) / k
    for k in _KS:
        top = relevant[:k]
        dcg = float(discounts[: len(top)][top].sum())
        ideal = float(discounts[: min(k, n)].sum())
        out[f"NDCG@{k}"] = dcg / ideal
    return {name: float(out[name]) for name in METRICS}


def rank_candidates(vectors: np.ndarray, seeds: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """`candidates` sorted by descending cosine similarity to the mean of the seeds' unit vectors.

    Rows are L2-normalised first; zero rows stay zero, so their cosine is 0. Equal scores keep
    the order in which the candidates were given (stable sort), so results are deterministic.
    """
    seeds = np.asarray(seeds, dtype=np.int64)
    candidates = np.asarray(candidates, dtype=np.int64)
    if len(seeds) == 0:
        raise ValueError("a seed list needs at least one track")
    centre = _unit_rows(vectors[seeds]).mean(axis=0)
    norm = np.linalg.norm(centre)
    if norm > 0:
        centre /= norm
    scores = _unit_rows(vectors[candidates]) @ centre
    return candidates[np.argsort(-scores, kind="stable")]


def _unit_rows(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)


def summarise(per_case: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over the cases (one repetition's score)."""
    if not per_case:
        raise ValueError("no cases to summarise")
    return {name: float(np.mean([case[name] for case in per_case])) for name in per_case[0]}


def mean_std(runs: list[dict[str, float]]) -> dict[str, tuple[float, float]]:
    """Per metric, the mean and sample standard deviation (ddof=1; 0.0 for one run) over repetitions."""
    if not runs:
        raise ValueError("no runs to combine")
    out = {}
    for name in runs[0]:
        values = np.array([run[name] for run in runs], dtype=np.float64)
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out[name] = (float(values.mean()), std)
    return out


def paired_test(a: np.ndarray, b: np.ndarray, test: str = "wilcoxon") -> float:
    """Two-sided p-value of a paired test ("wilcoxon" signed-rank or "t" for `ttest_rel`) between
    two methods' per-playlist scores, given for the same playlists in the same order; 1.0 when
    every difference is zero."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores need two 1-D arrays of one length, got {a.shape} and {b.shape}")
    if test not in ("wilcoxon", "t"):
        raise ValueError(f"unknown test {test!r}: use 'wilcoxon' or 't'")
    # scipy raises (older) or warns (newer) on all-zero differences; the answer is no evidence.
    if np.all(a == b):
        return 1.0
    if test == "wilcoxon":
        result = stats.wilcoxon(a, b, alternative="two-sided")
    else:
        result = stats.ttest_rel(a, b, alternative="two-sided")
    return float(result.pvalue)
