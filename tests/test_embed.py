"""embed-audio: what gets embedded, skipped and reported; incremental runs; a killed run resumed."""

import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import read_csv

from audiograph.audio.descriptors import DESCRIPTOR_NAMES
from audiograph.pipelines.embed_audio import embed_audio
from audiograph.store import Store

FAILING_KINDS = {"empty", "truncated", "not_audio", "too_short", "silent", "unsupported"}


def _expected(collection: Path):
    good = {r["path"] for r in read_csv(collection / "tracks.csv")}
    faults = {r["path"]: r["kind"] for r in read_csv(collection / "faults.csv")}
    failing = {p for p, kind in faults.items() if kind in FAILING_KINDS}
    return good, failing, faults


def _ids(store, status="ok"):
    return {t["id"] for t in store.tracks.rows(status=status)}


def test_embed_reports_faults_and_skips_unchanged(synth_collection, tmp_path):
    good, failing, faults = _expected(synth_collection)
    store = Store(tmp_path / "s.db")
    reported = []
    summary = embed_audio(
        synth_collection / "audio",
        store,
        collection="c",
        num_workers=2,
        quiet=True,
        on_failure=lambda p, r: reported.append((p, r)),
    )
    assert summary.embedded == len(good)
    failed = {Path(f["path"]).relative_to(synth_collection / "audio").as_posix(): f["error"] for f in summary.failed}
    assert set(failed) == failing
    assert len(reported) == len(failing)
    reasons = {faults[p]: r for p, r in failed.items()}
    assert reasons["empty"] == "empty file (0 bytes)"
    assert reasons["truncated"].startswith("truncated")
    assert reasons["not_audio"].startswith("not an audio file")
    assert reasons["too_short"].startswith("too short")
    assert reasons["silent"].startswith("silent")
    # A fake M4A: without PyAV its format is unsupported, with it the data are not audio.
    assert reasons["unsupported"].startswith(("unsupported format", "unrecognised or corrupt audio data"))
    duplicate = next(p for p, kind in faults.items() if kind == "duplicate")
    assert any(any(p.endswith(duplicate) for p in d["paths"]) and len(d["paths"]) == 2 for d in summary.duplicates)

    assert _ids(store) == {f"c/{p}" for p in good}
    assert {t["id"] for t in store.tracks.rows("failed")} == {f"c/{p}" for p in failing}
    ids, matrix = store.vectors.matrix("descriptors")
    assert set(ids) == _ids(store) and matrix.shape == (len(good), len(DESCRIPTOR_NAMES))
    assert np.isfinite(matrix).all()
    assert set(store.mels.chunks()) == _ids(store)
    row = store.tracks.get(f"c/{sorted(good)[0]}")
    truth = next(r for r in read_csv(synth_collection / "tracks.csv") if r["path"] == sorted(good)[0])
    assert (row["title"], row["artist"], row["genre"]) == (truth["title"], truth["artist"], truth["genre"])
    assert row["sample_rate"] == int(truth["sample_rate"]) and row["duration"] == pytest.approx(
        float(truth["duration"]), abs=0.05
    )

    again = embed_audio(synth_collection / "audio", store, collection="c", num_workers=0, quiet=True)
    assert again.embedded == 0 and again.skipped == len(good)
    assert {f["path"] for f in again.failed} == {f["path"] for f in summary.failed}  # still broken, still said


def test_changed_and_touched_files(synth_collection, tmp_path):
    root = tmp_path / "audio"
    shutil.copytree(synth_collection / "audio", root)
    good, _, _ = _expected(synth_collection)
    store = Store(tmp_path / "s.db")
    embed_audio(root, store, num_workers=0, quiet=True)
    first, second = sorted(good)[:2]
    old_vector = store.vectors.index("descriptors").vector(f"audio/{first}").copy()

    # Same content, new mtime: hashed again, recognised as unchanged, not re-decoded.
    os.utime(root / second, ns=(1, 1))
    # New content: re-embedded.
    target = root / first
    info = sf.info(target)
    rng = np.random.default_rng(0)
    noise = (0.3 * rng.standard_normal((int(info.samplerate * 4), info.channels))).astype(np.float32)
    sf.write(target, noise, info.samplerate, format=info.format)

    summary = embed_audio(root, store, num_workers=0, quiet=True)
    assert summary.embedded == 1 and summary.skipped == len(good) - 1
    assert store.tracks.get(f"audio/{second}")["mtime_ns"] == 1
    assert not np.allclose(store.vectors.index("descriptors").vector(f"audio/{first}"), old_vector)
    assert embed_audio(root, store, num_workers=0, quiet=True).embedded == 0


