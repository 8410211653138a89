"""`embed_audio`: scan a folder, decode in DataLoader workers, embed in batches, write to the store incrementally."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from audiograph.audio.analysis import analyse, chunks_as_tensors
from audiograph.audio.decode import AUDIO_EXTENSIONS, UNSUPPORTED_AUDIO_EXTENSIONS, DecodeError, content_hash
from audiograph.audio.descriptors import DESCRIPTOR_NAMES, DESCRIPTORS_VERSION
from audiograph.audio.encoder import AudioEncoder, embed_tracks, resolve_encoder
from audiograph.audio.frontend import AudioFrontend
from audiograph.errors import ConfigError
from audiograph.runtime import inference_trainer, progress_bar
from audiograph.store import ACOUSTIC_SPACE, DESCRIPTORS_SPACE, Store, TrackRecord



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


def scan(root: Path) -> tuple[list[Path], int]:
    """Recursively list the audio files under `root` (sorted), and count the other files.

    Audio files in formats libsndfile cannot read are listed too, so that they are reported
    rather than silently ignored. Hidden files and folders are skipped.
    """
    audio, other = [], 0
    for folder, dirs, files in os.walk(root):
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
    return audio, other


def descriptors_model_id(frontend: AudioFrontend) -> str:
    """Descriptors depend on the front-end's settings, so the id names both."""
    return f"{DESCRIPTORS_VERSION}@{hashlib.blake2b(frontend.signature().encode(), digest_size=4).hexdigest()}"


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
        self.jobs, self.frontend, self.collection, self.descriptors_model = jobs, frontend, collection, descriptors_model

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, i: int) -> _Outcome:
        job = self.jobs[i]
        record = TrackRecord(id=job.track_id, collection=self.collection, path=str(job.path))
        try:
            stat = job.path.stat()
            data = job.path.read_bytes()
        except OSError as e:
            record.status, record.error = "failed", e.strerror or str(e)
            return _Outcome(job, record)
        outcome = _Outcome(job, record, stat.st_size, stat.st_mtime_ns)
        record.size, record.mtime_ns, record.content_hash = stat.st_size, stat.st_mtime_ns, content_hash(data)
        same = record.content_hash == job.stored_hash
        if same and all(job.complete.values()):
            outcome.record = None
            return outcome
        need_descriptors = not (same and job.complete["descriptors"])
        try:
            analysis = analyse(job.path, self.frontend, data=data, descriptors=need_descriptors)
        except DecodeError as e:
            record.status, record.error = "failed", e.reason
            return outcome
        a = analysis.audio
        record.duration, record.sample_rate, record.channels, record.format = a.duration, a.source_rate, a.channels, a.format
        record.tags = a.tags
        record.mel_chunks, record.frontend = analysis.mel_chunks, self.frontend.signature()
        if analysis.descriptors is not None:
            record.vectors[DESCRIPTORS_SPACE] = (self.descriptors_model, analysis.descriptors)
        outcome.wants_acoustic = not (same and job.complete["acoustic"])
        return outcome


class _EmbedModule(L.LightningModule):
    """Runs the acoustic encoder (when one is trained) over the decoded files of a batch."""

    def __init__(self, encoder: AudioEncoder | None, model_id: str | None):
        super().__init__()
        self.encoder, self.model_id = encoder, model_id

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch  # outcomes hold numpy data; predict_step moves what the encoder needs

    def predict_step(self, batch: list[_Outcome], batch_idx: int) -> list[_Outcome]:
        todo = [o for o in batch if self.encoder is not None and o.wants_acoustic and o.record and o.record.status == "ok"]
        if todo:
            vectors = embed_tracks(self.encoder, [chunks_as_tensors(o.record.mel_chunks) for o in todo])
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
        self.store.write_tracks(records)
        unchanged = [(o.job.track_id, o.size, o.mtime_ns) for o in prediction if o.record is None]
        self.store.touch_tracks(unchanged)
        self.summary.skipped += len(unchanged)
        for r in records:
            if r.status == "ok":
                self.summary.embedded += 1
            else:
                self.summary.failed.append({"path": r.path, "error": r.error})
                if self.on_failure:
                    self.on_failure(r.path, r.error)
        self.bar.update(len(prediction))


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
    if not Path(root).is_dir():
        raise ConfigError(f"{root}: no such folder")
    root = Path(root).resolve()
    audio_files, ignored = scan(root)
    if not audio_files:
        raise ConfigError(f"{root}: no audio files found ({', '.join(sorted(AUDIO_EXTENSIONS))})")
    collection = store.collection_name(root, collection)

    encoder, frontend, model_id = resolve_encoder(store, acoustic_model)
    descriptors_model = descriptors_model_id(frontend)
    store.register_model(
        descriptors_model,
        "descriptors",
        DESCRIPTORS_SPACE,
        config={"names": list(DESCRIPTOR_NAMES), "frontend": frontend.config(), "standardize": True},
    )
    summary = EmbedSummary(ignored=ignored, acoustic_model=model_id)

    def track_id(path: Path) -> str:
        return f"{collection}/{path.relative_to(root).as_posix()}"

    states = store.file_states(collection)
    descriptor_states = store.vector_states(DESCRIPTORS_SPACE)
    acoustic_states = store.vector_states(ACOUSTIC_SPACE)
    mel_states = store.mel_states()
    signature = frontend.signature()
    jobs = []
    for path in audio_files:
        tid = track_id(path)
        state = states.get(tid) or {}
        h = state.get("content_hash")
        complete = {
            "descriptors": descriptor_states.get(tid) == (descriptors_model, h),
            "mels": mel_states.get(tid) == (h, signature),
            "acoustic": model_id is None or acoustic_states.get(tid) == (model_id, h),
        }
        stat = path.stat()
        unchanged_stat = state.get("size") == stat.st_size and state.get("mtime_ns") == stat.st_mtime_ns
        if state.get("status") == "ok" and unchanged_stat and all(complete.values()):
            summary.skipped += 1
            continue
        jobs.append(_Job(tid, path, h, complete))

    seen = {track_id(p) for p in audio_files}
    summary.missing = sum(1 for tid in states if tid not in seen)

    if jobs:
        workers = min(len(jobs), os.cpu_count() or 1) if num_workers is None else num_workers
        loader = DataLoader(
            _FileDataset(jobs, frontend, collection, descriptors_model),
            batch_size=batch_size,
            num_workers=workers,
            collate_fn=list,
        )
        with progress_bar(len(audio_files), "embed-audio", quiet, unit="file") as bar:
            bar.update(summary.skipped)
            writer = _StoreWriter(store, summary, bar, on_failure)
            trainer = inference_trainer(accelerator, devices, callbacks=[writer])
            trainer.predict(_EmbedModule(encoder, model_id), dataloaders=loader, return_predictions=False)

    summary.duplicates = _duplicates(store, collection)
    return summary


def _duplicates(store: Store, collection: str) -> list[dict]:
    rows = store.db.execute(
        """SELECT content_hash, group_concat(path, char(10)) FROM tracks
           WHERE collection = ? AND status = 'ok' GROUP BY content_hash HAVING count(*) > 1""",
        [collection],
    ).fetchall()
    return [{"content_hash": h, "paths": sorted(paths.split("\n"))} for h, paths in rows]
