"""The synthetic collection: real decodable files, ground truth, playlists, genres, faults, determinism."""

import csv
import hashlib
import statistics
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiograph.errors import ConfigError
from audiograph.synth import FAULT_COLUMNS, TRACK_COLUMNS, synthesize

SMALL = {"tracks": 12, "genres": 9, "playlists": 4, "seconds": 2.0, "with_faults": True}
TAGGED = ("title", "artist", "album", "genre")


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """Twelve short tracks in the eight archetypes and one drawn genre."""
    out = tmp_path_factory.mktemp("small") / "collection"
    synthesize(out, seed=5, workers=2, **SMALL)
    return out


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """Thirty tracks in five genres, with every fault."""
    out = tmp_path_factory.mktemp("synth") / "collection"
    result = synthesize(out, tracks=30, genres=5, playlists=24, seconds=6.0, seed=7, with_faults=True, workers=2)
    return result, out


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def read_playlist(path: Path) -> tuple[str, list[tuple[int, str, str]]]:
    """(name, [(EXTINF seconds, EXTINF label, location)]) of an M3U8 file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#EXTM3U", path.name
    name, info, entries = None, None, []
    for line in lines[1:]:
        if line.startswith("#PLAYLIST:"):
            name = line.removeprefix("#PLAYLIST:")
        elif line.startswith("#EXTINF:"):
            seconds, label = line.removeprefix("#EXTINF:").split(",", 1)
            info = (int(seconds), label)
        elif line and not line.startswith("#"):
            assert info is not None, f"{path.name}: {line} has no #EXTINF"
            entries.append((*info, line))
            info = None
    return name, entries


def digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_same_arguments_give_identical_bytes_for_any_worker_count_and_another_seed_differs(small, tmp_path):
    first = digests(small)
    synthesize(small, seed=5, workers=1, **SMALL)  # over the earlier output
    assert digests(small) == first
    assert any(path.endswith(".ogg") for path in first)

    synthesize(tmp_path / "other", seed=6, **SMALL)
    other = digests(tmp_path / "other")
    assert other["tracks.csv"] != first["tracks.csv"]

    def listed_audio(folder, hashes):
        return {hashes[f"audio/{row['path']}"] for row in read_csv(folder / "tracks.csv")}

    assert not listed_audio(small, first) & listed_audio(tmp_path / "other", other)


def test_tags_survive_in_every_format_and_genre_including_drawn_ones(small):
    rows = read_csv(small / "tracks.csv")
    assert {r["genre"] for r in rows} >= {"Ambient", "Reggae", "genre-09"}
    # LAME stores non-ASCII text as Latin-1 once a tag needs ID3v2 (a genre outside ID3v1's list needs it).
    assert any(
        r["format"] == "mp3" and r["genre"] == "genre-09" and not (r["title"] + r["artist"] + r["album"]).isascii()
        for r in rows
    )
    for row in rows:
        with sf.SoundFile(small / "audio" / row["path"]) as f:
            tags = f.copy_metadata()
        assert {k: tags.get(k) for k in TAGGED} == {k: row[k] for k in TAGGED}


@pytest.mark.parametrize(
    "arguments",
    [{"tracks": 2, "genres": 3}, {"seconds": 0.0}, {"genres": 0}, {"playlists": -1}, {"workers": 0}],
)
def test_invalid_arguments_are_refused(tmp_path, arguments):
    with pytest.raises(ConfigError):
        synthesize(tmp_path / "out", **arguments)
    assert not (tmp_path / "out").exists()


def test_a_folder_holding_other_files_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        synthesize(tmp_path, tracks=1, genres=1, playlists=1)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_ground_truth_columns_and_ranges(collection):
    result, out = collection
    with open(out / "tracks.csv", encoding="utf-8") as f:
        assert f.readline().strip() == ",".join(TRACK_COLUMNS)
    rows = read_csv(out / "tracks.csv")
    assert len(rows) == 31  # 30 tracks and the duplicate copy
    assert result.tracks == 30  # the tracks asked for: the duplicate copy counts as a fault
    for row in rows:
        assert all(0 <= float(row[c]) <= 1 for c in ("energy", "valence", "popularity"))
    assert max(float(r["popularity"]) for r in rows) == 1.0
    assert len({r["genre"] for r in rows}) == 5


def test_every_listed_file_decodes_as_listed_with_its_tags(collection):
    _, out = collection
    rows = read_csv(out / "tracks.csv")
    for row in rows:
        path = out / "audio" / row["path"]
        with sf.SoundFile(path) as f:
            tags = f.copy_metadata()
            samples = f.read(dtype="float32", always_2d=True)
            assert (f.samplerate, f.channels) == (int(row["sample_rate"]), int(row["channels"]))
            assert f.format.lower() == row["format"] == path.suffix[1:]
        assert len(samples) / f.samplerate == pytest.approx(float(row["duration"]), abs=1e-3)
        assert 0.05 < np.max(np.abs(samples)) <= 1.0
        if f.channels == 2:
            assert not np.allclose(samples[:, 0], samples[:, 1], atol=1e-3)
        assert {k: tags.get(k) for k in TAGGED} == {k: row[k] for k in TAGGED}
        if not row["path"].startswith("Unsorted/"):
            assert int(tags["tracknumber"]) == int(path.name[:2])
    assert {r["format"] for r in rows} == {"mp3", "wav", "flac", "ogg"}
    assert len({r["sample_rate"] for r in rows}) >= 3
    assert {r["channels"] for r in rows} == {"1", "2"}
    durations = [float(r["duration"]) for r in rows]
    assert 0.75 * 6 - 0.01 <= min(durations) < max(durations) <= 1.25 * 6 + 0.01


def test_names_exercise_path_handling(collection):
    _, out = collection
    paths = [r["path"] for r in read_csv(out / "tracks.csv")]
    assert any(not p.isascii() for p in paths)
    assert any("'" in p for p in paths)
    assert all(len(p.split("/")) == 3 for p in paths if not p.startswith("Unsorted/"))


def test_ogg_pages_carry_a_fixed_serial_and_valid_crcs(collection):
    _, out = collection
    for path in (out / "audio").rglob("*.ogg"):
        data = path.read_bytes()
        start, serials = 0, set()
        while start < len(data):
            assert data[start : start + 4] == b"OggS"
            segments = data[start + 26]
            end = start + 27 + segments + sum(data[start + 27 : start + 27 + segments])
            page = data[start : start + 22] + bytes(4) + data[start + 26 : end]
            assert reference_ogg_crc(page) == int.from_bytes(data[start + 22 : start + 26], "little")
            serials.add(data[start + 14 : start + 18])
            start = end
        assert len(serials) == 1


def reference_ogg_crc(page: bytes) -> int:
    """Bitwise CRC-32, polynomial 0x04C11DB7, no reflection, initial value 0 (the Ogg checksum)."""
    crc = 0
    for byte in page:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if crc & 0x80000000 else (crc << 1) & 0xFFFFFFFF
    return crc


def test_playlists_parse_resolve_and_hold_no_duplicates(collection):
    result, out = collection
    rows = {r["path"]: r for r in read_csv(out / "tracks.csv")}
    broken = {r["path"]: r["kind"] for r in read_csv(out / "faults.csv") if r["kind"] in ("missing_file", "url")}
    files = sorted((out / "playlists").glob("*.m3u8"))
    assert len(files) == result.playlists == 24
    names, listed, broken_seen = set(), set(), []
    for file in files:
        name, entries = read_playlist(file)
        assert name and file.name == f"{file.name[:3]} {name}.m3u8"
        names.add(name)
        locations = [location for _, _, location in entries]
        assert len(locations) == len(set(locations))
        good = [e for e in entries if e[2] not in broken]
        broken_seen += [e[2] for e in entries if e[2] in broken]
        assert 1 <= len(good) <= len(rows) // 2
        for seconds, label, location in good:
            path = (file.parent / location).resolve()
            assert path.is_file()
            row = rows[path.relative_to((out / "audio").resolve()).as_posix()]
            assert label == f"{row['artist']} - {row['title']}"
            assert seconds == round(float(row["duration"]))
            listed.add(row["path"])
    assert len(names) == len(files)
    assert sorted(broken_seen) == sorted(broken) and set(broken.values()) == {"missing_file", "url"}
    assert not (out / "playlists" / next(p for p, k in broken.items() if k == "missing_file")).exists()
    duplicate = next(r["path"] for r in read_csv(out / "faults.csv") if r["kind"] == "duplicate")
    assert result.unplaylisted == 0 and listed == set(rows) - {duplicate}


def test_popular_tracks_appear_in_many_playlists(collection):
    _, out = collection
    counts = Counter(
        location
        for file in (out / "playlists").glob("*.m3u8")
        for _, _, location in read_playlist(file)[1]
        if location.startswith("../audio/")
    )
    rows = read_csv(out / "tracks.csv")
    per_track = [counts[f"../audio/{r['path']}"] for r in rows if not r["path"].startswith("Unsorted/")]
    assert max(per_track) >= 2 * statistics.median(per_track)
    popularity = [float(r["popularity"]) for r in rows if not r["path"].startswith("Unsorted/")]
    assert np.corrcoef(np.argsort(np.argsort(popularity)), np.argsort(np.argsort(per_track)))[0, 1] > 0.25


def test_genres_are_separable_from_audio_but_not_by_any_single_descriptor(collection):
    librosa = pytest.importorskip("librosa")
    _, out = collection
    rows = [r for r in read_csv(out / "tracks.csv") if not r["path"].startswith("Unsorted/")]
    features = []
    for row in rows:
        y, sr = librosa.load(out / "audio" / row["path"], sr=22050)
        spectrum = np.abs(librosa.stft(y, n_fft=1024, hop_length=512))
        mel_db = librosa.power_to_db(librosa.feature.melspectrogram(S=spectrum**2, sr=sr))
        mfcc = librosa.feature.mfcc(S=mel_db, n_mfcc=13)
        onset = librosa.onset.onset_strength(S=mel_db, sr=sr)
        descriptors = [
            librosa.feature.spectral_centroid(S=spectrum, sr=sr).mean(),
            librosa.feature.zero_crossing_rate(y).mean(),
            librosa.feature.rms(S=spectrum, frame_length=1024).mean(),
            onset.mean(),
            librosa.feature.tempo(onset_envelope=onset, sr=sr, hop_length=512)[0],
        ]
        features.append([*descriptors, *mfcc.mean(axis=1), *mfcc.std(axis=1)])
    features = np.array(features)
    genres = np.array([r["genre"] for r in rows])
    assert leave_one_out_accuracy(features, genres) >= 0.7  # chance is 0.2
    for column in range(5):
        assert leave_one_out_accuracy(features[:, [column]], genres) < 0.9

    # Energy cuts across genres: within each genre, more energy means brighter and louder.
    energy = np.array([float(r["energy"]) for r in rows])
    for column in (0, 2):  # centroid, rms
        centred = [features[genres == g, column] - features[genres == g, column].mean() for g in set(genres)]
        energies = [energy[genres == g] - energy[genres == g].mean() for g in set(genres)]
        assert np.corrcoef(np.concatenate(energies), np.concatenate(centred))[0, 1] > 0.25


def leave_one_out_accuracy(features: np.ndarray, labels: np.ndarray) -> float:
    """Nearest-centroid classification on standardised features, each sample left out of the centroids."""
    features = (features - features.mean(axis=0)) / (features.std(axis=0) + 1e-12)
    hits = 0
    for i in range(len(features)):
        rest = np.arange(len(features)) != i
        centroids = {g: features[rest & (labels == g)].mean(axis=0) for g in set(labels[rest])}
        hits += min(centroids, key=lambda g: np.linalg.norm(features[i] - centroids[g])) == labels[i]
    return hits / len(features)


def test_faulty_files_are_what_faults_csv_says(collection):
    result, out = collection
    audio = out / "audio"
    with open(out / "faults.csv", encoding="utf-8") as f:
        assert f.readline().strip() == ",".join(FAULT_COLUMNS)
    faults = {r["kind"]: r["path"] for r in read_csv(out / "faults.csv")}
    assert sorted(result.faults) == sorted((p, k) for k, p in faults.items())
    file_faults = {"empty", "truncated", "not_audio", "too_short", "silent", "unsupported", "duplicate"}
    assert set(faults) == file_faults | {"missing_file", "url"}
    assert any(faults[k].startswith("Unsorted/") for k in faults) and any(faults[k].count("/") == 2 for k in faults)

    assert (audio / faults["empty"]).stat().st_size == 0
    assert "<html>" in (audio / faults["not_audio"]).read_bytes().decode("ascii")
    assert (audio / faults["unsupported"]).suffix == ".m4a"
    assert (audio / faults["unsupported"]).read_bytes()[4:12] == b"ftypM4A "

    truncated = audio / faults["truncated"]
    decoded, _ = sf.read(truncated)
    assert sf.info(truncated).frames > 1.5 * len(decoded) > 0

    short, rate = sf.read(audio / faults["too_short"])
    assert len(short) / rate == pytest.approx(0.2, abs=0.01)
    silent, _ = sf.read(audio / faults["silent"])
    assert len(silent) > 0 and not np.any(silent)

    duplicate = (audio / faults["duplicate"]).read_bytes()
    rows = read_csv(out / "tracks.csv")
    copy = next(r for r in rows if r["path"] == faults["duplicate"])
    originals = [r for r in rows if r["path"] != copy["path"] and (audio / r["path"]).read_bytes() == duplicate]
    assert len(originals) == 1
    assert {k: v for k, v in originals[0].items() if k != "path"} == {k: v for k, v in copy.items() if k != "path"}

    assert faults["url"].startswith("http://")
    assert not (out / "playlists" / faults["missing_file"]).exists()
