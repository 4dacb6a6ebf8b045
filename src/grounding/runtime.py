"""Where and how a model computes: one `Runtime` (device, precision), decided once from the
user's `--device` and `--precision` and passed to whatever trains or encodes."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from .errors import BadInput

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "auto")
# CPU flags (Linux /proc/cpuinfo) of bf16 matrix instructions, best first
BF16_FLAGS = (("amx_bf16", "AMX bf16 matrix units"), ("avx512_bf16", "AVX-512 bf16 instructions"),
              ("bf16", "bf16 matrix instructions"))
# Towers whose bf16 answers stay within the guard (cosine 0.999 to fp32, the same zero-shot top-1
# on 99% of images; tests/test_inference.py). The built-in model's packaged towers do not: their
# zero-shot margins are small, and bf16 changes its top-1 on 3-18% of images (docs/benchmarks.md).
BF16_TOWERS = {"vit", "resnet", "transformer"}
CONVOLUTIONAL = {"resnet", "efficientnet_lite0", "efficientnet_lite2"}


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    precision: str = "fp32"  # or "bf16": autocast for training; bf16 weights for inference
    why: str = ""  # what decided an `auto` precision
    compile: bool = False  # inference: compile the image encoder (torch.compile, inductor with frozen weights)

    @classmethod
    def resolve(cls, device: str = "auto", precision: str = "fp32", compile: bool = False) -> "Runtime":
        """`auto` device takes a GPU when PyTorch sees one, else the CPU; asking for `cuda`
        without one is an error that says so. `auto` precision takes bf16 where the device
        multiplies bf16 matrices fast (a GPU, a CPU with bf16 matrix instructions), else fp32."""
        if device not in DEVICES and not device.startswith("cuda:"):
            raise BadInput(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N", "--device")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BadInput(f"--device {device}: PyTorch sees no CUDA GPU here (torch {torch.__version__}); "
                           "use --device cpu", "--device")
        if precision not in PRECISIONS:
            raise BadInput(f"unknown precision {precision!r}: use fp32, bf16 or auto", "--precision")
        why = ""
        if precision == "auto":
            fast, why = fast_bf16(torch.device(device))
            precision = "bf16" if fast else "fp32"
        return cls(torch.device(device), precision, why, compile)

    def for_model(self, model) -> "Runtime":
        """An `auto` choice of bf16 falls back to fp32 for a model with a tower outside BF16_TOWERS."""
        towers = {model.config.vision.kind, model.config.text.kind}
        if self.why and self.precision == "bf16" and not towers <= BF16_TOWERS:
            unsafe = ", ".join(sorted(towers - BF16_TOWERS))
            return Runtime(self.device, "fp32", f"{self.why}, but the {unsafe} tower's answers change in bf16",
                           self.compile)
        return self

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model ready for inference here: on the device, its weights converted once to bf16
        when that is the precision (features still come back in fp32), a convolutional image
        tower's weights laid out channels-last (the same results to float rounding; measured 1.7x
        on EfficientNet-Lite0's depthwise convolutions, 1.13x on a ResNet in bf16), and its image
        encoder compiled if asked (docs/benchmarks.md)."""
        model = model.to(self.device)
        if self.precision == "bf16":
            model = model.to(torch.bfloat16)
        if model.config.vision.kind in CONVOLUTIONAL:
            model.visual.to(memory_format=torch.channels_last)
        if self.compile:
            from torch._inductor import config as inductor

            inductor.freezing = True  # weights as constants: what makes it pay on CPUs
            model.encode_image = torch.compile(model.encode_image, dynamic=True)
        return model

    def autocast(self):
        """bf16 autocast on this device (weights and optimizer state stay fp32), or nothing."""
        return autocast(self.device.type, self.precision)

    def __str__(self) -> str:
        return f"{self.device} {self.precision}" + (f" ({self.why})" if self.why else "")


def device_of(model: torch.nn.Module) -> torch.device:
    """Where a model's weights are: its inputs go there."""
    return next(model.parameters()).device


def dtype_of(module: torch.nn.Module) -> torch.dtype:
    """The type of a module's weights: its floating inputs are cast to it."""
    return next(p.dtype for p in module.parameters() if p.is_floating_point())


def fast_bf16(device: torch.device) -> tuple[bool, str]:
    """Whether bf16 matrix multiplies are fast on this device, and why."""
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
        return supported, f"the GPU {'runs' if supported else 'has no'} bf16"
    flags = _cpu_flags()
    for flag, what in BF16_FLAGS:
        if flag in flags:
            return True, f"the CPU has {what}"
    return False, "the CPU has no bf16 matrix instructions"


@lru_cache(maxsize=1)
def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no way to tell, so fp32
        return set()
    return {flag for line in text.splitlines() if line.startswith(("flags", "Features"))
            for flag in line.split(":", 1)[1].split()}


def autocast(device_type: str, precision: str):
    if precision == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
