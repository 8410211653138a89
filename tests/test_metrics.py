"""Playlist-completion metrics against independent implementations, a hand-worked case and chance level."""

import math

import numpy as np
import pytest

from audiograph.eval.metrics import METRICS, case_metrics, mean_std, paired_test, rank_candidates, summarise


def random_cases(count: int, seed: int):
    """(ranking, targets) pairs: a shuffled candidate set of node ids and a random non-empty subset."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        size = int(rng.integers(2, 60))
        ranking = rng.choice(1000, size=size, replace=False)
        targets = rng.choice(ranking, size=int(rng.integers(1, size + 1)), replace=False)
        yield ranking, targets


def test_hand_worked_case():
    ranking = np.array([7, 3, 42, 5, 9, 100, 1, 8, 0, 2, 11, 6])
    targets = np.array([6, 42, 7, 11, 5, 8])  # ranks 1, 3, 4, 8, 11, 12
    got = case_metrics(ranking, targets)
    assert list(got) == list(METRICS)
    g = [1 / math.log2(r + 1) for r in range(1, 11)]
    expected = {
        "HR": 3 / 6,
        "MRR": (1 + 1 + 1 + 1 + 1 / 2 + 1 / 2) / 6,
        "P@1": 1.0,
        "P@5": 3 / 5,
        "P@10": 4 / 10,
        "NDCG@1": 1.0,
        "NDCG@5": (g[0] + g[2] + g[3]) / sum(g[:5]),
        "NDCG@10": (g[0] + g[2] + g[3] + g[7]) / sum(g[:6]),
    }
    assert got == pytest.approx(expected, abs=1e-12)


def test_edge_cases():
    ranking = np.arange(20)
    perfect = case_metrics(ranking, np.arange(10))
    assert perfect == pytest.approx({m: 1.0 for m in METRICS})
    worst = case_metrics(ranking, np.arange(10, 20))
    assert worst["HR"] == 0.0 and worst["P@10"] == 0.0 and worst["NDCG@10"] == 0.0
    assert worst["MRR"] == pytest.approx(0.5)
    # A target the ranking never reached is a miss but stays in the denominators.
    assert case_metrics(np.array([1, 2]), np.array([1, 99]))["HR"] == 0.5
    with pytest.raises(ValueError):
        case_metrics(ranking, np.array([], dtype=int))


def test_hr_and_mrr_against_brute_force():
    for ranking, targets in random_cases(300, seed=1):
        wanted = set(targets.tolist())
        k = len(wanted)
        hr = len(set(ranking[:k].tolist()) & wanted) / k
        total = 0.0
        for rank, node in enumerate(ranking.tolist(), start=1):
            if node in wanted:
                total += 1 / math.ceil(rank / 10)
        got = case_metrics(ranking, targets)
        assert got["HR"] == pytest.approx(hr, abs=1e-12)
        assert got["MRR"] == pytest.approx(total / k, abs=1e-12)


def test_precision_and_ndcg_against_torchmetrics():
    torch = pytest.importorskip("torch")
    retrieval = pytest.importorskip("torchmetrics.functional.retrieval")
    for ranking, targets in random_cases(300, seed=2):
        # Strictly descending scores len..1 reproduce `ranking` exactly, with no ties to average.
        preds = torch.arange(len(ranking), 0, -1, dtype=torch.float64)
        relevant = torch.from_numpy(np.isin(ranking, targets))
        got = case_metrics(ranking, targets)
        for k in (1, 5, 10):
            p = retrieval.retrieval_precision(preds, relevant, top_k=k).item()
            ndcg = retrieval.retrieval_normalized_dcg(preds, relevant, top_k=k).item()
            assert got[f"P@{k}"] == pytest.approx(p, abs=1e-6), (k, ranking, targets)
            assert got[f"NDCG@{k}"] == pytest.approx(ndcg, abs=1e-6), (k, ranking, targets)


def test_ndcg_against_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    for ranking, targets in random_cases(300, seed=3):
        scores = np.arange(len(ranking), 0, -1, dtype=np.float64)[None]
        relevant = np.isin(ranking, targets).astype(np.float64)[None]
        got = case_metrics(ranking, targets)
        for k in (1, 5, 10):
            assert got[f"NDCG@{k}"] == pytest.approx(metrics.ndcg_score(relevant, scores, k=k), abs=1e-12)


def brute_force_scores(vectors, seeds, candidates):
    def unit(v):
        n = math.sqrt(sum(x * x for x in v))
        return [x / n for x in v] if n > 0 else [0.0] * len(v)

    units = [unit(vectors[s].tolist()) for s in seeds]
    centre = [sum(u[j] for u in units) / len(units) for j in range(vectors.shape[1])]
    out = []
    for c in candidates:
        v = vectors[c].tolist()
        nv = math.sqrt(sum(x * x for x in v))
        nc = math.sqrt(sum(x * x for x in centre))
        out.append(0.0 if nv == 0 or nc == 0 else sum(a * b for a, b in zip(v, centre)) / (nv * nc))
    return dict(zip(candidates.tolist(), out))


def test_rank_candidates_against_brute_force():
    rng = np.random.default_rng(4)
    for _ in range(40):
        vectors = rng.normal(size=(60, 8)).astype(np.float32)
        vectors[rng.choice(60, size=5, replace=False)] = 0.0
        seeds = rng.choice(60, size=int(rng.integers(1, 10)), replace=False)
        candidates = rng.choice(60, size=20, replace=False)
        order = rank_candidates(vectors, seeds, candidates)
        assert sorted(order.tolist()) == sorted(candidates.tolist())
        expected = brute_force_scores(vectors, seeds, candidates)
        ranked_scores = np.array([expected[c] for c in order.tolist()])
        assert np.all(np.diff(ranked_scores) <= 1e-9)
        # Same ordering as the brute-force scores wherever they are not near-ties.
        brute_order = sorted(candidates.tolist(), key=lambda c: -expected[c])
        assert np.allclose(ranked_scores, [expected[c] for c in brute_order], atol=1e-9)


def test_rank_candidates_zero_vectors_and_ties():
    vectors = np.array(
        [
            [1.0, 0.0],  # 0: seed
            [0.0, 0.0],  # 1: zero -> cosine 0
            [2.0, 2.0],  # 2: cosine 1/sqrt(2)
            [1.0, 1.0],  # 3: same direction as 2
            [-1.0, 0.0],  # 4: cosine -1
            [0.0, 3.0],  # 5: cosine 0, like the zero row
            [5.0, 0.0],  # 6: cosine 1
            [0.0, 3.0],  # 7: exact copy of 5
        ]
    )
    order = rank_candidates(vectors, np.array([0]), np.array([4, 7, 1, 3, 5, 6, 2]))
    # 3 and 2 tie (equal up to rounding of the normalisation); 7, 1, 5 tie at 0 and keep the given order.
    assert order[0] == 6 and set(order[1:3].tolist()) == {2, 3}
    assert order[3:].tolist() == [7, 1, 5, 4]
    assert rank_candidates(vectors, np.array([0]), np.array([7, 5])).tolist() == [7, 5]
    assert rank_candidates(vectors, np.array([0]), np.array([5, 7])).tolist() == [5, 7]
    # Zero seed mean: every candidate scores 0, so the given order is kept.
    assert rank_candidates(vectors, np.array([1]), np.array([4, 2, 6])).tolist() == [4, 2, 6]
    # Opposite seeds cancel: the mean is zero as well.
    assert rank_candidates(vectors, np.array([0, 4]), np.array([6, 5, 4])).tolist() == [6, 5, 4]
    with pytest.raises(ValueError):
        rank_candidates(vectors, np.array([], dtype=int), np.array([1]))


def test_random_vectors_give_chance_hit_rate():
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(5000, 16))
    per_case = []
    for _ in range(1000):
        nodes = rng.choice(len(vectors), size=60, replace=False)
        seeds, targets, decoys = nodes[:20], nodes[20:40], nodes[40:]
        candidates = rng.permutation(np.concatenate([targets, decoys]))
        per_case.append(case_metrics(rank_candidates(vectors, seeds, candidates), targets))
    # Per case HR = X/20, X hypergeometric: sd ~ 0.08, so the mean of 1000 has sd ~ 0.0025.
    assert summarise(per_case)["HR"] == pytest.approx(0.5, abs=0.015)


def test_clustered_vectors_give_perfect_hit_rate():
    rng = np.random.default_rng(6)
    direction = rng.normal(size=16)
    related = direction + 0.01 * rng.normal(size=(30, 16))
    decoys = -direction + rng.normal(size=(15, 16))
    vectors = np.vstack([related, decoys])
    order = rank_candidates(vectors, np.arange(15), rng.permutation(np.arange(15, 45)))
    assert case_metrics(order, np.arange(15, 30))["HR"] == 1.0


def test_summarise_and_mean_std():
    cases = [dict.fromkeys(METRICS, 0.0), dict.fromkeys(METRICS, 1.0), dict.fromkeys(METRICS, 0.5)]
    assert summarise(cases) == pytest.approx(dict.fromkeys(METRICS, 0.5))
    runs = [{"HR": 0.5, "MRR": 0.1}, {"HR": 0.7, "MRR": 0.1}, {"HR": 0.6, "MRR": 0.4}]
    got = mean_std(runs)
    assert got["HR"] == pytest.approx((0.6, 0.1))
    assert got["MRR"] == pytest.approx((0.2, math.sqrt(0.03)))
    assert mean_std([{"HR": 0.3}]) == {"HR": (0.3, 0.0)}


def test_paired_test():
    rng = np.random.default_rng(7)
    a = rng.uniform(size=200)
    for test in ("wilcoxon", "t"):
        assert paired_test(a, a.copy(), test=test) == 1.0
        assert paired_test(a + 0.1 + 0.01 * rng.normal(size=200), a, test=test) < 1e-6
        assert paired_test(a + 0.01 * rng.normal(size=200), a, test=test) > 1e-3
    with pytest.raises(ValueError):
        paired_test(a, a[:-1])
    with pytest.raises(ValueError):
        paired_test(a, a, test="sign")
