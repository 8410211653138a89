"""radio: the picks obey the hard constraints, follow the documented score (recomputed by brute force),
reduce to nearest-neighbour search without diversity, and handle the edge cases."""

import numpy as np
import pytest

from audiograph.errors import ConfigError
from audiograph.explore.radio import make_radio


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered_space(n=300, dim=24, clusters=6, spread=0.6, seed=0):
    """Unit vectors in a few clusters, with ids, and artists (some unknown) that repeat within a cluster."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    cluster = rng.integers(0, clusters, size=n)
    matrix = unit_rows(centres[cluster] + spread * rng.normal(size=(n, dim)))
    ids = [f"t{i:04d}" for i in range(n)]
    artists = [None if rng.random() < 0.15 else f"artist {c}-{rng.integers(0, 4)}" for c in cluster]
    return ids, matrix, artists, rng


def cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("diversity,walk", [(0.0, 0.0), (0.3, 0.3), (0.7, 0.0), (0.2, 0.9), (1.0, 1.0)])
def test_constraints_hold_on_random_data(diversity, walk):
    ids, matrix, artists, rng = clustered_space(seed=int(diversity * 10 + walk * 100))
    seed = matrix[0] + 0.05 * rng.normal(size=matrix.shape[1])
    threshold = 0.9
    radio = make_radio(
        seed,
        ids,
        matrix,
        artists,
        40,
        diversity=diversity,
        walk=walk,
        duplicate_threshold=threshold,
        exclude={ids[1], ids[2]},
        seed_artist=artists[3],
    )
    assert len(radio) == 40
    picked = [r.id for r in radio]
    assert len(set(picked)) == len(picked)
    assert not {ids[1], ids[2]} & set(picked)
    vectors = [seed] + [matrix[ids.index(t)] for t in picked]
    for i in range(len(vectors)):
        for j in range(i + 1, len(vectors)):
            assert cos(vectors[i], vectors[j]) <= threshold, (i, j)
    played = [artists[3]] + [artists[ids.index(t)] for t in picked]
    for before, after in zip(played, played[1:]):
        assert before is None or after is None or before.casefold() != after.casefold()
    for r in radio:
        assert r.artist == artists[ids.index(r.id)]
        assert r.seed_similarity == pytest.approx(cos(seed, matrix[ids.index(r.id)]))


def test_no_diversity_is_brute_force_top_k():
    ids, matrix, _, rng = clustered_space(n=500, seed=3)
    seed = rng.normal(size=matrix.shape[1])
    expected = np.argsort(-(matrix @ (seed / np.linalg.norm(seed))))[:25]
    radio = make_radio(seed, ids, matrix, None, 25, diversity=0.0, walk=0.0)
    assert [r.id for r in radio] == [ids[i] for i in expected]
    assert [r.seed_similarity for r in radio] == sorted((r.seed_similarity for r in radio), reverse=True)


@pytest.mark.parametrize("diversity,walk", [(0.3, 0.3), (0.6, 0.8)])
def test_each_pick_maximises_the_documented_score(diversity, walk):
    """Recompute the docstring's score for every candidate at every step with plain loops."""
    ids, matrix, artists, rng = clustered_space(n=150, seed=5)
    seed = unit_rows(rng.normal(size=(1, matrix.shape[1])))[0]
    threshold = 0.95
    radio = make_radio(seed, ids, matrix, artists, 12, diversity=diversity, walk=walk, duplicate_threshold=threshold)
    chosen: list[int] = []
    previous, previous_artist = seed, None
    for r in radio:
        best_score, best = -np.inf, None
        for c in range(len(ids)):
            v = matrix[c]
            if c in chosen or cos(seed, v) > threshold or any(cos(matrix[p], v) > threshold for p in chosen):
                continue
            if previous_artist is not None and artists[c] is not None and artists[c] == previous_artist:
                continue
            redundancy = max((cos(matrix[p], v) for p in chosen), default=0.0)
            score = (1 - diversity) * ((1 - walk) * cos(seed, v) + walk * cos(previous, v)) - diversity * redundancy
            if score > best_score + 1e-12:
                best_score, best = score, c
        assert r.id == ids[best]
        assert r.score == pytest.approx(best_score)
        chosen.append(best)
        previous, previous_artist = matrix[best], artists[best]


def test_diversity_spreads_and_walk_drifts():
    ids, matrix, _, rng = clustered_space(n=400, seed=11, spread=0.9)
    seed = matrix[7]

    def mean_pairwise(radio):
        v = matrix[[ids.index(r.id) for r in radio]]
        sims = v @ v.T
        return sims[np.triu_indices(len(v), 1)].mean()

    plain = make_radio(seed, ids, matrix, None, 20, diversity=0.0, walk=0.0, exclude={ids[7]})
    diverse = make_radio(seed, ids, matrix, None, 20, diversity=0.7, walk=0.0, exclude={ids[7]})
    drifting = make_radio(seed, ids, matrix, None, 20, diversity=0.0, walk=0.9, exclude={ids[7]})
    assert mean_pairwise(diverse) < mean_pairwise(plain) - 0.05
    assert np.mean([r.previous_similarity for r in drifting]) > np.mean([r.previous_similarity for r in plain])


