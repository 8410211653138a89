"""`embed_audio`: plan from the store, analyse the files that need work in worker processes, and write each
batch in one transaction.

A run first compares each file's size and mtime with the store, and the stored vectors with the models the
registry names: an unchanged collection costs a scan and a few queries, and imports neither torch nor the
encoder. The encoder (and torch) is loaded only when a file needs an acoustic vector, and Lightning only for
a run across several devices or nodes (`embed_distributed`). Both share the per-file work and the one writer
of `embed_work`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from audiograph.audio.analysis import preload
from audiograph.audio.config import AudioConfig
from audiograph.audio.decode import AUDIO_EXTENSIONS, FFMPEG_AUDIO_EXTENSIONS
from audiograph.audio.descriptor_names import DESCRIPTOR_NAMES
from audiograph.errors import ConfigError
from audiograph.models import DESCRIPTORS_KIND
from audiograph.models.weights import read_settings
from audiograph.options import check_options
from audiograph.pipelines.embed_work import (
    MISSING_EXAMPLES,
    WORKER_ENDED,
    BatchWriter,
    EmbedPlan,
    EmbedSummary,
    FileJob,
    FileOutcome,
    count_written,
    encode_acoustic,
    os_reason,
    outdated_spaces,
    record_failure,
)
from audiograph.pipelines.encoders import acoustic_model_row, descriptors_model_id, resolve_acoustic_model
from audiograph.runtime import analysis_worker, one_thread, progress_bar
from audiograph.store import ACOUSTIC_SPACE, DESCRIPTORS_SPACE, Store, TrackRecord, on_disk, path_text

# Accelerators the one-process path drives itself; any other goes through Lightning.
LOCAL_ACCELERATORS = ("auto", "cpu", "gpu", "cuda")
# Files handed to each worker process ahead of the one it is analysing.
JOBS_AHEAD_PER_WORKER = 4


def scan(root: Path) -> tuple[list[Path], int, list[dict]]:
    """Recursively list the audio files under `root` (sorted), count the other files, and list the
    folders that could not be read as {"path", "error"}.

    Audio files in formats libsndfile cannot read are listed too, so that they are reported
    rather than silently ignored. Hidden files and folders are skipped; symbolic links to folders
    are not followed (so a link loop cannot trap the scan), links to files are listed.
    """
    audio, other, unreadable = [], 0, []

    def skipped(error: OSError) -> None:
        unreadable.append({"path": path_text(error.filename or root), "error": f"folder skipped: {os_reason(error)}"})

    for folder, dirs, files in os.walk(root, onerror=skipped):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            suffix = os.path.splitext(name)[1].lower()
            path = Path(folder) / name
            if suffix in AUDIO_EXTENSIONS or suffix in FFMPEG_AUDIO_EXTENSIONS:
                audio.append(path)
            else:
                other += 1
    return audio, other, unreadable


def embed_audio(
    root: str | os.PathLike,
    store: Store,
    *,
    collection: str | None = None,
    acoustic_model: str | None = "latest",
    batch_size: int = 8,
    num_workers: int | None = None,
    accelerator: str = "auto",
    devices=1,
    strategy: str = "auto",
    num_nodes: int = 1,
    quiet: bool = False,
    on_failure: Callable[[str, str], None] | None = None,
    prune: bool = False,
    rehash: bool = False,
) -> EmbedSummary | None:
    """Embed every audio file under `root` into `store`: descriptors, the log-mel cache and, once an
    encoder is trained, acoustic vectors. With `prune`, the collection's stored tracks that are no longer
    on disk are removed, with their vectors (see `plan_embedding`). With `rehash`, every file is read and
    hashed, not only those whose size or modification time changed (a tag editor may keep both).

    Files whose content and models are already stored are skipped; bad files are recorded with
    their error and reported through `on_failure(path, reason)` without stopping the run.
    `acoustic_model` is a registered encoder id, "latest" (the newest, if any) or None (skip).
    `num_workers` processes decode and analyse (default one per core; 0: in this process). With
    more than one device or node (`devices`, `num_nodes`, `strategy`, passed to Lightning), the files
    are shared out over the ranks and global rank 0 alone writes; the other ranks return None.
    """
    check_options(batch_size=batch_size, num_workers=num_workers, num_nodes=num_nodes)
    root = check_root(root)
    scanned = _scan_checked(root)
    if _distributed(accelerator, devices, strategy, num_nodes):
        from audiograph.pipelines.embed_distributed import embed_distributed

        planner = functools.partial(
            plan_embedding,
            root,
            store,
            scanned,
            collection=collection,
            acoustic_model=acoustic_model,
            on_failure=on_failure,
            prune=prune,
            rehash=rehash,
        )
        return embed_distributed(
            planner,
            store,
            batch_size=batch_size,
            num_workers=num_workers,
            accelerator=accelerator,
            devices=devices,
            strategy=strategy,
            num_nodes=num_nodes,
            quiet=quiet,
            on_failure=on_failure,
        )
    summary = EmbedSummary()
    plan = plan_embedding(
        root,
        store,
        scanned,
        collection=collection,
        acoustic_model=acoustic_model,
        summary=summary,
        on_failure=on_failure,
        prune=prune,
        rehash=rehash,
    )
    if plan.jobs:
        _embed_here(plan, store, summary, batch_size, num_workers, accelerator, quiet, on_failure)
    summary.duplicates = on_disk_duplicates(store.tracks.duplicates(plan.collection))
    summary.outdated = outdated_spaces(store, plan.collection)
    return summary


def on_disk_duplicates(groups: list[dict]) -> list[dict]:
    """Groups of files with the same content, each without the stored names no longer on disk (a moved file
    is not a copy of itself, and reporting it as one invites deleting the only copy)."""
    groups = [{**g, "paths": [p for p in g["paths"] if on_disk(p)]} for g in groups]
    return [g for g in groups if len(g["paths"]) > 1]


def _distributed(accelerator: str, devices, strategy: str, num_nodes: int) -> bool:
    """Whether a run needs Lightning: several devices or nodes, a strategy, or an accelerator other than CPU/CUDA."""
    return num_nodes != 1 or str(devices) != "1" or strategy != "auto" or accelerator not in LOCAL_ACCELERATORS


def _embed_here(plan: EmbedPlan, store, summary, batch_size, num_workers, accelerator, quiet, on_failure) -> None:
    """The one-process run: worker processes analyse, this process encodes (if needed) and writes each batch."""
    loaded = {}

    def model():
        if "model" not in loaded:
            loaded["model"], _, _ = resolve_acoustic_model(store, plan.acoustic_model)
            loaded["model"].to(_torch_device(accelerator))
        return loaded["model"]

    if plan.needs_encoder():
        model()  # before any work: a model that cannot be loaded stops the run here
    workers = min(len(plan.jobs), os.cpu_count() or 1) if num_workers is None else num_workers
    with one_thread(), progress_bar(plan.files, "embed-audio", quiet, unit="file") as bar:
        bar.update(plan.files - len(plan.jobs))
        writer = BatchWriter(store, summary, bar, on_failure)
        # Closed here, not whenever it is collected: a run stopped while this process encodes or writes must
        # end the worker processes before it exits, or the exit waits on them.
        with contextlib.closing(_outcomes(plan.jobs, plan.work(), workers, plan.failed)) as outcomes:
            for batch in _batches(outcomes, batch_size):
                if any(o.wants_acoustic for o in batch) and plan.acoustic_model is not None:
                    encode_acoustic(model(), plan.acoustic_model, batch)
                writer.write(batch)


def _torch_device(accelerator: str) -> str:
    """The torch device of a one-process run: CUDA when asked for (or, with "auto", when present), else the CPU."""
    import torch

    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--accelerator {accelerator}: no CUDA device is available")
    return "cuda" if accelerator != "cpu" and torch.cuda.is_available() else "cpu"


def _outcomes(
    jobs: list[FileJob],
    work: Callable[[FileJob], FileOutcome],
    workers: int,
    failed: Callable[[FileJob, str], FileOutcome],
) -> Iterator[FileOutcome]:
    """`work(job)` of every job, in `workers` processes (0: here), as they finish. Only a few jobs per worker
    are handed out ahead, so that memory stays flat however many files there are.

    A worker that dies (killed by the kernel for memory, most often) breaks the pool: its jobs in flight
    are run again one at a time, each in a pool of its own, so that the file that kills its worker alone
    becomes `failed(job, WORKER_ENDED)` and the other files go on in a new pool."""
    preload()
    if workers == 0:
        yield from map(work, jobs)
        return
    todo = iter(jobs)
    while True:
        suspects = []
        yield from _pooled(todo, work, workers, suspects)
        if not suspects:
            return
        for job in suspects:
            alone = []
            yield from _pooled(iter([job]), work, 1, alone)
            if alone:
                yield failed(job, WORKER_ENDED)


def _pooled(todo: Iterator[FileJob], work, workers: int, suspects: list[FileJob]) -> Iterator[FileOutcome]:
    """Outcomes of `todo`'s jobs from one pool of `workers` processes, until the jobs run out or a worker dies;
    then the jobs the pool held go to `suspects`, and the rest stay in `todo`."""
    pool = ProcessPoolExecutor(workers, initializer=analysis_worker)
    pending = {}

    def submit(job: FileJob) -> None:
        try:
            pending[pool.submit(work, job)] = job
        except BrokenProcessPool:  # a worker died since the last result was read
            suspects.append(job)

    try:
        for job in todo:
            submit(job)
            if len(pending) + len(suspects) >= workers * JOBS_AHEAD_PER_WORKER:
                break
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                job = pending.pop(future)
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    suspects.append(job)
                    continue
                if not suspects and (job := next(todo, None)) is not None:
                    submit(job)
                yield outcome
    finally:
        # Stopped (Ctrl-C, SIGTERM, an error) or not, the workers end here: queued files are dropped, and each
        # worker finishes the file it holds. Terminating one instead could cut its result off mid-pipe, and
        # the pool would wait forever for the rest.
        pool.shutdown(wait=True, cancel_futures=True)


def _batches(items: Iterable, size: int) -> Iterator[list]:
    """`items` in lists of `size` (the last one shorter)."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _scan_checked(root: Path) -> tuple[list[Path], int, list[dict]]:
    """`scan(root)`, refusing a root that cannot be read or holds no audio file."""
    audio_files, ignored, unreadable = scan(root)
    if any(problem["path"] == path_text(root) for problem in unreadable):
        reason = unreadable[0]["error"].removeprefix("folder skipped: ")
        raise ConfigError(f"{root}: cannot read this folder ({reason})")
    if not audio_files and not unreadable:
        raise ConfigError(f"{root}: no audio files found ({', '.join(sorted(AUDIO_EXTENSIONS))})")
    return audio_files, ignored, unreadable


