"""The process around the work: thread caps, SIGTERM, keyword defaults, quiet Lightning, paused garbage
collection for bulk phases, and progress that shows on a terminal as a bar and elsewhere as a line every few
seconds."""

from __future__ import annotations

import contextlib
import functools
import gc
import inspect
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings

from audiograph.errors import ConfigError


def keyword_defaults(fn) -> dict:
    """A callable's keyword defaults, by name."""
    return {
        k: p.default for k, p in inspect.signature(fn).parameters.items() if p.default is not inspect.Parameter.empty
    }


@contextlib.contextmanager
def gc_paused():
    """Hold off Python's cyclic garbage collector for a bulk phase (also a decorator). Reference counting
    still frees what the phase drops; only cycles wait until the phase ends. A phase that keeps tens of
    thousands of new objects alive (a parsed playlist file, its entries, their rows) otherwise sets off
    collections that walk all of them again and again: 60 % of reading an MPD slice, 15 % of build-graph."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning")


def quiet_lightning() -> None:
    """Keep Lightning's start-up chatter (device listings, worker hints) off the console."""
    for name in LIGHTNING_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*Trying to infer the `batch_size`.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*No negative samples in targets.*")  # a one-class sanity batch
    # Every rank of a distributed training validates on the whole validation set: nothing to synchronise.
    warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed setting.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*Total length of .* across ranks is zero.*")  # nothing to do
    warnings.filterwarnings("ignore", message=".*`isinstance\\(treespec, LeafSpec\\)`.*")


def lightning_trainer(**options):
    """`lightning.Trainer(**options)`, with the settings Lightning refuses (an unknown accelerator, devices the
    machine lacks) raised as a `ConfigError`, which the command line says in one line."""
    import lightning as L
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        return L.Trainer(**options)
    except (ValueError, MisconfigurationException) as e:
        raise ConfigError(f"Lightning refused the settings: {e}") from None


def inference_trainer(accelerator: str = "auto", devices="auto", callbacks=(), strategy="auto", num_nodes: int = 1):
    """A Trainer for `predict` passes: no logger, no checkpoints, no Lightning progress bar. Under a
    distributed strategy Lightning gives each rank its own share of a predict loader's items, none twice."""
    quiet_lightning()
    return lightning_trainer(
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        num_nodes=num_nodes,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
    )


PROGRESS_LINE_SECONDS = 10.0  # off a terminal, at most one progress line per this many seconds


def show_progress(quiet: bool = False) -> bool:
    """Progress bars show only on a terminal, and never with `quiet`."""
    return not quiet and sys.stderr.isatty()


class LineProgress:
    """Progress off a terminal: a line on stderr at most every `PROGRESS_LINE_SECONDS`, and one at the end."""

    def __init__(self, total: int, desc: str, unit: str):
        self.total, self.desc, self.unit, self.n, self.shown = total, desc, unit, 0, 0
        self.started = self.last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= PROGRESS_LINE_SECONDS:
            self._line()

    def _line(self) -> None:
        self.last, self.shown = time.monotonic(), self.n
        share = f" ({self.n / self.total:.0%})" if self.total else ""
        print(
            f"{self.desc}: {self.n}/{self.total} {self.unit}s{share}, {self.last - self.started:.0f} s",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        if self.n != self.shown:  # the last line may have said it already
            self._line()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def progress_bar(total: int, desc: str, quiet: bool = False, unit: str = "it"):
    """Progress with a known total: a tqdm bar on a terminal, `LineProgress` elsewhere, nothing with `quiet`."""
    if not quiet and not sys.stderr.isatty():
        return LineProgress(total, desc, unit)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not show_progress(quiet), dynamic_ncols=True)


class Terminated(BaseException):
    """SIGTERM arrived: raised in the main thread by `stop_on_sigterm`. A BaseException, so that no
    `except Exception` on the way swallows it; transactions roll back as it passes."""


SIGTERM_RECEIVED = {"at": None}  # when `stop_on_sigterm`'s handler last ran (time.monotonic), else None


@contextlib.contextmanager
def stop_on_sigterm():
    """Within this block, SIGTERM stops the process's work at once by raising `Terminated`.

    Lightning's own SIGTERM handler only sets a flag that its training loops read between batches
    (and prediction loops never read), so a command could run on for a whole epoch or re-embedding
    pass. Lightning calls the handler installed before it as well, which is this one. A process
    forked inside the block (a DataLoader worker) gets the default action: it simply ends.
    """
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    owner = os.getpid()

    def handler(signum, frame):
        if os.getpid() != owner:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        # Recorded first: a signal that lands while a finaliser runs has its exception swallowed, and
        # Lightning, which saw the signal too, then ends the fit with a SystemExit of its own.
        SIGTERM_RECEIVED["at"] = time.monotonic()
        _raise_unless_held(Terminated())

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


