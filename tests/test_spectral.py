"""The numpy spectrogram, filterbanks and descriptors against librosa, the library they reproduce."""

import io

import librosa
import numpy as np
import pytest
import soundfile as sf

from audiograph.audio import spectral
from audiograph.audio.analysis import analyse
from audiograph.audio.config import AudioConfig
from audiograph.audio.decode import decode
from audiograph.audio.descriptor_names import DESCRIPTOR_NAMES
from audiograph.audio.descriptors import compute_descriptors

SR, N_FFT, HOP = 22050, 2048, 1024


def librosa_descriptors(samples, power, mel_db):
    """The descriptors as librosa computes them from the same spectrogram (the original implementation)."""
    feature, magnitude = librosa.feature, np.sqrt(power)
    onset = librosa.onset.onset_strength(S=mel_db, sr=SR, hop_length=HOP)
    rms = feature.rms(S=magnitude, frame_length=N_FFT)[0]
    spectral_kw = {"S": magnitude, "sr": SR, "n_fft": N_FFT}
    values = [
        feature.tempo(onset_envelope=onset, sr=SR, hop_length=HOP)[0],
        onset.mean(),
        rms.mean(),
        rms.std(),
        20 * np.log10(max(float(rms.mean()), 1e-10)),
        feature.spectral_centroid(**spectral_kw).mean(),
        feature.spectral_bandwidth(**spectral_kw).mean(),
        feature.spectral_rolloff(**spectral_kw).mean(),
        feature.spectral_flatness(S=magnitude).mean(),
        feature.zero_crossing_rate(samples, frame_length=N_FFT, hop_length=HOP).mean(),
        *feature.spectral_contrast(**spectral_kw).mean(axis=1),
        *feature.mfcc(S=mel_db, n_mfcc=13).mean(axis=1),
        *feature.chroma_stft(S=power, sr=SR, n_fft=N_FFT, tuning=0.0).mean(axis=1),
    ]
    return np.asarray(values, np.float32)


def test_filterbanks_equal_librosa():
    for sr, n_fft, n_mels in [(22050, 2048, 128), (16000, 1024, 64), (44100, 4096, 96)]:
        ours = spectral.mel_filterbank(sr, n_fft, n_mels)
        np.testing.assert_allclose(ours, librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels), atol=1e-7)
        ours = spectral.chroma_filterbank(sr, n_fft)
        np.testing.assert_allclose(ours, librosa.filters.chroma(sr=sr, n_fft=n_fft), atol=1e-6)