def test_near_duplicates_of_the_seed_and_of_picks_are_dropped():
    rng = np.random.default_rng(2)
    base = unit_rows(rng.normal(size=(50, 16)))
    a, b = base[0], base[1]
    # "dup_a" is track a re-encoded, "seed_copy" is the seed track stored again under another id.
    matrix = unit_rows(np.vstack([base, a + 0.01 * rng.normal(size=16), b + 0.01 * rng.normal(size=16)]))
    ids = [f"t{i}" for i in range(50)] + ["dup_a", "seed_copy"]
    seed = b
    top = make_radio(seed, ids, matrix, None, 3, diversity=0.0, walk=0.0, duplicate_threshold=1.0 + 1e-9)
    assert {"t1", "seed_copy"} <= {r.id for r in top}  # without the threshold both would play
    radio = make_radio(seed, ids, matrix, None, 51, diversity=0.0, walk=0.0, duplicate_threshold=0.98)
    picked = [r.id for r in radio]
    assert "t1" not in picked and "seed_copy" not in picked
    assert ("t0" in picked) != ("dup_a" in picked)
    assert len(picked) == 49


def test_repeated_ids_play_once_and_ties_go_to_the_earlier_row():
    rng = np.random.default_rng(4)
    matrix = unit_rows(rng.normal(size=(10, 8)))
    matrix = np.vstack([matrix, matrix[3]])
    ids = [f"t{i}" for i in range(10)] + ["t3"]
    radio = make_radio(matrix[3], ids, matrix, None, 11, diversity=0.0, walk=0.0, duplicate_threshold=1.5)
    assert sorted(r.id for r in radio) == sorted(set(ids))
    assert radio[0].id == "t3"


def test_deterministic():
    ids, matrix, artists, rng = clustered_space(seed=8)
    seed = rng.normal(size=matrix.shape[1])
    first = make_radio(seed, ids, matrix, artists, 30, diversity=0.4, walk=0.5)
    second = make_radio(seed.copy(), list(ids), matrix.copy(), list(artists), 30, diversity=0.4, walk=0.5)
    assert first == second


def test_length_beyond_the_catalogue_returns_every_track_once():
    ids, matrix, _, rng = clustered_space(n=30, seed=9)
    radio = make_radio(rng.normal(size=matrix.shape[1]), ids, matrix, None, 100, duplicate_threshold=1.5)
    assert sorted(r.id for r in radio) == sorted(ids)


def test_one_artist_everywhere_stops_instead_of_repeating():
    ids, matrix, _, rng = clustered_space(n=40, seed=10)
    seed = rng.normal(size=matrix.shape[1])
    assert len(make_radio(seed, ids, matrix, ["Same Band"] * 40, 10)) == 1
    assert make_radio(seed, ids, matrix, ["same  band"] * 40, 10, seed_artist="Same Band") == []
    alternating = ["A" if i % 2 else "B" for i in range(40)]
    radio = make_radio(seed, ids, matrix, alternating, 10)
    assert len(radio) == 10
    assert all(x.artist != y.artist for x, y in zip(radio, radio[1:]))


def test_unknown_artists_never_block():
    ids, matrix, _, rng = clustered_space(n=60, seed=12)
    radio = make_radio(rng.normal(size=matrix.shape[1]), ids, matrix, [None, "", "  "] * 20, 15, seed_artist="")
    assert len(radio) == 15


def test_zero_and_non_finite_rows_are_skipped_and_other_rows_normalised():
    ids, matrix, _, rng = clustered_space(n=50, seed=13)
    scaled = (matrix * rng.uniform(0.5, 3.0, size=(50, 1))).astype(np.float32)
    scaled[[4, 9]] = 0.0
    scaled[11, 3] = np.nan
    seed = matrix[4]
    radio = make_radio(seed, ids, scaled, None, 48, diversity=0.0, walk=0.0, duplicate_threshold=1.5)
    expected = [ids[i] for i in np.argsort(-(matrix @ seed)) if i not in (4, 9, 11)]
    assert [r.id for r in radio] == expected


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(matrix=np.zeros((0, 8))), "no vectors"),
        (dict(ids=["a"]), "ids"),
        (dict(artists=["x"]), "artists"),
        (dict(seed_vector=np.zeros(8)), "zero"),
        (dict(seed_vector=np.ones(5)), "dimensions"),
        (dict(length=0), "length"),
        (dict(diversity=1.5), "diversity"),
    ],
)
def test_bad_input_is_a_config_error(change, message):
    rng = np.random.default_rng(0)
    args = dict(
        seed_vector=rng.normal(size=8),
        ids=["a", "b", "c"],
        matrix=unit_rows(rng.normal(size=(3, 8))),
        artists=[None, None, None],
        length=2,
    )
    args.update(change)
    if "matrix" in change:
        args["ids"], args["artists"] = [], []
    with pytest.raises(ConfigError, match=message):
        make_radio(**args)


def test_candidates_come_from_the_seed_neighbourhood_only():
    ids, matrix, _, rng = clustered_space(n=200, seed=14)
    seed = rng.normal(size=matrix.shape[1])
    nearest = {ids[i] for i in np.argsort(-(matrix @ seed))[:8]}
    radio = make_radio(seed, ids, matrix, None, 20, diversity=0.8, walk=0.5, pool_size=8, duplicate_threshold=1.5)
    assert {r.id for r in radio} == nearest
