"""Decoding: every format and rate decodes to the right samples; every kind of broken file gets its reason."""

import io
import re
import sys

import numpy as np
import pytest
import soundfile as sf
import soxr

from audiograph.audio.decode import SAMPLE_RATE, content_hash, decode
from audiograph.errors import DecodeError


def _tone(seconds, rate, channels=1, freq=440.0):
    t = np.arange(int(seconds * rate)) / rate
    x = 0.4 * np.sin(2 * np.pi * freq * t)
    if channels == 2:
        return np.stack([x, 0.5 * x], axis=1).astype(np.float32)
    return x.astype(np.float32)


@pytest.mark.parametrize(
    "ext,fmt,rate,channels",
    [
        ("wav", "WAV", 16000, 1),
        ("wav", "WAV", 48000, 2),
        ("flac", "FLAC", 44100, 2),
        ("ogg", "OGG", 22050, 1),
        ("mp3", "MP3", 32000, 1),
        ("mp3", "MP3", 44100, 2),
    ],
)
def test_formats_decode_to_mono_at_model_rate(tmp_path, ext, fmt, rate, channels):
    path = tmp_path / f"tone.{ext}"
    x = _tone(3.0, rate, channels)
    with sf.SoundFile(path, "w", samplerate=rate, channels=channels, format=fmt) as f:
        f.title, f.artist, f.genre = "Tone", "Tester", "Test"
        f.write(x)
    audio = decode(path)
    assert audio.sample_rate == SAMPLE_RATE and audio.source_rate == rate and audio.channels == channels
    assert audio.tags["title"] == "Tone" and audio.tags["artist"] == "Tester"
    mono = x.mean(axis=1) if channels == 2 else x
    expected = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")
    # Lossless formats decode exactly (up to 16-bit quantisation); lossy ones keep the tone's energy.
    if fmt in ("WAV", "FLAC"):
        assert len(audio.samples) == len(expected)
        np.testing.assert_allclose(audio.samples, expected, atol=2e-4)
    else:
        assert abs(audio.duration - 3.0) < 0.1
        spectrum = np.abs(np.fft.rfft(audio.samples))
        peak_hz = np.argmax(spectrum) * SAMPLE_RATE / len(audio.samples)
        assert abs(peak_hz - 440) < 3


def test_decode_from_bytes_equals_decode_from_path(tmp_path):
    path = tmp_path / "a.mp3"
    sf.write(path, _tone(2.0, 22050), 22050, format="MP3")
    a = decode(path)
    b = decode(path, data=path.read_bytes())
    np.testing.assert_array_equal(a.samples, b.samples)


def _has_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def _reason(path, **kwargs) -> str:
    with pytest.raises(DecodeError) as info:
        decode(path, **kwargs)
    assert info.value.path == str(path)
    return info.value.reason


