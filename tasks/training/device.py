"""Where training runs: one decision, `resolve(device)`, for every training and embedding pass.

    placement = resolve("auto")           # Placement(device, dtype, backend), a 3-tuple
    device, dtype, backend = placement    # cuda:<LOCAL_RANK>, bfloat16, nccl  |  cpu, float32, gloo
    rank, world_size = world()

- `auto`: CUDA when torch sees a GPU, else the CPU.
- `cuda`: CUDA in bfloat16 mixed precision (the master weights stay float32: the Trainer's `bf16`
  autocast), one process per GPU under torchrun/deepspeed (`LOCAL_RANK` picks the GPU), NCCL between
  processes. Asking for it without a GPU, or with more processes on this node than GPUs, is an error
  that says so (a silent fall-back to the CPU would train for days where minutes were planned).
- `cpu`: float32, gloo between processes (the shipped default on this machine; byte-identical
  re-runs are checked here).
"""

from __future__ import annotations

import contextlib
import os
from typing import Literal, NamedTuple

import torch

Device = Literal["auto", "cpu", "cuda"]
DEVICES = ("auto", "cpu", "cuda")


class DeviceError(RuntimeError):
    pass


class Placement(NamedTuple):
    device: torch.device
    dtype: torch.dtype            # the compute dtype (bf16 autocast on CUDA); weights stay float32
    backend: str                  # torch.distributed backend between processes

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def describe(self) -> str:
        """'cpu/float32' or 'cuda/bfloat16' (no GPU index: part of run keys, same on every rank)."""
        return f"{self.device.type}/{str(self.dtype).removeprefix('torch.')}"


def world() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment (torchrun/deepspeed set both)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def resolve(device: str = "auto") -> Placement:
    """(torch.device, compute dtype, distributed backend) for a `device` param (see module docstring)."""
    if device not in DEVICES:
        raise DeviceError(f"device must be one of {DEVICES}, got {device!r}")
    has_cuda = torch.cuda.is_available()
    if device == "auto":
        device = "cuda" if has_cuda else "cpu"
    if device == "cpu":
        return Placement(torch.device("cpu"), torch.float32, "gloo")
    if not has_cuda:
        raise DeviceError("device=cuda but torch sees no GPU (torch.cuda.is_available() is False); "
                          "use device=auto or device=cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if local_rank >= torch.cuda.device_count():
        raise DeviceError(f"process LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} GPU(s) "
                          "visible: launch one process per GPU")
    return Placement(torch.device("cuda", local_rank), torch.bfloat16, "nccl")


def autocast(device: torch.device):
    """Mixed precision for a forward pass outside the Trainer (held-out perplexity, embeddings) on
    the device the model sits on: bf16 on CUDA, as the Trainer trains there; nothing on the CPU."""
    if torch.device(device).type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(batch: dict, device: torch.device) -> dict:
    """The batch's tensors on `device` (other values untouched)."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
