"""Training checkpoints: everything needed to resume a run exactly, written atomically.

A checkpoint holds the model's kind, configuration and weights, the optimizer state, both
random-number generators, the training history so far, the best state, the training
configuration, the data's fingerprint and (for fine-tuning) the external ids of the rows.
:func:`load_checkpoint` only loads one into a model of the same kind and configuration, and,
given the data's fingerprint, only one trained on the same data.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from graph.errors import SnapshotError

CHECKPOINT_FORMAT = 1


class CheckpointError(SnapshotError):
    """A checkpoint is unreadable, corrupt, or belongs to another model / snapshot."""


def save_checkpoint(
    path, model: nn.Module, opt, rng, result, best_state, fingerprint, cfg, vocab=None
) -> Path:
    """Write everything needed to resume, atomically (temporary file + rename).

    ``result`` is the run's :class:`~gnn.trainer.TrainResult` and ``cfg`` its
    :class:`~gnn.trainer.TrainConfig` (a dataclass).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": CHECKPOINT_FORMAT,
        "model_kind": getattr(model, "kind", type(model).__name__),
        "model_config": model.config() if hasattr(model, "config") else {},
        "model_state": model.state_dict(),
        "optimizer": opt.state_dict(),
        "numpy_rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "result": result.to_dict(),
        "best_state": best_state,
        "fingerprint": fingerprint,
        "train_config": asdict(cfg),
        "vocab": vocab,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def restore_generators(state: dict, opt: torch.optim.Optimizer, rng: np.random.Generator) -> None:
    """Put the optimizer and both random-number generators back as :func:`save_checkpoint`
    found them (the model's weights are loaded by :func:`load_checkpoint`)."""
    opt.load_state_dict(state["optimizer"])
    rng.bit_generator.state = state["numpy_rng"]
    torch.set_rng_state(state["torch_rng"])


def read_checkpoint(path) -> dict:
    """Load a checkpoint file, or raise :class:`CheckpointError` saying what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: not a graphrec checkpoint (format {getattr(state, 'get', dict)('format')})"
        )
    missing = {"model_kind", "model_config", "model_state", "fingerprint"} - set(state)
    if missing:
        raise CheckpointError(f"{path}: checkpoint is missing {sorted(missing)}")
    return state


def load_checkpoint(path, *, model: nn.Module, expect_fingerprint: dict | None = None) -> dict:
    """Read a checkpoint and load its weights into ``model`` after checking they belong to it."""
    state = read_checkpoint(path)
    kind = getattr(model, "kind", type(model).__name__)
    if state["model_kind"] != kind:
        raise CheckpointError(f"{path}: checkpoint is for model {state['model_kind']!r}, not {kind!r}")
    if expect_fingerprint is not None:
        fp = state["fingerprint"]
        bad = {k: (fp.get(k), v) for k, v in expect_fingerprint.items() if fp.get(k) != v}
        if bad:
            shown = ", ".join(f"{k}: checkpoint {a!r} vs data {b!r}" for k, (a, b) in bad.items())
            raise CheckpointError(f"{path}: checkpoint was trained on other data ({shown})")
    cfg = model.config() if hasattr(model, "config") else {}
    diff = {k: (state["model_config"].get(k), v) for k, v in cfg.items() if state["model_config"].get(k) != v}
    if diff:
        shown = ", ".join(f"{k}: checkpoint {a!r} vs model {b!r}" for k, (a, b) in diff.items())
        raise CheckpointError(f"{path}: checkpoint does not match the model ({shown})")
    try:
        model.load_state_dict(state["model_state"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the model: {exc}") from None
    return state
