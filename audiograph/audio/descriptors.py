"""42 interpretable audio descriptors per track, from the spectrogram the front-end already computed.

The analogue of the MUSIG paper's 42-dimensional "audio" feature group (Table 1). Every feature
is a summary over the whole track; see `DESCRIPTOR_NAMES` for the order.

| index | name | meaning |
|---|---|---|
| 0 | tempo_bpm | global tempo estimate (librosa.feature.tempo on the mel onset envelope) |
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

import librosa

# Imported eagerly, not on librosa's lazy first use: these modules compile numba functions at
# import and cache them on disk. Importing here, in the process that later forks DataLoader
# workers, means the workers inherit them instead of compiling concurrently, which can leave a
# corrupt cache that crashes every later run.
import librosa.feature
import librosa.onset
import numpy as np

from audiograph.audio.descriptor_names import DESCRIPTOR_NAMES, DESCRIPTORS_VERSION, PITCH_CLASSES  # noqa: F401


def compute_descriptors(
    samples: np.ndarray, power: np.ndarray, mel_db: np.ndarray, sample_rate: int, n_fft: int, hop_length: int
) -> np.ndarray:
    """The descriptor vector (float32, len(DESCRIPTOR_NAMES)) of one track.

    `power` is the |STFT|^2 [n_fft // 2 + 1, frames] and `mel_db` the log-mel [n_mels, frames]
    of `samples`; every spectral feature reuses them instead of computing its own STFT.
    """
    sr, hop = sample_rate, hop_length
    magnitude = np.sqrt(power)
    onset_env = librosa.onset.onset_strength(S=mel_db, sr=sr, hop_length=hop)
    tempo = librosa.feature.tempo(onset_envelope=onset_env, sr=sr, hop_length=hop)[0]
    rms = librosa.feature.rms(S=magnitude, frame_length=n_fft)[0]
    centroid = librosa.feature.spectral_centroid(S=magnitude, sr=sr, n_fft=n_fft)[0]
    bandwidth = librosa.feature.spectral_bandwidth(S=magnitude, sr=sr, n_fft=n_fft)[0]
    rolloff = librosa.feature.spectral_rolloff(S=magnitude, sr=sr, n_fft=n_fft)[0]
    flatness = librosa.feature.spectral_flatness(S=magnitude)[0]
    contrast = librosa.feature.spectral_contrast(S=magnitude, sr=sr, n_fft=n_fft)
    zcr = librosa.feature.zero_crossing_rate(samples, frame_length=n_fft, hop_length=hop)[0]
    mfcc = librosa.feature.mfcc(S=mel_db, n_mfcc=13)
    # tuning=0 (A440) skips librosa's pitch-tracking tuning estimate: 20x cheaper, and no numba JIT,
    # whose on-disk cache can be corrupted when several worker processes compile at once.
    chroma = librosa.feature.chroma_stft(S=power, sr=sr, n_fft=n_fft, tuning=0.0)
    values = [
        tempo,
        onset_env.mean(),
        rms.mean(),
        rms.std(),
        20 * np.log10(max(float(rms.mean()), 1e-10)),
        centroid.mean(),
        bandwidth.mean(),
        rolloff.mean(),
        flatness.mean(),
        zcr.mean(),
        *contrast.mean(axis=1),
        *mfcc.mean(axis=1),
        *chroma.mean(axis=1),
    ]
    return np.asarray(values, dtype=np.float32)
