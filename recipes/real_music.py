"""Real-music benchmark of the acoustic spaces: Debian's game soundtracks, one album per package.

    python recipes/real_music.py [--out recipe-real-music] [--cache ~/.cache/audiograph/debian-music]
                                 [--packages PKG ... | --held-out | --albums DIR] [--max-per-album N]
                                 [--clip-seconds S] [--folds 5] [--run-folds 3] [--quick]

Opt-in: it downloads Debian packages (`apt-get download`, `apt-get update` once if a package is not
found) and unpacks them with `dpkg-deb -x` into a cache folder outside the repository; nothing is
downloaded again once a package's music is cached. It keeps the recordings libsndfile reads (OGG,
Opus, WAV, FLAC, MP3) that are at least `--min-seconds` long (shorter files are sound effects and
voice lines), also those inside zip archives (.pk3, .zip), counts and skips tracker modules and
MIDI, and records each package's version and licence (from usr/share/doc/PKG/copyright). The nine
recordings of ../shared/data/audio are one more album. `--held-out` takes another list of
soundtracks, none of them used to choose a default: the same protocol on music the defaults were
not tuned on. `--albums DIR` runs it on your own music instead, with nothing downloaded: each
subfolder of DIR is one album (or any label that tracks share, such as a genre).

Protocol: each album's tracks are ordered by a fixed hash and dealt into `--folds` folds, so every
fold holds out the same share of each album. For a fold, one M3U8 playlist per album lists its
training tracks only and makes the graph; the held-out tracks are removed from that fold's store,
so they are never in a playlist, a triplet, a negative or a crop. The encoder is trained with
`train_audio`'s defaults. Same-album precision@5 of each held-out track (candidates: every other
track) is measured in the z-scored descriptor space, for the untrained encoder and for the trained
one; for each space the recipe also reports the spread of pairwise cosines and the effective rank
(collapse diagnosis). Writes results.md and results.json to the output folder.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from audiograph.audio.decode import AUDIO_EXTENSIONS, FFMPEG_AUDIO_EXTENSIONS, decode, readable_extensions
from audiograph.errors import ConfigError
from audiograph.eval.neighbours import embedding_diagnostics, top_k_neighbours
from audiograph.models import AcousticModel
from audiograph.pipelines.build_graph import build_graph
from audiograph.pipelines.embed_audio import embed_audio
from audiograph.pipelines.encoders import resolve_acoustic_model
from audiograph.pipelines.train_audio import raw_descriptors, standardised_descriptors, train_audio
from audiograph.store import Store
from audiograph.tables import markdown_table

DEFAULT_CACHE = Path("~/.cache/audiograph/debian-music")
SHARED_AUDIO = Path(__file__).resolve().parents[2] / "shared" / "data" / "audio"
SHARED_ALBUM = "shared-recordings"
# The candidates, then other packaged soundtracks. Packages with no recordings
# (openarena-data and neverball-data hold none; pingus-data only tracker modules) are reported
# with what was skipped.
DEFAULT_PACKAGES = (
    "asc-music",
    "drascula-music",
    "warzone2100-music",
    "hedgewars-data",
    "neverball-data",
    "lincity-ng-data",
    "openarena-data",
    "frozen-bubble-data",
    "pingus-data",
    "hyperrogue-music",
    "singularity-music",
    "wesnoth-1.16-music",
    "planetblupi-music-ogg",
    "extremetuxracer-data",
    "xmoto-data",
)
QUICK_PACKAGES = ("asc-music", "frozen-bubble-data", "extremetuxracer-data", "xmoto-data")
# Albums never used to choose a default (`--held-out`): a check that the figures of the default
# collection carry over to other music.
HELD_OUT_PACKAGES = (
    "nexuiz-music",
    "ufoai-music",
    "supertux-data",
    "freedroidrpg-data",
    "megaglest-data",
    "flare-game",
    "btanks-data",
    "starfighter-data",
    "powermanga-data",
    "noiz2sa-data",
    "tumiki-fighters-data",
    "torus-trooper-data",
    "mu-cade-data",
    "parsec47-data",
    "gunroar-data",
)
# Zip archives that games keep their data in (Quake-engine .pk3); their recordings are unpacked.
ARCHIVES = frozenset({".pk3", ".zip"})
# Bumped when the way a package's recordings are kept changes, so that cached albums are redone.
MANIFEST_LAYOUT = 2
NOT_RECORDINGS = frozenset({".mod", ".xm", ".s3m", ".it", ".mtm", ".669", ".mid", ".midi"})
MIN_SECONDS = 20.0
K = 5


# -- the collection ---------------------------------------------------------------------------


def _run(command: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)


class DebianMusic:
    """Downloads packages into `cache`/debs, keeps their recordings in `cache`/music/PKG with a manifest."""

    def __init__(self, cache: Path, min_seconds: float = MIN_SECONDS):
        self.cache, self.min_seconds = cache.expanduser().resolve(), min_seconds
        self.updated = False

    def album(self, package: str) -> dict:
        """The package's manifest (version, licence, kept and skipped files), fetching it if not cached."""
        folder = self.cache / "music" / package
        manifest = folder / "manifest.json"
        if manifest.exists():
            info = json.loads(manifest.read_text())
            if info.get("layout") == MANIFEST_LAYOUT:
                return info
        deb = self._download(package)
        info = {"package": package, "folder": str(folder), "layout": MANIFEST_LAYOUT}
        for field_name in ("Version", "Source"):
            info[field_name.lower()] = _run(["dpkg-deb", "-f", str(deb), field_name]).stdout.strip() or None
        extract = self.cache / "extract" / package
        shutil.rmtree(extract, ignore_errors=True)
        extract.parent.mkdir(parents=True, exist_ok=True)
        result = _run(["dpkg-deb", "-x", str(deb), str(extract)])
        if result.returncode != 0:
            raise ConfigError(f"{deb}: dpkg-deb -x failed: {result.stderr.strip()}")
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        unpack_archives(extract)
        info.update(self._keep_recordings(extract, folder))
        info.update(_licence(extract, package, folder))
        shutil.rmtree(extract)
        deb.unlink()
        manifest.write_text(json.dumps(info, indent=2))
        return info

    def _download(self, package: str) -> Path:
        debs = self.cache / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        found = sorted(debs.glob(f"{package}_*.deb"))
        if found:
            return found[-1]
        print(f"apt-get download {package}", flush=True)
        result = _run(["apt-get", "download", package], cwd=debs)
        if result.returncode != 0 and not self.updated:
            self.updated = True
            print("apt-get update (a package was not found)", flush=True)
            _run(["apt-get", "update"])
            result = _run(["apt-get", "download", package], cwd=debs)
        found = sorted(debs.glob(f"{package}_*.deb"))
        if result.returncode != 0 or not found:
            reason = (result.stderr.strip().splitlines() or ["no .deb written"])[-1]
            raise ConfigError(f"apt-get download {package}: {reason}")
        return found[-1]

    def _keep_recordings(self, extract: Path, folder: Path) -> dict:
        """Move the readable recordings of at least `min_seconds` into `folder`, keeping their
        paths below the deepest folder that holds them all; count what was skipped."""
        kept, skipped = [], {"tracker or MIDI": 0, f"shorter than {self.min_seconds:g} s": 0, "unreadable": 0}
        for path in sorted(p for p in extract.rglob("*") if p.is_file() and not p.is_symlink()):
            suffix = path.suffix.lower()
            if suffix in NOT_RECORDINGS:
                skipped["tracker or MIDI"] += 1
            elif suffix in AUDIO_EXTENSIONS:
                try:
                    seconds = sf.info(str(path)).duration
                except (sf.LibsndfileError, RuntimeError):
                    skipped["unreadable"] += 1
                    continue
                if seconds < self.min_seconds:
                    skipped[f"shorter than {self.min_seconds:g} s"] += 1
                else:
                    kept.append((path, seconds))
        if kept:
            root = Path(os.path.commonpath([p.parent for p, _ in kept]))
            for path, _ in kept:
                target = folder / path.relative_to(root)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(path, target)
        return {"tracks": len(kept), "minutes": round(sum(s for _, s in kept) / 60, 1), "skipped": skipped}


