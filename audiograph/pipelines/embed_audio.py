"""`embed_audio`: scan a folder, decode in DataLoader workers, embed in batches, write to the store incrementally."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from audiograph.audio.analysis import analyse, chunks_as_tensors
from audiograph.audio.config import AudioConfig
from audiograph.audio.decode import AUDIO_EXTENSIONS, UNSUPPORTED_AUDIO_EXTENSIONS, DecodeError, content_hash
from audiograph.audio.descriptors import DESCRIPTOR_NAMES
from audiograph.audio.frontend import AudioFrontend
from audiograph.errors import ConfigError
from audiograph.models import DESCRIPTORS_KIND, AcousticModel
from audiograph.pipelines.encoders import descriptors_model_id, resolve_acoustic_model
from audiograph.runtime import inference_trainer, progress_bar
from audiograph.store import ACOUSTIC_SPACE, DESCRIPTORS_SPACE, Store, TrackRecord, path_text


@dataclass
class EmbedSummary:
    """What one `embed_audio` run did."""

    embedded: int = 0
    skipped: int = 0
    failed: list[dict] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)
    ignored: int = 0
    missing: int = 0
    acoustic_model: str | None = None

    def to_json(self) -> dict:
        return {
            "embedded": self.embedded,
            "skipped": self.skipped,
            "failed": self.failed,
            "duplicates": self.duplicates,
            "ignored": self.ignored,
            "missing": self.missing,
            "acoustic_model": self.acoustic_model,
        }


def scan(root: Path) -> tuple[list[Path], int, list[dict]]:
    """Recursively list the audio files under `root` (sorted), count the other files, and list the
    folders that could not be read as {"path", "error"}.

    Audio files in formats libsndfile cannot read are listed too, so that they are reported
    rather than silently ignored. Hidden files and folders are skipped; symbolic links to folders
    are not followed (so a link loop cannot trap the scan), links to files are listed.
    """
    audio, other, unreadable = [], 0, []

    def skipped(error: OSError) -> None:
        unreadable.append({"path": path_text(error.filename or root), "error": f"folder skipped: {_os_reason(error)}"})

    for folder, dirs, files in os.walk(root, onerror=skipped):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            suffix = os.path.splitext(name)[1].lower()
            path = Path(folder) / name
            if suffix in AUDIO_EXTENSIONS or suffix in UNSUPPORTED_AUDIO_EXTENSIONS:
                audio.append(path)
            else:
                other += 1
    return audio, other, unreadable


def _os_reason(error: OSError, path: Path | None = None) -> str:
    """Why a file or folder could not be read, in words (a broken or looping link named as such)."""
    if path is not None and path.is_symlink():
        if error.errno == errno.ELOOP:
            return "symbolic link loop"
        if error.errno == errno.ENOENT:
            return f"broken symbolic link (to {path_text(os.readlink(path))}, which does not exist)"
    return error.strerror or str(error)


@dataclass
class _Job:
    track_id: str
    path: Path
    stored_hash: str | None
    complete: dict[str, bool]  # target -> already stored for stored_hash


@dataclass
class _Outcome:
    job: _Job
    record: TrackRecord | None = None  # None: content unchanged, only the file's stat moved
    size: int = 0
    mtime_ns: int = 0
    wants_acoustic: bool = False


class _FileDataset(Dataset):
    """Reads each file once: hash the bytes, and decode the same bytes only if something is missing."""

    def __init__(self, jobs: list[_Job], frontend: AudioFrontend, collection: str, descriptors_model: str):
        self.jobs, self.frontend, self.collection, self.descriptors_model = (
            jobs,
            frontend,
            collection,
            descriptors_model,
        )

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, i: int) -> _Outcome:
        job = self.jobs[i]
        record = TrackRecord(id=job.track_id, collection=self.collection, path=path_text(job.path))
        try:
            stat = job.path.stat()
            data = job.path.read_bytes()
        except OSError as e:
            record.status, record.error = "failed", _os_reason(e, job.path)
            return _Outcome(job, record)
        outcome = _Outcome(job, record, stat.st_size, stat.st_mtime_ns)
        record.size, record.mtime_ns, record.content_hash = stat.st_size, stat.st_mtime_ns, content_hash(data)
        same = record.content_hash == job.stored_hash
        if same and all(job.complete.values()):
            outcome.record = None
            return outcome
        need_descriptors = not (same and job.complete["descriptors"])
        try:
            analysis = analyse(job.path, self.frontend.config, data=data, descriptors=need_descriptors)
        except DecodeError as e:
            record.status, record.error = "failed", e.reason
            return outcome
        a = analysis.audio
        record.duration, record.sample_rate, record.channels, record.format = (
            a.duration,
            a.source_rate,
            a.channels,
            a.format,
        )
        record.tags = a.tags
        record.mel_chunks, record.frontend = analysis.mel_chunks, self.frontend.config.signature()
        if analysis.descriptors is not None:
            record.vectors[DESCRIPTORS_SPACE] = (self.descriptors_model, analysis.descriptors)
        outcome.wants_acoustic = not (same and job.complete["acoustic"])
        return outcome


class _EmbedModule(L.LightningModule):
    """Runs the acoustic encoder (when one is trained) over the decoded files of a batch."""

    def __init__(self, model: AcousticModel | None, model_id: str | None):
        super().__init__()
        self.model, self.model_id = model, model_id

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch  # outcomes hold numpy data; predict_step moves what the encoder needs

    def predict_step(self, batch: list[_Outcome], batch_idx: int) -> list[_Outcome]:
        todo = [
            o for o in batch if self.model is not None and o.wants_acoustic and o.record and o.record.status == "ok"
        ]
        if todo:
            vectors = self.model.encode_chunks([chunks_as_tensors(o.record.mel_chunks) for o in todo])
            for o, v in zip(todo, vectors):
                o.record.vectors[ACOUSTIC_SPACE] = (self.model_id, v.numpy())
        return batch


class _StoreWriter(BasePredictionWriter):
    """Commits each batch in one transaction, so a killed run loses at most the batch in flight."""

    def __init__(self, store: Store, summary: EmbedSummary, bar, on_failure: Callable[[str, str], None] | None):
        super().__init__(write_interval="batch")
        self.store, self.summary, self.bar, self.on_failure = store, summary, bar, on_failure

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        records = [o.record for o in prediction if o.record is not None]
        self.store.tracks.write(records)
        unchanged = [(o.job.track_id, o.size, o.mtime_ns) for o in prediction if o.record is None]
        self.store.tracks.touch(unchanged)
        self.summary.skipped += len(unchanged)
        _count(records, self.summary, self.on_failure)
        self.bar.update(len(prediction))


def _count(records: list[TrackRecord], summary: EmbedSummary, on_failure) -> None:
    """Add written records to the summary, reporting each failure."""
    for r in records:
        if r.status == "ok":
            summary.embedded += 1
        else:
            _fail(summary, on_failure, r.path, r.error)


def _fail(summary: EmbedSummary, on_failure, path: str, reason: str) -> None:
    summary.failed.append({"path": path, "error": reason})
    if on_failure:
        on_failure(path, reason)


def embed_audio(
    root: str | os.PathLike,
    store: Store,
    *,
    collection: str | None = None,
    acoustic_model: str | None = "latest",
    batch_size: int = 8,
    num_workers: int | None = None,
    accelerator: str = "auto",
    devices="auto",
    quiet: bool = False,
    on_failure: Callable[[str, str], None] | None = None,
) -> EmbedSummary:
    """Embed every audio file under `root` into `store`: descriptors, the log-mel cache and, once an
    encoder is trained, acoustic vectors.

    Files whose content and models are already stored are skipped; bad files are recorded with
    their error and reported through `on_failure(path, reason)` without stopping the run.
    `acoustic_model` is a registered encoder id, "latest" (the newest, if any) or None (skip).
    """
    root = check_root(root)
    audio_files, ignored, unreadable = _scan_checked(root)
    collection = store.tracks.collection(root, collection)
    model, audio, model_id = resolve_acoustic_model(store, acoustic_model)
    descriptors_model = _register_descriptors(store, audio)
    summary = EmbedSummary(ignored=ignored, acoustic_model=model_id)
    for problem in unreadable:
        _fail(summary, on_failure, problem["path"], problem["error"])
    targets = {"descriptors": descriptors_model, "acoustic": model_id, "signature": audio.signature()}
    dims = {"acoustic": model.embedding_dim if model is not None else None}
    jobs = _plan_jobs(store, root, collection, audio_files, targets, dims, summary, on_failure)
    if jobs:
        frontend = model.frontend if model is not None else AudioFrontend(audio)
        workers = min(len(jobs), os.cpu_count() or 1) if num_workers is None else num_workers
        loader = DataLoader(
            _FileDataset(jobs, frontend, collection, descriptors_model),
            batch_size=batch_size,
            num_workers=workers,
            collate_fn=list,
        )
        with progress_bar(len(audio_files), "embed-audio", quiet, unit="file") as bar:
            bar.update(len(audio_files) - len(jobs))
            writer = _StoreWriter(store, summary, bar, on_failure)
            trainer = inference_trainer(accelerator, devices, callbacks=[writer])
            trainer.predict(_EmbedModule(model, model_id), dataloaders=loader, return_predictions=False)
    summary.duplicates = store.tracks.duplicates(collection)
    return summary


def _scan_checked(root: Path) -> tuple[list[Path], int, list[dict]]:
    """`scan(root)`, refusing a root that cannot be read or holds no audio file."""
    audio_files, ignored, unreadable = scan(root)
    if any(problem["path"] == path_text(root) for problem in unreadable):
        reason = unreadable[0]["error"].removeprefix("folder skipped: ")
        raise ConfigError(f"{root}: cannot read this folder ({reason})")
    if not audio_files and not unreadable:
        raise ConfigError(f"{root}: no audio files found ({', '.join(sorted(AUDIO_EXTENSIONS))})")
    return audio_files, ignored, unreadable


def _register_descriptors(store: Store, audio: AudioConfig) -> str:
    """Register the descriptors model of these audio settings; returns its id."""
    model_id = descriptors_model_id(audio)
    config = {"names": list(DESCRIPTOR_NAMES), "frontend": audio.to_dict(), "standardize": True}
    store.models.register(model_id, DESCRIPTORS_KIND, DESCRIPTORS_SPACE, config=config)
    return model_id


def _plan_jobs(store, root, collection, audio_files, targets, dims, summary, on_failure) -> list[_Job]:
    """The files that need work: new or changed, or missing a target (descriptors, mels, acoustic vector).
    Unchanged complete files count as skipped; files that cannot be read are stored as failed."""
    states = store.tracks.file_states(collection)
    have = {
        "descriptors": store.vectors.states(DESCRIPTORS_SPACE, dim=len(DESCRIPTOR_NAMES)),
        "acoustic": store.vectors.states(ACOUSTIC_SPACE, dim=dims["acoustic"]),
        "mels": store.mels.states(),
    }
    jobs, unstatable, named = [], [], {}
    for path in audio_files:
        tid = f"{collection}/{path_text(path.relative_to(root).as_posix())}"
        if tid in named:  # two names that are not UTF-8 and differ only where they are not
            _fail(
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
        except OSError as e:  # a broken or looping link, or a file that vanished since the scan
            reason = _os_reason(e, path)
            unstatable.append(TrackRecord(tid, collection, path_text(path), status="failed", error=reason))
            continue
        unchanged_stat = state.get("size") == stat.st_size and state.get("mtime_ns") == stat.st_mtime_ns
        if state.get("status") == "ok" and unchanged_stat and all(complete.values()):
            summary.skipped += 1
            continue
        jobs.append(_Job(tid, path, h, complete))
    if unstatable:
        store.tracks.write(unstatable)
        _count(unstatable, summary, on_failure)
    summary.missing = sum(1 for tid in states if tid not in named)
    return jobs


def check_root(root: str | os.PathLike) -> Path:
    """The collection folder `root`, resolved; a `ConfigError` if it is not a folder."""
    if not Path(root).is_dir():
        raise ConfigError(f"{root}: no such folder")
    return Path(root).resolve()
