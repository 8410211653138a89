"""Model objects: one way to get vectors, saved and loaded as config plus weights, and never running code."""

import json
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from audiograph.audio.analysis import analyse, chunks_as_tensors
from audiograph.audio.config import AudioConfig
from audiograph.audio.encoder import embed_tracks
from audiograph.errors import ConfigError, StoreError
from audiograph.graph.csr import CSRGraph
from audiograph.models import MODEL_CLASSES, AcousticModel, MusigModel, load_model
from audiograph.musig.features import FeatureSpec


def test_acoustic_model_encodes_files_and_waveforms_like_the_front_end_and_encoder(synth_collection):
    torch.manual_seed(0)
    model = AcousticModel(AudioConfig(n_mels=64, chunk_seconds=5.0), {"embedding_dim": 32}).eval()
    paths = sorted((synth_collection / "audio").rglob("*.mp3"))[:3]
    vectors = model.encode(paths, batch_size=2)
    # The same chunks through the bare encoder (an independent path through embed_tracks).
    expected = embed_tracks(
        model.encoder, [chunks_as_tensors(analyse(p, model.config, descriptors=False).mel_chunks) for p in paths]
    ).numpy()
    assert vectors.shape == (3, 32) and model.encoder.head[-1].out_features == 32
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # A waveform at the config's sample rate gives the file's vector (float16 chunks, as cached).
    samples = analyse(paths[0], model.config, descriptors=False).audio
    assert samples.duration > 0
    from audiograph.audio.decode import decode

    waveform = decode(paths[0], model.config.sample_rate).samples
    np.testing.assert_allclose(model.encode([waveform])[0], vectors[0], atol=1e-5)


