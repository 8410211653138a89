"""audiograph: music-track representations from audio, playlists and metadata.

The Python API mirrors the command line; names are imported lazily so that `import audiograph`
stays cheap.
"""

__version__ = "0.1.0"

_API = {
    "Store": "audiograph.store",
    "embed_audio": "audiograph.audio.embed",
    "query_file": "audiograph.query",
    "synthesize": "audiograph.synth",
}

__all__ = sorted(_API)


def __getattr__(name):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'audiograph' has no attribute {name!r}")
