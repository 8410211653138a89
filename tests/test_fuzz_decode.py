"""Decoder fuzzing: mutated WAV, FLAC, OGG Vorbis/Opus, MP3, AIFF and (with PyAV) M4A files never crash the
process, never hang, and never raise anything but `DecodeError`.

Inputs are made deterministically from small seed files (input i: seed i mod n, mutations drawn from a generator
seeded with i), so a failure names an index that reproduces it. Batches run in child processes under an
address-space limit and a per-input alarm: a segfault, an abort, a runaway allocation or a hang ends the child,
and the parent records the input it was on and carries on with the next one.

Run the long version with `pytest -m slow tests/test_fuzz_decode.py -s` (10,000 inputs; it prints its figures).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

# (file name, libsndfile format, subtype, sample rate, channels)
SEEDS = [
    ("pcm16.wav", "WAV", "PCM_16", 22050, 1),
    ("float.wav", "WAV", "FLOAT", 16000, 2),
    ("stereo.flac", "FLAC", "PCM_16", 44100, 2),
    ("vorbis.ogg", "OGG", "VORBIS", 22050, 1),
    ("opus.opus", "OGG", "OPUS", 48000, 1),
    ("mpeg1.mp3", "MP3", "MPEG_LAYER_III", 44100, 2),
    ("mpeg2.mp3", "MP3", "MPEG_LAYER_III", 22050, 1),
    ("pcm24.aiff", "AIFF", "PCM_24", 22050, 1),
    ("ulaw.au", "AU", "ULAW", 22050, 1),
    ("alac.caf", "CAF", "ALAC_16", 44100, 2),
    ("float.w64", "W64", "FLOAT", 22050, 2),
    ("pcm16.rf64", "RF64", "PCM_16", 16000, 1),
]
SEED_SECONDS = 1.5
HANG_SECONDS = 60  # one small input decodes in milliseconds; a minute means it never would
MEMORY_LIMIT = 4 << 30  # bytes of address space per child: a runaway allocation fails instead of swapping
BATCH = 500
EXTREMES = (b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00", b"\x00\x00\x00\x00", b"\xff\xff\xff\x0f")


# (file name, FFmpeg codec, sample format, sample rate, channels): decoded through PyAV where it is installed.
FFMPEG_SEEDS = [("aac.m4a", "aac", "fltp", 44100, 2), ("alac.m4a", "alac", "s16p", 22050, 1)]


def write_seeds(folder: Path, real: Path | None = None, ffmpeg: bool = True) -> list[Path]:
    """The seed files: a tone with noise in every format and subtype of `SEEDS` (and of `FFMPEG_SEEDS` where
    PyAV is installed, unless `ffmpeg` is False), plus real recordings if given."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for name, fmt, subtype, rate, channels in SEEDS:
        t = np.arange(int(SEED_SECONDS * rate)) / rate
        x = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(len(t))
        x = np.stack([x, 0.5 * x], axis=1) if channels == 2 else x
        buffer = io.BytesIO()
        with sf.SoundFile(buffer, "w", rate, channels, subtype, format=fmt) as f:
            if fmt not in ("AU", "CAF", "W64", "RF64"):  # containers without string tags
                f.title, f.artist = "Fuzz seed", "Tester"
            f.write(x.astype(np.float32))
        paths.append(folder / name)
        paths[-1].write_bytes(buffer.getvalue())
    if ffmpeg:
        paths += _ffmpeg_seeds(folder, rng)
    for path in sorted(real.glob("*.[om][gp][g3]")) if real else []:
        if path.stat().st_size < 150_000:  # the small ones keep the run short
            paths.append(folder / path.name)
            paths[-1].write_bytes(path.read_bytes())
    return paths