def plan_embedding(
    root: Path,
    store: Store,
    scanned: tuple[list[Path], int, list[dict]],
    *,
    collection: str | None,
    acoustic_model: str | None,
    summary: EmbedSummary | None = None,
    on_failure: Callable[[str, str], None] | None = None,
    prune: bool = False,
    rehash: bool = False,
) -> EmbedPlan:
    """The plan of a run over `root` (`scanned` by `_scan_checked`), from the store and the registry alone:
    no audio is read and no model loaded. Registers the collection and the descriptors model, stores the
    files that cannot even be listed as failed, and counts the unchanged files in `summary` as skipped. With
    `prune`, removes the collection's stored tracks that are no longer on disk, unless a folder could not
    be read (whose files would look gone). With `rehash`, no file is taken as unchanged by its size and
    modification time: each is hashed (and analysed again only if its bytes changed)."""
    audio_files, ignored, unreadable = scanned
    summary = summary if summary is not None else EmbedSummary()
    collection = store.tracks.collection(root, collection)
    model_id, audio, dim, joins_descriptors = _acoustic_target(store, acoustic_model)
    descriptors_model = _register_descriptors(store, audio)
    summary.ignored, summary.acoustic_model = ignored, model_id
    for problem in unreadable:
        record_failure(summary, on_failure, problem["path"], problem["error"])
    targets = {"descriptors": descriptors_model, "acoustic": model_id, "signature": audio.signature()}
    jobs, missing = _plan_jobs(
        store, root, collection, audio_files, targets, {"acoustic": dim}, summary, on_failure, rehash
    )
    if prune and missing:
        if unreadable:
            warnings.warn(
                f"nothing pruned: {len(unreadable)} folders could not be read, and their files would look gone",
                stacklevel=2,
            )
        else:
            store.tracks.delete(missing)
            summary.pruned, summary.missing = len(missing), 0
            summary.pruned_in_graph = store.graph.count_nodes(missing)
    return EmbedPlan(root, collection, audio, descriptors_model, model_id, jobs, len(audio_files), joins_descriptors)


