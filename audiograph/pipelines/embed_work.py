"""The per-file work of an embed-audio run and its one writer, shared by a one-process run (`embed_audio`) and
a run across devices and nodes (`embed_distributed`): the plan of which files need what, each file's
analysis into a record, the acoustic vectors of a batch, and the transaction that stores each batch."""

from __future__ import annotations

import errno
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG

from audiograph.audio.analysis import analyse
from audiograph.audio.config import AudioConfig
from audiograph.audio.decode import DecodeError, content_hash
from audiograph.models import MUSIG_KIND
from audiograph.runtime import note_saved, signals_held
from audiograph.store import ACOUSTIC_SPACE, DESCRIPTORS_SPACE, Store, TrackRecord, path_text
from audiograph.tables import counted

MISSING_EXAMPLES = 5


@dataclass
class EmbedSummary:
    """What one `embed_audio` run did."""

    embedded: int = 0
    skipped: int = 0
    failed: list[dict] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)
    ignored: int = 0
    missing: int = 0
    missing_examples: list[str] = field(default_factory=list)  # the first few of them, by track id
    elsewhere: dict[str, int] = field(default_factory=dict)  # collection -> files left to it, stored there
    pruned: int = 0  # tracks no longer on disk removed (`prune`); `missing_examples` names the first few
    pruned_in_graph: int = 0  # of those, how many the stored graph still lists
    outdated: dict[str, int] = field(default_factory=dict)  # space -> tracks whose vector there is missing or old
    acoustic_model: str | None = None

    def to_json(self) -> dict:
        return {
            "embedded": self.embedded,
            "skipped": self.skipped,
            "failed": self.failed,
            "duplicates": self.duplicates,
            "ignored": self.ignored,
            "missing": self.missing,
            "missing_examples": self.missing_examples,
            "elsewhere": self.elsewhere,
            "pruned": self.pruned,
            "pruned_in_graph": self.pruned_in_graph,
            "outdated": self.outdated,
            "acoustic_model": self.acoustic_model,
        }


def os_reason(error: OSError, path: Path | None = None) -> str:
    """Why a file or folder could not be read, in words (a broken or looping link named as such)."""
    if path is not None and path.is_symlink():
        if error.errno == errno.ELOOP:
            return "symbolic link loop"
        if error.errno == errno.ENOENT:
            return f"broken symbolic link (to {path_text(os.readlink(path))}, which does not exist)"
    return error.strerror or str(error)


@dataclass
class FileJob:
    """A file that needs work: its track id, path, stored content hash, and which targets are stored for it."""

    track_id: str
    path: Path
    stored_hash: str | None
    complete: dict[str, bool]  # target -> already stored for stored_hash


@dataclass
class FileOutcome:
    """What the work on one file found: the record to store, or none where only the file's stat moved."""

    job: FileJob
    record: TrackRecord | None = None  # None: content unchanged, only the file's stat moved
    size: int = 0
    mtime_ns: int = 0
    wants_acoustic: bool = False
    gone: bool = False  # removed since the scan: neither a failure nor unchanged


@dataclass
class EmbedPlan:
    """What a run does: the files that need work, and the models and settings they are embedded with."""

    root: Path
    collection: str
    audio: AudioConfig
    descriptors_model: str
    acoustic_model: str | None
    jobs: list[FileJob]
    files: int  # audio files under root
    acoustic_descriptors: bool = False  # the acoustic model joins the descriptors into its vectors

    def work(self) -> Callable[[FileJob], FileOutcome]:
        """The per-file work of this plan, as a picklable callable for worker processes."""
        return functools.partial(
            analyse_job,
            audio=self.audio,
            collection=self.collection,
            descriptors_model=self.descriptors_model,
            acoustic_descriptors=self.acoustic_descriptors,
        )

    def failed(self, job: FileJob, reason: str) -> FileOutcome:
        """The outcome of a file whose analysis ended without a result (`failed_outcome`)."""
        return failed_outcome(job, TrackRecord(job.track_id, self.collection, path_text(job.path)), reason)

    def needs_encoder(self) -> bool:
        """Whether some planned file lacks its acoustic vector (files that only moved may still turn out to)."""
        return self.acoustic_model is not None and any(not job.complete["acoustic"] for job in self.jobs)


def analyse_job(
    job: FileJob, *, audio: AudioConfig, collection: str, descriptors_model: str, acoustic_descriptors: bool = False
) -> FileOutcome:
    """One file's work: read it once, hash the bytes, and decode and analyse them only if something is missing.
    A file that cannot be read or decoded becomes a failed record with its reason. With `acoustic_descriptors`
    (an acoustic model that joins them) a file that needs its acoustic vector also gets its descriptors."""
    record = TrackRecord(id=job.track_id, collection=collection, path=path_text(job.path))
    try:
        return _analysed(job, record, audio, descriptors_model, acoustic_descriptors)
    except MemoryError:  # the file's bytes, samples or spectrogram: another file's analysis goes on
        return failed_outcome(job, record, OUT_OF_MEMORY)


def failed_outcome(job: FileJob, record: TrackRecord, reason: str) -> FileOutcome:
    """`record` as a failure with `reason` and the file's size and time, so that a re-run reports it from the
    store rather than analysing it again (memory that ran out once would run out again)."""
    record.status, record.error, record.mel_chunks, record.vectors = "failed", reason, None, {}
    try:
        stat = job.path.stat()
        record.size, record.mtime_ns = stat.st_size, stat.st_mtime_ns
    except OSError:
        pass
    return FileOutcome(job, record, record.size or 0, record.mtime_ns or 0)


