"""The model registry: which model made which space, its config and metrics, and its saved weights, which
must lie in the models folder beside the store. Also the run folders of trainings in progress."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
from pathlib import Path

from audiograph.errors import ConfigError, StoreError, resolved_path
from audiograph.spaces import MAX_SPACE_NAME, MODEL_KINDS, SPACE_KINDS, is_plain_space_name
from audiograph.store.connection import Connection, path_text, utc_now

try:
    import fcntl
except ImportError:  # Windows: run folders are neither locked nor cleaned up
    fcntl = None


# Run folders new_id names (e.g. audio-encoder-20250101-120000-2): only these are ever removed.
_RUN_NAME = re.compile(r"^[a-z][\w.-]*-\d{8}-\d{6}(-\d+)?$")


def _run_marker(folder: Path, model_id: str) -> Path:
    """The file a live training run holds locked, beside its run folder."""
    return folder / f".{model_id}.lock"


def contained_checkpoint(path: str | os.PathLike | None, root: str | os.PathLike, what: str = "model") -> Path:
    """`path` as a checkpoint file that lies inside `root` once every symbolic link is resolved; otherwise
    a `StoreError` that says, in one line, why `what` was refused."""
    if not path:
        raise StoreError(f"{what}: no checkpoint registered")
    resolved, root = resolved_path(path, what), resolved_path(root, what)
    if not resolved.is_relative_to(root):
        raise StoreError(f"{what} refused: its checkpoint {path} lies outside {root}, the only folder models load from")
    if not resolved.exists():
        raise StoreError(f"{what}: checkpoint {path} is missing")
    return resolved


class ModelRegistry:
    """The `models` table, and the locks on run folders of trainings in progress."""

    def __init__(self, store: Connection):
        self.store = store
        self._run_locks: dict[str, tuple[int, Path]] = {}  # model id -> (locked descriptor, marker file)

    def register(
        self,
        model_id: str,
        kind: str,
        space: str,
        *,
        checkpoint: str | os.PathLike | None = None,
        config: dict | None = None,
        metrics: dict | None = None,
        current: bool = False,
    ) -> str:
        """Add (or update) a model. A checkpoint (a file or a saved model folder) must lie in the models
        folder, the only place models load from, and is kept relative to it (so that a store renamed or moved
        with its models folder keeps its models). With
        `current`, an existing model becomes the newest of its kind and space, the one searches use."""
        self.check_space(space, kind, model_id)
        if checkpoint is not None:
            resolved = Path(checkpoint).resolve()
            if not resolved.is_relative_to(self.store.models_dir.resolve()):
                raise StoreError(
                    f"model '{model_id}': checkpoint {checkpoint} is outside {self.store.models_dir}, where"
                    " registered checkpoints must be"
                )
            checkpoint = path_text(resolved.relative_to(self.store.models_dir.resolve()).as_posix())
        existing = self.get(model_id)
        row = {
            "id": model_id,
            "kind": kind,
            "space": space,
            "checkpoint": checkpoint,
            "config": json.dumps(config or {}, sort_keys=True),
            "metrics": json.dumps(metrics or {}, sort_keys=True),
            "created": existing["created"] if existing else utc_now(),
        }
        with self.store.transaction():
            if current and existing:  # a new row (and rowid) orders it after every other model
                self.store.execute("DELETE FROM models WHERE id = ?", [model_id])
            self.store.db["models"].upsert(row, pk="id")
        if not self.store.conn.in_transaction:  # else the caller's transaction may still roll it back
            self.release_run(model_id)
        return model_id

    def check_space(self, space: str, kind: str, model_id: str | None = None) -> None:
        """A `ConfigError` unless a `kind` model may fill `space`: each of audiograph's own spaces holds one kind
        of model (`SPACE_KINDS`), and any other space the kind of the models already registered for it; a new
        space takes a plain name (`is_plain_space_name`; one from an older store or another program keeps its)."""
        if (
            not is_plain_space_name(space)
            and not self.store.execute("SELECT 1 FROM models WHERE space = ? LIMIT 1", [space]).fetchone()
        ):
            raise ConfigError(
                f"space name {space!r}: a new space's name is 1 to {MAX_SPACE_NAME} characters, without / or \\"
                " or control characters, and not . or .."
            )
        owner = SPACE_KINDS.get(space)
        if owner == kind:
            return
        if owner is not None:
            holds = f"is audiograph's space for {owner} models"
        else:
            row = self.store.execute(
                "SELECT id, kind FROM models WHERE space = ? AND kind != ? AND id != ? LIMIT 1",
                [space, kind, model_id or ""],
            ).fetchone()
            if row is None:
                return
            holds = f"holds the vectors of {row[1]} model '{row[0]}'"
        raise ConfigError(f"space '{space}' {holds}; a {kind} model cannot fill it: choose another name")

    def get(self, model_id: str) -> dict | None:
        """A registry row with config and metrics parsed, and `checkpoint` as an absolute path."""
        rows = list(self.store.query("SELECT * FROM models WHERE id = ?", [model_id]))
        return self._parsed(rows[0]) if rows else None

    def require(self, model_id: str, kind: str | None = None, kind_name: str | None = None) -> dict:
        """`get(model_id)`, or a `ConfigError` when the registry has no such model or (with `kind`) it is of
        another kind (`kind_name`: how the message names the kind wanted)."""
        row = self.get(model_id)
        if row is None:
            raise ConfigError(f"{self.store.path}: no model '{model_id}' in the registry")
        if kind is not None and row["kind"] != kind:
            raise ConfigError(f"model '{model_id}' is a {row['kind']} model, not {kind_name or kind}")
        return row

    def latest(self, kind: str) -> dict | None:
        """The newest model of `kind` (one of `MODEL_KINDS`: audio-encoder, musig, descriptors, import), or None."""
        _check_kind(kind)
        rows = list(
            self.store.query("SELECT * FROM models WHERE kind = ? ORDER BY created DESC, rowid DESC LIMIT 1", [kind])
        )
        return self._parsed(rows[0]) if rows else None

    def rows(self, kind: str | None = None, space: str | None = None) -> list[dict]:
        """Every registered model (of `kind`, in `space`), oldest first."""
        if kind is not None:
            _check_kind(kind)
        where = [(c, v) for c, v in (("kind", kind), ("space", space)) if v is not None]
        sql = "SELECT * FROM models" + (" WHERE " + " AND ".join(f"{c} = ?" for c, _ in where) if where else "")
        return [self._parsed(r) for r in self.store.query(sql + " ORDER BY created, rowid", [v for _, v in where])]

    def ids_for_space(self, space: str) -> list[str]:
        """The ids of the models registered for `space`, newest first."""
        rows = self.store.execute(
            "SELECT id FROM models WHERE space = ? ORDER BY created DESC, rowid DESC", [space]
        ).fetchall()
        return [r[0] for r in rows]

    def checkpoint_file(self, row: dict) -> Path:
        """The checkpoint of a registry row. Refused with a `StoreError` unless it lies in the models
        folder once every symbolic link is resolved: a store names files, and must not name any elsewhere."""
        return contained_checkpoint(row.get("checkpoint"), self.store.models_dir, f"model '{row['id']}'")

    def new_id(self, kind: str, models_dir: str | os.PathLike | None = None) -> str:
        """A fresh model id, `<kind>-<UTC time>`, suffixed when a model or run folder already has it.

        The run folder of the new id is marked as in use until its model is registered or this process
        ends. Run folders that no live process uses and no registered model owns (a training run that was
        killed, or that failed) are removed first.
        """
        folder = Path(models_dir) if models_dir is not None else self.store.models_dir
        self._remove_abandoned_runs(folder)
        base = f"{kind}-{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}"
        model_id, n = base, 1
        while self.get(model_id) or (folder / model_id).exists() or _run_marker(folder, model_id).exists():
            n += 1
            model_id = f"{base}-{n}"
        self._claim_run(folder, model_id)
        return model_id

    def release_all(self) -> None:
        """Release every run folder this process claimed."""
        for model_id in list(self._run_locks):
            self.release_run(model_id)

    def _parsed(self, row: dict) -> dict:
        row = dict(row)
        with self.store.damaged(f"model {row['id']!r}'s registry row"):
            row["config"] = json.loads(row["config"] or "{}")
            row["metrics"] = json.loads(row["metrics"] or "{}")
            if not isinstance(row["config"], dict) or not isinstance(row["metrics"], dict):
                raise ValueError("its config and metrics must be JSON objects")
        if row["checkpoint"]:
            row["checkpoint"] = str(self.store.models_dir / row["checkpoint"])
        return row

    def _claim_run(self, folder: Path, model_id: str) -> None:
        if fcntl is None:
            return
        marker = _run_marker(folder, model_id)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(marker, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as e:
            raise StoreError(f"{folder}: cannot write the models folder ({e.strerror or e})") from None
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._run_locks[model_id] = (fd, marker)

    def release_run(self, model_id: str) -> None:
        """Stop marking `model_id`'s run folder as in use (`register` does it, unless inside a transaction)."""
        fd, marker = self._run_locks.pop(model_id, (None, None))
        if fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(marker)
            os.close(fd)

    def _remove_abandoned_runs(self, folder: Path) -> None:
        """Remove the run folders whose marker no live process holds and whose model is not registered, and the
        markers left by registered models (a run stopped between its registration and the marker's removal).
        A folder without a marker (a registered model's, or one this code never made) is never touched."""
        if fcntl is None or not folder.is_dir():
            return
        registered = {r[0] for r in self.store.execute("SELECT id FROM models")}
        for marker in sorted(folder.glob(".*.lock")):
            model_id = marker.name[1 : -len(".lock")]
            if model_id in self._run_locks or not _RUN_NAME.match(model_id):
                continue
            try:
                fd = os.open(marker, os.O_RDWR)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a run in progress in another process
                os.close(fd)
                continue
            # The run may have registered its model and released this marker between the reads above and the
            # lock: an unlinked marker, or a model registered since, keeps its folder.
            if os.fstat(fd).st_nlink == 0 or model_id not in registered and self.get(model_id):
                os.close(fd)
                continue
            run = folder / model_id
            if model_id not in registered and run.is_dir() and not run.is_symlink():
                shutil.rmtree(run, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.unlink(marker)
            os.close(fd)


def _check_kind(kind: str) -> None:
    """A `ConfigError` for a kind no model has (a space's name given for its kind, say), which found nothing."""
    if kind not in MODEL_KINDS:
        hint = f"; the '{kind}' space holds models of kind '{SPACE_KINDS[kind]}'" if kind in SPACE_KINDS else ""
        raise ConfigError(f"unknown model kind {kind!r} (kinds: {', '.join(MODEL_KINDS)}){hint}")
