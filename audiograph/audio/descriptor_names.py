"""The names of the descriptors and their version: what a store and a query need without loading librosa."""

PITCH_CLASSES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
DESCRIPTOR_NAMES: tuple[str, ...] = (
    "tempo_bpm",
    "onset_strength",
    "rms_mean",
    "rms_std",
    "loudness_db",
    "centroid_mean",
    "bandwidth_mean",
    "rolloff_mean",
    "flatness_mean",
    "zcr_mean",
    *(f"contrast_{i}" for i in range(1, 8)),
    *(f"mfcc_{i}" for i in range(1, 14)),
    *(f"chroma_{p}" for p in PITCH_CLASSES),
)
DESCRIPTORS_VERSION = "descriptors-v1"
