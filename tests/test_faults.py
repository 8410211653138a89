"""The fault corpus: one folder holding every kind of broken file, link, name and folder, embedded through the
command line (exit 0, every good file stored, one line per bad file, nothing embedded twice), and the store,
training and command-line faults around it: each ends with one line, a non-zero exit where the command failed,
and nothing lost."""

import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import read_csv

from audiograph.store import Store

# Root obeys file permissions only without these capabilities: tests about unreadable folders and
# read-only stores drop them for the command they run (setpriv, from util-linux).
_DROP_PERMISSION_BYPASS = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]


def _permissions_apply() -> list[str]:
    """The prefix that makes a command obey file permissions, or a skip when that is impossible."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: file permissions cannot be made to apply")
    return _DROP_PERMISSION_BYPASS


def run(*args, check=False, prefix=(), timeout=600):
    """The CLI in a subprocess, in a fresh temporary folder; `prefix` goes before the interpreter."""
    env = {k: v for k, v in os.environ.items() if k != "AUDIOGRAPH_DB"}
    with tempfile.TemporaryDirectory() as scratch:
        proc = subprocess.run(
            [*prefix, sys.executable, "-m", "audiograph", *map(os.fsdecode, args)],
            capture_output=True,
            text=True,
            env=env,
            cwd=scratch,
            timeout=timeout,
        )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def _tone(seconds: float, rate: int, channels: int = 1, freq: float = 330.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * np.random.default_rng(int(freq)).standard_normal(len(t))
    return (np.stack([x, 0.6 * x], axis=1) if channels == 2 else x).astype(np.float32)


def _encoded(
    fmt: str, seconds: float = 4.0, rate: int = 22050, subtype: str | None = None, freq: float = 330.0
) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, _tone(seconds, rate, freq=freq), rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def huge_flac() -> bytes:
    """A FLAC file whose STREAMINFO declares 2^36 - 1 samples (about 36 days at 22 kHz)."""
    data = bytearray(_encoded("FLAC"))
    packed = int.from_bytes(data[18:26], "big") | (1 << 36) - 1  # rate 20 bits, channels 3, bits 5, samples 36
    data[18:26] = packed.to_bytes(8, "big")
    return bytes(data)


def huge_mp3() -> bytes:
    """An MP3 whose Xing/Info header declares 2^32 - 1 frames."""
    data = bytearray(_encoded("MP3"))
    at = max(data.find(b"Xing"), data.find(b"Info"))
    assert at > 0 and data[at + 7] & 1, "libsndfile's MP3 has a Xing/Info header with a frame count"
    data[at + 8 : at + 12] = b"\xff\xff\xff\xff"
    return bytes(data)


def float_wav(value: float) -> bytes:
    """A 32-bit float WAV holding one sample of `value` in an ordinary tone."""
    x = _tone(3.0, 22050)
    x[1000] = value
    buffer = io.BytesIO()
    sf.write(buffer, x, 22050, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def build_fault_corpus(good_audio: Path, out: Path) -> dict[str, str]:
    """Copy a collection's audio (good files and its own faults) to `out` and add every fault the command
    line must survive. Returns {relative path (text as stored): expected start of its reason} for the
    added bad files; `out/Locked` is a folder that must be made unreadable by the caller."""
    shutil.copytree(good_audio, out)
    bad = {}

    def put(name: str, data: bytes, reason: str) -> None:
        (out / "Broken").mkdir(exist_ok=True)
        (out / "Broken" / name).write_bytes(data)
        bad[f"Broken/{name}"] = reason

    ogg, opus, mp3 = _encoded("OGG"), _encoded("OGG", rate=48000, subtype="OPUS"), _encoded("MP3")
    for share in (60, 85, 97):
        put(f"vorbis cut at {share}%.ogg", ogg[: len(ogg) * share // 100], "truncated")
        put(f"opus cut at {share}%.opus", opus[: len(opus) * share // 100], "truncated")
    put("mp3 cut at 97%.mp3", mp3[: len(mp3) * 97 // 100], "truncated")
    put("huge declared length.flac", huge_flac(), "corrupt header")
    put("huge declared length.mp3", huge_mp3(), "corrupt header")
    put("loud samples.wav", float_wav(19463.0), "corrupt: decoded samples up to 19,463")
    put("nan samples.wav", float_wav(float("nan")), "corrupt: decoded samples not finite")
    os.symlink(out / "Broken" / "no such target.mp3", out / "Broken" / "dangling link.mp3")
    bad["Broken/dangling link.mp3"] = "broken symbolic link"
    os.symlink(out / "Broken" / "loop b.mp3", out / "Broken" / "loop a.mp3")
    os.symlink(out / "Broken" / "loop a.mp3", out / "Broken" / "loop b.mp3")
    bad["Broken/loop a.mp3"] = bad["Broken/loop b.mp3"] = "symbolic link loop"
    os.mkfifo(out / "Broken" / "named pipe.wav")  # reading it would wait for a writer forever
    bad["Broken/named pipe.wav"] = "not a regular file (a pipe, socket or device)"
    # Good files with awkward names: a name that is not UTF-8, and a newline in a duplicate's name.
    (out / "Names").mkdir()
    with open(os.fsencode(out / "Names") + b"/caf\xe9.flac", "wb") as f:
        f.write(_encoded("FLAC", freq=523.0))
    (out / "Names" / "copy of it.ogg").write_bytes(_encoded("OGG", freq=659.0))
    (out / "Names" / "two\nlines.ogg").write_bytes((out / "Names" / "copy of it.ogg").read_bytes())
    with open(os.fsencode(out / "Names") + b"/copi\xe9.ogg", "wb") as f:  # a copy whose name is not UTF-8
        f.write((out / "Names" / "copy of it.ogg").read_bytes())
    (out / "Locked").mkdir()
    (out / "Locked" / "hidden good.wav").write_bytes(_encoded("WAV", freq=784.0))
    return bad


def test_embed_audio_survives_every_fault_in_one_folder(synth_collection, tmp_path):
    prefix = _permissions_apply()
    audio = tmp_path / "audio"
    bad = build_fault_corpus(synth_collection / "audio", audio)
    (audio / "Locked").chmod(0)
    db = tmp_path / "faults.db"
    try:
        first = run("embed-audio", audio, "--db", db, "--json", "--workers", "2", prefix=prefix)
        again = run("embed-audio", audio, "--db", db, "--workers", "2", prefix=prefix)
    finally:
        (audio / "Locked").chmod(0o755)
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr + again.stderr
    summary = json.loads(first.stdout)
    failed = {f["path"]: f["error"] for f in summary["failed"]}

    # Every bad file and the unreadable folder: reported once, on one line naming it, with its reason.
    lines = [line for line in first.stderr.splitlines() if line.startswith("failed: ")]
    assert len(lines) == len(summary["failed"])
    for relative, reason in bad.items():
        path = str(audio / relative)
        assert path in failed, f"{relative} was not reported"
        assert failed[path].startswith(reason) or reason in failed[path], (relative, failed[path])
        assert any(line.startswith(f"failed: {path}: ") for line in lines)
    assert failed[str(audio / "Locked")].startswith("folder skipped: Permission denied")
    synth_faults = {
        r["path"]
        for r in read_csv(synth_collection / "faults.csv")
        if r["kind"] not in ("duplicate", "missing_file", "url")
    }
    assert {str(audio / p) for p in synth_faults} <= set(failed)
    assert len(failed) == len(bad) + len(synth_faults) + 1

    # Every good file is stored, the awkward names too, each under one stable name.
    store = Store(db)
    good = {r["path"] for r in read_csv(synth_collection / "tracks.csv")}
    expected = {f"audio/{p}" for p in good} | {
        "audio/Names/caf\\xe9.flac",
        "audio/Names/two\nlines.ogg",
        "audio/Names/copy of it.ogg",
        "audio/Names/copi\\xe9.ogg",
    }
    assert {t["id"] for t in store.tracks.rows()} == expected
    assert summary["embedded"] == len(expected)
    assert store.tracks.get("audio/Names/caf\\xe9.flac")["duration"] == pytest.approx(4.0, abs=0.01)
    # The duplicate report keeps a name with a newline whole, and prints it on one line.
    assert any(str(audio / "Names" / "two\nlines.ogg") in d["paths"] for d in summary["duplicates"])
    assert any(f"{audio}/Names/copi\\xe9.ogg" in d["paths"] for d in summary["duplicates"])  # on disk, though escaped
    assert "same audio content: " in again.stdout and "two\\nlines.ogg" in again.stdout

    # A second run embeds nothing and says the same failures again.
    assert again.returncode == 0, again.stderr
    assert f"embedded 0, skipped {len(expected)} unchanged, failed {len(failed)}" in again.stdout
    assert len([line for line in again.stderr.splitlines() if line.startswith("failed: ")]) == len(failed)


def test_a_new_store_written_by_two_runs_at_once(synth_collection, tmp_path):
    """Both runs succeed: the second waits for the first to create the schema, and their writes interleave."""
    audio = tmp_path / "audio"
    shutil.copytree(synth_collection / "audio" / "Unsorted", audio)  # a few good and bad files suffice
    db = tmp_path / "shared.db"
    cmd = [
        sys.executable,
        "-m",
        "audiograph",
        "embed-audio",
        str(audio),
        "--db",
        str(db),
        "--workers",
        "1",
        "--quiet",
        "--batch-size",
        "1",
    ]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    for proc, (_, err) in zip(procs, results):
        assert proc.returncode == 0, err
        assert "locked" not in err and "Traceback" not in err
    store = Store(db)
    decodable = {f"audio/{p.name}" for p in audio.iterdir() if p.suffix in (".mp3", ".ogg", ".flac", ".wav")}
    ok = {t["id"] for t in store.tracks.rows()}
    assert ok and ok <= decodable and ok | {t["id"] for t in store.tracks.rows("failed")} >= decodable
    assert store.db.execute("SELECT count(*) FROM vectors").fetchone()[0] == len(ok)


def cli(capsys, *args) -> tuple[int, str, str]:
    """The command line in this process: (exit status, stdout, stderr)."""
    from audiograph.cli import main

    code = main([os.fsdecode(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_store_faults_end_in_one_line(embedded_db, synth_collection, tmp_path, capsys):
    """A read-only store, a corrupt store, a damaged vector, a folder as --m3u and a missing folder."""
    query_file = synth_collection / "audio" / read_csv(synth_collection / "tracks.csv")[0]["path"]

    def one_line_error(result, *words):
        code, _, err = result if isinstance(result, tuple) else (result.returncode, result.stdout, result.stderr)
        assert code == 1, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("audiograph: error: "), err
        for word in words:
            assert word in lines[0], lines[0]

    # embed-audio of a folder that does not exist leaves no store file behind.
    missing = tmp_path / "new.db"
    one_line_error(cli(capsys, "embed-audio", tmp_path / "nowhere", "--db", missing), "no such folder")
    one_line_error(cli(capsys, "import-tracks", tmp_path / "nowhere.csv", "--db", missing), "no such file")
    songs = tmp_path / "songs.csv"
    songs.write_text("track_id,energy\nt1,0.5\n")
    args = ("import-tracks", songs, "--features", "audio=energy", "--genre-col", "genre", "--db", missing)
    one_line_error(cli(capsys, *args), "missing column(s) 'genre'")
    assert not any(p.name.startswith("new.db") for p in tmp_path.iterdir())

    # --m3u naming a folder: refused before any work; so are a store in a folder that does not exist (it said
    # "not a usable audiograph store") and a folder as the file to query.
    one_line_error(cli(capsys, "query", query_file, "--db", embedded_db, "--m3u", tmp_path), "is a folder")
    nowhere = tmp_path / "nowhere"
    one_line_error(cli(capsys, "embed-audio", synth_collection / "audio", "--db", nowhere / "x.db"), "does not exist")
    one_line_error(cli(capsys, "query", synth_collection / "audio", "--db", embedded_db), "is a folder, not a file")
    assert not nowhere.exists()

    # A damaged vector blob: the search names the track and how to repair it; embed-audio repairs it.
    damaged = tmp_path / "damaged.db"
    shutil.copy(embedded_db, damaged)
    conn = sqlite3.connect(damaged)
    track = conn.execute("SELECT track_id FROM vectors WHERE space = 'descriptors' LIMIT 1").fetchone()[0]
    conn.execute("UPDATE vectors SET vector = x'00112233' WHERE track_id = ? AND space = 'descriptors'", [track])
    conn.commit()
    conn.close()
    one_line_error(cli(capsys, "query", query_file, "--db", damaged), track, "re-run `audiograph embed-audio`")
    code, out, _ = cli(capsys, "embed-audio", synth_collection / "audio", "--db", damaged, "--collection", "synth")
    assert code == 0 and "embedded 1," in out
    assert cli(capsys, "query", query_file, "--db", damaged, "--json")[0] == 0

    # A corrupt store: info and query say so in one line instead of answering.
    corrupt = tmp_path / "corrupt.db"
    shutil.copy(embedded_db, corrupt)
    conn = sqlite3.connect(corrupt)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'vectors'").fetchone()[0]
    conn.close()
    with open(corrupt, "r+b") as f:  # garbage over the vectors table's root page
        f.seek((root - 1) * page_size)
        f.write(np.random.default_rng(0).integers(0, 256, page_size, dtype=np.uint8).tobytes())
    one_line_error(cli(capsys, "info", "--db", corrupt), "corrupt", str(corrupt))
    one_line_error(cli(capsys, "query", query_file, "--db", corrupt), "corrupt", str(corrupt))

    # A read-only store (file permissions apply to a separate process): searches work, writes fail in one
    # line and change nothing.
    prefix = _permissions_apply()
    readonly = tmp_path / "readonly" / "store.db"
    readonly.parent.mkdir()
    shutil.copy(embedded_db, readonly)
    readonly.chmod(0o444)
    before = readonly.read_bytes()
    assert run("query", query_file, "--db", readonly, "--json", prefix=prefix, check=True).stdout.startswith("[")
    one_line_error(
        run("embed-audio", synth_collection / "audio", "--db", readonly, "--collection", "again", prefix=prefix),
        "read-only",
        str(readonly),
    )
    assert readonly.read_bytes() == before

    # A store in a read-only folder (a shared mount): reads work, though SQLite cannot make its -shm there;
    # writes fail in one line, training before it starts, and nothing appears beside the store.
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    shutil.copy(embedded_db, shelf / "store.db")
    before = (shelf / "store.db").read_bytes()
    shelf.chmod(0o555)
    try:
        hits = json.loads(
            run("query", query_file, "--db", shelf / "store.db", "--json", prefix=prefix, check=True).stdout
        )
        assert len(hits) == 10
        assert "descriptors" in run("info", "--db", shelf / "store.db", prefix=prefix, check=True).stdout
        for args in (
            ["embed-audio", synth_collection / "audio", "--collection", "again"],
            ["train-musig", "--epochs", "1"],
        ):
            one_line_error(run(*args, "--db", shelf / "store.db", prefix=prefix), "folder is read-only", str(shelf))
        assert [p.name for p in shelf.iterdir()] == ["store.db"]
        assert (shelf / "store.db").read_bytes() == before
    finally:
        shelf.chmod(0o755)


def _wait_for(condition, what: str, proc=None, timeout: float = 600):
    """Poll `condition` until it holds; fail (naming `what`) if `proc` ends first or after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the command ended (exit {proc.returncode}) before {what}: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout} s")
        time.sleep(0.05)