def unpack_archives(root: Path) -> int:
    """Unpack the audio members (recordings, tracker modules, MIDI) of every zip archive under `root`
    into a folder beside it named after it, and remove the archive; returns how many were unpacked."""
    wanted = AUDIO_EXTENSIONS | NOT_RECORDINGS
    count = 0
    for archive in sorted(p for p in root.rglob("*") if p.suffix.lower() in ARCHIVES and p.is_file()):
        if not zipfile.is_zipfile(archive):
            continue
        with zipfile.ZipFile(archive) as z:
            members = [m for m in z.infolist() if not m.is_dir() and Path(m.filename).suffix.lower() in wanted]
            # ZipFile.extractall drops absolute paths and ".." parts, so members stay inside the folder.
            z.extractall(archive.with_name(archive.name + ".d"), members)
        archive.unlink()
        count += 1
    return count


def _licence(extract: Path, package: str, folder: Path) -> dict:
    """A copy of the package's copyright file in `folder`, and the licences it names."""
    copyright_file = extract / "usr" / "share" / "doc" / package / "copyright"
    if not copyright_file.is_file():
        others = sorted(extract.glob("usr/share/doc/*/copyright"))
        if not others:
            return {"licence": "no copyright file in the package", "copyright_file": None}
        copyright_file = others[0]
    shutil.copy(copyright_file, folder / "copyright")
    licence = licence_names(copyright_file.read_text(errors="replace"))
    return {"licence": licence, "copyright_file": str(folder / "copyright")}


