"""embed-audio throughput on a synthetic collection, next to the decode-only throughput of the same files, and
the time of a run with nothing to do.

    python tools/bench_embed.py [--collection DIR | --tracks 200 --seconds 20] [--workers N] [--json] [--quick]

Per file, on one thread, with freed memory kept for reuse (what each worker process does):
- decode only: libsndfile reading the file's bytes (the reference);
- acoustic path: what embed-audio does for an acoustic vector: decode + mono + resample + log-mel + chunking
  (`analyse`), then the encoder forward;
- descriptors: the 42 descriptors from the spectrogram the front-end already made (reported apart).
Then the whole `embed_audio` pipeline with `--workers` processes (a fresh store each run), next to
decoding the same files with the same number of processes (which keep freed memory too); the two are
timed in alternation, so that a change in the machine's load moves both. Last, `audiograph embed-audio`
over 1,000 files it has already embedded (an acoustic model registered), a new process each time, next to
starting Python itself.

Every figure is the median of repeats after one warm-up. With `--json` the figures go to stdout as one
JSON object (`embed_audio_vs_decode`: embed-audio's tracks/s over parallel decoding's;
`acoustic_vs_decode_resample`: the one-thread acoustic path's tracks/s over decode to 22.05k mono's;
`noop_seconds`: the run with nothing to do over `noop_files` files, `python_start_seconds` its reference)
and the tables to stderr.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from benchlib import alternating_medians, report_to_stderr, say
from torch.utils.data import DataLoader, Dataset

from audiograph.audio.analysis import analyse, chunks_as_tensors, preload
from audiograph.audio.config import AudioConfig
from audiograph.audio.decode import DecodeError, decode
from audiograph.audio.descriptors import compute_descriptors
from audiograph.audio.encoder import AudioEncoder, embed_tracks
from audiograph.audio.spectral import mel_power, power_spectrogram, power_to_db
from audiograph.models import ACOUSTIC_KIND
from audiograph.models.acoustic import AcousticModel
from audiograph.pipelines.embed_audio import embed_audio, scan
from audiograph.runtime import one_thread, retain_freed_memory
from audiograph.store import ACOUSTIC_SPACE, Store
from audiograph.synth import synthesize


def decode_only(data: bytes) -> int:
    """The reference: libsndfile decoding the bytes, nothing else. Returns the frames."""
    samples, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return len(samples)


def stage_times(files: list[Path], audio: AudioConfig, encoder: AudioEncoder) -> dict[str, float]:
    """Seconds spent per stage over all files, single-threaded."""
    totals = dict.fromkeys(("libsndfile decode", "decode to 22.05k mono", "acoustic path", "descriptors"), 0.0)
    totals["audio seconds"] = 0.0
    for path in files:
        data = path.read_bytes()
        start = time.perf_counter()
        decode_only(data)
        totals["libsndfile decode"] += time.perf_counter() - start

        start = time.perf_counter()
        decoded = decode(path, audio.sample_rate, data=data)
        totals["decode to 22.05k mono"] += time.perf_counter() - start

        start = time.perf_counter()
        chunks = analyse(path, audio, data=data, descriptors=False).mel_chunks
        embed_tracks(encoder, [chunks_as_tensors(chunks)])
        totals["acoustic path"] += time.perf_counter() - start

        power = power_spectrogram(decoded.samples, audio.n_fft, audio.hop_length)
        mel = power_to_db(mel_power(power, audio.sample_rate, audio.n_fft, audio.n_mels), top_db=audio.top_db)
        start = time.perf_counter()
        compute_descriptors(decoded.samples, power, mel, audio.sample_rate, audio.n_fft, audio.hop_length)
        totals["descriptors"] += time.perf_counter() - start
        totals["audio seconds"] += decoded.duration
    return totals


def median_stage_times(files, audio, encoder, passes: int) -> dict[str, float]:
    """Per-stage medians over `passes` passes, after one warm-up pass (imports, caches)."""
    stage_times(files[:5], audio, encoder)
    runs = [stage_times(files, audio, encoder) for _ in range(passes)]
    return {k: float(np.median([r[k] for r in runs])) for k in runs[0]}


def tone_collection(root: Path, files: int, seconds: float = 1.5) -> None:
    """`files` short FLAC tones, each different, in folders of 50 (a collection to re-run over, not to analyse)."""
    rng = np.random.default_rng(0)
    t = np.arange(int(22_050 * seconds)) / 22_050
    for i in range(files):
        folder = root / f"artist {i // 50:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        tone = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) + 0.01 * rng.standard_normal(len(t))
        sf.write(folder / f"{i:04d}.flac", tone.astype(np.float32), 22_050)


def register_untrained_encoder(store: Store) -> None:
    """An acoustic model in the registry, so that a run with nothing to do also checks acoustic vectors."""
    model_id = "audio-encoder-29990101-000000"
    folder = AcousticModel().save(store.models_dir / model_id / "model")
    store.models.register(model_id, ACOUSTIC_KIND, ACOUSTIC_SPACE, checkpoint=folder)


def noop_seconds(tmp: Path, files: int, repeats: int) -> tuple[float, float]:
    """(median seconds of `audiograph embed-audio` over `files` files it has embedded already, median seconds
    of `python -c pass`), each a new process, timed in alternation."""
    root, db = tmp / "noop" / "audio", tmp / "noop" / "noop.db"
    tone_collection(root, files)
    store = Store(db)
    register_untrained_encoder(store)
    summary = embed_audio(root, store, quiet=True)
    assert summary.embedded == files and not summary.failed, summary.to_json()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1])] + sys.path)}
    command = [sys.executable, "-m", "audiograph", "embed-audio", str(root), "--db", str(db), "--json"]

    def noop() -> None:
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        assert json.loads(done.stdout)["skipped"] == files, done.stdout

    def python_start() -> None:
        subprocess.run([sys.executable, "-c", "pass"], check=True, env=env)

    return tuple(alternating_medians([noop, python_start], repeats))


def _decodes(path: Path) -> bool:
    try:
        decode(path)
        return True
    except DecodeError:
        return False


class _DecodeOnly(Dataset):
    def __init__(self, files):
        self.files = files

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        return decode_only(self.files[i].read_bytes())


def _keep_memory(*_) -> None:
    retain_freed_memory()


def parallel_decode_only(files: list[Path], workers: int) -> None:
    """The reference of the pipeline: every file decoded by libsndfile in `workers` DataLoader processes."""
    loader = DataLoader(
        _DecodeOnly(files), batch_size=8, num_workers=workers, collate_fn=list, worker_init_fn=_keep_memory
    )
    for _ in loader:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collection", type=Path, help="an existing folder of audio (default: synthesize one)")
    parser.add_argument("--tracks", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--passes", type=int, default=3, help="timed single-thread passes (median)")
    parser.add_argument("--repeats", type=int, default=3, help="timed embed-audio runs (median)")
    parser.add_argument("--noop-files", type=int, default=1000, help="files of the run with nothing to do")
    parser.add_argument("--quick", action="store_true", help="a few short tracks, one pass: checks that it runs")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object on stdout")
    args = parser.parse_args()
    if args.quick:
        args.tracks, args.seconds, args.passes, args.repeats, args.noop_files = 8, 4.0, 1, 1, 20
        args.workers = min(args.workers, 2)
    if args.json:
        report_to_stderr()

    with tempfile.TemporaryDirectory() as tmp:
        root = args.collection
        if root is None:
            start = time.perf_counter()
            synthesize(Path(tmp) / "synth", tracks=args.tracks, seconds=args.seconds, seed=0)
            root = Path(tmp) / "synth" / "audio"
            say(f"synthesized {args.tracks} tracks of ~{args.seconds:g} s in {time.perf_counter() - start:.1f} s")
        files = [f for f in scan(root)[0] if _decodes(f)]

        retain_freed_memory()
        preload()  # scipy's FFT, as embed-audio loads it before analysing a batch
        with one_thread():
            t = median_stage_times(files, AudioConfig(), AudioEncoder().eval(), args.passes)
        audio_seconds = t.pop("audio seconds")
        say(f"\none thread, {len(files)} files, {audio_seconds / 60:.1f} min of audio, median of {args.passes} passes")
        say(f"{'stage':<22} {'tracks/s':>9} {'x realtime':>11} {'rate vs libsndfile':>19} {'vs decode to 22.05k':>20}")
        for stage, seconds in t.items():
            say(
                f"{stage:<22} {len(files) / seconds:>9.1f} {audio_seconds / seconds:>11.0f}"
                f" {t['libsndfile decode'] / seconds:>19.2f} {t['decode to 22.05k mono'] / seconds:>20.2f}"
            )
        say(
            f"(descriptors: {1e3 * t['descriptors'] / audio_seconds * 30:.0f} ms per 30 s of audio,"
            f" on the spectrogram the acoustic path already computed)"
        )

        runs = iter(range(args.repeats + 1))

        def run_pipeline() -> None:
            folder = Path(tmp) / f"store{next(runs)}"  # a fresh store: nothing to skip
            folder.mkdir()
            embed_audio(root, Store(folder / "bench.db"), num_workers=args.workers, quiet=True)

        reference, pipeline = alternating_medians(
            [lambda: parallel_decode_only(files, args.workers), run_pipeline], args.repeats
        )
        say(
            f"\nembed-audio, {args.workers} workers (decode, log-mel, descriptors, cache, store writes),"
            f" median of {args.repeats} runs"
        )
        say(f"{'':<22} {'tracks/s':>9} {'x realtime':>11} {'rate vs decode':>15}")
        say(f"{'libsndfile decode':<22} {len(files) / reference:>9.1f} {audio_seconds / reference:>11.0f} {1:>15.2f}")
        say(
            f"{'embed-audio':<22} {len(files) / pipeline:>9.1f} {audio_seconds / pipeline:>11.0f}"
            f" {reference / pipeline:>15.2f}"
        )

        noop, python_start = noop_seconds(Path(tmp), args.noop_files, args.repeats)
        say(f"\nembed-audio with nothing to do, {args.noop_files} files, median of {args.repeats} runs")
        say(f"{'embed-audio':<22} {noop:>7.2f} s")
        say(f"{'python -c pass':<22} {python_start:>7.2f} s")

    figures = {
        "embed_audio_vs_decode": reference / pipeline,
        "acoustic_vs_decode_resample": t["decode to 22.05k mono"] / t["acoustic path"],
        "workers": args.workers,
        "files": len(files),
        "embed_audio_tracks_per_second": len(files) / pipeline,
        "decode_tracks_per_second": len(files) / reference,
        "acoustic_tracks_per_second": len(files) / t["acoustic path"],
        "decode_resample_tracks_per_second": len(files) / t["decode to 22.05k mono"],
        "descriptors_ms_per_30s": 1e3 * t["descriptors"] / audio_seconds * 30,
        "noop_seconds": noop,
        "noop_files": args.noop_files,
        "python_start_seconds": python_start,
        "load_average": os.getloadavg()[0],
    }
    if args.json:
        print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
