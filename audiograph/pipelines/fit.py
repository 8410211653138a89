"""`fit_and_register`, the one training loop both trainings use, and its parts: option routing,
best-epoch metrics and throughput."""

from __future__ import annotations

import contextvars
import csv
import inspect
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from audiograph.errors import ConfigError
from audiograph.models.weights import weights_only_loading
from audiograph.runtime import lightning_trainer, note_saved, show_progress, signals_held
from audiograph.store import Store
from audiograph.training.distributed import check_strategy


def split_options(options: dict, *targets) -> list[dict]:
    """Split keyword options between callables by their parameter names; unknown names are an error."""
    names = [set(inspect.signature(t).parameters) for t in targets]
    unknown = set(options) - set().union(*names)
    if unknown:
        raise ConfigError(f"unknown option(s): {', '.join(sorted(unknown))}")
    return [{k: v for k, v in options.items() if k in n} for n in names]


def best_epoch_metrics(metrics_csv: Path, monitor: str, mode: str = "min") -> dict:
    """The logged validation metrics of the epoch with the best `monitor` value (the checkpoint kept)."""
    with open(metrics_csv, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get(monitor)]
    if not rows:
        return {}
    best = (min if mode == "min" else max)(rows, key=lambda r: float(r[monitor]))
    return {k: float(v) for k, v in best.items() if v and (k.startswith("val_") or k == "epoch")}


# What the epoch lines of the fits run now belong to ("seed 0, MUSIG audio"), where one command fits several.
EPOCH_LOG_LABEL: contextvars.ContextVar[str] = contextvars.ContextVar("epoch_log_label", default="")


class EpochLog(Callback):
    """One line per epoch on stderr, for runs whose output is not a terminal (no progress bar there):
    the epoch, its training loss, the validation metrics and the time so far (after `EPOCH_LOG_LABEL`)."""

    def __init__(self, max_epochs: int):
        self.max_epochs, self.started = max_epochs, time.monotonic()

    def on_train_epoch_end(self, trainer, pl_module):  # after the epoch's validation, whose metrics it reports
        if not trainer.is_global_zero:
            return
        metrics = {
            k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val_") or k == "train_loss"
        }
        figures = ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()))
        elapsed = time.monotonic() - self.started
        label = EPOCH_LOG_LABEL.get()
        print(
            f"{label + ': ' if label else ''}epoch {trainer.current_epoch + 1}/{self.max_epochs}: {figures}"
            f" ({elapsed:.0f} s)",
            file=sys.stderr,
            flush=True,
        )


class TrainingThroughput(Callback):
    """Training samples per second, data loading included, validation excluded.

    `count(batch)` says how many samples a batch holds (default: the length of its first element).
    """

    def __init__(self, count=lambda batch: len(batch[0])):
        self.count = count
        self.seconds, self.samples, self._start, self._last = 0.0, 0, None, None

    def on_train_epoch_start(self, trainer, pl_module):
        self._start = self._last = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._last = time.perf_counter()
        self.samples += self.count(batch)

    def on_train_epoch_end(self, trainer, pl_module):
        self.seconds += self._last - self._start

    @property
    def per_second(self) -> float:
        return self.samples / self.seconds if self.seconds else 0.0


class RunFolder(Callback):
    """Names the run once for every process: global rank 0 makes the model id (and claims its run folder),
    broadcasts it, and every rank then checkpoints into and logs under `<models_dir>/<model id>` (only
    rank 0 writes there). Made here, after the processes have joined, because a launcher (Lightning's
    `ddp` re-running the command, torchrun, SLURM) starts each rank on its own with its own clock."""

    def __init__(self, store: Store, kind: str, models_dir: Path, checkpoint: ModelCheckpoint):
        self.store, self.kind, self.models_dir, self.checkpoint = store, kind, models_dir, checkpoint
        self.model_id = None

    def setup(self, trainer, pl_module, stage):
        if self.model_id is not None:
            return
        mine = self.store.models.new_id(self.kind, self.models_dir) if trainer.is_global_zero else None
        self.model_id = trainer.strategy.broadcast(mine, src=0)
        # Callbacks' setup runs before ModelCheckpoint's (Lightning runs checkpointing last), which resolves this.
        self.checkpoint.dirpath = str(self.models_dir / self.model_id / "checkpoints")
        trainer.loggers = [CSVLogger(self.models_dir, name=self.model_id, version="")]


