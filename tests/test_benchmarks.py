"""The benchmarks in tools/ run, and `--json` prints one JSON object with the fields issue 13 names, each a
positive number (`--quick`: tiny sizes, one repeat)."""

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def run_benchmark(name: str, *options: str, timeout: float = 300) -> dict:
    """The JSON object `tools/NAME.py --quick --json OPTIONS` prints on stdout (its table goes to stderr)."""
    done = subprocess.run(
        [sys.executable, str(TOOLS / f"{name}.py"), "--quick", "--json", *options],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=TOOLS.parent,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.strip(), "the human-readable table belongs on stderr"
    return json.loads(done.stdout)


def assert_positive_numbers(figures: dict, fields: list[str]) -> None:
    for field in fields:
        value = figures.get(field)
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{field}: {value!r}"
        assert math.isfinite(value) and value > 0, f"{field}: {value!r}"


def test_bench_embed_json():
    figures = run_benchmark("bench_embed")
    assert_positive_numbers(
        figures, ["embed_audio_vs_decode", "acoustic_vs_decode_resample", "noop_seconds", "python_start_seconds"]
    )
    # A run with nothing to do starts Python and does more: it cannot take less time than the start alone.
    assert figures["noop_seconds"] > figures["python_start_seconds"]
    # The ratios are the tracks/s figures divided, not something else.
    assert figures["embed_audio_vs_decode"] == pytest.approx(
        figures["embed_audio_tracks_per_second"] / figures["decode_tracks_per_second"]
    )
    assert figures["acoustic_vs_decode_resample"] == pytest.approx(
        figures["acoustic_tracks_per_second"] / figures["decode_resample_tracks_per_second"]
    )


def test_bench_build_graph_json():
    figures = run_benchmark("bench_build_graph")
    assert_positive_numbers(figures, ["seconds", "parse_seconds", "algebra_seconds", "edges"])
    # What was timed is the whole build: with min weight 1 its graph has every edge of the bare product.
    assert figures["edges"] == figures["bare_product_edges"]


def test_bench_musig_json():
    figures = run_benchmark("bench_musig")
    assert_positive_numbers(figures, ["seeds_per_second", "bare_seeds_per_second"])
    assert figures["ratio"] == pytest.approx(figures["seeds_per_second"] / figures["bare_seeds_per_second"])


@pytest.mark.slow
def test_bench_musig_on_a_store_leaves_it_untouched(embedded_db):
    before = hashlib.sha256(embedded_db.read_bytes()).hexdigest()
    figures = run_benchmark("bench_musig", "--store", str(embedded_db))
    assert_positive_numbers(figures, ["seeds_per_second", "bare_seeds_per_second"])
    assert figures["store"] == str(embedded_db)
    assert hashlib.sha256(embedded_db.read_bytes()).hexdigest() == before


def test_bench_musig_refuses_a_missing_store(tmp_path):
    missing = tmp_path / "absent.db"
    done = subprocess.run(
        [sys.executable, str(TOOLS / "bench_musig.py"), "--quick", "--json", "--store", str(missing)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert str(missing) in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_bench_store_size_json():
    figures = run_benchmark("bench_store_size")
    (size,) = figures["sizes"]
    per_track = size["bytes_per_track"]
    # Every stored vector costs at least its float32 bytes, and the tables cannot outweigh the file.
    assert per_track["vectors"] >= figures["raw_vector_bytes_per_track"]
    assert sum(per_track.values()) <= size["file_bytes"] / size["tracks"] + 1
    assert figures["mel_cache_bytes_per_track"] >= 4 * 128 * 646 * 2  # 4 float16 chunks of 128 x 646


def test_bench_sampler_json():
    figures = run_benchmark("bench_sampler")
    per_threads = [v for k, v in figures.items() if k.endswith("_threads")]
    assert per_threads and figures["fanouts"] == [25, 10]
    for run in per_threads:
        assert_positive_numbers(run, ["seeds_per_second", "reference_seeds_per_second", "sampler_over_reference"])
        ratio = run["reference_seeds_per_second"] / run["seeds_per_second"]
        assert run["sampler_over_reference"] == pytest.approx(ratio)