# The reason given for a file whose analysis ran out of memory, or whose worker process was killed (the
# kernel's out-of-memory killer, most often).
OUT_OF_MEMORY = "too large to analyse in the memory available"
WORKER_ENDED = "the process analysing it ended without a result (out of memory, most likely)"


def _analysed(
    job: FileJob, record: TrackRecord, audio: AudioConfig, descriptors_model: str, acoustic_descriptors: bool
) -> FileOutcome:
    try:
        stat = job.path.stat()
        if not S_ISREG(stat.st_mode):  # reading a named pipe would wait for a writer forever
            return failed_outcome(job, record, "not a regular file (a pipe, socket or device)")
        data = job.path.read_bytes()
    except OSError as e:
        if not os.path.lexists(job.path):  # deleted or moved away since the scan, as if it had not been listed
            return FileOutcome(job, gone=True)
        record.status, record.error = "failed", os_reason(e, job.path)
        return FileOutcome(job, record)
    outcome = FileOutcome(job, record, stat.st_size, stat.st_mtime_ns)
    record.size, record.mtime_ns, record.content_hash = stat.st_size, stat.st_mtime_ns, content_hash(data)
    same = record.content_hash == job.stored_hash
    if same and all(job.complete.values()):
        outcome.record = None
        return outcome
    wants_acoustic = not (same and job.complete["acoustic"])
    need_descriptors = not (same and job.complete["descriptors"]) or (acoustic_descriptors and wants_acoustic)
    try:
        analysis = analyse(job.path, audio, data=data, descriptors=need_descriptors)
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
    record.mel_chunks, record.frontend = analysis.mel_chunks, audio.signature()
    if analysis.descriptors is not None:
        record.vectors[DESCRIPTORS_SPACE] = (descriptors_model, analysis.descriptors)
    outcome.wants_acoustic = wants_acoustic
    return outcome


def encode_acoustic(model, model_id: str | None, outcomes: list[FileOutcome]) -> None:
    """Add the acoustic vector to each analysed record of `outcomes` that wants one (`model` on its device)."""
    todo = [o for o in outcomes if o.wants_acoustic and o.record is not None and o.record.status == "ok"]
    if model is None or not todo:
        return
    descriptors = None
    if model.uses_descriptors:
        descriptors = [o.record.vectors[DESCRIPTORS_SPACE][1] for o in todo]
    vectors = model.encode_chunks([o.record.mel_chunks for o in todo], descriptors=descriptors)
    for o, v in zip(todo, vectors):
        o.record.vectors[ACOUSTIC_SPACE] = (model_id, v.numpy())


class BatchWriter:
    """The one writer of a run: commits each batch of outcomes in one transaction, so that a killed run
    loses at most the batch in flight, and counts and reports what it wrote."""

    def __init__(self, store: Store, summary: EmbedSummary, bar, on_failure: Callable[[str, str], None] | None):
        self.store, self.summary, self.bar, self.on_failure = store, summary, bar, on_failure
        self.written = 0  # records this run has committed (the summary also counts failures it only repeats)

    def write(self, outcomes: list[FileOutcome]) -> None:
        """Commit one batch: analysed and failed files as records, files that only moved as new stats."""
        records = [o.record for o in outcomes if o.record is not None]
        unchanged = [(o.job.track_id, o.size, o.mtime_ns) for o in outcomes if o.record is None and not o.gone]
        with signals_held():
            self.store.tracks.write(records)
            self.written += len(records)
            were = "was" if self.written == 1 else "were"
            note_saved(f"{counted(self.written, 'file')} of this run {were} stored (a re-run goes on from there)")
        if unchanged:
            self.store.tracks.touch(unchanged)
        self.summary.skipped += len(unchanged)
        for o in outcomes:  # a stored file removed since the scan keeps its row, as any file gone from disk does
            if o.gone and o.job.stored_hash is not None:
                self.summary.missing += 1
                if len(self.summary.missing_examples) < MISSING_EXAMPLES:
                    self.summary.missing_examples.append(o.job.track_id)
        count_written(records, self.summary, self.on_failure)
        self.bar.update(len(outcomes))


def count_written(records: list[TrackRecord], summary: EmbedSummary, on_failure) -> None:
    """Add written records to the summary, reporting each failure."""
    for r in records:
        if r.status == "ok":
            summary.embedded += 1
        else:
            record_failure(summary, on_failure, r.path, r.error)


def record_failure(summary: EmbedSummary, on_failure, path: str, reason: str) -> None:
    """Add a failed file to the summary and pass it to `on_failure`."""
    summary.failed.append({"path": path, "error": reason})
    if on_failure:
        on_failure(path, reason)


def outdated_spaces(store: Store, collection: str) -> dict[str, int]:
    """space -> how many of the collection's tracks lack a vector there, or have one made from other bytes than
    their file's now (a file changed since), for each space that a MUSIG model fills: embed-audio does not
    make those vectors, `embed-musig` does."""
    outdated = {}
    for space in store.vectors.spaces():
        model_id = store.vectors.search_model(space)[0]
        if (store.models.get(model_id) or {}).get("kind") != MUSIG_KIND:
            continue
        (count,) = store.execute(
            """SELECT count(*) FROM tracks t LEFT JOIN vectors v
               ON v.track_id = t.id AND v.space = ? AND v.model_id = ?
               WHERE t.collection = ? AND t.status = 'ok' AND (v.track_id IS NULL OR v.content_hash IS NOT t.content_hash)""",
            [space, model_id, collection],
        ).fetchone()
        if count:
            outdated[space] = count
    return outdated
