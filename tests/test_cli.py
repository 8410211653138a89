"""The console script: outputs (table and --json), exit codes, and one-line errors without tracebacks."""

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import read_csv


def run(*args, env_db=None, check=True, cwd=None):
    """Run the CLI in a subprocess, in `cwd` (default: a fresh temporary folder, so no ./audiograph.db)."""
    env = {k: v for k, v in os.environ.items() if k != "AUDIOGRAPH_DB"}
    if env_db:
        env["AUDIOGRAPH_DB"] = str(env_db)
    with tempfile.TemporaryDirectory() as scratch:
        proc = subprocess.run(
            [sys.executable, "-m", "audiograph", *map(str, args)],
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd or scratch,
        )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def test_synth_embed_query_info(synth_collection, tmp_path):
    db = tmp_path / "cli.db"
    audio = tmp_path / "audio"
    shutil.copytree(synth_collection / "audio", audio)
    truth = {r["path"]: r for r in read_csv(synth_collection / "tracks.csv")}

    out = run("embed-audio", audio, "--db", db, "--json")
    summary = json.loads(out.stdout)
    assert summary["embedded"] == len(truth) and summary["skipped"] == 0
    assert {Path(f["path"]).name for f in summary["failed"]} == {
        Path(r["path"]).name
        for r in read_csv(synth_collection / "faults.csv")
        if r["kind"] not in ("duplicate", "missing_file", "url")
    }
    assert all(f["error"] for f in summary["failed"])
    # One line per bad file on stderr, naming it; no traceback.
    failure_lines = [line for line in out.stderr.splitlines() if line.startswith("failed: ")]
    assert len(failure_lines) == len(summary["failed"]) and "Traceback" not in out.stderr

    again = run("embed-audio", audio, env_db=db)  # the store from the environment
    assert f"embedded 0, skipped {len(truth)} unchanged" in again.stdout
    assert "acoustic vectors appear after" in again.stdout

    query_path = audio / sorted(truth)[0]
    hits = json.loads(run("query", query_path, "--db", db, "--json", "-k", "5").stdout)
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert set(hits[0]) == {"rank", "track_id", "path", "title", "artist", "genre", "score"}
    assert all(h["track_id"] != f"audio/{sorted(truth)[0]}" for h in hits)  # the query itself is excluded
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert hits[0]["title"] == truth[Path(hits[0]["path"]).relative_to(audio).as_posix()]["title"]

    m3u = tmp_path / "out" / "similar.m3u8"
    table = run("query", query_path, "--db", db, "-k", "3", "--m3u", m3u, "--wide").stdout.splitlines()
    assert table[0].startswith("space 'descriptors'")
    assert table[1].split()[:3] == ["rank", "score", "artist"]
    rows = table[2:5]
    assert [r.split()[0] for r in rows] == ["1", "2", "3"]
    for row in rows:
        path = row.split("  ")[-1].strip()
        meta = truth[Path(path).relative_to(audio).as_posix()]
        assert f"{meta['artist']} – {meta['title']}" in row
    entries = [e for e in m3u.read_text(encoding="utf-8").splitlines() if e and not e.startswith("#")]
    assert len(entries) == 3 and all((m3u.parent / e).resolve().is_file() for e in entries)
    narrow = run("query", query_path, "--db", db, "-k", "10").stdout.splitlines()
    rows = narrow[1:]  # the table; the header line names the query track
    assert max(len(line) for line in rows) <= 100 and str(audio) not in "\n".join(rows)  # no paths without --wide

    info = json.loads(run("info", "--db", db, "--json").stdout)
    assert info["tracks"]["ok"] == len(truth) and "descriptors" in info["spaces"] and info["graph"] is None
    assert "graph: none (run `audiograph build-graph`)" in run("info", "--db", db).stdout


