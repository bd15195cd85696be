"""What this machine can train with, and the precision that follows from it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Hardware:
    device: str  # "cuda" | "mps" | "cpu"
    device_count: int
    bf16: bool  # bf16 mixed precision is supported and sensible
    fp16: bool
    name: str

    @property
    def cpu_only(self) -> bool:
        return self.device == "cpu"


def detect_hardware() -> Hardware:
    import torch

    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        return Hardware(
            device="cuda",
            device_count=count,
            bf16=torch.cuda.is_bf16_supported(),
            fp16=True,
            name=torch.cuda.get_device_name(0),
        )
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return Hardware(device="mps", device_count=1, bf16=False, fp16=False, name="Apple MPS")
    # On a plain CPU, fp32: bf16 autocast there is slow on most CPUs and changes the numbers.
    return Hardware(device="cpu", device_count=0, bf16=False, fp16=False, name="CPU")


def weights_dtype(requested: str, hw: Hardware, adapter_type: str):
    """The torch dtype to load weights in. `auto`: bf16 on GPUs that have it, fp16 under adapters on
    older GPUs (frozen base), fp32 otherwise (full/freeze training keeps fp32 masters for fp16 AMP)."""
    import torch

    if requested != "auto":
        return getattr(torch, requested)
    if hw.device == "cuda" and hw.bf16:
        return torch.bfloat16
    if hw.device == "cuda" and adapter_type not in ("full", "freeze"):
        return torch.float16
    return torch.float32


def precision_args(hw: Hardware, training: dict) -> dict:
    """bf16/fp16/use_cpu for the trainer config, from the hardware unless the recipe says otherwise."""
    args: dict = {}
    if "bf16" not in training and "fp16" not in training:
        args["bf16"] = hw.bf16
        args["fp16"] = hw.device == "cuda" and not hw.bf16
    if hw.cpu_only:
        args["use_cpu"] = True
    return args
