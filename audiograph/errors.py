"""The error hierarchy: the CLI turns an `AudiographError` into a one-line message."""

from pathlib import Path


class AudiographError(Exception):
    """Base class of every error audiograph reports to users as one line."""


class DecodeError(AudiographError):
    """An audio file could not be turned into samples; carries the path and the reason."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class StoreError(AudiographError):
    """The store is missing, corrupt, or lacks what a command needs."""


class ConfigError(AudiographError):
    """An option or input file is invalid."""


def existing_file(path) -> Path:
    """`path` as a Path, after a `ConfigError` naming what is wrong if it is a folder or does not exist."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a file")
    if not path.is_file():
        raise ConfigError(
            f"{path}: {'not a regular file (a pipe, socket or device)' if path.exists() else 'no such file'}"
        )
    return path


def first_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message (torch's and numpy's run to several), or its type."""
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)


def resolved_path(path, what: str = "model") -> Path:
    """`path` with every symbolic link resolved; a link loop is a one-line `StoreError` naming `what`."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError) as e:  # Python < 3.13 raises RuntimeError on a loop
        raise StoreError(f"{what}: {path} cannot be resolved ({first_line(e)})") from None