@pytest.mark.parametrize("command", ["train-audio", "train-musig"])
def test_training_stops_promptly_on_sigterm_and_its_folder_is_cleaned_up(command, embedded_db, tmp_path):
    db = tmp_path / "train.db"
    shutil.copy(embedded_db, db)
    models = tmp_path / "train.models"
    extra = ["--features", "audio,genre,popularity"] if command == "train-musig" else []
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "audiograph",
            command,
            "--db",
            str(db),
            "--epochs",
            "1000",
            "--patience",
            "1000",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def training() -> bool:  # Lightning has logged at least one step
        return any((run_dir / "metrics.csv").exists() for run_dir in models.glob("*-*"))

    _wait_for(training, "a training step", proc)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    stopped = time.monotonic() - sent
    assert proc.returncode == 128 + signal.SIGTERM
    assert "stopped by SIGTERM" in proc.stderr.read()
    assert stopped < 30, f"took {stopped:.1f} s to stop"
    store = Store(db)
    assert not [m for m in store.db.execute("SELECT id FROM models WHERE kind != 'descriptors'")]
    abandoned = [p for p in models.iterdir() if p.is_dir()]
    assert len(abandoned) == 1
    store.models.new_id("audio-encoder")  # the next training run cleans up what the killed one left
    assert not abandoned[0].exists()


