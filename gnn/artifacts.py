"""Versioned embedding artifacts: one directory per (model, snapshot, settings).

Layout of ``OUT/<version>/``::

    user_embeddings.npy    float32 (n_users, dim), row i = user_ids[i]
    tweet_embeddings.npy   float32 (n_tweets, dim), row i = tweet_ids[i]
    user_ids.npy           int64 external ids (the snapshot's vocabularies)
    tweet_ids.npy          int64
    config.json            model kind, task, hyper-parameters, snapshot_id, dims, sha256 of every array
    metrics.json           training history, validation metrics, timings
    snapshot.json          the snapshot it came from (id, statistics, where it was read)
    checkpoint.pt          model weights for fine-tuning (optional)
    features.npz           the fitted feature pipeline of the inductive model (optional)

``OUT/LATEST`` names the newest version. :func:`save_artifact` writes to a temporary
directory and renames it, so readers never see half an artifact; :func:`load_artifact`
verifies checksums, shapes and (when given) the snapshot id, and raises
:class:`~graph.errors.SnapshotError` naming the file that is wrong.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graph.errors import SnapshotError

log = logging.getLogger(__name__)

ARTIFACT_FORMAT = 1
ARRAYS = ("user_embeddings", "tweet_embeddings", "user_ids", "tweet_ids")


@dataclass
class Artifact:
    """A loaded embedding artifact."""

    path: Path
    user_vectors: np.ndarray
    tweet_vectors: np.ndarray
    user_ids: np.ndarray
    tweet_ids: np.ndarray
    config: dict
    metrics: dict = field(default_factory=dict)
    snapshot: dict = field(default_factory=dict)

    @property
    def version(self) -> str:
        return self.config["version"]

    @property
    def snapshot_id(self) -> str:
        return self.config["snapshot_id"]

    @property
    def checkpoint(self) -> Path | None:
        p = self.path / "checkpoint.pt"
        return p if p.is_file() else None


def settings_hash(settings: dict) -> str:
    """Short stable hash of the settings that decide the embeddings (not of seeds-free noise)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def version_name(model_kind: str, snapshot_id: str, settings: dict) -> str:
    return f"{model_kind}-{snapshot_id}-{settings_hash(settings)}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_artifact(
    out_dir: str | Path,
    *,
    user_vectors: np.ndarray,
    tweet_vectors: np.ndarray,
    user_ids: np.ndarray,
    tweet_ids: np.ndarray,
    model_kind: str,
    task: str,
    snapshot_id: str,
    settings: dict,
    metrics: dict | None = None,
    snapshot_info: dict | None = None,
    checkpoint: str | Path | None = None,
    extra_files: dict[str, Path] | None = None,
    version: str | None = None,
) -> Path:
    """Write an artifact under ``out_dir`` and point ``out_dir/LATEST`` at it; returns its path."""
    user_vectors = np.ascontiguousarray(user_vectors, np.float32)
    tweet_vectors = np.ascontiguousarray(tweet_vectors, np.float32)
    user_ids = np.ascontiguousarray(user_ids, np.int64)
    tweet_ids = np.ascontiguousarray(tweet_ids, np.int64)
    if len(user_vectors) != len(user_ids) or len(tweet_vectors) != len(tweet_ids):
        raise SnapshotError(
            f"embedding rows do not match the vocabularies: {len(user_vectors)} users / {len(user_ids)} ids, "
            f"{len(tweet_vectors)} tweets / {len(tweet_ids)} ids"
        )
    if user_vectors.shape[1] != tweet_vectors.shape[1]:
        raise SnapshotError(
            f"user and tweet dims differ: {user_vectors.shape[1]} vs {tweet_vectors.shape[1]}"
        )
    out_dir = Path(out_dir)
    version = version or version_name(model_kind, snapshot_id, {"task": task, **settings})
    final = out_dir / version
    tmp = out_dir / f".{version}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    arrays = {
        "user_embeddings": user_vectors,
        "tweet_embeddings": tweet_vectors,
        "user_ids": user_ids,
        "tweet_ids": tweet_ids,
    }
    sums = {}
    for name, arr in arrays.items():
        np.save(tmp / f"{name}.npy", arr)
        sums[f"{name}.npy"] = _sha256(tmp / f"{name}.npy")
    if checkpoint is not None:
        shutil.copyfile(checkpoint, tmp / "checkpoint.pt")
        sums["checkpoint.pt"] = _sha256(tmp / "checkpoint.pt")
    for name, src in (extra_files or {}).items():
        shutil.copyfile(src, tmp / name)
        sums[name] = _sha256(tmp / name)
    config = {
        "format": ARTIFACT_FORMAT,
        "version": version,
        "model": model_kind,
        "task": task,
        "snapshot_id": snapshot_id,
        "dim": int(user_vectors.shape[1]),
        "n_users": len(user_ids),
        "n_tweets": len(tweet_ids),
        "settings": settings,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sha256": sums,
    }
    (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True, default=_json_default))
    (tmp / "metrics.json").write_text(json.dumps(metrics or {}, indent=2, default=_json_default))
    (tmp / "snapshot.json").write_text(
        json.dumps({"snapshot_id": snapshot_id, **(snapshot_info or {})}, indent=2, default=_json_default)
    )
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    latest_tmp = out_dir / f".LATEST.tmp-{os.getpid()}"
    latest_tmp.write_text(version + "\n")
    os.replace(latest_tmp, out_dir / "LATEST")
    log.info("wrote embedding artifact %s", final)
    return final