class DivergenceGuard(Callback):
    """Scores an epoch whose weights have become non-finite (a learning rate too high, a temperature of 0) as
    the worst possible on `monitor`, after the module's own validation logged it: a model of NaN weights
    ranks arbitrarily, and must never be the epoch kept. Early stopping then ends the run. Every rank holds
    the same weights after the gradients' all-reduce, so every rank decides alike."""

    def __init__(self, monitor: str):
        self.monitor, self.diverged_epoch = monitor, None

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking or finite_weights(pl_module):
            return
        if self.diverged_epoch is None:
            self.diverged_epoch = trainer.current_epoch
        pl_module.log(self.monitor, float("-inf"))


def finite_weights(module: torch.nn.Module) -> bool:
    """Whether every parameter of `module` is finite."""
    return all(torch.isfinite(p).all() for p in module.parameters())


class RankSeeds(Callback):
    """Gives each rank but rank 0 its own random stream for what is drawn inside a step (negative pairs,
    sampled neighbours, cold-start masks), seeded by `seed` and the rank: identical streams would draw the
    same negatives on every rank. Rank 0 keeps the stream of a single-process run. Which examples each
    rank takes is drawn from a generator every rank shares (`ShardedBatchSampler`), not from this."""

    def __init__(self, seed: int):
        self.seed = seed

    def setup(self, trainer, pl_module, stage):
        if trainer.global_rank > 0:
            torch.manual_seed(self.seed + 1_000_003 * trainer.global_rank)


@dataclass
class FitResult:
    """One training run: the module restored to its best epoch, where its model was saved, and how it went.

    In a distributed run every rank gets one, with the same model id; only global rank 0's `writer` is
    True, and only it saved the model (`saved` is where rank 0 put it). `embedded`: how many vectors were
    written with the model."""

    model_id: str
    module: L.LightningModule
    saved: Path
    epochs: int
    metrics: dict
    per_second: float
    writer: bool = True
    embedded: int | None = None


def fit_and_register(
    store: Store,
    modules: list[L.LightningModule],
    datamodule: L.LightningDataModule,
    *,
    kind: str,
    space: str,
    monitor: str,
    register: bool = True,
    config: dict | None = None,
    add_metrics: Callable[[FitResult, list[FitResult]], dict] | None = None,
    vectors: Callable[[FitResult], dict[str, np.ndarray] | None] | None = None,
    **fit_options,
) -> FitResult:
    """Fit each of `modules` (LightningModules whose `model` is a model object; several for a grid search)
    with `fit_one`, keep the best on `monitor` (higher is better), add `add_metrics(best, runs)` to its
    metrics (figures measured after training, such as a guard's; `runs` are every candidate's results), and
    with `register` record its saved model in the store's registry as `kind` filling `space`, with its
    hyperparameters, `config` and the metrics, together with `vectors(best)` (track id -> vector) in one
    transaction: a run killed at any point leaves either the model with all its vectors or neither.
    In a distributed run `vectors` is called on every rank (it may be collective) and returns None on all
    but global rank 0, which alone measures `add_metrics`, registers and writes."""
    runs = [fit_one(store, module, datamodule, kind=kind, monitor=monitor, **fit_options) for module in modules]
    best = max(runs, key=lambda run: run.metrics.get(monitor, float("-inf")))
    if best.writer and add_metrics is not None:
        best.metrics.update(add_metrics(best, runs))
    computed = vectors(best) if register and vectors is not None else None
    if not best.writer or not register:
        return best
    # Training uses as many threads as there are free cores (`limit_threads`), and float sums in
    # another order change the run: with the seed, the thread count is what reproduces it.
    settings = {**dict(best.module.hparams), **(config or {}), "torch_threads": torch.get_num_threads()}
    best.embedded = len(computed) if computed is not None else None
    vectors_said = f" and its {best.embedded} vectors were" if best.embedded is not None else " was"
    with signals_held():
        with store.transaction():
            store.models.register(
                best.model_id, kind, space, checkpoint=best.saved, config=settings, metrics=best.metrics
            )
            if computed is not None:
                store.vectors.put(space, best.model_id, computed)
        note_saved(f"model {best.model_id}{vectors_said} written")
    store.models.release_run(best.model_id)
    # The grid's other runs are neither registered nor kept: their folders go before their markers, so that a
    # run killed in between leaves a marked folder, which the next training removes as abandoned.
    for run in runs:
        if run is not best:
            shutil.rmtree(run.saved.parent, ignore_errors=True)
            store.models.release_run(run.model_id)
    return best


