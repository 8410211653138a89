"""42 interpretable audio descriptors per track, from the spectrogram the front-end already computed.

The analogue of the MUSIG paper's 42-dimensional "audio" feature group (Table 1). Every feature
is a summary over the whole track; see `DESCRIPTOR_NAMES` for the order.

| index | name | meaning |
|---|---|---|
| 0 | tempo_bpm | global tempo estimate (librosa's `tempo` on the mel onset envelope) |
| 1 | onset_strength | mean onset strength: how percussive/rhythmic the track is |
| 2-3 | rms_mean, rms_std | frame RMS energy (linear) |
| 4 | loudness_db | mean frame RMS in dBFS |
| 5 | centroid_mean | spectral centroid in Hz: brightness |
| 6 | bandwidth_mean | spectral bandwidth in Hz |
| 7 | rolloff_mean | 85% spectral roll-off in Hz |
| 8 | flatness_mean | spectral flatness: noise-like (1) vs tonal (0) |
| 9 | zcr_mean | zero-crossing rate: noisiness/percussiveness |
| 10-16 | contrast_1..7 | mean spectral contrast in 6 octave bands + the residual band |
| 17-29 | mfcc_1..13 | mean MFCCs of the log-mel: timbre |
| 30-41 | chroma_C..chroma_B | mean chroma: harmony / key profile |
"""

from __future__ import annotations

import numpy as np

from audiograph.audio.descriptor_names import DESCRIPTOR_NAMES, DESCRIPTORS_VERSION, PITCH_CLASSES  # noqa: F401
from audiograph.audio.spectral import (
    chroma_filterbank,
    fft_frequencies,
    fft_functions,
    frames,
    normalize_columns,
    power_to_db,
)


def compute_descriptors(
    samples: np.ndarray, power: np.ndarray, mel_db: np.ndarray, sample_rate: int, n_fft: int, hop_length: int
) -> np.ndarray:
    """The descriptor vector (float32, len(DESCRIPTOR_NAMES)) of one track.

    `power` is the |STFT|^2 [n_fft // 2 + 1, frames] and `mel_db` the log-mel [n_mels, frames]
    of `samples`; every spectral feature reuses them instead of computing its own STFT. Each
    feature is librosa's (`librosa.feature.*` with these inputs and its defaults, chroma at A440),
    written in numpy so that a one-file query does not import librosa; the tests compare them.
    """
    sr, hop = sample_rate, hop_length
    freq = fft_frequencies(sr, n_fft)
    onset_env = onset_strength(mel_db, n_fft, hop)
    blocks = [
        _frame_features(power[:, start : start + DESCRIPTOR_BLOCK_FRAMES], freq, sr, n_fft)
        for start in range(0, power.shape[1], DESCRIPTOR_BLOCK_FRAMES)
    ]
    f = {name: np.concatenate([block[name] for block in blocks], axis=-1) for name in blocks[0]}
    values = [
        tempo(onset_env, sr, hop),
        onset_env.mean(),
        f["rms"].mean(),
        f["rms"].std(),
        20 * np.log10(max(float(f["rms"].mean()), 1e-10)),
        f["centroid"].mean(),
        f["bandwidth"].mean(),
        f["rolloff"].mean(),
        f["flatness"].mean(),
        zero_crossing_rate(samples, n_fft, hop).mean(),
        *f["contrast"].mean(axis=1),
        *mfcc(mel_db, 13).mean(axis=1),
        *f["chroma"].mean(axis=1),
    ]
    return np.asarray(values, dtype=np.float32)


# Frames whose spectral features are computed together: a clip in one go, a long track in blocks, so that the
# full-size temporaries (magnitude, cumulative sums, logarithms) never exist for all of its frames at once.
DESCRIPTOR_BLOCK_FRAMES = 4096


def _frame_features(power: np.ndarray, freq: np.ndarray, sample_rate: int, n_fft: int) -> dict[str, np.ndarray]:
    """The per-frame spectral features of the power spectrogram [bins, frames] of some of a track's frames."""
    magnitude = np.sqrt(power)
    centroid, bandwidth = centroid_and_bandwidth(magnitude, freq)
    cumulative = np.cumsum(magnitude, axis=0)
    # The lowest frequency at which the cumulative magnitude reaches 85 % of the total: as the cumulative
    # sums never decrease, its index is the count of bins below the threshold.
    rolloff = freq[np.count_nonzero(cumulative < 0.85 * cumulative[-1:], axis=0)]
    del cumulative
    floored = np.maximum(1e-10, power)
    flatness = np.exp(np.mean(np.log(floored), axis=0)) / np.mean(floored, axis=0)
    del floored
    return {
        "rms": frame_rms(power, n_fft),
        "centroid": centroid,
        "bandwidth": bandwidth,
        "rolloff": rolloff,
        "flatness": flatness,
        "contrast": spectral_contrast(magnitude, freq),
        "chroma": normalize_columns(chroma_filterbank(sample_rate, n_fft) @ power, np.inf),
    }


def onset_strength(mel_db: np.ndarray, n_fft: int, hop_length: int) -> np.ndarray:
    """Mean positive log-mel flux per frame, shifted to centred frames (`librosa.onset.onset_strength`)."""
    flux = np.maximum(0.0, mel_db[:, 1:] - mel_db[:, :-1]).mean(axis=0)
    lag_and_centre = 1 + n_fft // (2 * hop_length)
    return np.pad(flux, (lag_and_centre, 0))[: mel_db.shape[1]]


