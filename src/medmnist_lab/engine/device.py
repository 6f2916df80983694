"""Training device and precision choices, with one code path for CPU, CUDA and MPS."""

from __future__ import annotations

import contextlib
import platform
from dataclasses import dataclass
from functools import cache

import torch

from medmnist_lab.engine.config import PRECISIONS  # auto: bf16/fp16 where it pays off, fp32 elsewhere
from medmnist_lab.errors import MedMNISTLabError

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str) -> torch.device:
    if name not in DEVICES and not name.startswith("cuda:"):
        raise MedMNISTLabError(f"unknown device '{name}'; choose one of: {', '.join(DEVICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MedMNISTLabError(
            f"--device {name} was asked for, but CUDA is not available here; use --device cpu or auto"
        )
    if name == "mps" and not torch.backends.mps.is_available():
        raise MedMNISTLabError(
            "--device mps was asked for, but Apple MPS is not available here; use --device cpu or auto"
        )
    return torch.device(name)


@cache
def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it (benchmarks and the speed cache record it)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@cache
def cpu_has_bf16() -> bool:
    """True on CPUs with native bf16 (avx512_bf16 or AMX), where bf16 autocast pays off."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass(frozen=True)
class Precision:
    dtype: torch.dtype | None  # None: full fp32
    use_scaler: bool  # fp16 needs a gradient scaler, bf16 does not

    @property
    def name(self) -> str:
        return "fp32" if self.dtype is None else str(self.dtype).removeprefix("torch.")


FP32 = Precision(None, False)
# Scoring (evaluate, a run's final scores, predict) defaults to fp32: the same checkpoint then
# gives the same probabilities on every CPU and in its ONNX export, whatever the CPU supports.
SCORE_PRECISION = "fp32"


def resolve_precision(
    device: torch.device, amp: bool | None = None, precision: str = "auto", volumes: bool = False
) -> Precision:
    """The autocast dtype for `precision` (auto|fp32|bf16|fp16) on `device`. `amp` is the older
    switch (None: auto, False: fp32, True: mixed precision even where auto would not use it);
    an explicit `precision` wins over it. `volumes`: a 3D model; auto trains those in fp32 on a
    CPU, because bf16 training of the ACS/3D ResNets there turned the weights NaN in the first
    epoch (real AdrenalMNIST3D, `fast`, AMD EPYC with avx512_bf16, torch 2.14.1)."""
    if precision not in PRECISIONS:
        raise MedMNISTLabError(f"unknown precision '{precision}'; choose one of: {', '.join(PRECISIONS)}")
    if precision == "fp32" or (precision == "auto" and amp is False):
        return FP32
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise MedMNISTLabError("--precision bf16: this GPU does not support bf16; use fp16 or fp32")
        if device.type == "mps":
            raise MedMNISTLabError("--precision bf16 is not supported on Apple MPS here; use fp16 or fp32")
        return Precision(torch.bfloat16, False)
    if precision == "fp16":
        return Precision(torch.float16, device.type in ("cuda", "cpu"))  # MPS autocast runs without a scaler
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return Precision(torch.bfloat16, False)
        return Precision(torch.float16, True)
    if device.type == "cpu" and volumes and not amp:
        return FP32
    if device.type == "cpu" and (amp or cpu_has_bf16()):
        return Precision(torch.bfloat16, False)
    if device.type == "mps" and amp:
        return Precision(torch.float16, False)
    return FP32


def training_precision(device: torch.device, config: object) -> Precision:
    """A run's training precision on `device`: its config's `amp` and `precision`, volumes (a
    `conv` set) by their own rule; the one place training, dry-run estimates and scoring-auto read it."""
    return resolve_precision(
        device,
        getattr(config, "amp", None),
        getattr(config, "precision", "auto"),
        volumes=getattr(config, "conv", None) is not None,
    )


def scoring_precision(device: torch.device, requested: str, config: object) -> Precision:
    """The precision to score in: `requested` (fp32 by default), or with "auto" the run's own
    training rule (`training_precision`)."""
    if requested == "auto":
        return training_precision(device, config)
    return resolve_precision(device, None, requested)


def autocast(device: torch.device, precision: Precision):
    if precision.dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=precision.dtype)


def to_channels_last(model: torch.nn.Module) -> torch.nn.Module:
    """The model in channels-last memory format: NHWC for 2D models, NDHWC for volumetric ones."""
    volumetric = any(p.dim() == 5 for p in model.parameters())
    return model.to(memory_format=torch.channels_last_3d if volumetric else torch.channels_last)
