"""Where and how a model computes: one `Runtime` (device, precision), decided once from the
user's `--device` and `--precision` and passed to whatever trains or encodes."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    precision: str = "fp32"  # or "bf16": autocast for training, bf16 matrix multiplies

    @classmethod
    def resolve(cls, device: str = "auto", precision: str = "fp32") -> "Runtime":
        """`auto` takes a GPU when PyTorch sees one, else the CPU; asking for `cuda` without one
        is an error that says so."""
        if device not in DEVICES and not device.startswith("cuda:"):
            raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"--device {device}: PyTorch sees no CUDA GPU here (torch {torch.__version__}); "
                             "use --device cpu")
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"unknown precision {precision!r}: use fp32 or bf16")
        return cls(torch.device(device), precision)

    def autocast(self):
        """bf16 autocast on this device (weights and optimizer state stay fp32), or nothing."""
        return autocast(self.device.type, self.precision)

    def __str__(self) -> str:
        return f"{self.device} {self.precision}"


def device_of(model: torch.nn.Module) -> torch.device:
    """Where a model's weights are: its inputs go there."""
    return next(model.parameters()).device


def autocast(device_type: str, precision: str):
    if precision == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