class _KilledWhileWriting(BaseException):
    """Stands for the process being killed: not an Exception, so nothing on the way catches it."""


@pytest.mark.parametrize("command", ["train-audio", "train-musig", "import-tracks"])
def test_a_run_killed_while_writing_vectors_leaves_neither_its_model_nor_any_vector(
    command, store_copy, tmp_path, monkeypatch
):
    from audiograph.pipelines.import_tracks import import_tracks
    from audiograph.pipelines.train_audio import train_audio
    from audiograph.pipelines.train_musig import train_musig
    from audiograph.store.vectors import Vectors

    (tmp_path / "t.csv").write_text("track_id,energy\n" + "".join(f"new{i},{i / 10}\n" for i in range(8)))
    space, runs = {
        "train-audio": ("acoustic", lambda: train_audio(store_copy, max_epochs=1, quiet=True)),
        "train-musig": ("musig", lambda: train_musig(store_copy, max_epochs=1, batches_per_epoch=2, quiet=True)),
        "import-tracks": ("mood", lambda: import_tracks(store_copy, tmp_path / "t.csv", features={"mood": ["energy"]})),
    }[command]
    models, tracks = store_copy.models.rows(), store_copy.tracks.node_ids()
    vectors = {s: store_copy.vectors.states(s) for s in store_copy.vectors.spaces()}
    put_rows, written = Vectors.put_rows, []

    def killed_after_three(self, rows, now):
        written.extend(rows[:3])
        put_rows(self, rows[:3], now)
        raise _KilledWhileWriting

    monkeypatch.setattr(Vectors, "put_rows", killed_after_three)
    with pytest.raises(_KilledWhileWriting):
        runs()
    assert len(written) == 3  # the kill came after some vectors were written: they are gone with the model
    assert store_copy.models.rows() == models
    assert store_copy.tracks.node_ids() == tracks
    assert {s: store_copy.vectors.states(s) for s in store_copy.vectors.spaces()} == vectors

    monkeypatch.setattr(Vectors, "put_rows", put_rows)  # started again, the run writes the model and every vector
    runs()
    (added,) = [m for m in store_copy.models.rows() if m not in models]
    assert added["space"] == space
    states = store_copy.vectors.states(space)
    assert states and {m for m, _ in states.values()} == {added["id"]}


