"""Lightning plumbing shared by every training and inference loop, and the progress-bar convention."""

from __future__ import annotations

import inspect
import logging
import sys
import warnings

from tqdm.auto import tqdm


def keyword_defaults(fn) -> dict:
    """A callable's keyword defaults (the CLI shows and uses these, so each default lives in one place)."""
    return {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.default is not inspect.Parameter.empty}


def quiet_lightning() -> None:
    """Keep Lightning's start-up chatter (device listings, worker hints) off the console."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*Trying to infer the `batch_size`.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*No negative samples in targets.*")  # a one-class sanity batch
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*`isinstance\\(treespec, LeafSpec\\)`.*")


def inference_trainer(accelerator: str = "auto", devices="auto", callbacks=()):
    """A Trainer for `predict` passes: no logger, no checkpoints, no Lightning progress bar."""
    import lightning as L

    quiet_lightning()
    return L.Trainer(
        accelerator=accelerator,
        devices=devices,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
    )


def show_progress(quiet: bool = False) -> bool:
    """Progress bars show only on a terminal, and never with `quiet`."""
    return not quiet and sys.stderr.isatty()


def progress_bar(total: int, desc: str, quiet: bool = False, unit: str = "it"):
    """A tqdm bar with a known total, following `show_progress`."""
    return tqdm(total=total, desc=desc, unit=unit, disable=not show_progress(quiet), dynamic_ncols=True)