def tempo(onset_env: np.ndarray, sample_rate: int, hop_length: int, start_bpm: float = 120.0) -> float:
    """Global tempo in BPM: the mean 8 s autocorrelation tempogram, weighted by a log-normal prior around
    `start_bpm` (one octave wide) and capped at 320 BPM (`librosa.feature.tempo`)."""
    fft = fft_functions()
    win = int(8.0 * sample_rate) // hop_length
    n = len(onset_env)
    # Single precision throughout: the FFTs take half the time, and the chosen tempo is librosa's.
    padded = np.pad(onset_env.astype(np.float32), win // 2, mode="linear_ramp", end_values=0)
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)).astype(np.float32)
    windows = frames(padded, win, 1)[:n] * window
    size = 2 * win - 1
    spectrum = fft.rfft(windows, n=size, axis=1)
    autocorrelation = fft.irfft(spectrum.real**2 + spectrum.imag**2, n=size, axis=1)[:, :win]
    tempogram = normalize_columns(autocorrelation.T, np.inf).mean(axis=1)
    with np.errstate(divide="ignore"):
        bpms = 60.0 * sample_rate / (hop_length * np.arange(win, dtype=np.float64))
        log_prior = -0.5 * (np.log2(bpms) - np.log2(start_bpm)) ** 2
    log_prior[: int(np.argmax(bpms < 320.0))] = -np.inf
    return float(bpms[np.argmax(np.log1p(1e6 * tempogram) + log_prior)])


def frame_rms(power: np.ndarray, n_fft: int) -> np.ndarray:
    """Frame RMS from the power spectrum by Parseval (`librosa.feature.rms(S=...)`)."""
    total = power.sum(axis=0, dtype=np.float64) - 0.5 * power[0]
    if n_fft % 2 == 0:
        total -= 0.5 * power[-1]
    return np.sqrt(2 * total / n_fft**2).astype(np.float32)


def centroid_and_bandwidth(magnitude: np.ndarray, freq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spectral centroid and bandwidth (p = 2) per frame (`librosa.feature.spectral_centroid` and
    `spectral_bandwidth`), from the first two moments of each frame's magnitude over frequency; all-zero
    frames give 0."""
    # One product for the three sums, in float64, where sum(w (f - c)^2) = sum(w f^2) - c^2 sum(w) loses nothing.
    total, first, second = np.stack([np.ones_like(freq), freq, freq**2]) @ magnitude
    total = np.where(total < np.finfo(magnitude.dtype).tiny, np.inf, total)
    centroid = first / total
    return centroid, np.sqrt(np.maximum(second / total - centroid**2, 0.0))


def zero_crossing_rate(samples: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """Share of sign changes per centred frame, |x| <= 1e-10 counting as positive
    (`librosa.feature.zero_crossing_rate`)."""
    negative = np.pad(samples < -1e-10, frame_length // 2, mode="edge")
    # Where the sign changes, found once over the signal; a frame counts the changes that fall inside it.
    changes = np.flatnonzero(negative[1:] != negative[:-1])
    starts = np.arange(0, len(negative) - frame_length + 1, hop_length)
    inside = np.searchsorted(changes, starts + frame_length - 1) - np.searchsorted(changes, starts)
    return inside / frame_length


def spectral_contrast(
    magnitude: np.ndarray, freq: np.ndarray, fmin: float = 200.0, n_bands: int = 6, quantile: float = 0.02
) -> np.ndarray:
    """Peak minus valley in dB, in octave bands from `fmin` plus the band above (`librosa.feature.spectral_contrast`)."""
    edges = np.zeros(n_bands + 2)
    edges[1:] = fmin * 2.0 ** np.arange(n_bands + 1)
    valley = np.zeros((n_bands + 1, magnitude.shape[1]))
    peak = np.zeros_like(valley)
    for k, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
        band = (freq >= low) & (freq <= high)
        idx = np.flatnonzero(band)
        if k > 0:
            band[idx[0] - 1] = True
        if k == n_bands:
            band[idx[-1] + 1 :] = True
        rows = magnitude[band]
        if k < n_bands:
            rows = rows[:-1]
        count = max(int(np.rint(quantile * band.sum())), 1)
        # A full sort along the bins beats a two-sided partition several times over (numpy's SIMD sort).
        ordered = np.sort(rows, axis=0)
        valley[k] = ordered[:count].mean(axis=0)
        peak[k] = ordered[-count:].mean(axis=0)
    return power_to_db(peak) - power_to_db(valley)


def mfcc(mel_db: np.ndarray, n_mfcc: int) -> np.ndarray:
    """The first `n_mfcc` coefficients of the orthonormal DCT-II of the log-mel (`librosa.feature.mfcc`)."""
    n = mel_db.shape[0]
    k = np.arange(n_mfcc)[:, None]
    basis = np.cos(np.pi / n * (np.arange(n)[None, :] + 0.5) * k) * np.sqrt(2.0 / n)
    basis[0] /= np.sqrt(2.0)
    return basis @ mel_db
