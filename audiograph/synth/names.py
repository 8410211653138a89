"""Invented names for artists, albums and tracks: pronounceable, sometimes accented, sometimes with quotes."""

from __future__ import annotations

import numpy as np

_ONSETS = (
    "b",
    "br",
    "c",
    "ch",
    "d",
    "dr",
    "f",
    "fl",
    "g",
    "gr",
    "h",
    "j",
    "k",
    "kr",
    "l",
    "m",
    "n",
    "p",
    "pr",
    "r",
    "s",
    "sh",
    "st",
    "t",
    "tr",
    "v",
    "w",
    "z",
)
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ai", "ou", "ea")
_CODAS = ("", "", "", "n", "r", "l", "s", "m", "x", "nd", "rk", "st")
_ACCENTED = {"a": "å", "e": "é", "i": "í", "o": "ö", "u": "ü"}
_WORD_LIST = (
    "Midnight, Rain, Echo, Neon, Golden, River, Dream, Fire, Shadow, Summer, Ghost, Velvet, Silver, Heart, "
    "Ocean, Static, Paper, Wild, Blue, Broken, Northern, Electric, Sunday, Lonely, Crystal, Morning, Winter, "
    "Honey, Signal, Mirror, Garden, Thunder, Glass, Desert, Satellite, Harbour, Lantern, Café, Mañana, Déjà Vu"
)
_WORDS = tuple(_WORD_LIST.split(", "))
# {N} is an invented name, {W} a word.
ARTIST_FORMS = (
    "{N}",
    "{N} {N}",
    "The {W} Club",
    "DJ {N}",
    "{N} and the {W}",
    "{N} Trio",
    "{N} Collective",
    "MC {N}",
    "{N} Ensemble",
)
ALBUM_FORMS = ("{W}", "{W} {W}", "The {W} Sessions", "{W} & {W}", "Live in {N}", "{W}, Vol. 2")
TITLE_FORMS = (
    "{W}",
    "{W} {W}",
    "{W} of the {W}",
    "Into the {W}",
    "Last {W}",
    "{W} Song",
    "{N}",
    "{W} ({N} Remix)",
    "{N}'s {W}",
    "Don't Fear the {W}",
)


def pick(rng: np.random.Generator, options):
    """One of `options`, drawn uniformly."""
    return options[rng.integers(len(options))]


def _invented_name(rng: np.random.Generator) -> str:
    name = "".join(pick(rng, _ONSETS) + pick(rng, _VOWELS) for _ in range(rng.integers(1, 4))) + pick(rng, _CODAS)
    if rng.random() < 0.08:
        i = pick(rng, [i for i, c in enumerate(name) if c in _ACCENTED])
        name = name[:i] + _ACCENTED[name[i]] + name[i + 1 :]
    return name.capitalize()


def make_name(rng: np.random.Generator, forms: tuple[str, ...]) -> str:
    """A name in one of `forms`, its {N} filled with invented names and its {W} with words."""
    parts = pick(rng, forms).split(" ")
    filled = [p.replace("{N}", _invented_name(rng)).replace("{W}", pick(rng, _WORDS)) for p in parts]
    return " ".join(filled)


def unique_name(rng: np.random.Generator, forms: tuple[str, ...], taken: set[str]) -> str:
    """`make_name` drawn until it is not in `taken`, then added to it."""
    name = make_name(rng, forms)
    while name in taken:
        name = make_name(rng, forms)
    taken.add(name)
    return name
