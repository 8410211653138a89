"""`make_radio`: a playlist that starts from a seed and walks a vector space, trading similarity for variety.

Pure numpy: the caller loads the space (ids, unit vectors, artists) and writes the playlist.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from audiograph.errors import ConfigError


@dataclass(frozen=True)
class RadioTrack:
    """One pick of the radio: the track, and the cosines and score that chose it."""

    id: str
    artist: str | None
    seed_similarity: float  # cosine to the seed
    previous_similarity: float  # cosine to the track played before it (the seed for the first pick)
    score: float  # the marginal-relevance score it won with


# Above this cosine two tracks are near-duplicates (the same recording stored twice, a re-upload): never both.
DUPLICATE_COSINE = 0.98


def _artist_key(artist: str | None) -> str | None:
    """Artists compare case- and space-insensitively; an empty or missing artist is unknown (None)."""
    if artist is None:
        return None
    key = " ".join(str(artist).split()).casefold()
    return key or None


def make_radio(
    seed_vector: np.ndarray,
    ids: Sequence[str],
    matrix: np.ndarray,
    artists: Sequence[str | None] | None,
    length: int,
    *,
    exclude: set[str] | frozenset[str] = frozenset(),
    diversity: float = 0.4,
    walk: float = 0.3,
    duplicate_threshold: float = DUPLICATE_COSINE,
    seed_artist: str | None = None,
    pool_size: int | None = None,
) -> list[RadioTrack]:
    """Up to `length` tracks that start near the seed and walk away from it step by step, never repeating.

    The rule (maximal marginal relevance over the seed's neighbourhood):

    - Candidates are the `pool_size` tracks most similar to the seed by cosine (default
      `max(20 * length, 200)`), after dropping the ids in `exclude` (pass the seed's own id there when
      the seed is a stored track) and rows that are all zero.
    - Each step picks the candidate with the highest score
      `(1 - diversity) * ((1 - walk) * cos(seed, c) + walk * cos(previous, c)) - diversity * max cos(chosen, c)`,
      where `previous` is the last pick (the seed itself at the first step) and the maximum is over the
      tracks already picked (0 before the first pick). `diversity=0, walk=0` is plain nearest-neighbour
      search; raising `walk` lets the playlist drift along the space, raising `diversity` spreads it.
      On the Spotify tracks' z-scored audio features (20 tracks from 200 seeds), the defaults lower the
      mean cosine between picks from 0.865 (plain search) to 0.835 while the share of picks in the
      seed's genre stays at 0.37 (0.38 plain, 0.17 by chance); diversity 0.5 gives 0.743 and 0.34.
    - Hard constraints, never traded against the score: no id twice; no near-duplicate, meaning no
      candidate whose cosine to the seed or to any picked track is above `duplicate_threshold` (the same
      recording stored twice, a re-upload); and no artist twice in a row (compared case-insensitively;
      the first pick must differ from `seed_artist` when given; an unknown artist never blocks).
    - Ties go to the candidate nearer the seed, then to the one earlier in `ids`, so the result is
      deterministic.

    The playlist ends early when no candidate satisfies the constraints (a catalogue smaller than
    `length`, or a neighbourhood all by one artist); it never breaks a constraint to reach `length`.
    `matrix` rows are expected to be unit vectors; other rows are normalised here.
    """
    matrix, seed, artists = _checked_inputs(seed_vector, ids, matrix, artists, length, diversity, walk)
    pool_size = max(20 * length, 200) if pool_size is None else pool_size
    pool_index, pool_seed_sims, pool = _candidate_pool(matrix, seed, ids, exclude, pool_size)
    pool_artists = [_artist_key(artists[i]) for i in pool_index]
    pool_ids = np.array([ids[i] for i in pool_index], dtype=object)
    picks = _walk(
        pool, pool_ids, pool_seed_sims, pool_artists, length, diversity, walk, duplicate_threshold, seed_artist
    )
    return [
        RadioTrack(ids[pool_index[i]], artists[pool_index[i]], float(pool_seed_sims[i]), prev, score)
        for i, prev, score in picks
    ]


def _checked_inputs(seed_vector, ids, matrix, artists, length, diversity, walk):
    """(matrix as floats, the unit seed vector, artists per row), or a `ConfigError` naming what is wrong."""
    matrix = np.asarray(matrix)  # no copy: a store's space can be large, and float32
    if not np.issubdtype(matrix.dtype, np.floating):
        matrix = matrix.astype(np.float64)
    seed = np.asarray(seed_vector, dtype=np.float64).ravel()
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise ConfigError("radio: the space holds no vectors to choose from")
    n, dim = matrix.shape
    if len(ids) != n:
        raise ConfigError(f"radio: {len(ids)} ids for {n} vectors")
    if artists is None:
        artists = [None] * n
    elif len(artists) != n:
        raise ConfigError(f"radio: {len(artists)} artists for {n} vectors")
    if seed.shape[0] != dim:
        raise ConfigError(f"radio: the seed vector has {seed.shape[0]} dimensions, the space {dim}")
    if length < 1:
        raise ConfigError(f"radio: the length must be at least 1 (got {length})")
    for name, value in (("diversity", diversity), ("walk", walk)):
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"radio: {name} must be between 0 and 1 (got {value})")
    seed_norm = np.linalg.norm(seed)
    if not np.isfinite(seed_norm) or seed_norm == 0:
        raise ConfigError("radio: the seed vector is zero or not finite")
    return matrix, seed / seed_norm, artists


def _candidate_pool(matrix, seed, ids, exclude, pool_size):
    """(row indices, cosines to the seed, unit rows) of the `pool_size` usable rows nearest the seed, by
    similarity then by position."""
    with np.errstate(over="ignore", invalid="ignore"):  # non-finite rows are dropped just below
        norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix, dtype=np.float64))
        dots = matrix @ seed.astype(matrix.dtype)
    usable = np.isfinite(norms) & (norms > 0)
    if exclude:
        usable &= np.array([track_id not in exclude for track_id in ids])
    candidates = np.flatnonzero(usable)
    seed_sims = dots[candidates] / norms[candidates]

    # The pool: the most seed-similar candidates, ordered by similarity then by position (stable).
    if pool_size < 1:
        raise ConfigError(f"radio: the candidate pool must hold at least 1 track (got {pool_size})")
    order = np.argsort(-seed_sims, kind="stable")[:pool_size]
    pool_index, pool_seed_sims = candidates[order], seed_sims[order].astype(np.float64)
    pool = matrix[pool_index].astype(np.float64) / norms[pool_index, None]
    return pool_index, pool_seed_sims, pool


def _walk(pool, pool_ids, seed_sims, pool_artists, length, diversity, walk, duplicate_threshold, seed_artist):
    """The greedy picks over the pool's unit rows: (pool row, cosine to the previous pick, score) each."""
    artists = np.array(pool_artists, dtype=object)
    available = seed_sims <= duplicate_threshold  # the seed's own near-duplicates never play
    max_chosen_sims = np.zeros(len(pool))
    previous_sims = seed_sims.copy()
    previous_artist = _artist_key(seed_artist)
    picks: list[tuple[int, float, float]] = []
    while len(picks) < length:
        relevance = (1.0 - walk) * seed_sims + walk * previous_sims
        scores = (1.0 - diversity) * relevance - diversity * max_chosen_sims
        eligible = available.copy()
        if previous_artist is not None:
            eligible &= artists != previous_artist
        if not eligible.any():
            break
        best = int(np.argmax(np.where(eligible, scores, -np.inf)))  # first maximum: nearer the seed wins ties
        picks.append((best, float(previous_sims[best]), float(scores[best])))
        previous_sims = pool @ pool[best]
        max_chosen_sims = previous_sims.copy() if len(picks) == 1 else np.maximum(max_chosen_sims, previous_sims)
        available &= (previous_sims <= duplicate_threshold) & (pool_ids != pool_ids[best])
        previous_artist = artists[best]
    return picks
