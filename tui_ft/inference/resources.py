"""Before a model loads for chat: will it fit where it is going? Said before loading, with the ways out
(CPU, 4-bit), instead of failing halfway. Light: reads config.json and safetensors headers only."""

from __future__ import annotations

from dataclasses import dataclass

from tui_ft.estimate import DTYPE_BYTES, format_bytes, locate_config, model_shape
from tui_ft.monitor.system import GpuStatus
from tui_ft.workspace import Workspace

HEADROOM = 1.2  # weights plus the KV cache and activations of a chat-length reply
MIB = 1024**2


@dataclass(frozen=True)
class LoadAdvice:
    needed_bytes: int
    free_bytes: int | None
    device: str  # where it would load: "cuda" or "cpu"
    problem: str | None  # None: go ahead
    options: tuple[str, ...] = ()  # what would fit instead: "cpu", "4bit", "8bit"

    @property
    def fits(self) -> bool:
        return self.problem is None


def weights_bytes(ref: str, ws: Workspace, *, quantization: str = "none", device: str = "cuda") -> int:
    """The bytes the model's weights take once loaded (bf16 on a GPU, fp32 on a CPU; 4-bit NF4 or
    8-bit for the linear layers when quantized)."""
    shape = model_shape(locate_config(ref, ws))
    per = DTYPE_BYTES["bfloat16" if device == "cuda" else "float32"]
    if quantization == "none":
        return shape.total_params * per
    quantized = shape.quantizable_params
    bits = 4.25 if quantization == "4bit" else 8.0  # NF4 with double quantization: ~4.25 bits
    return int(quantized * bits / 8 + (shape.total_params - quantized) * per)


def advise_load(
    ref: str,
    ws: Workspace,
    *,
    gpu: GpuStatus | None,
    device: str = "auto",
    quantization: str = "none",
    ram_available: int | None = None,
    busy_runs: tuple[str, ...] = (),
) -> LoadAdvice:
    """Whether `ref` fits on the device it would load on, and what to do if not."""
    on_gpu = device in ("auto", "cuda") and gpu is not None and gpu.available and bool(gpu.gpus)
    target = "cuda" if on_gpu else "cpu"
    need = int(weights_bytes(ref, ws, quantization=quantization, device=target) * HEADROOM)
    if on_gpu:
        assert gpu is not None
        g = gpu.gpus[0]
        if g.memory_total_mb is None or g.memory_used_mb is None:
            return LoadAdvice(need, None, target, None)
        free = int((g.memory_total_mb - g.memory_used_mb) * MIB)
        if need <= free:
            return LoadAdvice(need, free, target, None)
        options = ["cpu"]
        for q in ("4bit", "8bit"):
            if q != quantization and int(weights_bytes(ref, ws, quantization=q) * HEADROOM) <= free:
                options.append(q)
                break
        holder = f" (training run {', '.join(busy_runs)} holds it)" if busy_runs else ""
        problem = (
            f"{ref} needs about {format_bytes(need)} of GPU memory and GPU {g.index} has "
            f"{format_bytes(free)} free{holder}"
        )
        return LoadAdvice(need, free, target, problem, tuple(options))
    if ram_available is None:
        import psutil

        ram_available = int(psutil.virtual_memory().available)
    if need <= ram_available:
        return LoadAdvice(need, ram_available, target, None)
    cpu_options = tuple(
        q
        for q in ("4bit", "8bit")
        if q != quantization
        and int(weights_bytes(ref, ws, quantization=q, device="cpu") * HEADROOM) <= ram_available
    )[:1]
    problem = f"{ref} needs about {format_bytes(need)} of memory and {format_bytes(ram_available)} is free"
    return LoadAdvice(need, ram_available, target, problem, cpu_options)
