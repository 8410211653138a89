"""A synthetic music collection with ground truth, for tests, demos and experiments.

`synthesize` writes, under OUT_DIR:

    audio/<Artist>/<Album>/<NN> <Title>.<ext>   procedurally rendered tracks: MP3 (~70 %), WAV, FLAC and
                                                 OGG Vorbis at mixed rates, mono and stereo, tagged inside
    playlists/<NNN> <Name>.m3u8                  entries relative to the playlist file
    tracks.csv                                   ground truth of every good track
    faults.csv                                   with_faults only: path,kind of every deliberately broken entry
    .audiograph-synth                            the arguments; marks the folder as synth output to replace

Music model. Each genre is a `Style`: tempo range, drum groove, harmony (scales, progressions, chord
voicing), three instrument timbres (harmonic rolloff, odd/even balance, bell partials, FM, chorus
detune, vibrato, envelope), distortion drive, drum level and colour, and reverb. The first eight
genres are hand-designed archetypes; further genres are drawn far apart in the same parameter space.
Artists vary their genre's style slightly and have their own key and tempo; every track has its own
melody and progression. Two latent factors cut across genres: energy (tempo about +-15 %, drum
velocity and ghost notes, brightness, distortion, loudness) and valence (major or minor scale,
register). Both are in tracks.csv, so a genre is recognisable from audio while single descriptors
such as tempo or spectral centroid overlap between genres.

Playlists come from a latent taste model: heavy-tailed track popularity (popular artists, popular
tracks) drives which tracks are drawn; ~60 % of playlists follow one genre (genres themselves have
skewed popularity; some prefer an energy range or an artist), ~20 % mix 2-3 genres and ~20 % gather
high or low energy or valence from every genre. So co-occurrence is genre-aligned only in part.
Coverage: after the draws, every good track still in no playlist is appended to the shortest
playlist whose pool admits it, up to `_MAX_PLAYLIST_LENGTH` entries and half the catalogue. Every
track therefore ends up in a playlist unless the playlists cannot hold the catalogue (roughly
tracks > playlists * 100) or there are fewer playlists than genres; `SynthResult.unplaylisted`
counts the tracks left out. The duplicate copy written by `with_faults` is never put in a playlist.
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import json
import math
import os
import shutil
import zlib
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf
from scipy.signal import butter, fftconvolve, sosfilt

from audiograph.errors import ConfigError
from audiograph.runtime import progress_bar

TRACK_COLUMNS = (
    "path", "title", "artist", "album", "genre", "energy", "valence", "popularity",
    "duration", "sample_rate", "channels", "format",
)  # fmt: skip
FAULT_COLUMNS = ("path", "kind")
_MARKER = ".audiograph-synth"
_OUTPUTS = ("audio", "playlists", "tracks.csv", "faults.csv")
_MAX_PLAYLIST_LENGTH = 100


@dataclass
class SynthResult:
    """What `synthesize` wrote: counts of good tracks and playlists, and every fault as (path, kind)."""

    out_dir: Path
    tracks: int
    playlists: int
    faults: list[tuple[str, str]] = field(default_factory=list)
    unplaylisted: int = 0  # good tracks in no playlist (see the module docstring on coverage)


# -- genres ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timbre:
    """How one instrument sounds: harmonic spectrum, inharmonic partials, modulation and envelope."""

    rolloff: float  # harmonic k has amplitude k**-rolloff: low is bright (saw ~1), high is dull (~sine)
    odd_even: float = 1.0  # gain of the even harmonics: 0 is hollow (square, clarinet), 1 is full (saw)
    bell: float = 0.0  # level of inharmonic bell partials
    fm_index: float = 0.0  # phase-modulation depth, decaying with the note like an electric piano
    fm_ratio: float = 1.0  # modulator frequency / note frequency
    detune: float = 0.0  # cents between three chorus voices; 0 is a single voice
    vibrato: float = 0.0  # depth: 1 is a 3 % frequency swing
    attack: float = 0.005  # seconds
    decay: float = 1.0  # seconds, time constant of the amplitude decay: large is a sustained pad


@dataclass(frozen=True)
class Style:
    """A genre's musical recipe; artists vary it slightly, energy and valence shift it per track."""

    name: str
    tempo: tuple[float, float]  # bpm range of the genre's artists
    groove: str  # key of _GROOVES
    swing: float  # delay of the off-beat eighths, as a fraction of an eighth
    jitter: float  # timing humanisation, seconds (0 is a quantised machine)
    root: tuple[int, int]  # MIDI range of the key's root, in the bass register
    scales: tuple[str, str]  # (bright, dark) keys of _SCALES: valence chooses between them
    progressions: tuple[tuple[int, ...], ...]  # chord roots as scale degrees, one chord per bar
    chord_notes: int  # 2 is a power chord (root, fifth, octave), 3 a triad, 4 a seventh chord
    chord_rhythm: str  # 16-step onset pattern of the chords; "" holds each chord for its bar
    bass_rhythm: str
    bass_line: str  # "root", "walk" (walking bass) or "arpeggio" (broken chords)
    melody_density: float  # chance of a melody onset per sixteenth
    chords: Timbre
    lead: Timbre
    bass: Timbre
    drive: float  # tanh distortion of chords and lead; 1 is nearly clean
    drum_level: float
    hat_cutoff: float  # Hz: colour of the hats and the snare's noise
    reverb: float  # wet level
    reverb_seconds: float  # RT60
    energy_bias: float  # typical energy of the genre's tracks


class _Groove(NamedTuple):
    """Drum patterns over one bar of sixteenths: X accent, x hit, o ghost note, . rest."""

    kick: str
    snare: str
    hat: str
    hat_decay: float  # seconds: a closed hat ~0.04, an open hat or ride ~0.3


_GROOVES = {
    "none": _Groove("", "", "", 0.05),
    "four_on_floor": _Groove("X...X...X...X...", "....x.......x...", "..x...x...x...x.", 0.15),
    "backbeat": _Groove("X.....x.X.x.....", "....X.......X...", "x.x.x.x.x.x.x.x.", 0.05),
    "boom_bap": _Groove("X......x..X.....", "....X.......X..o", "x.x.x.x.x.x.x.x.", 0.04),
    "breakbeat": _Groove("X.X.......XX....", "....X..o.o..X..o", "x.x.x.x.x.x.x.x.", 0.05),
    "half_time": _Groove("X.........x.....", "........X.......", "x.x.x.x.x.x.x.x.", 0.05),
    "one_drop": _Groove("........X.......", "........x.......", "x.x.x.x.x.x.x.x.", 0.06),
    "swing": _Groove("o...o...o...o...", "..........o.....", "X...x.x.X...x.x.", 0.35),
    "double_kick": _Groove("XxXxXxXxXxXxXxXx", "....X.......X...", "X.x.X.x.X.x.X.x.", 0.08),
}
_VELOCITY = {"X": 1.0, "x": 0.75, "o": 0.35}

_SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    "major_pentatonic": (0, 2, 4, 7, 9),
    "minor_pentatonic": (0, 3, 5, 7, 10),
}