def _ffmpeg_seeds(folder: Path, rng: np.random.Generator) -> list[Path]:
    try:
        import av
    except ImportError:
        return []
    paths = []
    for name, codec, sample_format, rate, channels in FFMPEG_SEEDS:
        t = np.arange(int(SEED_SECONDS * rate)) / rate
        x = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(len(t))
        planes = np.stack([x, 0.5 * x]) if channels == 2 else x[None, :]
        planes = planes.astype(np.float32) if sample_format == "fltp" else np.round(planes * 32767).astype(np.int16)
        layout = "stereo" if channels == 2 else "mono"
        paths.append(folder / name)
        with av.open(str(paths[-1]), "w", format="ipod", options={"movflags": "+faststart"}) as container:
            container.metadata.update({"title": "Fuzz seed", "artist": "Tester"})
            stream = container.add_stream(codec, rate=rate)
            stream.layout, stream.format = layout, sample_format
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planes), format=sample_format, layout=layout)
            frame.rate = rate
            for packet in [*stream.encode(frame), *stream.encode(None)]:
                container.mux(packet)
    return paths


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One to three mutations: bit flips, extreme values in header fields, truncation, or a spliced slice."""
    out = bytearray(data)
    for _ in range(rng.integers(1, 4)):
        kind = rng.integers(6)
        if kind == 0:  # bit flips anywhere
            for position in rng.integers(0, len(out), rng.integers(1, 17)):
                out[position] ^= 1 << int(rng.integers(8))
        elif kind == 1:  # bit flips in the header, where lengths, rates and channel counts live
            for position in rng.integers(0, min(len(out), 512), rng.integers(1, 5)):
                out[position] ^= 1 << int(rng.integers(8))
        elif kind == 2:  # an extreme value over a header field (frame counts, chunk sizes, Xing counts)
            value = EXTREMES[rng.integers(len(EXTREMES))]
            position = int(rng.integers(0, max(1, min(len(out), 256) - 4)))
            out[position : position + 4] = value
        elif kind == 3:  # truncation
            del out[int(rng.integers(1, max(2, len(out)))) :]
        elif kind == 4:  # a slice copied elsewhere (a duplicated page, frame or chunk)
            start = int(rng.integers(0, len(out)))
            piece = out[start : start + int(rng.integers(1, 4096))]
            at = int(rng.integers(0, len(out)))
            out[at:at] = piece
        else:  # a slice deleted
            start = int(rng.integers(0, len(out)))
            del out[start : start + int(rng.integers(1, 4096))]
        if not out:
            break
    return bytes(out)


def fuzz_input(seeds: list[Path], index: int) -> tuple[Path, bytes]:
    """Input `index`: (the seed it mutates, its bytes)."""
    seed = seeds[index % len(seeds)]
    return seed, mutate(seed.read_bytes(), np.random.default_rng([20_240, index]))


def _worker(seed_dir: str, start: int, stop: int) -> None:
    """Child process: decode inputs start..stop-1, one JSON line each, flushed before the next begins."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    from audiograph.audio.decode import decode
    from audiograph.errors import DecodeError

    seeds = sorted(Path(seed_dir).iterdir())
    for index in range(start, stop):
        seed, data = fuzz_input(seeds, index)
        signal.alarm(HANG_SECONDS)  # SIGALRM's default action ends the process, even inside C code
        try:
            decode(seed.name, data=data)
            outcome, detail = "decoded", ""
        except DecodeError as e:
            outcome, detail = "rejected", e.reason
        except BaseException as e:  # what the test exists to find  # noqa: BLE001
            outcome, detail = "uncaught", f"{type(e).__name__}: {e}"
        signal.alarm(0)
        print(json.dumps({"index": index, "outcome": outcome, "detail": detail}), flush=True)


def run_fuzz(seed_dir: Path, count: int, failures_dir: Path | None = None) -> tuple[Counter, list[dict]]:
    """Decode inputs 0..count-1 in child processes; (outcome counts, the failures). A child that dies is
    restarted after the input it died on, which counts as a crash, or as a hang if the alarm ended it."""
    seeds = sorted(seed_dir.iterdir())
    counts, failures, index = Counter(), [], 0
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    while index < count:
        stop = min(index + BATCH, count)
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", str(seed_dir), str(index), str(stop)],
            capture_output=True,
            text=True,
            env=env,
        )
        lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        for result in lines:
            counts[result["outcome"]] += 1
            if result["outcome"] == "uncaught":
                failures.append(result)
        index = lines[-1]["index"] + 1 if lines else index
        if index < stop:  # the child died on input `index`
            outcome = "hang" if proc.returncode == -signal.SIGALRM else "crash"
            counts[outcome] += 1
            failures.append(
                {"index": index, "outcome": outcome, "detail": f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"}
            )
            index += 1
    for failure in failures:
        seed, data = fuzz_input(seeds, failure["index"])
        failure["seed"] = seed.name
        if failures_dir is not None:
            failures_dir.mkdir(parents=True, exist_ok=True)
            (failures_dir / f"{failure['index']}-{seed.name}").write_bytes(data)
    return counts, failures


def _check(tmp_path: Path, count: int, real: Path | None) -> Counter:
    seed_dir = tmp_path / "seeds"
    write_seeds(seed_dir, real)
    counts, failures = run_fuzz(seed_dir, count, tmp_path / "failures")
    print(f"\n{count} fuzzed inputs: {dict(counts)}")
    assert sum(counts.values()) == count
    assert not failures, f"{len(failures)} inputs broke the decoder (inputs in {tmp_path / 'failures'}): {failures[:5]}"
    return counts


def test_mutated_files_only_ever_raise_decode_error(tmp_path):
    counts = _check(tmp_path, 300, None)
    # The mutations reach both outcomes: the test exercises decoding, not only the first header check.
    assert counts["decoded"] > 20 and counts["rejected"] > 100


@pytest.mark.slow
def test_ten_thousand_mutated_files(tmp_path):
    real = Path(__file__).resolve().parents[2] / "shared" / "data" / "audio"
    _check(tmp_path, 10_000, real if real.is_dir() else None)


def test_the_harness_catches_crashes_hangs_and_other_exceptions(tmp_path, monkeypatch):
    """The harness itself can fail: a child that segfaults, hangs or raises is recorded, and the run goes on."""
    seed_dir = tmp_path / "seeds"
    write_seeds(seed_dir, ffmpeg=False)
    hook = tmp_path / "sitecustomize.py"
    hook.write_text(
        "import os, signal, time\n"
        "import audiograph.audio.decode as d\n"
        "def broken(name, data=None, **kw):\n"
        "    if name.endswith('.wav'): os.kill(os.getpid(), signal.SIGSEGV)\n"
        "    if name.endswith('.flac'): signal.alarm(1); time.sleep(30)\n"
        "    raise ValueError('not a DecodeError')\n"
        "d.decode = broken\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    counts, failures = run_fuzz(seed_dir, len(SEEDS), None)  # one input per seed, in name order
    assert counts == {"crash": 2, "hang": 1, "uncaught": len(SEEDS) - 3}
    assert {f["outcome"] for f in failures} == {"hang", "crash", "uncaught"}


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    _worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
