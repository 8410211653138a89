"""The README's Python API snippet runs as written in an empty folder."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_api_snippet() -> str:
    section = README.read_text(encoding="utf-8").split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_python_api_snippet_runs_in_an_empty_folder(tmp_path):
    snippet = python_api_snippet()
    assert "synthesize(" in snippet and "query_file(" in snippet
    done = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 3
    assert lines[1] == "(1, 128)"  # one unit vector of the untrained encoder
    model_id, hit_rate = lines[2].split()
    assert model_id.startswith("musig-") and 0 < float(hit_rate) <= 1  # printed "None" when it named val_auc
    assert (tmp_path / "music.db").is_file() and (tmp_path / "music.models").is_dir()