def test_missing_folder_and_folder_without_audio(tmp_path):
    from audiograph.errors import ConfigError

    store = Store(tmp_path / "s.db")
    with pytest.raises(ConfigError, match="no such folder"):
        embed_audio(tmp_path / "nope", store, quiet=True)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("hi")
    with pytest.raises(ConfigError, match="no audio files"):
        embed_audio(tmp_path / "docs", store, quiet=True)


def test_real_recordings_embed(shared_data, tmp_path):
    store = Store(tmp_path / "s.db")
    summary = embed_audio(shared_data / "audio", store, num_workers=2, quiet=True)
    assert summary.embedded == 9 and summary.failed == []
    rates = {t["sample_rate"] for t in store.tracks.rows()}
    assert rates == {16000, 22050}
    assert {t["format"] for t in store.tracks.rows()} == {"ogg", "mp3"}


def _count(db: Path, sql: str) -> int:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(sql).fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def test_a_killed_run_resumes_without_loss_or_duplicates(synth_collection, tmp_path):
    good, failing, _ = _expected(synth_collection)
    root = tmp_path / "audio"
    shutil.copytree(synth_collection / "audio", root)
    db = tmp_path / "s.db"
    cmd = [
        sys.executable,
        "-m",
        "audiograph",
        "embed-audio",
        str(root),
        "--db",
        str(db),
        "--batch-size",
        "2",
        "--workers",
        "1",
        "--quiet",
    ]
    _kill_after_two_commits(cmd, db)
    done = _count(db, "SELECT count(*) FROM tracks WHERE status = 'ok'")
    total = len(good) + len(failing)
    assert 0 < _count(db, "SELECT count(*) FROM tracks") < total, "the run was not killed midway"

    store = Store(db)
    summary = embed_audio(root, store, num_workers=0, quiet=True)
    assert summary.embedded == len(good) - done
    assert summary.skipped == done
    assert _ids(store) == {f"audio/{p}" for p in good}
    assert _count(db, "SELECT count(*) FROM vectors") == len(good)
    assert (
        _count(db, "SELECT count(*) FROM (SELECT track_id FROM vectors GROUP BY space, track_id HAVING count(*) > 1)")
        == 0
    )
    assert _count(db, "SELECT count(*) FROM mels") == len(good)