def _embedded_tones(tmp_path, count: int):
    """A folder of `count` short distinct FLAC tones, embedded into a new store: (folder, store)."""
    from audiograph.pipelines.embed_audio import embed_audio

    root = tmp_path / "music"
    root.mkdir()
    for i in range(count):
        sf.write(root / f"{i}.flac", _tone(2.0, 22_050, freq=220.0 + 110 * i), 22_050)
    store = Store(tmp_path / "s.db")
    embed_audio(root, store, num_workers=0, quiet=True)
    return root, store


@pytest.mark.parametrize("stage", ["scan", "plan"])
def test_a_file_removed_during_a_run_is_missing_not_failed(stage, tmp_path, monkeypatch):
    import audiograph.pipelines.embed_audio as pipeline

    root, store = _embedded_tones(tmp_path, 3)
    sf.write(root / "1.flac", _tone(2.5, 22_050, freq=700.0), 22_050)  # changed, so it is read again
    sf.write(root / "new.flac", _tone(2.0, 22_050, freq=900.0), 22_050)
    rows = {t["id"]: dict(t) for t in store.tracks.rows(status=None)}

    # Each file is removed after the step named has listed it, before it is read.
    original = getattr(pipeline, {"scan": "scan", "plan": "_plan_jobs"}[stage])

    def then_removed(*args):
        listed = original(*args)
        (root / "1.flac").unlink()
        (root / "new.flac").unlink()
        return listed

    monkeypatch.setattr(pipeline, {"scan": "scan", "plan": "_plan_jobs"}[stage], then_removed)
    summary = pipeline.embed_audio(root, store, num_workers=0, quiet=True)
    assert summary.failed == [] and summary.embedded == 0
    assert (summary.missing, summary.missing_examples) == (1, [next(t for t in rows if t.endswith("/1.flac"))])
    assert {t["id"]: dict(t) for t in store.tracks.rows(status=None)} == rows  # the old row and vectors kept