def resolve(path: str | Path) -> Path:
    """An artifact directory, or a parent holding ``LATEST``."""
    path = Path(path)
    if (path / "config.json").is_file():
        return path
    latest = path / "LATEST"
    if latest.is_file():
        return path / latest.read_text().strip()
    raise SnapshotError(f"{path}: no embedding artifact here (no config.json and no LATEST)")


def load_artifact(path: str | Path, *, snapshot_id: str | None = None, verify: bool = True) -> Artifact:
    """Load and check an artifact. ``snapshot_id``: the snapshot the caller will use it with."""
    path = resolve(path)
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"{path / 'config.json'}: unreadable ({exc})") from None
    if config.get("format") != ARTIFACT_FORMAT:
        raise SnapshotError(f"{path}: artifact format {config.get('format')!r} is not {ARTIFACT_FORMAT}")
    if snapshot_id is not None and config.get("snapshot_id") != snapshot_id:
        raise SnapshotError(
            f"{path}: embeddings come from snapshot {config.get('snapshot_id')!r}, not {snapshot_id!r}; "
            f"re-run `graphrec embed` on this snapshot"
        )
    arrays = {}
    for name in ARRAYS:
        f = path / f"{name}.npy"
        if not f.is_file():
            raise SnapshotError(f"{f}: missing")
        if verify and config.get("sha256", {}).get(f.name) != _sha256(f):
            raise SnapshotError(f"{f}: checksum mismatch (the file was changed or is corrupt)")
        try:
            arrays[name] = np.load(f, mmap_mode="r")
        except ValueError as exc:
            raise SnapshotError(f"{f}: unreadable ({exc})") from None
    if verify and (path / "checkpoint.pt").is_file():
        if config.get("sha256", {}).get("checkpoint.pt") != _sha256(path / "checkpoint.pt"):
            raise SnapshotError(
                f"{path / 'checkpoint.pt'}: checksum mismatch (the file was changed or is corrupt)"
            )
    uv, tv = arrays["user_embeddings"], arrays["tweet_embeddings"]
    if uv.shape != (config["n_users"], config["dim"]) or tv.shape != (config["n_tweets"], config["dim"]):
        raise SnapshotError(f"{path}: array shapes {uv.shape} / {tv.shape} disagree with config.json")
    metrics = _read_json(path / "metrics.json")
    snapshot = _read_json(path / "snapshot.json")
    return Artifact(path, uv, tv, arrays["user_ids"], arrays["tweet_ids"], config, metrics, snapshot)


def find_artifact(
    root: str | Path, model_kind: str, snapshot_id: str, task: str, settings: dict
) -> Path | None:
    """The artifact of exactly these settings under ``root``, if one exists and loads."""
    path = Path(root) / version_name(model_kind, snapshot_id, {"task": task, **settings})
    if not (path / "config.json").is_file():
        return None
    try:
        load_artifact(path, snapshot_id=snapshot_id)
    except SnapshotError as exc:
        log.warning("ignoring unusable artifact %s: %s", path, exc)
        return None
    return path


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise SnapshotError(f"{path}: unreadable ({exc})") from None


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
