"""A store from someone else runs no code: checkpoints load with the weights-only unpickler, and only from the
store's own `<store>.models/` folder; a refused model is explained in one line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiograph.errors import StoreError
from audiograph.store import Store


class _Payload:
    """Unpickled in full, this runs a shell command: the exploit a malicious store would carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def _malicious_checkpoint(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, "hyper_parameters": {"encoder": _Payload(marker)}}, path)
    return path


def _register(store: Store, model_id: str, kind: str, space: str, checkpoint: str) -> None:
    """A registry row as a foreign store could hold it (written directly: `register_model` refuses these)."""
    store.db.execute(
        "INSERT INTO models (id, kind, space, checkpoint, config, metrics, created) VALUES (?, ?, ?, ?, '{}', '{}', ?)",
        [model_id, kind, space, checkpoint, "2999-01-01T00:00:00+00:00"],
    )
    store.db.conn.commit()


def test_the_payload_is_live(tmp_path):
    """The test checkpoint really runs its command when unpickled in full, so the tests below can fail."""
    marker = tmp_path / "ran"
    path = _malicious_checkpoint(tmp_path / "evil.ckpt", marker)
    code = f"import torch; torch.load({str(path)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    assert marker.exists()


def test_a_malicious_checkpoint_runs_nothing_and_is_refused_in_one_line(store_copy, synth_collection, tmp_path, capsys):
    from audiograph.cli import main
    from audiograph.pipelines.encoders import resolve_acoustic_model

    marker = tmp_path / "code-ran"
    store = store_copy
    checkpoint = _malicious_checkpoint(store.models_dir / "audio-encoder-29990101-000000" / "last.ckpt", marker)
    _register(
        store,
        "audio-encoder-29990101-000000",
        "audio-encoder",
        "acoustic",
        str(checkpoint.relative_to(store.models_dir)),
    )

    with pytest.raises(StoreError, match="refused: checkpoint .* holds objects other than weights") as info:
        resolve_acoustic_model(store, "latest")
    assert "posix.system" in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()

    # embed-audio picks the newest encoder: it stops before any work, saying why in one line.
    code = main(["embed-audio", str(synth_collection / "audio"), "--db", str(store.path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "model 'audio-encoder-29990101-000000' refused" in err[0]
    assert not marker.exists()


def test_a_malicious_musig_checkpoint_is_refused_by_query_and_embed_musig(store_copy, tmp_path, capsys):
    from audiograph.cli import main

    marker = tmp_path / "code-ran"
    store = store_copy
    checkpoint = _malicious_checkpoint(store.models_dir / "musig-29990101-000000" / "last.ckpt", marker)
    _register(store, "musig-29990101-000000", "musig", "musig", str(checkpoint.relative_to(store.models_dir)))
    ids = [t["id"] for t in store.tracks.rows()]
    store.vectors.put("musig", "musig-29990101-000000", {t: np.ones(8, np.float32) for t in ids})
    new_file = tmp_path / "new.wav"
    t = np.arange(3 * 22050) / 22050
    sf.write(new_file, (0.3 * np.sin(2 * np.pi * 987 * t)).astype(np.float32), 22050)

    for argv in (["query", str(new_file)], ["embed-musig"]):
        code = main([*argv, "--db", str(store.path)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and len(err) == 1, err
        assert "model 'musig-29990101-000000' refused: checkpoint" in err[0] and str(checkpoint) in err[0]
        assert "holds objects other than weights" in err[0]
    assert not marker.exists()


def test_checkpoints_outside_the_models_folder_are_refused(store_copy, tmp_path):
    from audiograph.pipelines.encoders import resolve_acoustic_model

    store = store_copy
    outside = tmp_path / "elsewhere" / "model.ckpt"
    outside.parent.mkdir()
    torch.save({"state_dict": {}, "hyper_parameters": {}}, outside)  # harmless, but not the store's
    link = store.models_dir / "audio-encoder-29990101-000002" / "last.ckpt"
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    for n, checkpoint in enumerate([str(outside), "../elsewhere/model.ckpt", str(link.relative_to(store.models_dir))]):
        _register(store, f"audio-encoder-2999010{n}-000000", "audio-encoder", "acoustic", checkpoint)
        with pytest.raises(StoreError, match="refused: its checkpoint .* lies outside .*models"):
            resolve_acoustic_model(store, f"audio-encoder-2999010{n}-000000")
    with pytest.raises(StoreError, match="outside"):
        store.models.register("mine", "audio-encoder", "acoustic", checkpoint=outside)


def test_no_module_unpickles_in_full():
    """No source file loads a checkpoint with weights_only=False (or without saying weights_only)."""
    package = Path(__file__).resolve().parents[1] / "audiograph"
    for path in package.rglob("*.py"):
        text = path.read_text()
        assert "weights_only=False" not in text, path
        for line in text.splitlines():
            if "torch.load(" in line or "load_from_checkpoint(" in line:
                assert "weights_only=True" in line, f"{path}: {line.strip()}"


def test_files_linked_out_of_a_model_folder_are_refused(tmp_path):
    from audiograph.models import AcousticModel

    folder = AcousticModel().save(tmp_path / "model")
    elsewhere = tmp_path / "elsewhere.pt"
    (folder / "weights.pt").rename(elsewhere)
    (folder / "weights.pt").symlink_to(elsewhere)  # weights-only still, but read from outside the folder
    with pytest.raises(StoreError, match="links out of its folder"):
        AcousticModel.load(folder)


@pytest.mark.parametrize("name", ["../victim", "ABSOLUTE", "a/b"])
def test_a_space_name_from_a_store_chooses_no_folder(store_copy, tmp_path, name):
    """A space's name names its search caches' folder: a foreign store's "../x" or absolute name must keep
    every file under `<store>.index/` and delete nothing elsewhere, and no new space may take such a name."""
    from audiograph.errors import ConfigError
    from audiograph.store.ann import space_cache_folder

    store = store_copy
    victim = tmp_path / "victim"
    if name == "ABSOLUTE":
        name = str(victim)
    (victim / "exact").mkdir(parents=True)
    notes = victim / "exact" / "my-notes.txt"
    notes.write_text("keep me")
    store.db.execute(
        "INSERT INTO vectors SELECT ?, track_id, model_id, content_hash, vector, updated FROM vectors WHERE space = ?",
        [name, "descriptors"],
    )
    store.db.conn.commit()
    before = {p for p in tmp_path.rglob("*")}
    ids, matrix = store.vectors.matrix(name)
    hits = store.vectors.similar(name, matrix[0], k=3)
    assert len(hits) == 3
    made = {p for p in tmp_path.rglob("*")} - before
    index_folder = Path(f"{store.path}.index")
    assert made and all(p.is_relative_to(index_folder) for p in made), made
    assert notes.read_text() == "keep me"
    with pytest.raises(ConfigError, match="space name"):
        store.models.check_space(name, "import")
    for plain in ("Audio Features", "énergie", "musig:v2"):  # names users give stay theirs, folder and all
        store.models.check_space(plain, "import")
        assert space_cache_folder(store.path, plain).name == plain
    _register(store, "import-29990101-000000", "import", name, None)  # a space an older store already holds
    store.models.check_space(name, "import")


def _edited_acoustic_folder(tmp_path, edit):
    import json

    from audiograph.audio.config import AudioConfig
    from audiograph.models import AcousticModel

    folder = AcousticModel(AudioConfig(n_mels=32), {"embedding_dim": 16}).save(tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    config = edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(
    "edit",
    [
        lambda c: [1, 2],
        lambda c: {**c, "audio": {**c["audio"], "n_mels": "32"}},
        lambda c: {**c, "audio": {**c["audio"], "n_mels": 5_000_000}},
        lambda c: {**c, "encoder": {**c["encoder"], "evil": 1}},
        lambda c: {k: v for k, v in c.items() if k != "audio"},
        lambda c: {**c, "descriptor_weight": 5},
        lambda c: {**c, "encoder": {**c["encoder"], "embedding_dim": 1_000_000_000}},
    ],
    ids=["not-an-object", "text-mels", "huge-mels", "unknown-key", "no-audio", "weight-range", "huge-layer"],
)
def test_a_model_folder_whose_settings_do_not_fit_is_refused_in_one_line(tmp_path, edit):
    """Settings edited by someone else: a wrong type, an unknown or missing key, a value out of range, or a
    size that would allocate gigabytes: each is a `StoreError` naming the folder, and nothing large is built
    (the huge layer is compared on the meta device with the weights before anything is allocated)."""
    from audiograph.models import AcousticModel

    folder = _edited_acoustic_folder(tmp_path, edit)
    with pytest.raises(StoreError) as error:
        AcousticModel.load(folder)
    assert str(folder) in str(error.value) and "\n" not in str(error.value)


def test_musig_weights_of_another_shape_are_refused_in_one_line(tmp_path):
    from audiograph.models.musig import MusigModel
    from audiograph.musig.features import FeatureSpec

    folder = MusigModel(FeatureSpec([]), 8, 4, in_channels=6).save(tmp_path / "musig")
    weights = torch.load(folder / "weights.pt", weights_only=True)
    weights["aggregator.convs.0.lin_l.weight"] = torch.zeros(8, 7)
    torch.save(weights, folder / "weights.pt")
    with pytest.raises(StoreError, match=r"convs\.0\.lin_l\.weight: the settings make \(8, 6\), the weights hold"):
        MusigModel.load(folder)


def test_a_symlink_loop_for_a_checkpoint_is_refused_in_one_line(store_copy):
    from audiograph.pipelines.encoders import resolve_acoustic_model

    store = store_copy
    store.models_dir.mkdir(exist_ok=True)
    (store.models_dir / "loop1").symlink_to(store.models_dir / "loop2")
    (store.models_dir / "loop2").symlink_to(store.models_dir / "loop1")
    _register(store, "audio-encoder-29990101-000009", "audio-encoder", "acoustic", "loop1")
    with pytest.raises(StoreError, match="cannot be resolved"):
        resolve_acoustic_model(store, "audio-encoder-29990101-000009")


def test_non_finite_vectors_are_said_not_searched(store_copy):
    """A NaN in a stored vector (a foreign or damaged store) or in a query's vector is a one-line error, not a
    ranking of NaN scores."""
    store = store_copy
    ids, matrix = store.vectors.matrix("descriptors")
    with pytest.raises(StoreError, match="query's vector is not finite"):
        store.vectors.similar("descriptors", np.full(matrix.shape[1], np.nan, np.float32))
    store.db.execute(
        "UPDATE vectors SET vector = ? WHERE space = 'descriptors' AND track_id = ?",
        [np.full(matrix.shape[1], np.nan, np.float32).tobytes(), ids[1]],
    )
    store.db.execute("UPDATE space_versions SET version = version + 1 WHERE space = 'descriptors'")
    store.db.conn.commit()
    fresh = Store(store.path)
    with pytest.raises(StoreError, match=rf"1 'descriptors' vectors of model .* are damaged \(track {ids[1]} is not"):
        fresh.vectors.similar("descriptors", matrix[0], k=3)


def _searchable_store(path: Path, n: int = 12) -> tuple[Store, np.ndarray]:
    from audiograph.store.tracks import TrackRecord

    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((n, 4)).astype(np.float32)
    store = Store(path)
    store.models.register("d1", "descriptors", "descriptors", config={"standardize": True})
    store.tracks.write(
        [
            TrackRecord(id=f"t{i}", collection="c", path=f"/c/{i}.mp3", vectors={"descriptors": ("d1", vectors[i])})
            for i in range(n)
        ]
    )
    return store, vectors


def test_a_cache_folder_linked_elsewhere_deletes_and_writes_nothing_there(tmp_path):
    """A store handed over with `<db>.index/<space>/exact` linked to the victim's folder: the first search
    saved its cache there and then cleared every file named like an old cache file (`a-b.c`)."""
    store, vectors = _searchable_store(tmp_path / "s.db")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "Artist - Song.mp3").write_bytes(b"music")
    (victim / "matrix-0123456789abcdef.npy").write_bytes(b"not a cache")
    (tmp_path / "s.db.index" / "descriptors").mkdir(parents=True)
    (tmp_path / "s.db.index" / "descriptors" / "exact").symlink_to(victim)
    assert store.vectors.similar("descriptors", vectors[3], k=1)[0]["track_id"] == "t3"
    assert sorted(p.name for p in victim.iterdir()) == ["Artist - Song.mp3", "matrix-0123456789abcdef.npy"]
    store.close()


def test_a_link_planted_at_a_cache_files_name_is_replaced_not_written_through(tmp_path):
    from audiograph.store.index import state_token

    store, vectors = _searchable_store(tmp_path / "s.db")
    state = {"model_id": "d1", "version": store.vectors.version("descriptors"), "standardize": True}
    exact = tmp_path / "s.db.index" / "descriptors" / "exact"
    exact.mkdir(parents=True)
    bashrc = tmp_path / "bashrc"
    bashrc.write_text("# the victim's shell start-up\n")
    (exact / f"ids-{state_token(state)}.json").symlink_to(bashrc)
    assert store.vectors.similar("descriptors", vectors[5], k=1)[0]["track_id"] == "t5"
    assert bashrc.read_text() == "# the victim's shell start-up\n"
    assert not (exact / f"ids-{state_token(state)}.json").is_symlink()
    store.close()
    reopened = Store(tmp_path / "s.db")  # and the cache it wrote instead is read back
    assert reopened.vectors.similar("descriptors", vectors[5], k=1)[0]["track_id"] == "t5"
    reopened.close()


@pytest.mark.parametrize(
    "damage", ["state_list", "deep_state", "ids_dicts", "ids_short", "ids_null", "mean_shape", "nan_mean"]
)
def test_a_cache_not_as_written_is_rebuilt_from_the_store(tmp_path, damage):
    """Each of these gave a traceback or wrong hits; a cache is a copy of the store, read again when it is off."""
    store, vectors = _searchable_store(tmp_path / "s.db")
    store.vectors.index("descriptors")
    store.close()
    exact = tmp_path / "s.db.index" / "descriptors" / "exact"
    ids_file, mean_file = next(exact.glob("ids-*.json")), next(exact.glob("mean-*.npy"))
    if damage == "state_list":
        (exact / "state.json").write_text("[1, 2]")
    elif damage == "deep_state":
        (exact / "state.json").write_text("[" * 100_000 + "]" * 100_000)
    elif damage == "ids_dicts":
        ids_file.write_text(json.dumps([{"id": i} for i in range(12)]))
    elif damage == "ids_short":
        ids_file.write_text(json.dumps([f"t{i}" for i in range(11)]))
    elif damage == "ids_null":
        ids_file.write_text("null")
    else:
        np.save(
            mean_file,
            np.zeros(3 if damage == "mean_shape" else 4, np.float32) + (np.nan if damage == "nan_mean" else 0),
        )
    reopened = Store(tmp_path / "s.db")
    hits = reopened.vectors.similar("descriptors", vectors[7], k=1)
    assert hits[0]["track_id"] == "t7" and np.isfinite(hits[0]["score"])
    reopened.close()


@pytest.mark.parametrize("damage", ["scale_missing", "scale_linked"])
def test_a_standardised_cache_without_its_statistics_is_rebuilt_not_searched_raw(tmp_path, damage):
    """A cache of a z-scored space whose scale file was gone (or a link) was read as a raw one: a descriptor
    space searched without its z-scores ranks by its largest column alone."""
    from audiograph.store.tracks import TrackRecord

    vectors = np.random.default_rng(8).standard_normal((30, 4)).astype(np.float32) * [1000, 1, 1, 1]
    store = Store(tmp_path / "s.db")
    store.models.register("d1", "descriptors", "descriptors", config={"standardize": True})
    records = [
        TrackRecord(f"t{i}", "c", f"/c/{i}.mp3", vectors={"descriptors": ("d1", v)}) for i, v in enumerate(vectors)
    ]
    store.tracks.write(records)
    expected = [h["track_id"] for h in store.vectors.similar("descriptors", vectors[3], k=29)]
    store.close()
    scale_file = next((tmp_path / "s.db.index" / "descriptors" / "exact").glob("scale-*.npy"))
    scale_file.unlink()
    if damage == "scale_linked":
        elsewhere = tmp_path / "elsewhere.npy"
        np.save(elsewhere, np.ones(4, np.float32))
        scale_file.symlink_to(elsewhere)
    reopened = Store(tmp_path / "s.db")
    assert [h["track_id"] for h in reopened.vectors.similar("descriptors", vectors[3], k=29)] == expected
    reopened.close()


def test_a_store_without_its_version_triggers_searches_its_current_vectors(tmp_path):
    """Without the triggers, a write no longer changes the space's version, and a cache of the vectors before it
    was taken as current: new tracks were never found."""
    store, vectors = _searchable_store(tmp_path / "s.db")
    store.vectors.index("descriptors")
    for trigger in ("vectors_inserted", "vectors_updated", "vectors_deleted"):
        store.execute(f"DROP TRIGGER {trigger}")
    store.conn.commit()
    store.vectors.put("descriptors", "d1", {"t3": -vectors[3]})
    store.close()
    reopened = Store(tmp_path / "s.db")
    assert reopened.vectors.similar("descriptors", -vectors[3], k=1)[0]["track_id"] == "t3"
    reopened.close()


def _edited_musig_folder(tmp_path, edit):
    from audiograph.models.musig import MusigModel
    from audiograph.musig.features import FeatureSpec

    spec = FeatureSpec(
        ["audio", "genre", "popularity"],
        spaces={"audio": "descriptors"},
        models={"audio": "descriptors-v1"},
        center={"audio": [0.0] * 4, "genre": [0.5, 0.5], "popularity": [1.0, 2.0]},
        scale={"audio": [1.0] * 4, "genre": [0.5, 0.5], "popularity": [1.0, 1.0]},
        genres=["jazz", "rock"],
    )
    folder = MusigModel(spec, 8, 4, similarity_group="audio").save(tmp_path / "musig")
    config = edit(json.loads((folder / "config.json").read_text()))
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _features(edit):
    return lambda c: {**c, "features": edit(c["features"])}


@pytest.mark.parametrize(
    "edit",
    [
        lambda c: {**c, "dropout": "0.5"},
        lambda c: {**c, "dropout": True},
        lambda c: {**c, "skip": "no"},
        lambda c: {**c, "hidden_channels": 8.5},
        lambda c: {**c, "similarity_group": ["audio"]},
        _features(lambda f: [1, 2]),
        _features(lambda f: {**f, "evil": 1}),
        _features(lambda f: {**f, "groups": ["audio", "audio", "genre", "popularity"]}),
        _features(lambda f: {**f, "groups": ["audio", "lyrics", "popularity"]}),
        _features(lambda f: {**f, "center": {**f["center"], "audio": "abcd"}}),
        _features(lambda f: {**f, "center": {**f["center"], "audio": [0, 0, 0, float("nan")]}}),
        _features(lambda f: {**f, "scale": {**f["scale"], "audio": [1, 1, 1, 0]}}),
        _features(lambda f: {**f, "scale": {**f["scale"], "genre": [1.0]}}),
        _features(lambda f: {**f, "genres": ["jazz", 7]}),
        _features(lambda f: {**f, "spaces": {"audio": 3}}),
        _features(lambda f: {**f, "popularity_model": {"x": 1}}),
        _features(lambda f: {**f, "minimum": {"audio": [0] * 4}, "maximum": "x"}),
    ],
)
def test_a_musig_folder_whose_settings_do_not_fit_is_refused_in_one_line(tmp_path, edit):
    """A MUSIG model's settings and feature spec from elsewhere: text for a number, a statistic that is not a
    finite number or not as long as its features, a zero scale, an unknown group or key. Each was built (and
    failed later, when features were scaled with it, or never: a string scale) or failed with a traceback;
    each is a `StoreError` naming the folder."""
    from audiograph.models.musig import MusigModel

    assert MusigModel.load(_edited_musig_folder(tmp_path / "good", lambda c: c)).spec.genres == ["jazz", "rock"]
    folder = _edited_musig_folder(tmp_path, edit)
    with pytest.raises(StoreError) as error:
        MusigModel.load(folder)
    assert str(folder) in str(error.value) and "\n" not in str(error.value)


def test_a_musig_model_of_features_built_elsewhere_builds_none_for_new_tracks():
    """A spec without statistics (an evaluation's, whose features were standardised before training) loads, and
    is refused in one line where features of new tracks would be built with it (a KeyError before)."""
    from audiograph.errors import ConfigError
    from audiograph.musig.features import FeatureSpec
    from audiograph.pipelines.encoders import file_features

    spec = FeatureSpec.from_dict({"groups": ["audio", "popularity"]})
    assert not spec.fitted and FeatureSpec.from_dict(FeatureSpec([]).to_dict()).fitted
    with pytest.raises(ConfigError, match="trained on features built elsewhere"):
        file_features(None, spec, None)


def _recompressed(path):
    """The torch archive at `path` rewritten with deflated members."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in members:
            archive.writestr(info.filename, data, compress_type=zipfile.ZIP_DEFLATED)


def test_compressed_weights_are_refused_before_they_are_inflated(tmp_path):
    """torch reads deflated members too: a weights.pt of a few hundred kilobytes inflated to 400 MB of zeros (a
    crafted one, to many gigabytes) before any shape was compared. torch writes members stored; others are
    refused in one line, read or not."""
    from audiograph.models.musig import MusigModel
    from audiograph.musig.features import FeatureSpec

    folder = MusigModel(FeatureSpec([]), 8, 4, in_channels=6).save(tmp_path / "musig")
    weights = torch.load(folder / "weights.pt", weights_only=True)
    torch.save({**weights, "huge": torch.zeros(100_000_000)}, folder / "weights.pt")
    _recompressed(folder / "weights.pt")
    assert (folder / "weights.pt").stat().st_size < 1_000_000
    with pytest.raises(StoreError, match="holds compressed members") as error:
        MusigModel.load(folder)
    assert str(folder / "weights.pt") in str(error.value) and "\n" not in str(error.value)


def test_a_musig_model_of_the_min_max_era_loads_with_its_genres_unscaled(tmp_path):
    """Saved before z-scoring, a spec held min-max statistics and none for the one-hot genres, which were not
    scaled: the full check refused such a model of the project's own, and before it the genres had no
    statistics, so building a new track's features failed."""
    from audiograph.models.musig import MusigModel
    from audiograph.musig.features import FeatureSpec

    legacy = {
        "groups": ["audio", "genre", "popularity"],
        "spaces": {"audio": "descriptors"},
        "models": {"audio": "d1"},
        "minimum": {"audio": [0.0] * 4, "popularity": [0.0, 0.0]},
        "maximum": {"audio": [2.0] * 4, "popularity": [3.0, 4.0]},
        "genres": ["jazz", "rock"],
        "popularity_model": None,
    }
    spec = FeatureSpec.from_dict(legacy)
    assert spec.center["genre"] == [0.0, 0.0] and spec.scale["genre"] == [1.0, 1.0]
    assert spec.scale["popularity"] == [3.0, 4.0] and spec.num_features == 8
    np.testing.assert_array_equal(spec.standardize("genre", spec.one_hot(["rock"])), [[0.0, 1.0]])
    model = MusigModel.from_settings({"in_channels": 8, "hidden_channels": 8, "out_channels": 4, "features": legacy})
    assert model.architecture["in_channels"] == 8
    # Damaged ones are refused in one line, not with a traceback; a statistic of no group is left out.
    from audiograph.errors import ConfigError

    for damaged in ({**legacy, "genres": 3}, {**legacy, "groups": "audio"}, {**legacy, "maximum": {"audio": [1.0]}}):
        with pytest.raises(ConfigError):
            FeatureSpec.from_dict(damaged)
    assert "x" not in FeatureSpec.from_dict({**legacy, "minimum": {**legacy["minimum"], "x": [1.0]}}).center
