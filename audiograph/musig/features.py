"""MUSIG node features (the paper's Table 1): feature groups read from the store, each standardised.

| group | source | dimensions |
|---|---|---|
| acoustic | the trained encoder's vectors (space `acoustic`) | the encoder's embedding size |
| audio | the 42 descriptors (space `descriptors`), else features imported with `import-tracks` (space `audio`) | 42, or the imported columns |
| genre | one-hot over the most common genres (top 50) of the tracks' genre labels | up to 50 |
| popularity | log number of playlists, log graph degree, and any imported popularity (space `popularity`) | 2 or 3 |

Scaling (per dimension z-score: centre and scale), the genre vocabulary and the exact vector
models used are recorded in a `FeatureSpec`, saved with the trained model, so that features of
tracks added later are built the same way. Z-scores rather than min-max: on the real Spotify
playlists, cosine over min-max features (which are not centred) loses 0.13 HR against cosine over
z-scores, and a model's inputs start from that geometry.

A track without a genre label of its own takes the genre most common among its artist's other
tracks (`artist_genres`). On the real Spotify playlists (the benchmark's held-out fifth), 47 % of
the held-out tracks in no training playlist have an artist with training tracks, and that artist's
genre is their playlist's genre for 64 % of them (chance: about a sixth).

A track's "cold" features are those it would have in no playlist: no genre label voted by
playlists (its artist's other tracks still give one), zero playlist count and degree. MUSIG trains
its cold-start case on them, because a new track arrives that way.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from audiograph.errors import ConfigError
from audiograph.spaces import ACOUSTIC_SPACE, DESCRIPTORS_SPACE

FEATURE_GROUPS = ("acoustic", "audio", "genre", "popularity")
# Vector groups read from the first of these spaces that holds vectors.
GROUP_SPACES = {"acoustic": (ACOUSTIC_SPACE,), "audio": (DESCRIPTORS_SPACE, "audio")}
# The similarity task regresses on the first of these content groups that the data has.
SIMILARITY_GROUPS = ("acoustic", "audio")
TOP_GENRES = 50


@dataclass
class FeatureSpec:
    """How node features were built: enough to rebuild them identically for any track."""

    groups: list[str]
    spaces: dict[str, str] = field(default_factory=dict)  # vector group -> space
    models: dict[str, str] = field(default_factory=dict)  # vector group -> model id of its vectors
    center: dict[str, list[float]] = field(default_factory=dict)
    scale: dict[str, list[float]] = field(default_factory=dict)
    genres: list[str] = field(default_factory=list)
    popularity_model: str | None = None  # imported popularity's model id, if used

    @property
    def dims(self) -> dict[str, int]:
        return {g: len(self.center[g]) for g in self.groups}

    @property
    def fitted(self) -> bool:
        """Whether the spec holds its groups' statistics, and so can build features of new tracks."""
        return bool(self.center or self.scale or not self.groups)

    @property
    def num_features(self) -> int:
        return sum(self.dims.values())

    def imported_groups(self) -> list[str]:
        """The vector groups read from features imported from a CSV, which a new audio file cannot have."""
        audio_spaces = (ACOUSTIC_SPACE, DESCRIPTORS_SPACE)
        return [g for g in self.groups if g in GROUP_SPACES and self.spaces.get(g) not in audio_spaces]

    def only(self, group: str) -> FeatureSpec:
        """The part of this spec that concerns one group."""
        return FeatureSpec(
            groups=[group],
            spaces={k: v for k, v in self.spaces.items() if k == group},
            models={k: v for k, v in self.models.items() if k == group},
            center={k: v for k, v in self.center.items() if k == group},
            scale={k: v for k, v in self.scale.items() if k == group},
            genres=self.genres if group == "genre" else [],
            popularity_model=self.popularity_model if group == "popularity" else None,
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSpec:
        """Rebuild from `to_dict()` output (as saved with a model). Settings from elsewhere are checked in full
        (`ConfigError`): each group's statistics finite and as long as its features, scales positive, names
        strings, no unknown key."""
        if not isinstance(d, dict):
            raise ConfigError("the feature spec is not a mapping")
        d = dict(d)
        if not _is_list_of(d.get("groups"), str):
            raise ConfigError(f"feature groups must be distinct names from {', '.join(FEATURE_GROUPS)}")
        if "minimum" in d:  # a model trained before z-scoring: min-max is a centre and a scale too
            low, high = d.pop("minimum"), d.pop("maximum", None)
            groups, genres = d["groups"], d.get("genres")
            if isinstance(low, dict) and isinstance(high, dict) and "genre" in groups:
                if "genre" not in low and isinstance(genres, list):
                    # The one-hot genres were not scaled then: a centre of 0 and a scale of 1.
                    low, high = {**low, "genre": [0.0] * len(genres)}, {**high, "genre": [1.0] * len(genres)}
            _check_statistics("minimum", low, groups)
            _check_statistics("maximum", high, groups)
            d["center"] = {g: low[g] for g in groups}
            d["scale"] = {g: [h - lo if h > lo else 1.0 for lo, h in zip(low[g], high[g])] for g in groups}
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown feature spec key(s): {', '.join(sorted(unknown))}")
        spec = cls(**d)
        spec._check()
        return spec

    def _check(self) -> None:
        groups = self.groups
        if not _is_list_of(groups, str) or len(set(groups)) != len(groups) or set(groups) - set(FEATURE_GROUPS):
            raise ConfigError(f"feature groups must be distinct names from {', '.join(FEATURE_GROUPS)}")
        for name in ("spaces", "models"):  # of the vector groups read from a store (none for features built elsewhere)
            names = getattr(self, name)
            if not isinstance(names, dict) or not all(g in groups and isinstance(v, str) for g, v in names.items()):
                raise ConfigError(f"the feature spec's {name} must map its vector groups to names")
        if not _is_list_of(self.genres, str) or len(set(self.genres)) != len(self.genres):
            raise ConfigError("the feature spec's genres must be distinct strings")
        if self.popularity_model is not None and not isinstance(self.popularity_model, str):
            raise ConfigError("the feature spec's popularity model must be a model id")
        if not self.fitted:  # features standardised elsewhere (an evaluation's): nothing more to check
            return
        _check_statistics("center", self.center, groups)
        _check_statistics("scale", self.scale, groups)
        for group in groups:
            size = len(self.center[group])
            fits = {  # popularity: two counts, and the imported columns if any
                "genre": size == len(self.genres),
                "popularity": size > 2 if self.popularity_model else size == 2,
            }.get(group, size > 0)
            if size != len(self.scale[group]) or not fits:
                raise ConfigError(f"the feature spec's statistics of '{group}' do not fit its features")
            if min(self.scale[group], default=1.0) <= 0:
                raise ConfigError(f"the feature spec's scales of '{group}' must be positive")

    def standardize(self, group: str, values: np.ndarray) -> np.ndarray:
        """Raw values of a group, centred and scaled with the recorded statistics."""
        center, scale = np.asarray(self.center[group], np.float32), np.asarray(self.scale[group], np.float32)
        return ((values - center) / scale).astype(np.float32)

    def fit(self, group: str, values: np.ndarray) -> None:
        """Record a group's per-dimension mean and standard deviation (1 where a dimension is constant)."""
        if len(values) == 0:
            raise ConfigError(f"no track has features of group '{group}'")
        std = values.std(axis=0)
        self.center[group] = values.mean(axis=0).astype(float).tolist()
        self.scale[group] = np.where(std > 1e-8, std, 1.0).astype(float).tolist()

    def one_hot(self, genres: list[str | None]) -> np.ndarray:
        """Genre labels -> one-hot rows over the vocabulary (all zeros outside it)."""
        index = {g: i for i, g in enumerate(self.genres)}
        out = np.zeros((len(genres), len(self.genres)), np.float32)
        for row, genre in enumerate(genres):
            if genre in index:
                out[row, index[genre]] = 1.0
        return out

    def assemble(self, parts: dict[str, np.ndarray]) -> np.ndarray:
        """Concatenate scaled group blocks in the spec's order."""
        return np.concatenate([parts[g] for g in self.groups], axis=1).astype(np.float32)


def _is_list_of(value, kind) -> bool:
    return isinstance(value, list) and all(isinstance(v, kind) for v in value)


def _check_statistics(name: str, statistics, groups) -> None:
    """`statistics` is group -> a list of finite numbers, for each of `groups`."""
    groups = groups if isinstance(groups, list) else []
    if not isinstance(statistics, dict) or not all(
        _is_list_of(statistics.get(g), numbers.Real)
        and not any(isinstance(v, bool) or not math.isfinite(v) for v in statistics[g])
        for g in groups
    ):
        raise ConfigError(f"the feature spec's {name} must be finite numbers for each group")


def content_presence(present: dict[str, np.ndarray]) -> np.ndarray | None:
    """Which content groups (`GROUP_SPACES`: vectors of audio files or imports) each track has, bool [N, G]
    from group -> [N] presence; None without such a group. Unlike a genre or a playlist count, these do not
    come from playlists."""
    columns = [present[g] for g in present if g in GROUP_SPACES]
    return np.stack(columns, axis=1) if columns else None


def artist_genres(genres: dict[str, str | None], artists: dict[str, str | None]) -> dict[str, str | None]:
    """track id -> the genre most common among the other tracks of its artist (None when they have none).

    A track's own label is left out, so that a track placed as if it were new never sees the genre
    its playlists voted. Artists are compared case-insensitively; ties go to the first genre by name.
    """
    key = {t: (a or "").strip().casefold() for t, a in artists.items()}
    counts: dict[str, dict[str, int]] = {}
    for track, genre in genres.items():
        if genre and key.get(track):
            by_genre = counts.setdefault(key[track], {})
            by_genre[genre] = by_genre.get(genre, 0) + 1
    result = {}
    for track, genre in genres.items():
        by_genre = counts.get(key.get(track) or "", {})
        others = [(-(n - (g == genre)), g) for g, n in by_genre.items() if n - (g == genre) > 0]
        result[track] = min(others)[1] if others else None
    return result


def parse_groups(spec: str | list[str]) -> list[str]:
    """ "acoustic,audio,genre" -> validated group names, in the canonical order."""
    names = [g.strip() for g in (spec.split(",") if isinstance(spec, str) else spec) if g.strip()]
    unknown = [g for g in names if g not in FEATURE_GROUPS]
    if unknown or not names:
        raise ConfigError(
            f"unknown feature group(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(FEATURE_GROUPS)}"
        )
    return [g for g in FEATURE_GROUPS if g in names]
