"""Rendering: wavetable instruments, a drum kit and a mix with distortion, panning, reverb and fades."""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np

from audiograph.synth.catalogue import Track
from audiograph.synth.compose import Note, compose, onset_times
from audiograph.synth.genres import GROOVES, PARTS, VELOCITY, Groove, Style, Timbre

_TABLE_SIZE = 4096  # samples per wavetable cycle (a power of two: phases wrap with a bit mask)
_BELL_PARTIALS = ((2.76, 0.6), (5.40, 0.35), (8.93, 0.2))  # frequency ratio and level: a struck bar's modes
_DRUM_LEVELS = {"kick": 1.0, "snare": 0.8, "hat": 0.35}


def render(track: Track, rng: np.random.Generator) -> np.ndarray:
    """The track's audio as (frames, channels) float32, peak-normalised below full scale."""
    style = track.artist.style
    frames = max(1, round(track.duration * track.sample_rate))
    bpm = track.artist.tempo * (1 + 0.3 * (track.energy - 0.5)) * rng.normal(1, 0.015)
    sixteenth = 15 / bpm
    bars = int(track.duration / (16 * sixteenth)) + 2
    notes = compose(track, rng, bars, sixteenth)
    # Energy brightens every instrument: a lower rolloff puts more level in the upper harmonics.
    brighter = 1.6 * (track.energy - 0.5)
    stems = {}
    for part in PARTS:
        timbre = getattr(style, part)
        timbre = replace(timbre, rolloff=max(0.4, timbre.rolloff - brighter))
        stems[part] = _play(notes[part], timbre, track.sample_rate, frames, rng)
    stems["drums"] = _drums(style, track.energy, rng, bars, sixteenth, track.sample_rate, frames)
    return _mix(stems, track, rng)


def _play(notes: list[Note], timbre: Timbre, sr: int, frames: int, rng: np.random.Generator) -> np.ndarray:
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
    if style.groove == "none":
        return out
    groove = GROOVES[style.groove]
    kit = _drum_kit(style, groove, sr, rng)
    playing = np.ones(bars, dtype=bool)
    playing[0] = rng.random() < 0.5
    if bars >= 8 and rng.random() < 0.5:
        start = rng.integers(bars // 2, bars - 2)
        playing[start : start + 2] = False
    playing = np.repeat(playing, 16)
    for voice, pattern in zip(_DRUM_LEVELS, (groove.kick, groove.snare, groove.hat), strict=True):
        grid = np.tile([VELOCITY.get(c, 0.0) for c in pattern], bars) * playing
        if voice == "hat":
            grid[(grid == 0) & playing & (rng.random(grid.size) < 0.4 * energy)] = VELOCITY["o"]
        steps = np.flatnonzero(grid)
        gains = grid[steps] * (0.55 + 0.6 * energy) * rng.normal(1, 0.06, steps.size)
        for time, gain in zip(onset_times(style, steps, sixteenth, rng), gains, strict=True):
            _add(out, int(time * sr), np.float32(gain) * kit[voice])
    return out


def _drum_kit(style: Style, groove: Groove, sr: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One-second kick (pitch sweep), snare (tone and noise) and hat (high-passed noise) samples."""
    from scipy.signal import butter, sosfilt  # imported here, as it takes a second: not for `synth --help`

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
        for (name, level), s in zip(_DRUM_LEVELS.items(), (kick, snare, hat), strict=True)
    }


def _mix(stems: dict[str, np.ndarray], track: Track, rng: np.random.Generator) -> np.ndarray:
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
    from scipy.signal import fftconvolve  # imported here, as it takes a second: not for `synth --help`

    t = np.arange(int(seconds * sr)) / sr
    response = rng.standard_normal(t.size) * np.exp(-6.9 * t / seconds)
    return fftconvolve(x, (response / np.sqrt(np.sum(response**2))).astype(np.float32))[: len(x)]