def test_encode_takes_one_item_and_checks_waveforms_as_decoding_checks_files(synth_collection):
    from audiograph.audio.decode import decode
    from audiograph.errors import DecodeError

    torch.manual_seed(0)
    model = AcousticModel(AudioConfig(n_mels=64, chunk_seconds=5.0), {"embedding_dim": 32}).eval()
    path = sorted((synth_collection / "audio").rglob("*.mp3"))[0]
    waveform = decode(path, model.config.sample_rate).samples
    one = model.encode(path)
    assert one.shape == (32,) and isinstance(one, np.ndarray) and one.dtype == np.float32
    as_tensor = model.encode([path], convert_to_tensor=True)
    assert isinstance(as_tensor, torch.Tensor) and torch.equal(as_tensor[0], torch.from_numpy(one))
    np.testing.assert_allclose(one, model.encode([path])[0], atol=1e-7)
    np.testing.assert_allclose(model.encode(str(path)), one, atol=1e-7)
    np.testing.assert_allclose(model.encode(waveform), model.encode([waveform])[0], atol=1e-7)
    np.testing.assert_allclose(model.encode(torch.from_numpy(waveform)), model.encode(waveform), atol=1e-7)
    scaled = np.round(np.clip(waveform, -1, 1) * 32767).astype(np.int16)  # 16-bit samples, as a WAV holds them
    np.testing.assert_allclose(model.encode(scaled), model.encode(scaled / 32768.0), atol=1e-6)
    rate = model.config.sample_rate
    bad = [
        (np.full(3 * rate, np.nan, np.float32), "corrupt: samples not finite"),
        (np.zeros(3 * rate, np.float32), "silent (digital silence)"),
        (np.ones((3 * rate, 2), np.float32) * 0.1, "a waveform must be mono"),
        (waveform[: rate // 2], "too short: 0.50 s"),
    ]
    for samples, reason in bad:
        with pytest.raises(DecodeError, match=re.escape(reason)):
            model.encode([waveform, samples])
    with pytest.raises(ConfigError, match="batch_size must be at least 1"):
        model.encode([path], batch_size=0)


def test_encode_takes_waveforms_at_other_rates_and_in_other_sample_types(tmp_path):
    """A waveform at another rate, given `sample_rate`, is resampled as decoding resamples a file of that rate
    (an independent path: the decoder's streaming resampler); 8-bit unsigned samples are centred on 128;
    half-precision tensors are read; a [samples, channels] array is refused in one line."""
    torch.manual_seed(0)
    model = AcousticModel(AudioConfig(n_mels=64, chunk_seconds=5.0), {"embedding_dim": 32}).eval()
    t = np.arange(6 * 44_100) / 44_100
    wave = (0.3 * np.sin(2 * np.pi * 330 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    sf.write(tmp_path / "44k.wav", wave, 44_100, subtype="FLOAT")
    from_file = model.encode(tmp_path / "44k.wav")
    np.testing.assert_allclose(model.encode(wave, sample_rate=44_100), from_file, atol=2e-3)
    assert np.abs(model.encode(wave) - from_file).max() > 0.05  # read at the model's rate, it is another sound
    native = model.encode(wave[::2].copy())
    eight_bit = np.clip(np.round(wave[::2] * 127 + 128), 0, 255).astype(np.uint8)
    np.testing.assert_allclose(model.encode(eight_bit), native, atol=0.05)
    np.testing.assert_allclose(model.encode(torch.from_numpy(wave[::2]).bfloat16()), native, atol=0.05)
    with pytest.raises(ValueError, match=r"looks like \[samples, channels\]"):
        model.encode(np.stack([wave, wave], axis=1))


def test_saved_models_load_equal_and_record_their_settings(tmp_path):
    torch.manual_seed(1)
    acoustic = AcousticModel(AudioConfig(n_mels=48), {"input_norm": "collection", "head_layers": 1}).eval()
    acoustic.encoder.set_input_statistics(torch.arange(48.0), torch.full((48,), 3.0))
    folder = acoustic.save(tmp_path / "acoustic")
    assert json.loads((folder / "config.json").read_text())["audio"]["n_mels"] == 48
    loaded = load_model("audio-encoder", folder)
    x = torch.randn(2, 48, 40)
    torch.testing.assert_close(loaded(x), acoustic(x))
    assert loaded.config == acoustic.config and torch.equal(loaded.encoder.band_mean, torch.arange(48.0))
    # Both model classes rebuild their shape from their settings alone.
    shapes = {k: v.shape for k, v in acoustic.state_dict().items()}
    assert {k: v.shape for k, v in AcousticModel.from_settings(acoustic.settings()).state_dict().items()} == shapes

    spec = FeatureSpec(["audio"], center={"audio": [0.0] * 5}, scale={"audio": [1.0] * 5})
    musig = MusigModel(spec, hidden_channels=16, out_channels=8).eval()
    again = MusigModel.load(musig.save(tmp_path / "musig"))
    x = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    graph = CSRGraph.from_edges([0, 1, 2], [1, 2, 3], 6)
    torch.testing.assert_close(again.encode(x, graph), musig.encode(x, graph))
    assert again.spec == spec and set(MODEL_CLASSES) == {"audio-encoder", "musig"}

    # A folder of the other kind is refused in one line (it failed on a missing config key).
    with pytest.raises(StoreError, match="holds a model of kind 'musig', not 'audio-encoder'"):
        AcousticModel.load(tmp_path / "musig")
    with pytest.raises(StoreError, match="holds a model of kind 'audio-encoder', not 'musig'"):
        MusigModel.load(folder)


def test_a_new_track_encodes_as_the_full_pass_without_its_edges():
    spec = FeatureSpec(["audio"], center={"audio": [0.0] * 4}, scale={"audio": [1.0] * 4})
    torch.manual_seed(2)
    model = MusigModel(spec, hidden_channels=8, out_channels=6)
    x = torch.randn(5, 4)
    graph = CSRGraph.from_edges([0, 0, 1, 3], [1, 2, 2, 4], 5)
    without_node_0 = CSRGraph.from_edges([1, 3], [2, 4], 5)
    torch.testing.assert_close(model.encode(x[:1])[0], model.encode(x, without_node_0)[0])
    assert not np.allclose(model.encode(x, graph)[0], model.encode(x[:1])[0])


def test_musig_takes_a_pyg_edge_index_as_its_graph():
    spec = FeatureSpec(["audio"], center={"audio": [0.0] * 4}, scale={"audio": [1.0] * 4})
    torch.manual_seed(3)
    model = MusigModel(spec, hidden_channels=8, out_channels=6).eval()
    x = torch.randn(5, 4)
    src, dst = [0, 0, 1, 3], [1, 2, 2, 4]
    both_ways = torch.tensor([src + dst, dst + src])  # PyG's layout of an undirected graph
    expected = model.encode(x, CSRGraph.from_edges(src, dst, 5))
    assert isinstance(expected, np.ndarray) and expected.dtype == np.float32  # as AcousticModel.encode gives
    torch.testing.assert_close(model.encode(x, both_ways), expected)
    torch.testing.assert_close(model(x, both_ways).detach().numpy(), expected)
    torch.testing.assert_close(model.encode(x.numpy().astype(np.float64), both_ways), expected)  # cast to the model's
    torch.testing.assert_close(model.encode(x, both_ways, convert_to_tensor=True), torch.from_numpy(expected))
    torch.testing.assert_close(model.double().encode(x, both_ways), expected.astype(np.float64))
    with pytest.raises(ValueError, match=r"x must be feature rows \[N, 4\]"):
        model.encode(torch.randn(5, 3))
    with pytest.raises(ValueError, match="edge_index names nodes outside 0..4"):
        model.encode(x, torch.tensor([[0], [7]]))


def test_musig_forward_takes_every_graph_form_in_any_float_dtype():
    """forward, as in PyG and Lightning code: a CSRGraph, torch.sparse CSR or COO, an edge_index; numpy rows; a
    model in float64 (as Lightning's "64-true" makes it). Each equals `encode`'s exact pass; a dense tensor or a
    graph of another size is a clear error."""
    spec = FeatureSpec(["audio"], center={"audio": [0.0] * 4}, scale={"audio": [1.0] * 4})
    torch.manual_seed(4)
    model = MusigModel(spec, hidden_channels=8, out_channels=6).eval()
    x = torch.randn(5, 4)
    src, dst = [0, 0, 1, 3], [1, 2, 2, 4]
    graph = CSRGraph.from_edges(src, dst, 5)
    expected = model.encode(x, graph, convert_to_tensor=True)
    dense = torch.zeros(5, 5)
    dense[src + dst, dst + src] = 1.0
    with torch.no_grad():
        torch.testing.assert_close(model(x, graph), expected)
        torch.testing.assert_close(model(x, dense.to_sparse_csr()), expected)
        torch.testing.assert_close(model(x, dense.to_sparse()), expected)
        # Values are ignored, as in the other forms: playlist weights, or an edge a COO tensor lists twice.
        weighted = dense * torch.arange(1.0, 26.0).reshape(5, 5)
        torch.testing.assert_close(model(x, weighted.to_sparse_csr()), expected)
        twice = torch.sparse_coo_tensor(torch.tensor([src + dst + [0], dst + src + [1]]), torch.ones(9), (5, 5))
        torch.testing.assert_close(model(x, twice), expected)
        torch.testing.assert_close(model(x.numpy(), torch.tensor([src + dst, dst + src])), expected)
        in_float64 = MusigModel(spec, hidden_channels=8, out_channels=6).eval()
        in_float64.load_state_dict(model.state_dict())
        torch.testing.assert_close(in_float64.double()(x.double(), graph), expected.double(), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="to_sparse_csr"):
        model(x, dense)
    with pytest.raises(ValueError, match="the graph has 5 nodes, and there are 3 feature rows"):
        model.encode(x[:3], graph)
    from torch_geometric.data import Data

    torch.testing.assert_close(
        model.encode(Data(x=x, edge_index=torch.tensor([src + dst, dst + src]))), expected.numpy()
    )
    x[2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"not finite, in 1 rows \(the first: 2\)"):
        model.encode(x, graph)


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_weights_that_would_run_code_are_refused(tmp_path):
    folder = AcousticModel().save(tmp_path / "model")
    marker = tmp_path / "ran"
    evil = _RunsCode()
    evil.marker = marker
    with open(folder / "weights.pt", "wb") as f:
        pickle.dump({"encoder.head.0.weight": evil}, f)
    with pytest.raises(StoreError, match="refused: checkpoint .* holds objects other than weights"):
        AcousticModel.load(folder, "model 'x'")
    assert not marker.exists()
    with pytest.raises(ConfigError, match="no weights"):
        load_model("descriptors", folder)


def test_a_training_checkpoint_of_the_other_kind_is_refused_in_one_line(tmp_path):
    acoustic = {"hyper_parameters": {"audio": AudioConfig().to_dict(), "encoder": {}}, "state_dict": {}}
    musig = {"hyper_parameters": {"in_channels": 4, "hidden_channels": 8}, "state_dict": {}}
    torch.save(acoustic, tmp_path / "acoustic.ckpt")
    torch.save(musig, tmp_path / "musig.ckpt")
    with pytest.raises(StoreError, match="musig.ckpt is not a training checkpoint of an acoustic model"):
        AcousticModel.load(tmp_path / "musig.ckpt")
    with pytest.raises(StoreError, match="acoustic.ckpt is not a training checkpoint of a MUSIG model"):
        MusigModel.load(tmp_path / "acoustic.ckpt")


def test_a_store_closes_at_the_end_of_a_with_block(tmp_path):
    from audiograph.store import Store

    with Store(tmp_path / "s.db") as store:
        assert store.tracks.rows() == []
    with pytest.raises(Exception, match="closed"):
        store.execute("SELECT 1")


def test_importing_musig_leaves_the_warning_filters_alone():
    """The notice about beta sparse CSR tensors was silenced for the whole process at import."""
    code = (
        "import warnings, torch, lightning, torch_geometric.loader, torchmetrics; before = list(warnings.filters);"
        " import audiograph.models.musig, audiograph.training.musig; assert warnings.filters == before, 'changed'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_musig_model_without_input_features_is_refused():
    """MusigModel(FeatureSpec([])) built a model of 0 inputs whose vectors ignored every track (the same vector
    for all of them)."""
    from audiograph.errors import ConfigError
    from audiograph.models.musig import MusigModel
    from audiograph.musig.features import FeatureSpec

    with pytest.raises(ConfigError, match="give a FeatureSpec with groups, or in_channels"):
        MusigModel(FeatureSpec([]))
    assert MusigModel(FeatureSpec([]), in_channels=3).architecture["in_channels"] == 3