def _acoustic_target(store: Store, acoustic_model: str | None) -> tuple[str | None, AudioConfig, int | None, bool]:
    """(model id, audio settings, vector length, whether it joins the descriptors) of the acoustic model a
    run embeds with, read from the registry and the model's saved settings (JSON) without loading it;
    (None, default settings, None, False) without a trained encoder. Only a training checkpoint, which
    keeps its settings inside, is loaded."""
    row = acoustic_model_row(store, acoustic_model)
    if row is None:
        return None, AudioConfig(), None, False
    saved = store.models.checkpoint_file(row)
    settings = read_settings(saved, f"model '{row['id']}'") if saved.is_dir() else {}
    dim = settings.get("encoder", {}).get("embedding_dim")
    if "audio" not in settings or dim is None:
        model, audio, model_id = resolve_acoustic_model(store, row["id"])
        return model_id, audio, model.embedding_dim, model.uses_descriptors
    joins = settings.get("descriptor_weight", 0.0) > 0
    dim = int(dim) + (len(DESCRIPTOR_NAMES) if joins else 0)
    return row["id"], AudioConfig.from_dict(settings["audio"]), dim, joins


def _register_descriptors(store: Store, audio: AudioConfig) -> str:
    """Register the descriptors model of these audio settings (unless it already is); returns its id."""
    model_id = descriptors_model_id(audio)
    config = {"names": list(DESCRIPTOR_NAMES), "frontend": audio.to_dict(), "standardize": True}
    row = store.models.get(model_id)
    if row is None or (row["kind"], row["space"], row["config"]) != (DESCRIPTORS_KIND, DESCRIPTORS_SPACE, config):
        store.models.register(model_id, DESCRIPTORS_KIND, DESCRIPTORS_SPACE, config=config)
    return model_id