def licence_names(copyright_text: str) -> str:
    """The licences a Debian copyright file names on its DEP-5 `License:` lines, in order of appearance."""
    names = dict.fromkeys(m.strip() for m in re.findall(r"^License:[ \t]*(\S.*)$", copyright_text, flags=re.MULTILINE))
    return ", ".join(names) or "not machine-readable: see the copyright file"


def embed_collection(store: Store, albums: dict[str, Path], quiet: bool = True) -> dict:
    """embed_audio each album's folder as a collection named after it; returns what failed, per album (each
    failure is also said on the console, as `embed-audio` says it)."""
    failed = {}
    for name, folder in albums.items():
        summary = embed_audio(folder, store, collection=name, acoustic_model=None, quiet=quiet)
        if summary.failed:
            failed[name] = summary.failed
            for failure in summary.failed:
                print(f"failed: {failure['path']}: {failure['error']}", file=sys.stderr)
    return failed


def check_train_options(options: dict) -> None:
    """A `ConfigError` now for a `--train-options` name or value that `train_audio` would refuse only after the
    collection is embedded."""
    from audiograph.options import check_options
    from audiograph.pipelines.fit import split_options
    from audiograph.training.audio import AudioEncoderModule
    from audiograph.training.audio_data import GraphAudioData

    own = set(inspect.signature(train_audio).parameters) - {"store", "options"}
    split_options({k: v for k, v in options.items() if k not in own}, AudioEncoderModule, GraphAudioData)
    check_options(**options)


# -- the benchmark ------------------------------------------------------------------------------


def hold_out_folds(albums: dict[str, list[str]], folds: int) -> dict[str, int]:
    """track id -> fold: each album's tracks ordered by a fixed hash and dealt round-robin, so that
    every fold holds out 1/`folds` of each album (rounded)."""

    def key(track_id: str) -> str:
        return hashlib.blake2b(track_id.encode(), digest_size=8).hexdigest()

    return {t: rank % folds for ids in albums.values() for rank, t in enumerate(sorted(ids, key=key))}


