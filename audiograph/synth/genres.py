"""Genres as musical recipes: instrument timbres, drum grooves, scales and the eight hand-designed archetypes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import NamedTuple


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
    groove: str  # key of GROOVES
    swing: float  # delay of the off-beat eighths, as a fraction of an eighth
    jitter: float  # timing humanisation, seconds (0 is a quantised machine)
    root: tuple[int, int]  # MIDI range of the key's root, in the bass register
    scales: tuple[str, str]  # (bright, dark) keys of SCALES: valence chooses between them
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


PARTS = ("chords", "lead", "bass")  # the pitched instruments of a Style, by attribute name


@cache
def load_tables() -> dict:
    """The synthesizer's data tables (archetypes, parameter ranges), kept as data in archetypes.json."""
    return json.loads((Path(__file__).with_name("archetypes.json")).read_text(encoding="utf-8"))


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _style(record: dict) -> Style:
    """A `Style` from its JSON record (lists become tuples, instrument records `Timbre`s)."""
    fields = {k: Timbre(**v) if k in PARTS else _tuples(v) for k, v in record.items()}
    return Style(**fields)


class Groove(NamedTuple):
    """Drum patterns over one bar of sixteenths: X accent, x hit, o ghost note, . rest."""

    kick: str
    snare: str
    hat: str
    hat_decay: float  # seconds: a closed hat ~0.04, an open hat or ride ~0.3


GROOVES = {
    "none": Groove("", "", "", 0.05),
    "four_on_floor": Groove("X...X...X...X...", "....x.......x...", "..x...x...x...x.", 0.15),
    "backbeat": Groove("X.....x.X.x.....", "....X.......X...", "x.x.x.x.x.x.x.x.", 0.05),
    "boom_bap": Groove("X......x..X.....", "....X.......X..o", "x.x.x.x.x.x.x.x.", 0.04),
    "breakbeat": Groove("X.X.......XX....", "....X..o.o..X..o", "x.x.x.x.x.x.x.x.", 0.05),
    "half_time": Groove("X.........x.....", "........X.......", "x.x.x.x.x.x.x.x.", 0.05),
    "one_drop": Groove("........X.......", "........x.......", "x.x.x.x.x.x.x.x.", 0.06),
    "swing": Groove("o...o...o...o...", "..........o.....", "X...x.x.X...x.x.", 0.35),
    "double_kick": Groove("XxXxXxXxXxXxXxXx", "....X.......X...", "X.x.X.x.X.x.X.x.", 0.08),
}
VELOCITY = {"X": 1.0, "x": 0.75, "o": 0.35}

SCALES = {
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

ARCHETYPES: tuple[Style, ...] = tuple(_style(record) for record in load_tables()["archetypes"])
