"""audiograph: music-track representations from audio, playlists and metadata.

The Python API mirrors the command line; names are imported lazily so that `import audiograph`
stays cheap.
"""

__version__ = "0.1.0"

_API = {
    "AcousticModel": "audiograph.models",
    "AudioConfig": "audiograph.audio.config",
    "MusigModel": "audiograph.models",
    "Store": "audiograph.store",
    "build_graph": "audiograph.pipelines.build_graph",
    "embed_audio": "audiograph.pipelines.embed_audio",
    "embed_musig": "audiograph.pipelines.train_musig",
    "evaluate": "audiograph.pipelines.evaluate",
    "export_space": "audiograph.pipelines.export",
    "import_tracks": "audiograph.pipelines.import_tracks",
    "query_file": "audiograph.pipelines.query",
    "similar_track": "audiograph.pipelines.query",
    "synthesize": "audiograph.synth",
    "train_audio": "audiograph.pipelines.train_audio",
    "train_musig": "audiograph.pipelines.train_musig",
}

__all__ = sorted(_API)


def __getattr__(name):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'audiograph' has no attribute {name!r}")
