"""The numeric parameter space of styles: for drawing new genres far apart and for artists' variations."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from audiograph.synth.genres import ARCHETYPES, GROOVES, PARTS, Style, load_tables

# name -> (low, high, log scale). "tempo" and "root" are the centres of the styles' ranges.
_TIMBRE_RANGES = {name: tuple(r) for name, r in load_tables()["timbre_ranges"].items()}
PARAMETER_RANGES = {
    **{name: tuple(r) for name, r in load_tables()["parameter_ranges"].items()},
    **{f"{part}.{name}": r for part in PARTS for name, r in _TIMBRE_RANGES.items()},
}
_CANDIDATES = 256  # random points per drawn genre, of which the one farthest from every earlier genre wins


def _to_unit(value: float, low: float, high: float, log: bool) -> float:
    if log:
        value, low, high = math.log(value), math.log(low), math.log(high)
    return (value - low) / (high - low)


def _from_unit(unit: float, low: float, high: float, log: bool) -> float:
    if log:
        return math.exp(math.log(low) + unit * (math.log(high) - math.log(low)))
    return low + unit * (high - low)


def _parameter(style: Style, key: str) -> float:
    if key in ("tempo", "root"):
        return sum(getattr(style, key)) / 2
    value = style
    for name in key.split("."):
        value = getattr(value, name)
    return value


def style_vector(style: Style) -> np.ndarray:
    """`style`'s numeric parameters as coordinates in the unit cube, in the order of PARAMETER_RANGES."""
    return np.array([_to_unit(_parameter(style, key), *r) for key, r in PARAMETER_RANGES.items()])


def with_vector(style: Style, vector: np.ndarray) -> Style:
    """`style` with its numeric parameters set from unit coordinates; ranges keep their widths."""
    units = np.clip(vector, 0, 1).tolist()
    values = {key: _from_unit(u, *r) for (key, r), u in zip(PARAMETER_RANGES.items(), units, strict=True)}
    timbres = {
        part: replace(getattr(style, part), **{k[len(part) + 1 :]: v for k, v in values.items() if k.startswith(part)})
        for part in PARTS
    }
    scalars = {k: v for k, v in values.items() if "." not in k and k not in ("tempo", "root")}
    tempo_spread = (style.tempo[1] - style.tempo[0]) / sum(style.tempo)
    root_spread = (style.root[1] - style.root[0]) // 2
    root = round(values["root"])
    return replace(
        style,
        tempo=(values["tempo"] * (1 - tempo_spread), values["tempo"] * (1 + tempo_spread)),
        root=(root - root_spread, root + root_spread),
        **scalars,
        **timbres,
    )


def draw_styles(count: int, rng: np.random.Generator) -> list[Style]:
    """The archetypes, then genres drawn far from every earlier one (farthest-point sampling)."""
    styles = list(ARCHETYPES[:count])
    taken = [style_vector(s) for s in ARCHETYPES]
    while len(styles) < count:
        candidates = rng.random((_CANDIDATES, len(PARAMETER_RANGES)))
        nearest = np.min([np.linalg.norm(candidates - t, axis=1) for t in taken], axis=0)
        vector = candidates[np.argmax(nearest)]
        taken.append(vector)
        styles.append(with_vector(_random_recipe(rng, f"genre-{len(styles) + 1:02d}"), vector))
    return styles


def _random_recipe(rng: np.random.Generator, name: str) -> Style:
    """A style named `name` whose categorical choices each come from a random archetype."""

    def pick(attribute):
        return getattr(ARCHETYPES[rng.integers(len(ARCHETYPES))], attribute)

    return replace(
        ARCHETYPES[0],
        name=name,
        groove=str(rng.choice(list(GROOVES))),
        scales=(pick("scales")[0], pick("scales")[1]),
        progressions=pick("progressions"),
        chord_notes=pick("chord_notes"),
        chord_rhythm=pick("chord_rhythm"),
        bass_rhythm=pick("bass_rhythm"),
        bass_line=pick("bass_line"),
    )
