"""embed-audio across devices and nodes: Lightning's ranks share the files out, and one of them writes.

Global rank 0 plans the run from the store, exactly as a one-process run does, and broadcasts the plan.
Lightning's predict loop hands each planned file to exactly one rank (its distributed sampler, which in
prediction neither repeats nor drops a file); each rank decodes, analyses and encodes its files through
the same per-file work as a one-process run. After every step the ranks' outcomes are gathered on rank 0,
which commits them in one transaction: only rank 0 writes, so a killed run that is started again loses
nothing and duplicates nothing. Outcomes travel in memory between the ranks' processes, never through a
file.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import lightning as L
import torch.distributed as dist
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from audiograph.audio.analysis import preload
from audiograph.pipelines.embed_work import BatchWriter, EmbedPlan, EmbedSummary, encode_acoustic, outdated_spaces
from audiograph.pipelines.encoders import resolve_acoustic_model
from audiograph.runtime import analysis_worker, inference_trainer, progress_bar
from audiograph.store import Store


class _PlannedFiles(Dataset):
    """The planned files' outcomes, padded with None to a multiple of `multiple` (world size x batch size),
    so that every rank runs the same number of steps and every step's gather finds every rank."""

    def __init__(self, plan: EmbedPlan, multiple: int):
        self.jobs = plan.jobs + [None] * (-len(plan.jobs) % multiple)
        self.work = plan.work()

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, i: int):
        job = self.jobs[i]
        return None if job is None else self.work(job)


class _ShardedEmbed(L.LightningModule):
    """Plans on rank 0 and shares the plan; encodes each rank's analysed files on its device."""

    def __init__(self, planner: Callable[..., EmbedPlan], store: Store, batch_size: int, num_workers: int | None):
        super().__init__()
        self.planner, self.store, self.batch_size, self.num_workers = planner, store, batch_size, num_workers
        self.plan: EmbedPlan | None = None
        self.summary: EmbedSummary | None = None
        self.encoder = None

    def setup(self, stage: str) -> None:
        planned = None
        if self.trainer.global_rank == 0:
            self.summary = EmbedSummary()
            try:
                planned = self.planner(summary=self.summary)
            except Exception as e:  # said on every rank, so that none waits for a plan that never comes
                planned = e
        planned = self.trainer.strategy.broadcast(planned, src=0)
        if isinstance(planned, Exception):
            raise planned
        self.plan = planned
        if self.plan.jobs and self.plan.acoustic_model is not None:
            self.encoder, _, _ = resolve_acoustic_model(self.store, self.plan.acoustic_model)

    def predict_dataloader(self) -> DataLoader:
        preload()
        files = _PlannedFiles(self.plan, self.trainer.world_size * self.batch_size)
        workers = self.num_workers
        if workers is None:  # the node's cores shared out over its ranks
            workers = max(1, (os.cpu_count() or 1) // max(1, self.trainer.num_devices))
        return DataLoader(
            files,
            batch_size=self.batch_size,
            num_workers=min(workers, len(files)),
            collate_fn=list,
            worker_init_fn=analysis_worker,
        )

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        return batch  # outcomes hold numpy data; the encoder moves what it needs

    def predict_step(self, batch: list, batch_idx: int) -> list:
        outcomes = [o for o in batch if o is not None]
        encode_acoustic(self.encoder, self.plan.acoustic_model, outcomes)
        return outcomes


class _RankZeroWriter(BasePredictionWriter):
    """Gathers every rank's outcomes of a step on rank 0, which commits them (`BatchWriter`)."""

    def __init__(self, store: Store, module: _ShardedEmbed, quiet: bool, on_failure):
        super().__init__(write_interval="batch")
        self.store, self.module, self.quiet, self.on_failure = store, module, quiet, on_failure
        self.bar = self.writer = None

    def on_predict_start(self, trainer, pl_module) -> None:
        if trainer.global_rank == 0:
            plan = self.module.plan
            self.bar = progress_bar(plan.files, "embed-audio", self.quiet, unit="file")
            self.bar.update(plan.files - len(plan.jobs))
            self.writer = BatchWriter(self.store, self.module.summary, self.bar, self.on_failure)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        parts = [prediction]
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            parts = [None] * trainer.world_size if trainer.global_rank == 0 else None
            dist.gather_object(prediction, parts, dst=0)
        if trainer.global_rank == 0:
            self.writer.write([outcome for part in parts for outcome in part])

    def on_predict_end(self, trainer, pl_module) -> None:
        if self.bar is not None:
            self.bar.close()


def embed_distributed(
    planner: Callable[..., EmbedPlan],
    store: Store,
    *,
    batch_size: int,
    num_workers: int | None,
    accelerator: str,
    devices,
    strategy: str,
    num_nodes: int,
    quiet: bool,
    on_failure,
) -> EmbedSummary | None:
    """Run `planner`'s plan over Lightning's ranks (`accelerator`, `devices`, `strategy`, `num_nodes`), with
    `batch_size` files per rank and step and `num_workers` DataLoader workers per rank. Returns the summary
    on global rank 0, the one rank that writes, and None on the others."""
    module = _ShardedEmbed(planner, store, batch_size, num_workers)
    writer = _RankZeroWriter(store, module, quiet, on_failure)
    trainer = inference_trainer(accelerator, devices, callbacks=[writer], strategy=strategy, num_nodes=num_nodes)
    trainer.predict(module, return_predictions=False)
    if trainer.global_rank != 0:
        return None
    module.summary.duplicates = store.tracks.duplicates(module.plan.collection)
    module.summary.outdated = outdated_spaces(store, module.plan.collection)
    return module.summary