def test_a_folder_inside_an_embedded_collection_stores_no_file_twice(tmp_path):
    from audiograph.pipelines.embed_audio import embed_audio

    music = tmp_path / "music"
    (music / "album").mkdir(parents=True)
    for i, folder in enumerate([music, music, music / "album", music / "album"]):
        sf.write(folder / f"{i}.flac", _tone(2.0, 22_050, freq=220.0 + 110 * i), 22_050)
    store = Store(tmp_path / "s.db")
    assert embed_audio(music, store, num_workers=0, quiet=True).embedded == 4
    again = embed_audio(music / "album", store, num_workers=0, quiet=True)
    assert (again.embedded, again.elsewhere) == (0, {"music": 2})
    assert len(store.tracks.rows()) == 4

    other = Store(tmp_path / "other.db")  # the other way round: the enclosed folder first
    embed_audio(music / "album", other, num_workers=0, quiet=True)
    whole = embed_audio(music, other, num_workers=0, quiet=True)
    assert (whole.embedded, whole.elsewhere) == (2, {"album": 2})
    assert sorted(t["path"] for t in other.tracks.rows()) == sorted(str(p) for p in music.rglob("*.flac"))


def test_prune_removes_the_tracks_gone_from_disk_unless_a_folder_could_not_be_read(tmp_path):
    from audiograph.pipelines import embed_audio as pipeline

    music, store = _embedded_tones(tmp_path, 4)
    (music / "0.flac").unlink()
    (music / "1.flac").rename(music / "one.flac")
    kept = pipeline.embed_audio(music, store, num_workers=0, quiet=True)
    assert (kept.missing, kept.pruned, len(store.tracks.rows())) == (2, 0, 5)

    # A folder that could not be read hides its files: nothing is pruned then, and a warning says why.
    scanned = pipeline.scan(music)
    scanned = (scanned[0], scanned[1], [{"path": str(music / "locked"), "error": "folder skipped: Permission denied"}])
    with pytest.warns(UserWarning, match="nothing pruned: 1 folders could not be read"):
        pipeline.plan_embedding(music, store, scanned, collection=None, acoustic_model=None, prune=True)
    assert len(store.tracks.rows()) == 5

    # A graph listing one of the gone tracks: the summary says so (build-graph makes it again without them).
    nodes = ["music/0.flac", "music/2.flac", "music/3.flac"]
    store.graph.replace([], nodes, (np.array([0, 1]), np.array([1, 2]), np.array([1.0, 1.0])), {"sources": []})
    pruned = pipeline.embed_audio(music, store, num_workers=0, quiet=True, prune=True)
    assert (pruned.missing, pruned.pruned, pruned.pruned_in_graph) == (0, 2, 1)
    assert sorted(t["id"] for t in store.tracks.rows()) == ["music/2.flac", "music/3.flac", "music/one.flac"]
    assert set(store.vectors.states("descriptors")) == {"music/2.flac", "music/3.flac", "music/one.flac"}
    assert not {t for (t,) in store.execute("SELECT track_id FROM mels")} - {t["id"] for t in store.tracks.rows()}


