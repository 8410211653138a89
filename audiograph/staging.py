"""Files written whole: each is written beside its target (`.NAME.PID.partial`) and moved onto it when complete,
so that a reader sees the old file or the new one, a link planted at the target is replaced rather than
written through, and a killed writer leaves only its partial file, which the next writer removes."""

from __future__ import annotations

import glob
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO


def write_whole(path: Path, write: Callable[[IO], None], *, text: bool = False, leftovers: str | None = None) -> None:
    """Call `write(file)` on a new file beside `path` (binary, or with `text` UTF-8 text without newline
    translation, as the csv module wants), then move it onto `path`. First removes the partial files that
    killed writers left: those of `path`, or with `leftovers` those matching that pattern in its folder (a
    folder of the writer's own files only)."""
    remove_abandoned(path.parent, leftovers or f".{glob.escape(path.name)}.*.partial")
    staged = path.with_name(f".{path.name}.{os.getpid()}.partial")
    staged.unlink(missing_ok=True)
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)  # less umask
    try:
        with os.fdopen(fd, "wb") as binary:
            if text:
                with io.TextIOWrapper(binary, encoding="utf-8", newline="") as file:
                    write(file)
            else:
                write(binary)
        os.replace(staged, path)
    finally:
        staged.unlink(missing_ok=True)


def remove_abandoned(folder: Path, pattern: str) -> None:
    """Remove the files in `folder` matching `pattern` and named `.NAME.PID.SUFFIX` (a file being written by
    process PID) whose process is gone: a killed writer never reached its own clean-up."""
    for stale in folder.glob(pattern):
        pid = stale.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not process_exists(int(pid)):
            stale.unlink(missing_ok=True)


def process_exists(pid: int) -> bool:
    """Whether process `pid` is running (True where that cannot be told)."""
    if os.name == "nt":  # os.kill there ends the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # another user's process, or a platform without signal 0
        return True
    return True