def fold_store(base: Path, folder: Path, keep: set[str]) -> Store:
    """A copy of the base store with only the tracks in `keep`: the others (held out, or of albums not
    in this run) lose their row, cache and vectors."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "fold.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    shutil.copy(base, path)
    store = Store(path)
    store.tracks.delete([t["id"] for t in store.tracks.rows(status=None) if t["id"] not in keep])
    return store


def write_album_playlists(folder: Path, albums: dict[str, list[str]], paths: dict[str, str], keep: set[str]) -> Path:
    """One M3U8 playlist per album listing its tracks in `keep`, with absolute paths."""
    folder.mkdir(parents=True, exist_ok=True)
    for album, ids in albums.items():
        lines = ["#EXTM3U", *(paths[t] for t in ids if t in keep)]
        (folder / f"{album}.m3u8").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def held_out_precision(vectors: np.ndarray, labels: list[str], queries: list[int], k: int = K) -> float:
    """Same-label precision@k of the query rows; candidates are all other rows."""
    nearest = top_k_neighbours(torch.as_tensor(vectors), torch.tensor(queries), k).numpy()
    labels = np.asarray(labels, dtype=object)
    return float((labels[nearest] == labels[queries][:, None]).mean())


def run_fold(
    fold: int,
    base: Path,
    out: Path,
    albums: dict[str, list[str]],
    folds: dict[str, int],
    epochs: int | None,
    seed: int,
    options: dict,
) -> dict:
    """Train on the fold's training tracks and measure the held-out tracks in every space."""
    started = time.perf_counter()
    base_store = Store(base)
    ids = sorted(folds)
    held_out = {t for t in ids if folds[t] == fold}
    paths = {t["id"]: t["path"] for t in base_store.tracks.rows()}
    training = set(ids) - held_out
    store = fold_store(base, out / f"fold-{fold}", training)
    playlists = write_album_playlists(out / f"fold-{fold}" / "playlists", albums, paths, training)
    build_graph(store, [playlists])
    report = train_audio(store, quiet=True, seed=seed, **({"max_epochs": epochs} if epochs else {}), **options)
    trained, _, _ = resolve_acoustic_model(store, report.model_id)
    chunks = base_store.mels.chunks(ids)
    tracks = [chunks[t] for t in ids]
    torch.manual_seed(seed)
    untrained = AcousticModel(trained.config, trained.encoder_options)
    if untrained.encoder.input_norm_kind == "collection":
        untrained.encoder.set_input_statistics(trained.encoder.band_mean, trained.encoder.band_std)
    alone = AcousticModel(trained.config, trained.encoder_options)
    alone.encoder.load_state_dict(trained.encoder.state_dict())
    described, descriptors = standardised_descriptors(base_store, ids)
    _, raw = raw_descriptors(base_store, ids)
    if described != ids:
        raise ConfigError(f"{base}: {len(ids) - len(described)} tracks have no descriptors")
    spaces = {
        "descriptors (z-scored)": descriptors,
        "untrained encoder": untrained.encode_chunks(tracks).numpy(),
        "trained encoder": trained.encode_chunks(tracks, descriptors=raw if trained.uses_descriptors else None).numpy(),
        "trained encoder alone": alone.encode_chunks(tracks).numpy(),
    }
    if trained.uses_descriptors:  # the untrained encoder joined with the descriptors in the same way
        untrained.combine_descriptors(
            trained.descriptor_weight, trained.descriptor_mean.numpy(), trained.descriptor_scale.numpy()
        )
    spaces["untrained encoder + descriptors"] = untrained.encode_chunks(
        tracks, descriptors=raw if untrained.uses_descriptors else None
    ).numpy()
    album = {t: a for a, members in albums.items() for t in members}
    labels = [album[t] for t in ids]
    queries = [i for i, t in enumerate(ids) if t in held_out]
    result = {
        "fold": fold,
        "held_out": len(queries),
        "train_tracks": len(ids) - len(queries),
        "epochs": report.epochs,
        "model_id": report.model_id,
        "guard": report.guard,
        "precision_at_5": {name: held_out_precision(v, labels, queries) for name, v in spaces.items()},
        "diagnostics": {name: embedding_diagnostics(v) for name, v in spaces.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }
    store.close()
    return result


# -- the run ----------------------------------------------------------------------------------

# "trained encoder" is what train-audio's defaults make (joined with the descriptors when validation
# chose a weight); the last two rows separate what the training and the descriptors each bring.
SPACES = (
    "descriptors (z-scored)",
    "untrained encoder",
    "trained encoder",
    "trained encoder alone",
    "untrained encoder + descriptors",
)
DIAGNOSTICS = ("cosine_mean", "cosine_std", "cosine_p5", "cosine_p50", "cosine_p95", "effective_rank")


def recordings(folder: Path) -> list[Path]:
    """The audio files anywhere under `folder` that audiograph reads here (M4A and the like with PyAV)."""
    readable = readable_extensions()
    return [p for p in folder.rglob("*") if p.suffix.lower() in readable and p.is_file()]


def link_collection(
    folder: Path, albums: dict[str, Path], max_per_album: int | None, clip_seconds: float | None = None
) -> dict[str, Path]:
    """A folder per album of its recordings (at most `max_per_album`, chosen by a fixed hash), so that a
    capped run embeds only what it uses: links to them, or with `clip_seconds` an excerpt of that length
    from the middle of each (FLAC, the recording's rate and channels; a shorter recording whole), as
    collections of 30 s previews are. Returns album -> its folder."""
    linked = {}
    for album, source in albums.items():
        target = folder / album
        shutil.rmtree(target, ignore_errors=True)
        files = sorted(
            recordings(source),
            key=lambda p: hashlib.blake2b(str(p.relative_to(source)).encode(), digest_size=8).hexdigest(),
        )
        for path in files[:max_per_album]:
            link = target / path.relative_to(source)
            link.parent.mkdir(parents=True, exist_ok=True)
            if clip_seconds is None:
                link.symlink_to(path.resolve())
            else:
                write_clip(path, link.with_suffix(".flac"), clip_seconds)
        linked[album] = target
    return linked


def write_clip(source: Path, target: Path, seconds: float) -> None:
    """`seconds` of `source` around its middle, written to `target` as FLAC (a format only FFmpeg reads: as the
    mono model-rate samples that audiograph analyses)."""
    if source.suffix.lower() in FFMPEG_AUDIO_EXTENSIONS:
        audio = decode(source)
        frames = min(len(audio.samples), round(seconds * audio.sample_rate))
        start = (len(audio.samples) - frames) // 2
        sf.write(str(target), audio.samples[start : start + frames], audio.sample_rate, format="FLAC")
        return
    with sf.SoundFile(str(source)) as f:
        frames = min(f.frames, round(seconds * f.samplerate))
        f.seek((f.frames - frames) // 2)
        samples = f.read(frames, dtype="float32", always_2d=True)
        sf.write(str(target), samples, f.samplerate, format="FLAC")


def summarise(folds: list[dict]) -> dict:
    """Mean and std over folds of each space's precision@5 and diagnostics."""

    def stats(values: list[float]) -> dict:
        return {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values}

    return {
        space: {
            "precision_at_5": stats([f["precision_at_5"][space] for f in folds]),
            **{d: stats([f["diagnostics"][space][d] for f in folds]) for d in DIAGNOSTICS},
        }
        for space in SPACES
    }


def _mean_std(figure: dict, folds: int) -> str:
    """ "mean ± std" over several folds; one fold's figure alone."""
    return f"{figure['mean']:.3f} ± {figure['std']:.3f}" if folds > 1 else f"{figure['mean']:.3f}"


def write_results(out: Path, summary: dict, folds: list[dict], collection: dict, settings: dict) -> None:
    """results.md and results.json in `out`."""
    n = len(folds)
    over = f"mean ± std over {n} folds" if n > 1 else "one fold (no spread)"
    intro = (
        f"Same-album precision@5 of held-out tracks (query: a held-out track; candidates: every other track),"
        f" {over}; chance {collection['chance']:.3f}."
    )
    space_rows = []
    for space in SPACES:
        s = summary[space]
        space_rows.append(
            [
                space,
                _mean_std(s["precision_at_5"], n),
                f"{s['cosine_mean']['mean']:.3f}",
                f"{s['cosine_std']['mean']:.3f}",
                f"{s['cosine_p5']['mean']:.2f} / {s['cosine_p50']['mean']:.2f} / {s['cosine_p95']['mean']:.2f}",
                f"{s['effective_rank']['mean']:.1f}",
            ]
        )
    space_headers = ["space", "P@5", "cosine mean", "cosine std", "cosine p5 / p50 / p95", "effective rank"]
    diagnosis = (
        "Pairwise cosines are over all tracks, in each space; the effective rank is exp of the entropy of"
        " the normalised singular values of the centred vectors (a collapsed space has cosines near 1 and"
        " a small rank)."
    )
    fold_headers = ["fold", "held out", "training tracks", "epochs", *SPACES, "descriptor weight"]
    fold_headers += ["guard (validation P@5: trained / descriptors / untrained)", "seconds"]
    fold_rows = []
    for f in folds:
        g = f["guard"]
        guard = " / ".join(
            f"{g[k]:.3f}" for k in ("trained_precision_at_5", "descriptors_precision_at_5", "untrained_precision_at_5")
        )
        fold_rows.append(
            [f["fold"], f["held_out"], f["train_tracks"], f["epochs"]]
            + [f"{f['precision_at_5'][s]:.3f}" for s in SPACES]
            + [f"{g.get('descriptor_weight', 0):g}", guard, f"{f['seconds']:.0f}"]
        )
    with_tracks = sum(1 for a in collection["albums"] if a["tracks"])
    size = f"{collection['tracks']} tracks in {with_tracks} albums ({collection['minutes']:.0f} minutes of audio)."
    if collection.get("source") == "local":
        size += " Albums: the subfolders of the folder given with --albums."
    else:
        size += (
            " Licences: those named in each package's copyright file, which covers the whole source package"
            " (results.json lists them all; the copyright file is kept beside the cached music)."
        )
    album_rows = []
    for a in collection["albums"]:
        skipped = ", ".join(f"{v} {k}" for k, v in a.get("skipped", {}).items() if v) or "-"
        names = a["licence"].split(", ")
        licence = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        album_rows.append(
            [a["package"], a.get("version") or "-", a["tracks"], f"{a.get('minutes', 0):.1f}", skipped, licence]
        )
    md = [
        "# Real-music benchmark of the acoustic spaces",
        "",
        intro,
        "",
        markdown_table(space_headers, space_rows),
        "",
        diagnosis,
        "",
        "## Folds",
        "",
        markdown_table(fold_headers, fold_rows),
        "",
        "## The collection",
        "",
        size,
        "",
        markdown_table(["album", "version", "tracks", "minutes", "skipped", "licences"], album_rows),
    ]
    for failure in collection["failed"]:
        md.append(f"\nNot embedded: {failure['path']}: {failure['error']}")
    md += ["", "## Run", "", "```json", json.dumps(settings, indent=2), "```", ""]
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text("\n".join(md), encoding="utf-8")
    (out / "results.json").write_text(
        json.dumps({"summary": summary, "folds": folds, "collection": collection, "settings": settings}, indent=2)
    )


def local_albums(root: Path) -> tuple[dict[str, Path], list[dict]]:
    """`--albums DIR`: every subfolder of `root` that holds a recording is one album, named after it."""
    if not root.is_dir():
        raise ConfigError(f"{root}: not a folder of albums")
    folders, manifests = {}, []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        tracks = len(recordings(folder))
        if tracks:
            folders[folder.name] = folder
            manifests.append({"package": folder.name, "version": None, "tracks": tracks, "licence": f"local: {folder}"})
    if len(folders) < 2:
        raise ConfigError(f"{root}: fewer than two subfolders with recordings (each subfolder is one album)")
    return folders, manifests


def collect(args) -> tuple[dict[str, Path], list[dict]]:
    """album -> folder of its recordings, and the albums' manifests (packages that failed are reported)."""
    if args.albums:
        return local_albums(args.albums)
    music = DebianMusic(args.cache, args.min_seconds)
    folders, manifests = {}, []
    for package in args.packages:
        cached = music.cache / "music" / package / "manifest.json"
        if args.offline and not cached.exists():
            continue
        try:
            manifest = music.album(package)
        except ConfigError as e:
            print(f"skipped {package}: {e}", file=sys.stderr)
            continue
        manifests.append(manifest)
        if manifest["tracks"]:
            folders[package] = Path(manifest["folder"])
    if args.shared_audio.is_dir() and not args.held_out:  # the shared recordings helped choose the defaults
        folders[SHARED_ALBUM] = args.shared_audio
        manifests.append(
            {
                "package": SHARED_ALBUM,
                "version": None,
                "tracks": len(list(args.shared_audio.glob("*.ogg"))) + len(list(args.shared_audio.glob("*.mp3"))),
                "licence": "per file: see ../shared/data/SOURCES.md and the .txt beside each recording",
            }
        )
    if len(folders) < 2:
        raise ConfigError("fewer than two albums with recordings: nothing to compare (run without --offline to fetch)")
    return folders, manifests


def main() -> None:
    try:
        run()
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None


def run(argv: list[str] | None = None) -> dict:
    """Parse `argv`, run the benchmark, write results.md and results.json; returns the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("recipe-real-music"))
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("AUDIOGRAPH_MUSIC_CACHE", DEFAULT_CACHE)),
        help=f"download cache (default $AUDIOGRAPH_MUSIC_CACHE or {DEFAULT_CACHE})",
    )
    parser.add_argument("--packages", nargs="+", help="Debian packages, one album each (default: a list of 15)")
    parser.add_argument(
        "--held-out",
        action="store_true",
        help=f"the {len(HELD_OUT_PACKAGES)} packages never used to choose a default, instead of the default list"
        " and the shared recordings",
    )
    parser.add_argument(
        "--albums", type=Path, help="your own music instead of Debian's: each subfolder of this folder is one album"
    )
    parser.add_argument("--shared-audio", type=Path, default=SHARED_AUDIO, help="one more album (skipped if absent)")
    parser.add_argument("--offline", action="store_true", help="use only packages already in the cache")
    parser.add_argument("--min-seconds", type=float, default=MIN_SECONDS, help="shorter files are sound effects")
    parser.add_argument("--max-per-album", type=int, help="at most this many tracks of each album")
    parser.add_argument(
        "--clip-seconds", type=float, help="use an excerpt of this length from the middle of each track (previews)"
    )
    parser.add_argument("--folds", type=int, default=5, help="hold-out folds: 1/FOLDS of each album per fold")
    parser.add_argument("--run-folds", type=int, help="run only the first N folds (default: all)")
    parser.add_argument("--epochs", type=int, help="train-audio's maximum epochs (default: its own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--train-options",
        type=json.loads,
        default={},
        help='JSON keyword options of train_audio, e.g. \'{"loss": "triplet"}\' (default: none)',
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: four small Debian albums and the shared recordings, one fold, 3 epochs",
    )
    args = parser.parse_args(argv)
    if args.albums and (args.packages or args.held_out):
        raise ConfigError("--albums takes your own music instead of Debian's: leave out --packages and --held-out")
    if args.folds < 2:
        raise ConfigError(f"--folds must be at least 2, so that each fold trains on the others (got {args.folds})")
    check_train_options(args.train_options)  # before the collection is embedded, which takes minutes
    if args.quick:
        args.packages = args.packages or list(QUICK_PACKAGES)
        args.max_per_album, args.run_folds, args.epochs = args.max_per_album or 8, 1, args.epochs or 3
    args.packages = args.packages or list(HELD_OUT_PACKAGES if args.held_out else DEFAULT_PACKAGES)
    if args.cache.expanduser().resolve().is_relative_to(Path(__file__).resolve().parents[1]):
        raise ConfigError(f"{args.cache}: the download cache must be outside the repository")
    started = time.perf_counter()

    folders, manifests = collect(args)
    if args.max_per_album or args.clip_seconds:
        folders = link_collection(args.out / "collection", folders, args.max_per_album, args.clip_seconds)
    # embed-audio skips what an earlier run already embedded, so a rerun only trains and measures.
    args.out.mkdir(parents=True, exist_ok=True)
    store = Store(args.out / "base.db")
    failed = embed_collection(store, folders)
    embedded = {t["id"]: t for t in store.tracks.rows() if t["collection"] in folders}
    albums: dict[str, list[str]] = {}
    for track_id, track in sorted(embedded.items()):
        albums.setdefault(track["collection"], []).append(track_id)
    # A held-out track can only be found beside others of its album: one-track albums are left out.
    lone = {album: ids[0] for album, ids in albums.items() if len(ids) < 2}
    for album, track_id in lone.items():
        del albums[album], embedded[track_id]
    store.compact()
    store.close()
    embed_seconds = time.perf_counter() - started
    print(f"collection: {len(embedded)} tracks in {len(albums)} albums, embedded in {embed_seconds:.0f} s", flush=True)

    largest = max((len(ids) for ids in albums.values()), default=0)
    if args.folds > largest:
        raise ConfigError(
            f"--folds {args.folds}: the largest album has {largest} tracks, so some folds would hold out none;"
            f" use at most {largest}"
        )
    folds = hold_out_folds(albums, args.folds)
    sizes = np.array([len(v) for v in albums.values()])
    for manifest in manifests:  # what this run embedded and uses
        used = albums.get(manifest["package"], [])
        if manifest["package"] in lone:
            manifest.setdefault("skipped", {})["the album's only track"] = 1
        manifest["tracks"] = len(used)
        manifest["minutes"] = round(sum(embedded[t]["duration"] or 0 for t in used) / 60, 1)
    collection = {
        "tracks": len(embedded),
        "albums": manifests,
        "minutes": sum(t["duration"] or 0 for t in embedded.values()) / 60,
        # Expected P@5 of a random ranking: a query's share of same-album candidates, averaged over tracks.
        "chance": float(np.sum(sizes * (sizes - 1) / (len(embedded) - 1)) / len(embedded)),
        "failed": [f for fs in failed.values() for f in fs],
        "source": "local" if args.albums else "debian",
    }
    settings = {
        "argv": sys.argv[1:] if argv is None else argv,
        "folds": args.folds,
        "seed": args.seed,
        "epochs": args.epochs,
        "train_options": args.train_options,
        "embed_seconds": round(embed_seconds),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": f"{os.cpu_count()} CPUs",
    }
    results = []
    for fold in range(args.run_folds or args.folds):
        result = run_fold(fold, store.path, args.out, albums, folds, args.epochs, args.seed + fold, args.train_options)
        results.append(result)
        print(f"fold {fold}: " + ", ".join(f"{s} {result['precision_at_5'][s]:.3f}" for s in SPACES), flush=True)
        summary = summarise(results)
        settings["wall_seconds"] = round(time.perf_counter() - started)
        write_results(args.out, summary, results, collection, settings)  # after each fold: a long run shows progress
    print(
        f"\nsame-album precision@5 of held-out tracks, {len(results)} of {args.folds} folds"
        f" (chance {collection['chance']:.3f}):"
    )
    for space in SPACES:
        s = summary[space]
        print(
            f"  {space:<31} {_mean_std(s['precision_at_5'], len(results)):<13}"
            f"   cosines {s['cosine_mean']['mean']:.2f} ± {s['cosine_std']['mean']:.2f},"
            f" effective rank {s['effective_rank']['mean']:.1f}"
        )
    print(f"wrote {args.out / 'results.md'} ({settings['wall_seconds'] / 60:.1f} min)")
    return {"summary": summary, "folds": results, "collection": collection, "settings": settings}


if __name__ == "__main__":
    main()