def test_banded_mel_product_equals_the_dense_one():
    rng = np.random.default_rng(0)
    # The last setting has empty filters (more mel bands than low-frequency bins can feed).
    for sr, n_fft, n_mels in [(22050, 2048, 128), (16000, 1024, 64), (44100, 4096, 96), (22050, 256, 128)]:
        power = rng.random((n_fft // 2 + 1, 37), dtype=np.float32) ** 4
        dense = spectral.mel_filterbank(sr, n_fft, n_mels) @ power
        np.testing.assert_allclose(spectral.mel_power(power, sr, n_fft, n_mels), dense, rtol=1e-5, atol=1e-9)


def _signals():
    rng = np.random.default_rng(0)
    t = np.arange(SR * 12) / SR
    clicks = (np.sin(2 * np.pi * 2 * t) > 0.999).astype(np.float32)  # 120 BPM pulses
    tone = 0.3 * np.sin(2 * np.pi * 440 * t * (1 + 0.1 * t / t[-1]))
    yield "tone+clicks+noise", (tone + clicks + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    yield "silence then noise", np.concatenate([np.zeros(SR * 3), 0.2 * rng.standard_normal(SR * 5)]).astype(np.float32)


def _check_equal(name, samples):
    power = spectral.power_spectrogram(samples, N_FFT, HOP)
    reference_power = np.abs(librosa.stft(samples, n_fft=N_FFT, hop_length=HOP, pad_mode="constant")) ** 2
    assert power.shape == reference_power.shape
    np.testing.assert_allclose(power, reference_power, rtol=1e-3, atol=1e-6 * reference_power.max(), err_msg=name)
    mel_db = spectral.power_to_db(spectral.mel_power(power, SR, N_FFT, 128))
    reference_db = librosa.power_to_db(librosa.feature.melspectrogram(S=reference_power, sr=SR), top_db=80)
    assert np.abs(mel_db - reference_db).max() < 1e-3, name
    ours = compute_descriptors(samples, power, mel_db, SR, N_FFT, HOP)
    theirs = librosa_descriptors(samples, power, mel_db)
    for i, descriptor in enumerate(DESCRIPTOR_NAMES):
        assert ours[i] == pytest.approx(theirs[i], rel=1e-4, abs=1e-5), f"{name}: {descriptor}"


def test_descriptors_equal_librosa_on_made_signals():
    for name, samples in _signals():
        _check_equal(name, samples)


def test_descriptors_equal_librosa_on_real_recordings(shared_data):
    paths = sorted((shared_data / "audio").glob("*.[om][gp][g3]"))
    assert len(paths) == 9
    for path in paths:
        _check_equal(path.name, decode(path, SR).samples)


def test_analysis_imports_neither_torch_nor_librosa(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from audiograph.audio.analysis import analyse\n"
        "from audiograph.audio.config import AudioConfig\n"
        "import numpy as np, soundfile as sf\n"
        f"sf.write({str(tmp_path / 'a.wav')!r}, np.random.default_rng(0).standard_normal(44100) * 0.1, 22050)\n"
        f"a = analyse({str(tmp_path / 'a.wav')!r}, AudioConfig())\n"
        "assert a.descriptors.shape == (42,)\n"
        "print(sorted(m for m in ('torch', 'librosa', 'scipy.signal', 'numba') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_file_analysed_alone_gets_exactly_what_a_batch_gave_it(shared_data, tmp_path):
    """A query analyses one file in a fresh process; embed-audio analysed it in a worker among others. The
    descriptors (the fingerprint that finds a stored copy of a file) must agree to float32 rounding: at 44.1 kHz
    the bins above the resampler's cut-off hold only FFT rounding, which differed between FFT modules."""
    import subprocess
    import sys

    from audiograph.pipelines.embed_audio import embed_audio
    from audiograph.store import Store

    music = tmp_path / "music"
    music.mkdir()
    source = sorted((shared_data / "audio").glob("*.ogg"))[0]
    samples, rate = sf.read(source, dtype="float32")
    from scipy.signal import resample_poly

    sf.write(music / "44k.wav", resample_poly(samples, 2, 1, axis=0).astype(np.float32), 2 * rate, subtype="FLOAT")
    store = Store(tmp_path / "s.db")
    embed_audio(music, store, num_workers=1, quiet=True)
    (stored,) = store.vectors.matrix("descriptors")[1]
    code = (
        "import sys, numpy as np\n"
        "from audiograph.audio.analysis import analyse\n"
        "from audiograph.audio.config import AudioConfig\n"
        f"np.save(sys.stdout.buffer, analyse({str(music / '44k.wav')!r}, AudioConfig()).descriptors)\n"
    )
    alone = np.load(io.BytesIO(subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout))
    np.testing.assert_allclose(alone, stored, rtol=1e-5, atol=1e-6)  # BLAS threads may sum in another order


def test_analysis_chunks_equal_the_torch_frontend(shared_data):
    torch = pytest.importorskip("torch")
    from audiograph.audio.frontend import AudioFrontend

    path = shared_data / "audio" / "Kevin_MacLeod_-_Vibe_Ace.ogg"
    frontend = AudioFrontend(AudioConfig(chunk_seconds=10.0))
    mel = frontend.logmel(torch.from_numpy(decode(path, SR).samples))
    expected = [c.numpy() for c in frontend.chunks(mel)]
    chunks = analyse(path, frontend.config, descriptors=False).mel_chunks
    assert len(chunks) == len(expected) == 4
    for ours, theirs in zip(chunks, expected):
        assert np.abs(ours.astype(np.float32) - theirs).max() < 0.05  # float16 rounding of -80..+40 dB


def test_a_long_track_is_transformed_in_blocks_with_the_values_of_one_transform(monkeypatch):
    """Frames on both sides of a block boundary equal numpy's own transform of that frame, and the descriptors
    of a track of several blocks are those of a single block."""
    import audiograph.audio.descriptors as descriptors
    import audiograph.audio.spectral as spectral

    monkeypatch.setattr(spectral, "STFT_BLOCK_FRAMES", 64)
    rng = np.random.default_rng(3)
    samples = rng.standard_normal(1024 * 200).astype(np.float32)
    power = spectral.power_spectrogram(samples, 2048, 1024)
    padded = np.pad(samples.astype(np.float64), 1024)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(2048) / 2048)
    for frame in (0, 63, 64, 65, 127, 128, power.shape[1] - 1):
        expected = np.abs(np.fft.rfft(padded[frame * 1024 : frame * 1024 + 2048] * window)) ** 2
        np.testing.assert_allclose(power[:, frame], expected, rtol=1e-3, atol=1e-3 * expected.max())
    mel = spectral.power_to_db(spectral.mel_power(power, 22050, 2048, 128))
    blocked = descriptors.compute_descriptors(samples, power, mel, 22050, 2048, 1024)
    monkeypatch.setattr(descriptors, "DESCRIPTOR_BLOCK_FRAMES", 100_000)
    whole = descriptors.compute_descriptors(samples, power, mel, 22050, 2048, 1024)
    monkeypatch.setattr(descriptors, "DESCRIPTOR_BLOCK_FRAMES", 64)
    np.testing.assert_allclose(
        descriptors.compute_descriptors(samples, power, mel, 22050, 2048, 1024), whole, rtol=1e-6
    )
    np.testing.assert_allclose(blocked, whole, rtol=1e-6)
