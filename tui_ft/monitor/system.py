"""System and GPU sampling into immutable snapshots, plus the `tui-ft sysinfo` report.

Nothing here imports torch at module level: the UI samples every second and must not pay for it.
"No GPU" is a value (`GpuStatus(available=False, reason=...)`), never an exception.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_MB = 1024 * 1024

# Distribution names reported by `sysinfo()`, in display order.
PACKAGES = (
    "tui-ft",
    "torch",
    "transformers",
    "trl",
    "peft",
    "bitsandbytes",
    "accelerate",
    "datasets",
    "textual",
)


@dataclass(frozen=True)
class GpuSample:
    """One GPU at one moment, as NVML reports it; a field is None where the device does not report it."""

    index: int
    name: str
    memory_used_mb: float | None
    memory_total_mb: float | None
    utilization_pct: float | None
    temperature_c: float | None
    power_w: float | None
    uuid: str | None


@dataclass(frozen=True)
class GpuStatus:
    """What NVML sees: the GPUs, or why there are none to show."""

    available: bool
    reason: str | None
    driver_version: str | None
    cuda_driver_version: str | None
    gpus: tuple[GpuSample, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the GPUs as a list of dicts)."""
        return dataclasses.asdict(self)


def _text(value: Any) -> str:
    """NVML returns bytes from older bindings and str from newer ones."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _nvml_reason(nvml: Any, exc: BaseException) -> str:
    """A sentence for why NVML could not be used."""
    checks = (
        ("NVMLError_LibraryNotFound", "no NVIDIA driver found (NVML library not loadable)"),
        ("NVMLError_DriverNotLoaded", "NVIDIA driver installed but not loaded"),
        ("NVMLError_NoPermission", "no permission to query the NVIDIA driver"),
        (
            "NVMLError_LibRmVersionMismatch",
            "NVIDIA driver library and kernel module versions differ (reload the driver or reboot)",
        ),
        ("NVMLError_GpuIsLost", "a GPU fell off the bus or stopped responding"),
    )
    for name, sentence in checks:
        cls = getattr(nvml, name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return sentence
    return f"NVML error: {exc}"


class GpuSampler:
    """Samples NVIDIA GPUs through NVML; cheap to call every second and never raises.

    NVML is initialised on the first `sample()`. If that fails (no driver is the normal case on a
    machine without a GPU), the failure is remembered and only retried after `retry_after_s`, so a
    one-second poll does not try to load the library every time. Safe to share between threads.
    """

    def __init__(self, *, retry_after_s: float = 60.0) -> None:
        self._retry_after_s = retry_after_s
        self._lock = threading.Lock()
        self._nvml: Any = None
        self._initialised = False
        self._failed_at: float | None = None
        self._failure: str | None = None
        self._driver_version: str | None = None
        self._cuda_driver_version: str | None = None
        # Name and UUID do not change while the driver is up: read them once per index.
        self._static: dict[int, tuple[str, str | None]] = {}

    def __enter__(self) -> GpuSampler:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _init(self) -> str | None:
        """Initialise NVML if needed; return why it is unusable, or None when it is ready."""
        if self._initialised:
            return None
        if self._failed_at is not None and time.monotonic() - self._failed_at < self._retry_after_s:
            return self._failure
        try:
            import pynvml
        except Exception as exc:  # ImportError, or a broken install
            return self._fail(f"nvidia-ml-py (pynvml) is not importable: {exc}")
        self._nvml = pynvml
        try:
            pynvml.nvmlInit()
        except Exception as exc:
            return self._fail(_nvml_reason(pynvml, exc))
        self._initialised = True
        self._failed_at = self._failure = None
        try:
            self._driver_version = _text(pynvml.nvmlSystemGetDriverVersion())
        except Exception:
            self._driver_version = None
        try:
            version = int(pynvml.nvmlSystemGetCudaDriverVersion())
            self._cuda_driver_version = f"{version // 1000}.{(version % 1000) // 10}"
        except Exception:
            self._cuda_driver_version = None
        return None

    def _fail(self, reason: str) -> str:
        self._failed_at = time.monotonic()
        self._failure = reason
        return reason

    def sample(self) -> GpuStatus:
        """A snapshot of every GPU, or `available=False` with a reason. Never raises."""
        with self._lock:
            try:
                return self._sample()
            except Exception as exc:  # the promise is "never raises", whatever NVML does
                return GpuStatus(False, f"GPU query failed: {type(exc).__name__}: {exc}", None, None, ())

    def _sample(self) -> GpuStatus:
        reason = self._init()
        if reason is not None:
            return GpuStatus(False, reason, None, None, ())
        nvml = self._nvml
        try:
            count = int(nvml.nvmlDeviceGetCount())
        except Exception as exc:
            return self._status(False, _nvml_reason(nvml, exc), ())
        if count == 0:
            return self._status(False, "NVIDIA driver present but no GPU detected", ())
        gpus = []
        for index in range(count):
            try:
                gpus.append(self._sample_device(index))
            except Exception as exc:
                # A device that cannot even be opened is reported by name, not by dropping all GPUs.
                return self._status(False, f"GPU {index}: {_nvml_reason(nvml, exc)}", tuple(gpus))
        return self._status(True, None, tuple(gpus))

    def _status(self, available: bool, reason: str | None, gpus: tuple[GpuSample, ...]) -> GpuStatus:
        return GpuStatus(available, reason, self._driver_version, self._cuda_driver_version, gpus)

    def _sample_device(self, index: int) -> GpuSample:
        nvml = self._nvml
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        if index not in self._static:
            name = _text(nvml.nvmlDeviceGetName(handle))
            uuid = _optional(lambda: _text(nvml.nvmlDeviceGetUUID(handle)))
            self._static[index] = (name, uuid)
        name, uuid = self._static[index]
        memory = _optional(lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
        utilization = _optional(lambda: float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu))
        temperature = _optional(
            lambda: float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
        )
        power = _optional(lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0)  # milliwatts
        return GpuSample(
            index=index,
            name=name,
            memory_used_mb=memory.used / _MB if memory is not None else None,
            memory_total_mb=memory.total / _MB if memory is not None else None,
            utilization_pct=utilization,
            temperature_c=temperature,
            power_w=power,
            uuid=uuid,
        )

    def close(self) -> None:
        """Shut NVML down if this sampler started it; a later `sample()` starts it again."""
        with self._lock:
            if self._initialised:
                with contextlib.suppress(Exception):
                    self._nvml.nvmlShutdown()
            self._initialised = False
            self._failed_at = self._failure = None
            self._static.clear()


def _optional(read: Any) -> Any:
    """The value, or None where the device does not support the query (NotSupported and the like)."""
    try:
        return read()
    except Exception:
        return None


@dataclass(frozen=True)
class SystemSample:
    """CPU and RAM at one moment, and optionally one process's resident memory."""

    cpu_percent: float
    cpu_count: int
    ram_used_mb: float
    ram_total_mb: float
    process_rss_mb: float | None
    load_avg: tuple[float, float, float] | None


