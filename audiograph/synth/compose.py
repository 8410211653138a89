"""Composition: a track's chords, bass line, melody and drum onsets as timed notes."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from audiograph.synth.catalogue import Track
from audiograph.synth.genres import PARTS, SCALES, VELOCITY, Style
from audiograph.synth.names import pick


class Note(NamedTuple):
    """One note of a pitched instrument."""

    time: float  # seconds
    length: float  # seconds until the note is released
    pitch: float  # MIDI
    velocity: float


def compose(track: Track, rng: np.random.Generator, bars: int, sixteenth: float) -> dict[str, list[Note]]:
    """Chords, bass line and melody of the whole track, by part."""
    style, artist = track.artist.style, track.artist
    scale = SCALES[style.scales[0] if rng.random() < track.valence else style.scales[1]]
    root = artist.root + pick(rng, (0, 0, 0, 2, -2, 5, -5)) + round(4 * (track.valence - 0.5))
    chords = [_chord(scale, degree, style.chord_notes) for degree in pick(rng, style.progressions)]
    events = {part: [] for part in PARTS}  # (sixteenth, length in sixteenths, pitch, velocity)
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
    return [
        (s, end - s, VELOCITY.get(pattern[s : s + 1], 0.75)) for s, end in zip(steps, steps[1:] + [16], strict=True)
    ]


def _bass_register(semitones: int) -> int:
    return semitones % 12 - (12 if semitones % 12 > 7 else 0)


def _bass_pitch(line: str, chord: list[int], following: list[int], i: int, count: int, rng: np.random.Generator) -> int:
    """Semitones above the key's root of the `i`-th of a bar's `count` bass notes."""
    root = _bass_register(chord[0])
    if line == "arpeggio":
        return root + chord[(0, 2, 1, 2)[i % 4] % len(chord)] - chord[0]
    if line == "walk" and i == count - 1:
        return _bass_register(following[0]) + pick(rng, (-1, 1))  # chromatic approach to the next chord
    if line == "walk" and i > 0:
        return root + pick(rng, chord) - chord[0]
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
        for step, length, degree, velocity in zip(steps, lengths, degrees, velocities, strict=True):
            rows.append((16 * phrase + step, length, _scale_note(scale, degree), velocity))
    return rows


def _motif(density: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Onset steps in two bars, scale degrees (a random walk) and velocities of a melodic motif."""
    steps = np.flatnonzero(rng.random(32) < density)
    if not steps.size:
        steps = np.array([0])
    degrees = np.clip(rng.integers(0, 8) + np.cumsum(rng.choice((-2, -1, -1, 0, 1, 1, 2), size=steps.size)), -3, 12)
    return steps, degrees, rng.uniform(0.55, 0.9, steps.size)


def _notes(rows: list[tuple], style: Style, sixteenth: float, rng: np.random.Generator) -> list[Note]:
    if not rows:
        return []
    steps, lengths, pitches, velocities = (np.array(column) for column in zip(*rows, strict=True))
    times = onset_times(style, steps, sixteenth, rng)
    return [Note(*note) for note in zip(times, 0.9 * lengths * sixteenth, pitches, velocities, strict=True)]


def onset_times(style: Style, steps: np.ndarray, sixteenth: float, rng: np.random.Generator) -> np.ndarray:
    """Seconds of sixteenth-grid positions, with swing on the off-beat eighths and human jitter."""
    swung = steps + 2 * style.swing * (steps % 4 == 2)
    return np.maximum(swung * sixteenth + rng.normal(0, style.jitter, len(steps)), 0)
