"""DistributedDataParallel through torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK).

``torchrun --nproc_per_node=N -m aignet train ...`` on one machine; several machines use the same
command with torchrun's rendezvous options (``--nnodes``, ``--node_rank``, ``--rdzv_endpoint``).
NCCL on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:LOCAL_RANK`` when a GPU is visible, else ``cpu``."""
    if preference == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() \
            else torch.device("cpu")
    device = torch.device(preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device is cuda but no CUDA GPU is visible; use cpu or auto")
    return device


def setup(preference: str = "auto") -> DistInfo:
    """Initialise the process group when launched by torchrun; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(preference, local_rank)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world, local_rank, device)


def cleanup(info: DistInfo) -> None:
    """Tear the process group down (no-op for a single process)."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op for a single process).

    Called at the end of a successful run so that all ranks leave together: a gloo group
    destroyed on one rank while rank 0 is still writing its checkpoint aborts the process
    ("terminate called without an active exception"). Not called on errors, where a peer may be
    stuck in another collective.
    """
    if info.enabled and dist.is_initialized():
        dist.barrier()


def global_execution_rates(gates: Tensor, info: DistInfo) -> Tensor:
    """Per-layer execution rate over the global batch, differentiable across ranks.

    N ranks holding B/N images each get the same rates (and, after DDP's gradient averaging,
    the same gradients) as one process holding all B images.
    """
    local_sum = gates.float().sum(dim=0)
    if not info.enabled:
        return local_sum / gates.shape[0]
    count = torch.tensor([float(gates.shape[0])], device=gates.device)
    dist.all_reduce(count)
    return _AllReduceSum.apply(local_sum) / count


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose backward sums the incoming gradients over ranks too."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


def sum_across(values: Tensor, info: DistInfo) -> Tensor:
    """Sum a tensor of statistics over all ranks (in place; returns it)."""
    if info.enabled:
        dist.all_reduce(values)
    return values


def gather_objects(obj: object, info: DistInfo) -> list:
    """Every rank's ``obj``, in rank order (a one-element list for a single process)."""
    if not info.enabled:
        return [obj]
    out: list = [None] * info.world
    dist.all_gather_object(out, obj)
    return out
