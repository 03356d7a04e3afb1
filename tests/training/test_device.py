"""The one device decision (tasks/training/device.py) and the training arguments built from it, on CPU."""

from __future__ import annotations

import pytest
import torch

from tasks.training.config import TrainParams
from tasks.training.device import DeviceError, resolve
from tasks.training.trainer import training_arguments


def test_auto_is_the_cpu_in_float32_with_gloo_here(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    device, dtype, backend = resolve("auto")
    assert (device, dtype, backend) == (torch.device("cpu"), torch.float32, "gloo")
    assert resolve("cpu") == resolve("auto") and resolve("cpu").describe() == "cpu/float32"


def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="device=cuda but torch sees no GPU"):
        resolve("cuda")
    with pytest.raises(DeviceError, match="one of"):
        resolve("tpu")


def test_cuda_is_bf16_with_nccl_one_gpu_per_process(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    placement = resolve("auto")
    assert placement == (torch.device("cuda", 1), torch.bfloat16, "nccl")
    assert placement.describe() == "cuda/bfloat16"
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(DeviceError, match="LOCAL_RANK=2 but only 2 GPU"):
        resolve("cuda")


def test_training_arguments_follow_the_device(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = training_arguments(TrainParams(threads=1), tmp_path, seed=0)
    assert args.use_cpu and not args.bf16 and args.device.type == "cpu"
    with pytest.raises(DeviceError):
        training_arguments(TrainParams(threads=1, device="cuda"), tmp_path, seed=0)