def sample_system(pid: int | None = None, *, cpu_interval: float | None = None) -> SystemSample:
    """CPU, RAM and load now; with `pid`, that process's RSS (None if it has gone).

    `cpu_percent` is measured since the previous call in this process (psutil's way), so the very
    first call reports 0.0 unless `cpu_interval` (seconds to block and measure) is given.
    `ram_used_mb` is total minus available: what programs hold, not counting reclaimable cache.
    """
    import psutil

    memory = psutil.virtual_memory()
    rss = None
    if pid is not None:
        try:
            rss = psutil.Process(pid).memory_info().rss / _MB
        except (psutil.Error, OSError):
            rss = None
    try:
        load = tuple(float(x) for x in psutil.getloadavg())
    except (AttributeError, OSError):
        load = None
    return SystemSample(
        cpu_percent=float(psutil.cpu_percent(interval=cpu_interval)),
        cpu_count=psutil.cpu_count(logical=True) or 1,
        ram_used_mb=(memory.total - memory.available) / _MB,
        ram_total_mb=memory.total / _MB,
        process_rss_mb=rss,
        load_avg=load,  # type: ignore[arg-type]
    )


def package_versions() -> dict[str, str]:
    """Installed versions of the stack, read from package metadata (imports nothing heavy)."""
    import importlib.metadata  # here, not at the top: the UI imports this module to paint its first screen
    import platform

    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            if name == "tui-ft":  # running from a checkout that was not pip-installed
                from tui_ft import __version__

                versions[name] = __version__
            else:
                versions[name] = "not installed"
    return versions


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (Linux), else what `platform` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                return value.strip()
    except OSError:
        pass
    import platform

    return platform.processor() or None


