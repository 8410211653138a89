"""The recipes run: each one's smallest setting, end to end, in a fresh process (a recipe that falls behind
the package's API fails here, not in a user's hands). The real-data recipes have their own tests."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def run_recipe(name: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(RECIPES / name), *args], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_train_audio_recipe_compares_the_three_spaces(tmp_path):
    out = tmp_path / "train-audio"
    run_recipe(
        "train_audio.py",
        *("--out", str(out), "--epochs", "1", "--tracks", "40", "--genres", "4", "--playlists", "20"),
        *("--seconds", "6"),
    )
    results = json.loads((out / "results.json").read_text())
    assert set(results["genre_precision_at_10"]) == {"trained encoder", "untrained encoder", "audio descriptors"}
    assert all(0 <= v <= 1 for v in results["genre_precision_at_10"].values())
    assert results["crops_per_second"] > 0 and results["bare_crops_per_second"] > 0


def test_musig_grid_recipe_reports_every_preset(tmp_path):
    out = tmp_path / "grid"
    stdout = run_recipe("musig_grid.py", "--quick", "--out", str(out))
    results = json.loads((out / "results.json").read_text())
    assert set(results["runs"]) == {"multi", "graphsage", "playlist-heavy", "content-heavy"}
    table = (out / "results.md").read_text()
    assert "nan" not in table  # a metric no run logged has no column
    best = max(results["runs"], key=lambda p: results["runs"][p][0]["metrics"]["val_hr"])
    assert (
        results["runs"][results["best_preset"]][0]["metrics"]["val_hr"] == results["runs"][best][0]["metrics"]["val_hr"]
    )
    assert f"--task-weights {results['best_preset']}" in stdout


def test_make_map_recipe_writes_the_map(shared_data, tmp_path):
    pytest.importorskip("sklearn")
    out = tmp_path / "map.png"
    stdout = run_recipe(
        "make_map.py",
        "--quick",
        "--out",
        str(out),
        "--csv",
        str(shared_data / "spotify_playlists" / "spotify_songs_dev.csv"),
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "trustworthiness" in stdout


@pytest.mark.slow
def test_evaluate_synthetic_recipe_writes_its_table(tmp_path):
    out = tmp_path / "synthetic"
    run_recipe("evaluate_synthetic.py", "--quick", "--out", str(out))
    assert "| MUSIG" in (out / "results.md").read_text()