def test_query_with_a_file_outside_the_collection(embedded_db, shared_data, tmp_path):
    outside = shared_data / "audio" / "admiralbob77_-_Choice_-_Drum-bass.ogg"
    hits = json.loads(run("query", outside, "--db", embedded_db, "--json", "-k", "4").stdout)
    assert len(hits) == 4 and all(h["track_id"].startswith("synth/") for h in hits)
    # Same answer as searching the store with the file's own descriptors (an independent path).
    from audiograph.audio.analysis import analyse
    from audiograph.audio.config import AudioConfig
    from audiograph.store import Store

    store = Store(embedded_db)
    ids, matrix = store.vectors.matrix("descriptors")
    q = analyse(outside, AudioConfig()).descriptors
    mean, std = matrix.mean(0), matrix.std(0)
    z = (matrix - mean) / std
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    qz = (q - mean) / std
    expected = [ids[i] for i in np.argsort(-(z @ (qz / np.linalg.norm(qz))))[:4]]
    assert [h["track_id"] for h in hits] == expected


@pytest.mark.parametrize(
    "args,message",
    [
        (["embed-audio", "{tmp}/nowhere"], "nowhere: no such folder"),
        (["query", "{tmp}/missing.mp3"], "no store here"),
        (
            ["query", "{shared}/audio/sorohanro_-_solo-trumpet-06.ogg", "--space", "acoustic", "--db", "{db}"],
            "no vectors in space 'acoustic'",
        ),
        (["query", "{tmp}/notes.mp3", "--db", "{db}"], "notes.mp3: not an audio file"),
        (["build-graph", "{tmp}/nowhere.m3u8", "--db", "{db}"], "nowhere.m3u8: no such file"),
        (["synth", "{tmp}/s", "--tracks", "2", "--genres", "3"], "error:"),
    ],
)
def test_user_errors_are_one_line_without_traceback(args, message, tmp_path, embedded_db, shared_data):
    (tmp_path / "notes.mp3").write_text("not audio at all\n" * 20)
    fill = {"tmp": tmp_path, "db": embedded_db, "shared": shared_data}
    proc = run(*[a.format(**fill) for a in args], check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("audiograph: error:") and message in lines[0]
    assert "Traceback" not in proc.stderr


def test_usage_errors_exit_2():
    proc = run("query", check=False)
    assert proc.returncode == 2 and "usage:" in proc.stderr
    assert run("--version").stdout.startswith("audiograph ")


def test_graph_training_and_musig_commands(embedded_db, synth_collection, tmp_path):
    """build-graph, train-audio, train-musig on all four feature groups, then query: the musig space by default."""
    db = tmp_path / "cli.db"
    shutil.copy(embedded_db, db)
    graph = json.loads(
        run(
            "build-graph", synth_collection / "playlists", "--db", db, "--json", "--graphml", tmp_path / "g.graphml"
        ).stdout
    )
    assert graph["matched"] > 0 and graph["summary"]["edges"] > 0 and (tmp_path / "g.graphml").exists()

    audio = json.loads(run("train-audio", "--db", db, "--epochs", "1", "--crop-seconds", "3", "--json").stdout)
    assert audio["embedded"] > 0 and Path(audio["checkpoint"]).exists()

    musig = json.loads(
        run(
            "train-musig",
            "--db",
            db,
            "--features",
            "acoustic,audio,genre,popularity",
            "--epochs",
            "1",
            "--batches-per-epoch",
            "2",
            "--json",
        ).stdout
    )
    assert musig["features"] == ["acoustic", "audio", "genre", "popularity"] and musig["similarity_group"] == "acoustic"
    assert musig["embedded"] == graph["summary"]["nodes"]

    info = json.loads(run("info", "--db", db, "--json").stdout)
    assert {"descriptors", "acoustic", "musig"} <= set(info["spaces"])
    assert (info["graph"]["playlists"], info["graph"]["edges"]) == (graph["playlists"], graph["summary"]["edges"])
    said = f"graph: {graph['playlists']} playlists, {graph['summary']['edges']} edges, built {info['graph']['built']}"
    assert said in run("info", "--db", db).stdout
    track = read_csv(synth_collection / "tracks.csv")[0]
    hits = json.loads(run("query", synth_collection / "audio" / track["path"], "--db", db, "-k", "3", "--json").stdout)
    assert len(hits) == 3 and all(0 < h["rank"] <= 3 for h in hits)
    table = run("query", synth_collection / "audio" / track["path"], "--db", db, "-k", "3").stdout
    assert table.startswith("space 'musig' (model musig-")


def test_build_graph_keeps_the_stored_graph_or_says_what_it_replaced(store_copy, synth_collection, tmp_path, capsys):
    from audiograph.cli import main

    db = str(store_copy.path)
    edges = store_copy.graph.summary()["edges"]
    bad = tmp_path / "bad.m3u8"
    bad.write_text("#EXTM3U\n/nowhere/song.mp3\n", encoding="utf-8")
    assert main(["build-graph", str(bad), "--db", db]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.m3u8: not one of its 1 entries matched a stored track" in err[0]
    assert "the stored graph is kept" in err[0]
    assert store_copy.graph.summary()["edges"] == edges
    assert main(["build-graph", str(synth_collection / "playlists"), "--db", db]) == 0
    assert f"it replaces the stored graph of 12 playlists and {edges} edges" in capsys.readouterr().out


def test_one_line_escapes_control_characters():
    from audiograph.cli import one_line

    assert one_line("a\nb\tc.mp3") == "a\\nb\\tc.mp3" and one_line("café.mp3") == "café.mp3"
    assert one_line("\x1b[2Jred\x9b") == "\\x1b[2Jred\\x9b"  # terminal escapes from a tag print as text
    assert one_line("x" * 5000, limit=10) == "xxxxxxxxxx... (4990 more characters)"
    # Line separators (a forged result row under a title) and bidirectional overrides (text shown reversed).
    assert one_line("Song\u2028  1  0.999  Fake\u202e") == "Song\\u2028  1  0.999  Fake\\u202e"


def test_nothing_a_store_holds_drives_the_terminal_or_forges_a_line(store_copy, tmp_path, capsys):
    """A title with a line separator printed a forged result row, and a model id with escape sequences (printed
    raw by export, as by index, map and embed-audio, through the same `say`) retitled the terminal window;
    --json let C1 controls through."""
    from audiograph.cli import main

    track = store_copy.tracks.rows()[1]
    title = "Nice Song\u2028     1    0.999  Trusted Artist\x1b]0;HACKED\x07\u009b2K"
    store_copy.db.execute("UPDATE tracks SET title = ?, status = ? WHERE id = ?", [title, "ok\x1b[1A", track["id"]])
    store_copy.db.conn.commit()
    model = store_copy.vectors.search_model("descriptors")[0]
    forged_model = "descriptors-v1\x1b]0;HACKED\x07\u202e"
    store_copy.db.execute("UPDATE models SET id = ? WHERE id = ?", [forged_model, model])
    store_copy.db.execute("UPDATE vectors SET model_id = ? WHERE model_id = ?", [forged_model, model])
    store_copy.db.conn.commit()
    first = store_copy.tracks.rows()[0]["id"]
    db, out_file = str(store_copy.path), str(tmp_path / "d.npz")
    runs = (
        ["similar", first, "-k", "40", "--space", "descriptors"],
        ["info"],
        ["export", "descriptors", "--out", out_file],
        ["similar", first, "-k", "40", "--space", "descriptors", "--json"],
    )
    for argv in runs:
        assert main([*argv, "--db", db]) == 0
        out = capsys.readouterr().out
        assert not set(out) & {"\x1b", "\x07", "\u009b", "\u2028", "\u202e"}, argv
        assert "HACKED" in out or argv[0] == "similar", argv  # the model id is shown, escaped
    assert json.loads(out)[[h["track_id"] for h in json.loads(out)].index(track["id"])]["title"] == title


def test_a_progress_bar_on_stdout_is_written_as_it_is(store_copy, monkeypatch, capsys):
    """Escaping every write to stdout (the first form of the escaping above) turned the carriage returns of
    Lightning's progress bar, which tqdm writes to stdout, into text: on a terminal the bar never redrew. A
    command's own stdout is the process's, and only what it prints of a store is escaped."""
    import sys

    from audiograph import cli

    help_text, add_arguments, _ = cli.COMMANDS["info"]

    def bar_then_result(args):
        sys.stdout.write("\rEpoch 0:  50%|#####     |\rEpoch 0: 100%|##########|\n")
        cli.output.show("model x\x1b]0;HACKED\x07")
        return 0

    monkeypatch.setitem(cli.COMMANDS, "info", (help_text, add_arguments, bar_then_result))
    assert cli.main(["info", "--db", str(store_copy.path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("\rEpoch 0:  50%|#####     |\rEpoch 0: 100%") and "\x1b" not in out and "HACKED" in out


def test_every_line_a_command_prints_on_stdout_goes_through_show():
    """A bare print to stdout in a command (the demo's, once the stdout wrapper went) printed stored names and
    paths unescaped. Every print in the command line's modules and the demo names its file (stderr, whose
    lines go through one_line), except `show` and `print_json` themselves."""
    import ast
    from pathlib import Path

    import audiograph

    root = Path(audiograph.__file__).parent
    bare = []
    for path in [*sorted((root / "cli").glob("*.py")), root / "pipelines" / "demo.py", root / "tables.py"]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
            if function.name in ("show", "print_json"):
                continue
            for call in ast.walk(function):
                if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "print":
                    if not any(k.arg == "file" for k in call.keywords):
                        bare.append(f"{path.name}:{call.lineno}")
    assert bare == []


def test_tables_and_playlists_take_no_orders_from_stored_strings(store_copy, tmp_path):
    """A title with a terminal escape prints escaped; a file name with a line break cannot add an entry to an
    M3U playlist (it is left out and said); a duration that is not a number is written as unknown."""
    from audiograph.cli.output import write_m3u
    from audiograph.errors import ConfigError
    from audiograph.tables import format_table

    assert "\x1b" not in format_table(["title"], [["\x1b]0;pwned\x07 Song"]])
    track = store_copy.tracks.rows()[0]
    store_copy.db.execute("UPDATE tracks SET duration = 'abc' WHERE id = ?", [track["id"]])
    store_copy.db.conn.commit()
    hits = [
        {"track_id": track["id"], "path": track["path"], "title": "Song", "artist": "A"},
        {"track_id": "x", "path": "/music/a.mp3\n#EXTINF:1,Injected\n/etc/shadow", "title": None, "artist": None},
        {"track_id": "y", "path": "/music/b.mp3\u2028/etc/passwd", "title": None, "artist": None},  # str.splitlines
    ]
    message = write_m3u(str(tmp_path / "out.m3u8"), hits, store_copy)
    lines = (tmp_path / "out.m3u8").read_text().splitlines()
    assert lines[:2] == ["#EXTM3U", "#EXTINF:-1,A - Song"] and len(lines) == 3, lines
    assert message.startswith("wrote 1 track to") and "2 whose file names hold line breaks" in message
    with pytest.raises(ConfigError, match="every file name of these tracks holds a line break"):
        write_m3u(str(tmp_path / "none.m3u8"), hits[1:], store_copy)


def test_query_m3u_round_trips_through_the_m3u_reader(embedded_db, synth_collection, tmp_path):
    """query --m3u writes '#EXTINF:seconds,artist - title' that audiograph's own reader reads back."""
    from audiograph.graph.readers import read_m3u
    from audiograph.store import Store

    query = synth_collection / "audio" / read_csv(synth_collection / "tracks.csv")[0]["path"]
    m3u = tmp_path / "lists" / "similar.m3u8"
    hits = json.loads(run("query", query, "--db", embedded_db, "-k", "5", "--m3u", m3u, "--json").stdout)
    playlist, report = read_m3u(m3u)
    assert not report.malformed and len(playlist.entries) == 5
    store = Store(embedded_db)
    for hit, entry in zip(hits, playlist.entries):
        stored = store.tracks.get(hit["track_id"])
        assert Path(entry.path) == Path(stored["path"])
        assert (entry.artist, entry.title) == (stored["artist"], stored["title"])
        assert entry.duration == round(stored["duration"])


def test_help_defaults_read_from_source_equal_the_library_defaults():
    """--help reads defaults from the source (no torch import); they must be the imported functions' own."""
    from audiograph.cli.arguments import source_defaults
    from audiograph.pipelines.embed_audio import embed_audio
    from audiograph.pipelines.evaluate import evaluate, make_split
    from audiograph.pipelines.train_audio import train_audio
    from audiograph.pipelines.train_musig import train_musig
    from audiograph.runtime import keyword_defaults
    from audiograph.synth import synthesize
    from audiograph.training.audio import AudioEncoderModule
    from audiograph.training.audio_data import GraphAudioData
    from audiograph.training.musig import MusigModule

    for module, target in [
        ("audiograph.synth.collection", synthesize),
        ("audiograph.pipelines.embed_audio", embed_audio),
        ("audiograph.pipelines.train_audio", train_audio),
        ("audiograph.training.audio", AudioEncoderModule),
        ("audiograph.training.audio_data", GraphAudioData),
        ("audiograph.pipelines.train_musig", train_musig),
        ("audiograph.training.musig", MusigModule),
        ("audiograph.pipelines.evaluate", evaluate),
        ("audiograph.pipelines.evaluate", make_split),
    ]:
        assert source_defaults(module, target.__name__) == keyword_defaults(target), target.__name__


def test_help_imports_no_torch():
    import subprocess
    import sys

    for command in ["train-musig", "train-audio", "embed-audio", "evaluate", "query", "synth"]:
        code = (
            "import sys; from audiograph.cli import main\n"
            f"try:\n    main([{command!r}, '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'lightning', 'torch_geometric', 'librosa') if m in sys.modules))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.strip().splitlines()[-1] == "[]", (command, out[-300:])


def test_a_redirected_training_logs_one_line_per_epoch(embedded_db, tmp_path):
    db = tmp_path / "store.db"
    shutil.copy(embedded_db, db)
    args = ["--epochs", "2", "--patience", "5", "--batches-per-epoch", "2", "--hidden-channels", "16"]
    proc = run("train-musig", "--db", db, *args, "--accelerator", "cpu")
    epochs = [line for line in proc.stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"], proc.stderr[-2000:]
    assert all("val_auc" in line and "train_loss" in line for line in epochs)
    quiet = run("train-musig", "--db", db, *args, "--accelerator", "cpu", "--quiet")
    assert not [line for line in quiet.stderr.splitlines() if line.startswith("epoch ")]


def test_progress_lines_off_a_terminal_say_the_end_once(monkeypatch, capsys):
    from audiograph import runtime

    monkeypatch.setattr(runtime, "PROGRESS_LINE_SECONDS", 0.0)  # a line at every update
    with runtime.LineProgress(3, "embed-audio", "file") as progress:
        for _ in range(3):
            progress.update()
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines] == [f"embed-audio: {n}/3 files ({n / 3:.0%})" for n in (1, 2, 3)]

    monkeypatch.setattr(runtime, "PROGRESS_LINE_SECONDS", 3600.0)  # no line before the end
    with runtime.LineProgress(3, "embed-audio", "file") as progress:
        progress.update(3)
    assert [line.split(",")[0] for line in capsys.readouterr().err.splitlines()] == ["embed-audio: 3/3 files (100%)"]


def test_help_names_each_option_by_its_flag_and_says_each_commands_own_meaning(capsys):
    from audiograph.cli import main

    def usage(*args) -> tuple[int, str]:
        try:
            main(list(args))
        except SystemExit as e:
            captured = capsys.readouterr()
            return e.code, captured.out + captured.err
        raise AssertionError("no exit")

    code, text = usage("train-audio", "--max-epochs", "2")  # the command's usage, not the top level's
    assert code == 2 and "audiograph train-audio: error: unrecognized arguments: --max-epochs 2" in text
    assert "[--epochs EPOCHS]" in text
    _, audio = usage("train-audio", "--help")
    _, musig = usage("train-musig", "--help")
    _, embed = usage("embed-audio", "--help")
    assert "MAX_EPOCHS" not in audio + musig and "NUM_WORKERS" not in embed and "ACOUSTIC_MODEL" not in embed
    assert "[--workers WORKERS]" in embed and "[--model MODEL]" in embed
    assert "AdamW learning rate" in audio and "Adam learning rate" in musig
    assert "train-musig" not in audio and "train-audio" not in musig
    assert "folder of audio files, scanned recursively" in embed


def test_build_graph_says_how_many_repeated_entries_it_dropped(embedded_db, tmp_path):
    db = tmp_path / "store.db"
    shutil.copy(embedded_db, db)
    from audiograph.store import Store

    ids = [t["id"] for t in Store(db).tracks.rows()][:3]
    rows = [("p1", ids[0]), ("p1", ids[1]), ("p1", ids[0]), ("p2", ids[1]), ("p2", ids[2]), ("p2", ids[2])]
    csv_path = tmp_path / "memberships.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("playlist", "track"), *rows])
    out = run("build-graph", csv_path, "--db", db, "--playlist-col", "playlist", "--track-col", "track").stdout
    assert "read 2 playlists with 4 entries: 4 matched stored tracks, 0 did not, 2 repeated entries dropped" in out


def test_a_reader_that_goes_away_ends_the_command_quietly(embedded_db):
    # The pipe's read end is closed before the command has started, so its first write finds no reader.
    proc = subprocess.Popen(
        [sys.executable, "-m", "audiograph", "info", "--db", str(embedded_db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdout.close()
    assert proc.wait(timeout=120) == 1
    assert proc.stderr.read() == ""


@pytest.mark.parametrize("keep_ignored", [False, True])
def test_the_first_ctrl_c_stops_and_later_ones_are_ignored_until_the_block_ends(keep_ignored):
    import signal

    from audiograph.runtime import INTERRUPT_RECEIVED, stop_once_on_ctrl_c

    before = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(KeyboardInterrupt), stop_once_on_ctrl_c(keep_ignored=keep_ignored):
            try:
                os.kill(os.getpid(), signal.SIGINT)
                raise AssertionError("the first Ctrl-C raised nothing")
            except KeyboardInterrupt:
                os.kill(os.getpid(), signal.SIGINT)  # during the clean-up: ignored
                raise
        assert INTERRUPT_RECEIVED["at"] is not None
        # In-process callers (a notebook, a recipe) get their handler back; an exiting command keeps ignoring.
        assert signal.getsignal(signal.SIGINT) is (signal.SIG_IGN if keep_ignored else before)
    finally:
        signal.signal(signal.SIGINT, before)


@pytest.mark.parametrize("slow", [True, False])
def test_a_ctrl_c_that_takes_a_while_to_stop_is_answered_at_once(slow, monkeypatch, capfd):
    import signal

    import audiograph.runtime as runtime

    monkeypatch.setattr(runtime, "STOPPING_NOTICE_SECONDS", 0.0 if slow else 600.0)
    before = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(KeyboardInterrupt), runtime.stop_once_on_ctrl_c():
            os.kill(os.getpid(), signal.SIGINT)
        notice = runtime.INTERRUPT_RECEIVED["notice"]
        if slow:  # the clean-up is still running: the notice comes from its own thread
            notice.join(timeout=60)
        else:  # the command said it stopped first: no notice
            runtime.interrupt_answered()
            notice.join(timeout=60)
        assert not notice.is_alive()
    finally:
        signal.signal(signal.SIGINT, before)
    said = capfd.readouterr().err
    assert said == (
        "\naudiograph: stopping after the work in progress (everything already written is kept)\n" if slow else ""
    )


@pytest.mark.parametrize("local_rank", [None, "0", "1"])
def test_an_interrupted_command_says_so_once_per_machine(monkeypatch, capsys, tmp_path, local_rank):
    """Ctrl-C reaches every rank of a multi-device run; only the first process of each machine says so."""
    from audiograph import cli

    def interrupted(args):
        raise KeyboardInterrupt

    if local_rank is None:
        monkeypatch.delenv("LOCAL_RANK", raising=False)
    else:
        monkeypatch.setenv("LOCAL_RANK", local_rank)
    help_text, add_arguments, _ = cli.COMMANDS["info"]
    monkeypatch.setitem(cli.COMMANDS, "info", (help_text, add_arguments, interrupted))
    assert cli.main(["info", "--db", str(tmp_path / "none.db")]) == 130
    said = "" if local_rank == "1" else "audiograph: interrupted\n"
    assert capsys.readouterr().err == said


def test_running_out_of_memory_is_one_line(store_copy, synth_collection, monkeypatch, capsys):
    import audiograph.pipelines.query as query_module
    from audiograph.cli import main

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(query_module, "query_file", out_of_memory)
    some_file = next((synth_collection / "audio").rglob("*.wav"))
    assert main(["query", str(some_file), "--db", str(store_copy.path)]) == 1
    assert capsys.readouterr().err == "audiograph: error: out of memory (a file too long for the memory available?)\n"


def test_a_named_pipe_is_not_a_file_to_query(store_copy, tmp_path, capsys):
    from audiograph.cli import main

    os.mkfifo(tmp_path / "pipe.wav")
    assert main(["query", str(tmp_path / "pipe.wav"), "--db", str(store_copy.path)]) == 1
    assert capsys.readouterr().err == (
        f"audiograph: error: {tmp_path / 'pipe.wav'}: not a regular file (a pipe, socket or device)\n"
    )