def _plan_jobs(
    store, root, collection, audio_files, targets, dims, summary, on_failure, rehash=False
) -> tuple[list[FileJob], list[str]]:
    """The files that need work: new or changed, or missing a target (descriptors, mels, acoustic vector),
    and the ids of the collection's stored tracks that are no longer on disk. Unchanged complete files count
    as skipped; files that cannot be read are stored as failed."""
    states = store.tracks.file_states(collection)
    have = {
        "descriptors": store.vectors.states(DESCRIPTORS_SPACE, dim=len(DESCRIPTOR_NAMES)),
        "acoustic": store.vectors.states(ACOUSTIC_SPACE, dim=dims["acoustic"]),
        "mels": store.mels.states(),
    }
    jobs, unstatable, named = [], [], {}
    elsewhere = store.tracks.paths_elsewhere(collection)
    for path in audio_files:
        if path_text(path) in elsewhere:  # stored by another collection: one file, one track
            owner = elsewhere[path_text(path)]
            summary.elsewhere[owner] = summary.elsewhere.get(owner, 0) + 1
            continue
        tid = f"{collection}/{path_text(path.relative_to(root).as_posix())}"
        if tid in named:  # two names that are not UTF-8 and differ only where they are not
            record_failure(
                summary, on_failure, path_text(path), f"its stored name {tid} is also that of {named[tid]}; rename one"
            )
            continue
        named[tid] = path_text(path)
        state = states.get(tid) or {}
        h = state.get("content_hash")
        complete = {
            "descriptors": have["descriptors"].get(tid) == (targets["descriptors"], h),
            "mels": have["mels"].get(tid) == (h, targets["signature"]),
            "acoustic": targets["acoustic"] is None or have["acoustic"].get(tid) == (targets["acoustic"], h),
        }
        try:
            stat = path.stat()
        except OSError as e:  # a broken or looping link
            if not os.path.lexists(path):  # removed since the scan: as if it had not been listed
                del named[tid]
                continue
            reason = os_reason(e, path)
            unstatable.append(TrackRecord(tid, collection, path_text(path), status="failed", error=reason))
            continue
        unchanged_stat = not rehash and state.get("size") == stat.st_size and state.get("mtime_ns") == stat.st_mtime_ns
        if state.get("status") == "ok" and unchanged_stat and all(complete.values()):
            summary.skipped += 1
            continue
        if state.get("status") == "failed" and unchanged_stat:
            # It was read and would not decode; unchanged, it still would not: said again, not decoded again.
            # (Files that could not be read at all have no stored size, and are tried again.)
            record_failure(summary, on_failure, path_text(path), state["error"])
            continue
        jobs.append(FileJob(tid, path, h, complete))
    if unstatable:
        store.tracks.write(unstatable)
        count_written(unstatable, summary, on_failure)
    missing = sorted(tid for tid in states if tid not in named)
    summary.missing, summary.missing_examples = len(missing), missing[:MISSING_EXAMPLES]
    return jobs, missing


def check_root(root: str | os.PathLike) -> Path:
    """The collection folder `root`, resolved; a `ConfigError` if it is not a folder."""
    if Path(root).is_file():
        raise ConfigError(f"{root}: is a file; embed-audio takes a folder, such as {Path(root).parent}")
    if not Path(root).is_dir():
        raise ConfigError(f"{root}: no such folder")
    return Path(root).resolve()