def test_faulty_files_raise_with_a_reason(tmp_path):
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    assert _reason(empty) == "empty file (0 bytes)"

    text = tmp_path / "notes.mp3"
    text.write_text("this is a text file that someone renamed\n" * 10)
    assert "not an audio file" in _reason(text)

    full = tmp_path / "full.mp3"
    sf.write(full, _tone(10.0, 22050), 22050, format="MP3")
    truncated = tmp_path / "truncated.mp3"
    truncated.write_bytes(full.read_bytes()[: len(full.read_bytes()) // 3])
    assert _reason(truncated).startswith("truncated: decoded")

    short = tmp_path / "short.mp3"
    sf.write(short, _tone(0.2, 22050), 22050, format="MP3")
    assert _reason(short).startswith("too short")

    silent = tmp_path / "silent.flac"
    sf.write(silent, np.zeros(22050 * 3, np.float32), 22050, format="FLAC")
    assert _reason(silent) == "silent (digital silence)"

    m4a = tmp_path / "song.m4a"  # an MP4 box header and nothing else
    m4a.write_bytes(b"\x00\x00\x00\x20ftypM4A " + b"\x00" * 200)
    expected = "unrecognised or corrupt audio data (" if _has_pyav() else "unsupported format '.m4a'"
    assert _reason(m4a).startswith(expected)

    garbage = tmp_path / "noise.ogg"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    assert _reason(garbage) == "unrecognised or corrupt audio data"

    assert "No such file" in _reason(tmp_path / "missing.mp3")


def test_min_seconds_is_configurable(tmp_path):
    path = tmp_path / "clip.wav"
    sf.write(path, _tone(0.5, 16000), 16000)
    assert decode(path, min_seconds=0.25).duration == pytest.approx(0.5)


def test_content_hash_follows_bytes():
    assert content_hash(b"abc") == content_hash(b"abc") != content_hash(b"abd")


def test_real_recordings_decode(shared_data):
    paths = sorted((shared_data / "audio").glob("*.[om][gp][g3]"))
    assert len(paths) == 9
    rates = set()
    for path in paths:
        audio = decode(path)
        info = sf.info(path)
        rates.add(info.samplerate)
        assert audio.duration == pytest.approx(info.frames / info.samplerate, rel=0.02)
        assert len(audio.samples) == pytest.approx(audio.duration * SAMPLE_RATE, rel=0.02)
        assert np.isfinite(audio.samples).all() and np.abs(audio.samples).max() > 0.01
    assert rates == {16000, 22050}


@pytest.mark.parametrize(
    "ext,fmt,subtype",
    [("au", "AU", "PCM_16"), ("au", "AU", "ULAW"), ("caf", "CAF", "PCM_24"), ("caf", "CAF", "ALAC_16")]
    + [("w64", "W64", "FLOAT"), ("rf64", "RF64", "PCM_16"), ("aifc", "AIFF", "FLOAT")],
)
def test_other_containers_libsndfile_reads_are_audio_files(tmp_path, ext, fmt, subtype):
    """GTZAN's .au, Apple's .caf (ALAC included), Wave64 and RF64: scanned as audio, decoded like a WAV."""
    from audiograph.pipelines.embed_audio import scan

    x = _tone(2.0, 44100, channels=2)
    sf.write(tmp_path / f"tone.{ext}", x, 44100, format=fmt, subtype=subtype)
    assert scan(tmp_path)[0] == [tmp_path / f"tone.{ext}"]
    audio = decode(tmp_path / f"tone.{ext}")
    expected = soxr.resample(x.mean(axis=1), 44100, SAMPLE_RATE, quality="HQ")
    assert audio.channels == 2 and len(audio.samples) == len(expected)
    # mu-law keeps about 12 bits near the tone's peak; the others are exact to 16-bit quantisation.
    np.testing.assert_allclose(audio.samples, expected, atol=2e-2 if subtype == "ULAW" else 2e-4)


def _encode(x, rate, fmt, subtype=None) -> bytes:
    import io

    buffer = io.BytesIO()
    sf.write(buffer, x, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


TRUNCATION_CASES = [
    ("WAV", "PCM_16", 22050),
    ("AIFF", "PCM_16", 16000),
    ("AU", "PCM_16", 22050),
    ("W64", "FLOAT", 22050),
    ("RF64", "PCM_24", 44100),
    ("FLAC", "PCM_16", 44100),
    ("OGG", "VORBIS", 22050),
    ("OGG", "OPUS", 48000),
    ("MP3", "MPEG_LAYER_III", 22050),
    ("MP3", "MPEG_LAYER_III", 44100),
]


@pytest.mark.parametrize("fmt,subtype,rate", TRUNCATION_CASES)
def test_truncation_is_found_in_every_format(fmt, subtype, rate):
    """Cut at 60, 85 and 97 %: each is rejected as truncated; the whole file, at several lengths, never is."""
    for seconds in (1.7, 6.3):
        data = _encode(_tone(seconds, rate, channels=2), rate, fmt, subtype)
        assert decode("whole", data=data).duration == pytest.approx(seconds, abs=0.01)
        for share in (0.6, 0.85, 0.97):
            with pytest.raises(DecodeError) as info:
                decode("cut", data=data[: int(len(data) * share)])
            assert info.value.reason.startswith("truncated"), (seconds, share, info.value.reason)


def test_an_ogg_file_cut_at_a_page_boundary_lacks_its_end_of_stream_page():
    data = _encode(_tone(6.0, 22050), 22050, "OGG", "VORBIS")
    last_page = data.rfind(b"OggS")
    cut = data[:last_page]  # whole pages only: it decodes cleanly, and libsndfile's length agrees
    with sf.SoundFile(io.BytesIO(cut)) as f:
        assert f.frames == len(f.read())
    with pytest.raises(DecodeError, match="truncated: no end-of-stream page"):
        decode("cut.ogg", data=cut)


def test_absurd_declared_lengths_are_rejected_before_anything_is_allocated():
    import tracemalloc

    from test_faults import huge_flac, huge_mp3

    tracemalloc.start()
    for data, reason in ((huge_flac(), "corrupt header: declares 36 days"), (huge_mp3(), "corrupt header: declares")):
        with pytest.raises(DecodeError, match=reason):
            decode("huge", data=data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 << 20


def test_samples_that_are_not_finite_or_far_out_of_range_are_corrupt():
    from test_faults import float_wav

    with pytest.raises(DecodeError, match=r"corrupt: decoded samples up to 19,463\.0"):
        decode("loud.wav", data=float_wav(19463.0))
    with pytest.raises(DecodeError, match="corrupt: decoded samples not finite"):
        decode("nan.wav", data=float_wav(float("nan")))
    with pytest.raises(DecodeError, match="not finite"):
        decode("inf.wav", data=float_wav(float("inf")))
    assert decode("hot.wav", data=float_wav(1.5)).duration == pytest.approx(3.0)  # a hot master is still audio


def test_long_files_decode_in_blocks_to_the_one_shot_result(monkeypatch):
    """Block decoding (mixing and streaming resampling per block) equals decoding the whole file at once."""
    import audiograph.audio.decode as decode_module

    x = _tone(20.0, 44100, channels=2) + 0.01 * np.random.default_rng(0).standard_normal((882000, 2)).astype(np.float32)
    data = _encode(x, 44100, "WAV", "FLOAT")
    assert len(x) * 2 > 4 * decode_module.BLOCK_SAMPLES  # many blocks
    expected = soxr.resample(x @ np.full(2, 0.5, np.float32), 44100, SAMPLE_RATE, quality="HQ")
    np.testing.assert_array_equal(decode("long.wav", data=data).samples, expected)
    monkeypatch.setattr(decode_module, "MAX_SECONDS", 10)
    with pytest.raises(DecodeError, match="too long: 20.0 s declared"):
        decode("long.wav", data=data)


def _write_m4a(path, x: np.ndarray, rate: int, codec: str, tags: dict) -> bytes:
    """`x` [frames, channels] float32 in an M4A (moov first, as iTunes writes it) with `codec`, through PyAV."""
    av = pytest.importorskip("av")
    layout = {1: "mono", 2: "stereo"}[x.shape[1]]
    with av.open(str(path), "w", format="ipod", options={"movflags": "+faststart"}) as container:
        container.metadata.update(tags)
        stream = container.add_stream(codec, rate=rate)
        stream.layout = layout
        if codec == "alac":
            stream.format = "s16p"
            planes, fmt = np.ascontiguousarray(np.round(x.T * 32767).astype(np.int16)), "s16p"
        else:
            planes, fmt = np.ascontiguousarray(x.T), "fltp"
        frame = av.AudioFrame.from_ndarray(planes, format=fmt, layout=layout)
        frame.rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path.read_bytes()


@pytest.mark.parametrize("codec", ["alac", "aac"])
def test_m4a_decodes_through_ffmpeg_like_the_same_audio_through_libsndfile(tmp_path, codec):
    x = _tone(4.0, 44100, channels=2)
    _write_m4a(tmp_path / "tone.m4a", x, 44100, codec, {"title": "Tone", "artist": "Tester", "track": "3/12"})
    sf.write(tmp_path / "tone.wav", np.round(x * 32767).astype(np.int16), 44100, subtype="PCM_16")
    audio, reference = decode(tmp_path / "tone.m4a"), decode(tmp_path / "tone.wav")
    assert (audio.source_rate, audio.channels, audio.format) == (44100, 2, codec)
    assert audio.tags == {"title": "Tone", "artist": "Tester", "tracknumber": "3/12"}
    if codec == "alac":  # lossless: the same samples as libsndfile's decode of the same PCM
        np.testing.assert_allclose(audio.samples, reference.samples, atol=1e-6)
    else:  # lossy, with the encoder's padding: the tone, its level and its length
        assert abs(audio.duration - 4.0) < 0.1
        spectrum = np.abs(np.fft.rfft(audio.samples))
        assert abs(np.argmax(spectrum) * SAMPLE_RATE / len(audio.samples) - 440) < 3
        rms = [float(np.sqrt(np.mean(a.samples[SAMPLE_RATE:-SAMPLE_RATE] ** 2))) for a in (audio, reference)]
        assert rms[0] == pytest.approx(rms[1], rel=0.05)


def test_m4a_faults_and_a_missing_pyav_get_their_reasons(tmp_path, monkeypatch):
    data = _write_m4a(tmp_path / "full.m4a", _tone(4.0, 44100, channels=2), 44100, "aac", {})
    cut = tmp_path / "cut.m4a"
    cut.write_bytes(data[: len(data) // 2])
    assert _reason(cut).startswith("truncated: decoded 2.")
    # Noise over the audio data: a few damaged frames are skipped, as FFmpeg's tools do; many are corrupt.
    rng = np.random.default_rng(0)
    for share, expected in [(0.0005, None), (0.5, "corrupt: ")]:
        damaged, start = bytearray(data), int(0.3 * len(data))  # past the header, which comes first
        damaged[start : start + int(share * len(data))] = rng.bytes(int(share * len(data)))
        (tmp_path / "damaged.m4a").write_bytes(bytes(damaged))
        if expected is None:
            assert abs(decode(tmp_path / "damaged.m4a").duration - 4.0) < 0.1
        else:
            assert re.fullmatch(
                r"corrupt: \d+ damaged audio frames skipped, decoded [12]\.\d s of 4\.0 s declared",
                _reason(tmp_path / "damaged.m4a"),
            )
    named = tmp_path / "really an m4a.mp3"  # an MP4 under another name is read by what it is
    named.write_bytes(data)
    assert decode(named).format == "aac"

    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    assert _reason(tmp_path / "full.m4a") == (
        "unsupported format '.m4a' (pip install 'audiograph[ffmpeg]' reads it; readable without: MP3, WAV, FLAC,"
        " OGG/Opus, AIFF, AU, CAF)"
    )


def _unknown_length_flac(data: bytes) -> bytes:
    """The FLAC `data` with its STREAMINFO's total sample count set to 0, 'unknown', as an encoder writing to a
    pipe leaves it (the count is the low 36 bits of bytes 10-17 of STREAMINFO, after 'fLaC' and a block header)."""
    assert data[:4] == b"fLaC"
    fields = int.from_bytes(data[18:26], "big") & ~((1 << 36) - 1)
    return data[:18] + fields.to_bytes(8, "big") + data[26:]


def test_a_flac_stream_of_unknown_length_decodes_whole_and_a_cut_one_is_truncated():
    # 40 s: over 127 frames, whose numbers take two bytes in their headers.
    data = _unknown_length_flac(_encode(_tone(40.0, 48000, channels=2), 48000, "FLAC", "PCM_16"))
    with sf.SoundFile(io.BytesIO(data)) as f:
        assert f.frames == 2**63 - 1  # libsndfile's "unknown"
    assert decode("stream.flac", data=data).duration == pytest.approx(40.0, abs=0.2)
    for share in (0.6, 0.85, 0.97, 0.999):
        with pytest.raises(DecodeError, match="truncated: its last FLAC frame is incomplete"):
            decode("cut.flac", data=data[: int(len(data) * share)])