def test_a_moved_file_is_found_under_its_new_name_and_is_no_copy_of_itself(tmp_path):
    """A file moved since it was stored keeps its old row (kept, as missing, until --prune), with the same
    bytes as its new one: searches name the file that exists, and the run reports no copy."""
    from audiograph.pipelines.embed_audio import embed_audio

    music, store = _embedded_tones(tmp_path, 3)
    (music / "moved").mkdir()
    (music / "0.flac").rename(music / "moved" / "0.flac")
    shutil.copy(music / "1.flac", music / "1 copy.flac")  # a real copy beside the move, reported as one
    summary = embed_audio(music, store, num_workers=0, quiet=True)
    assert summary.missing == 1
    reported = [sorted(Path(p).name for p in d["paths"]) for d in summary.duplicates]
    assert reported == [["1 copy.flac", "1.flac"]], summary.duplicates
    ids, matrix = store.vectors.matrix("descriptors")
    hits = store.vectors.similar("descriptors", matrix[ids.index("music/1.flac")], k=5, exclude={"music/1.flac"})
    names = [h["path"] for h in hits]
    assert str(music / "moved" / "0.flac") in names and str(music / "0.flac") not in names, names
    from audiograph.pipelines.explore import radio

    played = [t["path"] for t in radio(store, "music/1.flac", length=3, space="descriptors").tracks]
    assert str(music / "moved" / "0.flac") in played and str(music / "0.flac") not in played, played