ARCHETYPES = (
    Style(
        name="Ambient", tempo=(60, 80), groove="none", swing=0.0, jitter=0.0, root=(36, 48),
        scales=("lydian", "minor"), progressions=((0, 0, 3, 3), (0, 0, 5, 5), (0, 0, 4, 4, 3, 3)),
        chord_notes=4, chord_rhythm="", bass_rhythm="x...............", bass_line="root", melody_density=0.06,
        chords=Timbre(rolloff=2.2, detune=14, attack=1.5, decay=8.0),
        lead=Timbre(rolloff=2.6, bell=0.5, attack=0.01, decay=1.8),
        bass=Timbre(rolloff=3.5, attack=0.8, decay=8.0),
        drive=1.0, drum_level=0.0, hat_cutoff=6000, reverb=0.65, reverb_seconds=4.0, energy_bias=0.2,
    ),
    Style(
        name="Techno", tempo=(122, 134), groove="four_on_floor", swing=0.0, jitter=0.0, root=(33, 41),
        scales=("dorian", "phrygian"), progressions=((0,), (0, 0, 0, 5), (0, 6)),
        chord_notes=3, chord_rhythm="..x...x...x..x..", bass_rhythm="..x...x...x...x.", bass_line="root",
        melody_density=0.3,
        chords=Timbre(rolloff=1.0, fm_index=2.0, fm_ratio=2.0, detune=8, attack=0.003, decay=0.15),
        lead=Timbre(rolloff=0.9, odd_even=0.15, attack=0.003, decay=0.12),
        bass=Timbre(rolloff=1.6, odd_even=0.4, attack=0.003, decay=0.2),
        drive=2.5, drum_level=1.0, hat_cutoff=9000, reverb=0.2, reverb_seconds=1.2, energy_bias=0.7,
    ),
    Style(
        name="Rock", tempo=(100, 140), groove="backbeat", swing=0.0, jitter=0.006, root=(38, 47),
        scales=("mixolydian", "minor_pentatonic"), progressions=((0, 3, 4, 3), (0, 4, 5, 3), (0, 6, 3, 0)),
        chord_notes=2, chord_rhythm="x.x.x.x.x.x.x.x.", bass_rhythm="x.x.x.x.x.x.x.x.", bass_line="root",
        melody_density=0.18,
        chords=Timbre(rolloff=1.0, detune=6, attack=0.004, decay=0.6),
        lead=Timbre(rolloff=1.1, odd_even=0.8, vibrato=0.3, attack=0.01, decay=1.0),
        bass=Timbre(rolloff=1.8, attack=0.004, decay=0.4),
        drive=4.0, drum_level=0.9, hat_cutoff=7000, reverb=0.15, reverb_seconds=1.0, energy_bias=0.6,
    ),
    Style(
        name="Hip-Hop", tempo=(82, 96), groove="boom_bap", swing=0.2, jitter=0.008, root=(30, 40),
        scales=("dorian", "minor"), progressions=((0, 5), (0, 3), (0, 5, 3, 4)),
        chord_notes=4, chord_rhythm="x.......x.....x.", bass_rhythm="x......x..x.....", bass_line="root",
        melody_density=0.1,
        chords=Timbre(rolloff=1.9, bell=0.25, fm_index=1.5, attack=0.005, decay=1.2),
        lead=Timbre(rolloff=2.2, odd_even=0.5, attack=0.01, decay=0.5),
        bass=Timbre(rolloff=3.5, attack=0.005, decay=0.6),
        drive=1.5, drum_level=1.15, hat_cutoff=5000, reverb=0.1, reverb_seconds=0.8, energy_bias=0.5,
    ),
    Style(
        name="Classical", tempo=(60, 110), groove="none", swing=0.0, jitter=0.015, root=(41, 53),
        scales=("major", "harmonic_minor"), progressions=((0, 3, 4, 0), (0, 5, 1, 4), (0, 4, 5, 2, 3, 0, 3, 4)),
        chord_notes=3, chord_rhythm="", bass_rhythm="x.x.x.x.x.x.x.x.", bass_line="arpeggio", melody_density=0.2,
        chords=Timbre(rolloff=1.6, detune=5, vibrato=0.25, attack=0.35, decay=6.0),
        lead=Timbre(rolloff=1.5, bell=0.08, attack=0.004, decay=0.9),
        bass=Timbre(rolloff=1.8, attack=0.004, decay=0.7),
        drive=1.0, drum_level=0.0, hat_cutoff=6000, reverb=0.4, reverb_seconds=2.2, energy_bias=0.3,
    ),
    Style(
        name="Jazz", tempo=(110, 170), groove="swing", swing=0.33, jitter=0.01, root=(36, 46),
        scales=("mixolydian", "dorian"), progressions=((1, 4, 0, 0), (1, 4, 0, 5), (0, 5, 1, 4)),
        chord_notes=4, chord_rhythm="x......x...x....", bass_rhythm="x...x...x...x...", bass_line="walk",
        melody_density=0.22,
        chords=Timbre(rolloff=1.7, bell=0.2, fm_index=1.2, attack=0.004, decay=1.0),
        lead=Timbre(rolloff=1.0, odd_even=0.6, vibrato=0.4, attack=0.04, decay=2.5),
        bass=Timbre(rolloff=2.2, attack=0.006, decay=0.5),
        drive=1.2, drum_level=0.6, hat_cutoff=8000, reverb=0.25, reverb_seconds=1.5, energy_bias=0.45,
    ),
    Style(
        name="Metal", tempo=(140, 190), groove="double_kick", swing=0.0, jitter=0.004, root=(28, 38),
        scales=("phrygian", "harmonic_minor"), progressions=((0, 1, 0, 6), (0, 5, 6, 0), (0, 0, 1, 0)),
        chord_notes=2, chord_rhythm="xxxxxxxxxxxxxxxx", bass_rhythm="x.x.x.x.x.x.x.x.", bass_line="root",
        melody_density=0.3,
        chords=Timbre(rolloff=0.8, detune=10, attack=0.002, decay=0.18),
        lead=Timbre(rolloff=0.9, vibrato=0.5, attack=0.005, decay=1.5),
        bass=Timbre(rolloff=1.2, attack=0.003, decay=0.3),
        drive=12.0, drum_level=1.0, hat_cutoff=10000, reverb=0.15, reverb_seconds=1.2, energy_bias=0.85,
    ),
    Style(
        name="Reggae", tempo=(70, 90), groove="one_drop", swing=0.1, jitter=0.008, root=(38, 47),
        scales=("major", "minor"), progressions=((0, 3), (0, 4), (0, 3, 4, 3), (5, 3, 0, 4)),
        chord_notes=3, chord_rhythm="..x...x...x...x.", bass_rhythm="x..x..x.....x...", bass_line="root",
        melody_density=0.12,
        chords=Timbre(rolloff=1.3, odd_even=0.7, attack=0.002, decay=0.09),
        lead=Timbre(rolloff=1.2, odd_even=0.3, attack=0.02, decay=4.0),
        bass=Timbre(rolloff=3.0, attack=0.006, decay=0.5),
        drive=1.3, drum_level=0.8, hat_cutoff=6000, reverb=0.3, reverb_seconds=1.6, energy_bias=0.45,
    ),
)  # fmt: skip

# The numeric parameter space of styles, for drawing new genres and for artists' variations:
# name -> (low, high, log scale). "tempo" and "root" are the centres of the styles' ranges.
_TIMBRE_RANGES = {
    "rolloff": (0.7, 3.5, False), "odd_even": (0.0, 1.0, False), "bell": (0.0, 0.5, False),
    "fm_index": (0.0, 2.5, False), "fm_ratio": (0.5, 3.0, False), "detune": (0.0, 15.0, False),
    "vibrato": (0.0, 0.5, False), "attack": (0.002, 1.5, True), "decay": (0.08, 8.0, True),
}  # fmt: skip
_PARTS = ("chords", "lead", "bass")
_PARAMETER_RANGES = {
    "tempo": (60.0, 190.0, True), "root": (28.0, 55.0, False), "swing": (0.0, 0.33, False),
    "jitter": (0.0, 0.015, False), "melody_density": (0.05, 0.35, False), "drive": (1.0, 12.0, True),
    "drum_level": (0.0, 1.15, False), "hat_cutoff": (3000.0, 10000.0, True), "reverb": (0.0, 0.65, False),
    "reverb_seconds": (0.6, 4.0, True), "energy_bias": (0.2, 0.85, False),
    **{f"{part}.{name}": r for part in _PARTS for name, r in _TIMBRE_RANGES.items()},
}  # fmt: skip
_ARTIST_SPREAD = 0.05  # standard deviation of an artist's style offset, in unit parameter space


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