def fit_one(
    store: Store,
    module: L.LightningModule,
    datamodule: L.LightningDataModule,
    *,
    kind: str,
    monitor: str,
    max_epochs: int,
    patience: int,
    seed: int = 0,
    count=lambda batch: len(batch[0]),
    accelerator: str = "auto",
    devices="auto",
    strategy="auto",
    num_nodes: int = 1,
    quiet: bool = False,
    models_dir: str | Path | None = None,
    **trainer_options,
) -> FitResult:
    """Fit `module` with early stopping on `monitor` (higher is better), restore its best epoch, and save
    that model into `<models_dir>/<model id>/model`. `count(batch)` is how many samples a batch holds,
    for the throughput figure.

    `accelerator`, `devices`, `strategy` and `num_nodes` go to Lightning. Under `ddp` every process runs
    this, and only global rank 0 restores the best epoch and saves the model (the others' results say
    `writer` False and hold their last epoch's module). The datamodule splits the training examples between
    ranks itself (`ShardedBatchSampler`), so Lightning's sampler replacement is off; every rank validates
    on the whole validation set, so every rank sees the same metrics and stops at the same epoch."""
    check_strategy(strategy)
    models_dir = Path(models_dir) if models_dir is not None else store.models_dir
    L.seed_everything(seed, workers=True, verbose=False)
    checkpoint = ModelCheckpoint(monitor=monitor, mode="max", save_last=True)
    run = RunFolder(store, kind, models_dir, checkpoint)
    divergence = DivergenceGuard(monitor)
    throughput = TrainingThroughput(count)
    trainer = lightning_trainer(
        max_epochs=max_epochs,
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        num_nodes=num_nodes,
        deterministic=True,
        logger=False,  # RunFolder sets it once the run has its id
        callbacks=[
            run,
            RankSeeds(seed),
            divergence,
            checkpoint,
            throughput,
            EarlyStopping(monitor=monitor, mode="max", patience=patience),
            *([EpochLog(max_epochs)] if not quiet and not show_progress(quiet) else []),
        ],
        enable_progress_bar=show_progress(quiet),
        enable_model_summary=False,
        use_distributed_sampler=False,
        **trainer_options,
    )
    trainer.fit(module, datamodule=datamodule)
    model_id, saved = run.model_id, models_dir / run.model_id / "model"
    if not trainer.is_global_zero:  # the last epoch's weights: rank 0 restores the best, saves and reports
        return FitResult(model_id, module.eval(), saved, trainer.current_epoch, {}, throughput.per_second, False)
    best = checkpoint.best_model_path or checkpoint.last_model_path
    metrics = best_epoch_metrics(Path(trainer.logger.log_dir) / "metrics.csv", monitor, mode="max")
    with weights_only_loading(best, f"model '{model_id}'"):
        module = type(module).load_from_checkpoint(best, map_location="cpu", weights_only=True)
    if divergence.diverged_epoch is not None:
        epoch = divergence.diverged_epoch + 1
        if not finite_weights(module):
            raise ConfigError(
                f"training diverged: the weights were no longer finite after epoch {epoch}, and no earlier epoch"
                " was kept; nothing was registered, and the space keeps its vectors (try a lower --lr)"
            )
        warnings.warn(
            f"training diverged (weights no longer finite) after epoch {epoch}; the model kept is"
            f" epoch {int(metrics.get('epoch', 0)) + 1}'s, the best before it",
            stacklevel=2,
        )
    saved = module.model.save(saved)
    return FitResult(model_id, module.eval(), saved, trainer.current_epoch, metrics, throughput.per_second)