INTERRUPT_RECEIVED = {"at": None}  # when `stop_once_on_ctrl_c`'s handler ran (time.monotonic), else None
WORK_SAVED = {"what": None}  # what a command has committed for good (`note_saved`), for a late Ctrl-C's message


def note_saved(what: str) -> None:
    """Record what a command has committed ("model X and its N vectors were written"): a Ctrl-C after this
    says so, and the user need not run the command again. Commit and note within `signals_held`, so that no
    Ctrl-C falls between them."""
    WORK_SAVED["what"] = what


_HELD = {"depth": 0, "pending": None}  # `signals_held` blocks open, and the stop they hold back


@contextlib.contextmanager
def signals_held():
    """Within this block, the stop that a Ctrl-C or SIGTERM raises (under `stop_once_on_ctrl_c` and
    `stop_on_sigterm`) waits until the block ends: for a few statements that must happen together, such as a
    commit and the note of what it saved. (Blocking the signals themselves would not do: the kernel hands a
    signal to any thread that does not block it, and Python runs the handler in the main thread all the same.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _HELD["depth"] += 1
    try:
        yield
    finally:
        _HELD["depth"] -= 1
        stop, _HELD["pending"] = (_HELD["pending"], None) if _HELD["depth"] == 0 else (None, _HELD["pending"])
        if stop is not None:
            raise stop


def _raise_unless_held(stop: BaseException) -> None:
    """Raise `stop` now, or, inside `signals_held`, when the block ends."""
    if _HELD["depth"]:
        _HELD["pending"] = stop
        return
    raise stop


STOPPING_NOTICE_SECONDS = 1.0  # a Ctrl-C that takes longer than this to end the command is answered at once


def _say_stopping() -> None:
    # os.write, not print: the main thread may be inside a write to sys.stderr (the progress bar), and a
    # buffered stream refuses a reentrant write.
    if os.environ.get("LOCAL_RANK", "0") == "0":
        os.write(2, b"\naudiograph: stopping after the work in progress (everything already written is kept)\n")


def interrupt_answered() -> None:
    """Cancel the pending 'stopping' notice of a Ctrl-C: the command is about to say that it stopped."""
    notice = INTERRUPT_RECEIVED.pop("notice", None)
    if notice is not None:
        notice.cancel()


@contextlib.contextmanager
def stop_once_on_ctrl_c(keep_ignored: bool = False):
    """Within this block, the first Ctrl-C (SIGINT) raises `KeyboardInterrupt` as usual, and later ones are
    ignored.

    Ctrl-C reaches every process of the terminal's group, and impatient users press it again while the
    work stops. A second `KeyboardInterrupt` raised inside that clean-up (a process pool's shutdown, a
    thread's lock) leaves it half done, and the exit then waits forever on worker processes. A process
    forked inside the block (a DataLoader worker) keeps Python's default behaviour. Where SIGINT is
    ignored already (`nohup`, a background job), it stays ignored. After the block the previous handler
    is back, unless a Ctrl-C came and `keep_ignored` (a process that is about to exit, whose clean-up
    then runs uninterrupted).
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield
        return
    owner, stopping = os.getpid(), []
    INTERRUPT_RECEIVED["at"] = None

    def handler(signum, frame):
        if os.getpid() == owner:
            if stopping:  # a later Ctrl-C, where Lightning's clean-up has put this handler back
                return
            stopping.append(True)
            INTERRUPT_RECEIVED["at"] = time.monotonic()
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            # Stopping waits for the work in progress (files being analysed, a training step), which can
            # take seconds: say so then, rather than seem to ignore the Ctrl-C.
            notice = threading.Timer(STOPPING_NOTICE_SECONDS, _say_stopping)
            notice.daemon = True
            notice.start()
            INTERRUPT_RECEIVED["notice"] = notice
        _raise_unless_held(KeyboardInterrupt())

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        # SIG_IGN, unlike a Python handler, also holds while the interpreter shuts down.
        signal.signal(signal.SIGINT, signal.SIG_IGN if stopping and keep_ignored else previous)


# What Lightning sets for a seeded, deterministic fit (`seed_everything`, `Trainer(deterministic=True)`).
SEEDING_ENVIRONMENT = ("PL_GLOBAL_SEED", "PL_SEED_WORKERS", "CUBLAS_WORKSPACE_CONFIG")


def leaves_process_settings(fn):
    """`fn`, made to leave the process as it found it: torch's thread count (`limit_threads`), Lightning's
    logger levels and the warning filters (`quiet_lightning`), deterministic mode, the seeding environment
    variables and the random generators of torch, numpy and `random` (which a seeded fit resets) are
    restored when it returns, so that a call from a notebook or a user's own training script does not change
    how their own code runs."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import random

        import numpy as np
        import torch

        threads, levels = torch.get_num_threads(), {name: logging.getLogger(name).level for name in LIGHTNING_LOGGERS}
        deterministic = (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        )
        cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
        environment = {name: os.environ.get(name) for name in SEEDING_ENVIRONMENT}
        generators = (random.getstate(), np.random.get_state(), torch.get_rng_state())
        cuda_generators = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        with warnings.catch_warnings():
            try:
                return fn(*args, **kwargs)
            finally:
                torch.set_num_threads(threads)
                for name, level in levels.items():
                    logging.getLogger(name).setLevel(level)
                torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
                torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
                for name, value in environment.items():
                    if value is None:
                        os.environ.pop(name, None)
                    else:
                        os.environ[name] = value
                random.setstate(generators[0])
                np.random.set_state(generators[1])
                torch.set_rng_state(generators[2])
                if cuda_generators is not None:
                    torch.cuda.set_rng_state_all(cuda_generators)

    return wrapper


def limit_threads() -> int:
    """Cap torch's intra-op threads to the cores that are free, and return the count.

    torch's threads spin while they wait: on a machine whose cores are busy, more threads than free
    cores make every op many times slower (a short MUSIG run on the Spotify playlists at load 6: 51 s
    with 2 threads, 18 s with 1). An explicit OMP_NUM_THREADS wins.
    """

    import torch

    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    threads = min(torch.get_num_threads(), free_cores())
    torch.set_num_threads(threads)
    return threads


@contextlib.contextmanager
def one_thread():
    """Within this block, this process's BLAS, OpenMP and (when loaded) torch run on one thread each.

    For a process that is one of several doing the same work (a worker, or the main process beside
    them): numpy's OpenBLAS otherwise starts a thread per core, and on a 2-core machine that is busy
    its threads spin, making a 128 x 1025 mel product 50 times slower (44 ms instead of 0.9 ms).
    """
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch else None
    with threadpool_limits(limits=1):
        if torch:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            if torch:
                torch.set_num_threads(threads)


def one_thread_worker(*_) -> None:
    """A worker process's initializer (a process pool's or a DataLoader's): one thread per numeric library
    for the whole life of the process (see `one_thread`)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def analysis_worker(*_) -> None:
    """The initializer of a process that analyses audio files (embed-audio's workers): one thread per numeric
    library (`one_thread_worker`) and freed memory kept for the next file (`retain_freed_memory`). Ctrl-C is
    left to the main process, which ends the workers: a worker that died of it on its own could hold the
    pool's queue lock, and the pool's shutdown then waits on it forever. A worker whose parent is gone
    (killed by SIGKILL or the OOM killer, so it could end nobody) ends itself (`exit_with_parent`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent()
    one_thread_worker()
    retain_freed_memory()


def exit_with_parent() -> threading.Thread | None:
    """End this process (a multiprocessing child) as soon as the process that started it ends. Its orphans
    otherwise live on, holding the store's files and the pipe of its output, so that whatever reads that
    output never ends. A thread waits on the parent's sentinel, which works under every start method (a
    fork server's child has the fork server as its OS parent) and even while the process is blocked
    writing to a pipe. None outside a multiprocessing child."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return None

    def watch():
        parent.join()
        os._exit(1)

    watcher = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    watcher.start()
    return watcher


# glibc's mallopt parameters, and the values `retain_freed_memory` sets.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
RETAINED_HEAP_BYTES = 256 << 20
LARGEST_HEAP_ALLOCATION = 32 << 20  # glibc's upper limit for M_MMAP_THRESHOLD on 64-bit


def retain_freed_memory() -> bool:
    """Make this process keep freed memory for reuse instead of handing it back to the kernel (glibc only;
    elsewhere a no-op). Returns whether the setting took.

    Analysing one track allocates and frees several arrays of a few MB (decoded blocks, STFT frames,
    spectrum, power). By default glibc returns them to the kernel once more than a few MB are free at the
    top of the heap, so every track page-faults them in again: about 2,100 faults per 20 s track, and a
    third of its STFT's time. Allocations up to 32 MB now come from the heap, and up to 256 MB of free
    heap is kept.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(
            libc.mallopt(_M_MMAP_THRESHOLD, LARGEST_HEAP_ALLOCATION)
            and libc.mallopt(_M_TRIM_THRESHOLD, RETAINED_HEAP_BYTES)
        )
    except (OSError, AttributeError):  # not glibc (musl, for example)
        return False


def free_cores() -> int:
    """Cores not already busy (by the 1-minute load average), at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(cores, round(cores - busy)))