def test_rehash_finds_new_bytes_that_kept_the_size_and_time(tmp_path):
    """A file rewritten with other audio of the same size and an unchanged modification time (a tag editor
    may keep both) is taken as unchanged by default; `rehash` hashes every file, analyses only the changed
    one again, and stores what a fresh store stores for it."""
    from audiograph.pipelines.embed_audio import embed_audio

    music = tmp_path / "music"
    music.mkdir()
    for i in range(3):
        sf.write(music / f"{i}.wav", _tone(2.0, 22_050, freq=220.0 + 110 * i), 22_050, subtype="PCM_16")
    store = Store(tmp_path / "s.db")
    embed_audio(music, store, num_workers=0, quiet=True)
    before = store.vectors.matrix("descriptors")[1][1]
    stat = (music / "1.wav").stat()
    sf.write(music / "1.wav", _tone(2.0, 22_050, freq=1_000.0), 22_050, subtype="PCM_16")
    os.utime(music / "1.wav", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (music / "1.wav").stat().st_size == stat.st_size

    assert embed_audio(music, store, num_workers=0, quiet=True).skipped == 3
    np.testing.assert_array_equal(store.vectors.matrix("descriptors")[1][1], before)
    again = embed_audio(music, store, num_workers=0, quiet=True, rehash=True)
    assert (again.embedded, again.skipped) == (1, 2)
    fresh = Store(tmp_path / "fresh.db")
    embed_audio(music, fresh, num_workers=0, quiet=True)
    np.testing.assert_array_equal(store.vectors.matrix("descriptors")[1], fresh.vectors.matrix("descriptors")[1])
