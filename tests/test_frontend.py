"""The log-mel front-end against librosa, chunking, and the encoder's shapes and normalisation."""

import subprocess
import sys

import librosa
import numpy as np
import pytest
import torch

from audiograph.audio.config import AudioConfig
from audiograph.audio.decode import decode
from audiograph.audio.encoder import AudioEncoder, embed_tracks
from audiograph.audio.frontend import AudioFrontend, LogMel, chunk_spans


def _librosa_db(y, top_db):
    mel = librosa.feature.melspectrogram(y=y, sr=22050, n_fft=2048, hop_length=1024, n_mels=128)
    return librosa.power_to_db(mel, top_db=top_db)


def test_logmel_matches_librosa_on_real_recordings(shared_data):
    logmel = LogMel()
    exact = LogMel(top_db=None).double()
    for path in sorted((shared_data / "audio").glob("*.[om][gp][g3]")):
        y = decode(path).samples
        ours = logmel(torch.from_numpy(y)).numpy()
        ref = _librosa_db(y, top_db=80.0)
        assert ours.shape == ref.shape
        assert np.abs(ours - ref).max() < 1e-3, path.name
        # In float64 and without the 80 dB floor, every bin agrees: the same computation.
        ours64 = exact(torch.from_numpy(y).double()).numpy()
        ref64 = _librosa_db(y.astype(np.float64), top_db=None)
        assert np.abs(ours64 - ref64).max() < 1e-6, path.name


def test_logmel_batches_equal_single_items():
    logmel = LogMel()
    y = torch.randn(3, 22050 * 2) * 0.1
    y[1] *= 0.01  # a quieter item: the top_db floor is per item, not per batch
    batch = logmel(y)
    for i in range(3):
        torch.testing.assert_close(batch[i], logmel(y[i]), atol=1e-4, rtol=0)


def test_chunk_spans():
    assert chunk_spans(100, 646, 4) == [(0, 100)]  # shorter than a chunk: one chunk, whole track
    assert chunk_spans(646, 646, 4) == [(0, 646)]
    assert chunk_spans(1000, 646, 4) == [(0, 646), (354, 1000)]  # covers both ends
    spans = chunk_spans(100_000, 646, 4)
    assert len(spans) == 4 and spans[0][0] == 0 and spans[-1][1] == 100_000  # capped, spread evenly
    assert all(b - a == 646 for a, b in spans)
    assert len(chunk_spans(100_000, 646, None)) == 155


def test_frontend_chunks_and_signature():
    fe = AudioFrontend()
    assert fe.config.chunk_frames == 646  # 30 s at 22,050 Hz with hop 1024
    mel = torch.randn(128, 1500)
    chunks = fe.chunks(mel)
    assert [c.shape[-1] for c in chunks] == [646, 646, 646]
    torch.testing.assert_close(chunks[-1], mel[:, -646:])
    assert fe.config.signature() != AudioFrontend(AudioConfig(n_mels=96)).config.signature()
    assert AudioConfig.from_dict(fe.config.to_dict()).signature() == fe.config.signature()


@pytest.mark.parametrize("frames", [1, 3, 8, 646, 1000])
def test_encoder_shapes_and_unit_norm(frames):
    encoder = AudioEncoder(embedding_dim=32).eval()
    out = encoder(torch.randn(5, 128, frames))
    assert out.shape == (5, 32)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(5))


def test_encoder_architecture_follows_the_reference():
    encoder = AudioEncoder()
    convs = [m for m in encoder.conv if isinstance(m, torch.nn.Conv1d)]
    pools = [m.kernel_size for m in encoder.conv if isinstance(m, torch.nn.MaxPool1d)]
    assert len(convs) == 3 and all(c.in_channels == c.out_channels == 128 for c in convs)
    assert pools == [4, 2]
    linears = [m for m in encoder.head if isinstance(m, torch.nn.Linear)]
    assert [(layer.in_features, layer.out_features) for layer in linears] == [(128, 1024), (1024, 1024), (1024, 128)]


def test_track_vector_is_normalised_mean_of_chunk_vectors():
    torch.manual_seed(0)
    encoder = AudioEncoder(embedding_dim=16).eval()
    a = [torch.randn(128, 646), torch.randn(128, 646)]
    b = [torch.randn(128, 200)]  # shorter than one chunk
    out = embed_tracks(encoder, [a, b], batch_size=1)
    with torch.no_grad():
        expected_a = torch.nn.functional.normalize(encoder(torch.stack(a)).mean(0), dim=0)
        expected_b = encoder(b[0][None])[0]
    torch.testing.assert_close(out[0], expected_a, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1], expected_b, atol=1e-5, rtol=0)


RETAIN_CHECK = """
import resource, sys
import numpy as np
from audiograph.audio.spectral import power_spectrogram
from audiograph.runtime import retain_freed_memory
if sys.argv[1] == "retain" and not retain_freed_memory():
    print("unsupported")
    sys.exit()
samples = np.random.default_rng(0).standard_normal(22_050 * 20).astype(np.float32)
for _ in range(3):
    power_spectrogram(samples, 2048, 1024)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    power_spectrogram(samples, 2048, 1024)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


def test_analysis_workers_reuse_freed_memory_instead_of_faulting_it_in_again():
    """A 20 s track's STFT allocates about 9 MB; with freed memory retained a worker's next track faults in
    (almost) no pages, where glibc's default returns them to the kernel and faults them in again."""

    def faults(mode: str) -> str:
        done = subprocess.run([sys.executable, "-c", RETAIN_CHECK, mode], capture_output=True, text=True, check=True)
        return done.stdout.strip()

    retained = faults("retain")
    if retained == "unsupported":
        pytest.skip("not glibc: mallopt is unavailable")
    assert float(retained) < 50
    assert float(faults("default")) > 500  # the check can tell: by default each call faults its arrays in
