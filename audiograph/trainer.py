"""Lightning plumbing shared by the training loops: option routing, best-epoch metrics, throughput."""

from __future__ import annotations

import csv
import inspect
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback

from audiograph.errors import ConfigError


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