def torch_view() -> dict[str, Any]:
    """What torch sees of CUDA: availability, CUDA build, device count and names, bf16 support."""
    try:
        import torch
    except Exception as exc:
        return {"importable": False, "error": f"{type(exc).__name__}: {exc}"}
    view: dict[str, Any] = {
        "importable": True,
        "cuda_available": False,
        "cuda_version": torch.version.cuda,
        "device_count": 0,
        "devices": [],
        "bf16_supported": None,
        "cpu_capability": None,
    }
    try:
        view["cuda_available"] = bool(torch.cuda.is_available())
        if view["cuda_available"]:
            view["device_count"] = torch.cuda.device_count()
            view["devices"] = [torch.cuda.get_device_name(i) for i in range(view["device_count"])]
            view["bf16_supported"] = bool(torch.cuda.is_bf16_supported())
    except Exception as exc:
        view["error"] = f"{type(exc).__name__}: {exc}"
    with contextlib.suppress(Exception):
        view["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return view


def bitsandbytes_view() -> dict[str, Any]:
    """Whether bitsandbytes can quantize to 4-bit NF4 here, proven by a tiny round trip."""
    import logging

    # bitsandbytes logs a warning on import on AVX512-BF16 CPUs about an optional kernel package.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    try:
        import bitsandbytes.functional as bnb_functional
        import torch
    except Exception as exc:
        return {"usable_4bit": False, "device": None, "reason": f"bitsandbytes cannot be imported: {exc}"}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        weight = torch.randn(64, 64, dtype=torch.float32, device=device)
        packed, state = bnb_functional.quantize_4bit(weight, quant_type="nf4")
        restored = bnb_functional.dequantize_4bit(packed, state)
        if restored.shape != weight.shape or not bool(torch.isfinite(restored).all()):
            return {"usable_4bit": False, "device": device, "reason": "4-bit round trip gave wrong values"}
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        reason = f"4-bit quantization failed on {device}: {type(exc).__name__}: {first_line}"
        return {"usable_4bit": False, "device": device, "reason": reason}
    return {"usable_4bit": True, "device": device, "reason": None}


def sysinfo(gpu: GpuStatus | None = None) -> dict[str, Any]:
    """Everything `tui-ft sysinfo` reports, as a JSON-ready dict. Imports torch and bitsandbytes.

    Keys: versions, platform, cpu, memory, gpu (the NVML view), torch (torch's CUDA view),
    bitsandbytes (4-bit usability).
    """
    import platform

    import psutil

    if gpu is None:
        with GpuSampler() as sampler:
            gpu = sampler.sample()
    memory = psutil.virtual_memory()
    return {
        "versions": package_versions(),
        "platform": {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
            "python": sys.version.split()[0],
            "description": platform.platform(),
        },
        "cpu": {
            "model": cpu_model(),
            "cores_logical": psutil.cpu_count(logical=True),
            "cores_physical": psutil.cpu_count(logical=False),
        },
        "memory": {
            "total_mb": round(memory.total / _MB),
            "available_mb": round(memory.available / _MB),
        },
        "gpu": gpu.to_dict(),
        "torch": torch_view(),
        "bitsandbytes": bitsandbytes_view(),
    }


def _yes_no(value: Any) -> str:
    if value is None:
        return "[dim]n/a[/]"
    return "[green]yes[/]" if value else "[yellow]no[/]"


def format_sysinfo(info: dict[str, Any]) -> Any:
    """A compact rich renderable of `sysinfo()` for people (the `--json` form prints the dict)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    def section(title: str) -> Table:
        table = Table.grid(padding=(0, 2))
        table.title = title
        table.title_justify = "left"
        table.title_style = "bold"
        table.add_column(style="cyan", no_wrap=True)
        table.add_column()
        return table

    versions = section("Versions")
    for name, version in info.get("versions", {}).items():
        shown = f"[dim]{version}[/]" if version == "not installed" else version
        versions.add_row(name, shown)

    machine = section("Machine")
    plat = info.get("platform", {})
    cpu = info.get("cpu", {})
    memory = info.get("memory", {})
    machine.add_row("platform", Text(str(plat.get("description", "?"))))
    machine.add_row("cpu", Text(str(cpu.get("model") or "unknown")))
    machine.add_row("cores", f"{cpu.get('cores_physical')} physical, {cpu.get('cores_logical')} logical")
    if memory:
        machine.add_row(
            "ram",
            f"{memory['total_mb'] / 1024:.1f} GiB total, {memory['available_mb'] / 1024:.1f} GiB available",
        )

    gpu_table = section("GPU (NVML)")
    gpu = info.get("gpu", {})
    if gpu.get("available"):
        gpu_table.add_row("driver", f"{gpu.get('driver_version')} (CUDA {gpu.get('cuda_driver_version')})")
        for sample in gpu.get("gpus", []):
            used, total = sample.get("memory_used_mb"), sample.get("memory_total_mb")
            mem = f"{used / 1024:.1f}/{total / 1024:.1f} GiB" if used is not None and total else "memory n/a"
            gpu_table.add_row(f"gpu {sample['index']}", Text(f"{sample['name']}, {mem}"))
    else:
        gpu_table.add_row("available", "[yellow]no[/]")
        gpu_table.add_row("why", Text(str(gpu.get("reason") or "unknown")))
        for sample in gpu.get("gpus", []):
            gpu_table.add_row(f"gpu {sample['index']}", Text(str(sample["name"])))

    torch_table = section("torch")
    view = info.get("torch", {})
    if not view.get("importable", True):
        torch_table.add_row("import", Text(str(view.get("error"))))
    else:
        torch_table.add_row("cuda available", _yes_no(view.get("cuda_available")))
        torch_table.add_row("cuda build", str(view.get("cuda_version") or "none (CPU build)"))
        torch_table.add_row("devices", str(view.get("device_count", 0)))
        for index, name in enumerate(view.get("devices", [])):
            torch_table.add_row(f"  cuda:{index}", Text(str(name)))
        torch_table.add_row("bf16 on cuda", _yes_no(view.get("bf16_supported")))
        if view.get("cpu_capability"):
            torch_table.add_row("cpu capability", str(view["cpu_capability"]))
        if view.get("error"):
            torch_table.add_row("error", Text(str(view["error"])))

    bnb_table = section("bitsandbytes")
    bnb = info.get("bitsandbytes", {})
    device = f" on {bnb['device']}" if bnb.get("device") else ""
    bnb_table.add_row(f"4-bit{device}", _yes_no(bnb.get("usable_4bit")))
    if bnb.get("reason"):
        bnb_table.add_row("why", Text(str(bnb["reason"])))

    parts: list[Any] = []
    for table in (versions, machine, gpu_table, torch_table, bnb_table):
        if parts:
            parts.append(Text(""))
        parts.append(table)
    return Group(*parts)