def _register_untrained_encoder(
    store: Store, model_id: str = "audio-encoder-29990101-000000", descriptor_weight: float = 0.0
) -> str:
    """An untrained acoustic model saved in the store's models folder and registered: acoustic vectors
    without a training run (the same weights in every store, from a fixed seed), joined with the
    descriptors (unscaled) at `descriptor_weight`."""
    import torch

    from audiograph.models import ACOUSTIC_KIND
    from audiograph.models.acoustic import AcousticModel

    torch.manual_seed(0)
    model = AcousticModel()
    if descriptor_weight:
        model.combine_descriptors(descriptor_weight, np.zeros(42), np.ones(42))
    folder = model.save(store.models_dir / model_id / "model")
    store.models.register(model_id, ACOUSTIC_KIND, "acoustic", checkpoint=folder)
    return model_id


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "audiograph", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_a_run_with_nothing_to_do_imports_neither_torch_nor_the_encoder(synth_collection, tmp_path):
    store = Store(tmp_path / "s.db")
    model_id = _register_untrained_encoder(store)
    first = embed_audio(synth_collection / "audio", store, collection="c", num_workers=0, quiet=True)
    assert first.embedded > 0 and first.acoustic_model == model_id
    assert len(store.vectors.states("acoustic")) == first.embedded
    code = (
        "import json, sys\n"
        "from audiograph.cli import main\n"
        f"main(['embed-audio', {str(synth_collection / 'audio')!r}, '--db', {str(store.path)!r}, '--json'])\n"
        "print(json.dumps(sorted(m for m in ('torch', 'lightning', 'librosa', 'scipy') if m in sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    summary = json.loads("\n".join(lines[:-1]))
    assert summary["embedded"] == 0 and summary["skipped"] == first.embedded
    assert summary["acoustic_model"] == model_id
    assert json.loads(lines[-1]) == []


def _store_contents(db: Path) -> dict:
    """Every track row (but its write time), vector and cached log-mel of a store, keyed by track."""
    conn = sqlite3.connect(db)
    try:
        columns = [c[1] for c in conn.execute("PRAGMA table_info(tracks)") if c[1] != "updated"]
        tracks = {r[0]: r for r in conn.execute(f"SELECT {', '.join(columns)} FROM tracks")}
        vectors = {
            (space, track): (model, content, np.frombuffer(blob, np.float32))
            for space, track, model, content, blob in conn.execute(
                "SELECT space, track_id, model_id, content_hash, vector FROM vectors"
            )
        }
        mels = {
            r[0]: r[1:] for r in conn.execute("SELECT track_id, content_hash, frontend, chunk_frames, data FROM mels")
        }
    finally:
        conn.close()
    return {"tracks": tracks, "vectors": vectors, "mels": mels}


@pytest.mark.slow
def test_two_ranks_store_what_one_process_stores(synth_collection, tmp_path):
    """embed-audio over 2 CPU processes (Lightning DDP): each file analysed by one rank, rank 0 the one
    writer, and the store equal to a one-process run's: track rows, descriptors, log-mels, acoustic vectors
    (of an encoder joined with the descriptors)."""
    contents, outputs = {}, {}
    distributed = ["--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"]
    for name, options in (("one", []), ("ddp", distributed)):
        db = tmp_path / f"{name}.db"
        _register_untrained_encoder(Store(db), descriptor_weight=0.25)
        outputs[name] = _cli(
            "embed-audio", synth_collection / "audio", "--db", db, "--batch-size", "3", "--json", *options
        )
        contents[name] = _store_contents(db)
    one, ddp = contents["one"], contents["ddp"]
    summaries = {name: json.loads(done.stdout) for name, done in outputs.items()}  # one JSON object: rank 0's only
    for key in ("embedded", "skipped", "duplicates", "missing", "acoustic_model"):
        assert summaries["ddp"][key] == summaries["one"][key], key
    assert sorted(map(str, summaries["ddp"]["failed"])) == sorted(map(str, summaries["one"]["failed"]))
    lines = [line for line in outputs["ddp"].stderr.splitlines() if line.startswith("failed: ")]
    assert len(lines) == len(summaries["one"]["failed"])  # each failure said once, by the writing rank

    assert ddp["tracks"] == one["tracks"]
    assert ddp["mels"] == one["mels"]
    assert set(ddp["vectors"]) == set(one["vectors"])
    assert {space for space, _ in one["vectors"]} == {"descriptors", "acoustic"}
    assert {len(v) for (space, _), (_, _, v) in one["vectors"].items() if space == "acoustic"} == {128 + 42}
    for key, (model, content, vector) in one["vectors"].items():
        assert ddp["vectors"][key][:2] == (model, content), key
        # Descriptors are the same arithmetic on the same bytes; the encoder batches files differently.
        np.testing.assert_allclose(ddp["vectors"][key][2], vector, rtol=0, atol=0 if key[0] == "descriptors" else 1e-5)

    # A second run over two ranks finds nothing to do, and still says what is broken.
    again = json.loads(
        _cli("embed-audio", synth_collection / "audio", "--db", tmp_path / "ddp.db", "--json", *distributed).stdout
    )
    assert again["embedded"] == 0 and again["skipped"] == summaries["one"]["embedded"]
    assert len(again["failed"]) == len(summaries["one"]["failed"])


@pytest.mark.slow
def test_a_killed_two_rank_run_resumes_without_loss_or_duplicates(synth_collection, tmp_path):
    """Killed mid-way, a DDP run has committed whole steps only (rank 0's transactions); started again, it
    finishes with exactly what a one-process run stores."""
    good, failing, _ = _expected(synth_collection)
    db, one = tmp_path / "ddp.db", tmp_path / "one.db"
    distributed = ["--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--workers", "0"]
    cmd = [sys.executable, "-m", "audiograph", "embed-audio", synth_collection / "audio", "--db", db]
    cmd += ["--batch-size", "1", "--quiet", *distributed]
    _kill_after_two_commits(cmd, db)
    assert 0 < _count(db, "SELECT count(*) FROM tracks") < len(good) + len(failing), "the run was not killed midway"

    again = json.loads(_cli("embed-audio", synth_collection / "audio", "--db", db, "--json", *distributed).stdout)
    _assert_holds_what_one_run_stores(db, one, synth_collection, again, good)


def _assert_holds_what_one_run_stores(db, one, collection: Path, again: dict, good: set) -> None:
    """`db`, finished by the rerun that reported `again`, holds exactly what one uninterrupted run stores in `one`."""
    _cli("embed-audio", collection / "audio", "--db", one, "--json")
    done, reference = _store_contents(db), _store_contents(one)
    assert done["tracks"] == reference["tracks"] and done["mels"] == reference["mels"]
    assert set(done["vectors"]) == set(reference["vectors"])
    assert again["embedded"] + again["skipped"] == len(good)


def _kill_after_two_commits(cmd: list, db) -> None:
    """Run embed-audio `cmd` and SIGKILL it, with every process it started, once `db` holds 4 track rows
    (two batches or steps committed)."""
    proc = _started_until_rows(cmd, db, 4)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _started_until_rows(cmd: list, db, rows: int) -> subprocess.Popen:
    """embed-audio `cmd`, running in its own process group (so that a signal to the group reaches its workers or
    its other rank too, as a terminal's does), once `db` holds `rows` track rows, however long a loaded machine
    takes to get there."""
    proc = subprocess.Popen(
        list(map(str, cmd)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 900
    while _count(db, "SELECT count(*) FROM tracks") < rows:
        assert proc.poll() is None, f"embed-audio ended (exit {proc.returncode}) early: {proc.stderr.read()}"
        assert time.monotonic() < deadline, f"embed-audio committed no {rows} track rows in 15 minutes"
        time.sleep(0.05)
    return proc


def _wait_for_group_to_end(proc: subprocess.Popen, seconds: float, message: str) -> None:
    """Wait until no process is left in the process group `proc` led (its workers ended too)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


def test_ctrl_c_twice_ends_a_run_at_once_and_a_rerun_completes_it(synth_collection, tmp_path):
    """Ctrl-C reaches every process of the group; a second one while the first run is stopping (when impatient
    users press it) must not break the clean-up, which once left the workers waiting forever. The rerun then
    stores exactly what an uninterrupted run does."""
    good, failing, _ = _expected(synth_collection)
    db, one = tmp_path / "stopped.db", tmp_path / "one.db"
    cmd = [sys.executable, "-m", "audiograph", "embed-audio", synth_collection / "audio", "--db", db]
    proc = _started_until_rows([*cmd, "--batch-size", "1", "--workers", "2", "--quiet"], db, 2)
    try:
        os.killpg(proc.pid, signal.SIGINT)
        os.killpg(proc.pid, signal.SIGINT)  # pressed twice in a row: the second lands while the run stops
        said = []
        # The files that failed before it stopped, and the notice that it is stopping, when that takes a while.
        while not said or said[-1].startswith(("failed: ", "audiograph: stopping after")) or said[-1] == "\n":
            said.append(proc.stderr.readline())
        # What the run stored before it stopped is said, in files: every row the store now has.
        stored = re.fullmatch(
            r"audiograph: interrupted after (\d+) files? of this run (?:was|were) stored \(.*\)\n", said[-1]
        )
        assert stored, said
        os.killpg(proc.pid, signal.SIGINT)  # and again during the exit that follows that line
        assert proc.wait(timeout=120) == 130
        assert int(stored[1]) == _count(db, "SELECT count(*) FROM tracks")
        assert proc.stderr.read() == ""
        _wait_for_group_to_end(proc, 120, "worker processes outlived the interrupted run")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert 0 < _count(db, "SELECT count(*) FROM tracks") < len(good) + len(failing), "the run was not stopped midway"

    again = json.loads(_cli(*cmd[3:], "--json").stdout)
    _assert_holds_what_one_run_stores(db, one, synth_collection, again, good)


def test_workers_end_when_the_run_is_killed_alone(synth_collection, tmp_path):
    """SIGKILL (or the OOM killer) reaches the main process alone: its workers, which it can no longer end,
    must end themselves. Orphans held the store's files and the output pipe, so that a `| tee` never ended."""
    db = tmp_path / "killed.db"
    cmd = [sys.executable, "-m", "audiograph", "embed-audio", synth_collection / "audio", "--db", db]
    proc = _started_until_rows([*cmd, "--batch-size", "1", "--workers", "2", "--quiet"], db, 2)
    try:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        _wait_for_group_to_end(proc, 60, "worker processes outlived the killed run")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def _killed_by_b(job):
    """A worker's work that ends its own process abruptly on job "b", as the kernel's out-of-memory killer does."""
    if job == "b":
        os.kill(os.getpid(), signal.SIGKILL)
    return f"done {job}"


def test_a_file_that_kills_its_worker_fails_alone_and_the_others_go_on():
    from audiograph.pipelines.embed_audio import _outcomes
    from audiograph.pipelines.embed_work import WORKER_ENDED

    jobs = list("abcdefghij")
    outcomes = list(_outcomes(jobs, _killed_by_b, 2, lambda job, reason: f"failed {job}: {reason}"))
    assert sorted(outcomes) == sorted([f"done {j}" for j in jobs if j != "b"] + [f"failed b: {WORKER_ENDED}"])


def test_a_file_too_large_for_memory_fails_with_its_reason_and_the_batch_goes_on(
    synth_collection, tmp_path, monkeypatch
):
    import audiograph.pipelines.embed_work as embed_work

    analyse = embed_work.analyse
    victim = sorted((synth_collection / "audio").rglob("*.wav"))[0]

    def analyse_or_run_out(path, *args, **kwargs):
        if Path(path) == victim:
            raise MemoryError
        return analyse(path, *args, **kwargs)

    monkeypatch.setattr(embed_work, "analyse", analyse_or_run_out)
    store = Store(tmp_path / "s.db")
    summary = embed_audio(synth_collection / "audio", store, num_workers=0, quiet=True)
    failed = {f["path"]: f["error"] for f in summary.failed}
    assert failed[str(victim)] == embed_work.OUT_OF_MEMORY
    assert summary.embedded == len(store.tracks.rows()) > 0
    # A re-run reports it from the store, as any unchanged bad file, without analysing it again.
    analysed = []
    monkeypatch.setattr(embed_work, "analyse", lambda path, *a, **k: analysed.append(path) or analyse(path, *a, **k))
    again = embed_audio(synth_collection / "audio", store, num_workers=0, quiet=True)
    assert {f["path"]: f["error"] for f in again.failed}[str(victim)] == embed_work.OUT_OF_MEMORY
    assert analysed == [] and again.embedded == 0


def _killed_late_by_b(job):
    """As `_killed_by_b`, but the worker dies half a second in, while the reader is busy elsewhere; the other
    jobs take a moment each, so that several finish while it is."""
    if job == "b":
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.05)
    return f"done {job}"


def test_a_worker_that_dies_while_the_reader_is_busy_fails_its_file_alone():
    """The reader (this process encoding and writing a batch) comes back to a pool already broken: the job it
    then hands out goes with the suspects instead of ending the run."""
    from audiograph.pipelines.embed_audio import _outcomes
    from audiograph.pipelines.embed_work import WORKER_ENDED

    jobs = list("abcdefghij")
    for _ in range(3):  # which finished job the reader takes first after the break is up to a set's order
        outcomes = []
        for outcome in _outcomes(jobs, _killed_late_by_b, 2, lambda job, reason: f"failed {job}: {reason}"):
            outcomes.append(outcome)
            if len(outcomes) == 1:
                time.sleep(1.0)  # "b" kills its worker meanwhile
        assert sorted(outcomes) == sorted([f"done {j}" for j in jobs if j != "b"] + [f"failed b: {WORKER_ENDED}"])


def test_what_a_run_says_it_stored_counts_its_own_writes_only(tmp_path):
    """Failures the plan only repeats from the store (and unreadable folders) are in the summary, not in the
    files the run wrote."""
    from audiograph.pipelines.embed_work import BatchWriter, EmbedSummary, FileJob, FileOutcome
    from audiograph.runtime import WORK_SAVED
    from audiograph.store import TrackRecord

    summary = EmbedSummary()
    summary.failed += [{"path": "/old/bad.mp3", "error": "truncated"}, {"path": "/locked", "error": "folder skipped"}]
    no_bar = type("NoBar", (), {"update": lambda self, n: None})()
    writer = BatchWriter(Store(tmp_path / "s.db"), summary, no_bar, None)
    record = TrackRecord("c/new.mp3", "c", "/music/new.mp3", status="failed", error="empty file (0 bytes)")
    writer.write([FileOutcome(FileJob.__new__(FileJob), record)])
    assert WORK_SAVED["what"] == "1 file of this run was stored (a re-run goes on from there)"


def test_a_file_that_kills_its_worker_is_stored_failed_with_its_size_and_time(synth_collection, tmp_path, monkeypatch):
    """So that a re-run reports it from the store rather than lose another worker to it."""
    import audiograph.pipelines.embed_work as embed_work

    analyse = embed_work.analyse
    victim = sorted((synth_collection / "audio").rglob("*.wav"))[0]

    def analyse_or_die(path, *args, **kwargs):  # run in the forked workers, which inherit this patch
        if Path(path) == victim:
            os.kill(os.getpid(), signal.SIGKILL)
        return analyse(path, *args, **kwargs)

    monkeypatch.setattr(embed_work, "analyse", analyse_or_die)
    store = Store(tmp_path / "s.db")
    summary = embed_audio(synth_collection / "audio", store, num_workers=2, quiet=True)
    assert {f["path"]: f["error"] for f in summary.failed}[str(victim)] == embed_work.WORKER_ENDED
    row = store.tracks.by_path(victim)
    assert (row["status"], row["size"], row["mtime_ns"]) == ("failed", victim.stat().st_size, victim.stat().st_mtime_ns)