def _style_vector(style: Style) -> np.ndarray:
    return np.array([_to_unit(_parameter(style, key), *r) for key, r in _PARAMETER_RANGES.items()])


def _with_vector(style: Style, vector: np.ndarray) -> Style:
    """`style` with its numeric parameters set from unit coordinates; ranges keep their widths."""
    units = np.clip(vector, 0, 1).tolist()
    values = {key: _from_unit(u, *r) for (key, r), u in zip(_PARAMETER_RANGES.items(), units)}
    timbres = {
        part: replace(getattr(style, part), **{k[len(part) + 1 :]: v for k, v in values.items() if k.startswith(part)})
        for part in _PARTS
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


def _styles(count: int, rng: np.random.Generator) -> list[Style]:
    """The archetypes, then genres drawn far from every earlier one (farthest-point sampling)."""
    styles = list(ARCHETYPES[:count])
    taken = [_style_vector(s) for s in ARCHETYPES]
    while len(styles) < count:
        candidates = rng.random((256, len(_PARAMETER_RANGES)))
        nearest = np.min([np.linalg.norm(candidates - t, axis=1) for t in taken], axis=0)
        vector = candidates[np.argmax(nearest)]
        taken.append(vector)
        styles.append(_with_vector(_random_recipe(rng, f"genre-{len(styles) + 1:02d}"), vector))
    return styles


def _random_recipe(rng: np.random.Generator, name: str) -> Style:
    """A style named `name` whose categorical choices each come from a random archetype."""

    def pick(attribute):
        return getattr(ARCHETYPES[rng.integers(len(ARCHETYPES))], attribute)

    return replace(
        ARCHETYPES[0],
        name=name,
        groove=str(rng.choice(list(_GROOVES))),
        scales=(pick("scales")[0], pick("scales")[1]),
        progressions=pick("progressions"),
        chord_notes=pick("chord_notes"),
        chord_rhythm=pick("chord_rhythm"),
        bass_rhythm=pick("bass_rhythm"),
        bass_line=pick("bass_line"),
    )


# -- catalogue ------------------------------------------------------------------------------------

_FORMATS = {  # share of the tracks, {sample rate: probability}, probability of stereo
    # MP3s lean to low rates and mono: LAME's encoding time dominates the run otherwise.
    "mp3": (0.7, {16000: 0.45, 22050: 0.35, 32000: 0.12, 44100: 0.08}, 0.1),
    "wav": (0.1, {22050: 0.2, 44100: 0.5, 48000: 0.3}, 0.8),
    "flac": (0.1, {32000: 0.2, 44100: 0.4, 48000: 0.4}, 0.8),
    "ogg": (0.1, {22050: 0.3, 32000: 0.2, 44100: 0.5}, 0.6),
}

_ONSETS = ("b", "br", "c", "ch", "d", "dr", "f", "fl", "g", "gr", "h", "j", "k", "kr", "l", "m", "n", "p", "pr", "r",
           "s", "sh", "st", "t", "tr", "v", "w", "z")  # fmt: skip
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ai", "ou", "ea")
_CODAS = ("", "", "", "n", "r", "l", "s", "m", "x", "nd", "rk", "st")
_ACCENTED = {"a": "å", "e": "é", "i": "í", "o": "ö", "u": "ü"}
_WORDS = ("Midnight", "Rain", "Echo", "Neon", "Golden", "River", "Dream", "Fire", "Shadow", "Summer", "Ghost",
          "Velvet", "Silver", "Heart", "Ocean", "Static", "Paper", "Wild", "Blue", "Broken", "Northern", "Electric",
          "Sunday", "Lonely", "Crystal", "Morning", "Winter", "Honey", "Signal", "Mirror", "Garden", "Thunder", "Glass",
          "Desert", "Satellite", "Harbour", "Lantern", "Café", "Mañana", "Déjà Vu")  # fmt: skip
# {N} is an invented name, {W} a word.
_ARTIST_FORMS = ("{N}", "{N} {N}", "The {W} Club", "DJ {N}", "{N} and the {W}", "{N} Trio", "{N} Collective",
                 "MC {N}", "{N} Ensemble")  # fmt: skip
_ALBUM_FORMS = ("{W}", "{W} {W}", "The {W} Sessions", "{W} & {W}", "Live in {N}", "{W}, Vol. 2")
_TITLE_FORMS = ("{W}", "{W} {W}", "{W} of the {W}", "Into the {W}", "Last {W}", "{W} Song", "{N}", "{W} ({N} Remix)",
                "{N}'s {W}", "Don't Fear the {W}")  # fmt: skip


@dataclass(frozen=True)
class _Artist:
    name: str
    genre: int
    style: Style  # the genre's style with this artist's offsets
    tempo: float  # bpm at energy 0.5
    root: int  # MIDI root of the artist's usual key
    lead_octave: int  # semitones from the root up to the melody
    valence_bias: float
    popularity: float


@dataclass(frozen=True)
class _Track:
    index: int  # seeds the track's rendering
    path: str  # relative to audio/, with forward slashes
    title: str
    artist: _Artist
    album: str
    year: int
    number: int
    energy: float
    valence: float
    popularity: float  # unnormalised: heavy-tailed, popular artists first
    duration: float  # seconds requested
    format: str
    sample_rate: int
    channels: int

    def tags(self) -> dict[str, str]:
        return {
            "title": self.title,
            "artist": self.artist.name,
            "album": self.album,
            "genre": self.artist.style.name,
            "tracknumber": str(self.number),
            "date": str(self.year),
        }


def _pick(rng: np.random.Generator, options):
    return options[rng.integers(len(options))]


def _invented_name(rng: np.random.Generator) -> str:
    name = "".join(_pick(rng, _ONSETS) + _pick(rng, _VOWELS) for _ in range(rng.integers(1, 4))) + _pick(rng, _CODAS)
    if rng.random() < 0.08:
        i = _pick(rng, [i for i, c in enumerate(name) if c in _ACCENTED])
        name = name[:i] + _ACCENTED[name[i]] + name[i + 1 :]
    return name.capitalize()


def _name(rng: np.random.Generator, forms: tuple[str, ...]) -> str:
    parts = _pick(rng, forms).split(" ")
    filled = [p.replace("{N}", _invented_name(rng)).replace("{W}", _pick(rng, _WORDS)) for p in parts]
    return " ".join(filled)


def _unique(make, taken: set[str]) -> str:
    name = make()
    while name in taken:
        name = make()
    taken.add(name)
    return name


def _split(total: int, weights: np.ndarray) -> list[int]:
    """`total` split in proportion to `weights`, at least 1 each (largest-remainder rounding)."""
    shares = weights / weights.sum() * (total - len(weights))
    sizes = np.floor(shares).astype(int)
    sizes[np.argsort(sizes - shares)[: total - len(weights) - sizes.sum()]] += 1
    return (sizes + 1).tolist()


def _formats(count: int, rng: np.random.Generator) -> list[str]:
    """Formats in their shares, shuffled: at least one of each from ten tracks on."""
    minor = {f: round(share * count) for f, (share, _, _) in _FORMATS.items() if f != "mp3"}
    formats = ["mp3"] * (count - sum(minor.values())) + [f for f, n in minor.items() for _ in range(n)]
    return [formats[i] for i in rng.permutation(count)]


def _make_artist(style: Style, genre: int, taken: set[str], rng: np.random.Generator) -> _Artist:
    varied = _with_vector(style, _style_vector(style) + rng.normal(0, _ARTIST_SPREAD, len(_PARAMETER_RANGES)))
    if rng.random() < 0.3:  # this artist plays the melody on the chord instrument
        varied = replace(varied, lead=varied.chords)
    return _Artist(
        name=_unique(lambda: _name(rng, _ARTIST_FORMS), taken),
        genre=genre,
        style=varied,
        tempo=rng.uniform(*varied.tempo),
        root=int(rng.integers(varied.root[0], varied.root[1] + 1)),
        lead_octave=int(rng.choice((24, 36), p=(0.7, 0.3))),
        valence_bias=rng.uniform(0.3, 0.7),
        popularity=rng.lognormal(0, 1.0),
    )


def _plan_catalogue(styles: list[Style], count: int, seconds: float, rng: np.random.Generator) -> list[_Track]:
    """Genres of uneven size, each of artists with 1-3 albums of 2-7 tracks; formats and latent factors."""
    formats = _formats(count, rng)
    artist_names: set[str] = set()
    tracks: list[_Track] = []
    for genre, (style, size) in enumerate(zip(styles, _split(count, rng.uniform(0.6, 1.4, len(styles))))):
        left = size
        while left:
            artist = _make_artist(style, genre, artist_names, rng)
            album_names: set[str] = set()
            for _ in range(rng.integers(1, 4)):
                album = _unique(lambda: _name(rng, _ALBUM_FORMS), album_names)
                year = int(rng.integers(1965, 2025))
                titles: set[str] = set()
                for number in range(1, min(left, rng.integers(2, 8)) + 1):
                    title = _unique(lambda: _name(rng, _TITLE_FORMS), titles)
                    fmt = formats[len(tracks)]
                    _, rates, stereo = _FORMATS[fmt]
                    tracks.append(
                        _Track(
                            index=len(tracks),
                            path=f"{artist.name}/{album}/{number:02d} {title}.{fmt}",
                            title=title,
                            artist=artist,
                            album=album,
                            year=year,
                            number=number,
                            energy=rng.beta(2 + 4 * style.energy_bias, 2 + 4 * (1 - style.energy_bias)),
                            valence=rng.beta(2 + 4 * artist.valence_bias, 2 + 4 * (1 - artist.valence_bias)),
                            popularity=artist.popularity * rng.lognormal(0, 0.6),
                            duration=seconds * rng.uniform(0.75, 1.25),
                            format=fmt,
                            sample_rate=int(rng.choice(list(rates), p=list(rates.values()))),
                            channels=2 if rng.random() < stereo else 1,
                        )
                    )
                    left -= 1
                if not left:
                    break
    return tracks


# -- rendering ------------------------------------------------------------------------------------

_TABLE_SIZE = 4096  # samples per wavetable cycle (a power of two: phases wrap with a bit mask)
_BELL_PARTIALS = ((2.76, 0.6), (5.40, 0.35), (8.93, 0.2))  # frequency ratio and level: a struck bar's modes
_DRUM_LEVELS = {"kick": 1.0, "snare": 0.8, "hat": 0.35}


class _Note(NamedTuple):
    time: float  # seconds
    length: float  # seconds until the note is released
    pitch: float  # MIDI
    velocity: float


def _render(track: _Track, rng: np.random.Generator) -> np.ndarray:
    """The track's audio as (frames, channels) float32, peak-normalised below full scale."""
    style = track.artist.style
    frames = max(1, round(track.duration * track.sample_rate))
    bpm = track.artist.tempo * (1 + 0.3 * (track.energy - 0.5)) * rng.normal(1, 0.015)
    sixteenth = 15 / bpm
    bars = int(track.duration / (16 * sixteenth)) + 2
    notes = _compose(track, rng, bars, sixteenth)
    # Energy brightens every instrument: a lower rolloff puts more level in the upper harmonics.
    brighter = 1.6 * (track.energy - 0.5)
    stems = {}
    for part in _PARTS:
        timbre = getattr(style, part)
        timbre = replace(timbre, rolloff=max(0.4, timbre.rolloff - brighter))
        stems[part] = _play(notes[part], timbre, track.sample_rate, frames, rng)
    stems["drums"] = _drums(style, track.energy, rng, bars, sixteenth, track.sample_rate, frames)
    return _mix(stems, track, rng)


def _compose(track: _Track, rng: np.random.Generator, bars: int, sixteenth: float) -> dict[str, list[_Note]]:
    """Chords, bass line and melody of the whole track."""
    style, artist = track.artist.style, track.artist
    scale = _SCALES[style.scales[0] if rng.random() < track.valence else style.scales[1]]
    root = artist.root + _pick(rng, (0, 0, 0, 2, -2, 5, -5)) + round(4 * (track.valence - 0.5))
    chords = [_chord(scale, degree, style.chord_notes) for degree in _pick(rng, style.progressions)]
    events = {part: [] for part in _PARTS}  # (sixteenth, length in sixteenths, pitch, velocity)
    for bar in range(bars):
        chord, following = chords[bar % len(chords)], chords[(bar + 1) % len(chords)]
        for step, length, velocity in _onsets(style.chord_rhythm):
            events["chords"] += [(16 * bar + step, length, root + 12 + p, velocity) for p in chord]
        bass_onsets = _onsets(style.bass_rhythm)
        for i, (step, length, velocity) in enumerate(bass_onsets):
            pitch = _bass_pitch(style.bass_line, chord, following, i, len(bass_onsets), rng)
            events["bass"].append((16 * bar + step, length, root + pitch, velocity))
    density = style.melody_density * (0.6 + 0.8 * track.energy)
    events["lead"] = [(s, n, root + artist.lead_octave + p, v) for s, n, p, v in _melody(scale, density, bars, rng)]
    return {part: _notes(rows, style, sixteenth, rng) for part, rows in events.items()}


def _scale_note(scale: tuple[int, ...], degree: int) -> int:
    octave, step = divmod(degree, len(scale))
    return 12 * octave + scale[step]


def _chord(scale: tuple[int, ...], degree: int, notes: int) -> list[int]:
    """Semitones above the key's root: a power chord for 2 notes, else thirds stacked in the scale."""
    if notes == 2:
        base = _scale_note(scale, degree)
        return [base, base + 7, base + 12]
    return [_scale_note(scale, degree + 2 * i) for i in range(notes)]


def _onsets(pattern: str) -> list[tuple[int, int, float]]:
    """(step, steps to the next onset, velocity) of a 16-step pattern; "" is one onset held for the bar."""
    steps = [i for i, c in enumerate(pattern) if c != "."] or [0]
    return [(s, end - s, _VELOCITY.get(pattern[s : s + 1], 0.75)) for s, end in zip(steps, steps[1:] + [16])]


def _bass_register(semitones: int) -> int:
    return semitones % 12 - (12 if semitones % 12 > 7 else 0)


def _bass_pitch(
    line: str, chord: list[int], following: list[int], i: int, count: int, rng: np.random.Generator
) -> int:
    """Semitones above the key's root of the `i`-th of a bar's `count` bass notes."""
    root = _bass_register(chord[0])
    if line == "arpeggio":
        return root + chord[(0, 2, 1, 2)[i % 4] % len(chord)] - chord[0]
    if line == "walk" and i == count - 1:
        return _bass_register(following[0]) + _pick(rng, (-1, 1))  # chromatic approach to the next chord
    if line == "walk" and i > 0:
        return root + _pick(rng, chord) - chord[0]
    return root + (12 if i % 2 and rng.random() < 0.15 else 0)


def _melody(scale: tuple[int, ...], density: float, bars: int, rng: np.random.Generator) -> list[tuple]:
    """Two-bar phrases: a motif, then repeated, varied or replaced as the track goes on."""
    rows = []
    for phrase in range(0, bars, 2):
        roll = rng.random()
        if phrase == 0 or roll < 0.3:
            steps, degrees, velocities = _motif(density, rng)
        elif roll < 0.6:
            degrees = np.clip(degrees + rng.choice((-1, 0, 0, 1), size=degrees.size), -3, 12)
        lengths = np.diff(np.append(steps, 32)).clip(max=8)
        for step, length, degree, velocity in zip(steps, lengths, degrees, velocities):
            rows.append((16 * phrase + step, length, _scale_note(scale, degree), velocity))
    return rows


def _motif(density: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Onset steps in two bars, scale degrees (a random walk) and velocities of a melodic motif."""
    steps = np.flatnonzero(rng.random(32) < density)
    if not steps.size:
        steps = np.array([0])
    degrees = np.clip(rng.integers(0, 8) + np.cumsum(rng.choice((-2, -1, -1, 0, 1, 1, 2), size=steps.size)), -3, 12)
    return steps, degrees, rng.uniform(0.55, 0.9, steps.size)


def _notes(rows: list[tuple], style: Style, sixteenth: float, rng: np.random.Generator) -> list[_Note]:
    if not rows:
        return []
    steps, lengths, pitches, velocities = (np.array(column) for column in zip(*rows))
    times = _onset_times(style, steps, sixteenth, rng)
    return [_Note(*note) for note in zip(times, 0.9 * lengths * sixteenth, pitches, velocities)]


def _onset_times(style: Style, steps: np.ndarray, sixteenth: float, rng: np.random.Generator) -> np.ndarray:
    """Seconds of sixteenth-grid positions, with swing on the off-beat eighths and human jitter."""
    swung = steps + 2 * style.swing * (steps % 4 == 2)
    return np.maximum(swung * sixteenth + rng.normal(0, style.jitter, len(steps)), 0)


def _play(notes: list[_Note], timbre: Timbre, sr: int, frames: int, rng: np.random.Generator) -> np.ndarray:
    """One instrument playing `notes`; a repeated note reuses its first rendering, as a sampler would."""
    out = np.zeros(frames, dtype=np.float32)
    rendered = {}
    for note in notes:
        key = (note.pitch, round(note.length * sr))
        if key not in rendered:
            rendered[key] = _tone(timbre, note.pitch, note.length, sr, rng)
        _add(out, int(note.time * sr), np.float32(note.velocity) * rendered[key])
    return out


def _tone(timbre: Timbre, pitch: float, length: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One note released after `length` seconds: wavetable oscillators with FM, chorus, vibrato and bell partials."""
    release = 0.03 + 0.3 * min(timbre.attack, 1.0)  # pads fade out slower than plucks
    audible = min(length + 5 * release, timbre.attack + 7 * timbre.decay)  # until -60 dB
    t = np.arange(max(1, int(audible * sr)), dtype=np.float32) / np.float32(sr)
    f0 = 440 * 2 ** ((pitch - 69) / 12)
    # Harmonics (and FM sidebands) stop below Nyquist, so that low sample rates do not alias.
    harmonics = int(np.clip(0.45 * sr / (f0 * (1 + timbre.fm_ratio * timbre.fm_index)), 1, 32))
    table = _wavetable(timbre.rolloff, timbre.odd_even, harmonics)
    cycles = np.float32(f0) * t
    if timbre.vibrato:
        cycles -= np.float32(0.03 * timbre.vibrato * f0 / (2 * np.pi * 5.5)) * np.cos(np.float32(2 * np.pi * 5.5) * t)
    if timbre.fm_index:
        modulator = np.sin(np.float32(2 * np.pi * timbre.fm_ratio * f0) * t)
        cycles += np.float32(timbre.fm_index / (2 * np.pi)) * np.exp(t / np.float32(-timbre.decay)) * modulator
    voices = (-timbre.detune, 0.0, timbre.detune) if timbre.detune > 0 else (0.0,)
    tone = sum(table[_table_index(cycles, cents, rng)] for cents in voices) / np.float32(len(voices))
    for ratio, level in _BELL_PARTIALS:
        if timbre.bell and ratio * f0 < 0.45 * sr:
            partial = np.sin(np.float32(2 * np.pi * ratio * f0) * t + np.float32(2 * np.pi * rng.random()))
            tone += np.float32(timbre.bell * level) * np.exp(t * np.float32(-ratio / 1.5)) * partial
    decayed = np.maximum(t - timbre.attack, 0) / np.float32(timbre.decay)
    decayed += np.maximum(t - length, 0) / np.float32(release)
    return np.minimum(t / np.float32(timbre.attack), 1) * np.exp(-decayed) * tone


def _table_index(cycles: np.ndarray, cents: float, rng: np.random.Generator) -> np.ndarray:
    """Wavetable positions of a voice `cents` off pitch, starting at a random phase."""
    phase = cycles * np.float32(2 ** (cents / 1200) * _TABLE_SIZE) + np.float32(rng.random() * _TABLE_SIZE)
    return phase.astype(np.int64) & (_TABLE_SIZE - 1)


@functools.lru_cache(maxsize=1024)
def _wavetable(rolloff: float, odd_even: float, harmonics: int) -> np.ndarray:
    """One cycle of a tone whose harmonic k has amplitude k**-rolloff (times odd_even for even k)."""
    k = np.arange(1, harmonics + 1)
    spectrum = np.zeros(_TABLE_SIZE // 2 + 1, dtype=complex)
    spectrum[k] = -1j * k**-rolloff * np.where(k % 2 == 0, odd_even, 1.0)  # sine phase
    table = np.fft.irfft(spectrum, _TABLE_SIZE)
    return (table / np.max(np.abs(table))).astype(np.float32)


def _add(out: np.ndarray, start: int, sound: np.ndarray) -> None:
    end = min(len(out), start + len(sound))
    if end > start:
        out[start:end] += sound[: end - start]


def _drums(
    style: Style, energy: float, rng: np.random.Generator, bars: int, sixteenth: float, sr: int, frames: int
) -> np.ndarray:
    """The drum stem: the groove's one-shots, with an intro and a breakdown; energy adds velocity and ghost hats."""
    out = np.zeros(frames, dtype=np.float32)
    groove = _GROOVES[style.groove]
    if style.groove == "none":
        return out
    kit = _drum_kit(style, groove, sr, rng)
    playing = np.ones(bars, dtype=bool)
    playing[0] = rng.random() < 0.5
    if bars >= 8 and rng.random() < 0.5:
        start = rng.integers(bars // 2, bars - 2)
        playing[start : start + 2] = False
    playing = np.repeat(playing, 16)
    for voice, pattern in zip(_DRUM_LEVELS, (groove.kick, groove.snare, groove.hat)):
        grid = np.tile([_VELOCITY.get(c, 0.0) for c in pattern], bars) * playing
        if voice == "hat":
            grid[(grid == 0) & playing & (rng.random(grid.size) < 0.4 * energy)] = _VELOCITY["o"]
        steps = np.flatnonzero(grid)
        gains = grid[steps] * (0.55 + 0.6 * energy) * rng.normal(1, 0.06, steps.size)
        for time, gain in zip(_onset_times(style, steps, sixteenth, rng), gains):
            _add(out, int(time * sr), np.float32(gain) * kit[voice])
    return out


def _drum_kit(style: Style, groove: _Groove, sr: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One-second kick (pitch sweep), snare (tone and noise) and hat (high-passed noise) samples."""
    t = np.arange(sr) / sr
    low = rng.uniform(45, 60)
    kick = np.sin(2 * np.pi * np.cumsum(low * (1 + 2 * np.exp(-t / 0.03))) / sr) * np.exp(-t / rng.uniform(0.12, 0.3))
    cutoff = min(style.hat_cutoff, 0.4 * sr)
    snare_noise = sosfilt(butter(2, cutoff / 5, "highpass", fs=sr, output="sos"), rng.standard_normal(sr))
    snare = 0.5 * np.sin(2 * np.pi * rng.uniform(170, 220) * t) * np.exp(-t / 0.04) + snare_noise * np.exp(-t / 0.1)
    hat_noise = sosfilt(butter(2, cutoff, "highpass", fs=sr, output="sos"), rng.standard_normal(sr))
    hat = hat_noise * np.exp(-t / groove.hat_decay)
    return {
        name: (level * s / np.max(np.abs(s))).astype(np.float32)
        for (name, level), s in zip(_DRUM_LEVELS.items(), (kick, snare, hat))
    }


def _mix(stems: dict[str, np.ndarray], track: _Track, rng: np.random.Generator) -> np.ndarray:
    """Distort, balance, pan and reverberate the stems, then fade and normalise to the track's loudness."""
    style, sr, energy = track.artist.style, track.sample_rate, track.energy
    drive = max(1.0, style.drive * (0.6 + 0.8 * energy))
    levels = {"chords": 0.65, "lead": 0.55, "bass": 0.8, "drums": style.drum_level * (0.7 + 0.6 * energy)}
    pans = {"chords": rng.uniform(-0.5, -0.2), "lead": rng.uniform(0.15, 0.45), "bass": 0.0, "drums": 0.0}
    lead_delay = int(rng.uniform(0.3e-3, 0.9e-3) * sr)  # a small inter-channel delay widens the lead
    channels = np.zeros((track.channels, len(stems["bass"])), dtype=np.float32)
    for name, stem in stems.items():
        if name in ("chords", "lead"):
            stem = _saturate(stem, drive)
        rms = np.sqrt(np.mean(stem**2))
        if rms == 0:
            continue
        stem = stem * (levels[name] * rng.uniform(0.8, 1.2) / rms)
        if track.channels == 1:
            channels[0] += stem
            continue
        angle = (pans[name] + 1) * np.pi / 4
        channels[0] += np.cos(angle) * stem
        if name == "lead" and lead_delay:
            stem = np.concatenate([np.zeros(lead_delay), stem[:-lead_delay]])
        channels[1] += np.sin(angle) * stem
    send = channels.mean(axis=0)
    for channel in channels:  # each channel its own impulse response: decorrelated, wide reverb
        channel += style.reverb * _reverb(send, style.reverb_seconds, sr, rng)
    frames = channels.shape[1]
    channels[:, : int(0.01 * sr)] *= np.linspace(0, 1, min(frames, int(0.01 * sr)))
    fade_out = min(frames, int(min(1.5, 0.1 * track.duration) * sr))
    channels[:, frames - fade_out :] *= np.linspace(1, 0, fade_out)
    peak_db = -1.5 - rng.uniform(0, 3) - 5 * (1 - energy)  # headroom keeps lossy decoders from clipping
    peak = np.max(np.abs(channels))
    return (channels.T * (10 ** (peak_db / 20) / peak if peak else 0)).astype(np.float32)


def _saturate(x: np.ndarray, drive: float) -> np.ndarray:
    peak = np.max(np.abs(x))
    return np.tanh(drive * x / peak) / np.tanh(drive) if peak else x


def _reverb(x: np.ndarray, seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """`x` convolved with exponentially decaying noise of RT60 `seconds`, at unit energy."""
    t = np.arange(int(seconds * sr)) / sr
    response = rng.standard_normal(t.size) * np.exp(-6.9 * t / seconds)
    return fftconvolve(x, (response / np.sqrt(np.sum(response**2))).astype(np.float32))[: len(x)]


# -- files ----------------------------------------------------------------------------------------

_SUBTYPES = {"mp3": "MPEG_LAYER_III", "ogg": "VORBIS", "flac": "PCM_16", "wav": "PCM_16"}
_ID3_FRAMES = {
    "title": "TIT2", "artist": "TPE1", "album": "TALB", "genre": "TCON", "tracknumber": "TRCK", "date": "TDRC",
}  # fmt: skip
_BIT_REVERSED = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def _write_track(track: _Track, seed: int, audio_dir: Path) -> int:
    """Render, encode and write one track (in a worker process); returns the frames written."""
    rng = np.random.default_rng([seed, 1, track.index])
    data = _encode(_render(track, rng), track, ogg_serial=int(rng.integers(2**32)))
    _write(audio_dir / track.path, data)
    with sf.SoundFile(io.BytesIO(data)) as f:
        return f.frames


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _encode(samples: np.ndarray, track: _Track, ogg_serial: int) -> bytes:
    """The file's bytes, tags included."""
    buffer = io.BytesIO()
    subtype = "PCM_24" if track.format == "flac" and track.sample_rate == 48000 else _SUBTYPES[track.format]
    with sf.SoundFile(buffer, "w", track.sample_rate, track.channels, subtype, format=track.format.upper()) as f:
        if track.format != "mp3":
            for key, value in track.tags().items():
                setattr(f, key, value)
        f.write(samples)
    if track.format == "mp3":
        # libsndfile passes tags to LAME, which stores them as Latin-1 and so garbles any non-ASCII text.
        return _id3v2_tag(track.tags()) + buffer.getvalue()
    if track.format == "ogg":
        return _with_ogg_serial(buffer.getvalue(), ogg_serial)
    return buffer.getvalue()


def _id3v2_tag(tags: dict[str, str]) -> bytes:
    """An ID3v2.4 tag of UTF-8 text frames."""
    frames = b""
    for key, frame_id in _ID3_FRAMES.items():
        body = b"\x03" + tags[key].encode("utf-8")  # text encoding 3 is UTF-8
        frames += frame_id.encode("ascii") + _syncsafe(len(body)) + b"\x00\x00" + body
    return b"ID3\x04\x00\x00" + _syncsafe(len(frames)) + frames


def _syncsafe(n: int) -> bytes:
    return bytes((n >> shift) & 0x7F for shift in (21, 14, 7, 0))


def _with_ogg_serial(data: bytes, serial: int) -> bytes:
    """`data` with every page's stream serial number set to `serial` and its CRC recomputed.

    libsndfile picks a random serial number, so Ogg files would differ from run to run otherwise.
    """
    pages = bytearray(data)
    start = 0
    while start < len(pages):
        if pages[start : start + 4] != b"OggS":
            raise ValueError(f"no Ogg page at byte {start}")
        segments = pages[start + 26]
        end = start + 27 + segments + sum(pages[start + 27 : start + 27 + segments])
        pages[start + 14 : start + 18] = serial.to_bytes(4, "little")
        pages[start + 22 : start + 26] = bytes(4)
        pages[start + 22 : start + 26] = _ogg_crc(bytes(pages[start:end])).to_bytes(4, "little")
        start = end
    return bytes(pages)


def _ogg_crc(page: bytes) -> int:
    """Ogg's CRC-32: polynomial 0x04C11DB7, not reflected, initial value 0, no final xor.

    zlib's crc32 is the bit-reflected variant: run on bit-reversed bytes, with its initial and final
    inversion undone, it gives the Ogg CRC with its bits reversed.
    """
    reflected = zlib.crc32(page.translate(_BIT_REVERSED), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{reflected:032b}"[::-1], 2)


# -- faults ---------------------------------------------------------------------------------------

_FILE_FAULTS = ("empty", "truncated", "not_audio", "too_short", "silent", "unsupported", "duplicate")
_RENDERED_FAULTS = ("truncated", "too_short")  # rendered like good tracks, then broken
_TRUNCATED_SHARE = 0.35
_SHORT_SECONDS = 0.2
_STREAM_URL = "http://radio.example.com:8000/live"
_NOT_FOUND_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n"
    "<body><h1>Not Found</h1><p>The requested URL was not found on this server.</p></body></html>\n"
)


def _plan_faults(catalogue: list[_Track], seconds: float, rng: np.random.Generator) -> dict[str, _Track]:
    """A track behind each broken file or playlist entry, where such files turn up: as the next number
    of a random album, or in Unsorted/. The duplicate keeps its original's index: it is the same audio."""
    next_number: dict[tuple[str, str], int] = {}
    for track in catalogue:
        album = (track.artist.name, track.album)
        next_number[album] = max(next_number.get(album, 1), track.number + 1)
    new_index = itertools.count(len(catalogue))

    def on_album(ext: str, duration: float = seconds) -> _Track:
        source = _pick(rng, catalogue)
        artist, album = source.artist.name, source.album
        number = next_number[artist, album]
        next_number[artist, album] += 1
        title = _name(rng, _TITLE_FORMS)
        return replace(
            source, index=next(new_index), path=f"{artist}/{album}/{number:02d} {title}.{ext}", title=title,
            number=number, duration=duration, format=ext, sample_rate=22050, channels=1,
        )  # fmt: skip

    def unsorted(ext: str, duration: float = seconds, note: str = "") -> _Track:
        track = on_album(ext, duration)
        return replace(track, path=f"Unsorted/{track.artist.name} - {track.title}{note}.{ext}")

    original = _pick(rng, catalogue)
    return {
        "empty": on_album("mp3"),
        "truncated": on_album("mp3"),
        "not_audio": unsorted("mp3"),
        "too_short": unsorted("mp3", _SHORT_SECONDS, " (preview)"),
        "silent": on_album("mp3"),
        "unsupported": on_album("m4a"),
        "duplicate": replace(original, path=f"Unsorted/{original.artist.name} - {original.title}.{original.format}"),
        "missing_file": on_album("mp3"),
    }


def _write_faults(
    faults: dict[str, _Track], audio_dir: Path, catalogue: list[_Track], rng: np.random.Generator
) -> None:
    """Write the broken files; the truncated and too-short tracks are already rendered."""
    truncated = audio_dir / faults["truncated"].path
    truncated.write_bytes(truncated.read_bytes()[: int(_TRUNCATED_SHARE * truncated.stat().st_size)])
    _write(audio_dir / faults["empty"].path, b"")
    _write(audio_dir / faults["not_audio"].path, _NOT_FOUND_PAGE.encode("ascii"))
    silent = faults["silent"]
    silence = np.zeros((round(silent.duration * silent.sample_rate), silent.channels), dtype=np.float32)
    _write(audio_dir / silent.path, _encode(silence, silent, ogg_serial=0))
    mp4_type_box = b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00M4A mp42isom\x00\x00\x00\x00"
    _write(audio_dir / faults["unsupported"].path, mp4_type_box + b"\x00\x00\x10\x08mdat" + rng.bytes(4096))
    _write(audio_dir / faults["duplicate"].path, (audio_dir / catalogue[faults["duplicate"].index].path).read_bytes())


# -- playlists ------------------------------------------------------------------------------------

_PLAYLIST_KINDS = {"genre": 0.45, "genre_energy": 0.1, "artist": 0.05, "mixed": 0.2, "mood": 0.2}
_GENRE_NAMES = ("{} Essentials", "Best of {}", "{} Classics", "Fresh {}", "Pure {}", "{} Favourites", "All Out {}",
                "{} Mix")  # fmt: skip
_GENRE_ENERGY_NAMES = {
    True: ("{} Workout", "Peak-time {}", "Hard {}"),
    False: ("Deep {} Nights", "Chill {}", "Mellow {}"),
}
_MIXED_NAMES = ("{} Mix", "Best of {}", "{} Party")
_MOOD_NAMES = {
    ("energy", True): ("Workout Mix", "Running Pace", "Party Starters", "Power Hour", "Gym Motivation"),
    ("energy", False): ("Sunday Chill", "Sleep Sounds", "Deep Focus", "Rainy Day", "Wind Down"),
    ("valence", True): ("Happy Hits", "Feel Good", "Sunny Day"),
    ("valence", False): ("Melancholy", "Sad Songs", "Heartbreak"),
}


@dataclass
class _Playlist:
    name: str
    pool: frozenset[int]  # indices of the tracks it may hold
    tracks: list[int]


def _plan_playlists(catalogue: list[_Track], count: int, rng: np.random.Generator) -> list[_Playlist]:
    """Playlists drawn from the latent taste model described in the module docstring."""
    genre = np.array([t.artist.genre for t in catalogue])
    genre_names = {t.artist.genre: t.artist.style.name for t in catalogue}
    factors = {"energy": np.array([t.energy for t in catalogue]), "valence": np.array([t.valence for t in catalogue])}
    popularity = np.array([t.popularity for t in catalogue])
    genre_popularity = 1 / rng.permutation(np.arange(1, len(genre_names) + 1))
    genre_popularity /= genre_popularity.sum()
    unserved = sorted(genre_names, key=lambda g: -genre_popularity[g])  # genres with no playlist of their own yet
    names: set[str] = set()
    playlists = []
    for _ in range(count):
        kind = str(rng.choice(list(_PLAYLIST_KINDS), p=list(_PLAYLIST_KINDS.values())))
        preference = np.ones(len(catalogue))
        if kind == "mixed" and len(genre_names) > 1:
            size = min(len(genre_names), rng.integers(2, 4))
            chosen = rng.choice(len(genre_names), size, replace=False, p=genre_popularity)
            pool = np.flatnonzero(np.isin(genre, chosen))
            labels = [genre_names[g] for g in chosen]
            name = _pick(rng, _MIXED_NAMES).format(", ".join(labels[:-1]) + " & " + labels[-1])
        elif kind == "mood":
            factor, high = ("energy" if rng.random() < 0.7 else "valence"), bool(rng.random() < 0.5)
            values = factors[factor]
            pool = np.flatnonzero(values >= np.quantile(values, 0.6) if high else values <= np.quantile(values, 0.4))
            name = _pick(rng, _MOOD_NAMES[factor, high])
        else:
            g = unserved.pop(0) if unserved else rng.choice(len(genre_names), p=genre_popularity)
            pool = np.flatnonzero(genre == g)
            name = _pick(rng, _GENRE_NAMES).format(genre_names[g])
            if kind == "genre_energy":
                high = bool(rng.random() < 0.5)
                preference = np.exp((6 if high else -6) * (factors["energy"] - 0.5))
                name = _pick(rng, _GENRE_ENERGY_NAMES[high]).format(genre_names[g])
            elif kind == "artist":
                artist = catalogue[rng.choice(pool, p=popularity[pool] / popularity[pool].sum())].artist.name
                preference = np.where([t.artist.name == artist for t in catalogue], 8.0, 1.0)
                name = f"{artist} Radio"
        weights = popularity[pool] * preference[pool]
        length = min(
            int(np.clip(rng.lognormal(np.log(22), 0.55), 10, 60)),
            max(1, len(catalogue) // 2),
            max(1, len(pool) // 2),  # a playlist picks from its pool, it does not copy it
        )
        tracks = rng.choice(pool, length, replace=False, p=weights / weights.sum())
        playlists.append(_Playlist(_numbered(name, names), frozenset(pool.tolist()), tracks.tolist()))
    return playlists


def _numbered(name: str, taken: set[str]) -> str:
    """`name`, or `name 2`, `name 3`, ... if taken."""
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{name} {number}"
    taken.add(candidate)
    return candidate


def _cover(playlists: list[_Playlist], count: int, rng: np.random.Generator) -> int:
    """Append each track in no playlist to the shortest playlist that admits it and has room, then
    shuffle every playlist; returns the number of tracks that found no place."""
    limit = min(_MAX_PLAYLIST_LENGTH, max(1, count // 2))
    listed = {t for p in playlists for t in p.tracks}
    left_out = 0
    for track in rng.permutation(count).tolist():
        if track in listed:
            continue
        fitting = [p for p in playlists if track in p.pool and len(p.tracks) < limit]
        if fitting:
            min(fitting, key=lambda p: len(p.tracks)).tracks.append(track)
        else:
            left_out += 1
    for playlist in playlists:
        playlist.tracks = [playlist.tracks[i] for i in rng.permutation(len(playlist.tracks))]
    return left_out


def _write_playlist(path: Path, name: str, entries: list[tuple[int, str, str]]) -> None:
    """An M3U8 playlist of (seconds, label, location) entries."""
    lines = ["#EXTM3U", f"#PLAYLIST:{name}"]
    for seconds, label, location in entries:
        lines += [f"#EXTINF:{seconds},{label}", location]
    _write(path, ("\n".join(lines) + "\n").encode("utf-8"))


def _entry(track: _Track, frames: int) -> tuple[int, str, str]:
    return round(frames / track.sample_rate), f"{track.artist.name} - {track.title}", f"../audio/{track.path}"


# -- the collection -------------------------------------------------------------------------------


def synthesize(
    out_dir,
    *,
    tracks: int = 240,
    genres: int = 6,
    playlists: int = 120,
    seconds: float = 20.0,
    seed: int = 0,
    with_faults: bool = False,
    workers: int | None = None,
    progress: bool = False,
) -> SynthResult:
    """Write a music collection with ground truth to `out_dir` (layout and model: the module docstring).

    The same arguments give byte-identical files for any number of `workers` (processes, default one per
    CPU core). An earlier synth output in `out_dir` is replaced; any other non-empty folder is refused.
    """
    workers = (os.cpu_count() or 1) if workers is None else workers
    _check_arguments(tracks, genres, playlists, seconds, seed, workers, with_faults)
    out_dir = Path(out_dir)
    settings = dict(
        tracks=tracks, genres=genres, playlists=playlists, seconds=seconds, seed=seed, with_faults=with_faults
    )
    _prepare(out_dir, settings)
    audio_dir = out_dir / "audio"

    plan_rng, playlist_rng, fault_rng = (np.random.default_rng([seed, stream]) for stream in (0, 2, 3))
    catalogue = _plan_catalogue(_styles(genres, plan_rng), tracks, seconds, plan_rng)
    faults = _plan_faults(catalogue, seconds, fault_rng) if with_faults else {}
    jobs = catalogue + [faults[kind] for kind in _RENDERED_FAULTS if with_faults]
    frames = _render_all(jobs, seed, audio_dir, workers, progress)

    top = max(t.popularity for t in catalogue)
    rows = [_track_row(t, frames[t.index], top) for t in catalogue]
    listed_faults = []
    if with_faults:
        _write_faults(faults, audio_dir, catalogue, fault_rng)
        rows.append(_track_row(faults["duplicate"], frames[faults["duplicate"].index], top))
        listed_faults = [(faults[kind].path, kind) for kind in _FILE_FAULTS]
        listed_faults += [(f"../audio/{faults['missing_file'].path}", "missing_file"), (_STREAM_URL, "url")]

    planned = _plan_playlists(catalogue, playlists, playlist_rng)
    unplaylisted = _cover(planned, len(catalogue), playlist_rng)
    entries = [[_entry(catalogue[i], frames[i]) for i in p.tracks] for p in planned]
    if with_faults:
        missing = faults["missing_file"]
        missing_entry = _entry(missing, round(missing.duration * missing.sample_rate))
        for entry in (missing_entry, (-1, "Live Radio", _STREAM_URL)):
            entries[0].insert(fault_rng.integers(len(entries[0]) + 1), entry)
    for number, (playlist, playlist_entries) in enumerate(zip(planned, entries), start=1):
        _write_playlist(out_dir / "playlists" / f"{number:03d} {playlist.name}.m3u8", playlist.name, playlist_entries)

    _write_csv(out_dir / "tracks.csv", TRACK_COLUMNS, sorted(rows, key=lambda row: row["path"]))
    if with_faults:
        _write_csv(out_dir / "faults.csv", FAULT_COLUMNS, [dict(zip(FAULT_COLUMNS, f)) for f in listed_faults])
    return SynthResult(out_dir, len(rows), len(planned), listed_faults, unplaylisted)


def _check_arguments(tracks, genres, playlists, seconds, seed, workers, with_faults) -> None:
    problems = [
        (genres < 1, f"genres must be at least 1 (got {genres})"),
        (tracks < genres, f"tracks must be at least genres, one track per genre (got {tracks} < {genres})"),
        (playlists < 0, f"playlists must not be negative (got {playlists})"),
        (not seconds > 0 or not math.isfinite(seconds), f"seconds must be a positive number (got {seconds})"),
        (seed < 0, f"seed must not be negative (got {seed})"),
        (workers < 1, f"workers must be at least 1 (got {workers})"),
        (with_faults and playlists < 1, "with_faults needs at least one playlist, for its broken entries"),
    ]
    for failed, message in problems:
        if failed:
            raise ConfigError(message)


def _prepare(out_dir: Path, settings: dict) -> None:
    """Create `out_dir`, or clear an earlier synth output in it; refuse a folder holding anything else."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not (out_dir / _MARKER).is_file():
            raise ConfigError(f"{out_dir} is not empty and holds no earlier synth output; choose an empty folder")
        for name in _OUTPUTS:
            path = out_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / _MARKER).write_text(json.dumps(settings, sort_keys=True) + "\n", encoding="utf-8")


def _render_all(jobs: list[_Track], seed: int, audio_dir: Path, workers: int, progress: bool) -> dict[int, int]:
    """Render and write every track, in `workers` processes; returns the frames written per track index."""
    write = functools.partial(_write_track, seed=seed, audio_dir=audio_dir)
    # Costliest first, so that no long job starts last and runs alone.
    jobs = sorted(jobs, key=_cost, reverse=True)
    workers = min(workers, len(jobs))
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    frames = {}
    with pool or nullcontext(), progress_bar(len(jobs), "synth", quiet=not progress, unit="track") as bar:
        for track, count in zip(jobs, pool.map(write, jobs) if pool else map(write, jobs)):
            frames[track.index] = count
            bar.update()
    return frames


def _cost(track: _Track) -> float:
    """Roughly proportional to the time a track takes: samples, and LAME is the slowest encoder."""
    return track.duration * track.sample_rate * track.channels * (3 if track.format == "mp3" else 1)


def _track_row(track: _Track, frames: int, top_popularity: float) -> dict:
    return {
        "path": track.path,
        "title": track.title,
        "artist": track.artist.name,
        "album": track.album,
        "genre": track.artist.style.name,
        "energy": f"{track.energy:.4f}",
        "valence": f"{track.valence:.4f}",
        "popularity": f"{track.popularity / top_popularity:.4f}",
        "duration": f"{frames / track.sample_rate:.4f}",
        "sample_rate": track.sample_rate,
        "channels": track.channels,
        "format": track.format,
    }


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
