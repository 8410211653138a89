"""The error hierarchy: the CLI turns an `AudiographError` into a one-line message."""


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
