"""Data-parallel training over ``torch.distributed`` (gloo on CPU, NCCL on GPUs).

The :class:`~gnn.trainer.Trainer` is the one training loop; when a process group is initialised
it runs data-parallel: every rank holds the whole model (the propagation over the graph is
replicated: it is the model), rank 0's permutation of the positives is broadcast each epoch and
each rank computes the loss of its share (every ``world``-th positive) of each global batch,
normalised by the global batch size, so the all-reduced (summed) gradients are those of the whole
batch. Every rank then takes the same optimizer step and the replicas stay identical. Negatives
are drawn per rank (rank 0 with the run's seed, as a single process does). Rank 0 alone writes
checkpoints; whoever launched the ranks writes the artifact from rank 0's result.

Launch with ``torchrun`` (it sets ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``/``MASTER_PORT``; call
:func:`init_from_env`) or through a cluster engine that starts N processes and does the same
(``graphrec.dist_train`` on Ray). One process (no group) is the default and runs as before.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist

from graph.errors import InputError


def active() -> bool:
    """Whether a process group with more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_size() -> tuple[int, int]:
    """(this process's rank, the number of ranks); (0, 1) without a process group."""
    if not active():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def default_backend() -> str:
    """NCCL when this process has a GPU, else gloo."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_from_env(backend: str | None = None) -> bool:
    """Join the process group the environment describes (``WORLD_SIZE`` > 1, as ``torchrun``
    sets it); returns whether training is data-parallel. A no-op without ``WORLD_SIZE``."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size < 1:
        raise InputError(f"WORLD_SIZE must be >= 1, got {size}")
    if size == 1 or (dist.is_initialized()):
        return active()
    for var in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise InputError(f"WORLD_SIZE={size} but {var} is not set (launch with torchrun)")
    backend = backend or default_backend()
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return True


def broadcast_array(arr: np.ndarray) -> np.ndarray:
    """Rank 0's ``arr`` on every rank (same shape and dtype everywhere)."""
    if not active():
        return arr
    t = torch.from_numpy(np.ascontiguousarray(arr)).to(_comm_device())
    dist.broadcast(t, src=0)
    return t.cpu().numpy()


def broadcast_parameters(model: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers into every rank's model (identical replicas at the start)."""
    if not active():
        return
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            dist.broadcast(t.data, src=0)


def all_reduce_gradients(params: list[torch.nn.Parameter]) -> None:
    """Sum every parameter's gradient over the ranks, in one flat buffer (one collective per step).
    A rank whose share of the batch was empty contributes zeros."""
    if not active():
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def all_reduce_sum(value: float) -> float:
    """``value`` summed over the ranks."""
    if not active():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item())


def _comm_device() -> torch.device:
    return torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")
